//! De-identification of DICOM objects (PS3.15 Annex E). Work in progress.
