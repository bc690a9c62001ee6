#!/usr/bin/env bash
# Whole-server benchmark of the two bulk corrections, pacs against Orthanc 1.10 on this machine:
#  - patient merge: patient MERGEA holds MERGE_STUDIES (default 1,000) studies of one 64x64 16-bit
#    CT instance each, patient MERGEB one such study; pacs: one `POST /api/patients/merge`
#    {"from":"MERGEA","into":"MERGEB"} (every merged instance rewritten to a new, fsync'd file
#    version, the index changed in one commit), checked by its answer (instances = 1,000) and by
#    QIDO-RS listing 1,001 studies for MERGEB afterwards. Orthanc has no merge route; its way is
#    `POST /patients/{MERGEA's id}/modify` {"Replace":{"PatientID":"MERGEB","PatientName":...},
#    "Force":true,"KeepSource":false}: one synchronous request that writes a modified copy of
#    every instance under MERGEB and deletes the originals (Orthanc 1.10 refuses a PatientID change
#    at study level, "the parent PatientID cannot be manually modified"); checked by /tools/find
#    (MERGEB has 1,001 studies, MERGEA none);
#  - de-identified export of one study of EXPORT_N (default 1,000) 512x512 16-bit CT instances in
#    2 series: pacs `POST /api/studies/{uid}/export?profile=basic` (application/zip, curl -o);
#    Orthanc `POST /studies/{id}/anonymize` {} then `GET /studies/{new id}/archive` (curl -o; its
#    zip is deflated, pacs' is stored), timed together, and the anonymize request alone as a
#    second Orthanc row; each zip checked with Python's zipfile (CRCs, EXPORT_N entries).
# Orthanc runs with its defaults (SQLite index, SyncStorageArea: fsync on every write).
# Every run gets a fresh data folder and a fresh server; the data is loaded before the clock
# starts (pacs: `pacs import`; Orthanc: dcmtk storescu). Rounds alternate pacs and Orthanc so
# drift hits both alike; the median of ROUNDS is reported as seconds and instances/s, with the
# throughput ratio pacs / Orthanc.
#
# usage: benches/corrections.sh
#   env: ROUNDS (3), MERGE_STUDIES (1000), MERGE_SIZE (64: rows = columns of the merge set),
#        EXPORT_N (1000, even), BENCH_DIR (keep the generated input files there between runs),
#        PACS_BIN (target/release/pacs; copied to a temporary folder first, so a rebuild during
#        the run does not touch it), ORTHANC (/usr/sbin/Orthanc)
# needs: scripts/setup test, a release build, dcmtk (storescu), `apt-get install orthanc
#        orthanc-dicomweb` for the Orthanc rows (without them: pacs rows only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
MERGE_STUDIES="${MERGE_STUDIES:-1000}"
MERGE_SIZE="${MERGE_SIZE:-64}"
EXPORT_N="${EXPORT_N:-1000}"
export TCP_NODELAY=1   # dcmtk (storescu) reads this
PY=.venv/bin/python
ORTHANC="${ORTHANC:-/usr/sbin/Orthanc}"
ORTHANC_PLUGINS=/usr/share/orthanc/plugins
[ -x "$PY" ] || scripts/setup test
STARTED=$(date +%s)

TMP=$(mktemp -d /tmp/pacs-corrections.XXXXXX)
GEN="${BENCH_DIR:-$TMP/gen}"
RES="$TMP/results"
mkdir -p "$GEN" "$RES"
PIDS=()
# cleanup on exit: stop everything in PIDS, remove TMP; start_pacs.
. "$(dirname "$0")/common.sh"
# start_orthanc DIR: sets ORTHANC_PID ORTHANC_DICOM ORTHANC_HTTP
. "$(dirname "$0")/orthanc.sh"

