# Shared by benches/dicomweb.sh and benches/rendered.sh (sourced): start Orthanc 1.10 with its
# DICOMweb plugin for side-by-side runs. Needs ORTHANC, ORTHANC_PLUGINS, PIDS and free_port.

start_orthanc() { # DIR: sets ORTHANC_PID ORTHANC_DICOM ORTHANC_HTTP
  ORTHANC_HTTP=$(free_port); ORTHANC_DICOM=$(free_port)
  mkdir -p "$1"
  # Orthanc 1.10 cannot bind to loopback only: remote HTTP is refused (RemoteAccessAllowed) and
  # only AE BENCH from 127.0.0.1 may store. Defaults otherwise (SQLite index, fsync on store).
  cat >"$1/orthanc.json" <<JSON
{
  "Name": "bench",
  "StorageDirectory": "$1/storage",
  "IndexDirectory": "$1/index",
  "HttpPort": $ORTHANC_HTTP,
  "DicomPort": $ORTHANC_DICOM,
  "DicomAet": "ORTHANC",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "SslEnabled": false,
  "KeepAlive": true,
  "TcpNoDelay": true,
  "DicomAlwaysAllowEcho": false,
  "DicomAlwaysAllowStore": false,
  "DicomCheckModalityHost": true,
  "DicomModalities": { "bench": [ "BENCH", "127.0.0.1", 4242 ] },
  "Plugins": [ "$ORTHANC_PLUGINS" ],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "EnableWado": false,
                "Host": "127.0.0.1:$ORTHANC_HTTP", "Ssl": false }
}
JSON
  "$ORTHANC" "$1/orthanc.json" 2>"$1/orthanc.log" >&2 &
  ORTHANC_PID=$!
  PIDS+=("$ORTHANC_PID")
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$ORTHANC_HTTP/system" && return 0
    kill -0 "$ORTHANC_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "Orthanc did not start; log:" >&2; tail -20 "$1/orthanc.log" >&2; return 1
}
