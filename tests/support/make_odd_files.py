"""Odd but real-world DICOM files, made with pydicom, dcmtk and OpenJPEG (not taken from a public
sample set): what anonymizers, old gateways and scanners send that tidy test data does not.

usage: make_odd_files.py OUT_DIR        writes the files below and OUT_DIR/manifest.json
  un_encoded.dcm        standard attributes written with VR UN in Explicit VR LE (PS3.5 6.2.2)
  no_modality.dcm       a Secondary Capture without Modality
  seg_binary.dcm        Segmentation, BitsAllocated 1, 3 frames of 7x9 (frames not byte aligned)
  seg_fractional.dcm    Segmentation, BitsAllocated 8, FRACTIONAL
  rgb_jpeg_app14.dcm    JPEG baseline of an RGB image stored without colour transform (Adobe APP14
                        transform 0), PhotometricInterpretation RGB
  ct_jpeg12.dcm         12-bit JPEG extended (process 2/4, 1.2.840.10008.1.2.4.51)
  j2k_*.dcm             JPEG 2000 codestreams as scanners write them: tiles, several fragments per
                        frame (one frame, and two frames without an offset table), RPCL with
                        SOP/EPH/TLM markers, a lossy 1955x2370 CR, an image offset (the
                        codestream is larger than Rows x Columns)
  rgb_jpeg_adobe_ids123.dcm  the same RGB JPEG with component identifiers 1, 2, 3
  bad_uid.dcm           a SOP Instance UID with a letter in it
The manifest lists each file with the reference pixels' SHA-256 and shape as pydicom (with
pylibjpeg) decodes them, where it can, so tests compare the server with an independent decoder.
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.dataelem import DataElement
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit,
                         JPEGExtended12Bit, PYDICOM_IMPLEMENTATION_UID)

sys.path.insert(0, os.path.dirname(__file__))
import dicomgen  # noqa: E402

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
# Keep what is written as UN as UN (pydicom would otherwise re-type it).
pydicom.config.replace_un_with_known_vr = False


def write(ds: Dataset, path: str, ts: str = ExplicitVRLittleEndian) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)


def base(name: str, sop_class: str, modality: str | None) -> Dataset:
    ds = dicomgen.base(sop_class, f"odd/{name}", f"odd/{name}/study", f"odd/{name}/series",
                       modality or "OT", "20240301", f"ODD{abs(hash(name)) % 10**6:06d}",
                       f"ODD {name.upper()}", name, 1, 1)
    if modality is None:
        del ds.Modality
    dicomgen.patient(ds, f"ODD^{name.upper()}", f"ODD-{name}", "19800101", "F")
    return ds


def un(tag: int, raw: bytes, pad: bytes = b"\0") -> DataElement:
    if len(raw) % 2:
        raw += pad
    return DataElement(tag, "UN", raw)


def implicit(group: int, elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def un_encoded(out: str) -> None:
    """Identifiers, demographics, Modality and the image attributes as UN; a sequence too."""
    ds = base("un", dicomgen.CT, "CT")
    study_uid = ds.StudyInstanceUID
    pixels = dicomgen.ct_pixels(64, 64, 3)
    dicomgen.mono(ds, pixels, 16, True)
    ds["PixelData"].VR = "OW"  # settled now: BitsAllocated becomes UN below
    ds.WindowCenter, ds.WindowWidth = 40, 400
    text = {0x0020000D: study_uid, 0x0020000E: ds.SeriesInstanceUID,
            0x00100010: str(ds.PatientName), 0x00100020: ds.PatientID, 0x00080060: "CT",
            0x00080020: "20240301", 0x00081030: "UN ENCODED STUDY", 0x00281050: "40",
            0x00281051: "400"}
    for tag, value in text.items():
        ds[tag] = un(tag, value.encode(), b"\0" if tag in (0x0020000D, 0x0020000E) else b" ")
    numbers = {0x00280010: ("<H", 64), 0x00280011: ("<H", 64), 0x00280100: ("<H", 16),
               0x00280101: ("<H", 16), 0x00280103: ("<H", 1)}
    for tag, (fmt, value) in numbers.items():
        ds[tag] = un(tag, struct.pack(fmt, value))
    # Referenced Study Sequence (0008,1110) as UN of defined length: its item in Implicit VR LE.
    inner = implicit(0x0008, 0x1150, b"1.2.840.10008.3.1.2.3.1") + implicit(0x0008, 0x1155, study_uid.encode())
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
    ds[0x00081110] = un(0x00081110, item)
    write(ds, os.path.join(out, "un_encoded.dcm"))


def no_modality(out: str) -> None:
    ds = base("nomod", dicomgen.SC, None)
    ds.ConversionType = "WSD"
    pixels = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) % 256).astype(np.uint8)
    dicomgen.mono(ds, pixels, 8, False)
    write(ds, os.path.join(out, "no_modality.dcm"))


def seg_frames() -> np.ndarray:
    rows, cols, frames = 7, 9, 3
    f = np.zeros((frames, rows, cols), dtype=np.uint8)
    f[0, 1:5, 2:7] = 1
    f[1, :, 0] = 1
    f[1, 6, :] = 1
    f[2, ::2, ::2] = 1
    return f


def seg_common(name: str) -> Dataset:
    ds = base(name, SEG, "SEG")
    ds.SegmentationType = "BINARY"
    ds.ContentLabel = "MASK"
    ds.NumberOfFrames = 3
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 7, 9
    ds.PixelRepresentation = 0
    seg = Dataset()
    seg.SegmentNumber = 1
    seg.SegmentLabel = "LESION"
    seg.SegmentAlgorithmType = "MANUAL"
    ds.SegmentSequence = Sequence([seg])
    return ds


def seg_binary(out: str) -> np.ndarray:
    ds = seg_common("segbin")
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    bits = seg_frames().reshape(-1)
    # PS3.5 8.1.1: bits packed from the least significant bit, frames contiguous (not padded).
    packed = np.packbits(bits, bitorder="little").tobytes()
    ds.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
    write(ds, os.path.join(out, "seg_binary.dcm"))
    return seg_frames()


def seg_fractional(out: str) -> np.ndarray:
    ds = seg_common("segfrac")
    ds.SegmentationType = "FRACTIONAL"
    ds.SegmentationFractionalType = "PROBABILITY"
    ds.MaximumFractionalValue = 255
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    frames = (seg_frames() * 200 + 25).astype(np.uint8)
    ds.PixelData = frames.tobytes() + (b"\0" if frames.size % 2 else b"")
    write(ds, os.path.join(out, "seg_fractional.dcm"))
    return frames


def run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rgb_jpeg_app14(out: str, tmp: str) -> None:
    """dcmtk's +cr compresses RGB as RGB, and libjpeg marks that with an Adobe APP14 segment
    saying 'no transform'; PhotometricInterpretation stays RGB."""
    ds = base("app14", dicomgen.SC, "OT")
    ds.ConversionType = "WSD"
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256], axis=-1).astype(np.uint8)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = 48, 64
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = rgb.tobytes()
    src = os.path.join(tmp, "rgb.dcm")
    write(ds, src)
    dst = os.path.join(out, "rgb_jpeg_app14.dcm")
    run("dcmcjpeg", "+eb", "+cr", "+q", "95", src, dst)
    frame = next(pydicom.encaps.generate_frames(pydicom.dcmread(dst).PixelData))
    assert b"Adobe" in frame[:200], "dcmcjpeg did not write an Adobe APP14 segment"
    # Other encoders mark RGB only by the Adobe segment and number the components 1, 2, 3
    # (as a YCbCr frame would be): libjpeg still reads RGB, jpeg-decoder reads YCbCr.
    ds = pydicom.dcmread(dst)
    ds.SOPInstanceUID = dicomgen.uid("odd/app14-ids123")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PixelData = encapsulate([renumber_components(frame)])
    ds.save_as(os.path.join(out, "rgb_jpeg_adobe_ids123.dcm"))


def renumber_components(jpeg: bytes) -> bytes:
    """Component identifiers 1, 2, 3 in SOF and SOS."""
    b = bytearray(jpeg)
    i = 2
    while i + 4 <= len(b):
        marker, length = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker == 0xC0:
            for k in range(b[i + 9]):
                b[i + 10 + 3 * k] = k + 1
        if marker == 0xDA:
            for k in range(b[i + 4]):
                b[i + 5 + 2 * k] = k + 1
            break
        i += 2 + length
    return bytes(b)


def ct_jpeg12(out: str, tmp: str) -> None:
    ds = base("jpeg12", dicomgen.CT, "CT")
    pixels = (dicomgen.ct_pixels(64, 64, 5).astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16)
    dicomgen.mono(ds, pixels, 12, False)
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    src = os.path.join(tmp, "ct12.dcm")
    write(ds, src)
    run("dcmcjpeg", "+ee", "+q", "95", src, os.path.join(out, "ct_jpeg12.dcm"))


def to_pgx(pixels: np.ndarray, path: str, signed: bool) -> None:
    """OpenJPEG's PGX: a header line, then big-endian samples."""
    depth = 16 if pixels.dtype.itemsize == 2 else 8
    with open(path, "wb") as f:
        f.write(f"PG ML {'-' if signed else '+'} {depth} {pixels.shape[1]} {pixels.shape[0]}\n".encode())
        f.write(pixels.astype(pixels.dtype.newbyteorder(">")).tobytes())


