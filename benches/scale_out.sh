#!/usr/bin/env bash
# Scale-out benchmark: C-STORE ingest of N generated 512x512 CT instances over 4 associations
# into pacs on its embedded default, on PostgreSQL (files on disk; one node), on PostgreSQL +
# an S3-compatible bucket (moto; one node, and two nodes sharing database and bucket, two
# associations each), and into Orthanc 1.10 with its PostgreSQL index plugin (files on disk),
# all in the same run; then C-FIND and QIDO latency (p50/p99) at STUDIES studies of 10
# instances each on PostgreSQL. PostgreSQL is a throwaway cluster with its default
# durability (fsync on).
#
# usage: benches/scale_out.sh [N] [STUDIES]   (default 2000 and 100000; needs scripts/setup
#        test; installs orthanc-postgresql when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
STUDIES="${2:-100000}"
export TCP_NODELAY=1
PY=.venv/bin/python
BIN="${PACS_BIN:-target/release/pacs}"
[ -x "$PY" ] || scripts/setup test
[ -x "$BIN" ] || cargo build --release --locked
ORTHANC=/usr/sbin/Orthanc
ORTHANC_PG=/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so
if [ ! -f "$ORTHANC_PG" ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq orthanc-postgresql >/dev/null
fi

WORK="${BENCH_DIR:-/tmp/pacs-scale-bench}"
mkdir -p "$WORK"
PIDS=()
TMP="$WORK/run"; mkdir -p "$TMP"   # removed on exit by common.sh's cleanup
# cleanup (every process in PIDS) and start_pacs
. "$(dirname "$0")/common.sh"
stop_pg() {
  [ -n "${PGDIR:-}" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDIR/cluster" -m fast stop >/dev/null 2>&1 || true
}
trap 'cleanup; stop_pg' EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SRC="$WORK/ct-$N"
if [ ! -f "$SRC/.done" ]; then
  echo "generating $N CT instances in $SRC ..."
  rm -rf "$SRC"
  $PY tests/support/gen_instances.py "$SRC" "$N" --per-series 250 --series-per-study 2
  for i in 0 1 2 3; do mkdir -p "$SRC/part$i"; done
  k=0
  for f in "$SRC"/*.dcm; do mv "$f" "$SRC/part$((k % 4))/"; k=$((k + 1)); done
  touch "$SRC/.done"
fi

# --- a throwaway PostgreSQL (as the postgres user when root: it refuses to run as root)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# Kept between runs (the populated query database takes minutes to build).
PGDIR="$WORK/pg"; mkdir -p "$PGDIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR"
PGPORT=$(free_port)
[ -f "$PGDIR/cluster/PG_VERSION" ] || as_pg "$PGBIN/initdb" -A trust -U postgres -E UTF8 -D "$PGDIR/cluster" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/cluster" -l "$PGDIR/log" -w \
  -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=512MB" start >/dev/null
psql_() { psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qAt "$@"; }
fresh_db() { psql_ -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }

# --- moto, the S3-compatible server of the tests
S3PORT=$(free_port)
"$(dirname "$PY")/moto_server" -H 127.0.0.1 -p "$S3PORT" >/dev/null 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$S3PORT" && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench

# node NAME CONFIG: pacs with that config, data in $TMP/NAME; sets PORT HPORT PID
node() {
  start_pacs "$BIN" "$TMP/data-$1" "$TMP/$1.log" --config "$2"
  PORT=$PACS_DICOM; HPORT=$PACS_HTTP; PID=$PACS_PID
}

# send AE PORT PARTS...: one storescu association per share, all at once; prints seconds
send() {
  local ae=$1 port=$2 start end; shift 2
  start=$(date +%s.%N)
  for part in "$@"; do
    /usr/bin/storescu -aec "$ae" 127.0.0.1 "$port" --scan-directories --scan-pattern '*.dcm' "$SRC/$part" &
  done
  wait
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

# Two shares per node when two nodes run: PORT_A PORT_B
send2() {
  local start end
  start=$(date +%s.%N)
  for part in part0 part1; do
    /usr/bin/storescu -aec PACS 127.0.0.1 "$1" --scan-directories --scan-pattern '*.dcm' "$SRC/$part" &
  done
  for part in part2 part3; do
    /usr/bin/storescu -aec PACS 127.0.0.1 "$2" --scan-directories --scan-pattern '*.dcm' "$SRC/$part" &
  done
  wait
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

held() { curl -s "http://127.0.0.1:$1/api/statistics" | $PY -c 'import json,sys; print(json.load(sys.stdin)["instances"])'; }

declare -A RESULT
row() { RESULT["$1"]="$2"; printf '%-44s %8.0f instances/s  (%.1f s)\n' "$1" "$(echo "$N / $2" | bc -l)" "$2"; }

# 1. embedded default
echo "" > "$WORK/embedded.toml"
node embedded "$WORK/embedded.toml"
row "pacs embedded (RocksDB + files)" "$(send PACS "$PORT" part0 part1 part2 part3)"
[ "$(held "$HPORT")" = "$N" ] || { echo "embedded holds $(held "$HPORT")" >&2; exit 1; }
kill -TERM "$PID"; wait "$PID" || true

# 2. PostgreSQL + files, one node
fresh_db pacs_files
printf '[index]\nurl = "postgres://postgres@127.0.0.1:%s/pacs_files"\n' "$PGPORT" > "$WORK/pg-files.toml"
node pg-files "$WORK/pg-files.toml"
row "pacs PostgreSQL + files, 1 node" "$(send PACS "$PORT" part0 part1 part2 part3)"
[ "$(held "$HPORT")" = "$N" ] || { echo "pg-files holds $(held "$HPORT")" >&2; exit 1; }
kill -TERM "$PID"; wait "$PID" || true

# 3. PostgreSQL + S3, one node and two nodes
s3_config() { # DB BUCKET FILE
  $PY tests/support/s3_tool.py "http://127.0.0.1:$S3PORT" create "$2" >/dev/null
  printf '[index]\nurl = "postgres://postgres@127.0.0.1:%s/%s"\n[blobs]\nurl = "s3://%s/site"\nendpoint = "http://127.0.0.1:%s"\nallow_http = true\n' \
    "$PGPORT" "$1" "$2" "$S3PORT" > "$3"
}
fresh_db pacs_s3; s3_config pacs_s3 bench-one "$WORK/pg-s3.toml"
node pg-s3 "$WORK/pg-s3.toml"
row "pacs PostgreSQL + S3 (moto), 1 node" "$(send PACS "$PORT" part0 part1 part2 part3)"
[ "$(held "$HPORT")" = "$N" ] || { echo "pg-s3 holds $(held "$HPORT")" >&2; exit 1; }
kill -TERM "$PID"; wait "$PID" || true

fresh_db pacs_two; s3_config pacs_two bench-two "$WORK/pg-two.toml"
node node-a "$WORK/pg-two.toml"; PORT_A=$PORT; PID_A=$PID
node node-b "$WORK/pg-two.toml"; PORT_B=$PORT; PID_B=$PID; HPORT_B=$HPORT
row "pacs PostgreSQL + S3 (moto), 2 nodes" "$(send2 "$PORT_A" "$PORT_B")"
[ "$(held "$HPORT_B")" = "$N" ] || { echo "two nodes hold $(held "$HPORT_B")" >&2; exit 1; }
kill -TERM "$PID_A" "$PID_B"; wait "$PID_A" "$PID_B" || true

# 4. Orthanc 1.10 on PostgreSQL (index; files on disk)
fresh_db orthanc
OD="$WORK/orthanc"; rm -rf "$OD"; mkdir -p "$OD"
OHTTP=$(free_port); ODICOM=$(free_port)
cat >"$OD/orthanc.json" <<JSON
{
  "Name": "bench", "StorageDirectory": "$OD/storage", "IndexDirectory": "$OD/index",
  "HttpPort": $OHTTP, "DicomPort": $ODICOM, "DicomAet": "ORTHANC",
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "TcpNoDelay": true,
  "DicomCheckCalledAet": false,
  "Plugins": [ "$ORTHANC_PG" ],
  "PostgreSQL": { "EnableIndex": true, "EnableStorage": false, "Host": "127.0.0.1",
                  "Port": $PGPORT, "Database": "orthanc", "Username": "postgres",
                  "Password": "", "Lock": false, "EnableSsl": false }
}
JSON
"$ORTHANC" "$OD/orthanc.json" 2>"$OD/orthanc.log" >&2 & OPID=$!; PIDS+=("$OPID")
for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$OHTTP/system" && break; sleep 0.1; done
row "Orthanc 1.10 PostgreSQL + files, 1 node" "$(send ORTHANC "$ODICOM" part0 part1 part2 part3)"
OHELD=$(curl -s "http://127.0.0.1:$OHTTP/statistics" | $PY -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])')
[ "$OHELD" = "$N" ] || { echo "Orthanc holds $OHELD" >&2; exit 1; }
kill -TERM "$OPID"; wait "$OPID" || true

ratio() { printf '    %s / Orthanc on PostgreSQL: %.2fx\n' "$1" "$(echo "${RESULT["Orthanc 1.10 PostgreSQL + files, 1 node"]} / ${RESULT["$1"]}" | bc -l)"; }
ratio "pacs PostgreSQL + files, 1 node"
ratio "pacs PostgreSQL + S3 (moto), 1 node"
ratio "pacs PostgreSQL + S3 (moto), 2 nodes"
ratio "pacs embedded (RocksDB + files)"
echo "($N instances of 512x512 16-bit CT over 4 associations, $(nproc) cores)"

# 5. Query latency on PostgreSQL at STUDIES studies x 10 instances.
# Kept between runs; the name changes when the stored record encoding does (v2: MessagePack).
DB="pacs_qr_v2_$STUDIES"
if [ "$(psql_ -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  psql_ -c "CREATE DATABASE $DB"
fi
PACS_INDEX_URL="postgres://postgres@127.0.0.1:$PGPORT/$DB" \
  cargo bench --locked -q --bench qr_populate -- "$WORK/qr-unused" "$STUDIES" 10
# No workers: the built-in analyzers would be working through the populated studies while
# the queries are timed.
printf '[index]\nurl = "postgres://postgres@127.0.0.1:%s/%s"\n[workers]\nquality = false\n' \
  "$PGPORT" "$DB" > "$WORK/qr.toml"
node qr "$WORK/qr.toml"
cargo bench --locked -q --bench cfind_latency -- "$PORT" 100
$PY benches/qido_latency.py "$HPORT" 100
kill -TERM "$PID"; wait "$PID" || true
