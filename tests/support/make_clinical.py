"""Three small studies carrying what the worker modules react to, for the integration tests.

  A  CT  ALLERGIC^ANNA  accession ACC-A1, ProcedureCodeSequence, iodinated contrast (OMNIPAQUE,
         IODINE, 80 mL IV), Allergies "Iodinated contrast - hives"   -> charge, administration,
                                                                         allergy alert
  B  MR  GADO^GREG      no accession, no procedure code, gadolinium (GADAVIST 7.5 mL)
                                                                      -> billing hold, administration
  C  PT  PET^PAUL       accession ACC-C3, RequestedProcedureCodeSequence, F-18 FDG 370 MBq
                                                                      -> charge, administration

usage: make_clinical.py OUTDIR   (prints a JSON summary of the UIDs)
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
MR = "1.2.840.10008.5.1.4.1.1.4"
PT = "1.2.840.10008.5.1.4.1.1.128"


def image(ds):
    mono(ds, (np.arange(64, dtype=np.uint16).reshape(8, 8) * 10), 12, False)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    summary = {}

    a = base(CT, "clin-a-1", "clin-a", "clin-a-s1", "CT", "20241105", "ACC-A1",
             "CT CHEST WITH CONTRAST", "AXIAL", 1, 1)
    patient(a, "ALLERGIC^ANNA", "ALLERGY1", "19700101", "F")
    a.Allergies = "Iodinated contrast - hives"
    a.ProcedureCodeSequence = Sequence([code("71260", "CPT4", "CT chest with contrast")])
    a.PerformingPhysicianName = "TECH^TOM"
    a.ContrastBolusAgent = "OMNIPAQUE 350"
    a.ContrastBolusIngredient = "IODINE"
    a.ContrastBolusVolume = "80"
    a.ContrastBolusRoute = "IV"
    image(a)
    to_file(a, os.path.join(out, "a_ct_contrast_allergy.dcm"))
    summary["a"] = str(a.StudyInstanceUID)

    b = base(MR, "clin-b-1", "clin-b", "clin-b-s1", "MR", "20241106", "", "MR BRAIN", "T1 POST", 1, 1)
    patient(b, "GADO^GREG", "NOACC2", "19800202", "M")
    b.ContrastBolusAgent = "GADAVIST"
    b.ContrastBolusIngredient = "GADOLINIUM"
    b.ContrastBolusVolume = "7.5"
    image(b)
    to_file(b, os.path.join(out, "b_mr_gadolinium_no_accession.dcm"))
    summary["b"] = str(b.StudyInstanceUID)

    c = base(PT, "clin-c-1", "clin-c", "clin-c-s1", "PT", "20241107", "ACC-C3", "PET WHOLE BODY",
             "WB", 1, 1)
    patient(c, "PET^PAUL", "PET3", "19900303", "M")
    c.RequestedProcedureCodeSequence = Sequence([code("78815", "CPT4", "PET/CT whole body")])
    rp = Dataset()
    rp.Radiopharmaceutical = "Fluorodeoxyglucose"
    rp.RadionuclideTotalDose = "370000000"
    rp.RadiopharmaceuticalRoute = "Intravenous"
    rp.RadiopharmaceuticalStartDateTime = "20241107081500"
    c.RadiopharmaceuticalInformationSequence = Sequence([rp])
    image(c)
    to_file(c, os.path.join(out, "c_pt_fdg.dcm"))
    summary["c"] = str(c.StudyInstanceUID)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
