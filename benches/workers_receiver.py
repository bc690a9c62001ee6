"""Helper of benches/workers.sh (stdlib only).

  serve PORT_FILE LOG     a threaded HTTP receiver on 127.0.0.1 (port 0; the port is written to
                          PORT_FILE) answering 200 to every request; appends one JSON line per
                          request to LOG: arrival time (headers read), end time (body read),
                          method, path, Idempotency-Key, body bytes.
  wait HTTP LOG OUT SECS  polls pacs (http://127.0.0.1:HTTP) until every SeriesStable /
                          StudyStable event of the outbox has a settled (not pending) delivery
                          for each worker that wants it and the receiver logged every delivered
                          key, or SECS pass; then writes the run's events, deliveries and
                          receiver log as one JSON document to OUT.
  summary RESULTS_DIR     prints the markdown tables of the whole benchmark.
"""
import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Which event kind each worker acts on, and whether it sends over HTTP (quality is local).
WANTS = {
    "ehr": "StudyStable",
    "billing": "StudyStable",
    "pharmacy": "StudyStable",
    "portal": "StudyStable",
    "ai": "SeriesStable",
    "quality": "SeriesStable",
}
HTTP_WORKERS = ["ehr", "billing", "pharmacy", "portal", "ai"]


# ---- receiver --------------------------------------------------------------------------------
def serve(port_file: str, log_path: str) -> None:
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as reqwest pools connections

        def _any(self) -> None:
            t0 = time.time()
            n = int(self.headers.get("Content-Length") or 0)
            left = n
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
            t1 = time.time()
            body = b"{}"
            self.send_response(201 if self.command == "POST" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            rec = {
                "t": t0,
                "t_end": t1,
                "method": self.command,
                "path": self.path,
                "key": self.headers.get("Idempotency-Key"),
                "bytes": n - left,
            }
            with lock:
                log.write(json.dumps(rec) + "\n")

        do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _any

        def log_message(self, *args) -> None:  # quiet
            pass

    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, port_file)
    srv.serve_forever()


# ---- pacs API --------------------------------------------------------------------------------
def get(http: str, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=30) as r:
        return json.load(r)


def outbox(http: str) -> list:
    out, offset = [], 0
    while True:
        page = get(http, f"/api/outbox?offset={offset}&limit=1000")
        if not page:
            return out
        out.extend(page)
        offset = page[-1]["seq"]


def deliveries(http: str, worker: str) -> list:
    out, after = [], 0
    while True:
        page = get(http, f"/api/events?worker={worker}&after={after}&limit=1000")
        if not page:
            return out
        out.extend(page)
        after = page[-1]["seq"]


def read_log(path: str) -> list:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def wait(http: str, log_path: str, out_path: str, secs: float) -> None:
    t_start = time.time()
    deadline = t_start + secs
    done = False
    while True:
        all_events = outbox(http)
        stored = [e for e in all_events if e["kind"] == "InstanceStored"]
        studies = {e["study_instance_uid"] for e in stored}
        series = {e.get("series_instance_uid") for e in stored}
        events = [e for e in all_events if e["kind"] in ("StudyStable", "SeriesStable")]
        dels = {w: deliveries(http, w) for w in WANTS}
        logged = {r["key"] for r in read_log(log_path)}
        missing = 0
        for w, kind in WANTS.items():
            settled = {d["seq"] for d in dels[w] if d["state"] != "pending"}
            missing += sum(1 for e in events if e["kind"] == kind and e["seq"] not in settled)
            if w in HTTP_WORKERS:
                missing += sum(
                    1
                    for d in dels[w]
                    if d["state"] == "delivered" and d["idempotency_key"] not in logged
                )
        # Stability events appear only after the quiet period: every stored study and series
        # must have had its event.
        stable_studies = {e["study_instance_uid"] for e in events if e["kind"] == "StudyStable"}
        stable_series = {e.get("series_instance_uid") for e in events if e["kind"] == "SeriesStable"}
        if missing == 0 and stable_studies >= studies and stable_series >= series:
            done = True
            break
        if time.time() > deadline:
            break
        time.sleep(0.2)
    t_done = time.time()
    held = get(http, "/api/events?worker=billing&state=held&limit=1000")
    doc = {
        "complete": done,
        "studies": len(studies),
        "series": len(series),
        "billing_held_api": len(held),
        "wait_started": t_start,
        "wait_ended": t_done,
        "events": events,
        "deliveries": dels,
        "received": read_log(log_path),
    }
    with open(out_path, "w") as f:
        json.dump(doc, f)
    if not done:
        print(f"warning: deliveries not settled after {secs:.0f} s", file=sys.stderr)


