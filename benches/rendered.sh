#!/usr/bin/env bash
# Whole-server load benchmark of WADO-RS rendered JPEG, pacs against Orthanc 1.10 + its DICOMweb
# plugin on this machine, in the same run on the same data:
#  - 200 CT 512x512 16-bit instances (tests/support/gen_instances.py, one series), stored in both
#    servers with dcmtk storescu;
#  - wrk (HTTP/1.1 keep-alive) with a Lua script cycling through the 200 instances'
#    `GET /dicom-web/studies/{s}/series/{se}/instances/{i}/rendered?window=C,W,linear`
#    (Accept: image/jpeg), the window different on every request of the whole run (no request is
#    ever repeated, so no cache can answer: the renderer is measured), quality at both servers'
#    default (90 for both). Orthanc's plugin (1.7) takes `window` only with all three values
#    (center, width, function): both servers get `,linear`;
#  - 1, 2 and 8 connections (wrk -t1 -c1, -t2 -c2, -t2 -c8), DURATION seconds each after a
#    WARMUP-second run at the same connection count; servers alternate per row.
# Prints a markdown table: images/s of both servers, the ratio, p50/p99 latency, each server's
# CPU time per image, wrk's CPU share and other processes' CPU use during the row; a row with any
# non-200 answer or socket error fails loudly (and the script exits 1). Target: pacs >= 2x Orthanc now, 3x as the goal; scaling with cores.
#
# usage: benches/rendered.sh
#   env: DURATION (10 s per row), WARMUP (2 s), COUNT (200 instances), CONNECTIONS ("1 2 8"),
#        IDLE_WAIT (30: seconds to wait before each row for other processes to leave the CPUs
#        idle, under 0.15 cores busy over 1 s; 0 disables), BENCH_DIR (keep generated input
#        files there between runs), PACS_BIN (target/release/pacs; copied before the run so a
#        rebuild cannot swap it mid-run), ORTHANC (/usr/sbin/Orthanc)
# needs: scripts/setup test, a release build, `apt-get install wrk dcmtk orthanc orthanc-dicomweb`.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
COUNT="${COUNT:-200}"
CONNECTIONS="${CONNECTIONS:-1 2 8}"
IDLE_WAIT="${IDLE_WAIT:-30}"
SEED=rendered
export TCP_NODELAY=1   # dcmtk (storescu, and Orthanc's DICOM side) reads this
PY=.venv/bin/python
BIN="${PACS_BIN:-target/release/pacs}"
ORTHANC="${ORTHANC:-/usr/sbin/Orthanc}"
ORTHANC_PLUGINS=/usr/share/orthanc/plugins
[ -x "$PY" ] || scripts/setup test
for tool in wrk /usr/bin/storescu /usr/bin/time curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk dcmtk time curl)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "no $BIN (cargo build --release)" >&2; exit 1; }
if [ ! -x "$ORTHANC" ] || [ ! -e "$ORTHANC_PLUGINS/libOrthancDicomWeb.so" ]; then
  echo "$ORTHANC or its DICOMweb plugin is missing (apt-get install orthanc orthanc-dicomweb)" >&2; exit 1
fi
STARTED=$(date +%s)
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)

TMP=$(mktemp -d /tmp/pacs-rendered.XXXXXX)
GEN="${BENCH_DIR:-$TMP/gen}"
RES="$TMP/results"
mkdir -p "$GEN" "$RES"
PIDS=()
# cleanup on exit: stop everything in PIDS, remove TMP.
. "$(dirname "$0")/common.sh"

log() { echo "[$(date +%T)] $*" >&2; }
note() { echo "$*" >>"$RES/notes.txt"; log "note: $*"; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # PID: user + system clock ticks so far
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }   # all CPUs, not idle
note "machine: $NPROC cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), load average at start $(cut -d' ' -f1-3 /proc/loadavg); other work on the machine skews both servers' numbers"

