"""Reference 8-bit renderer for DICOM images, for testing the server's rendered/thumbnail output.

usage:  render_reference.py FILE [--frame N] [--window C,W[,FUNC]] [--decoder PLUGIN] --out out.png
        render_reference.py --self-test
        (FUNC: linear | linear-exact | sigmoid; the DICOM spellings LINEAR_EXACT etc. work too)

import: render(path_or_dataset, frame=1, window_spec=None, rounding="round", decoding_plugin="")
        -> numpy uint8, HxW (grayscale) or HxWx3 (RGB)

Pipeline (DICOM PS3.3 C.11.1 Modality LUT, C.11.2.1.2 VOI LUT / window, C.7.6.3.1.5 palette):

grayscale (MONOCHROME1/2), per frame, in float64:
  1. stored values as decoded by pydicom (sign-extended per Pixel Representation / Bits Stored);
  2. Modality LUT: the first item of Modality LUT Sequence if present (values outside the LUT
     clamp to the first/last entry), else x * RescaleSlope + RescaleIntercept (default 1 / 0);
  3. VOI, the first of these that applies:
       a. the window passed in by the caller (center, width, function);
       b. the first item of VOI LUT Sequence (clamped lookup; the output is scaled from the
          LUT Descriptor's bit depth to 0..255: y = v * 255 / (2**bits - 1));
       c. the first WindowCenter/WindowWidth value with VOILUTFunction (default LINEAR);
       d. otherwise the min/max of the frame's modality values: y = (x - min) / (max - min) * 255
          (= LINEAR_EXACT with c = (min+max)/2, w = max-min, = LINEAR with c = (min+max+1)/2,
          w = max-min+1, which is what dcmtk's +Wm does); a constant frame gives 0.
     The window functions, with ymin = 0, ymax = 255:
       LINEAR:       x <= c - 0.5 - (w-1)/2 -> 0;  x > c - 0.5 + (w-1)/2 -> 255;
                     else y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255           (needs w >= 1)
       LINEAR_EXACT: x <= c - w/2 -> 0;  x > c + w/2 -> 255;
                     else y = ((x - c) / w + 0.5) * 255                         (needs w > 0)
       SIGMOID:      y = 255 / (1 + exp(-4 * (x - c) / w))                      (needs w > 0)
  4. y is rounded half-up (floor(y + 0.5)) and clipped to 0..255 (dcmtk's dcm2pnm truncates
     instead: render(..., rounding="floor") reproduces it);
  5. MONOCHROME1 is inverted after the VOI step: y = 255 - y.
PALETTE COLOR: the stored value indexes each of the Red/Green/Blue Palette Color LUTs
  (values below the first mapped value take the first entry, above the last take the last entry);
  entries are scaled to 8 bits by round(v * 255 / (2**bits - 1)) with bits from the descriptor.
RGB: returned as is (samples with more than 8 bits stored are scaled by 255 / (2**bits - 1)).
YBR_FULL / YBR_FULL_422 (native or as left by the JPEG decoder): pydicom's convert_color_space
  to RGB (ITU-R BT.601 full range, the matrix in PS3.3 C.7.6.3.1.2).
Window, modality LUT and VOI LUT are not applied to colour images (PS3.3 C.11.2.1.2 applies VOI to
grayscale only). Rounding differs between renderers, so compare server output with a tolerance of
+-1 (plus the decoder tolerance for lossy transfer syntaxes).
"""
import argparse
import sys

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space, pixel_array

FUNCTIONS = {
    "linear": "LINEAR", "LINEAR": "LINEAR",
    "linear-exact": "LINEAR_EXACT", "linear_exact": "LINEAR_EXACT", "LINEAR_EXACT": "LINEAR_EXACT",
    "sigmoid": "SIGMOID", "SIGMOID": "SIGMOID",
}