# ---- summary ---------------------------------------------------------------------------------
def pct(values: list, p: float) -> float:
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def median(values: list) -> float:
    v = sorted(values)
    return v[(len(v) - 1) // 2] if v else float("nan")


def summary(res: str) -> None:
    meta = json.load(open(os.path.join(res, "meta.json")))
    n = meta["count"]
    runs = [json.loads(line) for line in open(os.path.join(res, "runs.jsonl"))]
    rounds = max(r["round"] for r in runs)
    print(f"## Ingest: workers off vs all workers on ({n} CT instances, 512x512 16-bit)\n")
    print("| associations | no workers (inst/s) | all workers (inst/s) | all / none | slower by | < 10% slower? |")
    print("|---|---|---|---|---|---|")
    for a in (1, 4):
        none = [n / r["ingest_s"] for r in runs if r["mode"] == "none" and r["assocs"] == a]
        allw = [n / r["ingest_s"] for r in runs if r["mode"] == "all" and r["assocs"] == a]
        if not none or not allw:
            continue
        mn, ma = median(none), median(allw)
        slower = 100 * (1 - ma / mn)
        spread = lambda xs: "" if len(xs) < 2 else f" ({min(xs):.0f}-{max(xs):.0f})"
        print(
            f"| {a} | {mn:.0f}{spread(none)} | {ma:.0f}{spread(allw)} | {ma / mn:.3f} | "
            f"{slower:+.1f}% | {'yes' if slower < 10 else 'NO'} |"
        )
    print(
        f"\nmedian of {rounds} round(s), range in parentheses; rounds alternate none/all so "
        "machine drift hits both alike.\n"
    )

    print("## Per run\n")
    print(
        "| round | assocs | workers | ingest s | inst/s | pacs CPU s (ingest) | machine busy cores "
        "| last delivery after ingest end s | all settled after ingest end s | pacs CPU s (to settled) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        ld = st = total = ""
        if r["mode"] == "all":
            doc = json.load(open(r["detail"]))
            if doc["received"]:
                ld = "%.2f" % (max(x["t_end"] for x in doc["received"]) - r["ingest_end"])
            st = "%.2f" % (doc["wait_ended"] - r["ingest_end"])
            if not doc["complete"]:
                st += " (timed out)"
            total = "%.1f" % r["pacs_cpu_total"]
        print(
            f"| {r['round']} | {r['assocs']} | {r['mode']} | {r['ingest_s']:.2f} | {n / r['ingest_s']:.0f} "
            f"| {r['pacs_cpu_ingest']:.1f} | {r['busy_cores']:.2f} | {ld} | {st} | {total} |"
        )
    print()

    # Lag per worker, pooled over the rounds, per association count.
    print("## Event delivery lag (receiver arrival - event time_ms)\n")
    print("| assocs | worker | deliveries | p50 ms | p99 ms | max ms | delivered during ingest |")
    print("|---|---|---|---|---|---|---|")
    counts = {}
    incomplete = []
    for a in (1, 4):
        pooled = {w: [] for w in HTTP_WORKERS}
        during = {w: 0 for w in HTTP_WORKERS}
        for r in runs:
            if r["mode"] != "all" or r["assocs"] != a:
                continue
            doc = json.load(open(r["detail"]))
            if not doc["complete"]:
                incomplete.append(f"round {r['round']}, {a} assoc")
            ev = {e["seq"]: e for e in doc["events"]}
            first = {}
            dup = 0
            for rec in doc["received"]:
                k = rec["key"]
                if k in first:
                    dup += 1
                    first[k] = min(first[k], rec["t"])
                else:
                    first[k] = rec["t"]
            for w in HTTP_WORKERS:
                for k, t in first.items():
                    if not k or not k.startswith(w + "-"):
                        continue
                    seq = int(k.rsplit("-", 1)[1])
                    if seq in ev:
                        pooled[w].append(1000 * t - ev[seq]["time_ms"])
                        if t <= r["ingest_end"]:
                            during[w] += 1
            c = counts.setdefault(a, {})
            for w, ds in doc["deliveries"].items():
                cw = c.setdefault(w, {"delivered": 0, "held": 0, "skipped": 0, "dead": 0, "pending": 0, "wanted": 0})
                for d in ds:
                    cw[d["state"]] += 1
                cw["wanted"] += sum(1 for e in doc["events"] if e["kind"] == WANTS[w])
            c.setdefault("_dup", 0)
            c["_dup"] += dup
            c.setdefault("_held_api", []).append(doc["billing_held_api"])
            c.setdefault("_studies", []).append(doc["studies"])
        allw = []
        for w in HTTP_WORKERS:
            xs = pooled[w]
            allw += xs
            if xs:
                print(f"| {a} | {w} | {len(xs)} | {pct(xs, 50):.0f} | {pct(xs, 99):.0f} | {max(xs):.0f} | {during[w]} |")
            else:
                print(f"| {a} | {w} | 0 | - | - | - | 0 |")
        if allw:
            print(f"| {a} | **all** | {len(allw)} | {pct(allw, 50):.0f} | {pct(allw, 99):.0f} | {max(allw):.0f} | {sum(during.values())} |")
    print(
        "\nlag uses the first arrival of each Idempotency-Key (headers read); events are "
        "StudyStable/SeriesStable, emitted after the quiet period (stable_after_secs), so the "
        "quiet period itself is not part of the lag.\n"
    )

    print("## Delivery states per worker (summed over rounds)\n")
    print("| assocs | worker | wanted events | delivered | held | skipped | dead | pending |")
    print("|---|---|---|---|---|---|---|---|")
    for a, c in counts.items():
        for w in WANTS:
            if w not in c:
                continue
            cw = c[w]
            print(
                f"| {a} | {w} | {cw['wanted']} | {cw['delivered']} | {cw['held']} | {cw['skipped']} "
                f"| {cw['dead']} | {cw['pending']} |"
            )
    print()
    for a, c in counts.items():
        print(
            f"- {a} assoc: billing held per run from `GET /api/events?worker=billing&state=held`: "
            f"{c['_held_api']} (studies per run: {c['_studies']}); repeated Idempotency-Keys at the "
            f"receiver: {c['_dup']}"
        )
    print(
        "- quality is local (flags, no HTTP): 'delivered' = analyzed; billing holds studies without "
        "procedure codes and pharmacy skips studies without contrast (generated data has neither)."
    )
    if incomplete:
        print(f"- NOT SETTLED within the wait: {', '.join(incomplete)}")


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2], sys.argv[3])
    elif cmd == "wait":
        wait(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    elif cmd == "summary":
        summary(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
