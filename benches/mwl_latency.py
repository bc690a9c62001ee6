"""Modality worklist C-FIND latency, Orthanc's worklist plugin against this archive, same items.

One association per system, reused for every query; each shape is warmed up, then repeated
(up to REPS times, stopping early once a shape has used BUDGET seconds on one system, with at
least 10 repetitions). Checks that both systems answer each shape with the same accession
numbers, and prints a markdown table.

usage: mwl_latency.py ORTHANC_PORT PACS_PORT N [REPS] [BUDGET_S]
"""

import socket
import sys
import time

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind


def request(**keys) -> Dataset:
    """The usual worklist return keys, with `keys` (attribute=value) set as matching keys;
    SPS-level attributes go into the Scheduled Procedure Step Sequence item."""
    sps_attrs = {
        "Modality",
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepStatus",
    }
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = ""
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureID = ""
    ds.RequestedProcedureDescription = ""
    sps = Dataset()
    for a in sorted(sps_attrs):
        setattr(sps, a, "")
    for k, v in keys.items():
        setattr(sps if k in sps_attrs else ds, k, v)
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def run(assoc, query: Dataset):
    """One C-FIND: (seconds, accession numbers, final status)."""
    accs = []
    status = None
    t0 = time.perf_counter()
    for st, ident in assoc.send_c_find(query, ModalityWorklistInformationFind):
        if st is None:
            raise RuntimeError("association aborted or timed out")
        status = st.Status
        if status in (0xFF00, 0xFF01) and ident is not None:
            accs.append(str(ident.get("AccessionNumber", "")))
    return time.perf_counter() - t0, accs, status


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    orthanc_port, pacs_port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    budget = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
    day = "20261215"
    shapes = [
        ("one day + modality (CT)", request(ScheduledProcedureStepStartDate=day, Modality="CT")),
        ("patient name prefix `SMI*`", request(PatientName="SMI*")),
        (
            "station AE `CT03` + one week",
            request(
                ScheduledStationAETitle="CT03",
                ScheduledProcedureStepStartDate="20261214-20261220",
            ),
        ),
        (
            "accession number exact",
            request(AccessionNumber=f"A{max(1, n // 2):06}"),
        ),
        ("everything for a day", request(ScheduledProcedureStepStartDate=day)),
    ]
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    peers = {"Orthanc": (orthanc_port, "ORTHANC"), "pacs": (pacs_port, "PACS")}
    systems = {}
    problems = []

    def connect(name):
        port, called = peers[name]
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not assoc.is_established:
            sys.exit(f"no association with {name} on port {port}")
        # pynetdicom writes a C-FIND request as two PDUs (command, then identifier): with Nagle
        # on, the second waits ~40 ms for a delayed ACK. Like dcmtk's TCP_NODELAY=1, turn it off.
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        systems[name] = assoc

    for name in peers:
        connect(name)

    rows = []
    for label, query in shapes:
        result = {}
        for name in peers:
            if not systems[name].is_established:
                problems.append(f"{label}: {name} had closed the association; opened a new one")
                connect(name)
            assoc = systems[name]
            for _ in range(3):  # warm-up
                _, accs, status = run(assoc, query)
            times = []
            spent = time.perf_counter()
            while len(times) < reps:
                t, accs2, status2 = run(assoc, query)
                times.append(t)
                if len(times) >= 10 and time.perf_counter() - spent > budget:
                    break
            if status != 0x0000 or status2 != 0x0000:
                problems.append(f"{label}: {name} final status 0x{status2:04X}")
            if sorted(accs2) != sorted(accs):
                problems.append(f"{label}: {name} answered differently between repetitions")
            result[name] = (times, accs)
        o_times, o_accs = result["Orthanc"]
        p_times, p_accs = result["pacs"]
        if sorted(o_accs) != sorted(p_accs):
            only_o = sorted(set(o_accs) - set(p_accs))
            only_p = sorted(set(p_accs) - set(o_accs))
            problems.append(
                f"MISMATCH {label}: Orthanc {len(o_accs)} matches, pacs {len(p_accs)}; "
                f"only Orthanc: {only_o[:10]}{'...' if len(only_o) > 10 else ''}; "
                f"only pacs: {only_p[:10]}{'...' if len(only_p) > 10 else ''}"
            )
        o50, o99 = pct(o_times, 0.5) * 1e3, pct(o_times, 0.99) * 1e3
        p50, p99 = pct(p_times, 0.5) * 1e3, pct(p_times, 0.99) * 1e3
        matches = str(len(p_accs)) if len(o_accs) == len(p_accs) else f"{len(o_accs)} / {len(p_accs)}"
        rows.append(
            f"| {label} | {matches} | {o50:.2f} / {o99:.2f} ({len(o_times)}x) "
            f"| {p50:.2f} / {p99:.2f} ({len(p_times)}x) | {o50 / p50:.1f}x |"
        )
        print(f"{label}: done", file=sys.stderr, flush=True)
    for assoc in systems.values():
        assoc.release()

    print(f"\nModality worklist C-FIND, {n} scheduled steps, one association per system")
    print("(p50 / p99 in ms over the number of repetitions in parentheses; speed-up on p50)\n")
    print("| shape | matches | Orthanc p50 / p99 ms | pacs p50 / p99 ms | pacs/Orthanc speed-up |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(r)
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print(f"- {p}")
    else:
        print("\nBoth systems answered every shape with the same accession numbers.")


if __name__ == "__main__":
    main()
