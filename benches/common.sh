# Shared by the whole-server benches (sourced after TMP and PIDS are set): on exit, stop every
# process in PIDS (TERM, then KILL after 10 s) and remove TMP; start_pacs.

cleanup() {
  local pid p
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 100); do
    pid=""
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && pid=$p; done
    [ -z "$pid" ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_pacs BIN DATA_DIR LOG [ARGS...]: start `BIN serve` on loopback ephemeral ports with
# extra ARGS; sets PACS_PID PACS_DICOM PACS_HTTP.
start_pacs() {
  local bin=$1 data=$2 log=$3
  shift 3
  : >"$log"   # the loop below reads it before the server has written a line
  PACS_LOG=warn,pacs::server=info "$bin" serve --data "$data" --ae-title PACS \
    --dicom-bind 127.0.0.1 --dicom-port 0 --http-bind 127.0.0.1 --http-port 0 "$@" 2>"$log" &
  PACS_PID=$!
  PIDS+=("$PACS_PID")
  PACS_DICOM=""; PACS_HTTP=""
  for _ in $(seq 1 300); do
    PACS_DICOM=$(sed -n 's/.*DICOM listening on [^ ]*:\([0-9]*\).*/\1/p' "$log" | head -1)
    PACS_HTTP=$(sed -n 's/.*HTTP listening on [^ ]*:\([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$PACS_DICOM" ] && [ -n "$PACS_HTTP" ] && return 0
    kill -0 "$PACS_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "pacs did not start; log:" >&2; cat "$log" >&2; return 1
}
