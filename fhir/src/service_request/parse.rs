//! ServiceRequest JSON → [`Order`].

use pacs_storage::orders::{
    Code, Order, OrderPatient, OrderSource, OrderStatus, Priority, ScheduledStep,
};
use serde_json::Value;

use super::{ServiceRequestError as E, MAX_STRING, STATION_AE_EXTENSION, V2_0203};
use crate::coding;

/// An order as the EHR sent it, and whether the resource says to cancel it
/// (status `revoked` or `entered-in-error`).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub order: Order,
    pub cancel: bool,
}

/// Parse a request body.
pub fn parse(body: &[u8]) -> Result<Incoming, E> {
    let v: Value = serde_json::from_slice(body).map_err(E::Json)?;
    parse_value(&v)
}

pub fn parse_value(v: &Value) -> Result<Incoming, E> {
    let obj = v.as_object().ok_or(E::NotAnObject)?;
    check_lengths(v)?;
    match obj.get("resourceType").and_then(Value::as_str) {
        Some("ServiceRequest") => {}
        Some(other) => return Err(E::WrongType(other.to_string())),
        None => return Err(E::Missing("resourceType")),
    }
    let cancel = match str_at(v, "status") {
        "" => return Err(E::Missing("status")),
        "active" | "draft" | "on-hold" => false,
        "revoked" | "entered-in-error" => true,
        other => {
            return Err(E::Invalid {
                field: "status",
                reason: format!(
                    "{other:?} is not one of active, draft, on-hold, revoked, entered-in-error"
                ),
            })
        }
    };
    if str_at(v, "intent").is_empty() {
        return Err(E::Missing("intent"));
    }
    let ids = identifiers(v);
    let accession = ids
        .iter()
        .find(|(t, _, _)| t == "ACSN")
        .or_else(|| ids.first())
        .map(|(_, _, value)| value.clone())
        .ok_or(E::Missing("identifier (accession number, type ACSN)"))?;
    let typed = |code: &str| {
        ids.iter()
            .find(|(t, _, _)| t == code)
            .map(|(_, _, value)| value.clone())
    };
    let patient = subject(v)?;
    let coding0 = v.pointer("/code/coding/0");
    let procedure = coding0.and_then(|c| {
        let value = str_in(c, "code");
        (!value.is_empty()).then(|| Code {
            value: value.to_string(),
            scheme: coding::designator(str_in(c, "system")),
            meaning: str_in(c, "display").to_string(),
        })
    });
    let description = text_or_display(v.get("code"));
    let modality = v
        .pointer("/performerType/coding/0/code")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or(E::Missing("performerType (modality)"))?;
    let (start_date, start_time) = occurrence(v)?;
    let step = ScheduledStep {
        id: String::new(),
        modality: modality.to_string(),
        station_ae_title: extension(v, STATION_AE_EXTENSION),
        station_name: String::new(),
        location: String::new(),
        start_date,
        start_time,
        description: description.clone(),
        performing_physician: String::new(),
    };
    let order = Order {
        accession_number: accession,
        placer_order_number: typed("PLAC"),
        filler_order_number: typed("FILL"),
        status: if cancel {
            OrderStatus::Cancelled
        } else {
            OrderStatus::Scheduled
        },
        patient,
        study_instance_uid: study_uid(v),
        requested_procedure_id: String::new(),
        procedure,
        procedure_description: description,
        priority: priority(str_at(v, "priority"))?,
        reason: text_or_display(v.pointer("/reasonCode/0")),
        requesting_physician: requester(v),
        referring_physician: String::new(),
        admission_id: String::new(),
        step,
        charset: "ISO_IR 192".into(),
        source: OrderSource::Fhir,
        created_ms: 0,
        updated_ms: 0,
        performed_steps: Vec::new(),
    };
    Ok(Incoming { order, cancel })
}

