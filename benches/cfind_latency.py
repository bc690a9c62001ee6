"""C-FIND study-level round-trip latency over one association (pynetdicom), p50/p99 per query.

usage: cfind_latency.py PORT [REPEATS]
"""
import sys
import time

from pydicom.dataset import Dataset
from pynetdicom import AE

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
QUERIES = [
    ("PatientID exact", {"PatientID": "P0012345"}),
    ("PatientName prefix", {"PatientName": "GONZALEZ^MI*"}),
    ("StudyDate month range", {"StudyDate": "20210301-20210330"}),
    ("AccessionNumber", {"AccessionNumber": "ACC00054321"}),
    ("ModalitiesInStudy=CT + date range", {"ModalitiesInStudy": "CT", "StudyDate": "20230101-20230130"}),
]


def main() -> None:
    port = int(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(STUDY_ROOT_FIND)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACS")
    assert assoc.is_established
    # pynetdicom keeps Nagle on: its request arrives as two writes (command, identifier) and
    # the second waits ~40 ms for a delayed ACK. Like dcmtk's TCP_NODELAY=1, turn it off.
    import socket
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(f"{'C-FIND study level (pynetdicom)':<36} {'matches':>8} {'p50 ms':>10} {'p99 ms':>10}")
    for name, keys in QUERIES:
        times, matches = [], 0
        for _ in range(repeats):
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = ""
            ds.PatientName = ds.get("PatientName", "")
            ds.StudyDescription = ""
            ds.NumberOfStudyRelatedInstances = ""
            for k, v in keys.items():
                setattr(ds, k, v)
            t = time.perf_counter()
            n = sum(1 for status, _ in assoc.send_c_find(ds, STUDY_ROOT_FIND) if status and status.Status == 0xFF00)
            times.append((time.perf_counter() - t) * 1000)
            matches = n
        times.sort()
        p = lambda q: times[round((len(times) - 1) * q)]
        print(f"{name:<36} {matches:>8} {p(0.5):>10.2f} {p(0.99):>10.2f}")
    assoc.release()


if __name__ == "__main__":
    main()
