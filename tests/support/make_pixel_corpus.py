"""Build the pixel-decoding / rendering test corpus: small files in every common encoding.

usage: .venv/bin/python tests/support/make_pixel_corpus.py OUTDIR
       (needs dcmtk on PATH: dcmcjpeg dcmcjpls dcmcrle dcmconv dcmdjpeg dcmdjpls dcmdrle dcm2pnm)

Writes into OUTDIR:
  <name>.dcm                       one patient PIXEL^CORPUS / PIXCORPUS, one study, a few series
  expected/<name>.npy              decoded stored values, shape (frames, rows, cols[, 3]); colour
                                   files are RGB (YBR converted with pydicom's convert_color_space),
                                   PALETTE COLOR files hold the palette indices
  expected/<name>.ybr.npy          for YBR files: the decoder output before colour conversion
  expected/render/<name>.f<N>.png  8-bit rendering of frame N by render_reference.render(), using the
                                   file's own VOI settings (VOI LUT, else window, else min/max)
  expected/manifest.json           per file: encoding, image attributes, decoders that were compared
                                   and their max abs differences, tolerance, expected errors

Everything is deterministic: UIDs are 2.25 UIDs from seed strings (dicomgen.uid), pixels come from
seeded numpy generators, and dcmtk / openjpeg encode deterministically (lossy encoders are told to
keep the SOP Instance UID: dcmtk +un, pydicom generate_instance_uid=False).

Encoders: native files by pydicom; RLE, JPEG, JPEG-LS and big endian by dcmtk; JPEG 2000 by
pydicom + pylibjpeg-openjpeg (dcmtk has no JPEG 2000 codec). Reference values come from pydicom
(pylibjpeg-libjpeg for JPEG/JPEG-LS, pylibjpeg-openjpeg for JPEG 2000, pydicom's own RLE and native
decoders) and are cross-checked against dcmtk's decoders (dcmdjpeg, dcmdjpls, dcmdrle, dcmconv,
read back as raw bytes with numpy), pillow, raw numpy interpretation of native bytes, and the
array that was fed to the encoder. The renderings are cross-checked against dcmtk's dcm2pnm.
"""
import hashlib
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

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dicomgen as g  # noqa: E402
import render_reference as rr  # noqa: E402
import pydicom  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.datadict import tag_for_keyword  # noqa: E402
from pydicom.dataelem import DataElement  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.encaps import generate_frames  # noqa: E402
from pydicom.pixels import convert_color_space, pixel_array  # noqa: E402
from pydicom.uid import UID, JPEG2000, JPEG2000Lossless  # noqa: E402

SC = "1.2.840.10008.5.1.4.1.1.7"            # Secondary Capture Image
MF_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"     # Multi-frame Grayscale Byte SC
MF_WORD = "1.2.840.10008.5.1.4.1.1.7.3"     # Multi-frame Grayscale Word SC

STUDY_SEED = "pixcorpus/study"
SERIES = {  # key -> (series number, description)
    "native": (1, "NATIVE GRAYSCALE"),
    "color": (2, "NATIVE COLOUR AND JPEG COLOUR"),
    "rle": (3, "RLE LOSSLESS"),
    "jpeg": (4, "JPEG"),
    "jpegls": (5, "JPEG-LS"),
    "j2k": (6, "JPEG 2000"),
    "voi": (7, "VOI LUT AND FUNCTIONS"),
    "broken": (8, "BROKEN PIXEL DATA"),
}
ROWS, COLS = 64, 80