/// Refuse any over-long string up front, so no field needs its own check for abuse.
fn check_lengths(v: &Value) -> Result<(), E> {
    match v {
        Value::String(s) if s.len() > MAX_STRING => Err(E::TooLong),
        Value::Array(a) => a.iter().try_for_each(check_lengths),
        Value::Object(o) => o.iter().try_for_each(|(k, v)| {
            if k.len() > MAX_STRING {
                return Err(E::TooLong);
            }
            check_lengths(v)
        }),
        _ => Ok(()),
    }
}

fn str_in<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).map_or("", str::trim)
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    str_in(v, key)
}

/// CodeableConcept text, else its first coding's display.
fn text_or_display(concept: Option<&Value>) -> String {
    let Some(c) = concept else {
        return String::new();
    };
    let text = str_in(c, "text");
    if !text.is_empty() {
        return text.to_string();
    }
    c.pointer("/coding/0/display")
        .and_then(Value::as_str)
        .map_or("", str::trim)
        .to_string()
}

/// (type code, system, value) of each identifier with a value.
fn identifiers(v: &Value) -> Vec<(String, String, String)> {
    v.get("identifier")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| {
                    let value = str_in(id, "value");
                    if value.is_empty() {
                        return None;
                    }
                    let ty = id
                        .pointer("/type/coding")
                        .and_then(Value::as_array)
                        .and_then(|cs| {
                            cs.iter().find(|c| {
                                let s = str_in(c, "system");
                                s.is_empty() || s == V2_0203
                            })
                        })
                        .map_or("", |c| str_in(c, "code"));
                    Some((
                        ty.to_string(),
                        str_in(id, "system").to_string(),
                        value.into(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The Study Instance UID, when the EHR already assigned one (`urn:dicom:uid` identifier).
fn study_uid(v: &Value) -> String {
    v.get("identifier")
        .and_then(Value::as_array)
        .and_then(|ids| {
            ids.iter()
                .find(|id| str_in(id, "system") == super::DICOM_UID_SYSTEM)
        })
        .map(|id| {
            let value = str_in(id, "value");
            value.strip_prefix("urn:oid:").unwrap_or(value).to_string()
        })
        .unwrap_or_default()
}

/// A contained resource by local reference (`#id`).
fn contained<'a>(v: &'a Value, reference: &str, kind: &str) -> Option<&'a Value> {
    let id = reference.strip_prefix('#')?;
    v.get("contained")?
        .as_array()?
        .iter()
        .find(|r| str_in(r, "resourceType") == kind && str_in(r, "id") == id)
}

fn subject(v: &Value) -> Result<OrderPatient, E> {
    let subject = v.get("subject").ok_or(E::Missing("subject"))?;
    let reference = str_in(subject, "reference");
    let mut p = OrderPatient::default();
    let ident = if let Some(patient) = contained(v, reference, "Patient") {
        p.name = patient
            .pointer("/name/0")
            .map(human_name)
            .unwrap_or_default();
        p.birth_date = birth_date(str_in(patient, "birthDate"))?;
        p.sex = match str_in(patient, "gender") {
            "male" => "M",
            "female" => "F",
            "other" => "O",
            _ => "",
        }
        .into();
        patient.pointer("/identifier/0")
    } else if !reference.is_empty() && subject.get("identifier").is_none() {
        return Err(E::Invalid {
            field: "subject",
            reason: format!(
                "reference {reference:?} is neither a contained Patient (#id) nor given with an identifier"
            ),
        });
    } else {
        subject.get("identifier")
    };
    if let Some(id) = ident {
        p.id = str_in(id, "value").to_string();
        p.issuer = str_in(id, "system").to_string();
    }
    if p.name.is_empty() {
        p.name = str_in(subject, "display").to_string();
    }
    if p.id.is_empty() {
        return Err(E::Missing("subject patient identifier (patient ID)"));
    }
    if p.id.chars().count() > 64 || p.id.contains('\\') {
        return Err(E::Invalid {
            field: "subject.identifier.value",
            reason: "a patient ID is at most 64 characters without backslashes".into(),
        });
    }
    Ok(p)
}

/// HumanName → DICOM PN `Family^Given^Middle^Prefix^Suffix` (all given names but the first
/// are the middle names), trailing empty components dropped.
pub(super) fn human_name(n: &Value) -> String {
    let list = |key: &str| -> Vec<&str> {
        n.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::trim).collect())
            .unwrap_or_default()
    };
    let given = list("given");
    let clean = |s: &str| s.replace(['^', '\\', '='], " ");
    let parts = [
        clean(str_in(n, "family")),
        clean(given.first().copied().unwrap_or("")),
        clean(&given.get(1..).unwrap_or_default().join(" ")),
        clean(&list("prefix").join(" ")),
        clean(&list("suffix").join(" ")),
    ];
    let mut pn = parts.join("^");
    while pn.ends_with('^') {
        pn.pop();
    }
    if pn.is_empty() {
        return clean(str_in(n, "text"));
    }
    pn
}

/// `YYYY-MM-DD` → `YYYYMMDD` (empty stays empty).
fn birth_date(d: &str) -> Result<String, E> {
    if d.is_empty() {
        return Ok(String::new());
    }
    date_digits(d).ok_or_else(|| E::Invalid {
        field: "Patient.birthDate",
        reason: format!("{d:?} is not YYYY-MM-DD"),
    })
}

fn date_digits(d: &str) -> Option<String> {
    let b = d.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit());
    ok.then(|| format!("{}{}{}", &d[..4], &d[5..7], &d[8..10]))
}

