"""Write an IHE IOCM rejection note: a Key Object Selection titled with a rejection code
(CID 7011) whose Current Requested Procedure Evidence Sequence names the given instances.

usage: make_rejection.py OUT.dcm CODE FILE... [--unknown UID] [--study-of-note UID]
       [--claim-study UID]

The note goes into the study (and patient) of the first file, in a series of its own.
--unknown adds a reference to an instance no file has; --claim-study files every reference
under that study UID instead of the instance's own (a note that contradicts the archive).
"""
import argparse
import os
import sys
from collections import OrderedDict

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

sys.path.insert(0, os.path.dirname(__file__))
import dicomgen  # noqa: E402

KOS = "1.2.840.10008.5.1.4.1.1.88.59"
MEANINGS = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("code")
    p.add_argument("files", nargs="+")
    p.add_argument("--unknown")
    p.add_argument("--claim-study")
    a = p.parse_args()

    refs = OrderedDict()  # study -> series -> [(class, instance)]
    first = None
    for f in a.files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        first = first or ds
        study = a.claim_study or str(ds.StudyInstanceUID)
        refs.setdefault(study, OrderedDict()).setdefault(str(ds.SeriesInstanceUID), []).append(
            (str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    if a.unknown:
        study = next(iter(refs))
        series = next(iter(refs[study]))
        refs[study][series].append((dicomgen.CT, a.unknown))

    note = Dataset()
    note.SpecificCharacterSet = "ISO_IR 100"
    note.SOPClassUID = KOS
    note.SOPInstanceUID = dicomgen.uid("rejection/" + a.out)
    note.StudyInstanceUID = first.StudyInstanceUID
    note.SeriesInstanceUID = dicomgen.uid("rejection-series/" + a.out)
    for kw in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
               "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID"):
        if kw in first:
            setattr(note, kw, first.data_element(kw).value)
    note.Modality = "KO"
    note.SeriesNumber = 999
    note.InstanceNumber = 1
    note.ContentDate = "20260101"
    note.ContentTime = "120000"
    note.ValueType = "CONTAINER"
    note.ContinuityOfContent = "SEPARATE"
    note.ConceptNameCodeSequence = Sequence([dicomgen.code(a.code, "DCM", MEANINGS[a.code])])
    evidence = []
    for study, series_map in refs.items():
        s = Dataset()
        s.StudyInstanceUID = study
        series_items = []
        for series, sops in series_map.items():
            se = Dataset()
            se.SeriesInstanceUID = series
            items = []
            for cls, inst in sops:
                r = Dataset()
                r.ReferencedSOPClassUID = cls
                r.ReferencedSOPInstanceUID = inst
                items.append(r)
            se.ReferencedSOPSequence = Sequence(items)
            series_items.append(se)
        s.ReferencedSeriesSequence = Sequence(series_items)
        evidence.append(s)
    note.CurrentRequestedProcedureEvidenceSequence = Sequence(evidence)
    dicomgen.to_file(note, a.out)
    print(note.SOPInstanceUID)


if __name__ == "__main__":
    main()
