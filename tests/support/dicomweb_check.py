"""Check a DICOMweb server (QIDO-RS, WADO-RS, STOW-RS; DICOM PS3.18) with the dicomweb-client package.

usage:
  .venv/bin/python tests/support/dicomweb_check.py --url http://127.0.0.1:PORT/dicom-web \
      --files F1.dcm F2.dcm ... [--keep-going]

STOWs the given files (one store_instances call with all of them), then queries and retrieves
them back and asserts that what comes back equals the files: one output line per check, and on
the first failure a message naming the check with expected vs got and exit status 1. With
--keep-going every check runs and a summary of the failures is printed at the end (exit status 1
if any failed).

All expected values are computed from the files with pydicom. The checks are strict except where
PS3.18 / PS3.5 leave a choice to the server:
  * order of attributes, of results within a level (except the paging check, which needs the
    same order for the same query), of values of ModalitiesInStudy, of parts in a series/study
    retrieve;
  * trailing spaces (and leading spaces of non-text VRs) in string values, a trailing NUL in UIs,
    DS/IS written with other digits but the same number, the one padding byte of odd-length values;
  * when the server decompresses (default transfer syntax): Photometric Interpretation YBR_* may
    become RGB or YBR_FULL, Planar Configuration may change, and Lossy Image Compression attributes
    may be added for lossy sources;
  * the fragmentation of encapsulated pixel data returned "as stored" (transfer-syntax=*): if the
    bytes differ, the decoded pixels must still be identical;
  * a frame/bulk data part whose Content-Type carries a transfer-syntax parameter is decoded with it
    (a note is printed when that is not the default Explicit VR Little Endian);
  * lossy JPEG baseline sources: decoders may differ slightly (IDCT and chroma upsampling), so
    decoded values are compared with tolerance LOSSY_MAX_ABS / LOSSY_MEAN_ABS (below); lossless
    sources must match exactly;
  * studies on the server that are not in the files are allowed in QIDO results (they are checked
    against the query filter only). But the files must be all the instances of their studies on the
    server: instance/series counts and the series/study retrieves are compared with the files.

Against Orthanc 1.10.1 + DICOMweb plugin 1.7 (Debian 12) with sample-dicom/*.dcm, 69 of 99 checks
pass in about 1 s. The failures are where Orthanc departs from PS3.18:
  * QIDO values are not percent-decoded: dicomweb-client sends PatientName=DOE%2A and
    DOE%5EJANE%5EM, which match nothing (the unencoded DOE* / DOE^JANE^M do match);
  * Accept: multipart/related; type="application/dicom" (no transfer-syntax) returns the stored
    transfer syntax (implicit, deflated, big endian, JPEG*, RLE) instead of Explicit VR LE;
  * metadata of encapsulated (compressed) instances has no Pixel Data BulkDataURI at all;
  * frames of the JPEG 2000 instance: HTTP 500 (no JPEG 2000 decoder without the GDCM plugin).
"""
import argparse
import io
import sys
import time
import traceback
import uuid
from collections import OrderedDict
from email.message import Message
from urllib.parse import urlparse

import numpy as np
import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.multival import MultiValue
from pydicom.pixels import convert_color_space, pixel_array
from pydicom.sequence import Sequence
from pydicom.uid import UID

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE_TS = {EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, EXPLICIT_BE}
# Transfer syntaxes whose decoding need not reproduce the encoder's input exactly (JPEG lossy
# processes, JPEG-LS near-lossless, JPEG 2000 / HTJ2K that may be lossy).
LOSSY_TS = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
            "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203"}

# Lossy JPEG baseline: pydicom's two JPEG plugins (pylibjpeg-libjpeg and Pillow) already differ by
# up to 3 (mean 0.19) on sample-dicom/sc_rgb_jpeg_baseline.dcm; another decoder with non-"fancy"
# chroma upsampling can differ more at colour edges. Allow per-sample |diff| <= 16 and a mean
# |diff| <= 1.5 (a wrong decode, e.g. a YCbCr/RGB mix-up, gives mean differences in the tens).
LOSSY_MAX_ABS = 16
LOSSY_MEAN_ABS = 1.5

PIXEL_DATA = 0x7FE00010
OCTET_ACCEPT = 'multipart/related; type="application/octet-stream"'
DICOM_ANY_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'

# VRs whose JSON values must be JSON numbers (PS3.18 F.2.3); SV/UV may also be strings.
JSON_NUMBER_VRS = {"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US"}
JSON_BIG_NUMBER_VRS = {"SV", "UV"}
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
TEXT_VRS = {"ST", "LT", "UT", "UC", "UR"}  # leading spaces significant
SWAP_SIZE = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}

# Attributes that a transcoding server may change when it decompresses (PS3.5 8.2, PS3.3 C.7.6.3).
TRANSCODE_MAY_CHANGE = {0x00280004, 0x00280006}  # Photometric Interpretation, Planar Configuration
LOSSY_MAY_ADD = {0x00282110, 0x00282112, 0x00282114}  # Lossy Image Compression (Ratio, Method)


class CheckFailed(Exception):
    pass


def fail(msg):
    raise CheckFailed(msg)


def expect(cond, msg):
    if not cond:
        fail(msg)


# --------------------------------------------------------------------------------------------
# the files


class Instance:
    def __init__(self, path):
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        with open(path, "rb") as f:
            self.raw = f.read()
        self.ds = pydicom.dcmread(io.BytesIO(self.raw))
        ds = self.ds
        self.ts = str(ds.file_meta.TransferSyntaxUID)
        self.study = str(ds.StudyInstanceUID)
        self.series = str(ds.SeriesInstanceUID)
        self.sop = str(ds.SOPInstanceUID)
        self.sop_class = str(ds.SOPClassUID)
        self.frames = int(ds.get("NumberOfFrames", 1) or 1)
        self.has_pixels = PIXEL_DATA in ds
        self.compressed = self.ts not in NATIVE_TS
        self.lossy = self.ts in LOSSY_TS
        self.big_endian = self.ts == EXPLICIT_BE
        self._pixels = None

    @property
    def pixels(self):
        """pydicom's decoded pixel_array of the original (frames first if multi-frame)."""
        if self._pixels is None:
            self._pixels = pixel_array(self.ds)
        return self._pixels

    def frame_pixels(self, n):
        """Decoded frame n (1-based)."""
        return self.pixels[n - 1] if self.frames > 1 else self.pixels

    def native_le_pixel_bytes(self):
        """The file's (native) Pixel Data value as little endian bytes."""
        elem = self.ds[PIXEL_DATA]
        return to_little_endian(bytes(elem.value), elem.VR, not self.big_endian)

    def frame_size(self):
        ds = self.ds
        return ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8

    def native_frame_bytes(self, n):
        size = self.frame_size()
        return self.native_le_pixel_bytes()[(n - 1) * size:n * size]


def to_little_endian(data, vr, little_endian):
    size = SWAP_SIZE.get(vr)
    if little_endian or not size or len(data) % size:
        return data
    return np.frombuffer(data, dtype=f">u{size}").astype(f"<u{size}").tobytes()


