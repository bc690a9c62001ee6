//! Modality Performed Procedure Step SCP (PS3.4 F.7): N-CREATE opens a step IN PROGRESS,
//! N-SET updates it until it is COMPLETED or DISCONTINUED. The orders it names (Scheduled
//! Step Attributes Sequence) follow its status, and the outbox announces each new status.

use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use pacs_storage::mpps::{self, MppsError, MppsStatus, PerformedSeries, PerformedStep};
use pacs_storage::orders::Code;

use super::identifier::read_dataset;
use super::{refuse, DataSink, DimseService, ServiceFuture};
use crate::dimse::command::{field, Command};
use crate::dimse::session::Session;
use crate::dimse::status::Status;

/// The MPPS service of the dispatch table (one line each for N-CREATE and N-SET).
pub struct Mpps;

impl DimseService for Mpps {
    fn sink<'a>(
        &'a self,
        _session: &'a mut Session,
        _context_id: u8,
        _command: &'a Command,
    ) -> ServiceFuture<'a, DataSink> {
        Box::pin(async { DataSink::Identifier(Vec::new()) })
    }

    fn serve<'a>(
        &'a self,
        session: &'a mut Session,
        context_id: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> ServiceFuture<'a, ()> {
        Box::pin(async move {
            match data {
                Some(DataSink::Identifier(bytes)) => {
                    serve_mpps(session, context_id, command, &bytes).await
                }
                other => refuse(session, context_id, &command, other.is_some()).await,
            }
        })
    }
}

/// A refusal: the status and its Error Comment.
type Refusal = (Status, String);

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag).map(|e| match e.value() {
        Value::Primitive(p) => p.to_str().trim_matches(['\0', ' ']).to_string(),
        _ => String::new(),
    })
}

fn items(obj: &InMemDicomObject, tag: Tag) -> Option<&[InMemDicomObject]> {
    obj.get(tag).map(|e| e.items().unwrap_or_default())
}

fn joined(date: Option<String>, time: Option<String>) -> Option<String> {
    match (date, time) {
        (None, None) => None,
        (d, t) => Some(format!(
            "{}{}",
            d.unwrap_or_default(),
            t.unwrap_or_default()
        )),
    }
}

fn codes(list: &[InMemDicomObject]) -> Vec<Code> {
    list.iter()
        .map(|i| Code {
            value: text(i, tags::CODE_VALUE).unwrap_or_default(),
            scheme: text(i, tags::CODING_SCHEME_DESIGNATOR).unwrap_or_default(),
            meaning: text(i, tags::CODE_MEANING).unwrap_or_default(),
        })
        .collect()
}

