"""Helpers for benches/dicomweb.sh: generate the shared QIDO population, time QIDO-RS study
searches over one keep-alive connection, check a WADO-RS multipart answer, print the tables.

usage: dicomweb_load.py gen OUT_DIR STUDIES [INSTANCES_PER_STUDY]
       dicomweb_load.py qido BASE_URL POPULATION_STUDIES OUT.json [REPEATS]
       dicomweb_load.py check-wado URL ACCEPT
       dicomweb_load.py report RESULTS_DIR

The population is the one benches/qr_populate.rs writes into the index (same patients, names,
dates, modalities, accession numbers for study n), so the queries of the C-FIND benchmark mean
the same thing here and the expected match counts can be computed for any size.
"""
import http.client
import json
import os
import socket
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "support"))

FAMILY = ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS",
          "RODRIGUEZ", "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON",
          "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE",
          "HARRIS", "SANCHEZ"]
GIVEN = ["JOHN", "MARY", "JAMES", "PATRICIA", "ROBERT", "JENNIFER", "MICHAEL", "LINDA"]
MODALITIES = ["CT", "MR", "CR", "US", "DX", "MG", "PT", "NM"]


def study_date(n: int) -> str:
    day = (n * 7919) % 3600  # as qr_populate.rs: 2015-2024, 360 "days" a year
    return f"{2015 + day // 360}{(day % 360) // 30 + 1:02}{day % 30 + 1:02}"


