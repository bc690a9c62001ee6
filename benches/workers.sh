#!/usr/bin/env bash
# Cost of the worker modules on ingest, and how late their deliveries arrive.
#  - COUNT (2000) generated 512x512 16-bit CT instances (tests/support/gen_instances.py), 20
#    studies of 2 series of 50, sent in file order with dcmtk storescu over 1 association and
#    over 4 in parallel (each a contiguous quarter: whole studies), to a fresh `pacs` each time;
#  - configurations (MODES, default "none all"), each on a fresh server and data directory:
#    - none: pacs.toml `[workers] quality = false` and nothing else (no worker at all;
#      stable_after_secs stays at its 60 s default, so no stability event fires either);
#    - all: stable_after_secs = STABLE_AFTER (2) and ehr, billing, pharmacy, portal and ai
#      pointed at a local threaded HTTP receiver (benches/workers_receiver.py: 201 to POST,
#      200 to anything else, logging arrival time, path and Idempotency-Key), quality analyzers
#      on (their default);
#    - to split the cost of "all": http (as all, quality analyzers off), quality (the quality
#      analyzers alone) and idle (as all but with the default 60 s quiet period: the workers
#      follow the outbox but get no event during the ingest; their deliveries are not waited
#      for);
#    Studies go stable (quiet for STABLE_AFTER s) while later ones are still arriving, so the
#    workers run during the ingest as well as after it;
#  - after each ingest with workers, waits (at most WAIT s) until every stored study/series had
#    its StudyStable/SeriesStable event and each such event has a settled (not pending)
#    delivery record for each worker wanting it, then keeps the outbox (GET /api/outbox), the
#    delivery records (GET /api/events?worker=W) and the receiver's log.
# Prints markdown tables: ingest instances/s without vs with workers (median of ROUNDS; the
# order of the configurations alternates between rounds), the ratio and whether the ingest with
# workers is < 10% slower; per run, CPU use of pacs / storescu / receiver / everything else and
# the time from the end of the ingest to the last delivery and until all settled; delivery lag
# (receiver arrival - event time_ms) p50/p99/max per worker; delivered/held/skipped/dead counts.
#
# usage: benches/workers.sh
#   env: ROUNDS (5), MODES ("none all"; also "http", "quality", "idle"), ASSOCS ("1 4"), COUNT (2000,
#        a multiple of 400), STABLE_AFTER (2 s), WAIT (120 s), BENCH_DIR (keep the generated
#        instances there between runs), PACS_BIN (target/release/pacs; copied first so a
#        rebuild cannot swap it mid-run)
# needs: scripts/setup test, a release build, dcmtk (storescu), curl, bc. ~25 s per round
# with the defaults on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
MODES="${MODES:-none all}"
ASSOCS="${ASSOCS:-1 4}"
COUNT="${COUNT:-2000}"
STABLE_AFTER="${STABLE_AFTER:-2}"
WAIT="${WAIT:-120}"
SEED=workers
export TCP_NODELAY=1   # dcmtk reads this: no Nagle stalls on the client side
PY=.venv/bin/python
BIN="${PACS_BIN:-target/release/pacs}"
HELPER=benches/workers_receiver.py
[ -x "$PY" ] || scripts/setup test
for tool in /usr/bin/storescu curl bc; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dcmtk curl bc)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "no $BIN (cargo build --release)" >&2; exit 1; }
[ $((COUNT % 400)) = 0 ] || { echo "COUNT must be a multiple of 400 (whole studies of 100 per association)" >&2; exit 1; }
STARTED=$(date +%s)
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/pacs-workers.XXXXXX)
GEN="${BENCH_DIR:-$TMP/gen}"
RES="$TMP/results"
mkdir -p "$GEN" "$RES"
PIDS=()
# cleanup on exit: stop everything in PIDS, remove TMP.
. "$(dirname "$0")/common.sh"

log() { echo "[$(date +%T)] $*" >&2; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # PID: user + system clock ticks so far
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }   # all CPUs
forget() { # PID: no longer ours to clean up
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
  PIDS=("${keep[@]}")
}
stop() { # PID: TERM, wait, forget
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}

cp "$BIN" "$TMP/pacs"
log "pacs: $BIN built $(date -r "$BIN" '+%F %T'), tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes'); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- input data ------------------------------------------------------------------------------
DATA="$GEN/$SEED-$COUNT"
if [ ! -f "$DATA/.done" ]; then
  log "generating $COUNT 512x512 16-bit CT instances ($((COUNT / 100)) studies x 2 series x 50) ..."
  rm -rf "$DATA"
  $PY tests/support/gen_instances.py "$DATA" "$COUNT" --per-series 50 --series-per-study 2 \
    --seed "$SEED"
  touch "$DATA/.done"
