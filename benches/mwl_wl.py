"""Write the orders that benches/mwl_populate.rs placed (its JSON lines dump, one order as the
intake stored it per line) as Orthanc worklist files: one Part 10 `.wl` file per order, with
the patient, requested procedure and scheduled procedure step attributes the archive's worklist
SCP answers with, in the order's character set.

usage: mwl_wl.py ORDERS_JSONL WL_DIR
"""

import json
import os
import sys

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

# dcmtk's worklist "SOP class" for .wl files (what dump2dcm files carry).
WORKLIST_FILE_CLASS = "1.2.276.0.7230010.3.1.0.1"


def item(order: dict) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = order["charset"]
    ds.AccessionNumber = order["accession_number"]
    ds.ReferringPhysicianName = order.get("referring_physician", "")
    p = order["patient"]
    ds.PatientName = p["name"]
    ds.PatientID = p["id"]
    ds.IssuerOfPatientID = p.get("issuer", "")
    ds.PatientBirthDate = p.get("birth_date", "")
    ds.PatientSex = p.get("sex", "")
    ds.StudyInstanceUID = order["study_instance_uid"]
    ds.RequestingPhysician = order.get("requesting_physician", "")
    ds.RequestedProcedureDescription = order.get("procedure_description", "")
    code = order.get("procedure")
    if code:
        c = Dataset()
        c.CodeValue = code["value"]
        c.CodingSchemeDesignator = code["scheme"]
        c.CodeMeaning = code["meaning"]
        ds.RequestedProcedureCodeSequence = [c]
    ds.RequestedProcedureID = order["requested_procedure_id"]
    ds.RequestedProcedurePriority = order.get("priority", "routine").upper()
    s = order["step"]
    sps = Dataset()
    sps.Modality = s["modality"]
    sps.ScheduledStationAETitle = s.get("station_ae_title", "")
    sps.ScheduledProcedureStepStartDate = s["start_date"]
    sps.ScheduledProcedureStepStartTime = s.get("start_time", "")
    sps.ScheduledPerformingPhysicianName = s.get("performing_physician", "")
    sps.ScheduledProcedureStepDescription = s.get("description", "")
    sps.ScheduledProcedureStepID = s["id"]
    sps.ScheduledProcedureStepStatus = "SCHEDULED"
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    n = 0
    with open(src, encoding="utf-8") as f:
        for line in f:
            order = json.loads(line)
            ds = item(order)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = WORKLIST_FILE_CLASS
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.preamble = b"\0" * 128
            path = os.path.join(out, f"{order['accession_number']}.wl")
            ds.save_as(path, enforce_file_format=True)
            n += 1
    print(f"{n} worklist files in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
