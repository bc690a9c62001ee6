//! Matching scheduled procedure steps (PS3.4 K.6.1.2.2): the keys a modality worklist query
//! may carry, each a [`Matcher`] as in C-FIND, tested against an [`Order`]. Shared by the
//! worklist SCP and the HTTP worklist.

use crate::orders::{Order, Orders};
use crate::query::{MatchOptions, Matcher, MatcherError};
use crate::StorageError;

/// One worklist query. Every key is universal (matches anything) unless set.
#[derive(Debug, Clone)]
pub struct WorklistQuery {
    pub modality: Matcher,
    pub station_ae_title: Matcher,
    pub station_name: Matcher,
    /// Scheduled Procedure Step Start Date (DA): single value or range.
    pub start_date: Matcher,
    /// Scheduled Procedure Step Start Time (TM): single value or range.
    pub start_time: Matcher,
    pub performing_physician: Matcher,
    pub step_id: Matcher,
    pub patient_name: Matcher,
    pub patient_id: Matcher,
    pub issuer_of_patient_id: Matcher,
    pub accession_number: Matcher,
    pub requested_procedure_id: Matcher,
    pub study_instance_uid: Matcher,
    pub options: MatchOptions,
}

impl Default for WorklistQuery {
    fn default() -> Self {
        WorklistQuery {
            modality: Matcher::Universal,
            station_ae_title: Matcher::Universal,
            station_name: Matcher::Universal,
            start_date: Matcher::Universal,
            start_time: Matcher::Universal,
            performing_physician: Matcher::Universal,
            step_id: Matcher::Universal,
            patient_name: Matcher::Universal,
            patient_id: Matcher::Universal,
            issuer_of_patient_id: Matcher::Universal,
            accession_number: Matcher::Universal,
            requested_procedure_id: Matcher::Universal,
            study_instance_uid: Matcher::Universal,
            options: MatchOptions::default(),
        }
    }
}

/// A key's matcher from its value, for the VR the standard gives the key.
pub fn matcher(vr: &str, value: &str) -> Result<Matcher, MatcherError> {
    Matcher::parse(vr, value)
}

impl WorklistQuery {
    /// The start-date bounds (YYYYMMDD, inclusive) the worklist key range can be cut to.
    pub fn date_bounds(&self) -> (Option<String>, Option<String>) {
        match &self.start_date {
            Matcher::Single(d) => (Some(d.clone()), Some(d.clone())),
            Matcher::Range { lower, upper } => (lower.clone(), upper.clone()),
            _ => (None, None),
        }
    }

    /// Does the order's scheduled step match every key?
    pub fn matches(&self, order: &Order) -> bool {
        let o = self.options;
        let one = |m: &Matcher, vr: &str, v: &str| {
            matches!(m, Matcher::Universal) || m.matches(vr, &[v.to_string()], o)
        };
        let s = &order.step;
        one(&self.modality, "CS", &s.modality)
            && one(&self.station_ae_title, "AE", &s.station_ae_title)
            && one(&self.station_name, "SH", &s.station_name)
            && one(&self.start_date, "DA", &s.start_date)
            && one(&self.start_time, "TM", &s.start_time)
            && one(&self.performing_physician, "PN", &s.performing_physician)
            && one(&self.step_id, "SH", &s.id)
            && one(&self.patient_name, "PN", &order.patient.name)
            && one(&self.patient_id, "LO", &order.patient.id)
            && one(&self.issuer_of_patient_id, "LO", &order.patient.issuer)
            && one(&self.accession_number, "SH", &order.accession_number)
            && one(
                &self.requested_procedure_id,
                "SH",
                &order.requested_procedure_id,
            )
            && one(&self.study_instance_uid, "UI", &order.study_instance_uid)
    }

    /// The active orders matching this query, in scheduled-start order, handed to `on_match`
    /// until it returns false. Reads only the worklist entries of the requested dates.
    pub fn run(
        &self,
        orders: &dyn Orders,
        on_match: &mut dyn FnMut(Order) -> bool,
    ) -> Result<(), StorageError> {
        // One accession number names one order: read it instead of the worklist.
        if let Matcher::Single(acc) = &self.accession_number {
            if let Some(order) = orders.order(acc)? {
                if order.status.is_active() && self.matches(&order) {
                    on_match(order);
                }
            }
            return Ok(());
        }
        let (from, to) = self.date_bounds();
        orders.active_orders(from.as_deref(), to.as_deref(), &mut |order| {
            if self.matches(&order) {
                on_match(order)
            } else {
                true
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_c_find_keys_do() {
        let order = crate::orders::tests::sample();
        let mut q = WorklistQuery::default();
        assert!(q.matches(&order));
        q.modality = matcher("CS", "CT").expect("m");
        q.start_date = matcher("DA", "20261201-20261231").expect("m");
        q.patient_name = matcher("PN", "Doe*").expect("m");
        assert!(q.matches(&order));
        q.options.case_insensitive_names = true;
        q.patient_name = matcher("PN", "doe^j*").expect("m");
        assert!(q.matches(&order));
        q.start_time = matcher("TM", "1000-").expect("m");
        assert!(!q.matches(&order), "scheduled 09:30");
        q.start_time = Matcher::Universal;
        q.modality = matcher("CS", "MR").expect("m");
        assert!(!q.matches(&order));
        assert_eq!(
            WorklistQuery {
                start_date: matcher("DA", "20261205").expect("m"),
                ..Default::default()
            }
            .date_bounds(),
            (Some("20261205".into()), Some("20261205".into()))
        );
    }
}

#[cfg(all(test, feature = "rocksdb"))]
mod lookup_tests {
    use super::*;
    use crate::index::RocksIndex;
    use crate::order_intake::{receive, Intent};

    #[test]
    fn an_accession_number_reads_its_order_only_while_active() {
        let dir = tempfile::tempdir().expect("tmp");
        let index = RocksIndex::open(dir.path()).expect("open");
        for acc in ["A1", "A2"] {
            let mut o = crate::orders::tests::sample();
            o.accession_number = acc.into();
            receive(&index, o, Intent::Place, 1).expect("place");
        }
        let mut cancel = crate::orders::tests::sample();
        cancel.accession_number = "A2".into();
        receive(&index, cancel, Intent::Cancel, 2).expect("cancel");
        let found = |acc: &str, modality: &str| {
            let q = WorklistQuery {
                accession_number: matcher("SH", acc).expect("m"),
                modality: matcher("CS", modality).expect("m"),
                ..Default::default()
            };
            let mut out = Vec::new();
            q.run(&index, &mut |o| {
                out.push(o.accession_number);
                true
            })
            .expect("run");
            out
        };
        assert_eq!(found("A1", ""), ["A1"]);
        assert!(found("A1", "MR").is_empty(), "other keys still apply");
        assert!(found("A2", "").is_empty(), "cancelled");
        assert!(found("A9", "").is_empty());
    }
}