fi
# File order = study order (ct000000.dcm ...). One association sends them all in that order;
# four associations get a contiguous quarter each (whole studies), as four modalities would.
mapfile -t FILES < <(find "$DATA" -name 'ct*.dcm' | sort)
[ "${#FILES[@]}" = "$COUNT" ] || { echo "expected $COUNT files in $DATA, found ${#FILES[@]}" >&2; exit 1; }
QUARTER=$((COUNT / 4))
MB=$(du -sb --exclude=.done "$DATA" | awk '{printf "%.0f", $1 / 1e6}')

# start_pacs (benches/common.sh): BIN DATA_DIR LOG [--config FILE]

# start_receiver DIR: sets RECV_PID RECV_PORT (log in DIR/received.jsonl)
start_receiver() {
  $PY "$HELPER" serve "$1/receiver.port" "$1/received.jsonl" 2>"$1/receiver.err" &
  RECV_PID=$!
  PIDS+=("$RECV_PID")
  for _ in $(seq 1 100); do
    [ -f "$1/receiver.port" ] && { RECV_PORT=$(cat "$1/receiver.port"); return 0; }
    kill -0 "$RECV_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "receiver did not start:" >&2; cat "$1/receiver.err" >&2; return 1
}

# send ASSOCS PORT LOGFILE: storescu, all files on one association or a quarter on each of four
send() {
  local i pids=() rc=0
  if [ "$1" = 1 ]; then
    /usr/bin/storescu -aet BENCH -aec PACS 127.0.0.1 "$2" "${FILES[@]}" >>"$3" 2>&1 || rc=$?
  else
    for i in 0 1 2 3; do
      /usr/bin/storescu -aet BENCH -aec PACS 127.0.0.1 "$2" \
        "${FILES[@]:$((i * QUARTER)):$QUARTER}" >>"$3" 2>&1 &
      pids+=($!)
      PIDS+=($!)   # killed by cleanup if the script stops meanwhile
    done
    for i in "${pids[@]}"; do wait "$i" || rc=$?; done
    for i in "${pids[@]}"; do forget "$i"; done
  fi
  return "$rc"
}

# children_cpu VAR: user + system CPU seconds of this shell's reaped children (storescu) into VAR;
# `times` must run in this shell, not in a $(...) subshell.
children_cpu() {
  times >"$TMP/times"
  printf -v "$1" '%s' "$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
    print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$TMP/times")"
}

# write_config MODE FILE [RECEIVER_BASE_URL]
write_config() {
  case "$1" in
    none) printf '[workers]\nquality = false\n' >"$2" ;;
    quality) printf 'stable_after_secs = %s\n' "$STABLE_AFTER" >"$2" ;;
    all | http | idle)
      {
        # idle: the default quiet period (60 s), so no worker gets an event during the ingest
        [ "$1" != idle ] && printf 'stable_after_secs = %s\n' "$STABLE_AFTER"
        [ "$1" = http ] && printf '[workers]\nquality = false\n'
        printf '[workers.ehr]\nurl = "%s/fhir"\n' "$3"
        printf '[workers.billing]\nurl = "%s/billing"\n' "$3"
        printf '[workers.pharmacy]\nurl = "%s/pharmacy"\n' "$3"
        printf '[workers.portal]\nurl = "%s/portal"\n' "$3"
        printf '[workers.ai]\nurl = "%s/ai"\n' "$3"
      } >"$2" ;;
    *) echo "unknown mode $1 (none, all, http, quality, idle)" >&2; exit 1 ;;
  esac
}