def dcmtk(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which(args[0]) or "/usr/bin/" + args[0]
    return subprocess.run([exe, *args[1:]], check=True, capture_output=True, text=True)


def tool_version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
        return out.strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return "unknown"


# ------------------------------------------------------------------------------------------ pixels
def pattern(rows: int, cols: int, seed: int, frame: int = 0) -> np.ndarray:
    """Float image in [0, 1] with no symmetry: a diagonal gradient (brighter to the right and to the
    bottom) with a little seeded noise, an 'F' glyph at 1.0 in the top-left, a dark disc at 0.0 in
    the lower half (moving right with the frame number), a 1-pixel checkerboard patch top-right and
    frame+1 tally marks bottom-left."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    img = 0.1 + 0.6 * x / (cols - 1) + 0.2 * y / (rows - 1) + rng.normal(0, 0.01, (rows, cols))
    cy, cx, r = rows * 0.68, cols * (0.5 + 0.13 * frame), min(rows, cols) * 0.14
    img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = 0.0
    pr, pc = max(1, rows // 10), cols - max(2, cols // 8) - 8
    patch = ((y[pr:pr + 8, pc:pc + 8] + x[pr:pr + 8, pc:pc + 8]) % 2) * 0.5 + 0.25
    img[pr:pr + 8, pc:pc + 8] = patch
    t, r0, c0 = max(1, rows // 16), max(1, rows // 10), max(1, cols // 10)
    h = max(5, int(rows * 0.4))
    w = max(3, int(h * 0.6))
    img[r0:r0 + h, c0:c0 + t] = 1.0
    img[r0:r0 + t, c0:c0 + w] = 1.0
    img[r0 + h // 2:r0 + h // 2 + t, c0:c0 + (2 * w) // 3] = 1.0
    for k in range(frame + 1):
        img[rows - 4:rows - 2, 2 + 4 * k:4 + 4 * k] = 1.0
    return np.clip(img, 0.0, 1.0)


def scaled(p: np.ndarray, lo: int, hi: int, dtype) -> np.ndarray:
    return (lo + np.rint(p * (hi - lo))).astype(dtype)


def colour_image(rows: int, cols: int, seed: int) -> np.ndarray:
    """8-bit RGB with a different structure in each channel (channel swaps and flips show)."""
    p = pattern(rows, cols, seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    rgb = np.empty((rows, cols, 3), dtype=np.uint8)
    rgb[..., 0] = scaled(p, 0, 255, np.uint8)                          # red: the pattern
    rgb[..., 1] = np.rint(30 + 200 * (1 - y / (rows - 1))).astype(np.uint8)   # green: bright at top
    disc = (y - rows * 0.3) ** 2 + (x - cols * 0.75) ** 2 < (min(rows, cols) * 0.15) ** 2
    rgb[..., 2] = np.where(disc, 230, np.rint(20 + 120 * x / (cols - 1))).astype(np.uint8)  # blue
    return rgb


# -------------------------------------------------------------------------------------- datasets
class Corpus:
    def __init__(self, outdir: str):
        self.out = os.path.abspath(outdir)
        self.exp = os.path.join(self.out, "expected")
        self.render_dir = os.path.join(self.exp, "render")
        os.makedirs(self.render_dir, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="pixcorpus-")
        self.items: list[dict] = []
        self.instance_no: dict[str, int] = {}

    def path(self, name: str) -> str:
        return os.path.join(self.out, name + ".dcm")

    def tmp_path(self, name: str) -> str:
        return os.path.join(self.tmp, name + ".dcm")

    def dataset(self, name: str, series: str, sop_class: str = SC) -> Dataset:
        number, desc = SERIES[series]
        self.instance_no[series] = self.instance_no.get(series, 0) + 1
        ds = g.base(sop_class, f"pixcorpus/{name}", STUDY_SEED, f"pixcorpus/series/{series}", "OT",
                    "20250115", "PIXCORP01", "PIXEL DECODING CORPUS", desc, number,
                    self.instance_no[series])
        g.patient(ds, "PIXEL^CORPUS", "PIXCORPUS", "19800101", "O")
        ds.ConversionType = "SYN"
        ds.ImageComments = f"pixel corpus: {name}"
        return ds

    def add(self, name: str, series: str, source: np.ndarray | None, encoder: str, lossless: bool,
            notes: str = "", **extra) -> dict:
        item = {"name": name, "series": series, "source": source, "encoder": encoder,
                "lossless": lossless, "notes": notes, **extra}
        self.items.append(item)
        return item


def mono_ds(c: Corpus, name: str, series: str, pixels: np.ndarray, bits_stored: int, signed: bool,
            photometric: str = "MONOCHROME2") -> Dataset:
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    sop = SC if frames == 1 else (MF_BYTE if pixels.dtype.itemsize == 1 else MF_WORD)
    ds = c.dataset(name, series, sop)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
        ds.FrameTime = 100.0
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def colour_ds(c: Corpus, name: str, series: str, arr: np.ndarray, photometric: str, planar: int) -> Dataset:
    """arr is (rows, cols, 3) in the colour space named by photometric."""
    ds = c.dataset(name, series)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = planar
    ds.Rows, ds.Columns = arr.shape[0], arr.shape[1]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    data = arr if planar == 0 else arr.transpose(2, 0, 1)
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    return ds


def as_frames(a: np.ndarray, ds) -> np.ndarray:
    """Normalise a pydicom pixel_array to (frames, rows, cols[, samples])."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return a[None] if frames == 1 else a


# ---------------------------------------------------------------------------------------- builders
def build(c: Corpus) -> None:
    R, C = ROWS, COLS

    # ---- native grayscale ------------------------------------------------------------------------
    a = scaled(pattern(R, C, 1), 0, 255, np.uint8)
    g.to_file(mono_ds(c, "native_u8", "native", a, 8, False), c.path("native_u8"))
    c.add("native_u8", "native", a, "pydicom", True, "8-bit unsigned, no VOI attributes (min/max render)")

    a = scaled(pattern(R, C, 2), 0, 4095, np.uint16)
    ds = mono_ds(c, "native_u16_12bit", "native", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 1500, 2000
    g.to_file(ds, c.path("native_u16_12bit"))
    c.add("native_u16_12bit", "native", a, "pydicom", True, "12 bits stored in 16, window 1500/2000")

    a = scaled(pattern(R, C, 3), 0, 4095, np.uint16)
    junk = (np.random.default_rng(33).integers(0, 16, a.shape, dtype=np.uint16) << 12)
    ds = mono_ds(c, "native_u16_12bit_dirty_highbits", "native", a | junk, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    g.to_file(ds, c.path("native_u16_12bit_dirty_highbits"))
    c.add("native_u16_12bit_dirty_highbits", "native", a, "pydicom", True,
          "12 bits stored, random garbage in bits 12-15 (overlay-style); decoders must mask to 12 bits")

    a = scaled(pattern(R, C, 4), -300, 1700, np.int16)
    ds = mono_ds(c, "native_s16_rescale", "native", a, 16, True)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2, -1024, "HU"
    ds.WindowCenter, ds.WindowWidth = [400, 40], [2500, 400]
    ds.WindowCenterWidthExplanation = ["WIDE", "NARROW"]
    g.to_file(ds, c.path("native_s16_rescale"))
    c.add("native_s16_rescale", "native", a, "pydicom", True,
          "signed 16-bit, stored -300..1700, slope 2 intercept -1024 (HU -1624..2376), two windows: "
          "the first (400/2500) is the default")

    a = scaled(pattern(R, C, 5), -2048, 2047, np.int16)
    ds = mono_ds(c, "native_s16_12bit_signed", "native", a, 12, True)
    ds.PixelData = (a.view(np.uint16) & 0x0FFF).astype("<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 0, 4096
    g.to_file(ds, c.path("native_s16_12bit_signed"))
    c.add("native_s16_12bit_signed", "native", a, "pydicom", True,
          "signed, 12 bits stored in 16 with bits 12-15 ZERO (not sign-extended): decoders must "
          "sign-extend from bit 11")

    a = scaled(pattern(R, C, 6), 100000, 3_000_000_000, np.uint32)
    g.to_file(mono_ds(c, "native_u32", "native", a, 32, False), c.path("native_u32"))
    c.add("native_u32", "native", a, "pydicom", True,
          "32-bit unsigned, values up to 3e9 (> 2^31: a signed read shows negative values); "
          "not IOD-conformant for SC, for decoder tests only")

    a = scaled(pattern(37, 53, 7), 0, 255, np.uint8)
    g.to_file(mono_ds(c, "native_odd_37x53", "native", a, 8, False), c.path("native_odd_37x53"))
    c.add("native_odd_37x53", "native", a, "pydicom", True,
          "37 rows x 53 columns, 8-bit: 1961 bytes, so Pixel Data carries a trailing pad byte")

    a = scaled(pattern(R, C, 8), 0, 4095, np.uint16)
    ds = mono_ds(c, "native_u16_big_endian", "native", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    g.to_file(ds, c.tmp_path("native_u16_big_endian"))
    dcmtk("dcmconv", "+tb", c.tmp_path("native_u16_big_endian"), c.path("native_u16_big_endian"))
    c.add("native_u16_big_endian", "native", a, "dcmconv +tb", True, "Explicit VR Big Endian (retired)")

    a = scaled(pattern(R, C, 9), 0, 4095, np.uint16)
    ds = mono_ds(c, "native_u16_mono1", "native", a, 12, False, "MONOCHROME1")
    ds.WindowCenter, ds.WindowWidth = 2048, 3000
    g.to_file(ds, c.path("native_u16_mono1"))
    c.add("native_u16_mono1", "native", a, "pydicom", True,
          "MONOCHROME1: high values render dark (F glyph black, disc white)")

    a = np.stack([scaled(pattern(R, C, 10 + f, f), 0, 4095, np.uint16) for f in range(3)])
    ds = mono_ds(c, "native_u16_multiframe", "native", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    g.to_file(ds, c.path("native_u16_multiframe"))
    c.add("native_u16_multiframe", "native", a, "pydicom", True,
          "3 frames: disc moves right and frame N has N tally marks bottom-left")

    # ---- colour ----------------------------------------------------------------------------------
    rgb = colour_image(R, C, 20)
    g.to_file(colour_ds(c, "color_rgb_planar0", "color", rgb, "RGB", 0), c.path("color_rgb_planar0"))
    c.add("color_rgb_planar0", "color", rgb, "pydicom", True, "RGB, colour-by-pixel")
    g.to_file(colour_ds(c, "color_rgb_planar1", "color", rgb, "RGB", 1), c.path("color_rgb_planar1"))
    c.add("color_rgb_planar1", "color", rgb, "pydicom", True,
          "RGB, colour-by-plane; same image as color_rgb_planar0")

    rgb2 = colour_image(R, C, 21)
    ybr = convert_color_space(rgb2.copy(), "RGB", "YBR_FULL")
    g.to_file(colour_ds(c, "color_ybr_full", "color", ybr, "YBR_FULL", 0), c.path("color_ybr_full"))
    c.add("color_ybr_full", "color", ybr, "pydicom", True,
          "native YBR_FULL; expected .npy is RGB, .ybr.npy the stored YBR")

    # native YBR_FULL_422: per pair of pixels Y0 Y1 Cb Cr (chroma of the left pixel of each pair)
    rgb3 = colour_image(R, C, 22)
    ybr3 = convert_color_space(rgb3.copy(), "RGB", "YBR_FULL")
    packed = np.empty((R, C // 2, 4), dtype=np.uint8)
    packed[..., 0] = ybr3[:, 0::2, 0]
    packed[..., 1] = ybr3[:, 1::2, 0]
    packed[..., 2] = ybr3[:, 0::2, 1]
    packed[..., 3] = ybr3[:, 0::2, 2]
    ds = colour_ds(c, "color_ybr_full_422_native", "color", ybr3, "YBR_FULL_422", 0)
    ds.PixelData = packed.tobytes()
    g.to_file(ds, c.path("color_ybr_full_422_native"))
    src422 = ybr3.copy()
    src422[:, 1::2, 1:] = ybr3[:, 0::2, 1:]
    c.add("color_ybr_full_422_native", "color", src422, "pydicom (hand-packed)", True,
          "uncompressed YBR_FULL_422: 2 bytes/pixel (Y0 Y1 Cb Cr per pair); chroma is replicated "
          "to both pixels of a pair when unpacking")

    rgb4 = colour_image(R, C, 23)
    name = "color_ybr_full_422_jpeg_baseline"
    g.to_file(colour_ds(c, name, "color", rgb4, "RGB", 0), c.tmp_path(name))
    dcmtk("dcmcjpeg", "+eb", "+un", c.tmp_path(name), c.path(name))
    c.add(name, "color", rgb4, "dcmcjpeg +eb +un", False,
          "dcmcjpeg +eb on RGB writes PhotometricInterpretation YBR_FULL_422 (JFIF APP0, Y sampled "
          "2x1, Cb/Cr 1x1); expected .npy is RGB")
    name = "color_rgb_jpeg_baseline_no_transform"
    g.to_file(colour_ds(c, name, "color", rgb4, "RGB", 0), c.tmp_path(name))
    dcmtk("dcmcjpeg", "+eb", "+cr", "+un", c.tmp_path(name), c.path(name))
    c.add(name, "color", rgb4, "dcmcjpeg +eb +cr +un", False,
          "JPEG baseline of the RGB components without colour transform (dcmcjpeg +cr): "
          "PhotometricInterpretation RGB; a decoder must NOT apply YCbCr->RGB; same image as "
          "color_ybr_full_422_jpeg_baseline")

    idx = scaled(pattern(R, C, 24), 0, 255, np.uint8)
    ds = mono_ds(c, "color_palette_u8", "color", idx, 8, False, "PALETTE COLOR")
    v = np.arange(256, dtype=np.float64)
    lut8 = {  # 8-bit levels; stored as 16-bit entries v*256+128 (v*256+128 -> v by >>8 and by *255/65535)
        "Red": np.rint(v),
        "Green": np.rint(255 * np.sin(np.pi * v / 255) ** 2),
        "Blue": np.rint(255 * (1 - v / 255) ** 2),
    }
    for colour, levels in lut8.items():
        ds.add(DataElement(tag_for_keyword(f"{colour}PaletteColorLookupTableDescriptor"), "US", [256, 0, 16]))
        ds.add(DataElement(tag_for_keyword(f"{colour}PaletteColorLookupTableData"), "OW",
                           (levels.astype(np.uint16) * 256 + 128).astype("<u2").tobytes()))
    g.to_file(ds, c.path("color_palette_u8"))
    c.add("color_palette_u8", "color", idx, "pydicom", True,
          "PALETTE COLOR, 8-bit indices, 256-entry 16-bit LUTs (red ramp, green sin^2, blue falling); "
          "entries are level*256+128 so >>8 and *255/65535 give the same 8-bit level; expected .npy "
          "holds the indices, the render PNG the colours", palette_levels={k: v.astype(int).tolist()
                                                                         for k, v in lut8.items()})

    # ---- RLE (dcmcrle) ---------------------------------------------------------------------------
    def rle(name, ds, source, note):
        g.to_file(ds, c.tmp_path(name))
        dcmtk("dcmcrle", c.tmp_path(name), c.path(name))
        c.add(name, "rle", source, "dcmcrle", True, note)

    a = scaled(pattern(37, 53, 30), 0, 255, np.uint8)
    rle("rle_u8_odd_37x53", mono_ds(c, "rle_u8_odd_37x53", "rle", a, 8, False), a,
        "8-bit, odd 37x53 (odd row length, odd segment length)")
    a = scaled(pattern(R, C, 31), -1200, 2800, np.int16)
    ds = mono_ds(c, "rle_s16", "rle", a, 16, True)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 300, 3000
    rle("rle_s16", ds, a, "signed 16-bit (2 segments: high bytes then low bytes), rescale -1024")
    a = scaled(pattern(R, C, 32), 100000, 3_000_000_000, np.uint32)
    rle("rle_u32", mono_ds(c, "rle_u32", "rle", a, 32, False), a, "32-bit unsigned (4 segments)")
    a = np.stack([scaled(pattern(R, C, 33 + f, f), 0, 4095, np.uint16) for f in range(3)])
    ds = mono_ds(c, "rle_u16_multiframe", "rle", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    rle("rle_u16_multiframe", ds, a, "3 frames, one fragment per frame")
    rgb5 = colour_image(R, C, 36)
    rle("rle_rgb", colour_ds(c, "rle_rgb", "rle", rgb5, "RGB", 0), rgb5,
        "8-bit RGB: 3 segments (R, G, B planes, as RLE always stores colour, PS3.5 G.2) while the "
        "header keeps PlanarConfiguration 0 as dcmcrle wrote it, describing the decoded layout")

    # ---- JPEG (dcmcjpeg) -------------------------------------------------------------------------
    def jpeg(name, ds, source, args, lossless, note, series="jpeg", tool="dcmcjpeg"):
        g.to_file(ds, c.tmp_path(name))
        dcmtk(tool, *args, c.tmp_path(name), c.path(name))
        c.add(name, series, source, f"{tool} {' '.join(args)}".strip(), lossless, note)

    a = scaled(pattern(R, C, 40), 0, 255, np.uint8)
    jpeg("jpeg_baseline_u8", mono_ds(c, "jpeg_baseline_u8", "jpeg", a, 8, False), a,
         ["+eb", "+un"], False, "JPEG baseline (process 1), 8-bit grayscale")
    a = scaled(pattern(R, C, 41), 0, 4095, np.uint16)
    ds = mono_ds(c, "jpeg_extended_u12", "jpeg", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    jpeg("jpeg_extended_u12", ds, a, ["+ee", "+un"], False, "JPEG extended (process 4), 12-bit")
    a = scaled(pattern(R, C, 42), -1000, 3000, np.int16)
    ds = mono_ds(c, "jpeg_lossless_p14_s16", "jpeg", a, 16, True)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 0, 4000
    jpeg("jpeg_lossless_p14_s16", ds, a, ["+el", "+sv", "6"], True,
         "JPEG lossless process 14, predictor 6, signed 16-bit stored")
    a = scaled(pattern(R, C, 43), 0, 4095, np.uint16)
    ds = mono_ds(c, "jpeg_lossless_sv1_u16", "jpeg", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    jpeg("jpeg_lossless_sv1_u16", ds, a, ["+e1"], True, "JPEG lossless SV1 (process 14, predictor 1), 12 in 16")
    a = np.stack([scaled(pattern(R, C, 44 + f, f), 0, 4095, np.uint16) for f in range(3)])
    ds = mono_ds(c, "jpeg_lossless_sv1_multiframe", "jpeg", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    jpeg("jpeg_lossless_sv1_multiframe", ds, a, ["+e1"], True, "3 frames, one fragment per frame, with BOT")

    # ---- JPEG-LS (dcmcjpls) ----------------------------------------------------------------------
    a = scaled(pattern(R, C, 50), 0, 4095, np.uint16)
    ds = mono_ds(c, "jpegls_lossless_u16", "jpegls", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    jpeg("jpegls_lossless_u16", ds, a, ["+el"], True, "JPEG-LS lossless, 12 in 16", "jpegls", "dcmcjpls")
    a = scaled(pattern(R, C, 51), 0, 4095, np.uint16)
    ds = mono_ds(c, "jpegls_near_lossless_u16", "jpegls", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    jpeg("jpegls_near_lossless_u16", ds, a, ["+en", "+md", "2", "+un"], False,
         "JPEG-LS near-lossless NEAR=2: |decoded - source| <= 2, and the decoding itself is exact "
         "(every conforming decoder gives identical output)", "jpegls", "dcmcjpls")
    a = scaled(pattern(R, C, 52), 0, 255, np.uint8)
    jpeg("jpegls_lossless_u8", mono_ds(c, "jpegls_lossless_u8", "jpegls", a, 8, False), a, ["+el"],
         True, "JPEG-LS lossless, 8-bit", "jpegls", "dcmcjpls")

    # ---- JPEG 2000 (pydicom + pylibjpeg-openjpeg) ------------------------------------------------
    def j2k(name, ds, source, ts, note, **kw):
        g.to_file(ds, c.tmp_path(name))
        d = dcmread(c.tmp_path(name))
        d.compress(ts, encoding_plugin="pylibjpeg", generate_instance_uid=False, **kw)
        d.save_as(c.path(name), enforce_file_format=True)
        args = ", ".join(f"{k}={v}" for k, v in kw.items())
        c.add(name, "j2k", source, f"pydicom compress({UID(ts).name}{', ' + args if args else ''}) "
              "with pylibjpeg-openjpeg", ts == JPEG2000Lossless, note)

    a = scaled(pattern(R, C, 60), 0, 4095, np.uint16)
    ds = mono_ds(c, "j2k_lossless_u16", "j2k", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    j2k("j2k_lossless_u16", ds, a, JPEG2000Lossless, "JPEG 2000 reversible 5/3, 12 in 16")
    a = scaled(pattern(R, C, 61), -1200, 2800, np.int16)
    ds = mono_ds(c, "j2k_lossless_s16", "j2k", a, 16, True)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 300, 3000
    j2k("j2k_lossless_s16", ds, a, JPEG2000Lossless, "JPEG 2000 lossless, signed 16-bit")
    a = scaled(pattern(R, C, 62), 0, 4095, np.uint16)
    ds = mono_ds(c, "j2k_lossy_u16", "j2k", a, 12, False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    j2k("j2k_lossy_u16", ds, a, JPEG2000, "JPEG 2000 irreversible 9/7, compression ratio 10",
        j2k_cr=[10])

    # ---- VOI -------------------------------------------------------------------------------------
    a = scaled(pattern(R, C, 70), 0, 4095, np.uint16)
    ds = mono_ds(c, "voi_lut_sequence", "voi", a, 12, False)
    item = Dataset()
    n, first, bits = 3072, 512, 12
    lut = np.rint(4095 * (np.arange(n) / (n - 1)) ** 0.5).astype(np.uint16)   # square-root curve
    item.add(DataElement(0x00283002, "US", [n, first, bits]))   # LUT Descriptor
    item.LUTExplanation = "SQRT 512-3583"
    item.add(DataElement(0x00283006, "OW", lut.astype("<u2").tobytes()))  # LUT Data
    ds.VOILUTSequence = [item]
    g.to_file(ds, c.path("voi_lut_sequence"))
    c.add("voi_lut_sequence", "voi", a, "pydicom", True,
          "VOI LUT Sequence (no window attributes): descriptor [3072, 512, 12], LUT Data OW, "
          "square-root curve 0..4095; values < 512 clamp to entry 0, > 3583 to the last entry; "
          "8-bit output = entry * 255 / 4095", voi_lut={"descriptor": [n, first, bits]})
    a = scaled(pattern(R, C, 71), 0, 4095, np.uint16)
    ds = mono_ds(c, "voi_sigmoid", "voi", a, 12, False)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2048, 1500, "SIGMOID"
    g.to_file(ds, c.path("voi_sigmoid"))
    c.add("voi_sigmoid", "voi", a, "pydicom", True, "window 2048/1500 with VOILUTFunction SIGMOID")
    a = scaled(pattern(R, C, 72), 0, 4095, np.uint16)
    ds = mono_ds(c, "voi_linear_exact", "voi", a, 12, False)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 1800.5, 1000, "LINEAR_EXACT"
    g.to_file(ds, c.path("voi_linear_exact"))
    c.add("voi_linear_exact", "voi", a, "pydicom", True, "window 1800.5/1000 with VOILUTFunction LINEAR_EXACT")

    # ---- broken ----------------------------------------------------------------------------------
    a = scaled(pattern(R, C, 80), 0, 4095, np.uint16)
    ds = mono_ds(c, "broken_truncated_native", "broken", a, 12, False)
    full = len(ds.PixelData)
    ds.PixelData = ds.PixelData[: (full * 6 // 10) & ~1]
    g.to_file(ds, c.path("broken_truncated_native"))
    c.add("broken_truncated_native", "broken", None, "pydicom", True, "", broken=True,
          expected_error=f"Pixel Data is {len(ds.PixelData)} bytes but Rows*Columns*BitsAllocated/8 = "
          f"{full}: decoding must fail with a clear error (no partial image, no panic)")

    a = scaled(pattern(R, C, 81), 0, 255, np.uint8)
    ds = mono_ds(c, "broken_bits_allocated_mismatch", "broken", a, 8, False)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11   # header says 16 bits, data is 8-bit
    g.to_file(ds, c.path("broken_bits_allocated_mismatch"))
    c.add("broken_bits_allocated_mismatch", "broken", None, "pydicom", True, "", broken=True,
          expected_error=f"BitsAllocated 16 but Pixel Data holds {len(ds.PixelData)} bytes = "
          f"Rows*Columns*1 (8-bit data); expected {R * C * 2}: decoding must fail")

    a = scaled(pattern(R, C, 82), 0, 255, np.uint8)
    jpeg("broken_jpeg_corrupt", mono_ds(c, "broken_jpeg_corrupt", "broken", a, 8, False), None,
         ["+eb", "+un"], False, "")
    pos, scan_start, frag_len = corrupt_jpeg(c.path("broken_jpeg_corrupt"))
    c.items[-1].update(broken=True, expected_error=(
        "JPEG baseline (SOI and headers intact) whose entropy-coded data has 7 bytes overwritten a "
        "third of the way into the scan with a bogus second frame header FF C0 00 05 01 02 03: "
        "decoding must fail with an error (not hang, panic or return a partial image)"),
        corruption={"fragment": 1, "offset_in_fragment": pos, "scan_data_starts_at": scan_start,
                    "fragment_length": frag_len, "bytes_written": "ffc00005010203"})


def corrupt_jpeg(path: str) -> tuple[int, int, int]:
    """Write a bogus second frame header (FF C0, length 5) a third of the way into the first
    fragment's entropy-coded data. pylibjpeg-libjpeg, Pillow and dcmdjpeg all reject it; a stray
    EOI / RST / DNL there only makes them warn and return a half-grey image."""
    ds = dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    i = 2
    while True:  # walk marker segments to the SOS
        marker = frame[i + 1]
        length = int.from_bytes(frame[i + 2:i + 4], "big")
        i += 2 + length
        if marker == 0xDA:
            break
    pos = i + (len(frame) - i) // 3
    bad = bytearray(frame)
    bad[pos:pos + 7] = b"\xff\xc0\x00\x05\x01\x02\x03"
    start = bytes(ds.PixelData).find(frame)
    data = bytearray(ds.PixelData)
    data[start:start + len(bad)] = bad
    ds.PixelData = bytes(data)
    ds.save_as(path, enforce_file_format=True)
    return pos, i, len(frame)


# ---------------------------------------------------------------------------------------- checking
def numpy_native(path: str) -> np.ndarray:
    """Interpret native (uncompressed, little endian) Pixel Data bytes with plain numpy: an
    implementation independent of pydicom's pixel handlers."""
    ds = dcmread(path)
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_compressed:
        raise ValueError("compressed")
    ba, bs = int(ds.BitsAllocated), int(ds.BitsStored)
    rows, cols, spp = int(ds.Rows), int(ds.Columns), int(ds.SamplesPerPixel)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    order = ">" if ts == "1.2.840.10008.1.2.2" else "<"
    raw = bytes(ds.PixelData)
    pi = str(ds.PhotometricInterpretation)
    if pi == "YBR_FULL_422":
        p = np.frombuffer(raw, np.uint8, count=frames * rows * cols * 2).reshape(frames, rows, cols // 2, 4)
        out = np.empty((frames, rows, cols, 3), np.uint8)
        out[:, :, 0::2, 0], out[:, :, 1::2, 0] = p[..., 0], p[..., 1]
        for k in (1, 2):
            out[:, :, 0::2, k] = out[:, :, 1::2, k] = p[..., k + 1]
        return out
    a = np.frombuffer(raw, np.dtype(f"{order}u{ba // 8}"), count=frames * rows * cols * spp).astype(np.int64)
    a &= (1 << bs) - 1
    if int(ds.PixelRepresentation) == 1:
        a = np.where(a & (1 << (bs - 1)), a - (1 << bs), a)
    if spp == 1:
        return a.reshape(frames, rows, cols)
    if int(ds.get("PlanarConfiguration", 0)) == 1:
        return a.reshape(frames, spp, rows, cols).transpose(0, 2, 3, 1)
    return a.reshape(frames, rows, cols, spp)


def ybr_to_rgb_numpy(ybr: np.ndarray) -> np.ndarray:
    """PS3.3 C.7.6.3.1.2 YBR_FULL -> RGB, written out independently of pydicom."""
    y, cb, cr = (ybr[..., k].astype(np.float64) for k in range(3))
    r = y + 1.402 * (cr - 128)
    gg = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    return np.clip(np.rint(np.stack([r, gg, b], -1)), 0, 255).astype(np.uint8)


def pillow_jpeg(path: str) -> np.ndarray:
    """Decode 8-bit JPEG fragments with Pillow (libjpeg-turbo) directly; colour comes back RGB."""
    from PIL import Image
    ds = dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    out = []
    for f in generate_frames(ds.PixelData, number_of_frames=frames):
        out.append(np.asarray(Image.open(io.BytesIO(f))))
    return np.stack(out)


def maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def diffstats(a: np.ndarray, b: np.ndarray) -> dict:
    """max / mean abs difference and number of differing pixels (any sample)."""
    if a.shape != b.shape:
        return {"max_abs_diff": math.inf, "mean_abs_diff": math.inf, "pixels_differing": -1,
                "shapes": [list(a.shape), list(b.shape)]}
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    differing = (d > 0).any(axis=-1) if a.ndim == 4 else (d > 0)
    return {"max_abs_diff": float(d.max()), "mean_abs_diff": round(float(d.mean()), 4),
            "pixels_differing": int(differing.sum())}


def dcmtk_native(c: Corpus, name: str, tool: str, *args: str) -> str:
    out = os.path.join(c.tmp, f"{name}.{tool}{''.join(a.strip('+-') for a in args)}.dcm")
    dcmtk(tool, *args, c.path(name), out)
    return out


def describe_error(fn) -> str:
    try:
        r = fn()
        return f"no error (returned {'a file' if isinstance(r, str) else getattr(r, 'shape', r)})"
    except subprocess.CalledProcessError as e:
        msgs = [ln.split(":", 1)[1].strip() if ":" in ln else ln for ln in (e.stderr or "").splitlines()
                if ln.startswith(("E:", "F:"))]
        text = re.sub(r"/\S*/", "", "; ".join(msgs))   # no temporary paths (keeps the manifest stable)
        return f"{os.path.basename(e.cmd[0])} exit status {e.returncode}: {text[:200]}"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {' '.join(str(e).split())[:240]}"


def dcm2pnm(path: str, out_png: str, frame: int, voi_args: list[str]) -> np.ndarray:
    from PIL import Image
    dcmtk("dcm2pnm", "+on", "+F", str(frame), *voi_args, path, out_png)
    return np.asarray(Image.open(out_png))


def verify(c: Corpus, item: dict) -> dict:
    name = item["name"]
    path = c.path(name)
    ds = dcmread(path)
    ts = ds.file_meta.TransferSyntaxUID
    pi = str(ds.PhotometricInterpretation)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rec = {
        "file": name + ".dcm",
        "series_number": int(ds.SeriesNumber),
        "series_description": str(ds.SeriesDescription),
        "instance_number": int(ds.InstanceNumber),
        "sop_class_uid": str(ds.SOPClassUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "series_instance_uid": str(ds.SeriesInstanceUID),
        "transfer_syntax_uid": str(ts),
        "transfer_syntax": ts.name,
        "photometric_interpretation": pi,
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.BitsStored),
        "high_bit": int(ds.HighBit),
        "pixel_representation": int(ds.PixelRepresentation),
        "samples_per_pixel": int(ds.SamplesPerPixel),
        "planar_configuration": int(ds.PlanarConfiguration) if "PlanarConfiguration" in ds else None,
        "frames": frames,
        "rows": int(ds.Rows),
        "cols": int(ds.Columns),
        "lossless": item["lossless"],
        "encoder": item["encoder"],
        "bytes": os.path.getsize(path),
        "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
        "notes": item["notes"],
    }
    for key in ("RescaleSlope", "RescaleIntercept"):
        if key in ds:
            rec["rescale_" + key[7:].lower()] = float(ds[key].value)
    for key, out in (("WindowCenter", "window_center"), ("WindowWidth", "window_width")):
        if key in ds:
            v = ds[key].value
            rec[out] = [float(x) for x in (v if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v])]
    if "VOILUTFunction" in ds:
        rec["voi_lut_function"] = str(ds.VOILUTFunction)
    rec["voi_lut_sequence"] = "VOILUTSequence" in ds
    for k in ("voi_lut", "palette_levels", "corruption"):
        if k in item:
            rec[k] = item[k]

    if item.get("broken"):
        rec["lossless"] = None
        rec["broken"] = True
        rec["expected_error"] = item["expected_error"]
        obs = {"pydicom": describe_error(lambda: pixel_array(path))}
        if ts.is_compressed:
            obs["pydicom pylibjpeg"] = describe_error(lambda: pixel_array(path, decoding_plugin="pylibjpeg"))
            obs["pydicom pillow"] = describe_error(lambda: pixel_array(path, decoding_plugin="pillow"))
            obs["pillow direct"] = describe_error(lambda: pillow_jpeg(path))
            obs["dcmdjpeg"] = describe_error(lambda: dcmtk_native(c, name, "dcmdjpeg"))
        obs["dcm2pnm"] = describe_error(lambda: dcm2pnm(path, os.path.join(c.tmp, name + ".png"), 1, []))
        rec["observed"] = obs
        return rec

    # ---- reference decode (pydicom) ----
    # native: pydicom's numpy handler; RLE: pydicom's RLE decoder; 8-bit JPEG 1 (baseline/extended):
    # pydicom + Pillow (libjpeg-turbo: the IJG-family result, identical to dcmtk's YBR output;
    # pylibjpeg-libjpeg upsamples 4:2:2 chroma differently); everything else: pydicom + pylibjpeg.
    jpeg1_lossy = ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
    if not ts.is_compressed or ts == "1.2.840.10008.1.2.5":
        ref_plugin = ""
        ref_decoder = f"pydicom {pydicom.__version__} " + ("RLE decoder" if ts.is_compressed else "native (numpy)")
    elif jpeg1_lossy and int(ds.BitsStored) <= 8:
        ref_plugin, ref_decoder = "pillow", "pydicom + pillow (libjpeg-turbo)"
    else:
        ref_plugin = "pylibjpeg"
        ref_decoder = "pydicom + " + ("pylibjpeg-openjpeg" if "2000" in ts.name else "pylibjpeg-libjpeg")
    ref_raw = as_frames(pixel_array(path, raw=True, decoding_plugin=ref_plugin), ds)
    is_ybr = pi.startswith("YBR")
    ref = convert_color_space(ref_raw.copy(), "YBR_FULL", "RGB", per_frame=True) if is_ybr else ref_raw

    checks: dict[str, dict] = {}

    def check(label: str, arr: np.ndarray, against: np.ndarray, decoder: bool = True) -> None:
        checks[label] = diffstats(arr, against)
        checks[label]["independent_decoder"] = decoder

    # independent decoders, each compared in the colour space of the reference (RGB for YBR)
    if not ts.is_compressed:
        if ts == "1.2.840.10008.1.2.2":
            check("numpy read of the big endian bytes", numpy_native(path), ref)
            check("dcmconv +te -> numpy", numpy_native(dcmtk_native(c, name, "dcmconv", "+te")), ref)
        else:
            nat = numpy_native(path)
            if is_ybr:
                check("numpy read (YBR) vs pydicom raw YBR", nat, ref_raw)
                check("numpy read + numpy YBR->RGB", ybr_to_rgb_numpy(nat), ref)
            else:
                check("numpy read of the bytes", nat, ref)
    elif ts == "1.2.840.10008.1.2.5":
        check("dcmdrle -> numpy", numpy_native(dcmtk_native(c, name, "dcmdrle")), ref)
    elif "JPEG-LS" in ts.name:
        check("dcmdjpls -> numpy", numpy_native(dcmtk_native(c, name, "dcmdjpls")), ref)
    elif "2000" in ts.name:
        check("pydicom + pillow (OpenJPEG via Pillow)",
              as_frames(pixel_array(path, raw=True, decoding_plugin="pillow"), ds), ref_raw)
    else:  # JPEG 1 family; dcmdjpeg converts YBR to RGB itself
        check("dcmdjpeg -> numpy", numpy_native(dcmtk_native(c, name, "dcmdjpeg")), ref)
        if ref_plugin == "pillow":
            alt = as_frames(pixel_array(path, raw=True, decoding_plugin="pylibjpeg"), ds)
            if is_ybr:
                check("pydicom + pylibjpeg-libjpeg (YBR, before colour conversion)", alt, ref_raw)
                alt = convert_color_space(alt.copy(), "YBR_FULL", "RGB", per_frame=True)
            check("pydicom + pylibjpeg-libjpeg", alt, ref)
            check("pillow direct (libjpeg-turbo, its own YCbCr->RGB)" if is_ybr else "pillow direct (libjpeg-turbo)",
                  pillow_jpeg(path), ref)
            if is_ybr:
                ybr_dcmtk = numpy_native(dcmtk_native(c, name, "dcmdjpeg", "+cn"))
                check("dcmdjpeg +cn (YBR, before colour conversion)", ybr_dcmtk, ref_raw)
    if item["source"] is not None:
        src = item["source"]
        src = src[None] if src.ndim == ref.ndim - 1 else src
        if is_ybr and not ts.is_compressed:
            check("vs the YBR array written", ref_raw, src, False)
        else:
            check("vs the array fed to the encoder", ref, src, False)
    rec["reference_decoder"] = ref_decoder
    rec["crosschecks"] = checks
    rec["expected"] = {
        "file": f"expected/{name}.npy",
        "dtype": str(ref.dtype),
        "shape": list(ref.shape),
        "values": ("RGB (YBR decoder output converted with pydicom convert_color_space)" if is_ybr
                   else "palette indices" if pi == "PALETTE COLOR"
                   else "RGB" if ds.SamplesPerPixel == 3
                   else "stored values (masked to BitsStored, sign-extended if signed)"),
    }
    np.save(os.path.join(c.exp, f"{name}.npy"), ref)
    if is_ybr:
        np.save(os.path.join(c.exp, f"{name}.ybr.npy"), ref_raw)
        rec["expected"]["ybr_file"] = f"expected/{name}.ybr.npy"
    decoder_checks = {k: v for k, v in checks.items() if v["independent_decoder"]}
    measured = max((v["max_abs_diff"] for v in decoder_checks.values()), default=0.0)
    if item["lossless"]:
        recommended = 0
    elif "JPEG-LS" in ts.name:
        recommended = int(measured)  # JPEG-LS decoding is exact integer arithmetic
    else:
        recommended = int(max(2, math.ceil(measured) + 1))
    rec["tolerance"] = {"decoder_max_abs_diff": measured, "recommended": recommended}
    if not item["lossless"] and "vs the array fed to the encoder" in checks:
        rec["tolerance"]["lossy_error_vs_source"] = checks["vs the array fed to the encoder"]["max_abs_diff"]
    # lossless: every decoder bit-exact (numpy's own YBR->RGB may round 1 differently from pydicom's)
    # lossy: the independent decoders within the recommended tolerance of the reference
    if item["lossless"]:
        rec["decoders_agree"] = all(v["max_abs_diff"] <= (1 if "YBR->RGB" in k else 0) for k, v in checks.items())
    else:
        rec["decoders_agree"] = all(v["max_abs_diff"] <= recommended for v in decoder_checks.values())

    # ---- render references + dcm2pnm cross-check ----
    if "VOILUTSequence" in ds:
        voi_args, voi_used = ["+Wl", "1"], "VOI LUT Sequence item 1"
    elif "WindowCenter" in ds:
        voi_args = ["+Wi", "1"]
        voi_used = f"window 1 ({rec['window_center'][0]}/{rec['window_width'][0]} {rec.get('voi_lut_function', 'LINEAR')})"
    elif ds.SamplesPerPixel == 1 and pi != "PALETTE COLOR":
        voi_args, voi_used = ["+Wm"], "min/max of the frame's modality values"
    else:
        voi_args, voi_used = [], "none (colour)"
    twin = path
    if ts.is_compressed:
        if ts == "1.2.840.10008.1.2.5":
            twin = os.path.join(c.tmp, f"{name}.dcmdrle.dcm")
        elif "JPEG-LS" in ts.name:
            twin = os.path.join(c.tmp, f"{name}.dcmdjpls.dcm")
        elif "2000" not in ts.name:
            twin = os.path.join(c.tmp, f"{name}.dcmdjpeg.dcm")
        else:  # dcmtk cannot decode JPEG 2000: give dcm2pnm pydicom's decode as a native file
            twin = os.path.join(c.tmp, f"{name}.native.dcm")
            d = dcmread(path)
            d.decompress(decoding_plugin="pylibjpeg", generate_instance_uid=False)
            d.save_as(twin, enforce_file_format=True)
    renders, render_diff, render_px, floor_diff, floor_px = [], 0.0, 0, 0.0, 0
    for f in range(1, frames + 1):
        img = rr.render(path, f, decoding_plugin=ref_plugin)
        png = os.path.join(c.render_dir, f"{name}.f{f}.png")
        rr.write_png(img, png)
        renders.append(os.path.relpath(png, c.out))
        other = dcm2pnm(twin, os.path.join(c.tmp, f"{name}.f{f}.png"), f, voi_args)
        render_diff = max(render_diff, maxdiff(other, img))
        render_px += diffstats(other, img)["pixels_differing"]
        if ds.SamplesPerPixel == 1 and pi != "PALETTE COLOR":
            d = diffstats(other, rr.render(path, f, None, rounding="floor", decoding_plugin=ref_plugin))
            floor_diff = max(floor_diff, d["max_abs_diff"])
            floor_px += d["pixels_differing"]
    rec["render"] = {
        "pngs": renders,
        "decoding_plugin": ref_plugin or "(pydicom default)",
        "voi_used": voi_used,
        "dcm2pnm_args": " ".join(["+on", "+F", "N", *voi_args]),
        "dcm2pnm_input": "the file" if twin == path else (
            "pydicom-decoded native copy (dcmtk has no JPEG 2000 decoder)" if twin.endswith(".native.dcm")
            else "dcmtk-decoded native copy"),
        "dcm2pnm_max_abs_diff": render_diff,
        "dcm2pnm_pixels_differing": render_px,
    }
    if ds.SamplesPerPixel == 1 and pi != "PALETTE COLOR":
        rec["render"]["dcm2pnm_vs_floor_rounding"] = {"max_abs_diff": floor_diff, "pixels_differing": floor_px}
    return rec


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    t0 = time.time()
    c = Corpus(sys.argv[1])
    try:
        build(c)
        records = [verify(c, item) for item in c.items]
    finally:
        shutil.rmtree(c.tmp, ignore_errors=True)
    first = dcmread(c.path(c.items[0]["name"]))
    manifest = {
        "generator": "tests/support/make_pixel_corpus.py",
        "patient_name": "PIXEL^CORPUS",
        "patient_id": "PIXCORPUS",
        "study_instance_uid": str(first.StudyInstanceUID),
        "versions": {"pydicom": pydicom.__version__, "numpy": np.__version__,
                     "dcmtk": tool_version("dcmcjpeg"), **_plugin_versions()},
        "conventions": {
            "expected_shape": "(frames, rows, cols) or (frames, rows, cols, 3)",
            "colour": "expected/<name>.npy is RGB for every colour file (YBR converted with pydicom's "
                      "convert_color_space); <name>.ybr.npy keeps the decoder's YBR output",
            "palette": "expected/<name>.npy holds the indices; colours are in the render PNG",
            "tolerance": "max abs difference allowed between a decoder under test and expected/*.npy: "
                         "0 for lossless; for lossy, 'recommended' (measured spread between independent "
                         "decoders + 1, at least 2, except JPEG-LS near-lossless whose decoding is exact)",
            "render": "expected/render/<name>.f<N>.png = render_reference.render(file, N, "
                      "decoding_plugin=<the reference decoder>) with the file's own VOI (VOI LUT "
                      "Sequence, else first window, else min/max); compare with +-1 plus the "
                      "decoder tolerance",
            "dcm2pnm_crosscheck": "dcmtk dcm2pnm (+Wi 1 / +Wl 1 / +Wm) renders the same frame from the file or "
                      "its dcmtk-decoded copy. It truncates instead of rounding, so it is compared "
                      "both with the reference PNG (differences <= 1) and with "
                      "render(..., rounding='floor') (exact for LINEAR and SIGMOID windows). Known "
                      "dcmtk 3.6.7 differences: VOI LUT entries are reduced by a bit shift (v >> 4 "
                      "for 12-bit entries) instead of v*255/4095; LINEAR_EXACT is ignored (it warns "
                      "and uses LINEAR); YBR->RGB uses integer arithmetic (<= 2 off); large values "
                      "(32-bit) and slope != 1 show rare 1-level differences.",
            "frame_out_of_range": {"file": "native_u8.dcm", "frames": 1, "request_frame": 2},
        },
        "files": records,
        "generation_seconds": None,
    }
    manifest["generation_seconds"] = round(time.time() - t0, 2)
    with open(os.path.join(c.exp, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(c.out) for f in fs)
    print(f"{len(records)} files in {c.out} ({total / 1024:.0f} KiB with expected/), "
          f"{manifest['generation_seconds']} s")
    bad = [r["file"] for r in records if not r.get("broken") and not r["decoders_agree"]]
    if bad:
        print("decoders disagree beyond tolerance for:", ", ".join(bad))
        sys.exit(1)


def _plugin_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for p in ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pillow"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
