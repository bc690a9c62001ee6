//! Integration tests: the real `pacs` binary on ephemeral loopback ports, a temp data dir,
//! driven by real peers (dcmtk, pynetdicom, curl). One test binary, so it is linked once.

mod support;

mod access;
mod bad_input;
mod blobs_s3;
mod commitment;
mod corrections;
mod dicomweb;
mod echo;
mod encryption;
mod events;
mod export;
mod find;
mod hardening;
mod hardening_access;
mod hl7;
mod import;
mod lifecycle;
mod logout;
mod mpps;
mod odd_files;
mod orders_fhir;
mod orders_to_worklist;
mod patient_feed;
mod pixels;
mod rejection;
mod remote;
mod retrieve;
mod routing;
mod scale_out;
mod security;
mod shutdown;
mod store;
mod tamper;
mod tls;
mod user_identity;
mod wado_uri;
mod workers;
mod worklist;
