"""Helper of benches/workers.sh (stdlib only).

  serve PORT_FILE LOG            a threaded HTTP receiver on 127.0.0.1 (port 0; the port is
                                 written to PORT_FILE) answering every request with 201 (POST) or
                                 200; appends one JSON line per request to LOG: arrival time
                                 (headers read), end time (body read), method, path,
                                 Idempotency-Key and body bytes.
  wait HTTP WORKERS LOG OUT SECS polls pacs (http://127.0.0.1:HTTP) until every stored study and
                                 series has had its StudyStable / SeriesStable event, each such
                                 event has a settled (not pending) delivery record for every
                                 worker of WORKERS (comma-separated) that wants it, and the
                                 receiver has logged every delivered key; or until SECS pass.
                                 Writes the events, delivery records and receiver log to OUT.
  summary RESULTS_DIR            prints the markdown tables of the benchmark.
"""
import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The event kind each worker acts on; quality is local (flags, nothing sent over HTTP).
WANTS = {
    "ehr": "StudyStable",
    "billing": "StudyStable",
    "pharmacy": "StudyStable",
    "portal": "StudyStable",
    "ai": "SeriesStable",
    "quality": "SeriesStable",
}
HTTP_WORKERS = ["ehr", "billing", "pharmacy", "portal", "ai"]
MODES = {  # benches/workers.sh configurations: the workers each enables
    "none": [],
    "all": list(WANTS),
    "http": HTTP_WORKERS,
    "quality": ["quality"],
    "idle": [],  # all workers configured, default quiet period: no event during the run
}


# ---- receiver --------------------------------------------------------------------------------
def serve(port_file: str, log_path: str) -> None:
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: reqwest pools its connections

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

        def log_message(self, *args) -> None:
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


def wait(http: str, workers: list, log_path: str, out_path: str, secs: float) -> None:
    t_start = time.time()
    deadline = t_start + secs
    done = False
    while True:
        all_events = outbox(http)
        stored = [e for e in all_events if e["kind"] == "InstanceStored"]
        studies = {e["study_instance_uid"] for e in stored}
        series = {e.get("series_instance_uid") for e in stored}
        events = [e for e in all_events if e["kind"] in ("StudyStable", "SeriesStable")]
        dels = {w: deliveries(http, w) for w in workers}
        logged = {r["key"] for r in read_log(log_path)}
        missing = 0
        for w in workers:
            settled = {d["seq"] for d in dels[w] if d["state"] != "pending"}
            missing += sum(1 for e in events if e["kind"] == WANTS[w] and e["seq"] not in settled)
            if w in HTTP_WORKERS:
                missing += sum(
                    1
                    for d in dels[w]
                    if d["state"] == "delivered" and d["idempotency_key"] not in logged
                )
        # Stability events come only after the quiet period: every stored study and series must
        # have had its event before "nothing missing" means anything.
        stable_studies = {e["study_instance_uid"] for e in events if e["kind"] == "StudyStable"}
        stable_series = {e.get("series_instance_uid") for e in events if e["kind"] == "SeriesStable"}
        if missing == 0 and stable_studies >= studies and stable_series >= series:
            done = True
            break
        if time.time() > deadline:
            break
        time.sleep(0.2)
    t_done = time.time()
    held = get(http, "/api/events?worker=billing&state=held&limit=1000") if "billing" in workers else []
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
    k = max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))
    return v[int(k)]


def median(values: list) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def fmt(x, spec: str = ".2f") -> str:
    return "" if x is None else format(x, spec)


