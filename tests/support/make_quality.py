"""Studies the quality analyzers must flag, for the integration tests.

  GAP    CT series of 5 slices at z = 0, 1, 2, 4, 5 mm (one missing), one of them blank
         (every pixel equal) and one saturated (most pixels at 4095)
  CLEAN  CT series of 4 slices at 0..3 mm, normal pixels (no flags)

usage: make_quality.py OUTDIR   (prints {"gap": STUDY_UID, "clean": STUDY_UID})
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dicomgen import base, mono, patient, to_file  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"


def slice_(study, z, n, pixels, out):
    ds = base(CT, f"q-{study}-{n}", f"q-{study}", f"q-{study}-s", "CT", "20241108", f"ACC-Q-{study}",
              "CT ABDOMEN", "AXIAL", 1, n)
    patient(ds, f"QUALITY^{study.upper()}", f"Q-{study}", "19750505", "O")
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = "1"
    ds.PixelSpacing = [0.5, 0.5]
    mono(ds, pixels, 12, False)
    to_file(ds, os.path.join(out, f"{study}_{n}.dcm"))
    return str(ds.StudyInstanceUID)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    normal = lambda: rng.integers(0, 2000, (16, 16)).astype(np.uint16)  # noqa: E731
    blank = np.full((16, 16), 1000, np.uint16)
    saturated = np.full((16, 16), 4095, np.uint16)
    saturated[:4, :4] = 10
    summary = {}
    for n, (z, px) in enumerate([(0, normal()), (1, blank), (2, normal()), (4, saturated), (5, normal())], 1):
        summary["gap"] = slice_("gap", z, n, px, out)
    for n, z in enumerate(range(4), 1):
        summary["clean"] = slice_("clean", z, n, normal(), out)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
