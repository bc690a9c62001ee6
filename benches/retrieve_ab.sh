#!/usr/bin/env bash
# Retrieve A/B: two pacs binaries (say, main before and after a change) serving the same data
# folder in turn: WADO-RS of a whole 500-instance 512x512 CT study (curl to /dev/null,
# `transfer-syntax=*`, median of 5 after one warm-up) and C-MOVE of it to a dcmtk storescp
# (median of 3). Rounds alternate between the binaries. Prints one line per binary and round.
#
# usage: benches/retrieve_ab.sh BIN_A BIN_B [ROUNDS]   (needs scripts/setup test)
#   e.g. git worktree add /tmp/before main~3 && (cd /tmp/before && cargo build --release)
#        benches/retrieve_ab.sh /tmp/before/target/release/pacs target/release/pacs
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1
B=$2
ROUNDS="${3:-2}"
export TCP_NODELAY=1
PY=.venv/bin/python
[ -x "$PY" ] || scripts/setup test
WORK=$(mktemp -d /tmp/pacs-retrieve-ab.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
$PY tests/support/gen_instances.py "$WORK/gen" 500 --per-series 250 --patients 1 >/dev/null
"$A" import --quiet --data "$WORK/data" "$WORK/gen" >/dev/null 2>&1
STUDY=$($PY -c "import pydicom,glob; print(pydicom.dcmread(sorted(glob.glob('$WORK/gen/*.dcm'))[0]).StudyInstanceUID)")
DEST_PORT=$(free_port)
printf '[[nodes]]\nae_title = "DEST"\nhost = "127.0.0.1"\nport = %s\n' "$DEST_PORT" >"$WORK/pacs.toml"
mkdir -p "$WORK/dest"
/usr/bin/storescp +xa -aet DEST -od "$WORK/dest" "$DEST_PORT" &

one() { # BIN LABEL
  local dport hport pid
  dport=$(free_port); hport=$(free_port)
  "$1" serve --config "$WORK/pacs.toml" --data "$WORK/data" --dicom-bind 127.0.0.1 \
    --dicom-port "$dport" --http-port "$hport" >"$WORK/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$hport/api/statistics" >/dev/null && break; sleep 0.1; done
  local wado
  wado=$(for _ in 1 2 3 4 5 6; do
    curl -s -o /dev/null -w '%{speed_download}\n' \
      -H 'Accept: multipart/related; type="application/dicom"; transfer-syntax=*' \
      "http://127.0.0.1:$hport/dicom-web/studies/$STUDY"
  done | tail -5 | sort -n | sed -n 3p)
  local move
  move=$(for _ in 1 2 3; do
    rm -rf "$WORK/dest"/*
    local s e
    s=$(date +%s.%N)
    /usr/bin/movescu -S -aec PACS -aem DEST 127.0.0.1 "$dport" \
      -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$STUDY" 2>/dev/null
    e=$(date +%s.%N)
    echo "$(find "$WORK/dest" -type f | wc -l) / ($e - $s)" | bc -l
  done | sort -n | sed -n 2p)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-40s WADO-RS study %6.0f MB/s   C-MOVE %5.0f instances/s\n' "$2" \
    "$(echo "$wado / 1000000" | bc -l)" "$move"
}

for r in $(seq "$ROUNDS"); do
  one "$A" "A ($A), round $r"
  one "$B" "B ($B), round $r"
done
echo "(500 CT 512x512 instances, 263 MB, loopback, 2 cores; $(uptime | sed 's/.*load/load/'))"