def summary(res: str) -> None:
    meta = json.load(open(os.path.join(res, "meta.json")))
    n = meta["count"]
    runs = [json.loads(line) for line in open(os.path.join(res, "runs.jsonl"))]
    docs = {}
    for r in runs:
        if MODES[r["mode"]]:
            docs[id(r)] = json.load(open(r["detail"]))
    rounds = max(r["round"] for r in runs)
    modes = [m for m in MODES if m != "none" and any(r["mode"] == m for r in runs)]
    assocs_list = sorted({r["assocs"] for r in runs})

    def rates(mode, a):
        return [n / r["ingest_s"] for r in runs if r["mode"] == mode and r["assocs"] == a]

    def spread(xs):
        return "" if len(xs) < 2 else f" ({min(xs):.0f}-{max(xs):.0f})"

    print(f"## Ingest throughput, workers off vs on ({n} CT instances 512x512 16-bit, {meta['mb']} MB)\n")
    print("| assocs | workers | no workers (inst/s) | with workers (inst/s) | with / none | slower by | < 10% slower? |")
    print("|---|---|---|---|---|---|---|")
    for a in assocs_list:
        none = rates("none", a)
        for m in modes:
            on = rates(m, a)
            if not none or not on:
                continue
            mn, mo = median(none), median(on)
            slower = 100 * (1 - mo / mn)
            print(
                f"| {a} | {m} | {mn:.0f}{spread(none)} | {mo:.0f}{spread(on)} | {mo / mn:.3f} "
                f"| {slower:+.1f}% | {'yes' if slower < 10 else 'NO'} |"
            )
    print(
        f"\nmedian of {rounds} round(s), min-max in parentheses; each round runs the configurations "
        "back to back per association count, in an order that alternates between rounds. "
        "Workers: all = ehr, billing, pharmacy, portal, ai + quality; http = the five HTTP workers "
        "only; quality = the built-in analyzers only; idle = all workers configured but the default "
        "60 s quiet period, so none gets an event during the ingest.\n"
    )

    print("## Per run\n")
    print(
        "Times in s. CPU columns: CPU seconds during the ingest of pacs, of storescu, of the test "
        "receiver, and of everything else on the machine (other work: the compiler); "
        "'pacs CPU to settled' runs from the ingest start until every delivery settled.\n"
    )
    print(
        "| round | assocs | workers | ingest | inst/s | pacs CPU | storescu CPU | receiver CPU | other CPU "
        "| last delivery after ingest end | settled after ingest end | pacs CPU to settled |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        ld = st = None
        doc = docs.get(id(r))
        if doc is not None:
            if doc["received"]:
                ld = max(x["t_end"] for x in doc["received"]) - r["ingest_end"]
            st = doc["wait_ended"] - r["ingest_end"]
        settled = fmt(st) + ("" if doc is None or doc["complete"] else " (timed out)")
        print(
            f"| {r['round']} | {r['assocs']} | {r['mode']} | {r['ingest_s']:.2f} | {n / r['ingest_s']:.0f} "
            f"| {r['pacs_cpu']:.1f} | {r['storescu_cpu']:.1f} | {fmt(r.get('receiver_cpu'), '.1f')} "
            f"| {r['other_cpu']:.1f} | {fmt(ld)} | {settled} | {fmt(r.get('pacs_cpu_total'), '.1f')} |"
        )
    print()

    print("## Event delivery lag (receiver arrival - event time_ms), pooled over the rounds\n")
    print("| workers | assocs | worker | deliveries | p50 ms | p99 ms | max ms | arrived during the ingest |")
    print("|---|---|---|---|---|---|---|---|")
    counts = {}
    notes = []
    for m in modes:
        if not MODES[m]:
            continue
        for a in assocs_list:
            sel = [r for r in runs if r["mode"] == m and r["assocs"] == a]
            if not sel:
                continue
            lags = {w: [] for w in HTTP_WORKERS}
            during = {w: 0 for w in HTTP_WORKERS}
            c = counts.setdefault((m, a), {})
            dup = 0
            held_api, studies = [], []
            for r in sel:
                doc = docs[id(r)]
                if not doc["complete"]:
                    notes.append(f"NOT SETTLED within the wait: round {r['round']}, {m}, {a} assoc")
                ev = {e["seq"]: e for e in doc["events"]}
                first = {}
                for rec in doc["received"]:
                    k = rec["key"]
                    if k in first:
                        dup += 1
                        first[k] = min(first[k], rec["t"])
                    else:
                        first[k] = rec["t"]
                for k, t in first.items():
                    w, _, seq = (k or "").rpartition("-")
                    if w in lags and seq.isdigit() and int(seq) in ev:
                        lags[w].append(1000 * t - ev[int(seq)]["time_ms"])
                        during[w] += t <= r["ingest_end"]
                for w, ds in doc["deliveries"].items():
                    cw = c.setdefault(w, dict.fromkeys(
                        ["wanted", "delivered", "held", "skipped", "dead", "pending"], 0))
                    for d in ds:
                        cw[d["state"]] += 1
                    cw["wanted"] += sum(1 for e in doc["events"] if e["kind"] == WANTS[w])
                held_api.append(doc["billing_held_api"])
                studies.append(doc["studies"])
            if any(w in HTTP_WORKERS for w in MODES[m]):
                pooled = []
                for w in HTTP_WORKERS:
                    xs = lags[w]
                    pooled += xs
                    if xs:
                        print(f"| {m} | {a} | {w} | {len(xs)} | {pct(xs, 50):.0f} | {pct(xs, 99):.0f} | {max(xs):.0f} | {during[w]} |")
                    else:
                        print(f"| {m} | {a} | {w} | 0 | - | - | - | 0 |")
                if pooled:
                    print(f"| {m} | {a} | **all** | {len(pooled)} | {pct(pooled, 50):.0f} | {pct(pooled, 99):.0f} | {max(pooled):.0f} | {sum(during.values())} |")
                if "billing" in MODES[m]:
                    notes.append(
                        f"{m}, {a} assoc: `GET /api/events?worker=billing&state=held` per run: "
                        f"{held_api} (studies per run: {studies}); repeated Idempotency-Keys at the "
                        f"receiver: {dup}"
                    )
    print(
        "\nthe lag of each Idempotency-Key's first arrival (request headers read); the events are "
        "StudyStable/SeriesStable, emitted once a study was quiet for stable_after_secs "
        f"({meta['stable_after']} s), so the quiet period itself is not in the lag but is in "
        "'last delivery after ingest end' above.\n"
    )

    print("## Delivery records per worker (summed over the rounds)\n")
    print("| workers | assocs | worker | wanted events | delivered | held | skipped | dead | pending |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (m, a), c in counts.items():
        for w in WANTS:
            if w in c:
                cw = c[w]
                print(
                    f"| {m} | {a} | {w} | {cw['wanted']} | {cw['delivered']} | {cw['held']} "
                    f"| {cw['skipped']} | {cw['dead']} | {cw['pending']} |"
                )
    print()
    for line in notes:
        print(f"- {line}")
    print(
        "- quality works locally (flags, no HTTP): its 'delivered' = series analyzed. Billing holds "
        "studies without procedure codes and pharmacy skips studies without contrast: the "
        "generated data has neither, so both are expected."
    )


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "serve" and len(sys.argv) == 4:
        serve(sys.argv[2], sys.argv[3])
    elif cmd == "wait" and len(sys.argv) == 7:
        wait(sys.argv[2], sys.argv[3].split(","), sys.argv[4], sys.argv[5], float(sys.argv[6]))
    elif cmd == "summary" and len(sys.argv) == 3:
        summary(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
