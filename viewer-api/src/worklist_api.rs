//! The modality worklist over HTTP, for viewers and portals:
//! `GET /api/worklist/mwl?modality=&station=&date=&patient_name=&patient_id=&accession=&limit=`
//! answers the active scheduled steps (what the DICOM worklist SCP would), in start order.
//! (`/api/worklist` is the reading worklist of unread studies; this one is orders.)

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use pacs_storage::orders::Order;
use serde_json::{json, Value};

use crate::access::Grant;
use crate::error::ApiError;
use crate::{blocking, ApiState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/worklist/mwl", get(mwl))
}

#[derive(Default, Clone)]
struct Filter {
    modality: Option<String>,
    station: Option<String>,
    from: Option<String>,
    to: Option<String>,
    patient_name: Option<String>,
    patient_id: Option<String>,
    accession: Option<String>,
    limit: usize,
}

fn is_date(d: &str) -> bool {
    d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYYMMDD` or a range `YYYYMMDD-YYYYMMDD` with either end open.
fn date_range(v: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "date {v:?} is not YYYYMMDD or a range YYYYMMDD-YYYYMMDD"
        ))
    };
    let (from, to) = match v.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (v, v),
    };
    if (from.is_empty() && to.is_empty())
        || (!from.is_empty() && !is_date(from))
        || (!to.is_empty() && !is_date(to))
    {
        return Err(bad());
    }
    let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    Ok((some(from), some(to)))
}

fn parse(q: &str) -> Result<Filter, ApiError> {
    let mut f = Filter {
        limit: DEFAULT_LIMIT,
        ..Filter::default()
    };
    for (name, value) in form_urlencoded::parse(q.as_bytes()) {
        let v = value.trim().to_string();
        if v.len() > 256 {
            return Err(ApiError::BadRequest(format!("{name} is too long")));
        }
        let set = Some(v.clone()).filter(|s| !s.is_empty());
        match name.as_ref() {
            "modality" => f.modality = set,
            "station" => f.station = set,
            "date" => (f.from, f.to) = date_range(&v)?,
            "patient_name" => f.patient_name = set,
            "patient_id" => f.patient_id = set,
            "accession" => f.accession = set,
            "limit" => {
                f.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1..{MAX_LIMIT}")))?
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unsupported parameter {other:?}: modality, station, date, patient_name, \
                     patient_id, accession, limit"
                )))
            }
        }
    }
    Ok(f)
}

/// DICOM wildcard match (`*` any run, `?` one character), case-insensitive.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Greedy match with backtracking to the last star: linear in practice, no recursion.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

fn admits(f: &Filter, grant: &Grant, o: &Order) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_ref().is_none_or(|w| w == have);
    eq(&f.modality, &o.step.modality)
        && eq(&f.station, &o.step.station_ae_title)
        && eq(&f.patient_id, &o.patient.id)
        && eq(&f.accession, &o.accession_number)
        && f.patient_name
            .as_ref()
            .is_none_or(|p| wildcard(p, &o.patient.name))
        && grant
            .scope
            .admits(&o.study_instance_uid, &o.patient.id, &o.patient.issuer)
}

fn item(o: &Order) -> Value {
    json!({
        "accession_number": o.accession_number,
        "patient": {
            "id": o.patient.id,
            "issuer": o.patient.issuer,
            "name": o.patient.name,
            "birth_date": o.patient.birth_date,
            "sex": o.patient.sex,
        },
        "study_instance_uid": o.study_instance_uid,
        "requested_procedure": {
            "id": o.requested_procedure_id,
            "code": o.procedure,
            "description": o.procedure_description,
        },
        "scheduled_step": {
            "id": o.step.id,
            "modality": o.step.modality,
            "station_ae_title": o.step.station_ae_title,
            "start_date": o.step.start_date,
            "start_time": o.step.start_time,
            "description": o.step.description,
            "status": o.status.step_status(),
        },
        "priority": o.priority.dicom(),
    })
}

async fn mwl(
    State(s): State<ApiState>,
    Extension(grant): Extension<Grant>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let f = parse(&q.unwrap_or_default())?;
    let orders = s.store.orders.clone();
    let items = blocking(move || {
        let mut items = Vec::new();
        orders.active_orders(f.from.as_deref(), f.to.as_deref(), &mut |o| {
            if admits(&f, &grant, &o) {
                items.push(item(&o));
            }
            items.len() < f.limit
        })?;
        Ok(items)
    })
    .await?;
    Ok(Json(json!({ "items": items })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_dicom() {
        assert!(wildcard("doe*", "Doe^Jane"));
        assert!(wildcard("*jane", "Doe^Jane"));
        assert!(wildcard("D?e^*", "Doe^Jane"));
        assert!(!wildcard("smith*", "Doe^Jane"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("?", ""));
    }

    #[test]
    fn dates_and_ranges() {
        assert_eq!(
            date_range("20261205").expect("day"),
            (Some("20261205".into()), Some("20261205".into()))
        );
        assert_eq!(
            date_range("20261201-").expect("open"),
            (Some("20261201".into()), None)
        );
        assert!(date_range("2026-12-05").is_err());
        assert!(date_range("-").is_err());
        assert!(parse("limit=0").is_err());
        assert!(parse("colour=red").is_err());
    }
}