def _first(value):
    """First value of a possibly multi-valued element, as float."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _lut_values(item: Dataset, data_keyword: str, descriptor_keyword: str,
                signed_first: bool) -> tuple[np.ndarray, int, int]:
    """(entries as int64, first mapped value, bits per entry) of a LUT (descriptor + data)."""
    desc = [int(v) for v in item[descriptor_keyword].value]
    n, first, bits = desc[0] or 65536, desc[1], desc[2]
    if signed_first and first >= 32768:
        first -= 65536
    raw = item[data_keyword].value
    if isinstance(raw, (bytes, bytearray)):
        if bits <= 8 and len(raw) == n:
            data = np.frombuffer(raw, dtype=np.uint8)
        else:
            data = np.frombuffer(raw, dtype="<u2")
    else:
        data = np.asarray(raw if isinstance(raw, (list, tuple)) or type(raw).__name__ == "MultiValue"
                          else [raw], dtype=np.int64)
    data = data.astype(np.int64)[:n]
    if bits <= 8:
        data &= 0xFF
    return data, first, bits


def _lookup(x: np.ndarray, data: np.ndarray, first: int) -> np.ndarray:
    idx = np.clip(np.floor(x).astype(np.int64) - first, 0, len(data) - 1)
    return data[idx]


def window(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 / C.11.2.1.3.2 window functions onto 0..255 (float, not rounded)."""
    function = FUNCTIONS.get(function, function)
    c, w = float(center), float(width)
    x = np.asarray(x, dtype=np.float64)
    if function == "LINEAR":
        if w < 1:
            raise ValueError("LINEAR window needs width >= 1")
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0 if w > 1 else np.zeros_like(x)
        y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, 255.0, y))
    elif function == "LINEAR_EXACT":
        if w <= 0:
            raise ValueError("LINEAR_EXACT window needs width > 0")
        y = ((x - c) / w + 0.5) * 255.0
        y = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 255.0, y))
    elif function == "SIGMOID":
        if w <= 0:
            raise ValueError("SIGMOID window needs width > 0")
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    else:
        raise ValueError(f"unknown VOI LUT function {function!r}")
    return y


def _to_u8(y: np.ndarray, rounding: str = "round") -> np.ndarray:
    y = np.floor(y + 0.5) if rounding == "round" else np.floor(y)
    return np.clip(y, 0, 255).astype(np.uint8)


