#!/usr/bin/env bash
# Whole-server DICOMweb benchmark, pacs against Orthanc 1.10 + its DICOMweb plugin on this machine:
#  - QIDO-RS study search latency (p50/p99, one keep-alive HTTP/1.1 connection, TCP_NODELAY) for
#    the C-FIND benchmark's query shapes and OHIF's default study list query, on a shared dataset
#    both servers hold (default 2,000 studies x 10 small instances of the qr_populate population,
#    sent with dcmtk storescu) and for pacs alone on the 100,000-study / 1,000,000-instance index
#    of benches/qr.sh (filled by the qr_populate bench binary in ~15 s; Orthanc stores 300-850
#    instances/s here, so 1M instances would take it 20-60 min);
#  - WADO-RS retrieve of one 500-instance 512x512 16-bit CT study (GET /studies/{uid}, curl to
#    /dev/null, median of 3), stored once as Explicit and once as Implicit VR Little Endian, with
#    `transfer-syntax=*` (as stored) and with the default Accept (Explicit VR LE: the implicit
#    copy must be transcoded), and the loopback ceiling: the same bytes sent with sendfile(2) by a
#    minimal server, so numbers near it say the client and loopback are the limit, not the server.
# Prints markdown tables with the ratios. Targets: QIDO p50 < 5 ms at 100k; retrieve >= 2x Orthanc.
#
# usage: benches/dicomweb.sh [SHARED_STUDIES]     (default 2000)
#   env: BIG_STUDIES (100000, 0 skips the big index), PER_STUDY (10), REPEATS (100 per query),
#        ROUNDS (3), QIDO_SECONDS (30: time cap per query shape), BENCH_DIR (keep generated input
#        files there between runs), PACS_BIN (target/release/pacs), ORTHANC (/usr/sbin/Orthanc)
# needs: scripts/setup test, a release build, `cargo bench --bench qr_populate --no-run` for the
#        100k rows, `apt-get install orthanc orthanc-dicomweb` for the Orthanc columns.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED_STUDIES="${1:-2000}"
BIG_STUDIES="${BIG_STUDIES:-100000}"
PER_STUDY="${PER_STUDY:-10}"
REPEATS="${REPEATS:-100}"
ROUNDS="${ROUNDS:-3}"
WADO_N=500
export TCP_NODELAY=1   # dcmtk (storescu, and Orthanc's DICOM side) reads this
PY=.venv/bin/python
BIN="${PACS_BIN:-target/release/pacs}"
ORTHANC="${ORTHANC:-/usr/sbin/Orthanc}"
ORTHANC_PLUGINS=/usr/share/orthanc/plugins
[ -x "$PY" ] || scripts/setup test
STARTED=$(date +%s)

TMP=$(mktemp -d /tmp/pacs-dicomweb.XXXXXX)
GEN="${BENCH_DIR:-$TMP/gen}"
RES="$TMP/results"
mkdir -p "$GEN" "$RES"
PIDS=()
# cleanup on exit: stop everything in PIDS, remove TMP.
. "$(dirname "$0")/common.sh"

log() { echo "[$(date +%T)] $*" >&2; }
note() { echo "$*" >>"$RES/notes.tsv"; log "note: $*"; }
info() { printf '%s\t%s\n' "$1" "$2" >>"$RES/info.tsv"; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
study_uid() { $PY -c "import sys; sys.path.insert(0,'tests/support'); import dicomgen; print(dicomgen.uid('$1/0/0'))"; }
stop() { # PID: SIGTERM, SIGKILL after 20 s, wait, then forget it
  local pid=$1 p keep=()
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null && note "process $pid ignored SIGTERM for 20 s: killed"
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
info shared_studies "$SHARED_STUDIES"
info big_studies "$BIG_STUDIES"
info rounds "$ROUNDS"
info wado_instances "$WADO_N"
info repeats "$REPEATS"
note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores); other work on the machine skews both servers' numbers"
note "QIDO query strings carry \`^\` and \`,\` unescaped: Orthanc 1.10 does not percent-decode QIDO arguments (PatientName=GONZALEZ%5EMI* matches nothing there, includefield=a%2Cb is ignored)"

# ---- which servers can take part -------------------------------------------------------------
HAVE_ORTHANC=1
if [ ! -x "$ORTHANC" ] || [ ! -e "$ORTHANC_PLUGINS/libOrthancDicomWeb.so" ]; then
  HAVE_ORTHANC=0
  note "Orthanc columns skipped: $ORTHANC or its DICOMweb plugin is missing (apt-get install orthanc orthanc-dicomweb)"
fi
HAVE_PACS=1
[ -x "$BIN" ] || { HAVE_PACS=0; note "pacs columns skipped: no $BIN (cargo build --release)"; }
QRPOP=""
for f in $(ls -t target/release/deps/qr_populate-* 2>/dev/null); do
  case "$f" in *.d) ;; *) [ -x "$f" ] && { QRPOP=$f; break; } ;; esac
done
if [ -n "$QRPOP" ]; then
  log "100k index filler: $QRPOP (newest built qr_populate)"
