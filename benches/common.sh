# Shared by the whole-server benches (sourced after TMP and PIDS are set): on exit, stop every
# process in PIDS (TERM, then KILL after 10 s) and remove TMP.

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