fn series(list: &[InMemDicomObject]) -> Vec<PerformedSeries> {
    list.iter()
        .map(|s| PerformedSeries {
            series_instance_uid: text(s, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
            sop_instance_uids: items(s, tags::REFERENCED_IMAGE_SEQUENCE)
                .unwrap_or_default()
                .iter()
                .filter_map(|i| text(i, tags::REFERENCED_SOP_INSTANCE_UID))
                .collect(),
        })
        .collect()
}

/// The attributes of an N-CREATE or N-SET that this archive keeps; `None` where absent.
struct Reported {
    status: Option<String>,
    accessions: Option<Vec<String>>,
    studies: Option<Vec<String>>,
    patient_id: Option<String>,
    patient_name: Option<String>,
    modality: Option<String>,
    station: Option<String>,
    step_id: Option<String>,
    description: Option<String>,
    start: Option<String>,
    end: Option<String>,
    codes: Option<Vec<Code>>,
    series: Option<Vec<PerformedSeries>>,
}

impl Reported {
    fn read(ds: &InMemDicomObject) -> Reported {
        let scheduled = items(ds, tags::SCHEDULED_STEP_ATTRIBUTES_SEQUENCE);
        let from_scheduled = |tag| {
            scheduled.map(|list| {
                let mut v: Vec<String> = list
                    .iter()
                    .filter_map(|i| text(i, tag))
                    .filter(|t| !t.is_empty())
                    .collect();
                v.dedup();
                v
            })
        };
        Reported {
            status: text(ds, tags::PERFORMED_PROCEDURE_STEP_STATUS),
            accessions: from_scheduled(tags::ACCESSION_NUMBER),
            studies: from_scheduled(tags::STUDY_INSTANCE_UID),
            patient_id: text(ds, tags::PATIENT_ID),
            patient_name: text(ds, tags::PATIENT_NAME),
            modality: text(ds, tags::MODALITY),
            station: text(ds, tags::PERFORMED_STATION_AE_TITLE),
            step_id: text(ds, tags::PERFORMED_PROCEDURE_STEP_ID),
            description: text(ds, tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION),
            start: joined(
                text(ds, tags::PERFORMED_PROCEDURE_STEP_START_DATE),
                text(ds, tags::PERFORMED_PROCEDURE_STEP_START_TIME),
            ),
            end: joined(
                text(ds, tags::PERFORMED_PROCEDURE_STEP_END_DATE),
                text(ds, tags::PERFORMED_PROCEDURE_STEP_END_TIME),
            ),
            codes: items(ds, tags::PROCEDURE_CODE_SEQUENCE).map(codes),
            series: items(ds, tags::PERFORMED_SERIES_SEQUENCE).map(series),
        }
    }

    /// The status this report sets, checked against what the operation allows.
    fn status(&self, allowed: &[MppsStatus]) -> Result<Option<MppsStatus>, Refusal> {
        let Some(text) = &self.status else {
            return Ok(None);
        };
        match MppsStatus::parse(text) {
            Some(s) if allowed.contains(&s) => Ok(Some(s)),
            _ => Err((
                Status::INVALID_ATTRIBUTE_VALUE,
                format!("Performed Procedure Step Status {text:?} is not allowed here"),
            )),
        }
    }

    fn apply(&self, step: &mut PerformedStep) {
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                dst.clone_from(v);
            }
        };
        set(&mut step.patient_id, &self.patient_id);
        set(&mut step.patient_name, &self.patient_name);
        set(&mut step.modality, &self.modality);
        set(&mut step.station_ae_title, &self.station);
        set(&mut step.step_id, &self.step_id);
        set(&mut step.description, &self.description);
        set(&mut step.start, &self.start);
        set(&mut step.end, &self.end);
        if let Some(v) = &self.accessions {
            step.accession_numbers.clone_from(v);
        }
        if let Some(v) = &self.studies {
            step.study_instance_uids.clone_from(v);
        }
        if let Some(v) = &self.codes {
            step.procedure_codes.clone_from(v);
        }
        if let Some(v) = &self.series {
            step.series.clone_from(v);
        }
    }
}

/// N-CREATE: the Type 1 attributes of PS3.4 Table F.7.2-1 that the archive relies on.
fn new_step(uid: String, r: &Reported, calling_ae: &str) -> Result<PerformedStep, Refusal> {
    let status = r.status(&[MppsStatus::InProgress])?.ok_or((
        Status::MISSING_ATTRIBUTE,
        "Performed Procedure Step Status (0040,0252) is required".to_string(),
    ))?;
    if r.accessions.is_none() {
        return Err((
            Status::MISSING_ATTRIBUTE,
            "Scheduled Step Attributes Sequence (0040,0270) is required".into(),
        ));
    }
    if r.start.as_deref().is_none_or(|s| s.len() < 8) {
        return Err((
            Status::MISSING_ATTRIBUTE_VALUE,
            "Performed Procedure Step Start Date (0040,0244) is required".into(),
        ));
    }
    if r.modality.as_deref().is_none_or(str::is_empty) {
        return Err((
            Status::MISSING_ATTRIBUTE_VALUE,
            "Modality (0008,0060) is required".into(),
        ));
    }
    let mut step = PerformedStep {
        sop_instance_uid: uid,
        status,
        accession_numbers: Vec::new(),
        study_instance_uids: Vec::new(),
        patient_id: String::new(),
        patient_name: String::new(),
        modality: String::new(),
        station_ae_title: String::new(),
        step_id: String::new(),
        description: String::new(),
        start: String::new(),
        end: String::new(),
        procedure_codes: Vec::new(),
        series: Vec::new(),
        reported_by: calling_ae.to_string(),
        created_ms: 0,
        updated_ms: 0,
    };
    r.apply(&mut step);
    Ok(step)
}

