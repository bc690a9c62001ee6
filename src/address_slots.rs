//! Places for connections, capped in all and per source address: DICOM connections still
//! negotiating, and HTTP connections. A place is held for as long as its [`AddressSlot`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why no place was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Every place is taken.
    InAll,
    /// This address holds its share.
    ForAddress,
}

pub struct AddressSlots {
    max: usize,
    max_per_address: usize,
    all: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressSlots {
    pub fn new(max: usize, max_per_address: usize) -> Arc<AddressSlots> {
        Arc::new(AddressSlots {
            max,
            max_per_address,
            all: Arc::new(Semaphore::new(max)),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Result<AddressSlot, NoSlot> {
        let mut per = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = per.get(&ip).copied().unwrap_or(0);
        if n >= self.max_per_address {
            return Err(NoSlot::ForAddress);
        }
        let permit = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| NoSlot::InAll)?;
        per.insert(ip, n + 1);
        Ok(AddressSlot {
            slots: self.clone(),
            ip,
            _permit: permit,
        })
    }

    /// Places taken now.
    pub fn in_use(&self) -> usize {
        self.max - self.all.available_permits()
    }
}

/// One place; dropping it frees the place.
pub struct AddressSlot {
    slots: Arc<AddressSlots>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut per = self
            .slots
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_in_all_and_per_address() {
        let slots = AddressSlots::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = slots.take(a).expect("a1");
        let _a2 = slots.take(a).expect("a2");
        assert_eq!(slots.take(a).err(), Some(NoSlot::ForAddress));
        let _b1 = slots.take(b).expect("b1");
        assert_eq!(slots.take(b).err(), Some(NoSlot::InAll));
        assert_eq!(slots.in_use(), 3);
        drop(a1);
        let b2 = slots.take(b).expect("a freed place is reusable");
        drop((b2, _a2, _b1));
        assert_eq!(slots.in_use(), 0);
        assert!(slots.per_address.lock().expect("lock").is_empty());
    }
}
