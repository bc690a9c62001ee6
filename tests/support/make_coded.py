"""Two studies whose agents are coded rather than named plainly, for the worker tests.

  D  CT  CODED^DORA  brand-name contrast "VISIPAQUE 320" with the Contrast/Bolus Agent
         Sequence (0018,0012) coded as Iodixanol (SCT 353962003), route coded IV
         (SCT 47625008), start time 10:15:00, TimezoneOffsetFromUTC +0100, Allergies
         "contrast dye", procedure code CPT4 71260, series 2 of the study in a second file
                                            -> coded administration at 10:15+01:00, allergy alert
  E  PT  TRACER^EVA  Radiopharmaceutical Information Sequence (0054,0016) with the
         Radiopharmaceutical Code Sequence (0054,0304) FDG (SCT 35321007), Radionuclide Code
         Sequence 18F (SCT 77004003), start DT 20241108091000 without an offset,
         TimezoneOffsetFromUTC -0500, no allergy
                                            -> coded administration at 09:10-05:00, no alert

usage: make_coded.py OUTDIR   (prints a JSON summary of the UIDs and file names)
"""
import json
import os
import sys

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dicomgen import base, code, mono, patient, to_file  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
PT = "1.2.840.10008.5.1.4.1.1.128"


def image(ds):
    mono(ds, (np.arange(64, dtype=np.uint16).reshape(8, 8) * 7), 12, False)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    summary = {}

    def ct(series_seed, series_number, sop_seed):
        d = base(CT, sop_seed, "coded-d", series_seed, "CT", "20241105", "ACC-D4",
                 "CT ABDOMEN WITH CONTRAST", "PORTAL VENOUS", series_number, 1)
        patient(d, "CODED^DORA", "CODED4", "19750505", "F")
        d.StudyTime = "101000"
        d.SeriesTime = "101700"
        d.TimezoneOffsetFromUTC = "+0100"
        d.Allergies = "contrast dye"
        d.ProcedureCodeSequence = Sequence([code("71260", "CPT4", "CT chest with contrast")])
        d.ContrastBolusAgent = "VISIPAQUE 320"
        d.ContrastBolusAgentSequence = Sequence([code("353962003", "SCT", "Iodixanol")])
        d.ContrastBolusAdministrationRouteSequence = Sequence(
            [code("47625008", "SCT", "Intravenous route")])
        d.ContrastBolusVolume = "100"
        d.ContrastBolusStartTime = "101500"
        image(d)
        return d

    d1 = ct("coded-d-s1", 1, "coded-d-1")
    to_file(d1, os.path.join(out, "d_ct_visipaque_1.dcm"))
    d2 = ct("coded-d-s2", 2, "coded-d-2")
    to_file(d2, os.path.join(out, "d_ct_visipaque_2.dcm"))
    summary["d"] = str(d1.StudyInstanceUID)

    e = base(PT, "coded-e-1", "coded-e", "coded-e-s1", "PT", "20241108", "ACC-E5",
             "PET FDG WHOLE BODY", "WB", 1, 1)
    patient(e, "TRACER^EVA", "TRACER5", "19850808", "F")
    e.StudyTime = "100000"
    e.TimezoneOffsetFromUTC = "-0500"
    e.RequestedProcedureCodeSequence = Sequence([code("78815", "CPT4", "PET/CT whole body")])
    rp = Dataset()
    rp.RadiopharmaceuticalCodeSequence = Sequence(
        [code("35321007", "SCT", "Fluorodeoxyglucose F^18^")])
    rp.RadionuclideCodeSequence = Sequence([code("77004003", "SCT", "^18^Fluorine")])
    rp.AdministrationRouteCodeSequence = Sequence([code("47625008", "SCT", "Intravenous route")])
    rp.RadionuclideTotalDose = "350000000"
    rp.RadiopharmaceuticalStartDateTime = "20241108091000"
    e.RadiopharmaceuticalInformationSequence = Sequence([rp])
    image(e)
    to_file(e, os.path.join(out, "e_pt_fdg_coded.dcm"))
    summary["e"] = str(e.StudyInstanceUID)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