/// Error Comments hold 64 characters: the standard's phrase rather than the UID.
fn refusal_of(e: MppsError) -> Refusal {
    match e {
        MppsError::Duplicate(_) => (
            Status::DUPLICATE_SOP_INSTANCE,
            "a Performed Procedure Step with this UID exists".into(),
        ),
        MppsError::Unknown(_) => (
            Status::NO_SUCH_SOP_INSTANCE,
            "no Performed Procedure Step with this UID".into(),
        ),
        MppsError::Final(..) => (
            Status::PROCESSING_FAILURE,
            "Performed Procedure Step Object may no longer be updated".into(),
        ),
        e @ MppsError::Contended(_) => (Status::PROCESSING_FAILURE, e.to_string()),
        e @ MppsError::Storage(_) => (Status::OUT_OF_RESOURCES, pacs_storage::error_chain(&e)),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn serve_mpps(session: &mut Session, context_id: u8, mut command: Command, bytes: &[u8]) {
    let Some(transfer_syntax) = session
        .context(context_id)
        .map(|c| c.transfer_syntax.clone())
    else {
        return;
    };
    let creating = command.field == field::N_CREATE_RQ;
    if creating && command.affected_sop_instance_uid.is_none() {
        // The SCU may leave the UID to the SCP, which returns it in the response.
        command.affected_sop_instance_uid = Some(pacs_storage::order_intake::new_study_uid());
    }
    let outcome = match read_dataset(bytes, &transfer_syntax) {
        Err(e) => Err((e.status(), e.to_string())),
        Ok(ds) => {
            let reported = Reported::read(&ds);
            session.audit.mpps(reported.patient_id.clone());
            let uid = command
                .affected_sop_instance_uid
                .clone()
                .unwrap_or_default();
            let (store, ae) = (session.store.clone(), session.negotiated.calling_ae.clone());
            let work = move || -> Result<PerformedStep, Refusal> {
                let now = now_ms();
                let (steps, orders) = (store.performed.as_ref(), store.orders.as_ref());
                if creating {
                    let step = new_step(uid, &reported, &ae)?;
                    mpps::create(steps, orders, step, now).map_err(refusal_of)
                } else {
                    let allowed = [
                        MppsStatus::InProgress,
                        MppsStatus::Completed,
                        MppsStatus::Discontinued,
                    ];
                    let status = reported.status(&allowed)?;
                    let change = |s: &mut PerformedStep| {
                        reported.apply(s);
                        if let Some(st) = status {
                            s.status = st;
                        }
                    };
                    mpps::update(steps, orders, &uid, &change, now).map_err(refusal_of)
                }
            };
            match tokio::task::spawn_blocking(work).await {
                Ok(r) => r,
                Err(e) => Err((Status::PROCESSING_FAILURE, e.to_string())),
            }
        }
    };
    match outcome {
        Ok(step) => {
            tracing::info!(mpps = %step.sop_instance_uid, status = step.status.dicom(),
                accessions = ?step.accession_numbers, "performed procedure step recorded");
            session
                .respond(context_id, &command, Status::SUCCESS, None)
                .await;
        }
        Err((status, comment)) => {
            tracing::warn!(status = %status, comment = %comment, "MPPS request refused");
            session
                .respond(context_id, &command, status, Some(comment))
                .await;
        }
    }
}
