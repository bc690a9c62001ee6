//! Orders from the EHR as FHIR R4 ServiceRequest:
//! - `POST /fhir/ServiceRequest`: place a new order (201, Location `/fhir/ServiceRequest/<id>`);
//! - `PUT /fhir/ServiceRequest?identifier=[system|]accession` and `PUT /fhir/ServiceRequest/<id>`:
//!   create or update (201 / 200); status revoked / entered-in-error cancels;
//! - `GET /fhir/ServiceRequest/<id>`: read; `GET /fhir/ServiceRequest?...`: search.
//!
//! The resource id is the accession number. Every write goes through the shared intake rules
//! (`pacs_storage::order_intake`), which store the order and its outbox event together.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use pacs_fhir::service_request::{self, Incoming};
use pacs_storage::order_intake::{self, Intent, Received};
use pacs_storage::orders::{Order, OrderChange};
use serde_json::{json, Value};

use crate::access::{AuditNote, Grant};
use crate::fhir_outcome::{body_bytes, fhir_response, FhirError, FHIR_JSON};
use crate::{blocking, ApiState};

/// Largest ServiceRequest body; real ones are a few kilobytes.
const MAX_BODY: usize = 1024 * 1024;
const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 1000;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/fhir/ServiceRequest",
            get(search).post(create).put(conditional_update),
        )
        .route("/fhir/ServiceRequest/{id}", get(read).put(update_by_id))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The request body, or the reason it could not be read as an OperationOutcome (413 over
/// `MAX_BODY`) rather than axum's plain-text rejection.
type Body = Result<Bytes, BytesRejection>;

/// The body as a ServiceRequest: FHIR JSON or plain JSON only.
fn incoming(headers: &HeaderMap, body: Body) -> Result<Incoming, FhirError> {
    let body = body_bytes(body, MAX_BODY)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case(FHIR_JSON) && !mime.eq_ignore_ascii_case("application/json") {
        return Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!("Content-Type {ct:?}: send application/fhir+json"),
        ));
    }
    Ok(service_request::parse(&body)?)
}

/// Audit note of an order request: the precise action, accession and patient.
fn note(action: &'static str, order: &Order) -> AuditNote {
    AuditNote {
        patient_id: Some(order.patient.id.clone()),
        study_uid: Some(order.study_instance_uid.clone()).filter(|u| !u.is_empty()),
        detail: Some(format!("accession {}", order.accession_number)),
        action: Some(action),
        ..AuditNote::default()
    }
}

fn resource_response(status: StatusCode, received: &Received) -> Response {
    let order = &received.order;
    let action = match received.change {
        OrderChange::Placed => "order.place",
        OrderChange::Changed => "order.change",
        OrderChange::Cancelled => "order.cancel",
    };
    let mut r = fhir_response(status, &service_request::render(order));
    let location = format!("/fhir/ServiceRequest/{}", order.accession_number);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.extensions_mut().insert(note(action, order));
    r
}

async fn apply(s: &ApiState, order: Order, intent: Intent) -> Result<Received, FhirError> {
    let orders = s.store.orders.clone();
    let received = tokio::task::spawn_blocking(move || {
        order_intake::receive(orders.as_ref(), order, intent, now_ms())
    })
    .await
    .map_err(|e| {
        FhirError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            e.to_string(),
        )
    })??;
    tracing::info!(
        accession = %received.order.accession_number,
        change = ?received.change,
        unchanged = received.unchanged,
        "order received over FHIR"
    );
    Ok(received)
}

fn check_scope(grant: &Grant, order: &Order) -> Result<(), FhirError> {
    if grant.scope.admits(
        &order.study_instance_uid,
        &order.patient.id,
        &order.patient.issuer,
    ) {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the order's patient is outside the caller's scope",
        ))
    }
}

async fn create(
    State(s): State<ApiState>,
    Extension(grant): Extension<Grant>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let inc = incoming(&headers, body)?;
    if inc.cancel {
        return Err(FhirError::invalid(
            "a new ServiceRequest cannot be revoked or entered-in-error; use PUT to cancel",
        ));
    }
    check_scope(&grant, &inc.order)?;
    let received = apply(&s, inc.order, Intent::Place).await?;
    Ok(resource_response(StatusCode::CREATED, &received))
}

/// Create or update (`Upsert`), or cancel when the resource says revoked / entered-in-error.
async fn upsert(s: &ApiState, grant: &Grant, inc: Incoming) -> Result<Response, FhirError> {
    check_scope(grant, &inc.order)?;
    let intent = if inc.cancel {
        Intent::Cancel
    } else {
        Intent::Upsert
    };
    let received = apply(s, inc.order, intent).await?;
    let status = if received.change == OrderChange::Placed && !received.unchanged {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(resource_response(status, &received))
}

async fn conditional_update(
    State(s): State<ApiState>,
    Extension(grant): Extension<Grant>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let mut identifier = None;
    for (name, value) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "identifier" => identifier = Some(token_value(value.trim()).to_string()),
            other => {
                return Err(FhirError::invalid(format!(
                    "conditional update supports identifier only, not {other:?}"
                )))
            }
        }
    }
    let Some(wanted) = identifier.filter(|i| !i.is_empty()) else {
        return Err(FhirError::invalid(
            "conditional update needs ?identifier=[system|]accession, or PUT /fhir/ServiceRequest/<id>",
        ));
    };
    let inc = incoming(&headers, body)?;
    if inc.order.accession_number != wanted {
        return Err(FhirError::invalid(format!(
            "identifier {wanted:?} is not the resource's accession number {:?}",
            inc.order.accession_number
        )));
    }
    upsert(&s, &grant, inc).await
}