log() { echo "[$(date +%T)] $*" >&2; }
note() { echo "$*" >>"$RES/notes.txt"; log "note: $*"; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
stop() { # PID: SIGTERM, SIGKILL after 20 s, wait, then forget it
  local pid=$1 p keep=()
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null && note "process $pid ignored SIGTERM for 20 s: killed"
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
helper() { $PY benches/corrections.py "$@"; }
# record JOB SERVER SECONDS [EXTRA]: one measured run
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$RES/runs.tsv"; }

BIN_SRC="${PACS_BIN:-target/release/pacs}"
[ -x "$BIN_SRC" ] || { echo "no $BIN_SRC (cargo build --release)" >&2; exit 1; }
BIN="$TMP/pacs"
cp "$BIN_SRC" "$BIN"
HAVE_ORTHANC=1
if [ ! -x "$ORTHANC" ] || [ ! -e "$ORTHANC_PLUGINS/libOrthancDicomWeb.so" ]; then
  HAVE_ORTHANC=0
  note "Orthanc rows skipped: $ORTHANC or its DICOMweb plugin is missing (apt-get install orthanc orthanc-dicomweb)"
fi
if [ "$HAVE_ORTHANC" = 1 ]; then log "Orthanc: $("$ORTHANC" --version 2>/dev/null | head -1)"; fi
note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"

# ---- input data --------------------------------------------------------------------------------
MERGE_SET="$GEN/merge-$MERGE_STUDIES-$MERGE_SIZE"
if [ ! -f "$MERGE_SET/.done" ]; then
  log "generating the merge set: $MERGE_STUDIES + 1 studies of one ${MERGE_SIZE}x$MERGE_SIZE CT instance ..."
  rm -rf "$MERGE_SET"
  helper gen-merge "$MERGE_SET" "$MERGE_STUDIES" "$MERGE_SIZE"
  touch "$MERGE_SET/.done"
fi
EXPORT_SET="$GEN/export-$EXPORT_N"
if [ ! -f "$EXPORT_SET/.done" ]; then
  log "generating the export study: $EXPORT_N 512x512 CT instances in 2 series ..."
  rm -rf "$EXPORT_SET"
  $PY tests/support/gen_instances.py "$EXPORT_SET/dcm" "$EXPORT_N" --per-series $((EXPORT_N / 2)) \
    --series-per-study 2 --patients 1 --seed correxport
  touch "$EXPORT_SET/.done"
fi
EXPORT_UID=$($PY -c "import sys; sys.path.insert(0,'tests/support'); import dicomgen; print(dicomgen.uid('correxport/0/0'))")
EXPORT_MB=$(du -sb "$EXPORT_SET/dcm" | awk '{printf "%.0f", $1 / 1e6}')
MERGE_MB=$(du -sb "$MERGE_SET/a" "$MERGE_SET/b" | awk '{t += $1} END {print t}' | awk '{printf "%.1f", $1 / 1e6}')

# ---- one run each ------------------------------------------------------------------------------
pacs_merge() { # ROUND
  local data="$TMP/pacs-merge" code secs n studies
  rm -rf "$data"
  "$BIN" import --quiet --data "$data" "$MERGE_SET/a" "$MERGE_SET/b" >&2
  : >"$TMP/pacs-merge.log"  # start_pacs reads it at once
  start_pacs "$BIN" "$data" "$TMP/pacs-merge.log"
  read -r code secs < <(curl -s -o "$TMP/merge.json" -w '%{http_code} %{time_total}\n' \
    -H 'Content-Type: application/json' -d '{"from":"MERGEA","into":"MERGEB"}' \
    "http://127.0.0.1:$PACS_HTTP/api/patients/merge")
  if [ "$code" != 200 ]; then
    note "pacs merge round $1: HTTP $code: $(head -c 300 "$TMP/merge.json") (run not counted)"
  else
    n=$(helper json-get instances <"$TMP/merge.json")
    studies=$(helper qido-count "http://127.0.0.1:$PACS_HTTP" MERGEB)
    log "pacs merge round $1: $secs s, answer: instances $n, $(helper json-get studies <"$TMP/merge.json") studies; QIDO lists $studies studies for MERGEB"
    if [ "$n" = "$MERGE_STUDIES" ] && [ "$studies" = "$((MERGE_STUDIES + 1))" ]; then
      record merge pacs "$secs"
    else
      note "pacs merge round $1: $n instances merged, $studies studies for MERGEB (expected $MERGE_STUDIES, $((MERGE_STUDIES + 1))): run not counted"
    fi
  fi
  stop "$PACS_PID"
  rm -rf "$data"
}

orthanc_load() { # DIR FOLDER...
  local dir=$1
  shift
  start_orthanc "$dir"
  /usr/bin/storescu -aet BENCH -aec ORTHANC 127.0.0.1 "$ORTHANC_DICOM" --scan-directories \
    --scan-pattern '*.dcm' "$@"
}

orthanc_merge() { # ROUND
  local dir="$TMP/orthanc-merge" base secs pid studies left
  rm -rf "$dir"
  orthanc_load "$dir" "$MERGE_SET/a" "$MERGE_SET/b"
  base="http://127.0.0.1:$ORTHANC_HTTP"
  read -r secs pid < <(helper orthanc-merge "$base" MERGEA MERGEB MERGE^INTO || true)
  if [ -z "${secs:-}" ]; then
    note "Orthanc merge round $1 failed (see the log above): run not counted"
  else
    studies=$(helper orthanc-count "$base" MERGEB)
    left=$(helper orthanc-count "$base" MERGEA)
    log "Orthanc merge round $1: $secs s (into $pid); MERGEB has $studies studies, MERGEA $left; Orthanc holds $(curl -s "$base/statistics" | tr -d ' \n\t')"
    if [ "$studies" = "$((MERGE_STUDIES + 1))" ] && [ "$left" = 0 ]; then
      record merge orthanc "$secs"
    else
      note "Orthanc merge round $1: MERGEB has $studies studies, MERGEA $left (expected $((MERGE_STUDIES + 1)), 0): run not counted"
    fi
  fi
  stop "$ORTHANC_PID"
  rm -rf "$dir"
}

pacs_export() { # ROUND
  local data="$TMP/pacs-export" code secs size n
  rm -rf "$data"
  "$BIN" import --quiet --data "$data" "$EXPORT_SET/dcm" >&2
  : >"$TMP/pacs-export.log"  # start_pacs reads it at once
  start_pacs "$BIN" "$data" "$TMP/pacs-export.log"
  read -r code secs size < <(curl -s -o "$TMP/export.zip" -w '%{http_code} %{time_total} %{size_download}\n' \
    -X POST "http://127.0.0.1:$PACS_HTTP/api/studies/$EXPORT_UID/export?profile=basic")
  if [ "$code" != 200 ]; then
    note "pacs export round $1: HTTP $code: $(head -c 300 "$TMP/export.zip") (run not counted)"
  else
    n=$(helper zip-count "$TMP/export.zip")
    log "pacs export round $1: $size bytes in $secs s, $n zip entries"
    if [ "$n" = "$EXPORT_N" ]; then record export pacs "$secs" "$size"
    else note "pacs export round $1: $n zip entries, expected $EXPORT_N: run not counted"; fi
  fi
  rm -f "$TMP/export.zip"
  stop "$PACS_PID"
  rm -rf "$data"
}

orthanc_export() { # ROUND
  local dir="$TMP/orthanc-export" base id code asecs zsecs size n
  rm -rf "$dir"
  orthanc_load "$dir" "$EXPORT_SET/dcm"
  base="http://127.0.0.1:$ORTHANC_HTTP"
  id=$(helper orthanc-study "$base" "$EXPORT_UID")
  read -r code asecs < <(curl -s -o "$TMP/anon.json" -w '%{http_code} %{time_total}\n' \
    -H 'Content-Type: application/json' -d '{}' "$base/studies/$id/anonymize")
  if [ "$code" != 200 ]; then
    note "Orthanc anonymize round $1: HTTP $code: $(head -c 300 "$TMP/anon.json") (run not counted)"
  else
    read -r code zsecs size < <(curl -s -o "$TMP/export.zip" -w '%{http_code} %{time_total} %{size_download}\n' \
      "$base/studies/$(helper json-get ID <"$TMP/anon.json")/archive")
    n=$(helper zip-count "$TMP/export.zip")
    log "Orthanc export round $1: anonymize $asecs s, archive HTTP $code $size bytes in $zsecs s, $n zip entries"
    if [ "$code" = 200 ] && [ "$n" = "$EXPORT_N" ]; then
      record export orthanc "$(echo "$asecs + $zsecs" | bc -l)" "$size $asecs $zsecs"
      record anonymize orthanc "$asecs"
    else
      note "Orthanc export round $1: archive HTTP $code, $n zip entries (expected 200, $EXPORT_N): run not counted"
    fi
  fi
  rm -f "$TMP/export.zip"
  stop "$ORTHANC_PID"
  rm -rf "$dir"
}

for round in $(seq 1 "$ROUNDS"); do
  pacs_merge "$round"
  if [ "$HAVE_ORTHANC" = 1 ]; then orthanc_merge "$round"; fi
  pacs_export "$round"
  if [ "$HAVE_ORTHANC" = 1 ]; then orthanc_export "$round"; fi
done

# ---- report ------------------------------------------------------------------------------------
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
secs_of() { [ ! -f "$RES/runs.tsv" ] || awk -F'\t' -v j="$1" -v s="$2" '$1==j && $2==s {print $3}' "$RES/runs.tsv" | median; }
runs_of() { [ ! -f "$RES/runs.tsv" ] || awk -F'\t' -v j="$1" -v s="$2" '$1==j && $2==s {printf "%.2f ", $3}' "$RES/runs.tsv"; }
echo "| job | server | seconds (median) | instances/s | pacs / Orthanc | runs (s) |"
echo "|---|---|---|---|---|---|"
for job in merge export; do
  if [ "$job" = merge ]; then n=$MERGE_STUDIES; else n=$EXPORT_N; fi
  p=$(secs_of "$job" pacs || true)
  o=$(secs_of "$job" orthanc || true)
  label="patient merge, $MERGE_STUDIES studies"
  [ "$job" = export ] && label="de-identified export, $EXPORT_N instances"
  ratio=""
  if [ -n "$p" ] && [ -n "$o" ]; then ratio=$(printf '%.2fx' "$(echo "$o / $p" | bc -l)"); fi
  if [ -n "$p" ]; then
    printf '| %s | pacs | %.2f | %.0f | %s | %s|\n' "$label" "$p" "$(echo "$n / $p" | bc -l)" \
      "$ratio" "$(runs_of "$job" pacs)"
  fi
  if [ -n "$o" ]; then
    printf '| %s | Orthanc | %.2f | %.0f | | %s|\n' "$label" "$o" "$(echo "$n / $o" | bc -l)" \
      "$(runs_of "$job" orthanc)"
  fi
  a=$(secs_of anonymize orthanc || true)
  if [ "$job" = export ] && [ -n "$a" ]; then
    ratio=""
    if [ -n "$p" ]; then ratio=$(printf '%.2fx' "$(echo "$a / $p" | bc -l)"); fi
    printf '| %s | Orthanc, anonymize only (no zip) | %.2f | %.0f | %s | %s|\n' "$label" "$a" \
      "$(echo "$n / $a" | bc -l)" "$ratio" "$(runs_of anonymize orthanc)"
  fi
done
echo
echo "merge: $MERGE_STUDIES studies x 1 ${MERGE_SIZE}x$MERGE_SIZE 16-bit CT instance (+1 study for the target patient, $MERGE_MB MB in all);"
echo "  pacs: one POST /api/patients/merge; Orthanc: one POST /patients/{id}/modify (Replace PatientID"
echo "  and PatientName with the target's, Force, KeepSource false; 1.10 refuses PatientID at study level)."
echo "export: one study of $EXPORT_N 512x512 16-bit CT instances in 2 series ($EXPORT_MB MB); pacs: POST"
echo "  /api/studies/{uid}/export?profile=basic (zip); Orthanc: POST /studies/{id}/anonymize {} then"
echo "  GET /studies/{new id}/archive, the sum of both requests; its last row is the anonymize request"
echo "  alone (de-identified copies written and indexed, no zip), against pacs' whole export."
if [ -f "$RES/runs.tsv" ]; then # the first counted run of each server
  awk -F'\t' '$1=="export" && !seen[$2]++ {split($4, f, " ")
    if ($2=="orthanc") printf "  Orthanc zip %.0f MB (deflated), first run: anonymize %.2f s + archive %.2f s\n", f[1]/1e6, f[2], f[3]
    else printf "  pacs zip %.0f MB (entries stored)\n", f[1]/1e6}' "$RES/runs.tsv"
fi
echo "Median of $ROUNDS rounds, each run on a fresh data folder and a fresh server, loopback, $(nproc) cores; elapsed $(( $(date +%s) - STARTED )) s."
if [ -f "$RES/notes.txt" ]; then sed 's/^/note: /' "$RES/notes.txt"; fi