elif [ "$BIG_STUDIES" -gt 0 ]; then
  note "pacs @$BIG_STUDIES will be skipped: no target/release/deps/qr_populate-* (cargo bench --bench qr_populate --no-run)"
fi

pacs_has_dicomweb() { # HTTP_PORT
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/dicom+json' \
    "http://127.0.0.1:$1/dicom-web/studies")
  log "pacs GET /dicom-web/studies -> HTTP $code"
  [ "$code" = 200 ] || [ "$code" = 204 ]
}

# start_orthanc DIR: sets ORTHANC_PID ORTHANC_DICOM ORTHANC_HTTP
. "$(dirname "$0")/orthanc.sh"

# send SERVER WHAT AE PORT DIR [storescu options]: times one storescu association, records it
send() {
  local server=$1 what=$2 ae=$3 port=$4 dir=$5 t0 t1 n
  shift 5
  n=$(find "$dir" -name '*.dcm' | wc -l)
  t0=$(date +%s.%N)
  /usr/bin/storescu "$@" -aet BENCH -aec "$ae" 127.0.0.1 "$port" --scan-directories --scan-pattern '*.dcm' "$dir"
  t1=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\n' "$server" "$what" "$n" "$(echo "$t1 - $t0" | bc -l)" >>"$RES/ingest.tsv"
  log "$server: stored $n instances ($what) in $(printf '%.1f' "$(echo "$t1 - $t0" | bc -l)") s"
}

# ---- input data ------------------------------------------------------------------------------
SHARED="$GEN/shared-$SHARED_STUDIES-$PER_STUDY"
if [ ! -f "$SHARED/.done" ]; then
  log "generating the shared set: $SHARED_STUDIES studies x $PER_STUDY instances (64x64) ..."
  rm -rf "$SHARED"
  $PY benches/dicomweb_load.py gen "$SHARED" "$SHARED_STUDIES" "$PER_STUDY"
  touch "$SHARED/.done"
fi
info shared_instances "$((SHARED_STUDIES * PER_STUDY))"
for seed in dwexplicit dwimplicit; do
  if [ ! -f "$GEN/$seed/.done" ]; then
    log "generating $WADO_N 512x512 CT instances ($seed) ..."
    rm -rf "$GEN/$seed"
    $PY tests/support/gen_instances.py "$GEN/$seed" "$WADO_N" --per-series "$WADO_N" \
      --series-per-study 1 --patients 1 --seed "$seed"
    touch "$GEN/$seed/.done"
  fi
done
EXPLICIT_UID=$(study_uid dwexplicit)
IMPLICIT_UID=$(study_uid dwimplicit)
EXPLICIT_TS=1.2.840.10008.1.2.1
IMPLICIT_TS=1.2.840.10008.1.2
note "WADO study $EXPLICIT_UID is stored as sent by gen_instances.py (Explicit VR LE); study $IMPLICIT_UID is the same data sent with storescu -xi, so both servers store it Implicit VR LE"

# ---- servers with the shared set --------------------------------------------------------------
# ingest SERVER AE PORT: shared set, then the two CT studies (the second one converted to implicit
# by storescu on the way)
ingest() {
  send "$1" "shared set" "$2" "$3" "$SHARED"
  send "$1" "CT study" "$2" "$3" "$GEN/dwexplicit"
  send "$1" "CT study, as implicit" "$2" "$3" "$GEN/dwimplicit" --propose-implicit
}
SERVERS=()
if [ "$HAVE_ORTHANC" = 1 ]; then
  log "starting Orthanc ..."
  start_orthanc "$TMP/orthanc"
  ingest orthanc ORTHANC "$ORTHANC_DICOM"
  log "Orthanc holds: $(curl -s "http://127.0.0.1:$ORTHANC_HTTP/statistics" | tr -d ' \n')"
  SERVERS+=("orthanc http://127.0.0.1:$ORTHANC_HTTP/dicom-web")
fi
if [ "$HAVE_PACS" = 1 ]; then
  log "starting pacs ..."
  start_pacs "$BIN" "$TMP/pacs-data" "$TMP/pacs.log"
  if pacs_has_dicomweb "$PACS_HTTP"; then
    ingest pacs PACS "$PACS_DICOM"
    log "pacs holds: $(curl -s "http://127.0.0.1:$PACS_HTTP/api/statistics" | tr -d ' \n')"
    SERVERS+=("pacs http://127.0.0.1:$PACS_HTTP/dicom-web")
  else
    HAVE_PACS=0
    note "pacs columns skipped: $BIN does not serve /dicom-web yet (GET /dicom-web/studies answered 404 or failed); rebuild with cargo build --release once it does"
    stop "$PACS_PID"
  fi
fi
[ "${#SERVERS[@]}" -gt 0 ] || { echo "no server to measure" >&2; exit 1; }

# ---- QIDO-RS on the shared set ----------------------------------------------------------------
for s in "${SERVERS[@]}"; do
  set -- $s
  log "QIDO-RS on $1, $SHARED_STUDIES-study population ..."
  $PY benches/dicomweb_load.py qido "$2" "$SHARED_STUDIES" "$RES/qido-$1.json" "$REPEATS" ||
    note "QIDO-RS run on $1 failed (see the log above)"
