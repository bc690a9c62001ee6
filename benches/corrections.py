"""Helpers for benches/corrections.sh (patient merge and de-identified export).

usage:
  corrections.py gen-merge OUT STUDIES SIZE      OUT/a: patient MERGEA with STUDIES studies of one
                                                 SIZExSIZE CT instance each; OUT/b: patient MERGEB,
                                                 one study of one instance
  corrections.py json-get FIELD < JSON           print FIELD of a JSON object (len() of a list)
  corrections.py qido-count BASE PATIENT_ID      studies QIDO-RS lists for the patient (paged)
  corrections.py zip-count FILE                  number of file entries in a zip
  corrections.py orthanc-study BASE STUDY_UID    Orthanc's ID of a study
  corrections.py orthanc-merge BASE FROM INTO INTO_NAME
      Orthanc's way to merge patients: POST /patients/{FROM's id}/modify with Replace
      PatientID/PatientName = INTO's, Force, KeepSource false (one synchronous request; Orthanc
      1.10 refuses a PatientID change at study level); prints "SECONDS NEW_PATIENT_ID"
  corrections.py orthanc-count BASE PATIENT_ID   studies Orthanc holds for the patient
"""
import json
import os
import sys
import time
import urllib.parse
import urllib.request
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "support"))


def gen_merge(out: str, studies: int, size: int) -> None:
    import dicomgen

    template = dicomgen.ct_instance(0, 0, 0, size, size)

    def write(folder: str, pid: str, name: str, n: int) -> None:
        os.makedirs(folder, exist_ok=True)
        for s in range(n):
            ds = template.copy()
            key = f"merge/{pid}/{s}"
            ds.StudyInstanceUID = dicomgen.uid(key)
            ds.SeriesInstanceUID = dicomgen.uid(f"{key}/0")
            ds.SOPInstanceUID = dicomgen.uid(f"{key}/0/0")
            ds.PatientID = pid
            ds.PatientName = name
            ds.AccessionNumber = f"M{pid[-1]}{s:06d}"
            ds.SeriesNumber = 1
            ds.InstanceNumber = 1
            dicomgen.to_file(ds, os.path.join(folder, f"{pid}-{s:06d}.dcm"))

    write(os.path.join(out, "a"), "MERGEA", "MERGE^FROM", studies)
    write(os.path.join(out, "b"), "MERGEB", "MERGE^INTO", 1)


def get_json(url: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Accept": "application/json"})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=600) as r:
        raw = r.read()
        return json.loads(raw) if raw else []


def qido_count(base: str, pid: str) -> int:
    # pacs answers at most 1,000 results per QIDO request: page with offset.
    n, offset = 0, 0
    while True:
        q = urllib.parse.urlencode({"PatientID": pid, "limit": 1000, "offset": offset})
        req = urllib.request.Request(f"{base}/dicom-web/studies?{q}",
                                     headers={"Accept": "application/dicom+json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            raw = r.read()
        page = json.loads(raw) if raw else []
        n += len(page)
        if len(page) < 1000:
            return n
        offset += 1000


def orthanc_study(base: str, uid: str) -> str:
    req = urllib.request.Request(f"{base}/tools/lookup", data=uid.encode())
    with urllib.request.urlopen(req, timeout=60) as r:
        hits = [h for h in json.loads(r.read()) if h["Type"] == "Study"]
    if len(hits) != 1:
        raise SystemExit(f"Orthanc lookup of {uid}: {hits}")
    return hits[0]["ID"]


def orthanc_studies(base: str, pid: str) -> list:
    return get_json(f"{base}/tools/find", {"Level": "Study", "Query": {"PatientID": pid}})


def orthanc_merge(base: str, src: str, into: str, into_name: str) -> None:
    hits = get_json(f"{base}/tools/find", {"Level": "Patient", "Query": {"PatientID": src}})
    if len(hits) != 1:
        raise SystemExit(f"Orthanc: patient {src}: {hits}")
    body = {"Replace": {"PatientID": into, "PatientName": into_name}, "Force": True,
            "KeepSource": False}
    t0 = time.perf_counter()
    answer = get_json(f"{base}/patients/{hits[0]}/modify", body)
    secs = time.perf_counter() - t0
    print(f"{secs:.4f} {answer.get('PatientID', '?')}")


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "gen-merge":
        gen_merge(args[0], int(args[1]), int(args[2]))
    elif cmd == "json-get":
        v = json.load(sys.stdin)[args[0]]
        print(len(v) if isinstance(v, list) else v)
    elif cmd == "qido-count":
        print(qido_count(args[0], args[1]))
    elif cmd == "zip-count":
        with zipfile.ZipFile(args[0]) as z:
            bad = z.testzip()
            if bad is not None:
                raise SystemExit(f"{args[0]}: bad CRC in {bad}")
            print(sum(1 for i in z.infolist() if not i.is_dir()))
    elif cmd == "orthanc-study":
        print(orthanc_study(args[0], args[1]))
    elif cmd == "orthanc-merge":
        orthanc_merge(args[0], args[1], args[2], args[3])
    elif cmd == "orthanc-count":
        print(len(orthanc_studies(args[0], args[1])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
