#!/usr/bin/env bash
# Query/retrieve benchmark: a synthetic index (default 100,000 studies / 1,000,000 instances,
# records only), C-FIND study-level latency in-process and over DIMSE, and C-MOVE throughput of
# a 500-instance CT study to a local dcmtk storescp compared with C-STORE ingest of the same study.
#
# usage: benches/qr.sh [STUDIES]      (needs scripts/setup test)
set -euo pipefail
cd "$(dirname "$0")/.."
STUDIES="${1:-100000}"
export TCP_NODELAY=1
PY=.venv/bin/python
[ -x "$PY" ] || scripts/setup test
WORK="${BENCH_DIR:-/tmp/pacs-qr-bench}"
mkdir -p "$WORK"
# Kept between runs; the name changes when the stored record encoding does (v2: MessagePack).
DATA="$WORK/data-v2-$STUDIES"
# PACS_BIN: the server binary to measure (default target/release/pacs), e.g. an older build
# for an A/B; the index, the clients and the populate step come from this tree.
BIN="${PACS_BIN:-target/release/pacs}"

cargo build --release --locked -q
cargo bench --locked -q --bench qr_populate -- "$DATA" "$STUDIES" 10

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DEST_PORT=$(free_port)
# No workers: the built-in analyzers would be working through the populated studies while
# the queries are timed.
cat > "$WORK/pacs.toml" <<TOML
[[nodes]]
ae_title = "DEST"
host = "127.0.0.1"
port = $DEST_PORT

[workers]
quality = false
TOML

start_pacs() { # DATA_DIR -> sets PID PORT
  local log="$WORK/pacs.log"
  PACS_LOG=warn,pacs::server=info "$BIN" serve --config "$WORK/pacs.toml" --data "$1" \
    --dicom-port 0 --http-port 0 2>"$log" & PID=$!
  PORT=""
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/.*DICOM listening on [^ ]*:\([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$PORT" ] && break; sleep 0.1
  done
}

cargo bench --locked -q --bench cfind_latency --no-run 2>/dev/null
start_pacs "$DATA"
cargo bench --locked -q --bench cfind_latency -- "$PORT" 100
$PY benches/cfind_latency.py "$PORT" 100
kill -TERM "$PID"; wait "$PID" || true

# C-MOVE: a fresh archive holding one 500-instance CT study.
SRC="$WORK/ct500"
[ -f "$SRC/.done" ] || { $PY tests/support/gen_instances.py "$SRC" 500 --per-series 500 --series-per-study 1 --patients 1 --seed move; touch "$SRC/.done"; }
rm -rf "$WORK/move-data" "$WORK/dest"; mkdir -p "$WORK/dest"
start_pacs "$WORK/move-data"
t0=$(date +%s.%N)
/usr/bin/storescu -aec PACS 127.0.0.1 "$PORT" --scan-directories --scan-pattern '*.dcm' "$SRC"
t1=$(date +%s.%N)
/usr/bin/storescp -aet DEST -od "$WORK/dest" "$DEST_PORT" & SCP=$!
sleep 0.5
STUDY=$($PY -c "import sys; sys.path.insert(0,'tests/support'); import dicomgen; print(dicomgen.uid('move/0/0'))")
t2=$(date +%s.%N)
/usr/bin/movescu -S -aec PACS -aem DEST 127.0.0.1 "$PORT" -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$STUDY"
t3=$(date +%s.%N)
kill "$SCP"; wait "$SCP" 2>/dev/null || true
kill -TERM "$PID"; wait "$PID" || true
moved=$(find "$WORK/dest" -type f | wc -l)
ingest=$(echo "500 / ($t1 - $t0)" | bc -l)
move=$(echo "$moved / ($t3 - $t2)" | bc -l)
printf 'C-STORE ingest of the study (1 assoc):  %6.0f instances/s\n' "$ingest"
printf 'C-MOVE of the study to storescp:        %6.0f instances/s (%d moved, %.0f%% of ingest)\n' \
  "$move" "$moved" "$(echo "100 * $move / $ingest" | bc -l)"