/// The scheduled start as DICOM date and time, from the wall-clock part of the dateTime (the
/// zone is dropped: see the module comment).
fn occurrence(v: &Value) -> Result<(String, String), E> {
    let dt = v
        .get("occurrenceDateTime")
        .and_then(Value::as_str)
        .or_else(|| v.pointer("/occurrencePeriod/start").and_then(Value::as_str))
        .map(str::trim)
        .ok_or(E::Missing("occurrenceDateTime"))?;
    let bad = || E::Invalid {
        field: "occurrenceDateTime",
        reason: format!("{dt:?} is not YYYY-MM-DD[Thh:mm[:ss][zone]]"),
    };
    let date = dt.get(..10).and_then(date_digits).ok_or_else(bad)?;
    let rest = &dt[10..];
    if rest.is_empty() {
        return Ok((date, String::new()));
    }
    let time = rest.strip_prefix('T').ok_or_else(bad)?;
    let hm = time.get(..5).ok_or_else(bad)?;
    let hb = hm.as_bytes();
    let digit = |i: usize| hb[i].is_ascii_digit();
    if !(digit(0) && digit(1) && hb[2] == b':' && digit(3) && digit(4)) {
        return Err(bad());
    }
    let mut out = format!("{}{}", &hm[..2], &hm[3..5]);
    if let Some(sec) = time.get(5..8).filter(|s| s.starts_with(':')) {
        if !sec[1..].bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        out.push_str(&sec[1..]);
    }
    Ok((date, out))
}

fn priority(p: &str) -> Result<Priority, E> {
    Ok(match p {
        "" | "routine" => Priority::Routine,
        "urgent" | "asap" => Priority::High,
        "stat" => Priority::Stat,
        other => {
            return Err(E::Invalid {
                field: "priority",
                reason: format!("{other:?} is not routine, urgent, asap or stat"),
            })
        }
    })
}

/// `requester.display`, else the name of a contained Practitioner it references, as PN.
fn requester(v: &Value) -> String {
    let Some(r) = v.get("requester") else {
        return String::new();
    };
    if let Some(p) = contained(v, str_in(r, "reference"), "Practitioner") {
        if let Some(n) = p.pointer("/name/0") {
            return human_name(n);
        }
    }
    str_in(r, "display").to_string()
}

fn extension(v: &Value, url: &str) -> String {
    v.get("extension")
        .and_then(Value::as_array)
        .and_then(|xs| xs.iter().find(|x| str_in(x, "url") == url))
        .map(|x| str_in(x, "valueString").to_string())
        .unwrap_or_default()
}