# --------------------------------------------------------------------------------------------
# comparing data elements


def norm(elem, little_endian=True):
    """A comparable form of a data element's value: list of values (empty list when empty)."""
    vr, v = elem.VR, elem.value
    if v is None or (isinstance(v, (str, bytes, list, MultiValue)) and len(v) == 0):
        return []
    if vr in BINARY_VRS or isinstance(v, (bytes, bytearray)):
        if isinstance(v, (bytes, bytearray)):
            return [to_little_endian(bytes(v), vr, little_endian)]
        return [v]
    values = list(v) if isinstance(v, (MultiValue, list, tuple)) else [v]
    out = []
    for x in values:
        if x is None or x == "":
            out.append(None)
        elif vr in ("DS", "FD"):
            out.append(float(x))
        elif vr == "FL":
            out.append(float(np.float32(x)))
        elif vr in ("IS", "US", "SS", "UL", "SL", "SV", "UV", "AT"):
            out.append(int(x))
        elif vr in TEXT_VRS:
            out.append(str(x).rstrip(" \x00"))
        else:  # PN (str() of PersonName gives the components joined with = and ^), CS, UI, ...
            out.append(str(x).strip(" \x00"))
    return out


def first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def bytes_equal_modulo_pad(a, b):
    if a == b:
        return True
    if abs(len(a) - len(b)) == 1:
        short, long_ = sorted((a, b), key=len)
        return long_[:-1] == short and long_[-1:] in (b"\x00", b" ")
    return False


def describe(vals, limit=80):
    s = repr(vals if len(vals) != 1 else vals[0])
    if any(isinstance(x, bytes) for x in vals):
        s = f"<{sum(len(x) for x in vals)} bytes>"
    return s if len(s) <= limit else s[:limit] + "..."


def tag_name(tag):
    kw = pydicom.datadict.keyword_for_tag(tag)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}){' ' + kw if kw else ''}"


def diff_datasets(exp, got, *, exp_le=True, got_le=True, skip=(), may_change=(), may_add=(), path=""):
    """Differences between two datasets (group 0002 and group lengths ignored); list of strings."""
    problems = []

    def wanted(tag):
        return tag.group != 0x0002 and tag.element != 0x0000 and int(tag) not in skip

    exp_tags = {int(e.tag) for e in exp if wanted(e.tag)}
    got_tags = {int(e.tag) for e in got if wanted(e.tag)}
    for tag in sorted(exp_tags - got_tags):
        problems.append(f"{path}{tag_name(tag)} missing (expected {describe(norm(exp[tag], exp_le))})")
    for tag in sorted(got_tags - exp_tags):
        if tag not in may_add:
            problems.append(f"{path}{tag_name(tag)} unexpected (got {describe(norm(got[tag], got_le))})")
    for tag in sorted(exp_tags & got_tags):
        e, g = exp[tag], got[tag]
        if e.VR == "SQ" or g.VR == "SQ":
            if e.VR != g.VR:
                problems.append(f"{path}{tag_name(tag)} VR {e.VR} expected, got {g.VR}")
                continue
            ev, gv = e.value or Sequence(), g.value or Sequence()
            if len(ev) != len(gv):
                problems.append(f"{path}{tag_name(tag)}: {len(ev)} items expected, got {len(gv)}")
                continue
            for i, (ei, gi) in enumerate(zip(ev, gv)):
                problems += diff_datasets(ei, gi, exp_le=exp_le, got_le=got_le,
                                          path=f"{path}{tag_name(tag)}[{i}] > ")
            continue
        ne, ng = norm(e, exp_le), norm(g, got_le)
        if ne == ng:
            continue
        if len(ne) == len(ng) == 1 and isinstance(ne[0], bytes) and isinstance(ng[0], bytes) \
                and bytes_equal_modulo_pad(ne[0], ng[0]):
            continue
        if tag in may_change:
            continue
        problems.append(f"{path}{tag_name(tag)}: expected {describe(ne)}, got {describe(ng)}")
    return problems


def raise_problems(problems, what, limit=12):
    """Fail with the first problem on the headline (the summary shows headlines only), the rest below."""
    if problems:
        lines = [ln.strip() for p in problems for ln in p.splitlines() if ln.strip()]
        more = f"\n    ... and {len(lines) - limit} more" if len(lines) > limit else ""
        rest = "".join("\n    " + ln for ln in lines[1:limit])
        fail(f"{what}: {len(problems)} problem(s): {lines[0]}{rest}{more}")


# --------------------------------------------------------------------------------------------
# pixels


def compare_arrays(exp, got, lossy, what):
    if exp.shape != got.shape:
        fail(f"{what}: pixel array shape expected {exp.shape}, got {got.shape}")
    d = np.abs(exp.astype(np.int64) - got.astype(np.int64))
    if lossy:
        if d.max() > LOSSY_MAX_ABS or d.mean() > LOSSY_MEAN_ABS:
            fail(f"{what}: lossy source, |diff| expected max <= {LOSSY_MAX_ABS} and mean <= "
                 f"{LOSSY_MEAN_ABS}, got max {d.max()} mean {d.mean():.3f}")
        return f"max |diff| {d.max()}, mean {d.mean():.3f}"
    if d.max() != 0:
        idx = tuple(int(i) for i in np.argwhere(d)[0])
        fail(f"{what}: pixel values differ at {int((d != 0).sum())} of {d.size} samples "
             f"(max |diff| {d.max()}; first at {idx}: expected {exp[idx]}, got {got[idx]})")
    return "identical"


def to_rgb_if_ybr(arr, photometric):
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        return convert_color_space(arr, photometric, "RGB")
    return arr