done

# ---- WADO-RS retrieve ---------------------------------------------------------------------------
ACCEPT_ANY='multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_DEFAULT='multipart/related; type="application/dicom"'
CASES=("$EXPLICIT_TS $EXPLICIT_UID any" "$EXPLICIT_TS $EXPLICIT_UID default"
       "$IMPLICIT_TS $IMPLICIT_UID any" "$IMPLICIT_TS $IMPLICIT_UID default")
accept_of() { if [ "$1" = any ]; then echo "$ACCEPT_ANY"; else echo "$ACCEPT_DEFAULT"; fi; }
# One checked (and page-cache warming) retrieve per case: 200, 500 parts, transfer syntax sent.
for s in "${SERVERS[@]}"; do
  set -- $s; server=$1; base=$2
  for c in "${CASES[@]}"; do
    set -- $c
    accept=$(accept_of "$3")
    check=$($PY benches/dicomweb_load.py check-wado "$base/studies/$2" "$accept" || echo "failed 0 0 ?")
    log "WADO-RS check $server, stored $1, Accept $3: HTTP status, parts, bytes, first part's syntax = $check"
    printf '%s\t%s\t%s\t%s\n' "$server" "$1" "$accept" "$check" >>"$RES/wado-checks.tsv"
    set -- $check
    [ "$1" = 200 ] && [ "$2" = "$WADO_N" ] || note "$server WADO-RS answered HTTP $1 with $2 parts (expected 200 and $WADO_N) for Accept: $accept"
  done
done
# Rounds alternate servers so drift hits both alike.
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    for s in "${SERVERS[@]}"; do
      set -- $s; server=$1; base=$2
      set -- $c
      accept=$(accept_of "$3")
      read -r code size secs < <(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' \
        -H "Accept: $accept" "$base/studies/$2")
      if [ "$code" = 200 ]; then
        printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$1" "$accept" "$secs" "$size" >>"$RES/wado.tsv"
        log "WADO-RS round $round, $server, stored $1, Accept $3: $size bytes in $secs s"
      else
        note "$server WADO-RS round $round, stored $1, Accept $3: HTTP $code (run not counted)"
      fi
    done
  done
done
# The ceiling of this machine's loopback and client: the same bytes sent with sendfile(2).
cat "$GEN"/dwexplicit/*.dcm >"$TMP/ceiling.bin"
$PY benches/dicomweb_load.py serve-file "$TMP/ceiling.bin" >"$TMP/ceiling.port" &
CEIL_PID=$!
PIDS+=("$CEIL_PID")
for _ in $(seq 1 50); do [ -s "$TMP/ceiling.port" ] && break; sleep 0.1; done
for round in $(seq 1 "$ROUNDS"); do
  read -r code size secs < <(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' \
    "http://127.0.0.1:$(cat "$TMP/ceiling.port")/")
  [ "$code" = 200 ] && printf 'ceiling\t-\t-\t%s\t%s\n' "$secs" "$size" >>"$RES/wado.tsv"
  log "loopback ceiling, round $round: $size bytes in $secs s"
done
stop "$CEIL_PID"
rm -f "$TMP/ceiling.bin"
[ "$HAVE_ORTHANC" = 1 ] && stop "$ORTHANC_PID"
[ "$HAVE_PACS" = 1 ] && stop "$PACS_PID"

# ---- pacs on the 100k-study index ---------------------------------------------------------------
if [ "$HAVE_PACS" = 1 ] && [ "$BIG_STUDIES" -gt 0 ]; then
  if [ -n "$QRPOP" ]; then
    log "populating a $BIG_STUDIES-study index with $QRPOP ..."
    if "$QRPOP" "$TMP/pacs-big" "$BIG_STUDIES" 10 >&2; then
      start_pacs "$BIN" "$TMP/pacs-big" "$TMP/pacs-big.log"
      log "pacs holds: $(curl -s "http://127.0.0.1:$PACS_HTTP/api/statistics" | tr -d ' \n')"
      log "QIDO-RS on pacs, $BIG_STUDIES-study population ..."
      $PY benches/dicomweb_load.py qido "http://127.0.0.1:$PACS_HTTP/dicom-web" "$BIG_STUDIES" \
        "$RES/qido-pacs-big.json" "$REPEATS" || note "QIDO-RS run on pacs @$BIG_STUDIES failed (see the log above)"
      stop "$PACS_PID"
    else
      note "pacs @$BIG_STUDIES skipped: $QRPOP failed (stale build? cargo bench --bench qr_populate --no-run)"
    fi
    rm -rf "$TMP/pacs-big"
  fi
fi

note "loopback; curl and the Python client share the 2 cores with the server under test; Orthanc runs with its defaults (SQLite index, StorageAccessOnFind Always); elapsed $(( $(date +%s) - STARTED )) s"
$PY benches/dicomweb_load.py report "$RES"
