"""Write a patient's history for the fetch-priors tests: studies with their date, modality and
body part, two small instances each, all of patient PRIORS1 unless named otherwise.

usage: make_priors.py OUT_DIR NAME:PATIENT:DATE:MODALITY:BODYPART ...
Prints one line per study: NAME STUDY_INSTANCE_UID.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import dicomgen  # noqa: E402


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for spec in sys.argv[2:]:
        name, patient_id, date, modality, body_part = spec.split(":")
        study_uid = dicomgen.uid(f"priors/{name}")
        for i in range(2):
            ds = dicomgen.ct_instance(0, 0, i, 16, 16)
            if modality == "MR":
                ds.SOPClassUID = dicomgen.MR
            ds.SOPInstanceUID = dicomgen.uid(f"priors/{name}/{i}")
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = dicomgen.uid(f"priors/{name}/series")
            ds.PatientID = patient_id
            ds.PatientName = f"PRIOR^{patient_id}"
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
            ds.Modality = modality
            ds.BodyPartExamined = body_part
            ds.AccessionNumber = f"P-{name}"[:16]
            ds.StudyDescription = f"{modality} {body_part}"
            dicomgen.to_file(ds, os.path.join(out, f"{name}-{i}.dcm"))
        print(name, study_uid)


if __name__ == "__main__":
    main()