def decode_pixels(inst, data, ts, nframes, photometric=None, planar=None):
    """Decode pixel data bytes (native, or one encapsulated frame per item of `data` if a list)
    with the attributes of the original instance; returns frames-first array like pixel_array."""
    ds = Dataset()
    for kw in ("SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "Rows",
               "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        if kw in inst.ds:
            setattr(ds, kw, inst.ds[kw].value)
    if photometric:
        ds.PhotometricInterpretation = photometric
    if planar is not None and ds.get("SamplesPerPixel", 1) > 1:
        ds.PlanarConfiguration = planar
    ds.NumberOfFrames = nframes
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    if ts in NATIVE_TS:
        ds.add_new(PIXEL_DATA, "OW" if ds.BitsAllocated > 8 else "OB", bytes(data))
    else:
        ds.add_new(PIXEL_DATA, "OB", encapsulate(list(data)))
    arr = pixel_array(ds, raw=ts in NATIVE_TS)
    if ts in NATIVE_TS:
        arr = to_rgb_if_ybr(arr, ds.PhotometricInterpretation)
    return arr


def check_native_decompressed(inst, data, frame_numbers, what):
    """`data` is native little endian pixel data (decompressed by the server) for frame_numbers;
    compare the values with pydicom's decode of the original. Colour from a YBR source may be
    given as RGB or as YBR_FULL (there is no photometric interpretation in a frame response)."""
    expected = np.stack([inst.frame_pixels(n) for n in frame_numbers])
    n = len(frame_numbers)
    size = inst.frame_size() * n
    if len(data) not in (size, size + 1):
        fail(f"{what}: expected {size} bytes of decompressed pixel data for {n} frame(s), got {len(data)}")
    data = data[:size]
    candidates = [None]
    if inst.ds.get("SamplesPerPixel", 1) > 1 and str(inst.ds.PhotometricInterpretation) != "RGB":
        candidates = ["RGB", "YBR_FULL"]
    errors = []
    for pi in candidates:
        got = decode_pixels(inst, data, EXPLICIT_LE, n, photometric=pi, planar=0)
        got = got.reshape(expected.shape) if got.size == expected.size else got
        try:
            return compare_arrays(expected, got, inst.lossy, what) + (f" (as {pi})" if pi else "")
        except CheckFailed as e:
            errors.append(str(e))
    fail(" / ".join(errors))


# --------------------------------------------------------------------------------------------
# HTTP helpers


def parse_content_type(value):
    m = Message()
    m["content-type"] = value or ""
    params = {k.lower(): v for k, v in m.get_params()[1:]} if m.get_params() else {}
    return m.get_content_type(), params


def parse_multipart(resp, what):
    """Parts of a multipart/related response: list of (content-type, params, body)."""
    mt, params = parse_content_type(resp.headers.get("Content-Type"))
    if mt != "multipart/related":
        fail(f"{what}: Content-Type expected multipart/related, got {resp.headers.get('Content-Type')!r}")
    boundary = params.get("boundary")
    expect(boundary, f"{what}: no boundary in Content-Type {resp.headers.get('Content-Type')!r}")
    chunks = (b"\r\n" + resp.content).split(b"\r\n--" + boundary.encode())
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[chunk.find(b"\r\n") + 2:]  # rest of the boundary line (transport padding)
        if chunk.startswith(b"\r\n"):
            head, body = b"", chunk[2:]
        else:
            head, sep, body = chunk.partition(b"\r\n\r\n")
            expect(sep, f"{what}: a part has no header/body separator")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        _, cparams = parse_content_type(headers.get("content-type", ""))
        parts.append((headers.get("content-type", ""), cparams, body))
    return parts


def http_status(exc):
    resp = getattr(exc, "response", None)
    return resp.status_code if resp is not None else None


def check_absolute_url(url, base, what):
    u, b = urlparse(url), urlparse(base)
    expect(u.scheme in ("http", "https") and u.netloc,
           f"{what}: expected an absolute http(s) URL, got {url!r}")
    default_port = 443 if b.scheme == "https" else 80
    if (b.port or default_port) != default_port:
        expect(u.port is not None,
               f"{what}: URL {url!r} has no port, but the service is on port {b.port} "
               f"(a client fetching it as given goes to port {default_port})")


# --------------------------------------------------------------------------------------------
# DICOM JSON (PS3.18 F.2)


def validate_json_dataset(obj, path=""):
    problems = []
    if not isinstance(obj, dict):
        return [f"{path or 'dataset'}: expected a JSON object, got {type(obj).__name__}"]
    for key, attr in obj.items():
        where = f"{path}{key}"
        if len(key) != 8 or any(c not in "0123456789ABCDEF" for c in key):
            problems.append(f"{where}: key is not 8 upper-case hex digits")
        if not isinstance(attr, dict) or not isinstance(attr.get("vr"), str) or len(attr["vr"]) != 2:
            problems.append(f"{where}: no valid 'vr'")
            continue
        vr = attr["vr"]
        kinds = [k for k in ("Value", "BulkDataURI", "InlineBinary") if k in attr]
        if len(kinds) > 1:
            problems.append(f"{where}: more than one of {kinds}")
        if "Value" not in attr:
            continue
        values = attr["Value"]
        if not isinstance(values, list):
            problems.append(f"{where}: Value is not an array")
            continue
        for i, v in enumerate(values):
            w = f"{where}[{i}]"
            if v is None:
                continue
            if vr == "SQ":
                problems += validate_json_dataset(v, f"{w} > ")
            elif vr == "PN":
                if not isinstance(v, dict) or not set(v) <= {"Alphabetic", "Ideographic", "Phonetic"}:
                    problems.append(f"{w}: PN value must be an object with Alphabetic/Ideographic/"
                                    f"Phonetic, got {v!r}")
            elif vr in JSON_NUMBER_VRS:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    problems.append(f"{w}: {vr} value must be a JSON number, got {v!r}")
            elif vr in JSON_BIG_NUMBER_VRS:
                if isinstance(v, bool) or not isinstance(v, (int, str)):
                    problems.append(f"{w}: {vr} value must be a number or a string, got {v!r}")
            elif vr == "AT":
                if not (isinstance(v, str) and len(v) == 8):
                    problems.append(f"{w}: AT value must be 8 hex digits, got {v!r}")
            elif not isinstance(v, str):
                problems.append(f"{w}: {vr} value must be a string, got {v!r}")
    return problems


def jvalues(obj, tag):
    """Values of attribute `tag` (hex string) of a DICOM JSON object; None when absent."""
    if tag not in obj:
        return None
    out = []
    for v in obj[tag].get("Value", []):
        if isinstance(v, dict) and obj[tag].get("vr") == "PN":
            v = v.get("Alphabetic", "")
        if isinstance(v, str):
            v = v.strip(" ")
        out.append(v)
    return out


def jvalue(obj, tag):
    vals = jvalues(obj, tag)
    return vals[0] if vals else None


# --------------------------------------------------------------------------------------------
# the checker


class Checker:
    def __init__(self, url, files, keep_going):
        self.url = url.rstrip("/")
        self.keep_going = keep_going
        self.failures = []
        self.notes = []
        self.passed = 0
        self.session = requests.Session()
        self.last_response = None
        self.bulk_uris = {}
        self.qido_url = "?"

        def remember(resp, *args, **kwargs):
            self.last_response = resp
            return resp

        self.client = DICOMwebClient(self.url, session=self.session, callback=remember)
        self.client.set_http_retry_params(retry=False)
        self.instances = [Instance(f) for f in files]
        sops = [i.sop for i in self.instances]
        if len(set(sops)) != len(sops):
            sys.exit("error: the same SOP Instance UID appears in more than one file")
        self.by_sop = {i.sop: i for i in self.instances}
        self.studies = OrderedDict()
        for inst in self.instances:
            self.studies.setdefault(inst.study, []).append(inst)
        self.series = OrderedDict()
        for inst in self.instances:
            self.series.setdefault(inst.series, []).append(inst)

    # -- running

    def run(self, name, fn, *args):
        try:
            detail = fn(*args)
        except CheckFailed as e:
            self._failed(name, str(e))
        except requests.ConnectionError as e:
            self.failures.append((name, f"cannot connect: {e}"))
            print(f"FAIL  {name}: cannot connect to the server: {e}", flush=True)
            print(f"\nstopped: the server at {self.url} is not reachable", flush=True)
            sys.exit(2)
        except requests.HTTPError as e:
            resp = e.response
            body = resp.text[:300] if resp is not None else ""
            self._failed(name, f"HTTP {http_status(e)} from {resp.request.method if resp is not None else ''} "
                               f"{resp.url if resp is not None else ''}: {body!r}")
        except Exception as e:  # a crash in the client or in decoding is a failed check too
            tb = traceback.extract_tb(e.__traceback__)[-1]
            self._failed(name, f"{type(e).__name__}: {e} (at {tb.filename.rsplit('/', 1)[-1]}:{tb.lineno})")
        else:
            self.passed += 1
            print(f"PASS  {name}" + (f"  ({detail})" if detail else ""), flush=True)

    def _failed(self, name, msg):
        self.failures.append((name, msg))
        print(f"FAIL  {name}: {msg}", flush=True)
        if not self.keep_going:
            print(f"\nstopped at the first failure ({self.passed} checks passed before it); "
                  f"use --keep-going to run all checks", flush=True)
            sys.exit(1)

    def note(self, msg):
        self.notes.append(msg)
        print(f"      note: {msg}", flush=True)

    # -- STOW

    def check_stow(self):
        datasets = [pydicom.dcmread(io.BytesIO(i.raw)) for i in self.instances]
        for inst, ds in zip(self.instances, datasets):
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds)
            if buf.getvalue() != inst.raw:
                self.note(f"{inst.name}: dicomweb-client's re-encoding (pydicom dcmwrite) is not "
                          f"byte-identical to the file")
        self.stow_result = None
        self.stow_json = None
        t0 = time.monotonic()
        result = self.client.store_instances(datasets)
        resp = self.last_response
        ctype = resp.headers.get("Content-Type", "")
        if resp.content and parse_content_type(ctype)[0] in ("application/dicom+json", "application/json"):
            self.stow_json = resp.json()
        self.stow_result = result
        if "ReferencedSOPSequence" not in result and self.stow_json is not None:
            self.stow_result = Dataset.from_json(self.stow_json)
            fail(f"HTTP {resp.status_code}, but dicomweb-client did not parse the response: its "
                 f"Content-Type {ctype!r} is not exactly application/dicom+json (the client compares "
                 f"the whole header value)")
        expect(resp.status_code == 200, f"HTTP status expected 200 (all stored), got {resp.status_code}")
        return f"HTTP {resp.status_code}, {len(datasets)} instances, {sum(len(i.raw) for i in self.instances)} " \
               f"bytes, {time.monotonic() - t0:.2f}s"

    def check_stow_references(self):
        res = self.stow_result
        expect(res is not None, "no STOW response to check")
        failed = res.get("FailedSOPSequence") or []
        expect(len(failed) == 0, "FailedSOPSequence expected empty, got " + "; ".join(
            f"{it.get('ReferencedSOPInstanceUID')}: reason {it.get('FailureReason')}" for it in failed))
        refs = res.get("ReferencedSOPSequence")
        expect(refs, f"ReferencedSOPSequence (0008,1199) expected with {len(self.instances)} items, absent or empty")
        got = [str(it.get("ReferencedSOPInstanceUID")) for it in refs]
        missing = set(self.by_sop) - set(got)
        extra = set(got) - set(self.by_sop)
        expect(not missing and not extra and len(got) == len(set(got)),
               f"ReferencedSOPInstanceUIDs expected {sorted(self.by_sop)}, got {got} "
               f"(missing {sorted(missing)}, unexpected {sorted(extra)})")
        problems = []
        for it in refs:
            inst = self.by_sop[str(it.ReferencedSOPInstanceUID)]
            if str(it.get("ReferencedSOPClassUID")) != inst.sop_class:
                problems.append(f"{inst.name}: ReferencedSOPClassUID expected {inst.sop_class}, "
                                f"got {it.get('ReferencedSOPClassUID')}")
        raise_problems(problems, "ReferencedSOPSequence")
        return f"{len(refs)} referenced, none failed"

    def check_stow_urls(self):
        refs = (self.stow_result or Dataset()).get("ReferencedSOPSequence") or []
        expect(refs, "no ReferencedSOPSequence to check")
        problems = []
        for it in refs:
            inst = self.by_sop.get(str(it.ReferencedSOPInstanceUID))
            url = it.get("RetrieveURL")
            if not url:
                problems.append(f"{inst.name}: no RetrieveURL (0008,1190) in its item")
                continue
            try:
                check_absolute_url(url, self.url, inst.name)
            except CheckFailed as e:
                problems.append(str(e))
                continue
            tail = f"/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"
            if not urlparse(url).path.endswith(tail):
                problems.append(f"{inst.name}: RetrieveURL expected to end with {tail}, got {url}")
        raise_problems(problems, "RetrieveURLs")
        return f"{len(refs)} absolute instance URLs"

    def check_stow_url_fetch(self):
        refs = (self.stow_result or Dataset()).get("ReferencedSOPSequence") or []
        items = [it for it in refs if it.get("RetrieveURL")]
        expect(items, "no RetrieveURL to fetch")
        it = items[0]
        url = str(it.RetrieveURL)
        resp = requests.get(url, headers={"Accept": DICOM_ANY_ACCEPT}, timeout=60)
        expect(resp.status_code == 200, f"GET {url}: HTTP status expected 200, got {resp.status_code}")
        parts = parse_multipart(resp, f"GET {url}")
        expect(len(parts) == 1, f"GET {url}: expected 1 part, got {len(parts)}")
        ds = pydicom.dcmread(io.BytesIO(parts[0][2]))
        expect(str(ds.SOPInstanceUID) == str(it.ReferencedSOPInstanceUID),
               f"GET {url}: SOP Instance UID expected {it.ReferencedSOPInstanceUID}, got {ds.SOPInstanceUID}")
        return f"GET {url} -> {self.by_sop[str(ds.SOPInstanceUID)].name}"

    # -- QIDO

    def expected_study(self, uid):
        insts = self.studies[uid]
        first = insts[0].ds
        return {
            "0020000D": [uid],
            "00100020": [str(first.PatientID)],
            "00100010": [str(first.PatientName)],
            "00080020": [str(first.StudyDate)],
            "00201208": [len(insts)],
            "00201206": [len({i.series for i in insts})],
        }

    def qido(self, what, **kwargs):
        results = self.client.search_for_studies(**kwargs)
        self.qido_url = self.last_response.url if self.last_response is not None else "?"
        expect(isinstance(results, list), f"{what}: expected a JSON array, got {type(results).__name__}")
        problems = []
        for i, r in enumerate(results):
            problems += validate_json_dataset(r, f"result {i}: ")
        raise_problems(problems, f"{what}: DICOM JSON encoding")
        return results

    def check_study_results(self, results, expected_uids, what, matches=None):
        """results must contain exactly expected_uids among the studies of the files, each with the
        right attributes; other studies (not from the files) must satisfy `matches`."""
        problems = []
        got_uids = [jvalue(r, "0020000D") for r in results]
        if len(got_uids) != len(set(got_uids)):
            problems.append(f"duplicate studies in results: {got_uids}")
        ours = [u for u in got_uids if u in self.studies]
        missing = [u for u in expected_uids if u not in got_uids]
        unexpected = [u for u in ours if u not in expected_uids]
        if missing or unexpected:
            fail(f"{what}: studies expected {sorted(expected_uids)}, got {sorted(ours)} of the files' studies "
                 f"(missing {missing}, unexpected {unexpected}); request GET {self.qido_url}")
        for r in results:
            uid = jvalue(r, "0020000D")
            if uid not in self.studies:
                if matches and not matches(r):
                    problems.append(f"study {uid} (not from the files) does not match the query")
                continue
            for tag, exp in self.expected_study(uid).items():
                got = jvalues(r, tag)
                if got != exp:
                    problems.append(f"study {uid[-12:]}: {tag_name(int(tag, 16))} expected {exp}, got {got}")
            exp_mods = sorted({i.ds.Modality for i in self.studies[uid]})
            got_mods = jvalues(r, "00080061")
            if got_mods is None or sorted(got_mods) != exp_mods:
                problems.append(f"study {uid[-12:]}: (0008,0061) ModalitiesInStudy expected {exp_mods} "
                                f"(any order), got {got_mods}")
        raise_problems(problems, f"{what} (GET {self.qido_url})")

    def check_qido_all(self):
        results = self.qido("all studies")
        self.all_studies = [jvalue(r, "0020000D") for r in results]
        self.check_study_results(results, list(self.studies), "all studies")
        extra = len(results) - len([u for u in self.all_studies if u in self.studies])
        return f"{len(results)} studies" + (f" ({extra} not from the files)" if extra else "")

    def check_qido_patient_id(self, pid):
        results = self.qido(f"PatientID={pid}", search_filters={"PatientID": pid})
        exp = [u for u, insts in self.studies.items() if str(insts[0].ds.PatientID) == pid]
        self.check_study_results(results, exp, f"PatientID={pid}",
                                 matches=lambda r: jvalue(r, "00100020") == pid)
        return f"{len(results)} studies"

    def check_qido_patient_name(self, pattern):
        prefix = pattern.rstrip("*")
        results = self.qido(f"PatientName={pattern}", search_filters={"PatientName": pattern})
        exp = [u for u, insts in self.studies.items() if str(insts[0].ds.PatientName).startswith(prefix)]
        self.check_study_results(results, exp, f"PatientName={pattern}",
                                 matches=lambda r: str(jvalue(r, "00100010") or "").upper().startswith(prefix.upper()))
        return f"{len(results)} studies"

    def check_qido_patient_name_exact(self, name):
        results = self.qido(f"PatientName={name}", search_filters={"PatientName": name})
        exp = [u for u, insts in self.studies.items() if str(insts[0].ds.PatientName) == name]
        self.check_study_results(results, exp, f"PatientName={name}",
                                 matches=lambda r: str(jvalue(r, "00100010") or "").upper() == name.upper())
        return f"{len(results)} studies"

    def check_qido_date_range(self, lo, hi):
        rng = f"{lo}-{hi}"
        results = self.qido(f"StudyDate={rng}", search_filters={"StudyDate": rng})

        def in_range(d):
            return d is not None and (not lo or d >= lo) and (not hi or d <= hi)

        exp = [u for u, insts in self.studies.items() if in_range(str(insts[0].ds.StudyDate))]
        self.check_study_results(results, exp, f"StudyDate={rng}", matches=lambda r: in_range(jvalue(r, "00080020")))
        return f"{len(results)} studies"

    def check_qido_includefield(self):
        results = self.qido("includefield", fields=["00081030", "00080060"])
        self.check_study_results(results, list(self.studies), "includefield=00081030,00080060")
        problems = []
        for r in results:
            uid = jvalue(r, "0020000D")
            if uid not in self.studies:
                continue
            exp = str(self.studies[uid][0].ds.get("StudyDescription", ""))
            got = jvalues(r, "00081030")
            if got is None:
                problems.append(f"study {uid[-12:]}: (0008,1030) StudyDescription requested by includefield, absent")
            elif (got or [""]) != [exp]:
                problems.append(f"study {uid[-12:]}: (0008,1030) StudyDescription expected {exp!r}, got {got}")
            mods = jvalues(r, "00080060")
            # Modality is a series attribute; at study level the server may leave it out, but a value
            # it returns must be one of the study's modalities.
            allowed = {i.ds.Modality for i in self.studies[uid]}
            if mods and not set(mods) <= allowed:
                problems.append(f"study {uid[-12:]}: (0008,0060) Modality {mods} not among the study's {sorted(allowed)}")
        raise_problems(problems, "includefield")
        with_mod = sum(1 for r in results if "00080060" in r)
        return f"StudyDescription present; Modality returned for {with_mod} of {len(results)} studies"

    def check_qido_paging(self):
        expect(len(self.studies) >= 2, "needs at least 2 studies in the files")
        full = [jvalue(r, "0020000D") for r in self.qido("all studies")]
        p1 = self.qido("limit=1&offset=0", limit=1, offset=0)
        p2 = self.qido("limit=1&offset=1", limit=1, offset=1)
        expect(len(p1) == 1, f"limit=1&offset=0: expected 1 result, got {len(p1)}")
        expect(len(p2) == 1, f"limit=1&offset=1: expected 1 result, got {len(p2)}")
        u1, u2 = jvalue(p1[0], "0020000D"), jvalue(p2[0], "0020000D")
        expect(u1 != u2, f"the two pages return the same study {u1}")
        expect([u1, u2] == full[:2], f"pages expected {full[:2]} (first two of the full list), got {[u1, u2]}")
        return "2 pages of 1 = first 2 studies"

    def check_qido_no_match(self):
        pid = "NO-SUCH-PATIENT-" + uuid.uuid4().hex[:8]
        results = self.qido(f"PatientID={pid}", search_filters={"PatientID": pid})
        expect(results == [], f"PatientID={pid}: expected [], got {len(results)} results")
        return f"HTTP {self.last_response.status_code}, []"

    def check_qido_series(self, study):
        results = self.client.search_for_series(study_instance_uid=study)
        problems = []
        for i, r in enumerate(results):
            problems += validate_json_dataset(r, f"result {i}: ")
        raise_problems(problems, "DICOM JSON encoding")
        expected = OrderedDict((s, insts) for s, insts in self.series.items() if insts[0].study == study)
        got = [jvalue(r, "0020000E") for r in results]
        expect(sorted(got) == sorted(expected), f"SeriesInstanceUIDs expected {sorted(expected)}, got {sorted(got)}")
        for r in results:
            s = jvalue(r, "0020000E")
            insts = expected[s]
            ds = insts[0].ds
            checks = {"00080060": [str(ds.Modality)], "00201209": [len(insts)]}
            if "SeriesNumber" in ds and "00200011" in r:
                checks["00200011"] = [int(ds.SeriesNumber)]
            for tag, exp in checks.items():
                if jvalues(r, tag) != exp:
                    problems.append(f"series {s[-12:]}: {tag_name(int(tag, 16))} expected {exp}, got {jvalues(r, tag)}")
        raise_problems(problems, "series attributes")
        return f"{len(results)} series"

    def check_qido_instances(self, series):
        insts = self.series[series]
        results = self.client.search_for_instances(study_instance_uid=insts[0].study, series_instance_uid=series)
        problems = []
        for i, r in enumerate(results):
            problems += validate_json_dataset(r, f"result {i}: ")
        raise_problems(problems, "DICOM JSON encoding")
        got = [jvalue(r, "00080018") for r in results]
        exp = [i.sop for i in insts]
        expect(sorted(got) == sorted(exp), f"SOPInstanceUIDs expected {sorted(exp)}, got {sorted(got)}")
        for r in results:
            inst = self.by_sop[jvalue(r, "00080018")]
            ds = inst.ds
            checks = {"00080016": ([inst.sop_class], True), "00200013": ([int(ds.InstanceNumber)], True)}
            for kw, tag in (("Rows", "00280010"), ("Columns", "00280011")):
                if kw in ds:
                    checks[tag] = ([int(ds[kw].value)], True)
            for kw, tag in (("NumberOfFrames", "00280008"), ("BitsAllocated", "00280100")):
                if kw in ds:
                    checks[tag] = ([int(ds[kw].value)], False)  # checked when returned
            for tag, (exp_v, required) in checks.items():
                got_v = jvalues(r, tag)
                if got_v is None and not required:
                    continue
                if got_v != exp_v:
                    problems.append(f"{inst.name}: {tag_name(int(tag, 16))} expected {exp_v}, got {got_v}")
        raise_problems(problems, "instance attributes")
        return f"{len(results)} instances"

    # -- WADO-RS retrieve

    def retrieve(self, inst, media_types):
        got = self.client.retrieve_instance(inst.study, inst.series, inst.sop, media_types=media_types)
        return got

    def check_retrieve_default(self, inst):
        ds = self.retrieve(inst, (("application/dicom",),))
        ts = str(ds.file_meta.TransferSyntaxUID)
        expect(ts == EXPLICIT_LE, f"Accept without transfer-syntax: transfer syntax expected {EXPLICIT_LE} "
                                  f"(Explicit VR Little Endian, PS3.18 default), got {ts} {UID(ts).name!r}"
                                  + (" (stored compressed: the server did not decompress)" if ts == inst.ts and inst.compressed else ""))
        may_change = TRANSCODE_MAY_CHANGE if inst.compressed else set()
        may_add = LOSSY_MAY_ADD if inst.lossy else set()
        problems = diff_datasets(inst.ds, ds, exp_le=not inst.big_endian, got_le=True, skip={PIXEL_DATA},
                                 may_change=may_change, may_add=may_add)
        if inst.compressed and inst.ds.get("SamplesPerPixel", 1) > 1:
            pi = str(ds.get("PhotometricInterpretation"))
            src = str(inst.ds.PhotometricInterpretation)
            if pi != src and not (src.startswith("YBR") and pi in ("RGB", "YBR_FULL")):
                problems.append(f"PhotometricInterpretation {src} may become RGB or YBR_FULL when decompressed, got {pi}")
        elif inst.compressed and str(ds.get("PhotometricInterpretation")) != str(inst.ds.PhotometricInterpretation):
            problems.append(f"PhotometricInterpretation expected {inst.ds.PhotometricInterpretation}, "
                            f"got {ds.get('PhotometricInterpretation')}")
        if inst.lossy and ds.get("LossyImageCompression") != "01":
            problems.append(f"LossyImageCompression expected '01' (lossy source), got {ds.get('LossyImageCompression')!r}")
        raise_problems(problems, "data elements")
        if not inst.has_pixels:
            return "no pixel data"
        expect(PIXEL_DATA in ds, "Pixel Data missing")
        got = pixel_array(ds, raw=True)
        got = to_rgb_if_ybr(got, str(ds.get("PhotometricInterpretation")))
        how = compare_arrays(inst.pixels, got, inst.lossy, "pixel data")
        return f"{ts}, {len(inst.ds)} elements equal, pixels {how}"

    def check_retrieve_any(self, inst):
        ds = self.retrieve(inst, (("application/dicom", "*"),))
        ts = str(ds.file_meta.TransferSyntaxUID)
        expect(ts == inst.ts, f"transfer-syntax=*: transfer syntax expected as stored {inst.ts} "
                              f"{UID(inst.ts).name!r}, got {ts} {UID(ts).name!r} (PS3.18 lets the server "
                              f"choose any here; returning the stored encoding is this project's contract)")
        exp_le, got_le = not inst.big_endian, ts != EXPLICIT_BE
        problems = diff_datasets(inst.ds, ds, exp_le=exp_le, got_le=got_le, skip={PIXEL_DATA})
        raise_problems(problems, "data elements")
        if not inst.has_pixels:
            return "no pixel data"
        expect(PIXEL_DATA in ds, "Pixel Data missing")
        a = to_little_endian(bytes(inst.ds[PIXEL_DATA].value), inst.ds[PIXEL_DATA].VR, exp_le)
        b = to_little_endian(bytes(ds[PIXEL_DATA].value), ds[PIXEL_DATA].VR, got_le)
        if bytes_equal_modulo_pad(a, b):
            return f"{ts}, all {len(inst.ds)} elements equal incl. Pixel Data bytes"
        expect(inst.compressed, f"Pixel Data bytes differ ({len(a)} expected, got {len(b)}; first "
                                f"difference at byte {first_difference(a, b)})")
        how = compare_arrays(inst.pixels, pixel_array(ds), False, "pixel data (encapsulation differs)")
        self.note(f"{inst.name}: encapsulated Pixel Data re-fragmented by the server ({len(a)} -> {len(b)} bytes)")
        return f"{ts}, elements equal, pixels {how}"

    def check_retrieve_series(self, series):
        insts = self.series[series]
        got = self.client.retrieve_series(insts[0].study, series, media_types=(("application/dicom", "*"),))
        got_uids = sorted(str(d.SOPInstanceUID) for d in got)
        exp = sorted(i.sop for i in insts)
        expect(got_uids == exp, f"SOP Instance UIDs expected {exp}, got {got_uids}")
        return f"{len(got)} instances"

    def check_retrieve_study(self, study):
        insts = self.studies[study]
        got = self.client.retrieve_study(study, media_types=(("application/dicom", "*"),))
        got_uids = sorted(str(d.SOPInstanceUID) for d in got)
        exp = sorted(i.sop for i in insts)
        expect(got_uids == exp, f"SOP Instance UIDs expected {exp}, got {got_uids}")
        return f"{len(got)} instances"

    # -- metadata

    def metadata_dataset(self, obj, inst, what):
        raise_problems(validate_json_dataset(obj), f"{what}: DICOM JSON encoding")
        uris = {}

        def handler(tag, vr, uri):
            uris[int(tag, 16)] = uri
            return None

        ds = Dataset.from_json(obj, bulk_data_uri_handler=handler)
        self.bulk_uris[inst.sop] = uris
        problems = []
        if inst.has_pixels:
            pd = obj.get("7FE00010")
            if pd is None:
                problems.append("(7FE0,0010) PixelData absent (expected a BulkDataURI)")
            elif "BulkDataURI" not in pd:
                problems.append(f"(7FE0,0010) PixelData expected as BulkDataURI, got keys {sorted(pd)}")
        # elements given by BulkDataURI are compared by fetching them (check_bulkdata)
        problems += diff_datasets(inst.ds, ds, exp_le=not inst.big_endian, skip=set(uris) | {PIXEL_DATA})
        # PN: the Alphabetic component group must hold the name with its ^ components
        pn = jvalue(obj, "00100010")
        if "PatientName" in inst.ds and pn != str(inst.ds.PatientName):
            problems.append(f"(0010,0010) PatientName Alphabetic expected {str(inst.ds.PatientName)!r}, got {pn!r}")
        raise_problems(problems, what)
        return ds, uris

    def check_metadata_instance(self, inst):
        obj = self.client.retrieve_instance_metadata(inst.study, inst.series, inst.sop)
        _, uris = self.metadata_dataset(obj, inst, "instance metadata")
        return f"{len(obj)} attributes equal; BulkDataURI for {', '.join(tag_name(t) for t in sorted(uris)) or 'none'}"

    def check_bulkdata(self, inst):
        uris = self.bulk_uris.get(inst.sop)
        expect(uris is not None, "no instance metadata to take BulkDataURIs from")
        expect(PIXEL_DATA in uris or not inst.has_pixels, "the instance metadata has no BulkDataURI for Pixel Data")
        details = []
        for tag, uri in sorted(uris.items()):
            check_absolute_url(uri, self.url, f"BulkDataURI of {tag_name(tag)}")
            resp = requests.get(uri, headers={"Accept": OCTET_ACCEPT}, timeout=60)
            expect(resp.status_code == 200, f"GET {uri}: HTTP status expected 200, got {resp.status_code}")
            parts = parse_multipart(resp, f"GET {uri}")
            expect(parts, f"GET {uri}: no parts")
            ctypes = {p[0] for p in parts}
            tss = {p[1].get("transfer-syntax", EXPLICIT_LE) for p in parts}
            expect(len(tss) == 1, f"GET {uri}: parts with different transfer syntaxes {ctypes}")
            ts = tss.pop()
            if tag != PIXEL_DATA:
                elem = inst.ds[tag]
                if isinstance(elem.value, (bytes, bytearray)):
                    exp = to_little_endian(bytes(elem.value), elem.VR, not inst.big_endian)
                    expect(bytes_equal_modulo_pad(exp, parts[0][2]),
                           f"{tag_name(tag)}: bulk data bytes differ ({len(exp)} expected, got {len(parts[0][2])})")
                    details.append(f"{tag_name(tag)} bytes equal")
                continue
            if not inst.compressed:
                expect(len(parts) == 1, f"Pixel Data: expected 1 part, got {len(parts)}")
                expect(ts == EXPLICIT_LE, f"Pixel Data of a native file: part transfer syntax expected {EXPLICIT_LE}, "
                                          f"got {ts} ({parts[0][0]!r})")
                exp = inst.native_le_pixel_bytes()
                got = parts[0][2]
                if not bytes_equal_modulo_pad(exp, got):
                    fail(f"Pixel Data bulk data: {len(exp)} bytes expected (the file's, little endian), got "
                         f"{len(got)}; first difference at byte {first_difference(exp, got)}")
                details.append(f"Pixel Data {len(got)} bytes equal to the file's")
            elif ts in NATIVE_TS:
                data = b"".join(p[2] for p in parts)
                how = check_native_decompressed(inst, data, list(range(1, inst.frames + 1)), "Pixel Data bulk data")
                details.append(f"Pixel Data decompressed by the server, values {how}")
            else:
                self.note(f"{inst.name}: Pixel Data bulk data returned in {ts} (Content-Type {parts[0][0]!r}), "
                          f"not the default {EXPLICIT_LE}")
                if len(parts) == inst.frames:
                    frames = [p[2] for p in parts]
                elif len(parts) == 1:  # the encapsulated value itself?
                    body = parts[0][2]
                    try:
                        frames = list(generate_frames(body, number_of_frames=inst.frames))
                    except Exception:
                        frames = [body]
                else:
                    fail(f"Pixel Data: {len(parts)} parts for {inst.frames} frame(s)")
                got = decode_pixels(inst, frames, ts, inst.frames)
                how = compare_arrays(inst.pixels, got.reshape(inst.pixels.shape), inst.lossy, "Pixel Data bulk data")
                details.append(f"Pixel Data in {ts}, decoded values {how}")
        return "; ".join(details)

    def check_metadata_series(self, series):
        insts = self.series[series]
        objs = self.client.retrieve_series_metadata(insts[0].study, series)
        return self._check_metadata_list(objs, insts)

    def check_metadata_study(self, study):
        insts = self.studies[study]
        objs = self.client.retrieve_study_metadata(study)
        return self._check_metadata_list(objs, insts)

    def _check_metadata_list(self, objs, insts):
        got = sorted(str(jvalue(o, "00080018")) for o in objs)
        exp = sorted(i.sop for i in insts)
        expect(got == exp, f"SOP Instance UIDs expected {exp}, got {got}")
        problems = []
        for o in objs:
            inst = self.by_sop[jvalue(o, "00080018")]
            try:
                self.metadata_dataset(o, inst, inst.name)
            except CheckFailed as e:
                problems.append(str(e))
        raise_problems(problems, "instances")
        return f"{len(objs)} instances, all attributes equal, PixelData as BulkDataURI"

    # -- frames

    def check_frames(self, inst, numbers):
        frames = self.client.retrieve_instance_frames(inst.study, inst.series, inst.sop, frame_numbers=numbers,
                                                      media_types=("application/octet-stream",))
        resp = self.last_response
        expect(len(frames) == len(numbers), f"expected {len(numbers)} part(s), got {len(frames)}")
        parts = parse_multipart(resp, "frames response")
        expect(len(parts) == len(numbers), f"expected {len(numbers)} part(s), got {len(parts)}")
        details = []
        for n, frame, (ctype, params, body) in zip(numbers, frames, parts):
            expect(frame == body, f"frame {n}: dicomweb-client's part differs from the raw multipart part")
            mt = parse_content_type(ctype)[0]
            ts = params.get("transfer-syntax", EXPLICIT_LE)
            if ts in NATIVE_TS and ts != EXPLICIT_LE:
                fail(f"frame {n}: part transfer syntax {ts} is not valid for frames (Content-Type {ctype!r})")
            if ts == EXPLICIT_LE:
                expect(mt in ("application/octet-stream", ""),
                       f"frame {n}: part Content-Type expected application/octet-stream, got {ctype!r}")
                if not inst.compressed:
                    exp = inst.native_frame_bytes(n)
                    if not bytes_equal_modulo_pad(exp, frame):
                        fail(f"frame {n}: expected {len(exp)} bytes (the frame's slice of the file's Pixel Data, "
                             f"little endian), got {len(frame)}; first difference at byte {first_difference(exp, frame)}")
                    details.append(f"frame {n}: {len(frame)} bytes equal")
                else:
                    how = check_native_decompressed(inst, frame, [n], f"frame {n}")
                    details.append(f"frame {n}: decompressed, values {how}")
            else:
                self.note(f"{inst.name} frame {n}: returned in {ts} (Content-Type {ctype!r}) although "
                          f"application/octet-stream was requested without transfer-syntax (default {EXPLICIT_LE})")
                got = decode_pixels(inst, [frame], ts, 1)
                exp = inst.frame_pixels(n)
                how = compare_arrays(exp, got.reshape(exp.shape), inst.lossy, f"frame {n} decoded with {ts}")
                details.append(f"frame {n}: {ts}, decoded values {how}")
        return "; ".join(details)

    # -- errors

    def expect_http_error(self, fn, statuses, what):
        try:
            fn()
        except requests.HTTPError as e:
            st = http_status(e)
            expect(st in statuses, f"{what}: HTTP status expected {' or '.join(map(str, statuses))}, got {st}")
            return f"HTTP {st}"
        resp = self.last_response
        fail(f"{what}: HTTP status expected {' or '.join(map(str, statuses))}, got "
             f"{resp.status_code if resp is not None else '?'} (no error)")

    def check_error_unknown_study(self):
        uid = "2.25." + str(uuid.uuid4().int)
        return self.expect_http_error(lambda: self.client.retrieve_study(uid), (404,), f"GET studies/{uid}")

    def check_error_bad_frame(self, inst):
        return self.expect_http_error(
            lambda: self.client.retrieve_instance_frames(inst.study, inst.series, inst.sop, frame_numbers=[999],
                                                         media_types=("application/octet-stream",)),
            (400, 404), f"GET .../instances/{inst.sop}/frames/999")

    def check_error_bad_qido(self):
        return self.expect_http_error(lambda: self.client.search_for_studies(additional_params={"limit": "abc"}),
                                      (400,), "GET studies?limit=abc")

    # -- all

    def run_all(self):
        insts = self.instances
        self.run("stow: store_instances (all files in one request)", self.check_stow)
        self.run("stow: ReferencedSOPSequence lists every instance, no FailedSOPSequence", self.check_stow_references)
        self.run("stow: RetrieveURLs absolute (port included) instance URLs", self.check_stow_urls)
        self.run("stow: fetch a RetrieveURL as given (requests, transfer-syntax=*)", self.check_stow_url_fetch)

        self.run("qido: all studies", self.check_qido_all)
        for pid in sorted({str(i.ds.PatientID) for i in insts}):
            self.run(f"qido: studies PatientID={pid}", self.check_qido_patient_id, pid)
        names = sorted({str(i.ds.PatientName) for i in insts})
        for name in names:
            prefix = name[:3]
            self.run(f"qido: studies PatientName={prefix}* (trailing wildcard)", self.check_qido_patient_name, prefix + "*")
        for name in names[:1]:
            self.run(f"qido: studies PatientName={name} (exact, with ^ components)", self.check_qido_patient_name_exact, name)
        dates = sorted({str(i.ds.StudyDate) for i in insts if i.ds.get("StudyDate")})
        if dates:
            lo, hi = (dates[1], dates[-2]) if len(dates) >= 3 else (dates[0], dates[0])
            self.run(f"qido: studies StudyDate={lo}-{hi} (range)", self.check_qido_date_range, lo, hi)
            self.run(f"qido: studies StudyDate={dates[-1]}- (open range)", self.check_qido_date_range, dates[-1], "")
            self.run(f"qido: studies StudyDate=-{dates[0]} (open range)", self.check_qido_date_range, "", dates[0])
        self.run("qido: studies includefield=00081030&includefield=00080060", self.check_qido_includefield)
        self.run("qido: studies limit=1 offset=0 / offset=1 paging", self.check_qido_paging)
        self.run("qido: studies of a non-existent PatientID -> []", self.check_qido_no_match)
        for study in self.studies:
            self.run(f"qido: series of study {study}", self.check_qido_series, study)
        for series in self.series:
            self.run(f"qido: instances of series {series}", self.check_qido_instances, series)

        for inst in insts:
            self.run(f"wado: retrieve_instance {inst.name} default transfer syntax", self.check_retrieve_default, inst)
            self.run(f"wado: retrieve_instance {inst.name} transfer-syntax=*", self.check_retrieve_any, inst)
        for series in self.series:
            self.run(f"wado: retrieve_series {series}", self.check_retrieve_series, series)
        for study in self.studies:
            self.run(f"wado: retrieve_study {study}", self.check_retrieve_study, study)

        for inst in insts:
            self.run(f"metadata: instance {inst.name}", self.check_metadata_instance, inst)
            self.run(f"metadata: fetch BulkDataURIs of {inst.name}", self.check_bulkdata, inst)
        for series in self.series:
            self.run(f"metadata: series {series}", self.check_metadata_series, series)
        for study in self.studies:
            self.run(f"metadata: study {study}", self.check_metadata_study, study)

        for inst in insts:
            if not inst.has_pixels:
                continue
            self.run(f"frames: {inst.name} frames/1 (application/octet-stream)", self.check_frames, inst, [1])
            if inst.frames > 1:
                self.run(f"frames: {inst.name} frames/1,2 (application/octet-stream)", self.check_frames, inst, [1, 2])

        self.run("errors: retrieve unknown study -> 404", self.check_error_unknown_study)
        single = next((i for i in insts if i.has_pixels and i.frames == 1), None)
        if single:
            self.run(f"errors: frames/999 of single-frame {single.name} -> 400 or 404", self.check_error_bad_frame, single)
        self.run("errors: QIDO limit=abc -> 400", self.check_error_bad_qido)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="DICOMweb base URL, e.g. http://127.0.0.1:8042/dicom-web")
    ap.add_argument("--files", nargs="+", required=True, help="DICOM files (Part 10) to store and check")
    ap.add_argument("--keep-going", action="store_true", help="run every check, then summarise the failures")
    args = ap.parse_args()
    t0 = time.monotonic()
    checker = Checker(args.url, args.files, args.keep_going)
    print(f"{len(checker.instances)} files, {len(checker.studies)} studies, {len(checker.series)} series; "
          f"server {checker.url}", flush=True)
    checker.run_all()
    elapsed = time.monotonic() - t0
    total = checker.passed + len(checker.failures)
    print(f"\n{checker.passed}/{total} checks passed in {elapsed:.1f}s", flush=True)
    if checker.failures:
        print(f"{len(checker.failures)} failed:")
        for name, msg in checker.failures:
            print(f"  - {name}: {msg.splitlines()[0]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
