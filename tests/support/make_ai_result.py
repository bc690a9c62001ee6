"""Write what an AI service returns for a de-identified instance it was sent: a Basic Text SR
in the same (pseudonymous) study and patient, a series of its own, whose evidence sequence
references the instance it read.

usage: make_ai_result.py RECEIVED.dcm OUT.dcm   (prints the SR's SOP Instance UID)
"""
import sys

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

import os
sys.path.insert(0, os.path.dirname(__file__))
import dicomgen  # noqa: E402


def main() -> None:
    src = pydicom.dcmread(sys.argv[1], stop_before_pixels=True)
    sr = Dataset()
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.SOPInstanceUID = generate_uid()
    sr.StudyInstanceUID = src.StudyInstanceUID
    sr.SeriesInstanceUID = generate_uid()
    for kw in ("PatientName", "PatientID", "PatientIdentityRemoved", "DeidentificationMethod",
               "StudyDate", "AccessionNumber"):
        if kw in src:
            setattr(sr, kw, src.data_element(kw).value)
    sr.Modality = "SR"
    sr.SeriesNumber = 900
    sr.InstanceNumber = 1
    sr.ValueType = "CONTAINER"
    sr.ContinuityOfContent = "SEPARATE"
    sr.CompletionFlag = "COMPLETE"
    sr.VerificationFlag = "UNVERIFIED"
    sr.ConceptNameCodeSequence = Sequence([dicomgen.code("18748-4", "LN", "Diagnostic imaging report")])
    ref = Dataset()
    ref.ReferencedSOPClassUID = src.SOPClassUID
    ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = src.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([ref])
    study = Dataset()
    study.StudyInstanceUID = src.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    sr.CurrentRequestedProcedureEvidenceSequence = Sequence([study])
    dicomgen.to_file(sr, sys.argv[2])
    print(sr.SOPInstanceUID)


if __name__ == "__main__":
    main()
