"""Check a DICOMweb server's pixel decoding and rendering against the pixel corpus.

usage:
  .venv/bin/python tests/support/make_pixel_corpus.py OUTDIR
  .venv/bin/python tests/support/pixel_check.py --url http://127.0.0.1:PORT/dicom-web \
      --corpus OUTDIR [--keep-going] [--timeout SECONDS]

Every expectation comes from the corpus (OUTDIR/expected/manifest.json, expected/<name>.npy,
expected/render/<name>.f<N>.png) or from render_reference.render() run in-process; nothing is
taken from the server under test, and dcmtk's dcm2pnm renders every frame a second time as an
independent oracle. One PASS/FAIL line per check (SKIP when a check cannot apply: the
integration test counts a SKIP as a failure), a summary at the end; exit status 1 at the first failure (every check with --keep-going, then 1
if any failed), 2 if the server cannot be reached.

Checks:
  stow       every corpus file in its own STOW request (broken_* files may be stored or refused:
             their headers are valid; a refusal must be 409 with the instance in FailedSOPSequence
             and a FailureReason, and the broken-file checks then check that nothing of it is
             served).
  frames     every frame of every non-broken file, Accept multipart/related;
             type="application/octet-stream": one part, Content-Type application/octet-stream with
             transfer-syntax=1.2.840.10008.1.2.1, rows*cols*samples*BitsAllocated/8 bytes (+1 pad),
             read as little endian with BitsAllocated / PixelRepresentation and compared with
             expected/<name>.npy within the manifest tolerance (0 for lossless).
             - colour samples are read in the layout of the file's PlanarConfiguration (RLE and
               JPEG: the header's value); the other layout matching is a failure with that named;
             - YBR files: equal to the RGB .npy (server converted) or to the .ybr.npy (server left
               YBR) both pass, and the detail says which; a native YBR->RGB conversion may round
               1 level differently from pydicom's, so +1 is allowed for it;
             - PALETTE COLOR: the indices;
             - BitsStored < BitsAllocated: the samples as returned must equal the expected values
               (masked to BitsStored, sign-extended). Frames carry the stored sample encoding
               (PS3.18: Pixel Data as in an Explicit VR LE data set), so values that match only
               after the checker masks / sign-extends them pass, and the line says so.
  render     every frame, frames/{n}/rendered as image/png without parameters (and the
             instance-level rendered for single-frame files) against expected/render/*.png:
             same size and mode, max |diff| <= 1 + tolerance. On failure the checker tries
             alternative renderings (not inverted, window ignored, rescale ignored, high bits not
             masked, second window, VOILUTFunction ignored, VOI LUT entries bit-shifted, YBR not
             converted, channels swapped, ...) and names the one that matches.
  window     per grayscale file one explicit window=C,W,linear (C,W from the frame's modality
             value range: C = lo + 0.4 (hi - lo), W = (hi - lo) / 2), one sigmoid and one
             linear-exact, against render_reference.render() with that window; tolerance 1 plus
             the decoder tolerance scaled by 255 * |slope| / W.
  viewport   viewport=32,32 -> at most 32x32 with the source aspect ratio (and the content close
             to the downscaled reference); viewport=20,10,0,0,40,20 -> 20x10 showing the top-left
             40x20 source region.
  formats    rendered as image/jpeg and image/gif decode with Pillow, right size, close to the PNG
             reference.
  thumbnail  study and series thumbnails: image/jpeg, decodable, at most 128 px.
  broken     for each stored broken_* file: frames/1 and rendered -> HTTP 4xx/5xx within the
             timeout, JSON body {"error": ...} that names the transfer syntax or the problem (for a
             file STOW refused: 404); after each, QIDO GET /studies still answers 200 and a good
             file's frame and rendering still match their references (the decoders and the
             render pool still work). Frame 2 of a single-frame file (frames/2 and
             frames/2/rendered) -> 400 with a reason.
  dcm2pnm    every frame's default rendering, and per grayscale file the linear window of the
             window checks (plus sigmoid for two files; dcmtk has no LINEAR_EXACT), against dcmtk
             dcm2pnm (+Wi 1 / +Wl 1 / +Wm / +Ww C W +Wfl|+Wfs) of the file or of dcmtk's decode of
             it (pydicom's for JPEG 2000): the server's image and render_reference's each within 1
             (dcm2pnm truncates, the reference rounds) plus the decoder tolerance, except the
             differences listed in KNOWN_DCM2PNM, which must stay exactly as recorded.
  multiframe instance-level rendered with Accept multipart/related; type="image/png": one part per
             frame, each identical to that frame's frames/{n}/rendered image.
"""
import argparse
import copy
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

import numpy as np
import pydicom
import requests
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import render_reference as rr  # noqa: E402
from dicomweb_check import CheckFailed, expect, fail, parse_content_type, parse_multipart  # noqa: E402

EXPLICIT_LE = "1.2.840.10008.1.2.1"
OCTET_ACCEPT = 'multipart/related; type="application/octet-stream"'
PNG_MULTIPART_ACCEPT = 'multipart/related; type="image/png"'


class Skip(Exception):
    pass


# dcm2pnm cross-check: renderings of the server (and of render_reference) that differ from
# dcmtk's dcm2pnm by more than the tolerance, each for a known reason. The numbers are the exact
# (max |diff|, pixels differing by more than the tolerance) of the server's image and of the
# reference against dcm2pnm: a difference that grows, shrinks or goes away fails the check, so
# an entry is updated (or deleted) on purpose. Key: "<name> frame <n>" or
# "<name> window=<c>,<w>,<function>".
_DCMTK_YBR = ("dcmtk 3.6.7 converts YBR_FULL / YBR_FULL_422 to RGB in integer arithmetic, up to 2 "
              "levels off the PS3.3 C.7.6.3.1.2 formula that the server and render_reference (pydicom's "
              "convert_color_space) follow; the server's image equals the reference's here")
KNOWN_DCM2PNM = {
    "color_ybr_full frame 1": {"server": (2, 1981), "reference": (2, 1981), "reason": _DCMTK_YBR},
    "color_ybr_full_422_native frame 1": {"server": (2, 148), "reference": (2, 148), "reason": _DCMTK_YBR},
}


# --------------------------------------------------------------------------------------------
# small helpers


def where_differs(exp, got, tol, limit=4):
    """'(r, c): expected X, got Y; ...' for the first few pixels differing by more than tol."""
    d = np.abs(exp.astype(np.int64) - got.astype(np.int64))
    if d.ndim == 3:
        d = d.max(axis=-1)
    idx = np.argwhere(d > tol)
    out = []
    for r, c in idx[:limit]:
        e, g = exp[r, c], got[r, c]
        e = e.tolist() if hasattr(e, "tolist") else e
        g = g.tolist() if hasattr(g, "tolist") else g
        out.append(f"({r},{c}): expected {e}, got {g}")
    return "; ".join(out)


def diff_summary(exp, got, tol):
    d = np.abs(exp.astype(np.int64) - got.astype(np.int64))
    px = d.max(axis=-1) if d.ndim == 3 else d
    return (f"{int((px > tol).sum())} of {px.size} pixels differ by more than {tol} "
            f"(max |diff| {int(d.max())}, mean {d.mean():.2f}); {where_differs(exp, got, tol)}")