# The binary is copied so that a rebuild of target/release/pacs during the run cannot change it.
cp "$BIN" "$TMP/pacs"
note "pacs: $BIN built $(date -r "$BIN" '+%F %T'), tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes'); Orthanc $("$ORTHANC" --version 2>/dev/null | head -1 | awk '{print $NF}') + DICOMweb plugin, defaults (HttpThreadsCount 50)"


# start_orthanc DIR: sets ORTHANC_PID ORTHANC_DICOM ORTHANC_HTTP
. "$(dirname "$0")/orthanc.sh"

send() { # SERVER AE PORT DIR: one storescu association
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/storescu -aet BENCH -aec "$2" 127.0.0.1 "$3" --scan-directories --scan-pattern '*.dcm' "$4"
  t1=$(date +%s.%N)
  log "$1: stored $COUNT instances in $(printf '%.1f' "$(echo "$t1 - $t0" | bc -l)") s"
}

# ---- input data ------------------------------------------------------------------------------
DATA="$GEN/$SEED-$COUNT"
if [ ! -f "$DATA/.done" ]; then
  log "generating $COUNT 512x512 16-bit CT instances ..."
  rm -rf "$DATA"
  $PY tests/support/gen_instances.py "$DATA" "$COUNT" --per-series "$COUNT" \
    --series-per-study 1 --patients 1 --seed "$SEED"
  touch "$DATA/.done"
fi
# The instance paths, from gen_instances.py's UID scheme (patient 0, study 0, series 0).
$PY - "$SEED" "$COUNT" >"$TMP/paths.txt" <<'PY'
import sys
sys.path.insert(0, "tests/support")
import dicomgen
seed, count = sys.argv[1], int(sys.argv[2])
study, series = dicomgen.uid(f"{seed}/0/0"), dicomgen.uid(f"{seed}/0/0/0")
for i in range(count):
    inst = dicomgen.uid(f"{seed}/0/0/0/{i}")
    print(f"/dicom-web/studies/{study}/series/{series}/instances/{inst}/rendered")
PY
[ "$(wc -l <"$TMP/paths.txt")" = "$COUNT" ] || { echo "could not list the instance URLs" >&2; exit 1; }
note "gen_instances.py gives all $COUNT instances the same pixel data (one phantom, noise seeded alike); each is still read and decoded from its own file on every request"
note "Orthanc's DICOMweb plugin accepts \`window\` only as center,width,function: both servers get \`window=C,W,linear\`; default JPEG quality is 90 on both (no \`quality\` sent)"

# ---- the wrk script ----------------------------------------------------------------------------
# Request n asks for instance n % COUNT with window center -100 + n % 499 and width
# 200 + n % 997: COUNT (200 = 2^3 5^2), 499 and 997 are coprime, so n -> (instance, center, width)
# is one-to-one for n < COUNT * 499 * 997 (99.5 million at 200). Each run of wrk starts its
# threads at their own offsets (run_wrk), so no (instance, window) pair is asked twice of a server
# in the whole script, and within a row the window sweeps its whole range every ~1,000 requests.
# Both servers get the same sequence in the same row. Any answer other than 200 is counted;
# done() prints one machine-readable RESULT line.
{
  echo "local paths = {"
  sed 's/.*/  "&",/' "$TMP/paths.txt"
  cat <<'LUA'
}
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  n = tonumber(args[1] or "0") + tid * 5000000
  bad = 0
  bad_status = 0
end
function request()
  local path = paths[n % #paths + 1] .. "?window=" .. (-100 + n % 499) .. "," ..
    (200 + n % 997) .. ",linear"
  n = n + 1
  return wrk.format("GET", path, { ["Accept"] = "image/jpeg" })
end
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    bad_status = status
  end
end
function done(summary, latency, requests)
  local bad, status = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("bad")
    if t:get("bad_status") ~= 0 then status = t:get("bad_status") end
  end
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d %d\n", summary.requests,
    summary.duration, summary.bytes, bad, status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
LUA
} >"$TMP/rendered.lua"

