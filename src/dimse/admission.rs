//! Who gets in, and how much a connection may cost before it is an association.
//!
//! A TCP connection is a *handshake* until its A-ASSOCIATE-RQ is read and accepted: it holds a
//! handshake ticket (a cap on handshakes in all, and per source address), its buffered bytes
//! are charged to one shared memory pool, and the whole handshake (TLS included) must finish
//! before the ARTIM deadline (PS3.8 9.1.5). Only an accepted association takes one of the
//! `max_associations` permits, so silent or trickling connections cannot lock modalities out.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJSource,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::pdu_io::MemoryPool;
use crate::address_slots::{AddressSlot, AddressSlots, NoSlot};

/// The limits of [`Admission`].
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    /// Associations at once (accepted ones only).
    pub max_associations: usize,
    /// Connections not yet associated (TLS handshake, A-ASSOCIATE-RQ being read).
    pub max_handshakes: usize,
    /// Of those, from one source address.
    pub max_handshakes_per_peer: usize,
    /// Bytes buffered for all connections not yet associated.
    pub handshake_memory: usize,
    /// Deadline for a connection's whole handshake: TLS and A-ASSOCIATE-RQ.
    pub artim: Duration,
}

/// Why a connection is turned away at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections are negotiating")]
    TooManyHandshakes,
    #[error("too many connections from this address are negotiating")]
    TooManyFromPeer,
    #[error("negotiating connections hold all the memory allowed them")]
    OutOfMemory,
}

/// Shared by the plain and the TLS listener, so every limit counts both.
pub struct Admission {
    pub limits: AdmissionLimits,
    associations: Arc<Semaphore>,
    handshakes: Arc<AddressSlots>,
    memory: MemoryPool,
    /// Refused connections still being closed politely (bounded too).
    closing: Arc<Semaphore>,
    /// Refusals not yet logged, and when the last log line was written: a flood gets one
    /// line per interval, not one per connection.
    refusals: Mutex<(u64, Option<std::time::Instant>)>,
}

/// At most one log line about refused connections per this interval.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Refused connections we wait on to close after the A-ASSOCIATE-RJ; beyond, they are dropped.
const MAX_CLOSING: usize = 256;

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Arc<Admission> {
        Arc::new(Admission {
            associations: Arc::new(Semaphore::new(limits.max_associations)),
            handshakes: AddressSlots::new(limits.max_handshakes, limits.max_handshakes_per_peer),
            memory: MemoryPool::new(limits.handshake_memory),
            closing: Arc::new(Semaphore::new(MAX_CLOSING)),
            refusals: Mutex::new((0, None)),
            limits,
        })
    }

    /// A new connection from `ip` may start its handshake, or is refused without reading.
    pub fn begin(self: &Arc<Self>, ip: IpAddr) -> Result<HandshakeTicket, Refusal> {
        match self.handshakes.take(ip) {
            Ok(slot) => Ok(HandshakeTicket {
                admission: self.clone(),
                _slot: slot,
            }),
            Err(NoSlot::InAll) => Err(Refusal::TooManyHandshakes),
            Err(NoSlot::ForAddress) => Err(Refusal::TooManyFromPeer),
        }
    }

    /// Log a refused connection, rate-limited.
    pub fn log_refusal(&self, peer: std::net::SocketAddr, refusal: Refusal) {
        let now = std::time::Instant::now();
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        r.0 += 1;
        if r.1
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_LOG_INTERVAL)
        {
            tracing::warn!(
                %peer,
                reason = %refusal,
                refused = r.0,
                handshakes = self.handshakes_in_progress(),
                "connection refused (count since the last such line)"
            );
            *r = (0, Some(now));
        }
    }

    /// The pool that handshakes' buffers are charged to.
    pub fn memory(&self) -> &MemoryPool {
        &self.memory
    }

    /// A slot to close a refused connection politely, if there is one.
    pub fn closing_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.closing.clone().try_acquire_owned().ok()
    }

    /// Handshakes in progress (for tests and logs).
    pub fn handshakes_in_progress(&self) -> usize {
        self.handshakes.in_use()
    }
}

/// A connection in its handshake; dropping it ends the handshake.
pub struct HandshakeTicket {
    admission: Arc<Admission>,
    _slot: AddressSlot,
}

impl HandshakeTicket {
    /// The association was accepted: trade the ticket for an association permit, or keep it
    /// when `max_associations` are open (the peer gets a transient rejection).
    pub fn associate(self) -> Result<AssociationPermit, HandshakeTicket> {
        match self.admission.associations.clone().try_acquire_owned() {
            Ok(permit) => Ok(AssociationPermit(permit)),
            Err(_) => Err(self),
        }
    }

    /// A slot to close this connection politely after refusing it (see
    /// [`Admission::closing_slot`]); the ticket itself may then go.
    pub fn closing_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.admission.closing_slot()
    }
}

/// One of the `max_associations`, held for the association's life.
pub struct AssociationPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// A-ASSOCIATE-RJ: transient, local limit exceeded (PS3.8 9.3.4).
pub fn local_limit() -> AssociationRJ {
    AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_associations: 1,
            max_handshakes: 3,
            max_handshakes_per_peer: 2,
            handshake_memory: 1 << 20,
            artim: Duration::from_secs(1),
        }
    }

    #[test]
    fn handshakes_are_capped_in_all_and_per_address() {
        let a = Admission::new(limits());
        let one: IpAddr = [10, 0, 0, 1].into();
        let two: IpAddr = [10, 0, 0, 2].into();
        let t1 = a.begin(one).expect("first");
        let t2 = a.begin(one).expect("second");
        assert_eq!(a.begin(one).err(), Some(Refusal::TooManyFromPeer));
        let t3 = a.begin(two).expect("other address");
        assert_eq!(a.begin(two).err(), Some(Refusal::TooManyHandshakes));
        assert_eq!(a.handshakes_in_progress(), 3);
        drop(t1);
        let t4 = a.begin(one).expect("a slot was freed");
        // Associations are counted apart: the first accepted one takes the only permit.
        let permit = t2.associate().ok().expect("association permit");
        let t3 = t3.associate().err().expect("max_associations is 1");
        assert_eq!(
            a.handshakes_in_progress(),
            2,
            "a refused ticket still counts"
        );
        drop((permit, t3));
        assert!(t4.associate().is_ok());
        assert_eq!(a.handshakes_in_progress(), 0);
    }
}
