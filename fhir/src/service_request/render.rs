//! [`Order`] → ServiceRequest JSON.

use pacs_storage::orders::{Order, OrderStatus, Priority};
use serde_json::{json, Map, Value};

use super::{DICOM_UID_SYSTEM, STATION_AE_EXTENSION, V2_0203};
use crate::coding;
use crate::datetime::fhir_date;

fn typed_identifier(code: &str, value: &str) -> Value {
    json!({
        "type": {"coding": [{"system": V2_0203, "code": code}]},
        "value": value,
    })
}

/// DICOM PN → HumanName (family, given names, prefix, suffix).
fn human_name(pn: &str) -> Value {
    let parts: Vec<&str> = pn.split('=').next().unwrap_or("").split('^').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("").trim();
    let mut n = Map::new();
    if !part(0).is_empty() {
        n.insert("family".into(), json!(part(0)));
    }
    let given: Vec<&str> = [part(1), part(2)]
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    if !given.is_empty() {
        n.insert("given".into(), json!(given));
    }
    if !part(3).is_empty() {
        n.insert("prefix".into(), json!([part(3)]));
    }
    if !part(4).is_empty() {
        n.insert("suffix".into(), json!([part(4)]));
    }
    Value::Object(n)
}

/// The order as a ServiceRequest (id = accession number), its patient contained.
pub fn render(order: &Order) -> Value {
    let mut ids = vec![typed_identifier("ACSN", &order.accession_number)];
    if let Some(p) = &order.placer_order_number {
        ids.push(typed_identifier("PLAC", p));
    }
    if let Some(f) = &order.filler_order_number {
        ids.push(typed_identifier("FILL", f));
    }
    if !order.study_instance_uid.is_empty() {
        ids.push(json!({
            "system": DICOM_UID_SYSTEM,
            "value": format!("urn:oid:{}", order.study_instance_uid),
        }));
    }
    let status = status(order.status);
    let priority = match order.priority {
        Priority::Stat => "stat",
        Priority::High => "urgent",
        Priority::Routine | Priority::Medium | Priority::Low => "routine",
    };
    let p = &order.patient;
    let mut patient = Map::new();
    patient.insert("resourceType".into(), json!("Patient"));
    patient.insert("id".into(), json!("patient"));
    let mut pid = Map::new();
    if !p.issuer.is_empty() {
        pid.insert("system".into(), json!(p.issuer));
    }
    pid.insert("value".into(), json!(p.id));
    patient.insert("identifier".into(), json!([pid]));
    if !p.name.is_empty() {
        patient.insert("name".into(), json!([human_name(&p.name)]));
    }
    if let Some(b) = fhir_date(&p.birth_date) {
        patient.insert("birthDate".into(), json!(b));
    }
    let gender = match p.sex.as_str() {
        "M" => "male",
        "F" => "female",
        "O" => "other",
        _ => "unknown",
    };
    patient.insert("gender".into(), json!(gender));

    let mut r = Map::new();
    r.insert("resourceType".into(), json!("ServiceRequest"));
    r.insert("id".into(), json!(order.accession_number));
    r.insert(
        "meta".into(),
        json!({"lastUpdated": last_updated(order.updated_ms)}),
    );
    r.insert("contained".into(), json!([patient]));
    if !order.step.station_ae_title.is_empty() {
        r.insert(
            "extension".into(),
            json!([{"url": STATION_AE_EXTENSION, "valueString": order.step.station_ae_title}]),
        );
    }
    r.insert("identifier".into(), json!(ids));
    r.insert("status".into(), json!(status));
    r.insert("intent".into(), json!("order"));
    r.insert("priority".into(), json!(priority));
    let mut code = Map::new();
    if let Some(c) = &order.procedure {
        let mut coding = Map::new();
        if let Some(system) = coding::system_uri(&c.scheme, None) {
            coding.insert("system".into(), json!(system));
        } else if c.scheme.contains(':') {
            coding.insert("system".into(), json!(c.scheme));
        }
        coding.insert("code".into(), json!(c.value));
        if !c.meaning.is_empty() {
            coding.insert("display".into(), json!(c.meaning));
        }
        code.insert("coding".into(), json!([coding]));
    }
    if !order.procedure_description.is_empty() {
        code.insert("text".into(), json!(order.procedure_description));
    }
    if !code.is_empty() {
        r.insert("code".into(), Value::Object(code));
    }
    r.insert(
        "subject".into(),
        json!({"reference": "#patient", "identifier": pid}),
    );
    if let Some(start) = occurrence(&order.step.start_date, &order.step.start_time) {
        r.insert("occurrenceDateTime".into(), json!(start));
    }
    r.insert(
        "performerType".into(),
        json!({"coding": [{"system": coding::DCM, "code": order.step.modality}]}),
    );
    if !order.requesting_physician.is_empty() {
        r.insert(
            "requester".into(),
            json!({"display": order.requesting_physician.replace('^', " ").trim()}),
        );
    }
    if !order.reason.is_empty() {
        r.insert("reasonCode".into(), json!([{"text": order.reason}]));
    }
    Value::Object(r)
}

/// The scheduled start as the EHR wrote it: wall-clock `YYYY-MM-DDThh:mm:ss` without a
/// zone (strict FHIR wants one with a time; we never knew it, see the module comment).
fn occurrence(date: &str, time: &str) -> Option<String> {
    let d = fhir_date(date)?;
    let t: String = time.chars().filter(char::is_ascii_digit).collect();
    if t.len() < 4 {
        return Some(d);
    }
    let secs = t.get(4..6).unwrap_or("00");
    Some(format!("{d}T{}:{}:{secs}", &t[..2], &t[2..4]))
}

/// Milliseconds since the epoch as a FHIR instant (UTC).
fn last_updated(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// ServiceRequest.status of an order: FHIR has no "in progress" for a request (the performing
/// is the Procedure's), so a started exam is still `active`; a stopped one is `revoked`.
pub fn status(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Scheduled | OrderStatus::InProgress => "active",
        OrderStatus::Completed => "completed",
        OrderStatus::Discontinued | OrderStatus::Cancelled => "revoked",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn instants_are_utc() {
        assert_eq!(super::last_updated(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::last_updated(1_764_930_600_123),
            "2025-12-05T10:30:00.123Z"
        );
    }
}
