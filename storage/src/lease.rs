//! What nodes of one site share beyond the index: secrets every node must hold alike (the
//! key share and research links are signed with), and jobs that must run on one node at a
//! time (a worker's deliveries, the timed purge, late
//! storage commitment reports). The embedded index has one node, which always holds every
//! lease; on PostgreSQL a lease is a session advisory lock (see `pg::leases`), released when
//! its node dies, so another node takes the job over within seconds.

use crate::error::StorageError;

/// Ownership of one job, for as long as [`Lease::held`] says so.
pub trait Lease: Send + Sync {
    /// False once ownership may have passed to another node: the job must stop.
    fn held(&self) -> bool;
}

pub trait Leases: Send + Sync {
    /// Take `job` if no other node holds it; None when one does.
    fn try_acquire(&self, job: &str) -> Result<Option<Box<dyn Lease>>, StorageError>;
}

/// One node, every job its own.
#[derive(Debug, Default)]
pub struct LocalLeases;

struct LocalLease;

impl Lease for LocalLease {
    fn held(&self) -> bool {
        true
    }
}

impl Leases for LocalLeases {
    fn try_acquire(&self, _job: &str) -> Result<Option<Box<dyn Lease>>, StorageError> {
        Ok(Some(Box::new(LocalLease)))
    }
}

/// Site-wide secrets: what one node signs, every node must check.
pub trait SharedSecrets: Send + Sync {
    /// The secret `name` of the whole site, made `candidate` by the first node to ask; None
    /// when each node keeps its own (the embedded index: one node).
    fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
}

impl SharedSecrets for LocalLeases {
    fn shared_secret(
        &self,
        _name: &str,
        _candidate: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }
}