def j2k(out: str, tmp: str, name: str, pixels: np.ndarray, options: list[str], fragments: int = 1,
        sop_class: str = dicomgen.CT, modality: str = "CT", bits_stored: int = 16,
        lossy: bool = False) -> None:
    pgx = os.path.join(tmp, f"{name}.pgx")
    to_pgx(pixels, pgx, pixels.dtype.kind == "i")
    stream = os.path.join(tmp, f"{name}.j2k")
    run("opj_compress", "-i", pgx, "-o", stream, *options)
    with open(stream, "rb") as f:
        codestream = f.read()
    ds = base(name, sop_class, modality)
    dicomgen.mono(ds, pixels, bits_stored, pixels.dtype.kind == "i")
    # Fragments have even lengths (PS3.5 A.4): split at even offsets, pad only the last.
    step = -(-len(codestream) // fragments)
    step += step % 2
    parts = [codestream[i:i + step] for i in range(0, len(codestream), step)]
    ds.PixelData = encapsulate([b"".join(parts)]) if fragments == 1 else encapsulate_split(parts)
    ds["PixelData"].VR = "OB"
    if lossy:
        ds.LossyImageCompression = "01"
    write(ds, os.path.join(out, f"{name}.dcm"), JPEG2000 if lossy else JPEG2000Lossless)


def j2k_multiframe(out: str, tmp: str, frames: list) -> None:
    """Two frames, each in two fragments, and no Basic Offset Table."""
    parts = []
    for k, f in enumerate(frames):
        pgx = os.path.join(tmp, f"mf{k}.pgx")
        to_pgx(f, pgx, True)
        stream = os.path.join(tmp, f"mf{k}.j2k")
        run("opj_compress", "-i", pgx, "-o", stream)
        with open(stream, "rb") as fh:
            cs = fh.read()
        half = (len(cs) // 4) * 2
        parts += [cs[:half], cs[half:]]
    ds = base("j2kmf", dicomgen.CT, "CT")
    dicomgen.mono(ds, np.stack(frames), 16, True)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate_split(parts)
    ds["PixelData"].VR = "OB"
    write(ds, os.path.join(out, "j2k_multiframe_fragments.dcm"), JPEG2000Lossless)


def encapsulate_split(parts: list[bytes]) -> bytes:
    """One frame in several fragments, with an empty Basic Offset Table."""
    out = struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    for p in parts:
        if len(p) % 2:
            p += b"\0"
        out += struct.pack("<HHI", 0xFFFE, 0xE000, len(p)) + p
    return out  # pydicom writes the sequence delimiter


def cr_pixels(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    img = 600 + 300 * np.sin(x / 37.0) * np.cos(y / 53.0) + (x * 700 // cols)
    rng = np.random.default_rng(7)
    return (img + rng.integers(0, 40, size=img.shape)).clip(0, 4095).astype(np.uint16)


def reference(path: str) -> dict:
    """What pydicom (with pylibjpeg) decodes: shape and SHA-256 of the samples, or why not."""
    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
        return {"shape": list(arr.shape), "dtype": str(arr.dtype),
                "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()}
    except Exception as e:  # noqa: BLE001 - the reason is the result
        return {"error": f"{type(e).__name__}: {e}"}


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        un_encoded(out)
        no_modality(out)
        seg_binary(out)
        seg_fractional(out)
        rgb_jpeg_app14(out, tmp)
        ct_jpeg12(out, tmp)
        ct = dicomgen.ct_pixels(256, 256, 11)
        j2k(out, tmp, "j2k_tiles", ct, ["-t", "64,64"])
        j2k(out, tmp, "j2k_fragments", ct, [], fragments=3)
        j2k(out, tmp, "j2k_rpcl_markers", ct, ["-p", "RPCL", "-SOP", "-EPH", "-TLM", "-PLT", "-n", "7"])
        j2k(out, tmp, "j2k_lossy_cr", cr_pixels(2370, 1955), ["-I", "-r", "20"],
            sop_class=dicomgen.CR, modality="CR", bits_stored=12, lossy=True)
        # An image offset makes the codestream larger than Rows x Columns say (it made the
        # decoder adapter panic); pydicom refuses it too.
        j2k(out, tmp, "j2k_offset", ct, ["-d", "10,20"])
        j2k_multiframe(out, tmp, [ct, np.flipud(ct).copy()])
        bad = base("baduid", dicomgen.CT, "CT")
        dicomgen.mono(bad, dicomgen.ct_pixels(16, 16, 1), 16, True)
        bad.SOPInstanceUID = bad.SOPInstanceUID[:40] + ".12a3"
        write(bad, os.path.join(out, "bad_uid.dcm"))
    pydicom.config.replace_un_with_known_vr = True  # the reference reads UN as pydicom does
    manifest = {f: reference(os.path.join(out, f)) for f in sorted(os.listdir(out)) if f.endswith(".dcm")}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
