//! A worker's pending deliveries and which of them may start now: in order per study (a
//! study's later deliveries wait while an earlier one is pending or in flight), different
//! studies side by side, at most `limit` in flight at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use pacs_storage::Delivery;

#[derive(Debug, Default)]
pub struct Queue {
    /// Waiting deliveries by sequence number (in memory; the outbox holds the truth).
    pending: BTreeMap<u64, Delivery>,
    /// Study → sequence number of its delivery being attempted.
    in_flight: HashMap<String, u64>,
}

impl Queue {
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queue a delivery (new, loaded at start, or put back by a retry request). One that is
    /// being attempted right now is left alone: its attempt records its outcome.
    pub fn push(&mut self, d: Delivery) -> bool {
        if self.in_flight.get(&d.study_instance_uid) == Some(&d.seq) {
            return false;
        }
        self.pending.insert(d.seq, d);
        true
    }

    /// The deliveries to start now (due, first of their study, nothing of their study in
    /// flight), marked in flight, at most enough to reach `limit` in flight.
    pub fn start(&mut self, now_ms: u64, limit: usize) -> Vec<Delivery> {
        let room = limit.saturating_sub(self.in_flight.len());
        if room == 0 {
            return Vec::new();
        }
        let mut seen: HashSet<&str> = self.in_flight.keys().map(String::as_str).collect();
        let mut due = Vec::new();
        for d in self.pending.values() {
            if due.len() == room {
                break;
            }
            // Whether due or not, the study's first waiting delivery holds its later ones.
            if !seen.insert(d.study_instance_uid.as_str()) {
                continue;
            }
            if d.next_attempt_ms <= now_ms {
                due.push(d.seq);
            }
        }
        let mut out = Vec::with_capacity(due.len());
        for seq in due {
            if let Some(d) = self.pending.remove(&seq) {
                self.in_flight.insert(d.study_instance_uid.clone(), d.seq);
                out.push(d);
            }
        }
        out
    }

    /// An attempt ended: its study is free again; a delivery still pending waits for its
    /// next attempt. `None`: the attempt was cancelled (shutdown), nothing to keep.
    pub fn finish(&mut self, study: &str, after: Option<Delivery>) {
        self.in_flight.remove(study);
        if let Some(d) = after.filter(|d| d.state == pacs_storage::DeliveryState::Pending) {
            self.pending.insert(d.seq, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacs_storage::DeliveryState;

    fn d(seq: u64, study: &str, next: u64) -> Delivery {
        Delivery {
            worker: "ehr".into(),
            seq,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_ms: next,
            last_error: None,
            idempotency_key: format!("ehr-{seq}"),
            study_instance_uid: study.into(),
        }
    }

    fn seqs(v: &[Delivery]) -> Vec<u64> {
        v.iter().map(|d| d.seq).collect()
    }

    #[test]
    fn studies_go_side_by_side_each_in_order() {
        let mut q = Queue::default();
        for x in [d(1, "A", 0), d(2, "B", 0), d(3, "A", 0), d(4, "C", 0)] {
            q.push(x);
        }
        // A's first, B and C start together; A's second waits for A's first.
        let started = q.start(10, 8);
        assert_eq!(seqs(&started), [1, 2, 4]);
        assert!(q.start(10, 8).is_empty());
        // B done: nothing new for B; A still in flight holds seq 3.
        let mut b = started[1].clone();
        b.state = DeliveryState::Delivered;
        q.finish("B", Some(b));
        assert!(q.start(10, 8).is_empty());
        // A's first fails and backs off: it stays first in line, seq 3 still waits.
        let mut a = started[0].clone();
        a.next_attempt_ms = 100;
        q.finish("A", Some(a));
        assert!(q.start(10, 8).is_empty());
        assert_eq!(seqs(&q.start(100, 8)), [1]);
        let mut a = d(1, "A", 0);
        a.state = DeliveryState::Delivered;
        q.finish("A", Some(a));
        assert_eq!(seqs(&q.start(100, 8)), [3]);
    }

    #[test]
    fn at_most_limit_in_flight() {
        let mut q = Queue::default();
        for i in 1..=5 {
            q.push(d(i, &format!("S{i}"), 0));
        }
        assert_eq!(seqs(&q.start(0, 2)), [1, 2]);
        assert!(q.start(0, 2).is_empty());
        q.finish("S1", None);
        assert_eq!(seqs(&q.start(0, 2)), [3]);
        assert_eq!((q.in_flight(), q.pending()), (2, 2));
    }

    #[test]
    fn a_retry_of_a_delivery_in_flight_is_left_to_its_attempt() {
        let mut q = Queue::default();
        q.push(d(1, "A", 0));
        assert_eq!(seqs(&q.start(0, 8)), [1]);
        assert!(!q.push(d(1, "A", 0)));
        assert_eq!(q.pending(), 0);
    }
}