# ---- servers -----------------------------------------------------------------------------------
log "starting Orthanc ..."
start_orthanc "$TMP/orthanc"
send orthanc ORTHANC "$ORTHANC_DICOM" "$DATA"
log "Orthanc holds: $(curl -s "http://127.0.0.1:$ORTHANC_HTTP/statistics" | tr -d ' \n')"
log "starting pacs ..."
start_pacs "$TMP/pacs" "$TMP/pacs-data" "$TMP/pacs.log"
send pacs PACS "$PACS_DICOM" "$DATA"
log "pacs holds: $(curl -s "http://127.0.0.1:$PACS_HTTP/api/statistics" | tr -d ' \n')"
SERVERS=("orthanc $ORTHANC_HTTP $ORTHANC_PID" "pacs $PACS_HTTP $PACS_PID")

# ---- checks: every URL answers 200 image/jpeg, and a sample is a JPEG --------------------------
for s in "${SERVERS[@]}"; do
  set -- $s; server=$1; port=$2
  sample="$(head -1 "$TMP/paths.txt")?window=40.5,400.5,linear"   # never in the wrk sequence (integers)
  read -r code ctype size < <(curl -s -o "$TMP/sample-$server.jpg" \
    -w '%{http_code} %{content_type} %{size_download}\n' -H 'Accept: image/jpeg' "http://127.0.0.1:$port$sample")
  magic=$(head -c 2 "$TMP/sample-$server.jpg" | od -An -tx1 | tr -d ' \n')
  log "$server sample: HTTP $code, $ctype, $size bytes, starts $magic"
  if [ "$code" != 200 ] || [ "$magic" != ffd8 ]; then
    echo "$server: the sample rendered request answered HTTP $code starting $magic (want 200 and a JPEG, FF D8):" >&2
    head -c 600 "$TMP/sample-$server.jpg" >&2; echo >&2
    exit 1
  fi
  printf '%s\t%s\n' "$server" "$size" >>"$RES/samples.tsv"
  # One keep-alive curl over all the instance URLs (also brings the files into the page cache).
  bad=$(sed "s|^|url = \"http://127.0.0.1:$port|; s|\$|?window=50.5,350.5,linear\"\noutput = /dev/null|" "$TMP/paths.txt" |
    curl -s -K - -H 'Accept: image/jpeg' -w '%{http_code} %{content_type}\n' |
    grep -vc '^200 image/jpeg' || true)
  [ "$bad" = 0 ] || { echo "$server: $bad of the $COUNT instance URLs did not answer 200 image/jpeg" >&2; exit 1; }
  log "$server: all $COUNT rendered URLs answer 200 image/jpeg"
done