def run_tool(cmd):
    """Run a dcmtk tool; a failure is a failed check naming it."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd[:1])} exit status {r.returncode}: {(r.stderr or r.stdout).strip()[:300]}")


def maxdiff(a, b):
    if a.shape != b.shape:
        return math.inf
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def decode_image(body, what):
    try:
        im = Image.open(io.BytesIO(body))
        im.load()
    except Exception as e:  # noqa: BLE001
        fail(f"{what}: Pillow cannot decode the {len(body)} bytes returned: {type(e).__name__}: {e}; "
             f"first bytes {body[:16]!r}")
    return im


def image_array(im, want_rgb):
    """numpy array of a decoded image, grayscale (HxW) or RGB (HxWx3); a grey RGB image for a
    grayscale reference is accepted (channels must be equal), noted in the returned string."""
    note = ""
    if im.mode in ("P", "PA", "LA", "RGBA"):
        note = f"mode {im.mode} converted"
        im = im.convert("RGB" if want_rgb or im.mode in ("P", "PA", "RGBA") else "L")
    if want_rgb:
        if im.mode == "L":
            fail(f"colour image expected, got a grayscale ({im.mode}) image")
        return np.asarray(im.convert("RGB")), note
    a = np.asarray(im)
    if a.ndim == 3:
        if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])):
            fail(f"grayscale image expected, got {im.mode} with differing channels")
        note = (note + "; " if note else "") + f"grey {im.mode} image"
        a = a[..., 0]
    if a.dtype != np.uint8:
        fail(f"8-bit image expected, got mode {im.mode} ({a.dtype})")
    return a, note


def error_text(resp):
    """The 'error' string of a JSON error body, or a failure describing the body."""
    ctype = resp.headers.get("Content-Type", "")
    try:
        obj = resp.json()
    except ValueError:
        fail(f"HTTP {resp.status_code} body is not JSON (Content-Type {ctype!r}): {resp.text[:200]!r}")
    expect(isinstance(obj, dict) and isinstance(obj.get("error"), str) and obj["error"].strip(),
           f"HTTP {resp.status_code} JSON body has no 'error' string: {resp.text[:200]!r}")
    return obj["error"]


# --------------------------------------------------------------------------------------------
# the corpus


class Item:
    def __init__(self, corpus, rec):
        self.rec = rec
        self.file = rec["file"]
        self.name = rec["file"][:-4]
        self.path = os.path.join(corpus, rec["file"])
        self.sop = rec["sop_instance_uid"]
        self.series = rec["series_instance_uid"]
        self.study = None  # from the file
        self.ts = rec["transfer_syntax_uid"]
        self.ts_name = rec["transfer_syntax"]
        self.pi = rec["photometric_interpretation"]
        self.ba, self.bs = rec["bits_allocated"], rec["bits_stored"]
        self.signed = rec["pixel_representation"] == 1
        self.spp = rec["samples_per_pixel"]
        self.planar = rec.get("planar_configuration") or 0
        self.frames, self.rows, self.cols = rec["frames"], rec["rows"], rec["cols"]
        self.broken = bool(rec.get("broken"))
        self.tol = int(rec["tolerance"]["recommended"]) if rec.get("tolerance") else 0
        self.lossless = rec.get("lossless")
        self.grayscale = self.spp == 1 and self.pi != "PALETTE COLOR"
        plugin = (rec.get("render") or {}).get("decoding_plugin", "")
        self.plugin = "" if plugin.startswith("(") else plugin
        self.expected = self.expected_ybr = None
        if not self.broken:
            self.expected = np.load(os.path.join(corpus, rec["expected"]["file"]))
            if rec["expected"].get("ybr_file"):
                self.expected_ybr = np.load(os.path.join(corpus, rec["expected"]["ybr_file"]))
        self._ds = None
        self.stored = None  # True / False after STOW
        self.stow_refusal = None  # for a broken file STOW refused: how it was refused

    @property
    def ds(self):
        if self._ds is None:
            self._ds = pydicom.dcmread(self.path)
        return self._ds

    def ref_png(self, corpus, frame):
        return np.asarray(Image.open(os.path.join(corpus, "expected", "render", f"{self.name}.f{frame}.png")))

    def frame_bytes(self):
        return self.rows * self.cols * self.spp * self.ba // 8

    def modality(self, frame):
        return rr.modality_values(self.ds, self.expected[frame - 1])


def read_samples(body, it, layout):
    """Raw samples (as BitsAllocated-bit integers, signed per PixelRepresentation) of one frame,
    shape (rows, cols[, 3]); layout 0 = colour-by-pixel, 1 = colour-by-plane."""
    kind = "i" if it.signed else "u"
    arr = np.frombuffer(body[:it.frame_bytes()], dtype=np.dtype(f"<{kind}{it.ba // 8}"))
    if it.spp == 1:
        return arr.reshape(it.rows, it.cols)
    if layout == 1:
        return arr.reshape(it.spp, it.rows, it.cols).transpose(1, 2, 0)
    return arr.reshape(it.rows, it.cols, it.spp)


def normalise(raw, it):
    """What a DICOM reader makes of raw samples: masked to BitsStored, sign-extended if signed."""
    v = raw.astype(np.int64) & ((1 << it.bs) - 1)
    if it.signed:
        v = np.where(v & (1 << (it.bs - 1)), v - (1 << it.bs), v)
    return v


def ybr_to_rgb(ybr):
    from pydicom.pixels import convert_color_space
    return convert_color_space(np.ascontiguousarray(ybr.astype(np.uint8)), "YBR_FULL", "RGB")


# --------------------------------------------------------------------------------------------
# alternative renderings: what a wrong pipeline would produce (for naming the likely cause)


def alternative_renders(it, frame, window=None):
    """[(description, uint8 image)] of plausible mistakes for this file and frame."""
    ds = it.ds
    out = []

    def add(desc, fn):
        try:
            out.append((desc, fn()))
        except Exception:  # noqa: BLE001 - an alternative that cannot be computed is just skipped
            pass

    def variant(**changes):
        d = copy.deepcopy(ds)
        for k, v in changes.items():
            if v is None:
                if k in d:
                    delattr(d, k)
            else:
                setattr(d, k, v)
        return d

    def r(d, win=window, rounding="round"):
        return rr.render(d, frame, win, rounding=rounding, decoding_plugin=it.plugin)

    ref = r(ds)
    if it.grayscale:
        add("inverted (255 - reference)", lambda: 255 - ref)
        if it.pi == "MONOCHROME1":
            add("MONOCHROME1 not inverted", lambda: r(variant(PhotometricInterpretation="MONOCHROME2")))
        add("truncated instead of rounded (floor)", lambda: r(ds, rounding="floor"))
        if window is None:
            add("the file's VOI ignored (min/max of the frame)",
                lambda: r(variant(VOILUTSequence=None, WindowCenter=None, WindowWidth=None, VOILUTFunction=None)))
            if "VOILUTSequence" in ds:
                add("VOI LUT Sequence ignored and min/max of the stored range (0..2^BitsStored-1) used",
                    lambda: rr._to_u8(rr.modality_values(ds, rr.decode_frame(ds, frame)[0]) * 255.0 / (2 ** it.bs - 1)))

                def lut_shift():
                    item = ds.VOILUTSequence[0]
                    data, first, bits = rr._lut_values(item, "LUTData", "LUTDescriptor", it.signed)
                    x = rr.modality_values(ds, rr.decode_frame(ds, frame)[0])
                    return (rr._lookup(x, data, first) >> (bits - 8)).astype(np.uint8)
                add("VOI LUT entries reduced by a bit shift (v >> (bits-8)) instead of v*255/(2^bits-1)", lut_shift)

                def lut_not_scaled():
                    item = ds.VOILUTSequence[0]
                    data, first, _ = rr._lut_values(item, "LUTData", "LUTDescriptor", it.signed)
                    x = rr.modality_values(ds, rr.decode_frame(ds, frame)[0])
                    return np.clip(rr._lookup(x, data, first), 0, 255).astype(np.uint8)
                add("VOI LUT entries not scaled to 8 bits (clipped)", lut_not_scaled)
                add("VOI LUT Sequence applied to stored values but then windowed by min/max of its output",
                    lambda: rr._to_u8(_minmax(rr._lookup(rr.modality_values(ds, rr.decode_frame(ds, frame)[0]),
                                                         *rr._lut_values(ds.VOILUTSequence[0], "LUTData",
                                                                         "LUTDescriptor", it.signed)[:2]))))
            wc = ds.get("WindowCenter")
            if wc is not None and type(wc).__name__ == "MultiValue" and len(wc) > 1:
                add("the second window used instead of the first",
                    lambda: r(variant(WindowCenter=ds.WindowCenter[1], WindowWidth=ds.WindowWidth[1])))
            if "VOILUTFunction" in ds:
                add(f"VOILUTFunction {ds.VOILUTFunction} ignored (LINEAR used)", lambda: r(variant(VOILUTFunction=None)))
                add("LINEAR_EXACT used", lambda: r(variant(VOILUTFunction="LINEAR_EXACT")))
            if "WindowCenter" in ds:
                add("window applied as LINEAR_EXACT instead of LINEAR", lambda: r(variant(VOILUTFunction="LINEAR_EXACT")))
        if "RescaleSlope" in ds or "RescaleIntercept" in ds:
            add("Modality LUT (rescale slope/intercept) not applied",
                lambda: r(variant(RescaleSlope=None, RescaleIntercept=None)))
        if it.bs < it.ba:
            if it.signed:
                add("not sign-extended from BitsStored (stored bits read as unsigned 16-bit)",
                    lambda: r(variant(BitsStored=it.ba, HighBit=it.ba - 1, PixelRepresentation=0)))
            else:
                add("bits above HighBit not masked",
                    lambda: r(variant(BitsStored=it.ba, HighBit=it.ba - 1)))
        if window is not None:
            add("the window ignored (file's own VOI used)", lambda: r(ds, win=None))
            add("window applied to stored values (rescale ignored)",
                lambda: r(variant(RescaleSlope=None, RescaleIntercept=None)))
            c, w, f = window
            for other in ("linear", "linear-exact", "sigmoid"):
                if other != f:
                    add(f"window function {other} used instead of {f}", lambda o=other: r(ds, win=(c, w, o)))
    elif it.spp == 3:
        add("red and blue swapped (BGR)", lambda: ref[..., ::-1])
        if it.pi.startswith("YBR"):
            add("YBR not converted to RGB (YBR values shown as RGB)",
                lambda: rr.decode_frame(ds, frame, it.plugin)[0].astype(np.uint8))

            def ybr_cb_sign():
                y, cb, cr = (rr.decode_frame(ds, frame, it.plugin)[0][..., k].astype(np.float64) for k in range(3))
                g = y + 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
                out = ref.copy()
                out[..., 1] = np.clip(np.floor(g + 0.5), 0, 255).astype(np.uint8)
                return out
            add("YBR->RGB with the wrong sign on Cb in green: G = Y + 0.344136 (Cb-128) - 0.714136 (Cr-128) "
                "(the formula of dicom-pixeldata 0.10 convert_colorspace_u8; correct is - 0.344136 (Cb-128))",
                ybr_cb_sign)
        if it.pi == "RGB" and it.ts.startswith("1.2.840.10008.1.2.4."):
            add("YCbCr->RGB applied to RGB JPEG data (no colour transform in the stream)",
                lambda: ybr_to_rgb(ref))
        add("colour planes read with the wrong planar configuration",
            lambda: np.frombuffer(ref.tobytes(), np.uint8).reshape(3, it.rows, it.cols).transpose(1, 2, 0)
            if it.planar == 0 else np.frombuffer(ref.transpose(2, 0, 1).tobytes(), np.uint8).reshape(it.rows, it.cols, 3))
    else:  # palette
        add("palette indices shown as grey", lambda: np.repeat(rr.decode_frame(ds, frame)[0].astype(np.uint8)[..., None], 3, -1))
        add("red and blue swapped (BGR)", lambda: ref[..., ::-1])
    return out


def _minmax(x):
    x = x.astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo) * 255.0


def diagnose(it, frame, got, window=None, tol=1):
    hits = []
    for desc, img in alternative_renders(it, frame, window):
        if img.shape == got.shape:
            d = np.abs(img.astype(np.int64) - got.astype(np.int64))
            if d.max() <= tol:
                hits.append(f"{desc} (max |diff| {int(d.max())})")
            elif d.mean() < 1.0 and (d > tol).mean() < 0.02:
                hits.append(f"close to: {desc} (mean |diff| {d.mean():.2f}, max {int(d.max())})")
    if got.ndim == 2 and it.grayscale:
        ref = rr.render(it.ds, frame, window, decoding_plugin=it.plugin)
        if ref.shape == got.shape:
            a, b = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
            if a.std() > 0 and b.std() > 0:
                cc = float(np.corrcoef(a, b)[0, 1])
                hits.append(f"correlation with the reference {cc:+.3f}")
    return "; ".join(hits) if hits else "no simple alternative rendering matches"


# --------------------------------------------------------------------------------------------
# the checker


NATIVE_TS = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")


class Checker:
    def __init__(self, url, corpus, keep_going, timeout):
        self.url = url.rstrip("/")
        self.corpus = os.path.abspath(corpus)
        self.keep_going = keep_going
        self.timeout = timeout
        self.failures, self.skipped, self.notes = [], [], []
        self.passed = 0
        self.session = requests.Session()
        with open(os.path.join(self.corpus, "expected", "manifest.json")) as fh:
            self.manifest = json.load(fh)
        self.items = [Item(self.corpus, rec) for rec in self.manifest["files"]]
        for it in self.items:
            it.study = str(it.ds.StudyInstanceUID)
        self.by_name = {it.name: it for it in self.items}
        self.study = self.manifest["study_instance_uid"]
        self.server_frames = {}   # (name, frame) -> uint8 array of frames/{n}/rendered PNG
        self.tmp = tempfile.mkdtemp(prefix="pixel_check.")

    # -- running

    def run(self, name, fn, *args):
        try:
            detail = fn(*args)
        except Skip as e:
            self.skipped.append((name, str(e)))
            print(f"SKIP  {name}: {e}", flush=True)
        except CheckFailed as e:
            self._failed(name, str(e))
        except requests.ConnectionError as e:
            if self.reachable():
                # the server is up: it dropped this request (e.g. a streamed answer cut short)
                self._failed(name, f"the connection was closed without a complete response ({e}); "
                                   f"the server still answers QIDO")
                return
            self.failures.append((name, f"cannot connect: {e}"))
            print(f"FAIL  {name}: cannot connect to the server: {e}", flush=True)
            print(f"\nstopped: the server at {self.url} is not reachable (crashed?)", flush=True)
            sys.exit(2)
        except Exception as e:  # noqa: BLE001 - a crash in the checker is a failed check too
            tb = traceback.extract_tb(e.__traceback__)[-1]
            self._failed(name, f"{type(e).__name__}: {e} (at {tb.filename.rsplit('/', 1)[-1]}:{tb.lineno})")
        else:
            self.passed += 1
            print(f"PASS  {name}" + (f"  ({detail})" if detail else ""), flush=True)

    def annotate(self, msg):
        """Name the corpus file after each SOP Instance UID in a message."""
        for it in self.items:
            if it.sop in msg:
                msg = msg.replace(it.sop, f"{it.sop} [{it.file}]")
        return msg

    def _failed(self, name, msg):
        msg = self.annotate(msg)
        self.failures.append((name, msg))
        print(f"FAIL  {name}: {msg}", flush=True)
        if not self.keep_going:
            print(f"\nstopped at the first failure ({self.passed} checks passed before it); "
                  f"use --keep-going to run all checks", flush=True)
            sys.exit(1)

    def reachable(self):
        try:
            return self.session.get(self.url + "/studies", headers={"Accept": "application/dicom+json"},
                                    timeout=(5, self.timeout)).status_code < 500
        except requests.RequestException:
            return False

    def note(self, msg):
        self.notes.append(msg)
        print(f"      note: {msg}", flush=True)

    # -- HTTP

    def get(self, path, accept, params=None, timeout=None):
        """GET with a deadline on the whole answer; a body cut short (a streamed answer aborted
        after the status line) or a connection dropped before any answer is a failure that says
        so, with the status and the number of bytes received."""
        url = path if path.startswith("http") else self.url + path
        limit = timeout or self.timeout
        t0 = time.monotonic()
        try:
            resp = self.session.get(url, headers={"Accept": accept}, params=params, timeout=(5, limit), stream=True)
        except requests.Timeout:
            fail(f"GET {path}: no answer within {limit} s (hang?)")
        except requests.ConnectionError as e:
            if not self.reachable():
                raise
            fail(f"GET {path}: the server closed the connection without sending a status line "
                 f"({type(e).__name__}: {e}); it still answers QIDO, so it dropped this request")
        chunks = []
        try:
            for chunk in resp.iter_content(65536):
                chunks.append(chunk)
                if time.monotonic() - t0 > limit:
                    fail(f"GET {path}: body still arriving after {limit} s ({sum(map(len, chunks))} bytes so far)")
        except requests.Timeout:
            fail(f"GET {path}: HTTP {resp.status_code} headers received, then no more data within {limit} s")
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as e:
            fail(f"GET {path}: HTTP {resp.status_code} (Content-Type {resp.headers.get('Content-Type')!r}) was "
                 f"sent, then the body was cut off after {sum(map(len, chunks))} bytes ({type(e).__name__}): the "
                 f"server committed to success and aborted the stream, so the client gets no error status or reason")
        resp._content = b"".join(chunks)
        resp._content_consumed = True
        return resp

    def inst_path(self, it):
        return f"/studies/{it.study}/series/{it.series}/instances/{it.sop}"

    def get_ok(self, path, accept, params=None, what=None):
        resp = self.get(path, accept, params)
        if resp.status_code != 200:
            body = resp.text[:300]
            fail(f"{what or 'GET ' + path}: HTTP {resp.status_code}, expected 200: {body!r}")
        return resp

    def get_image(self, path, accept, params=None, what=None):
        resp = self.get_ok(path, accept, params, what)
        mt = parse_content_type(resp.headers.get("Content-Type"))[0]
        expect(mt == accept, f"Content-Type expected {accept}, got {resp.headers.get('Content-Type')!r}")
        return decode_image(resp.content, what or path), resp

    # -- STOW

    def stow_one(self, it):
        with open(it.path, "rb") as fh:
            data = fh.read()
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
                + f"\r\n--{boundary}--\r\n".encode())
        try:
            resp = self.session.post(
                self.url + "/studies", data=body, timeout=(5, self.timeout),
                headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                         "Accept": "application/dicom+json"})
        except requests.Timeout:
            fail(f"STOW of {it.file}: no answer within {self.timeout} s")
        try:
            obj = resp.json()
        except ValueError:
            obj = None
        refs = []
        failed = []
        if isinstance(obj, dict):
            for x in (obj.get("00081199") or {}).get("Value", []) or []:
                refs += (x.get("00081155") or {}).get("Value", []) or []
            for x in (obj.get("00081198") or {}).get("Value", []) or []:
                reason = ((x.get("00081197") or {}).get("Value") or ["?"])[0]
                failed.append(reason)
        it.stored = resp.status_code in (200, 202) and it.sop in refs
        if it.broken:
            if it.stored:
                return f"broken file accepted and stored (HTTP {resp.status_code})"
            # Refused: then it must be a clear refusal (409, the instance in FailedSOPSequence
            # with a reason), checked further by the broken-file checks.
            expect(resp.status_code == 409 and failed,
                   f"broken file neither stored nor refused with a FailureReason: HTTP "
                   f"{resp.status_code}: {resp.text[:300]!r}")
            it.stow_refusal = f"HTTP {resp.status_code}, FailureReason {failed}"
            return f"broken file refused: {it.stow_refusal}"
        expect(resp.status_code == 200, f"HTTP {resp.status_code}, expected 200: {resp.text[:300]!r}")
        expect(it.sop in refs, f"ReferencedSOPSequence does not list {it.sop}: {resp.text[:300]!r}")
        expect(not failed, f"FailedSOPSequence present: reasons {failed}")
        return "stored"

    def need_stored(self, it):
        if not it.stored:
            raise Skip(f"{it.file} was not stored")

    # -- frames

    def check_frame(self, it, frame):
        self.need_stored(it)
        path = f"{self.inst_path(it)}/frames/{frame}"
        resp = self.get_ok(path, OCTET_ACCEPT)
        parts = parse_multipart(resp, f"GET {path}")
        expect(len(parts) == 1, f"expected 1 part, got {len(parts)}")
        ctype, params, body = parts[0]
        mt = parse_content_type(ctype)[0]
        expect(mt == "application/octet-stream", f"part Content-Type expected application/octet-stream, got {ctype!r}")
        ts = params.get("transfer-syntax")
        expect(ts in (None, EXPLICIT_LE), f"part transfer-syntax expected {EXPLICIT_LE}, got {ts!r} ({ctype!r})")
        if ts is None:
            self.note(f"{it.file} frame {frame}: part Content-Type has no transfer-syntax parameter ({ctype!r})")
        size = it.frame_bytes()
        packed = it.rows * it.cols * 2
        if it.pi == "YBR_FULL_422" and it.ts in NATIVE_TS and len(body) in (packed, packed + 1):
            # Native YBR_FULL_422 is packed (Y1 Y2 Cb Cr per pair, PS3.3 C.7.6.3.1.2): frames
            # carry it as stored, like Pixel Data.
            stored = bytes(it.ds.PixelData)[(frame - 1) * packed:frame * packed]
            expect(body[:packed] == stored, "packed YBR_FULL_422 frame differs from the stored bytes")
            return "packed YBR_FULL_422 as stored (Y1 Y2 Cb Cr per pair of pixels)"
        if len(body) not in (size, size + 1):
            msg = (f"expected {size} bytes (rows {it.rows} x cols {it.cols} x samples {it.spp} x "
                   f"{it.ba // 8} bytes), got {len(body)}")
            if it.pi == "YBR_FULL_422" and len(body) == it.rows * it.cols * 2:
                msg += "; that is the packed YBR_FULL_422 size (Y0 Y1 Cb Cr per pair): not unpacked"
            elif len(body) * 2 == size:
                msg += " (half: 8-bit data for a 16-bit frame?)"
            fail(msg)
        exp = it.expected[frame - 1]
        what = []
        if it.spp == 3:
            return self._colour_frame(it, frame, body, exp)
        raw = read_samples(body, it, 0).astype(np.int64)
        d = maxdiff(raw, exp)
        if d <= it.tol:
            what.append(f"values equal to expected/{it.name}.npy" if d == 0 else f"max |diff| {d} <= {it.tol}")
            if it.pi == "PALETTE COLOR":
                what.append("palette indices")
            return ", ".join(what)
        # no match as returned: name the cause
        norm = normalise(raw, it)
        if it.bs < it.ba and maxdiff(norm, exp) <= it.tol:
            # Frames carry the stored sample encoding, as Pixel Data does in an Explicit VR Little
            # Endian data set (PS3.18 8.7.3.5.2): bits above HighBit are the client's to mask and
            # sign-extend, as dicomweb_check.py's byte-for-byte comparison also requires.
            high = int(((raw.astype(np.uint64) >> np.uint64(it.bs)) != 0).sum())
            return (f"stored encoding ({high} samples with bits above HighBit {it.bs - 1}); equal to "
                    f"expected/{it.name}.npy after masking/sign-extending to BitsStored {it.bs}")
        hints = []
        if it.ba > 8:
            sw = read_samples(np.frombuffer(body[:size], f">{'i' if it.signed else 'u'}{it.ba // 8}")
                              .astype(f"<{'i' if it.signed else 'u'}{it.ba // 8}").tobytes(), it, 0).astype(np.int64)
            if maxdiff(normalise(sw, it), exp) <= it.tol:
                hints.append("the bytes are big endian (not swapped to little endian)")
        if it.signed:
            uns = raw.astype(np.int64) & ((1 << it.ba) - 1)
            if maxdiff(uns, exp) <= it.tol:
                hints.append("values read unsigned")
        fail(f"values differ from expected/{it.name}.npy: {diff_summary(exp, raw, it.tol)}"
             + (f"; diagnosis: {', '.join(hints)}" if hints else ""))

    def _colour_frame(self, it, frame, body, exp):
        layout = it.planar
        other = 1 - layout
        ybr_slack = 1 if (it.pi.startswith("YBR") and it.lossless) else 0  # YBR->RGB rounding
        cands = [("RGB", exp, it.tol + ybr_slack)]
        if it.expected_ybr is not None:
            cands.append(("YBR (not converted to RGB)", it.expected_ybr[frame - 1], it.tol))
        for lay in (layout, other):
            got = read_samples(body, it, lay).astype(np.int64)
            for label, ref, tol in cands:
                d = maxdiff(got, ref)
                if d <= tol:
                    lay_name = "colour-by-plane" if lay == 1 else "colour-by-pixel"
                    if lay != layout:
                        fail(f"values match the {label} expectation only when read {lay_name}, but the instance's "
                             f"PlanarConfiguration is {layout}: the frame bytes are in the wrong layout")
                    how = "identical" if d == 0 else f"max |diff| {d} <= {tol}"
                    return (f"{label}: {how}, {lay_name}"
                            + ("; the server returns YBR for this photometric interpretation" if label.startswith("YBR") else ""))
        got = read_samples(body, it, layout).astype(np.int64)
        hints = []
        if maxdiff(got[..., ::-1], exp) <= it.tol + ybr_slack:
            hints.append("red and blue swapped")
        if it.pi == "RGB" and maxdiff(ybr_to_rgb(np.clip(exp, 0, 255)).astype(np.int64), got) <= it.tol + 2:
            hints.append("YCbCr->RGB applied to RGB data")
        msgs = [f"vs RGB: {diff_summary(exp, got, it.tol + ybr_slack)}"]
        if it.expected_ybr is not None:
            msgs.append(f"vs YBR: {diff_summary(it.expected_ybr[frame - 1], got, it.tol)}")
        fail("; ".join(msgs) + (f"; diagnosis: {', '.join(hints)}" if hints else ""))

    # -- rendered

    def check_render(self, it, frame, instance_level=False):
        self.need_stored(it)
        path = self.inst_path(it) + ("/rendered" if instance_level else f"/frames/{frame}/rendered")
        im, _ = self.get_image(path, "image/png")
        ref = it.ref_png(self.corpus, frame)
        got, note = image_array(im, ref.ndim == 3)
        if not instance_level:
            self.server_frames[(it.name, frame)] = got
        expect(got.shape == ref.shape, f"image size/shape expected {ref.shape}, got {got.shape} (PNG {im.size[0]}x{im.size[1]} {im.mode})")
        tol = 1 + it.tol
        d = maxdiff(got, ref)
        if d > tol:
            fail(f"rendering differs from expected/render/{it.name}.f{frame}.png: {diff_summary(ref, got, tol)}; "
                 f"diagnosis: {diagnose(it, frame, got, None, tol)}")
        return f"max |diff| {d} <= {tol}" + (f"; {note}" if note else "")

    def window_for(self, it):
        m = it.modality(1)
        lo, hi = float(m.min()), float(m.max())
        c = round(lo + 0.4 * (hi - lo))
        w = max(2, round((hi - lo) / 2))
        return c, w

    def check_window(self, it, c, w, func):
        self.need_stored(it)
        path = f"{self.inst_path(it)}/frames/1/rendered"
        im, _ = self.get_image(path, "image/png", params={"window": f"{c},{w},{func}"})
        ref = rr.render(it.path, 1, (c, w, func), decoding_plugin=it.plugin)
        got, note = image_array(im, False)
        expect(got.shape == ref.shape, f"image shape expected {ref.shape}, got {got.shape}")
        slope = abs(float(it.rec.get("rescale_slope", 1.0)))
        tol = 1 + math.ceil(it.tol * slope * 255.0 / max(1.0, w - 1))
        d = maxdiff(got, ref)
        if d > tol:
            fail(f"window={c},{w},{func} rendering differs from render_reference: {diff_summary(ref, got, tol)}; "
                 f"diagnosis: {diagnose(it, 1, got, (c, w, func), tol)}")
        # the window must change something compared with the default rendering
        return f"max |diff| {d} <= {tol}" + (f"; {note}" if note else "")

    # -- viewport / formats

    def check_viewport_fit(self, it, vw, vh):
        self.need_stored(it)
        im, _ = self.get_image(f"{self.inst_path(it)}/rendered", "image/png", params={"viewport": f"{vw},{vh}"})
        w, h = im.size
        expect(w <= vw and h <= vh, f"viewport={vw},{vh}: got {w}x{h}, larger than the viewport")
        scale = min(vw / it.cols, vh / it.rows)
        ew, eh = it.cols * scale, it.rows * scale
        expect((abs(w - ew) < 1 and abs(h - eh) < 1) and (w == vw or h == vh),
               f"viewport={vw},{vh} on {it.cols}x{it.rows}: expected {ew:.1f}x{eh:.1f} (rounded, aspect "
               f"{it.cols / it.rows:.3f}), got {w}x{h} (aspect {w / h:.3f})")
        ref = Image.fromarray(it.ref_png(self.corpus, 1)).resize((w, h), Image.BOX)
        got, _ = image_array(im, it.spp == 3 or it.pi == "PALETTE COLOR")
        mean = float(np.abs(np.asarray(ref, np.float64) - got.astype(np.float64)).mean())
        expect(mean <= 12, f"viewport={vw},{vh}: {w}x{h} image does not look like the downscaled reference "
                           f"(mean |diff| {mean:.1f} > 12)")
        return f"{w}x{h}, mean |diff| vs box-downscaled reference {mean:.1f}"

    def check_viewport_region(self, it, vw, vh, sx, sy, sw, sh):
        self.need_stored(it)
        im, _ = self.get_image(f"{self.inst_path(it)}/rendered", "image/png",
                               params={"viewport": f"{vw},{vh},{sx},{sy},{sw},{sh}"})
        expect(im.size == (vw, vh), f"viewport={vw},{vh},{sx},{sy},{sw},{sh}: expected {vw}x{vh}, got {im.size[0]}x{im.size[1]}")
        ref_full = it.ref_png(self.corpus, 1)
        crop = ref_full[sy:sy + sh, sx:sx + sw]
        ref = np.asarray(Image.fromarray(crop).resize((vw, vh), Image.BOX), np.float64)
        got, _ = image_array(im, ref_full.ndim == 3)
        mean = float(np.abs(ref - got.astype(np.float64)).mean())
        # what showing the whole image instead of the region would give
        whole = np.asarray(Image.fromarray(ref_full).resize((vw, vh), Image.BOX), np.float64)
        mean_whole = float(np.abs(whole - got.astype(np.float64)).mean())
        expect(mean <= 12 and mean < mean_whole,
               f"the {vw}x{vh} image does not show source region ({sx},{sy}) {sw}x{sh}: mean |diff| vs that "
               f"region downscaled {mean:.1f}, vs the whole image downscaled {mean_whole:.1f}")
        return f"{vw}x{vh}, mean |diff| vs the region {mean:.1f} (vs whole image {mean_whole:.1f})"

    def check_format(self, it, accept, fmt, max_mean):
        self.need_stored(it)
        im, _ = self.get_image(f"{self.inst_path(it)}/frames/1/rendered", accept)
        expect(im.format == fmt, f"Pillow reads the image as {im.format}, expected {fmt}")
        ref = it.ref_png(self.corpus, 1)
        expect(im.size == (it.cols, it.rows), f"size expected {it.cols}x{it.rows}, got {im.size[0]}x{im.size[1]}")
        got = np.asarray(im.convert("RGB" if ref.ndim == 3 else "L"), np.float64)
        mean = float(np.abs(got - ref).mean())
        expect(mean <= max_mean, f"{fmt} image differs from the PNG reference: mean |diff| {mean:.2f} > {max_mean}")
        return f"{im.size[0]}x{im.size[1]} {im.mode}, mean |diff| vs reference {mean:.2f}"

    def check_quality(self, it):
        self.need_stored(it)
        path = f"{self.inst_path(it)}/frames/1/rendered"
        lo = self.get_ok(path, "image/jpeg", params={"quality": "5"}).content
        hi = self.get_ok(path, "image/jpeg", params={"quality": "100"}).content
        decode_image(lo, "quality=5")
        decode_image(hi, "quality=100")
        expect(len(lo) < len(hi), f"quality=5 gives {len(lo)} bytes, quality=100 {len(hi)}: quality has no effect")
        return f"quality=5: {len(lo)} bytes, quality=100: {len(hi)} bytes"

    # -- thumbnails

    def check_thumbnail(self, path, what):
        im, resp = self.get_image(path, "image/jpeg")
        expect(im.format == "JPEG", f"{what} thumbnail: Pillow reads {im.format}, expected JPEG")
        expect(max(im.size) <= 128, f"{what} thumbnail is {im.size[0]}x{im.size[1]}, larger than 128 px")
        a = np.asarray(im.convert("L"), np.float64)
        expect(a.std() > 2, f"{what} thumbnail is flat (std {a.std():.2f}): not an image of the data")
        return f"{im.size[0]}x{im.size[1]} {im.mode}, {len(resp.content)} bytes"

    # -- errors

    def problem_words(self, it):
        """Patterns of which one must appear in the error for a broken file."""
        words = [re.escape(it.ts), re.escape(it.ts_name.lower())]
        if it.ts.startswith("1.2.840.10008.1.2.4."):
            words += ["jpeg", "marker", "sof", "huffman", "frame header", "corrupt", "invalid"]
        else:
            words += [r"length", r"\bbytes?\b", r"size", r"short", r"truncat", r"too (?:small|few)",
                      r"insufficient", r"expected \d+", r"\d+ ?(?:<|>|!=) ?\d+", r"mismatch", r"bits ?allocated"]
        return words

    def check_broken(self, it, kind):
        path = self.inst_path(it) + ("/frames/1" if kind == "frames" else "/rendered")
        accept = OCTET_ACCEPT if kind == "frames" else "image/png"
        if not it.stored:
            # Refused at STOW (clearly: stow_one checked the answer): nothing of it is served.
            expect(it.stow_refusal is not None, f"{it.file} was neither stored nor refused")
            resp = self.get(path, accept)
            expect(resp.status_code == 404,
                   f"{it.file} was refused at STOW ({it.stow_refusal}), yet GET {kind} answers HTTP "
                   f"{resp.status_code}: {resp.text[:200]!r}")
            return f"refused at STOW ({it.stow_refusal}); GET {kind}: HTTP 404"
        t0 = time.monotonic()
        resp = self.get(path, accept)
        dt = time.monotonic() - t0
        if resp.status_code < 400:
            extra = ""
            if kind == "frames":
                extra = f"; {len(resp.content)} bytes of body (frame needs {it.frame_bytes()})"
            fail(f"GET {kind}: HTTP {resp.status_code} for broken pixel data, expected 4xx/5xx "
                 f"({it.rec['expected_error'][:100]}){extra}")
        msg = error_text(resp)
        words = self.problem_words(it)
        hits = [m.group(0) for w in words for m in [re.search(w, msg.lower())] if m]
        expect(hits, f"HTTP {resp.status_code} error {msg!r} names neither the transfer syntax ({it.ts} / "
                     f"{it.ts_name}) nor the problem")
        return f"HTTP {resp.status_code} in {dt:.2f}s, names {', '.join(dict.fromkeys(hits))}: {msg[:200]!r}"

    def check_still_serving(self, it):
        """After a broken file: the index still answers, and so do the decoders and the renderer
        (a QIDO answer alone comes from the index and says nothing about a render thread that
        died or hangs): a good file's frame and rendering still match their references."""
        resp = self.get("/studies", "application/dicom+json")
        expect(resp.status_code == 200, f"QIDO GET /studies: HTTP {resp.status_code}: {resp.text[:200]!r}")
        try:
            studies = resp.json()
        except ValueError:
            fail(f"QIDO GET /studies: body is not JSON: {resp.text[:200]!r}")
        expect(any((s.get("0020000D") or {}).get("Value", [None])[0] == self.study for s in studies),
               "QIDO GET /studies does not list the corpus study")
        self.need_stored(it)
        frame = self.check_frame(it, 1)
        render = self.check_render(it, 1)
        return f"QIDO HTTP 200; {it.name} frames/1: {frame}; rendered: {render}"

    # -- dcm2pnm: dcmtk's renderer as a second, independent oracle

    def dcmtk_input(self, it):
        """A file dcm2pnm reads with the same stored values: the file itself (native), dcmtk's
        own decode (RLE, JPEG, JPEG-LS), or for JPEG 2000 (no dcmtk codec) pydicom's decode
        with the reference decoder, written as a native file."""
        if it.ts in NATIVE_TS and it.ts != "1.2.840.10008.1.2.1.99":
            return it.path
        out = os.path.join(self.tmp, f"{it.name}.native.dcm")
        if os.path.exists(out):
            return out
        if it.ts == "1.2.840.10008.1.2.5":
            tool = ["dcmdrle"]
        elif "JPEG-LS" in it.ts_name:
            tool = ["dcmdjpls"]
        elif "2000" in it.ts_name:
            d = pydicom.dcmread(it.path)
            d.decompress(decoding_plugin="pylibjpeg", generate_instance_uid=False)
            d.save_as(out, enforce_file_format=True)
            return out
        elif it.ts.startswith("1.2.840.10008.1.2.4."):
            tool = ["dcmdjpeg"]
        else:
            tool = ["dcmconv", "+te"]
        run_tool([*tool, it.path, out])
        return out

    def dcm2pnm(self, it, frame, window=None):
        if window is not None:
            c, w, func = window
            voi = ["+Ww", str(c), str(w), "+Wfs" if func == "sigmoid" else "+Wfl"]
        elif "VOILUTSequence" in it.ds:
            voi = ["+Wl", "1"]
        elif "WindowCenter" in it.ds:
            voi = ["+Wi", "1"]
        elif it.grayscale:
            voi = ["+Wm"]
        else:
            voi = []
        out = os.path.join(self.tmp, f"{it.name}.f{frame}.{uuid.uuid4().hex[:8]}.png")
        run_tool(["dcm2pnm", "+on", "+F", str(frame), *voi, self.dcmtk_input(it), out])
        return np.asarray(Image.open(out)), " ".join(["dcm2pnm", "+on", "+F", str(frame), *voi])

    def check_dcm2pnm(self, it, frame, window=None):
        self.need_stored(it)
        params = None if window is None else {"window": f"{window[0]},{window[1]},{window[2]}"}
        im, _ = self.get_image(f"{self.inst_path(it)}/frames/{frame}/rendered", "image/png", params=params)
        want_rgb = not it.grayscale
        got, _ = image_array(im, want_rgb)
        theirs, how = self.dcm2pnm(it, frame, window)
        if want_rgb and theirs.ndim == 2:
            theirs = np.repeat(theirs[..., None], 3, -1)
        ref = rr.render(it.path, frame, window, decoding_plugin=it.plugin)
        if window is None:
            tol = 1 + it.tol
            key = f"{it.name} frame {frame}"
        else:
            slope = abs(float(it.rec.get("rescale_slope", 1.0)))
            tol = 1 + math.ceil(it.tol * slope * 255.0 / max(1.0, window[1] - 1))
            key = f"{it.name} window={window[0]},{window[1]},{window[2]}"
        expect(got.shape == theirs.shape, f"server image shape {got.shape}, {how} gives {theirs.shape}")

        def measure(img):
            d = np.abs(img.astype(np.int64) - theirs.astype(np.int64))
            px = d.max(axis=-1) if d.ndim == 3 else d
            return int(d.max()), int((px > tol).sum())

        server, reference = measure(got), measure(ref)
        known = KNOWN_DCM2PNM.get(key)
        if known is not None:
            now = {"server": server, "reference": reference}
            was = {"server": tuple(known["server"]), "reference": tuple(known["reference"])}
            expect(now == was, f"known difference from {how} changed: recorded {was} (max |diff|, pixels over "
                               f"{tol}), now {now}; update or remove KNOWN_DCM2PNM[{key!r}] ({known['reason']})")
            return (f"KNOWN DIFFERENCE: server max |diff| {server[0]}, {server[1]} pixels over {tol}; reference "
                    f"max |diff| {reference[0]}, {reference[1]} pixels over {tol}; {known['reason']}")
        if server[0] > tol:
            fail(f"server rendering differs from {how}: {diff_summary(theirs, got, tol)}")
        if reference[0] > tol:
            fail(f"render_reference differs from {how} (the server matches dcm2pnm): "
                 f"{diff_summary(theirs, ref, tol)}")
        return f"server max |diff| {server[0]}, reference max |diff| {reference[0]} <= {tol} ({how})"

    def check_out_of_range(self, it, frame, kind):
        self.need_stored(it)
        path = self.inst_path(it) + (f"/frames/{frame}" if kind == "frames" else f"/frames/{frame}/rendered")
        resp = self.get(path, OCTET_ACCEPT if kind == "frames" else "image/png")
        expect(resp.status_code == 400, f"GET {path}: HTTP {resp.status_code}, expected 400: {resp.text[:200]!r}")
        msg = error_text(resp)
        expect(re.search(r"frame|range|number", msg.lower()), f"error {msg!r} does not give a reason about the frame")
        return f"HTTP 400: {msg[:160]!r}"

    # -- multi-frame

    def check_multiframe_multipart(self, it):
        self.need_stored(it)
        path = f"{self.inst_path(it)}/rendered"
        resp = self.get_ok(path, PNG_MULTIPART_ACCEPT)
        parts = parse_multipart(resp, f"GET {path}")
        expect(len(parts) == it.frames, f"expected {it.frames} parts (one per frame), got {len(parts)}")
        details = []
        for n, (ctype, _, body) in enumerate(parts, 1):
            mt = parse_content_type(ctype)[0]
            expect(mt == "image/png", f"part {n}: Content-Type expected image/png, got {ctype!r}")
            got, _ = image_array(decode_image(body, f"part {n}"), False)
            single = self.server_frames.get((it.name, n))
            if single is None:
                im, _ = self.get_image(f"{self.inst_path(it)}/frames/{n}/rendered", "image/png")
                single, _ = image_array(im, False)
            expect(got.shape == single.shape, f"part {n}: shape {got.shape}, frames/{n}/rendered gives {single.shape}")
            if not np.array_equal(got, single):
                fail(f"part {n} differs from frames/{n}/rendered: {diff_summary(single, got, 0)}")
            ref = it.ref_png(self.corpus, n)
            d = maxdiff(got, ref)
            if d > 1 + it.tol:
                for m in range(1, it.frames + 1):
                    if maxdiff(got, it.ref_png(self.corpus, m)) <= 1 + it.tol:
                        fail(f"part {n} is the rendering of frame {m} (parts out of order?)")
                fail(f"part {n} differs from expected/render/{it.name}.f{n}.png: {diff_summary(ref, got, 1 + it.tol)}")
            details.append(f"part {n} = frames/{n}/rendered")
        return ", ".join(details)

    # -- all

    def run_all(self):
        items = self.items
        good = [it for it in items if not it.broken]
        broken = [it for it in items if it.broken]

        for it in items:
            self.run(f"stow: {it.file}", self.stow_one, it)

        for it in good:
            for f in range(1, it.frames + 1):
                self.run(f"frames: {it.name} frame {f} ({it.ts_name}, {it.pi}, {it.bs}/{it.ba} bits"
                         f"{', signed' if it.signed else ''})", self.check_frame, it, f)

        for it in good:
            for f in range(1, it.frames + 1):
                self.run(f"render: {it.name} frames/{f}/rendered png vs reference", self.check_render, it, f)
            if it.frames == 1:
                self.run(f"render: {it.name} instance rendered png vs reference", self.check_render, it, 1, True)

        for it in good:
            if it.grayscale:
                c, w = self.window_for(it)
                self.run(f"window: {it.name} window={c},{w},linear", self.check_window, it, c, w, "linear")
        for name, func in (("native_u16_12bit", "sigmoid"), ("native_s16_rescale", "linear-exact"),
                           ("native_u16_mono1", "sigmoid")):
            it = self.by_name.get(name)
            if it:
                c, w = self.window_for(it)
                self.run(f"window: {it.name} window={c},{w},{func}", self.check_window, it, c, w, func)

        for it in good:
            for f in range(1, it.frames + 1):
                self.run(f"dcm2pnm: {it.name} frames/{f}/rendered vs dcmtk dcm2pnm", self.check_dcm2pnm, it, f)
            if it.grayscale:
                c, w = self.window_for(it)
                self.run(f"dcm2pnm: {it.name} window={c},{w},linear vs dcmtk dcm2pnm",
                         self.check_dcm2pnm, it, 1, (c, w, "linear"))
        for name in ("native_u16_12bit", "native_u16_mono1"):  # dcmtk has no LINEAR_EXACT
            it = self.by_name.get(name)
            if it:
                c, w = self.window_for(it)
                self.run(f"dcm2pnm: {it.name} window={c},{w},sigmoid vs dcmtk dcm2pnm",
                         self.check_dcm2pnm, it, 1, (c, w, "sigmoid"))

        vp = self.by_name["native_u8"]
        self.run(f"viewport: {vp.name} viewport=32,32 ({vp.cols}x{vp.rows} source)", self.check_viewport_fit, vp, 32, 32)
        self.run(f"viewport: {vp.name} viewport=20,10,0,0,40,20", self.check_viewport_region, vp, 20, 10, 0, 0, 40, 20)
        col = self.by_name.get("color_rgb_planar0")
        if col:
            self.run(f"viewport: {col.name} viewport=32,32 (colour)", self.check_viewport_fit, col, 32, 32)
        for name in ("native_u8", "color_rgb_planar0"):
            it = self.by_name.get(name)
            if it:
                self.run(f"formats: {name} rendered image/jpeg", self.check_format, it, "image/jpeg", "JPEG", 4.0)
                self.run(f"formats: {name} rendered image/gif", self.check_format, it, "image/gif", "GIF",
                         0.5 if it.spp == 1 else 12.0)
        self.run("formats: native_u8 rendered jpeg quality=5 smaller than quality=100", self.check_quality, vp)

        self.run("thumbnail: study", self.check_thumbnail, f"/studies/{self.study}/thumbnail", "study")
        series = sorted({(it.rec["series_number"], it.series) for it in good})
        for num, uid in series:
            desc = next(it.rec["series_description"] for it in good if it.series == uid)
            self.run(f"thumbnail: series {num} ({desc})", self.check_thumbnail,
                     f"/studies/{self.study}/series/{uid}/thumbnail", f"series {num}")

        healthy = self.by_name["native_u16_12bit"]
        for it in broken:
            for kind in ("frames", "rendered"):
                self.run(f"broken: {it.name} {kind} -> 4xx/5xx JSON error", self.check_broken, it, kind)
                self.run(f"broken: server still serving after {it.name} {kind} (QIDO /studies, "
                         f"{healthy.name} frame and rendering)", self.check_still_serving, healthy)
        oor = self.manifest.get("conventions", {}).get("frame_out_of_range", {})
        it = self.by_name.get(oor.get("file", "native_u8.dcm")[:-4])
        fr = int(oor.get("request_frame", 2))
        if it:
            self.run(f"errors: {it.name} frames/{fr} (single-frame) -> 400", self.check_out_of_range, it, fr, "frames")
            self.run(f"errors: {it.name} frames/{fr}/rendered (single-frame) -> 400", self.check_out_of_range, it, fr, "rendered")

        for it in good:
            if it.frames > 1:
                self.run(f"multiframe: {it.name} rendered multipart/related image/png ({it.frames} parts)",
                         self.check_multiframe_multipart, it)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="DICOMweb base URL, e.g. http://127.0.0.1:8042/dicom-web")
    ap.add_argument("--corpus", required=True, help="output directory of make_pixel_corpus.py")
    ap.add_argument("--keep-going", action="store_true", help="run every check, then summarise the failures")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default 30)")
    ap.add_argument("--unsupported", default="",
                    help="comma-separated corpus names the server cannot decode (known codec gaps): "
                         "checked like broken files (a clear 4xx/5xx naming the transfer syntax)")
    args = ap.parse_args()
    t0 = time.monotonic()
    checker = Checker(args.url, args.corpus, args.keep_going, args.timeout)
    for name in filter(None, args.unsupported.split(",")):
        it = checker.by_name.get(name)
        if it is None:
            print(f"error: --unsupported {name}: no such corpus file", flush=True)
            sys.exit(2)
        it.broken = True
        it.rec.setdefault("expected_error", "a codec gap: the server cannot decode this encoding")
    try:
        checker.session.get(checker.url + "/studies", headers={"Accept": "application/dicom+json"},
                            timeout=(5, args.timeout))
    except requests.RequestException as e:
        print(f"error: the server at {checker.url} cannot be reached: {e}", flush=True)
        sys.exit(2)
    print(f"{len(checker.items)} corpus files ({sum(it.broken for it in checker.items)} broken) from "
          f"{checker.corpus}; server {checker.url}", flush=True)
    try:
        checker.run_all()
    finally:
        shutil.rmtree(checker.tmp, ignore_errors=True)
    elapsed = time.monotonic() - t0
    total = checker.passed + len(checker.failures)
    print(f"\n{checker.passed}/{total} checks passed"
          + (f", {len(checker.skipped)} skipped" if checker.skipped else "") + f" in {elapsed:.1f}s", flush=True)
    if checker.failures:
        print(f"{len(checker.failures)} failed:")
        for name, msg in checker.failures:
            print(f"  - {name}: {msg.splitlines()[0][:400]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