def modality_values(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """Stored values -> modality values (float64)."""
    x = stored.astype(np.float64)
    seq = ds.get("ModalityLUTSequence")
    if seq:
        data, first, _bits = _lut_values(seq[0], "LUTData", "LUTDescriptor",
                                         int(ds.get("PixelRepresentation", 0)) == 1)
        return _lookup(x, data, first).astype(np.float64)
    slope = _first(ds.get("RescaleSlope", 1.0))
    intercept = _first(ds.get("RescaleIntercept", 0.0))
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    return x * slope + intercept


def voi(ds: Dataset, x: np.ndarray, win=None) -> np.ndarray:
    """Modality values -> display values 0..255 (float64, not rounded, before MONOCHROME1 inversion)."""
    if win is not None:
        c, w, f = win
        return window(x, c, w, f)
    seq = ds.get("VOILUTSequence")
    if seq:
        data, first, bits = _lut_values(seq[0], "LUTData", "LUTDescriptor",
                                        int(ds.get("PixelRepresentation", 0)) == 1)
        return _lookup(x, data, first).astype(np.float64) * 255.0 / (2 ** bits - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return window(x, _first(ds.WindowCenter), _first(ds.WindowWidth),
                      str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip())
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo) * 255.0


def decode_frame(ds: Dataset, frame: int = 1, decoding_plugin: str = "") -> tuple[np.ndarray, str]:
    """(stored values of one frame, photometric interpretation of those values)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= frames:
        raise IndexError(f"frame {frame} out of range 1..{frames}")
    arr = pixel_array(ds, index=frame - 1, raw=True, decoding_plugin=decoding_plugin)
    return arr, str(ds.PhotometricInterpretation).strip()


def render(src, frame: int = 1, window_spec=None, rounding: str = "round",
           decoding_plugin: str = "") -> np.ndarray:
    """Render one frame (1-based) of a file path or Dataset to uint8 (HxW or HxWx3).

    window_spec: None or (center, width[, function]) with function linear|linear-exact|sigmoid.
    rounding: "round" (half up, the reference) or "floor" (what dcmtk's dcm2pnm does for
    grayscale: it truncates, and for MONOCHROME1 truncates the inverted value, floor(255 - y));
    used only to cross-check the formulas exactly.
    decoding_plugin: pydicom decoding plugin ("pylibjpeg", "pillow", ...); "" lets pydicom choose.
    JPEG decoders differ by a few levels, so pin it when comparing with expected/*.npy.
    """
    ds = src if isinstance(src, Dataset) else dcmread(src)
    if window_spec is not None:
        window_spec = tuple(window_spec)
        if len(window_spec) == 2:
            window_spec = (*window_spec, "LINEAR")
        window_spec = (float(window_spec[0]), float(window_spec[1]), FUNCTIONS[window_spec[2]])
    arr, pi = decode_frame(ds, frame, decoding_plugin)
    if pi == "PALETTE COLOR":
        out = []
        for colour in ("Red", "Green", "Blue"):
            data, first, bits = _lut_values(ds, f"{colour}PaletteColorLookupTableData",
                                            f"{colour}PaletteColorLookupTableDescriptor", False)
            v = _lookup(arr.astype(np.float64), data, first).astype(np.float64)
            out.append(_to_u8(v * 255.0 / (2 ** bits - 1)))
        return np.stack(out, axis=-1)
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        if pi.startswith("YBR_FULL"):
            arr = convert_color_space(arr, "YBR_FULL", "RGB")
        elif pi not in ("RGB",):
            raise ValueError(f"unsupported colour photometric interpretation {pi}")
        bits = int(ds.BitsStored)
        if bits > 8:
            return _to_u8(arr.astype(np.float64) * 255.0 / (2 ** bits - 1))
        return arr.astype(np.uint8)
    if pi not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"unsupported photometric interpretation {pi}")
    y = voi(ds, modality_values(ds, arr), window_spec)
    if rounding == "floor":
        return _to_u8(255.0 - y if pi == "MONOCHROME1" else y, "floor")
    y = _to_u8(y)
    return 255 - y if pi == "MONOCHROME1" else y


def write_png(img: np.ndarray, path: str) -> None:
    from PIL import Image
    Image.fromarray(img, "RGB" if img.ndim == 3 else "L").save(path)


# ----------------------------------------------------------------------------------------------
def _ds(pixels: np.ndarray, photometric="MONOCHROME2", bits_stored=None, signed=False) -> Dataset:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = pixels.shape[0], pixels.shape[1]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.tobytes()
    return ds


def self_test() -> None:
    from pydicom.dataset import Dataset as D
    checks = []

    def check(name, got, want):
        ok = np.array_equal(np.asarray(got), np.asarray(want))
        checks.append(ok)
        print(("ok  " if ok else "FAIL"), name, "got", np.asarray(got).tolist(), "want", np.asarray(want).tolist())

    # CT-like: signed stored values, HU = 2*sv - 1024, window 40/400 LINEAR.
    #  sv 532 -> HU 40:   ((40 - 39.5)/399 + 0.5) * 255 = 127.82 -> 128
    #  sv 432 -> HU -160: -160 <= 39.5 - 199.5 = -160 -> 0
    #  sv 433 -> HU -158: ((-158 - 39.5)/399 + 0.5) * 255 = 1.28 -> 1
    #  sv 582 -> HU 140:  ((140 - 39.5)/399 + 0.5) * 255 = 191.73 -> 192
    #  sv 631 -> HU 238:  ((238 - 39.5)/399 + 0.5) * 255 = 254.36 -> 254
    #  sv 632 -> HU 240:  240 > 39.5 + 199.5 = 239 -> 255
    sv = np.array([[532, 432, 433], [582, 631, 632]], dtype=np.int16)
    ct = _ds(sv, signed=True)
    ct.RescaleSlope, ct.RescaleIntercept = 2, -1024
    ct.WindowCenter, ct.WindowWidth = [40, 400], [400, 2000]
    check("linear window from file (first of two)", render(ct), [[128, 0, 1], [192, 254, 255]])
    # LINEAR_EXACT 40/400: HU 40 -> 127.5 -> 128; -160 -> 0 (x <= c - w/2); -158 -> 1.275 -> 1;
    #   140 -> (100/400 + 0.5)*255 = 191.25 -> 191; 238 -> 253.725 -> 254; 240 -> 255 (x <= 240: 255)
    check("linear-exact window argument", render(ct, 1, (40, 400, "linear-exact")), [[128, 0, 1], [191, 254, 255]])
    # SIGMOID 40/400: 255 / (1 + exp(-4 (x - 40) / 400)):  40 -> 127.5 -> 128;
    #   -160 -> 255/(1+e^2) = 30.40 -> 30; -158 -> 255/(1+e^1.98) = 30.94 -> 31;
    #   140 -> 255/(1+e^-1) = 186.42 -> 186; 238 -> 255/(1+e^-1.98) = 224.06 -> 224;
    #   240 -> 255/(1+e^-2) = 224.60 -> 225
    check("sigmoid window argument", render(ct, 1, (40, 400, "sigmoid")), [[128, 30, 31], [186, 224, 225]])
    ct.VOILUTFunction = "SIGMOID"
    check("sigmoid from VOILUTFunction", render(ct), [[128, 30, 31], [186, 224, 225]])
    del ct.VOILUTFunction
    ct.PhotometricInterpretation = "MONOCHROME1"
    check("MONOCHROME1 inverted after VOI", render(ct), [[127, 255, 254], [63, 1, 0]])

    # min/max fallback, unsigned 8-bit: min 10, max 210 -> (x-10)/200*255
    #   110 -> 127.5 -> 128; 60 -> 63.75 -> 64; 11 -> 1.275 -> 1
    mm = _ds(np.array([[10, 110, 60], [210, 11, 200]], dtype=np.uint8))
    check("min/max fallback", render(mm), [[0, 128, 64], [255, 1, 242]])

    # VOI LUT sequence: descriptor [4, 100, 8], data [0, 85, 170, 255]; clamps outside 100..103
    lut = _ds(np.array([[50, 100, 101], [102, 103, 500]], dtype=np.uint16), bits_stored=12)
    item = D()
    item.LUTDescriptor = [4, 100, 8]
    item.LUTData = [0, 85, 170, 255]
    lut.VOILUTSequence = [item]
    lut.WindowCenter, lut.WindowWidth = 2000, 10  # VOI LUT Sequence takes precedence
    check("VOI LUT sequence", render(lut), [[0, 0, 85], [170, 255, 255]])
    # 12-bit LUT entries scale by 255/4095: 4095 -> 255, 2048 -> 127.53 -> 128, 1 -> 0.06 -> 0
    item.LUTDescriptor = [4, 100, 12]
    item.LUTData = [1, 2048, 4000, 4095]
    check("VOI LUT sequence, 12-bit entries", render(lut), [[0, 0, 128], [249, 255, 255]])
    check("explicit window beats VOI LUT", render(lut, 1, (101, 2, "linear-exact")), [[0, 0, 128], [255, 255, 255]])

    # PALETTE COLOR: descriptor [3, 10, 16]; red [0, 32896, 65535] -> 0, 128, 255 (32896*255/65535 = 128)
    pal = _ds(np.array([[0, 10, 11], [12, 13, 255]], dtype=np.uint8), photometric="PALETTE COLOR")
    for colour, data in (("Red", [0, 32896, 65535]), ("Green", [65535, 0, 0]), ("Blue", [256, 512, 768])):
        setattr(pal, f"{colour}PaletteColorLookupTableDescriptor", [3, 10, 16])
        setattr(pal, f"{colour}PaletteColorLookupTableData", np.array(data, dtype="<u2").tobytes())
    # blue: 256*255/65535 = 0.996 -> 1; 512 -> 1.99 -> 2; 768 -> 2.99 -> 3
    check("palette red", render(pal)[..., 0], [[0, 0, 128], [255, 255, 255]])
    check("palette green", render(pal)[..., 1], [[255, 255, 0], [0, 0, 0]])
    check("palette blue", render(pal)[..., 2], [[1, 1, 2], [3, 3, 3]])

    # YBR_FULL -> RGB (PS3.3 C.7.6.3.1.2): (128,128,128) -> grey 128;
    #   Y 76, Cb 85, Cr 255: R = 76 + 1.402*127 = 254.05, G = 76 + 0.344136*43 - 0.714136*127 = 0.10,
    #   B = 76 - 1.772*43 = -0.20 -> (254, 0, 0)
    ybr = _ds(np.array([[[128, 128, 128], [76, 85, 255]]], dtype=np.uint8), photometric="YBR_FULL")
    check("YBR_FULL to RGB", render(ybr), [[[128, 128, 128], [254, 0, 0]]])
    rgb = _ds(np.array([[[1, 2, 3], [250, 128, 0]]], dtype=np.uint8), photometric="RGB")
    check("RGB passthrough", render(rgb), [[[1, 2, 3], [250, 128, 0]]])

    # frame range
    try:
        render(mm, 2)
        checks.append(False)
        print("FAIL frame 2 of a single-frame image did not raise")
    except IndexError:
        checks.append(True)
        print("ok   frame 2 of a single-frame image raises IndexError")
    print(f"{sum(checks)}/{len(checks)} checks passed")
    if not all(checks):
        sys.exit(1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--frame", type=int, default=1, help="1-based frame number (default 1)")
    ap.add_argument("--window", help="C,W[,FUNC] with FUNC linear|linear-exact|sigmoid")
    ap.add_argument("--decoder", default="", help="pydicom decoding plugin (pylibjpeg, pillow, ...)")
    ap.add_argument("--out", required=True, help="output PNG")
    args = ap.parse_args(argv)
    win = None
    if args.window:
        parts = args.window.split(",")
        win = (float(parts[0]), float(parts[1]), parts[2].strip() if len(parts) > 2 else "linear")
    img = render(args.file, args.frame, win, decoding_plugin=args.decoder)
    write_png(img, args.out)
    print(f"{args.out}: {img.shape[1]}x{img.shape[0]} {'RGB' if img.ndim == 3 else 'L'}")


if __name__ == "__main__" and "--self-test" in sys.argv:
    self_test()
elif __name__ == "__main__":
    main()