# ---- load --------------------------------------------------------------------------------------
# run_wrk SERVER PORT CONNECTIONS SECONDS OFFSET OUT: one wrk run starting its request sequence at
# OFFSET (thread t at OFFSET + t * 5,000,000); OUT gets wrk's output, OUT.time wrk's own CPU time
run_wrk() {
  local threads=$(( $3 < 2 ? $3 : 2 ))
  /usr/bin/time -f '%U %S %e' -o "$6.time" \
    wrk -t"$threads" -c"$3" -d"$4s" --timeout 10s --latency -s "$TMP/rendered.lua" \
    "http://127.0.0.1:$2" -- "$5" >"$6" 2>&1 || {
      echo "wrk failed against $1:" >&2; cat "$6" >&2; return 1; }
}
wait_idle() { # before each server's row: up to IDLE_WAIT s for a 1 s sample with under 0.15 cores busy
  local start=$SECONDS a b
  [ "$IDLE_WAIT" -gt 0 ] || return 0
  while :; do
    a=$(busy_ticks); sleep 1; b=$(busy_ticks)
    [ $(( (b - a) * 100 )) -lt $(( 15 * CLK_TCK )) ] && break
    if [ $((SECONDS - start)) -ge "$IDLE_WAIT" ]; then
      note "the machine did not go idle within $IDLE_WAIT s before the $server $c-connection row (other processes busy)"
      break
    fi
  done
  [ $((SECONDS - start)) -le 1 ] || log "waited $((SECONDS - start)) s for other processes to leave the CPUs"
}
FAILED=0
ROW=0
for c in $CONNECTIONS; do
  # Offsets 10 million apart per run (warm-up, measured) and row: unique for up to 4 rows of
  # under 5 million requests per thread; beyond that sequences may repeat (still not cached
  # within a run).
  warm_offset=$(( (2 * ROW) * 10000000 % 90000000 ))
  run_offset=$(( (2 * ROW + 1) * 10000000 % 90000000 ))
  ROW=$((ROW + 1))
  for s in "${SERVERS[@]}"; do
    set -- $s; server=$1; port=$2; pid=$3
    wait_idle
    log "$server, $c connection(s): ${WARMUP} s warm-up ..."
    run_wrk "$server" "$port" "$c" "$WARMUP" "$warm_offset" "$RES/warmup-$server-$c.txt"
    t0=$(cpu_ticks "$pid"); b0=$(busy_ticks)
    run_wrk "$server" "$port" "$c" "$DURATION" "$run_offset" "$RES/wrk-$server-$c.txt"
    t1=$(cpu_ticks "$pid"); b1=$(busy_ticks)
    read -r _ requests dur_us bytes bad status econn eread ewrite etimeout p50 p99 \
      < <(grep '^RESULT ' "$RES/wrk-$server-$c.txt")
    read -r wuser wsys welapsed <"$RES/wrk-$server-$c.txt.time"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$c" "$requests" "$dur_us" "$bytes" \
      "$bad" "$((econn + eread + ewrite + etimeout))" "$p50" "$p99" \
      "$(echo "($t1 - $t0) / $CLK_TCK" | bc -l)" "$(echo "$wuser + $wsys" | bc -l)" "$welapsed" \
      "$(echo "($b1 - $b0) / $CLK_TCK" | bc -l)" >>"$RES/runs.tsv"
    log "$server, $c connection(s): $requests images in $(echo "$dur_us / 1000000" | bc -l | cut -c1-5) s," \
      "p50 $p50 us, p99 $p99 us, non-200 $bad, socket errors $((econn + eread + ewrite + etimeout))"
    if [ "$bad" != 0 ] || [ "$((econn + eread + ewrite + etimeout))" != 0 ]; then
      FAILED=1
      echo "!!! $server, $c connection(s): $bad answers other than 200 (last status $status)," \
        "socket errors connect $econn read $eread write $ewrite timeout $etimeout" >&2
      sed -n '1,30p' "$RES/wrk-$server-$c.txt" >&2
    fi
  done
done
note "load average at end $(cut -d' ' -f1-3 /proc/loadavg); elapsed $(( $(date +%s) - STARTED )) s"

# ---- report ------------------------------------------------------------------------------------
$PY - "$RES" "$NPROC" "$DURATION" "$WARMUP" "$COUNT" <<'PY'
import os, sys
res, nproc, duration, warmup, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
runs = {}
for line in open(os.path.join(res, "runs.tsv")):
    (server, c, requests, dur_us, nbytes, bad, sockerr, p50, p99,
     srv_cpu, wrk_cpu, wrk_elapsed, busy) = line.rstrip("\n").split("\t")
    secs = int(dur_us) / 1e6
    n = int(requests)
    runs[(server, int(c))] = dict(
        rate=n / secs, n=n, kb=int(nbytes) / max(n, 1) / 1024, bad=int(bad), sockerr=int(sockerr),
        p50=int(p50) / 1000, p99=int(p99) / 1000, cpu_ms=float(srv_cpu) * 1000 / max(n, 1),
        cores=float(srv_cpu) / secs, wrk=float(wrk_cpu) / (float(wrk_elapsed) * nproc) * 100,
        # CPU time of everything else on the machine during the row, in cores
        other=max(0.0, float(busy) - float(srv_cpu) - float(wrk_cpu)) / secs)