def population(studies: int):
    """(patient_id, patient_name, modality, study_date, accession) for study n, as qr_populate."""
    patients = max(studies // 3, 1)
    for n in range(studies):
        p = n % patients
        yield (f"P{p:07}", f"{FAMILY[p % len(FAMILY)]}^{GIVEN[p % len(GIVEN)]}",
               MODALITIES[n % len(MODALITIES)], study_date(n), f"ACC{n:08}")


def queries(studies: int):
    """(label, path, expected matches) for the QIDO shapes; values exist in a population of
    `studies` (the 100k values are those of the C-FIND benchmark)."""
    big = studies >= 100_000
    pid = "P0012345" if big else f"P{max(studies // 3, 1) // 2:07}"
    acc = "ACC00054321" if big else f"ACC{studies // 2 + 34:08}"
    pop = list(population(studies))
    count = lambda f: sum(1 for s in pop if f(*s))
    return [
        ("PatientID exact", {"PatientID": pid}, count(lambda i, *_: i == pid)),
        ("PatientName prefix `GONZALEZ^MI*`", {"PatientName": "GONZALEZ^MI*"},
         count(lambda _i, name, *_: name.startswith("GONZALEZ^MI"))),
        ("StudyDate, one month", {"StudyDate": "20210301-20210330"},
         count(lambda _i, _n, _m, d, _a: "20210301" <= d <= "20210330")),
        ("AccessionNumber", {"AccessionNumber": acc}, count(lambda *s: s[4] == acc)),
        ("ModalitiesInStudy=CT + one month", {"ModalitiesInStudy": "CT", "StudyDate": "20230101-20230130"},
         count(lambda _i, _n, m, d, _a: m == "CT" and "20230101" <= d <= "20230130")),
        # OHIF's study list: no filter, first page (raw query string, comma not escaped).
        ("OHIF default (limit=101, includefield)",
         "limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060", 101),
    ]


def cmd_gen(out: str, studies: int, per_study: int = 2) -> None:
    """Small (64x64) instances of the qr_populate population, one series per study."""
    import dicomgen

    sop = {"CT": dicomgen.CT, "MR": dicomgen.MR, "CR": dicomgen.CR, "DX": dicomgen.DX}
    os.makedirs(out, exist_ok=True)
    pixels = dicomgen.ct_pixels(64, 64, 0)
    k = 0
    for n, (pid, name, modality, date, acc) in enumerate(population(studies)):
        study_seed = f"dwshared/{n}"
        for i in range(per_study):
            ds = dicomgen.base(sop.get(modality, dicomgen.SC), f"{study_seed}/1/{i}", study_seed,
                               f"{study_seed}/1", modality, date, acc, f"{modality} EXAM",
                               f"{modality} SERIES", 1, i + 1)
            dicomgen.patient(ds, name, pid, "19700101", "O")
            dicomgen.mono(ds, pixels, 16, True)
            dicomgen.to_file(ds, os.path.join(out, f"s{k:07d}.dcm"))
            k += 1
    print(f"generated {k} instances, {studies} studies in {out}", file=sys.stderr)


class Client:
    """One HTTP/1.1 keep-alive connection with TCP_NODELAY, reopened (and counted) if the
    server closes it."""

    def __init__(self, base: str):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.prefix = u.hostname, u.port, u.path.rstrip("/")
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        self.reconnects = -1

    def get(self, path: str, accept: str):
        if self.conn.sock is None:
            self.conn.connect()
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.reconnects += 1
        t = time.perf_counter()
        self.conn.request("GET", self.prefix + path, headers={"Accept": accept})
        r = self.conn.getresponse()
        body = r.read()
        elapsed = time.perf_counter() - t
        if r.will_close:
            self.conn.close()
        return r.status, body, elapsed


def cmd_qido(base: str, studies: int, out: str, repeats: int = 100) -> None:
    budget = float(os.environ.get("QIDO_SECONDS", "30"))  # per query shape, after warm-up
    client = Client(base)
    results = []
    for label, params, expected in queries(studies):
        # `^` and `,` go unescaped: Orthanc 1.10 does not percent-decode QIDO arguments
        # (PatientName=GONZALEZ%5EMI* matches nothing there, includefield=a%2Cb is ignored).
        qs = params if isinstance(params, str) else urllib.parse.urlencode(params, safe="*^,")
        path = "/studies?" + qs
        status, body, _ = client.get(path, "application/dicom+json")
        answer = json.loads(body) if status == 200 and body.strip() else []
        matches = len(answer)
        # Attributes asked for with includefield that some answer lacks.
        wanted = [t for arg in qs.split("&") if arg.startswith("includefield=")
                  for t in arg.split("=", 1)[1].split(",")]
        missing = sorted({t for t in wanted for a in answer if t not in a})
        if status not in (200, 204):
            print(f"  {label}: HTTP {status}: {body[:200]!r}", file=sys.stderr)
        for _ in range(4):
            client.get(path, "application/dicom+json")
        times = []
        started = time.perf_counter()
        while len(times) < repeats and (len(times) < 10 or time.perf_counter() - started < budget):
            s, _b, elapsed = client.get(path, "application/dicom+json")
            if s != status:
                raise SystemExit(f"{path}: HTTP {s}, first answer was {status}")
            times.append(elapsed * 1000)
        times.sort()
        pct = lambda q: times[round((len(times) - 1) * q)]
        results.append({"label": label, "path": path, "status": status, "expected": expected,
                        "matches": matches, "missing": missing, "n": len(times), "p50": pct(0.5), "p99": pct(0.99),
                        "mean": statistics.fmean(times)})
        print(f"  {label:<40} HTTP {status} {matches:>6} matches (expected {expected})"
              f"  p50 {pct(0.5):8.2f} ms  p99 {pct(0.99):8.2f} ms  ({len(times)} requests)"
              + (f"  includefield not honoured: {', '.join(missing)}" if missing else ""),
              file=sys.stderr)
    with open(out, "w") as f:
        json.dump({"base": base, "studies": studies, "reconnects": client.reconnects,
                   "results": results}, f, indent=1)
    if client.reconnects:
        print(f"  note: the server closed the connection {client.reconnects} times", file=sys.stderr)


def cmd_check_wado(url: str, accept: str) -> None:
    """Stream a WADO-RS answer; print `HTTP_STATUS PARTS BYTES TRANSFER_SYNTAX_OF_FIRST_PART`."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    conn.request("GET", u.path + (f"?{u.query}" if u.query else ""), headers={"Accept": accept})
    r = conn.getresponse()
    ctype = r.getheader("Content-Type", "")
    boundary = None
    for param in ctype.split(";"):
        k, _, v = param.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip('"').encode()
    delim = b"--" + boundary if boundary else None
    parts, total, tail, first, ts = 0, 0, b"", b"", "?"
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        if len(first) < 4096:
            first += chunk[: 4096 - len(first)]
        if delim:
            buf = tail + chunk
            parts += buf.count(delim)
            tail = buf[-(len(delim) - 1):]
    if delim:
        parts -= 1  # the closing delimiter
    at = first.find(b"\x02\x00\x10\x00UI")  # (0002,0010) Transfer Syntax UID, explicit meta
    if at >= 0:
        n = int.from_bytes(first[at + 6: at + 8], "little")
        ts = first[at + 8: at + 8 + n].rstrip(b"\0 ").decode(errors="replace")
    print(r.status, parts, total, ts)


def cmd_serve_file(path: str) -> None:
    """The loopback ceiling: answer every GET with PATH via sendfile (prints the port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    print(srv.getsockname()[1], flush=True)
    size = os.path.getsize(path)
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                req += chunk
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode())
            with open(path, "rb") as f:
                conn.sendfile(f)


TS_NAMES = {"1.2.840.10008.1.2": "Implicit VR LE", "1.2.840.10008.1.2.1": "Explicit VR LE"}


def ms(r):
    return f"{r['p50']:.2f} / {r['p99']:.2f}"


def cmd_report(d: str) -> None:
    def load(name):
        path = os.path.join(d, name)
        return json.load(open(path)) if os.path.exists(path) else None

    def tsv(name):
        path = os.path.join(d, name)
        return [line.rstrip("\n").split("\t") for line in open(path)] if os.path.exists(path) else []

    info = dict(tsv("info.tsv"))
    orth, pacs, big = load("qido-orthanc.json"), load("qido-pacs.json"), load("qido-pacs-big.json")
    shared = info.get("shared_studies", "?")
    print()
    print(f"QIDO-RS `GET /dicom-web/studies?...` (Accept application/dicom+json), one keep-alive "
          f"HTTP/1.1 connection, TCP_NODELAY, {info.get('repeats', 100)} requests per query after 5 "
          f"warm-up; p50 / p99 ms. @{shared}: the shared set both servers hold "
          f"({info.get('shared_instances', '?')} instances, + the two WADO studies); "
          f"@{info.get('big_studies', '?')}: the index of benches/qr.sh (records only)")
    print()
    print(f"| query | matches @{shared} | Orthanc @{shared} | pacs @{shared} | pacs speed-up (Orthanc p50 / pacs p50) "
          f"| matches @{info.get('big_studies', '?')} | pacs @{info.get('big_studies', '?')} | p50 < 5 ms |")
    print("|---|---|---|---|---|---|---|---|")
    rows = (orth or pacs or big or {"results": []})["results"]
    for i, base in enumerate(rows):
        o = orth["results"][i] if orth else None
        p = pacs["results"][i] if pacs else None
        b = big["results"][i] if big else None
        def flag(r, who):
            if r is None:
                return ""
            out = "" if r["matches"] == r["expected"] else f" ({who} answered {r['matches']}!)"
            if r["status"] not in (200, 204):
                out += f" ({who}: HTTP {r['status']}!)"
            if r.get("missing"):
                out += f" ({who} lacks {', '.join(r['missing'])})"
            return out
        expected = (o or p or {}).get("expected", "")
        cells = [
            base["label"],
            f"{expected}{flag(o, 'Orthanc')}{flag(p, 'pacs')}" if (o or p) else "",
            ms(o) if o else "n/a",
            ms(p) if p else "n/a",
            f"{o['p50'] / p['p50']:.1f}x" if o and p else "n/a",
            f"{b['expected']}{flag(b, 'pacs')}" if b else "",
            ms(b) if b else "n/a",
            ("yes" if b["p50"] < 5 else "**no**") if b else "n/a",
        ]
        print("| " + " | ".join(cells) + " |")

    for who, q in (("Orthanc", orth), ("pacs", pacs), (f"pacs @{info.get('big_studies')}", big)):
        if q and q.get("reconnects"):
            print(f"\n{who} closed the keep-alive connection {q['reconnects']} times (reopened: "
                  f"those requests include a TCP connect)")

    wado = [(sv, st, a, float(s), int(n)) for sv, st, a, s, n in tsv("wado.tsv")]
    ceiling = [(s, n) for sv, _st, _a, s, n in wado if sv == "ceiling"]
    wado = [w for w in wado if w[0] != "ceiling"]
    if wado:
        checks = {f"{sv} {st} {a}": r.split()[-1] for sv, st, a, r in tsv("wado-checks.tsv")}
        print()
        print(f"WADO-RS `GET /dicom-web/studies/{{uid}}`, one {info.get('wado_instances', 500)}-instance "
              f"512x512 16-bit CT study, curl to /dev/null, median of {info.get('rounds', 3)} runs")
        print()
        print("| study stored as | Accept | syntax sent, Orthanc / pacs | Orthanc s | Orthanc MB/s "
              "| pacs s | pacs MB/s | pacs / Orthanc (target >= 2x) |")
        print("|---|---|---|---|---|---|---|---|")
        seen = []
        for _, study, accept, _, _ in wado:
            if (study, accept) not in seen:
                seen.append((study, accept))
        for study, accept in seen:
            cell = {}
            for server in ("orthanc", "pacs"):
                runs = [(s, n) for sv, st, a, s, n in wado if (sv, st, a) == (server, study, accept)]
                if runs:
                    s = statistics.median(r[0] for r in runs)
                    n = statistics.median(r[1] for r in runs)
                    cell[server] = (s, n / s / 1e6)
            sent = " / ".join(TS_NAMES.get(checks.get(f"{sv} {study} {accept}"), "n/a")
                              for sv in ("orthanc", "pacs"))
            fmt = lambda sv: (f"{cell[sv][0]:.2f}", f"{cell[sv][1]:.0f}") if sv in cell else ("n/a", "n/a")
            o, p = fmt("orthanc"), fmt("pacs")
            ratio = f"{cell['pacs'][1] / cell['orthanc'][1]:.2f}x" if len(cell) == 2 else "n/a"
            acc = "`transfer-syntax=*`" if "transfer-syntax=*" in accept else "default (Explicit VR LE)"
            print(f"| {TS_NAMES.get(study, study)} | {acc} | {sent} "
                  f"| {o[0]} | {o[1]} | {p[0]} | {p[1]} | {ratio} |")
        if ceiling:
            s = statistics.median(c[0] for c in ceiling)
            n = statistics.median(c[1] for c in ceiling)
            print(f"\nLoopback ceiling: the study's {n / 1e6:.0f} MB of files, concatenated and sent with "
                  f"sendfile(2) from the page cache by a minimal server, curl to /dev/null: {s:.2f} s, "
                  f"{n / s / 1e6:.0f} MB/s (median of {len(ceiling)}): a practical upper bound for both servers.")

    ingest = tsv("ingest.tsv")
    if ingest:
        print()
        print("| dcmtk storescu, 1 association | instances | seconds | instances/s |")
        print("|---|---|---|---|")
        for server, what, count, seconds in ingest:
            print(f"| {what} to {server} | {count} | {float(seconds):.1f} | {int(count) / float(seconds):.0f} |")
    notes = [n[0] for n in tsv("notes.tsv")]
    if notes:
        print()
        for note in notes:
            print(f"- {note}")


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "gen":
        cmd_gen(args[0], int(args[1]), *(int(a) for a in args[2:3]))
    elif cmd == "qido":
        cmd_qido(args[0], int(args[1]), args[2], *(int(a) for a in args[3:4]))
    elif cmd == "check-wado":
        cmd_check_wado(args[0], args[1])
    elif cmd == "serve-file":
        cmd_serve_file(args[0])
    elif cmd == "report":
        cmd_report(args[0])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
