#!/usr/bin/env bash
# Modality worklist benchmark: N synthetic orders (default 10,000) placed through the order
# intake into the archive's index, and the same items as Orthanc worklist files (.wl) for
# Orthanc 1.10's ModalityWorklists plugin; then worklist C-FIND latency (p50/p99) of five query
# shapes on both, one pynetdicom association per system, with the answers compared.
#
# usage: benches/mwl.sh [N]      (needs scripts/setup test, orthanc from Debian)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
REPS="${MWL_REPS:-200}"
BUDGET="${MWL_BUDGET_S:-30}"   # per shape and system: stop repeating after this many seconds
export TCP_NODELAY=1
PY=.venv/bin/python
[ -x "$PY" ] || scripts/setup test
# PACS_BIN: the server binary to measure (default target/release/pacs); the index, the
# worklist files and the client come from this tree.
BIN="${PACS_BIN:-target/release/pacs}"
ORTHANC="${ORTHANC:-/usr/sbin/Orthanc}"
WL_PLUGIN=/usr/share/orthanc/plugins/libModalityWorklists.so
[ -x "$ORTHANC" ] && [ -e "$WL_PLUGIN" ] || { echo "needs Orthanc and its worklist plugin (apt-get install -y orthanc)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/pacs-mwl.XXXXXX)
# The populated index and .wl files are kept between runs (BENCH_DIR), the servers' state not.
WORK="${BENCH_DIR:-/tmp/pacs-mwl-bench}"
DATA="$WORK/data-$N"
WL="$WORK/wl-$N"
mkdir -p "$WORK"
PIDS=()
# cleanup on exit: stop everything in PIDS, remove TMP.
. "$(dirname "$0")/common.sh"
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log() { echo "[$(date +%T)] $*" >&2; }

[ -n "${PACS_BIN:-}" ] || cargo build --release --locked -q
if [ ! -f "$WL/.done" ] || [ ! -f "$DATA/.mwl-$N" ]; then
  rm -rf "$WL"
  log "placing $N orders"
  cargo bench --locked -q --bench mwl_populate -- "$DATA" "$N" "$WORK/orders-$N.jsonl"
  log "writing $N worklist files"
  $PY benches/mwl_wl.py "$WORK/orders-$N.jsonl" "$WL"
  touch "$WL/.done"
fi

# The server opens a copy: serving may write to the index (outbox, node state).
cp -a "$DATA" "$TMP/data"
start_pacs "$BIN" "$TMP/data" "$TMP/pacs.log"

ORTHANC_HTTP=$(free_port); ORTHANC_DICOM=$(free_port)
mkdir -p "$TMP/orthanc"
# Orthanc 1.10 cannot bind to loopback only: remote HTTP is refused (RemoteAccessAllowed);
# any calling AE may ask for worklists (DicomAlwaysAllowFindWorklist, new in 1.10.0); an idle
# association is not closed after the default 30 s while the other system is measured.
cat >"$TMP/orthanc/orthanc.json" <<JSON
{
  "Name": "mwl-bench",
  "StorageDirectory": "$TMP/orthanc/storage",
  "IndexDirectory": "$TMP/orthanc/index",
  "HttpPort": $ORTHANC_HTTP,
  "DicomPort": $ORTHANC_DICOM,
  "DicomAet": "ORTHANC",
  "DicomCheckCalledAet": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "SslEnabled": false,
  "TcpNoDelay": true,
  "DicomScpTimeout": 3600,
  "DicomAlwaysAllowFindWorklist": true,
  "Plugins": [ "$WL_PLUGIN" ],
  "Worklists": { "Enable": true, "Database": "$WL" }
}
JSON
"$ORTHANC" "$TMP/orthanc/orthanc.json" 2>"$TMP/orthanc/orthanc.log" >&2 &
ORTHANC_PID=$!
PIDS+=("$ORTHANC_PID")
for _ in $(seq 1 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$ORTHANC_HTTP/system" && break
  kill -0 "$ORTHANC_PID" 2>/dev/null || { tail -20 "$TMP/orthanc/orthanc.log" >&2; exit 1; }
  sleep 0.1
done

log "pacs DICOM port $PACS_DICOM, Orthanc DICOM port $ORTHANC_DICOM; load average $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
$PY benches/mwl_latency.py "$ORTHANC_DICOM" "$PACS_DICOM" "$N" "$REPS" "$BUDGET"
