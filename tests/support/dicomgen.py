"""Synthetic but realistic-looking DICOM instances for samples, tests and benchmarks.

Deterministic: the same arguments give the same UIDs and pixels, so generated files can be
regenerated and compared. UIDs are 2.25 UUID-derived from a seed string.
"""
import hashlib
import uuid

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
CR = "1.2.840.10008.5.1.4.1.1.1"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
US_MF = "1.2.840.10008.5.1.4.1.1.3.1"
SC = "1.2.840.10008.5.1.4.1.1.7"


def uid(seed: str) -> str:
    """A stable 2.25 UID from a seed string."""
    return "2.25." + str(uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16]).int)


def patient(ds: Dataset, name: str, pid: str, birth: str, sex: str) -> None:
    ds.PatientName = name
    ds.PatientID = pid
    ds.IssuerOfPatientID = "HOSP-A"
    ds.PatientBirthDate = birth
    ds.PatientSex = sex


def base(sop_class: str, sop_seed: str, study_seed: str, series_seed: str, modality: str,
         study_date: str, accession: str, study_desc: str, series_desc: str,
         series_number: int, instance_number: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(sop_seed)
    ds.StudyInstanceUID = uid(study_seed)
    ds.SeriesInstanceUID = uid(series_seed)
    ds.StudyDate = study_date
    ds.StudyTime = "083015"
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.ContentTime = "083112"
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.Manufacturer = "PACS-RS Synthetic"
    ds.InstitutionName = "Saint Example General Hospital"
    ds.ReferringPhysicianName = "HOUSE^GREGORY^^DR"
    ds.StudyDescription = study_desc
    ds.SeriesDescription = series_desc
    ds.StudyID = accession[-6:]
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    return ds


def mono(ds: Dataset, pixels: np.ndarray, bits_stored: int, signed: bool, photometric="MONOCHROME2") -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.BitsAllocated = 16 if pixels.dtype.itemsize == 2 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.tobytes()


def code(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item (PS3.3 8.8)."""
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def ct_pixels(rows: int, cols: int, seed: int) -> np.ndarray:
    """A phantom: air around a water disc with a bone ring and some noise, in HU + 1024 offset removed."""
    y, x = np.mgrid[0:rows, 0:cols]
    r = np.hypot(y - rows / 2, x - cols / 2) / (min(rows, cols) / 2)
    img = np.full((rows, cols), -1000, dtype=np.int16)
    img[r < 0.85] = 40
    img[(r > 0.75) & (r < 0.85)] = 900
    rng = np.random.default_rng(seed)
    img = img + rng.integers(-20, 20, size=img.shape, dtype=np.int16)
    return img.astype(np.int16)


def ct_instance(study: int, series: int, index: int, rows: int = 512, cols: int = 512,
                patient_no: int = 0) -> Dataset:
    key = f"ct/{patient_no}/{study}/{series}"
    ds = base(CT, f"{key}/{index}", f"ct/{patient_no}/{study}", key, "CT", "20241105",
              f"ACC{patient_no:03d}{study:04d}", "CT CHEST WITH CONTRAST", "AXIAL 1.25MM",
              series + 1, index + 1)
    patient(ds, f"TEST^PATIENT{patient_no:03d}", f"PAT{patient_no:05d}", "19700101", "O")
    ds.BodyPartExamined = "CHEST"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.SliceThickness = 1.25
    ds.ImagePositionPatient = [-250.0, -250.0, -1.25 * index]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.976, 0.976]
    mono(ds, ct_pixels(rows, cols, index), 16, True)
    return ds


def to_file(ds: Dataset, path: str, transfer_syntax: str = ExplicitVRLittleEndian) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True, implicit_vr=(transfer_syntax == ImplicitVRLittleEndian),
               little_endian=True)
