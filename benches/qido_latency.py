"""QIDO-RS study-level latency over one keep-alive HTTP connection, p50/p99 per query (the
same query shapes as benches/cfind_latency.py).

usage: qido_latency.py HTTP_PORT [REPEATS]
"""
import http.client
import sys
import time

QUERIES = [
    ("PatientID exact", "PatientID=P0012345"),
    ("PatientName prefix", "PatientName=GONZALEZ%5EMI*"),
    ("StudyDate month range", "StudyDate=20210301-20210330"),
    ("AccessionNumber", "AccessionNumber=ACC00054321"),
    ("ModalitiesInStudy=CT + date range", "ModalitiesInStudy=CT&StudyDate=20230101-20230130"),
]


def main() -> None:
    port = int(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    conn = http.client.HTTPConnection("127.0.0.1", port)
    print(f"{'QIDO-RS studies':<36} {'matches':>8} {'p50 ms':>10} {'p99 ms':>10}")
    for name, query in QUERIES:
        times, matches = [], 0
        for _ in range(repeats):
            start = time.perf_counter()
            conn.request("GET", f"/dicom-web/studies?{query}&limit=1000",
                         headers={"Accept": "application/dicom+json"})
            resp = conn.getresponse()
            body = resp.read()
            times.append((time.perf_counter() - start) * 1000)
            if resp.status not in (200, 204):
                raise SystemExit(f"{name}: HTTP {resp.status}: {body[:200]!r}")
            matches = body.count(b'"0020000D"')
        times.sort()
        p50 = times[len(times) // 2]
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"{name:<36} {matches:>8} {p50:>10.2f} {p99:>10.2f}")


if __name__ == "__main__":
    main()