async fn update_by_id(
    State(s): State<ApiState>,
    Extension(grant): Extension<Grant>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let inc = incoming(&headers, body)?;
    if inc.order.accession_number != id {
        return Err(FhirError::invalid(format!(
            "the id {id:?} is not the resource's accession number {:?}",
            inc.order.accession_number
        )));
    }
    upsert(&s, &grant, inc).await
}

fn not_found(id: &str) -> FhirError {
    FhirError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no ServiceRequest {id}"),
    )
}

async fn read(
    State(s): State<ApiState>,
    Extension(grant): Extension<Grant>,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let orders = s.store.orders.clone();
    let key = id.clone();
    let order = blocking(move || orders.order(&key))
        .await?
        .ok_or_else(|| not_found(&id))?;
    // Outside the scope the order does not exist as far as this caller can tell.
    check_scope(&grant, &order).map_err(|_| not_found(&id))?;
    let mut r = fhir_response(StatusCode::OK, &service_request::render(&order));
    r.extensions_mut().insert(note("order.read", &order));
    Ok(r)
}

/// `[system|]value` → value.
fn token_value(v: &str) -> &str {
    v.rsplit_once('|').map_or(v, |(_, value)| value)
}

/// `[system|]value` → (system if given, value).
fn token(v: &str) -> (Option<&str>, &str) {
    match v.split_once('|') {
        Some((s, value)) => (Some(s).filter(|s| !s.is_empty()), value),
        None => (None, v),
    }
}

#[derive(Default)]
struct Search {
    accession: Option<String>,
    patient: Option<(Option<String>, String)>,
    statuses: Vec<String>,
    count: usize,
    after: Option<String>,
}

fn parse_search(q: &str) -> Result<Search, FhirError> {
    let mut s = Search {
        count: DEFAULT_COUNT,
        ..Search::default()
    };
    for (name, value) in form_urlencoded::parse(q.as_bytes()) {
        let v = value.trim();
        match name.as_ref() {
            "identifier" | "_id" => s.accession = Some(token_value(v).to_string()),
            "patient.identifier" | "subject:identifier" | "patient:identifier" => {
                let (system, value) = token(v);
                s.patient = Some((system.map(str::to_string), value.to_string()));
            }
            "status" => s.statuses = v.split(',').map(|x| x.trim().to_string()).collect(),
            "_count" => {
                s.count = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| FhirError::invalid(format!("_count must be 1..{MAX_COUNT}")))?
            }
            "_after" => s.after = Some(v.to_string()),
            other => {
                return Err(FhirError::invalid(format!(
                    "unsupported search parameter {other:?}: identifier, patient.identifier, \
                     subject:identifier, status, _count, _after"
                )))
            }
        }
    }
    Ok(s)
}

fn matches(search: &Search, grant: &Grant, o: &Order) -> bool {
    let patient_ok = search.patient.as_ref().is_none_or(|(system, value)| {
        o.patient.id == *value && system.as_ref().is_none_or(|s| *s == o.patient.issuer)
    });
    let status_ok = search.statuses.is_empty()
        || search
            .statuses
            .iter()
            .any(|s| s == service_request::status(o.status));
    patient_ok
        && status_ok
        && grant
            .scope
            .admits(&o.study_instance_uid, &o.patient.id, &o.patient.issuer)
}

async fn search(
    State(s): State<ApiState>,
    Extension(grant): Extension<Grant>,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let query = q.unwrap_or_default();
    let search = parse_search(&query)?;
    let first_page = search.after.is_none();
    let orders = s.store.orders.clone();
    let g = grant.clone();
    let (found, more) = tokio::task::spawn_blocking(move || {
        if let Some(acc) = &search.accession {
            let one = orders.order(acc)?.filter(|o| matches(&search, &g, o));
            return Ok((one.into_iter().collect::<Vec<_>>(), false));
        }
        // Page through all orders by accession number until a page of matches is full.
        let mut found = Vec::new();
        let mut after = search.after.clone();
        loop {
            let page = orders.list_orders(after.as_deref(), 500)?;
            let last = page.last().map(|o| o.accession_number.clone());
            for o in page {
                if matches(&search, &g, &o) {
                    if found.len() == search.count {
                        return Ok((found, true));
                    }
                    found.push(o);
                }
            }
            match last {
                Some(l) => after = Some(l),
                None => return Ok((found, false)),
            }
        }
    })
    .await
    .map_err(|e| {
        FhirError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            e.to_string(),
        )
    })?
    .map_err(|e: pacs_storage::StorageError| FhirError::from(crate::ApiError::from(e)))?;
    let mut links =
        vec![json!({"relation": "self", "url": format!("/fhir/ServiceRequest?{query}")})];
    if let (true, Some(last)) = (more, found.last()) {
        let rest: String = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k != "_after")
            .fold(
                form_urlencoded::Serializer::new(String::new()),
                |mut s, (k, v)| {
                    s.append_pair(&k, &v);
                    s
                },
            )
            .append_pair("_after", &last.accession_number)
            .finish();
        links.push(json!({"relation": "next", "url": format!("/fhir/ServiceRequest?{rest}")}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": found.iter().map(|o| json!({
            "fullUrl": format!("/fhir/ServiceRequest/{}", o.accession_number),
            "resource": service_request::render(o),
            "search": {"mode": "match"},
        })).collect::<Vec<Value>>(),
    });
    // Bundle.total is the whole result's size: known only when it all fits on the first page.
    if first_page && !more {
        bundle["total"] = json!(found.len());
    }
    let mut r = fhir_response(StatusCode::OK, &bundle);
    r.extensions_mut().insert(AuditNote {
        patient_id: found.first().map(|o| o.patient.id.clone()),
        detail: Some(format!("{} orders", found.len())),
        action: Some("order.read"),
        ..AuditNote::default()
    });
    Ok(r)
}