# run ROUND MODE ASSOCS: one fresh server, one timed ingest (and, with workers, their deliveries)
run() {
  local round=$1 mode=$2 assocs=$3 dir t0 t1 c0 c1 b0 b1 s0 s1 r0=0 r1=0 stored rec workers=""
  dir="$RES/r$round-$mode-$assocs"
  mkdir -p "$dir"
  case "$mode" in
    all) workers=ehr,billing,pharmacy,portal,ai,quality ;;
    http) workers=ehr,billing,pharmacy,portal,ai ;;
    quality) workers=quality ;;
  esac
  RECV_PID=""
  if [ "$mode" = all ] || [ "$mode" = http ] || [ "$mode" = idle ]; then
    start_receiver "$dir"
    write_config "$mode" "$dir/pacs.toml" "http://127.0.0.1:$RECV_PORT"
  else
    write_config "$mode" "$dir/pacs.toml"
  fi
  sync   # the previous run's writes must not drain into this one
  start_pacs "$TMP/pacs" "$dir/data" "$dir/pacs.log" --config "$dir/pacs.toml"
  [ -n "$RECV_PID" ] && r0=$(cpu_ticks "$RECV_PID")
  c0=$(cpu_ticks "$PACS_PID"); b0=$(busy_ticks); children_cpu s0
  t0=$(date +%s.%N)
  if ! send "$assocs" "$PACS_DICOM" "$dir/storescu.log"; then
    echo "storescu failed (round $round, $mode, $assocs assoc):" >&2; tail -20 "$dir/storescu.log" >&2; exit 1
  fi
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$PACS_PID"); b1=$(busy_ticks); children_cpu s1
  [ -n "$RECV_PID" ] && r1=$(cpu_ticks "$RECV_PID")
  stored=$(curl -sf "http://127.0.0.1:$PACS_HTTP/api/statistics")
  case "$stored" in
    *"\"instances\":$COUNT,"*) ;;
    *) echo "round $round, $mode, $assocs assoc: pacs holds $stored, not $COUNT instances" >&2; exit 1 ;;
  esac
  local secs cpu scu recv other
  secs=$(echo "$t1 - $t0" | bc -l)
  cpu=$(echo "($c1 - $c0) / $CLK_TCK" | bc -l)
  scu=$(echo "$s1 - $s0" | bc -l)
  recv=$(echo "($r1 - $r0) / $CLK_TCK" | bc -l)
  other=$(echo "($b1 - $b0) / $CLK_TCK - $cpu - $scu - $recv" | bc -l)
  log "round $round, $mode, $assocs assoc: $(printf '%.2f s, %.0f inst/s; CPU s: pacs %.1f, storescu %.1f, receiver %.1f, other %.1f' "$secs" "$(echo "$COUNT / $secs" | bc -l)" "$cpu" "$scu" "$recv" "$other")"
  rec=$(printf '{"round": %d, "mode": "%s", "assocs": %d, "ingest_s": %.4f, "ingest_start": %s, "ingest_end": %s, "pacs_cpu": %.2f, "storescu_cpu": %.2f, "other_cpu": %.2f, "detail": "%s"' \
    "$round" "$mode" "$assocs" "$secs" "$t0" "$t1" "$cpu" "$scu" "$other" "$dir/detail.json")
  [ -n "$RECV_PID" ] && rec+=$(printf ', "receiver_cpu": %.2f' "$recv")
  if [ -n "$workers" ]; then
    $PY "$HELPER" wait "$PACS_HTTP" "$workers" "$dir/received.jsonl" "$dir/detail.json" "$WAIT"
    local total
    total=$(echo "($(cpu_ticks "$PACS_PID") - $c0) / $CLK_TCK" | bc -l)
    rec+=$(printf ', "pacs_cpu_total": %.2f' "$total")
    log "  settled $(printf '%.1f' "$(echo "$(date +%s.%N) - $t1" | bc -l)") s after the ingest ended; $(cat "$dir/received.jsonl" 2>/dev/null | wc -l) requests received; pacs CPU from ingest start $(printf '%.1f' "$total") s"
    grep -E ' (ERROR|error) ' "$dir/pacs.log" | head -3 >&2 || true
  fi
  echo "$rec}" >>"$RES/runs.jsonl"
  stop "$PACS_PID"
  [ -n "$RECV_PID" ] && stop "$RECV_PID"
  rm -rf "$dir/data"
}

printf '{"count": %d, "mb": %d, "stable_after": %s}\n' "$COUNT" "$MB" "$STABLE_AFTER" >"$RES/meta.json"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate the order of the configurations, so drift in the machine hits all alike.
  if [ $((round % 2)) = 1 ]; then order="$MODES"; else order=$(echo "$MODES" | tr ' ' '\n' | tac | xargs); fi
  for assocs in $ASSOCS; do
    for mode in $order; do
      run "$round" "$mode" "$assocs"
    done
  done
done

$PY "$HELPER" summary "$RES"
echo
echo "($COUNT instances, $MB MB, $((COUNT / 100)) studies x 2 series x 50; stable_after_secs = $STABLE_AFTER in the runs with workers; $(nproc) cores, load average at end $(cut -d' ' -f1-3 /proc/loadavg); total runtime $(( $(date +%s) - STARTED )) s)"
