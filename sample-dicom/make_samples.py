"""Regenerate the sample files in this folder (see README.md here).

usage: .venv/bin/python sample-dicom/make_samples.py   (needs dcmtk on PATH for the codecs)

Uncompressed instances are built with pydicom from tests/support/dicomgen.py; the compressed
ones are made from them with dcmtk (dcmcjpeg, dcmcjpls, dcmcrle, dcmconv) and, for JPEG 2000,
pydicom with pylibjpeg-openjpeg, so each encoding comes from an independent encoder.
"""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
import dicomgen as g  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless  # noqa: E402


def out(name: str) -> str:
    return os.path.join(HERE, name)


def dcmtk(*args: str) -> None:
    subprocess.run(["/usr/bin/" + args[0], *args[1:]], check=True)


def main() -> None:
    # CT, 16-bit signed, implicit VR little endian (the oldest and commonest encoding)
    ct = g.ct_instance(0, 0, 0, 512, 512, patient_no=1)
    g.patient(ct, "DOE^JANE^M", "MRN-100234", "19680412", "F")
    ct.AccessionNumber = "A2024110501"
    g.to_file(ct, out("ct_16bit_signed_implicit.dcm"), ImplicitVRLittleEndian)

    # Second CT slice of the same series, encoded JPEG-LS lossless and deflated by dcmtk
    ct2 = g.ct_instance(0, 0, 1, 512, 512, patient_no=1)
    g.patient(ct2, "DOE^JANE^M", "MRN-100234", "19680412", "F")
    ct2.AccessionNumber = "A2024110501"
    g.to_file(ct2, out("tmp_ct2.dcm"))
    dcmtk("dcmcjpls", out("tmp_ct2.dcm"), out("ct_jpegls_lossless.dcm"))
    ct3 = g.ct_instance(0, 0, 2, 512, 512, patient_no=1)
    g.patient(ct3, "DOE^JANE^M", "MRN-100234", "19680412", "F")
    ct3.AccessionNumber = "A2024110501"
    g.to_file(ct3, out("tmp_ct3.dcm"))
    dcmtk("dcmconv", "+td", out("tmp_ct3.dcm"), out("ct_deflated.dcm"))
    ct4 = g.ct_instance(0, 0, 3, 512, 512, patient_no=1)
    g.patient(ct4, "DOE^JANE^M", "MRN-100234", "19680412", "F")
    ct4.AccessionNumber = "A2024110501"
    ct4.file_meta = None
    g.to_file(ct4, out("tmp_ct4.dcm"))
    ds = dcmread(out("tmp_ct4.dcm"))
    ds.compress(JPEG2000Lossless)
    ds.save_as(out("ct_jpeg2000_lossless.dcm"), enforce_file_format=True)

    # MR, 16-bit unsigned, 256x256, explicit VR little endian, and an RLE copy of slice 2
    for i, name in ((0, "mr_explicit.dcm"), (1, "tmp_mr2.dcm"), (2, "tmp_mr3.dcm")):
        mr = g.base(g.MR, f"mr/{i}", "mr/study", "mr/series", "MR", "20240918", "A2024091807",
                    "MRI BRAIN WITHOUT CONTRAST", "AX T2 FLAIR", 3, i + 1)
        g.patient(mr, "SMITH^JOHN", "MRN-200871", "19550228", "M")
        mr.BodyPartExamined = "BRAIN"
        mr.MagneticFieldStrength = 3
        y, x = np.mgrid[0:256, 0:256]
        img = (2000 * np.exp(-((x - 128) ** 2 + (y - 128) ** 2) / (2 * (40 + 10 * i) ** 2))).astype(np.uint16)
        g.mono(mr, img, 12, False)
        mr.WindowCenter = 1000
        mr.WindowWidth = 2000
        g.to_file(mr, out(name))
    dcmtk("dcmcrle", out("tmp_mr2.dcm"), out("mr_rle.dcm"))
    dcmtk("dcmconv", "+tb", out("tmp_mr3.dcm"), out("mr_explicit_big_endian.dcm"))

    # CR chest, 12-bit in 16, 320x256, JPEG lossless (process 14 SV1) by dcmtk
    cr = g.base(g.CR, "cr/0", "cr/study", "cr/series", "CR", "20231201", "A2023120144",
                "XR CHEST 2 VIEWS", "PA", 1, 1)
    g.patient(cr, "SMITH^JOHN", "MRN-200871", "19550228", "M")
    cr.BodyPartExamined = "CHEST"
    cr.ViewPosition = "PA"
    y, x = np.mgrid[0:320, 0:256]
    g.mono(cr, ((x * 7 + y * 5) % 4096).astype(np.uint16), 12, False, "MONOCHROME1")
    g.to_file(cr, out("tmp_cr.dcm"))
    dcmtk("dcmcjpeg", out("tmp_cr.dcm"), out("cr_jpeg_lossless_monochrome1.dcm"))

    # Secondary capture, 8-bit RGB, JPEG baseline by dcmtk
    sc = g.base(g.SC, "sc/0", "cr/study", "sc/series", "OT", "20231201", "A2023120144",
                "XR CHEST 2 VIEWS", "KEY IMAGES", 99, 1)
    g.patient(sc, "SMITH^JOHN", "MRN-200871", "19550228", "M")
    sc.ConversionType = "WSD"
    y, x = np.mgrid[0:240, 0:320]
    rgb = np.stack([(x * 255 // 319), (y * 255 // 239), np.full_like(x, 128)], axis=-1).astype(np.uint8)
    sc.SamplesPerPixel = 3
    sc.PhotometricInterpretation = "RGB"
    sc.PlanarConfiguration = 0
    sc.Rows, sc.Columns = 240, 320
    sc.BitsAllocated = sc.BitsStored = 8
    sc.HighBit = 7
    sc.PixelRepresentation = 0
    sc.PixelData = rgb.tobytes()
    g.to_file(sc, out("tmp_sc.dcm"))
    dcmtk("dcmcjpeg", "+eb", out("tmp_sc.dcm"), out("sc_rgb_jpeg_baseline.dcm"))

    # Ultrasound multi-frame RGB, 4 frames of 120x160, explicit VR little endian
    us = g.base(g.US_MF, "us/0", "us/study", "us/series", "US", "20250302", "A2025030219",
                "US ABDOMEN COMPLETE", "LIVER CINE", 1, 1)
    g.patient(us, "GARCIA^MARIA^L", "MRN-300552", "19901107", "F")
    frames = np.zeros((4, 120, 160, 3), dtype=np.uint8)
    for f in range(4):
        frames[f, :, :, 0] = (np.arange(160) + 20 * f) % 256
        frames[f, :, :, 1] = 60
        frames[f, 30 + 10 * f:60 + 10 * f, 40:100, 2] = 250
    us.SamplesPerPixel = 3
    us.PhotometricInterpretation = "RGB"
    us.PlanarConfiguration = 0
    us.NumberOfFrames = 4
    us.FrameTime = 33.3
    us.Rows, us.Columns = 120, 160
    us.BitsAllocated = us.BitsStored = 8
    us.HighBit = 7
    us.PixelRepresentation = 0
    us.PixelData = frames.tobytes()
    g.to_file(us, out("us_rgb_multiframe.dcm"))

    for name in os.listdir(HERE):
        if name.startswith("tmp_"):
            os.remove(out(name))


if __name__ == "__main__":
    main()
