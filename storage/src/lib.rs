//! Durable side of the PACS: the blob store (one DICOM Part 10 file per instance), the
//! RocksDB study index, and the single ingest path used by C-STORE, STOW-RS and `pacs import`.
//!
//! Nothing here knows about DIMSE or HTTP; the index and the blob store sit behind the
//! [`Index`] and [`BlobStore`] traits so either can move off this machine later.

// Without a backend (the fuzz build) the backend-neutral write rules and key encodings
// have no caller; they are not dead in any build that stores.
#![cfg_attr(not(feature = "rocksdb"), allow(dead_code))]

pub mod attrs;
pub mod audit;
pub mod blob;
pub mod blob_crypto;
pub mod blob_mem;
#[cfg(feature = "s3")]
pub mod blob_s3;
pub mod commitment;
pub mod corrections;
pub mod error;
pub mod events;
pub mod index;
pub mod ingest;
pub mod integrity;
pub mod j2k;
pub mod jpeg;
pub mod key_check;
pub mod lease;
pub mod lengths;
pub mod mpps;
pub mod order_intake;
pub mod orders;
pub mod part10;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod pseudonyms;
pub mod query;
pub mod receiver;
pub mod records;
pub mod rejection;
pub mod rejection_admin;
mod store;
pub mod transcode;
pub mod un_vr;
pub mod worklist;

pub use blob::{BlobKey, BlobStore, FsBlobStore, StagedBlob};
pub use error::{IngestError, StorageError};
pub use events::{Delivery, DeliveryState, Event, EventKind, Flag, Flags, Outbox, Severity};
pub use index::codec::CodecError;
#[cfg(feature = "rocksdb")]
pub use index::RocksIndex;
pub use index::{Index, SecondaryKey, Statistics};
pub use ingest::{
    error_chain, DuplicatePolicy, Expected, IngestOutcome, IngestSource, Ingested, Ingestor,
};
pub use orders::{Order, OrderChange, OrderError, OrderStatus, Orders};
pub use receiver::{ReceiveError, Receiver};
pub use records::{AttrValue, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
pub use store::{IndexSettings, Store, StoreOptions};
