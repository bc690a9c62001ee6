"""Send the odd files (make_odd_files.py) to a running server by STOW-RS and check what comes
back against pydicom, an independent reader. Prints one JSON object; the Rust test asserts.

usage: odd_check.py DICOMWEB_BASE ODD_DIR
"""
import email
import hashlib
import io
import json
import os
import sys

import numpy as np
import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image

FRAMES_NATIVE = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'


def stow(base: str, path: str) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    body = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--B--\r\n"
    r = requests.post(f"{base}/studies", data=body, timeout=60, headers={
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=B',
        "Accept": "application/dicom+json"})
    out = {"status": r.status_code}
    if r.status_code != 200:
        failed = (r.json().get("00081198") or {}).get("Value") or [{}]
        out["reason"] = (failed[0].get("00081197") or {}).get("Value", [None])[0]
        out["comment"] = (failed[0].get("00000902") or {}).get("Value", [""])[0]
    return out


def parts(resp: requests.Response) -> list[bytes]:
    msg = email.message_from_bytes(
        b"Content-Type: " + resp.headers["Content-Type"].encode() + b"\r\n\r\n" + resp.content)
    return [p.get_payload(decode=True) for p in msg.get_payload()]


def unpack_bits(frame: bytes, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(frame, np.uint8), bitorder="little")[:n]


def compare_frames(base: str, ds: pydicom.Dataset, inst: str) -> dict:
    """Every frame, decoded by the server to Explicit VR LE, against pydicom's pixel_array."""
    ref = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    ref = ref.reshape((frames,) + ref.shape[-(ref.ndim - (1 if frames > 1 else 0)):])
    worst = 0
    for k in range(frames):
        r = requests.get(f"{inst}/frames/{k + 1}", headers={"Accept": FRAMES_NATIVE}, timeout=60)
        if r.status_code != 200:
            return {"frames_status": r.status_code, "frames_error": r.text[:300]}
        got_bytes = parts(r)[0]
        want = ref[k]
        if ds.BitsAllocated == 1:
            got = unpack_bits(got_bytes, want.size)
        else:
            got = np.frombuffer(got_bytes, dtype=want.dtype.newbyteorder("<"))[:want.size]
        if got.size != want.size:
            return {"frames_status": 200, "frames_error": f"frame {k + 1}: {got.size} samples, {want.size} expected"}
        worst = max(worst, int(np.abs(got.astype(np.int64) - want.reshape(-1).astype(np.int64)).max()))
    return {"frames_status": 200, "frames": frames, "max_diff": worst}


def rendered(inst: str, ds: pydicom.Dataset) -> dict:
    r = requests.get(f"{inst}/rendered", headers={"Accept": "image/png"}, timeout=60)
    out = {"rendered_status": r.status_code}
    if r.status_code != 200:
        out["rendered_error"] = r.text[:300]
        return out
    # A multi-frame instance renders as a multipart of its frames.
    body = parts(r)[0] if r.headers["Content-Type"].startswith("multipart/") else r.content
    img = np.asarray(Image.open(io.BytesIO(body)))
    out["rendered_shape"] = list(img.shape)
    if ds.get("PhotometricInterpretation") == "RGB" or (img.ndim == 3 and ds.SamplesPerPixel == 3):
        ref = ds.pixel_array
        out["rendered_mean_diff"] = float(np.abs(img[..., :3].astype(int) - ref.astype(int)).mean())
    if ds.get("BitsAllocated") == 1:
        ref = ds.pixel_array[0] if int(ds.get("NumberOfFrames", 1)) > 1 else ds.pixel_array
        out["rendered_mean_diff"] = float(np.abs((img > 127).astype(int) - ref.astype(int)).mean())
    return out


def main() -> None:
    base, odd = sys.argv[1], sys.argv[2]
    manifest = json.load(open(os.path.join(odd, "manifest.json")))
    pydicom.config.replace_un_with_known_vr = True
    result = {}
    for name in sorted(manifest):
        path = os.path.join(odd, name)
        ds = pydicom.dcmread(path)
        entry = {"stow": stow(base, path)}
        if entry["stow"]["status"] == 200:
            inst = (f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                    f"/instances/{ds.SOPInstanceUID}")
            entry.update(rendered(inst, ds))
            if "error" in manifest[name]:
                r = requests.get(f"{inst}/frames/1", headers={"Accept": FRAMES_NATIVE}, timeout=60)
                entry.update({"frames_status": r.status_code, "frames_error": r.text[:300]})
            else:
                entry.update(compare_frames(base, ds, inst))
            q = requests.get(f"{base}/studies", params={"StudyInstanceUID": ds.StudyInstanceUID,
                                                        "includefield": "00081030"}, timeout=30)
            entry["qido"] = q.json() if q.status_code == 200 else q.status_code
        result[name] = entry
    # The study list as OHIF asks for it: no attribute may come without a Value.
    q = requests.get(f"{base}/studies", params={"limit": 101, "offset": 0, "fuzzymatching": "false",
                                                "includefield": "00081030,00080060"}, timeout=30)
    studies = q.json()
    result["study_list"] = {
        "count": len(studies),
        "without_value": sorted({tag for s in studies for tag, a in s.items()
                                 if not any(k in a for k in ("Value", "BulkDataURI", "InlineBinary"))}),
    }
    # dicomweb-client's frame retrieval with its defaults (Accept: type="*/*").
    ct = pydicom.dcmread(os.path.join(odd, "j2k_tiles.dcm"))
    client = DICOMwebClient(url=base)
    frames = client.retrieve_instance_frames(ct.StudyInstanceUID, ct.SeriesInstanceUID,
                                             ct.SOPInstanceUID, frame_numbers=[1])
    result["dicomweb_client_frames"] = {"count": len(frames), "bytes": len(frames[0]),
                                        "sha256": hashlib.sha256(frames[0]).hexdigest()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
