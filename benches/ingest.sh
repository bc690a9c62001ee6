#!/usr/bin/env bash
# Whole-server C-STORE ingest benchmark: N generated 512x512 16-bit CT instances sent with dcmtk
# storescu over 1 and 4 associations to `pacs`, and to dcmtk's own storescp writing the same
# files to disk (the receive limit of this machine). Prints instances/s, MB/s, the ratio to
# storescp and the server's peak RSS.
#
# usage: benches/ingest.sh [N]      (default 2000; needs scripts/setup test and a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
export TCP_NODELAY=1   # dcmtk reads this: no Nagle stalls on the client side
PY=.venv/bin/python
BIN="${PACS_BIN:-target/release/pacs}"
[ -x "$PY" ] || scripts/setup test
[ -x "$BIN" ] || cargo build --release --locked

WORK="${BENCH_DIR:-/tmp/pacs-bench}"
SRC="$WORK/ct-$N"
if [ ! -f "$SRC/.done" ]; then
  echo "generating $N CT instances in $SRC ..."
  rm -rf "$SRC"
  $PY tests/support/gen_instances.py "$SRC" "$N" --per-series 250 --series-per-study 2
  # Four disjoint shares for the parallel runs.
  for i in 0 1 2 3; do mkdir -p "$SRC/part$i"; done
  k=0
  for f in "$SRC"/*.dcm; do mv "$f" "$SRC/part$((k % 4))/"; k=$((k + 1)); done
  touch "$SRC/.done"
fi
BYTES=$(du -sb "$SRC" | cut -f1)
MB=$(echo "$BYTES / 1000000" | bc -l)

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# send ASSOCIATIONS AE PORT: storescu over the four shares, 1 or 4 at a time; prints seconds
send() {
  local assocs=$1 ae=$2 port=$3 start end
  start=$(date +%s.%N)
  if [ "$assocs" = 1 ]; then
    /usr/bin/storescu -aec "$ae" 127.0.0.1 "$port" --scan-directories --scan-pattern '*.dcm' \
      "$SRC/part0" "$SRC/part1" "$SRC/part2" "$SRC/part3"
  else
    for i in 0 1 2 3; do
      /usr/bin/storescu -aec "$ae" 127.0.0.1 "$port" --scan-directories --scan-pattern '*.dcm' \
        "$SRC/part$i" &
    done
    wait
  fi
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

report() { # NAME SECONDS [PEAK_RSS_KB]
  local ips mbs
  ips=$(echo "$N / $2" | bc -l)
  mbs=$(echo "$MB / $2" | bc -l)
  printf '%-28s %8.0f instances/s %8.1f MB/s %7.2f s' "$1" "$ips" "$mbs" "$2"
  [ -n "${3:-}" ] && printf '   peak RSS %6.1f MB' "$(echo "$3 / 1024" | bc -l)"
  printf '\n'
}

ROUNDS="${ROUNDS:-3}"
declare -A RUNS RSS
# The runs alternate (storescp, pacs, storescp, ...) so drift in the machine's disk speed hits
# both alike; each configuration reports its median round.
for round in $(seq 1 "$ROUNDS"); do
  for assocs in 1 4; do
    out="$WORK/storescp-out"; rm -rf "$out"; mkdir -p "$out"
    port=$(free_port)
    /usr/bin/storescp -aet STORESCP -od "$out" "$port" & scp=$!
    sleep 0.5
    RUNS["storescp-$assocs"]+="$(send "$assocs" STORESCP "$port") "
    kill "$scp"; wait "$scp" 2>/dev/null || true
    rm -rf "$out"

    data="$WORK/pacs-data"; rm -rf "$data"
    log="$WORK/pacs.log"
    PACS_LOG=warn,pacs::server=info $BIN serve --data "$data" --dicom-port 0 --http-port 0 2>"$log" & pid=$!
    port=""; hport=""
    for _ in $(seq 1 100); do
      port=$(sed -n 's/.*DICOM listening on [^ ]*:\([0-9]*\).*/\1/p' "$log" | head -1)
      hport=$(sed -n 's/.*HTTP listening on [^ ]*:\([0-9]*\).*/\1/p' "$log" | head -1)
      [ -n "$port" ] && [ -n "$hport" ] && break; sleep 0.1
    done
    RUNS["pacs-$assocs"]+="$(send "$assocs" PACS "$port") "
    RSS["pacs-$assocs"]+="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status") "
    stored=$(curl -s "http://127.0.0.1:$hport/api/statistics")
    echo "round $round, $assocs assoc: pacs index holds $stored" >&2
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$data"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for assocs in 1 4; do
  scp=$(echo "${RUNS["storescp-$assocs"]}" | median)
  pacs=$(echo "${RUNS["pacs-$assocs"]}" | median)
  rss=$(echo "${RSS["pacs-$assocs"]}" | tr ' ' '\n' | sort -g | tail -1)
  report "storescp, $assocs assoc" "$scp"
  report "pacs, $assocs assoc" "$pacs" "$rss"
  printf '    pacs / storescp: %.0f%%\n' "$(echo "100 * $scp / $pacs" | bc -l)"
done
echo "($N instances of 512x512 16-bit CT, $(printf '%.0f' "$MB") MB, median of $ROUNDS rounds, $(nproc) cores)"
