//! Billing worker: one FHIR ChargeItem per performed procedure (procedure code from
//! ProcedureCodeSequence, else RequestedProcedureCodeSequence), sent as a transaction of
//! conditional updates keyed by accession + code, so a study billed twice is still one charge.
//! When the study's order has performed procedure steps (MPPS), their Procedure Code Sequence
//! is what was done and is charged; a performed code that is not the ordered one holds the
//! charge for review. Charged when both are there, whichever comes last: on StudyStable (unless
//! the order's step is still in progress) and on MppsCompleted (when its images are stored). A study without an accession number or a procedure code is held, with
//! the reason, instead of sent: the denial is caught before the claim goes out. A correction
//! of a study already charged sends the charge again (the conditional update re-keys its
//! patient); a charged study corrected away is held for review.

use dicom_dictionary_std::tags;
use pacs_fhir::coding::{codes, Code};
use pacs_storage::records::first_value;
use pacs_storage::{Event, EventKind, OrderStatus, Store};
use serde_json::{json, Value};

use super::order_link::studies_with_accession;
use super::{study_headers, subject, text, Outgoing, Prepared, Worker, WorkerError};

pub struct BillingWorker {
    /// FHIR base of the billing system.
    pub url: String,
    pub bearer: Option<String>,
}

impl Worker for BillingWorker {
    fn name(&self) -> &str {
        "billing"
    }

    fn wants(&self, event: &Event) -> bool {
        matches!(
            event.kind,
            EventKind::StudyStable | EventKind::MppsCompleted
        ) || event.kind.is_correction()
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        match event.kind {
            EventKind::MppsCompleted => {
                let accession = event.accession_number.as_deref().unwrap_or_default();
                // No images yet: their StudyStable charges them.
                match studies_with_accession(store, accession)?.first() {
                    Some(study) => self.charge(store, study, true),
                    None => Ok(Prepared::Skip),
                }
            }
            kind if kind.is_correction() => self.recharge(event, store),
            _ => self.charge(store, &event.study_instance_uid, false),
        }
    }
}

impl BillingWorker {
    /// After a correction: only a study charged before is charged again.
    fn recharge(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let study = &event.study_instance_uid;
        if store
            .outbox
            .delivered_for_study(self.name(), study)?
            .is_none()
        {
            return Ok(Prepared::Skip);
        }
        if store.index.study(study)?.is_none() {
            return Ok(Prepared::Hold(format!(
                "billing hold for study {study}: charged, then corrected away (its series moved to another study); review the charge"
            )));
        }
        self.charge(store, study, true)
    }

    /// The charge for a stored study; `performed` when the order's step is known to be done.
    fn charge(
        &self,
        store: &Store,
        study_uid: &str,
        performed: bool,
    ) -> Result<Prepared, WorkerError> {
        let Some(study) = store.index.study(study_uid)? else {
            return Ok(Prepared::Skip);
        };
        let a = &study.attributes;
        let accession = first_value(a, "00080050").trim().to_string();
        let headers = study_headers(store, study_uid)?;
        let mut procedures: Vec<Code> = Vec::new();
        let order = match accession.as_str() {
            "" => None,
            acc => store.orders.order(acc)?,
        };
        if let Some(order) = &order {
            // Still being performed: what was done is known once the step completes, and
            // its MppsCompleted charges it then.
            if order.status == OrderStatus::InProgress && !performed {
                return Ok(Prepared::Skip);
            }
            for uid in &order.performed_steps {
                let Some(step) = store.performed.performed_step(uid)? else {
                    continue;
                };
                for c in &step.procedure_codes {
                    let code = Code::new(&c.value, &c.scheme, &c.meaning);
                    if !procedures
                        .iter()
                        .any(|p| p.value == code.value && p.designator == code.designator)
                    {
                        procedures.push(code);
                    }
                }
            }
            if let (Some(ordered), false) = (&order.procedure, procedures.is_empty()) {
                let differs: Vec<&Code> = procedures
                    .iter()
                    .filter(|p| p.value != ordered.value || p.designator != ordered.scheme)
                    .collect();
                if !differs.is_empty() {
                    let performed: Vec<String> = differs
                        .iter()
                        .map(|p| format!("{} ({})", p.value, p.designator))
                        .collect();
                    return Ok(Prepared::Hold(format!(
                        "billing hold for study {study_uid}: performed {} differs from ordered {} ({})",
                        performed.join(", "),
                        ordered.value,
                        ordered.scheme
                    )));
                }
            }
        }
        // Without performed steps, the codes the images carry.
        let performed_known = !procedures.is_empty();
        for h in headers.iter().filter(|_| !performed_known) {
            let mut found = codes(h, tags::PROCEDURE_CODE_SEQUENCE);
            if found.is_empty() {
                found = codes(h, tags::REQUESTED_PROCEDURE_CODE_SEQUENCE);
            }
            for c in found {
                if !procedures
                    .iter()
                    .any(|p| p.value == c.value && p.designator == c.designator)
                {
                    procedures.push(c);
                }
            }
        }
        let mut missing = Vec::new();
        if accession.is_empty() {
            missing.push("no AccessionNumber");
        }
        if procedures.is_empty() {
            missing
                .push("no procedure code (ProcedureCodeSequence / RequestedProcedureCodeSequence)");
        }
        if !missing.is_empty() {
            return Ok(Prepared::Hold(format!(
                "billing hold for study {study_uid}: {}",
                missing.join(", ")
            )));
        }
        let performer = headers
            .iter()
            .find_map(|h| text(h, tags::PERFORMING_PHYSICIAN_NAME));
        let date = first_value(a, "00080020");
        let occurrence = pacs_fhir::datetime::fhir_date(date);
        let entries: Vec<Value> = procedures
            .iter()
            .map(|code| {
                let id = format!("{accession}-{}", code.value);
                let mut charge = json!({
                    "resourceType": "ChargeItem",
                    "identifier": [{"system": "urn:pacs:charge", "value": id}],
                    "status": "billable",
                    "code": code.concept(),
                    "subject": subject(a),
                    "quantity": {"value": 1},
                    "supportingInformation": [{"identifier": {"system": "urn:dicom:uid", "value": format!("urn:oid:{study_uid}")}}],
                    "extension": [
                        {"url": "urn:pacs:accession", "valueString": accession},
                        {"url": "urn:pacs:modalities", "valueString": study.modalities.iter().cloned().collect::<Vec<_>>().join("\\\\")},
                        {"url": "urn:pacs:series-count", "valueInteger": study.num_series},
                        {"url": "urn:pacs:instance-count", "valueInteger": study.num_instances},
                    ],
                });
                if let Some(d) = &occurrence {
                    charge["occurrenceDateTime"] = json!(d);
                }
                if let Some(p) = &performer {
                    charge["performer"] = json!([{"actor": {"display": p}}]);
                }
                json!({
                    "resource": charge,
                    "request": {"method": "PUT", "url": format!("ChargeItem?identifier=urn:pacs:charge%7C{id}")},
                })
            })
            .collect();
        Ok(Prepared::Send(Outgoing::fhir(
            reqwest::Method::POST,
            self.url.trim_end_matches('/').to_string(),
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
            self.bearer.clone(),
        )))
    }
}
