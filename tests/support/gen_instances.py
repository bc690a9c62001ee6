"""Write N synthetic CT instances (Part 10) for load tests and benchmarks.

usage: gen_instances.py OUT_DIR COUNT [--rows R] [--cols C] [--per-series S] [--patients P]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import dicomgen  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("count", type=int)
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--cols", type=int, default=512)
    p.add_argument("--per-series", type=int, default=100)
    p.add_argument("--series-per-study", type=int, default=2)
    p.add_argument("--patients", type=int, default=3)
    p.add_argument("--seed", default="gen")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    template = dicomgen.ct_instance(0, 0, 0, a.rows, a.cols)
    for i in range(a.count):
        series_no = i // a.per_series
        study_no = series_no // a.series_per_study
        patient_no = study_no % a.patients
        key = f"{a.seed}/{patient_no}/{study_no}/{series_no}"
        ds = template.copy()
        ds.SOPInstanceUID = dicomgen.uid(f"{key}/{i}")
        ds.SeriesInstanceUID = dicomgen.uid(key)
        ds.StudyInstanceUID = dicomgen.uid(f"{a.seed}/{patient_no}/{study_no}")
        ds.PatientID = f"PAT{patient_no:05d}"
        ds.PatientName = f"LOAD^PATIENT{patient_no:03d}"
        ds.AccessionNumber = f"L{study_no:07d}"
        ds.SeriesNumber = series_no + 1
        ds.InstanceNumber = i % a.per_series + 1
        dicomgen.to_file(ds, os.path.join(a.out, f"ct{i:06d}.dcm"))


if __name__ == "__main__":
    main()