samples = dict(l.split() for l in open(os.path.join(res, "samples.tsv")))
conns = sorted({c for _, c in runs})

def cell(r):
    if not r:
        return "n/a"
    return f"{r['rate']:.0f}" + ("" if r["bad"] == 0 and r["sockerr"] == 0 else
                                  f" **FAILED: {r['bad']} non-200, {r['sockerr']} socket errors**")

print()
print(f"WADO-RS rendered JPEG, `GET .../instances/{{uid}}/rendered?window=C,W,linear` "
      f"(Accept: image/jpeg), {count} CT 512x512 16-bit instances, every request a different "
      f"window (no cache can answer), default quality (90 on both); wrk HTTP/1.1 keep-alive over "
      f"loopback, {duration} s per row after a {warmup} s warm-up; {nproc} cores shared by wrk and the server")
print()
print("| connections | Orthanc images/s | pacs images/s | pacs/Orthanc | Orthanc p50 / p99 ms "
      "| pacs p50 / p99 ms | Orthanc CPU ms/image (cores busy) | pacs CPU ms/image (cores busy) "
      "| wrk CPU share, Orthanc / pacs rows | other processes, cores busy, Orthanc / pacs rows |")
print("|---|---|---|---|---|---|---|---|---|---|")
lat = lambda r: f"{r['p50']:.1f} / {r['p99']:.1f}" if r else "n/a"
cpu = lambda r: f"{r['cpu_ms']:.2f} ({r['cores']:.2f})" if r else "n/a"
wrk = lambda r: f"{r['wrk']:.0f}%" if r else "n/a"
other = lambda r: (f"**{r['other']:.2f}**" if r["other"] > 0.2 else f"{r['other']:.2f}") if r else "n/a"
for c in conns:
    o, p = runs.get(("orthanc", c)), runs.get(("pacs", c))
    ratio = f"{p['rate'] / o['rate']:.2f}x" if o and p else "n/a"
    print(f"| {c} | {cell(o)} | {cell(p)} | {ratio} | {lat(o)} | {lat(p)} | {cpu(o)} | {cpu(p)} "
          f"| {wrk(o)} / {wrk(p)} | {other(o)} / {other(p)} |")
print()
for server, name in (("orthanc", "Orthanc"), ("pacs", "pacs")):
    base = runs.get((server, conns[0]))
    if base:
        scale = ", ".join(f"{runs[(server, c)]['rate'] / base['rate']:.2f}x at {c}"
                          for c in conns[1:] if (server, c) in runs)
        scale = f"scaling over {conns[0]} connection(s): {scale}; " if scale else ""
        print(f"- {name}: {scale}mean answer "
              f"{base['kb']:.1f} KB (sample at window 40.5,400.5: {int(samples.get(server, 0)) / 1024:.1f} KB)")
busy = [k for k, r in runs.items() if r["other"] > 0.2]
if busy:
    print(f"- **The machine was not quiet**: other processes kept more than 0.2 cores busy during "
          f"{len(busy)} of {len(runs)} rows (bold above): those rows understate the servers; "
          f"re-run on an idle machine for numbers to quote.")
print(f"- CPU ms/image: the server process's user+system CPU time over the row / images; cores busy: "
      f"that CPU time / the row's duration (at most {nproc}). wrk CPU share: wrk's CPU time / "
      f"({nproc} cores x its run time). Other processes: the machine's busy CPU time (/proc/stat) "
      f"minus the server's and wrk's, over the row.")
for line in open(os.path.join(res, "notes.txt")):
    print(f"- {line.rstrip()}")
PY
[ "$FAILED" = 0 ] || { echo "FAILED: some rows had answers other than 200 or socket errors (see above)" >&2; exit 1; }
