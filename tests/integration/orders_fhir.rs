//! Orders from the EHR as FHIR ServiceRequest, and the modality worklist over HTTP: place,
//! read, conditional update, search, cancel; refusals by role and for bad resources; audit.

use serde_json::{json, Value};

use crate::security::{add_user, curl, get, session, Reply};
use crate::support::*;

pub(crate) fn order(accession: &str, start: &str, status: &str) -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "contained": [{
            "resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "HOSP", "value": "MRN-1"}],
            "name": [{"family": "Doe", "given": ["Jane"]}],
            "birthDate": "1980-02-03", "gender": "female"
        }],
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}, "value": accession}],
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}]},
        "subject": {"reference": "#p1"},
        "occurrenceDateTime": start,
        "performerType": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]}
    })
}

fn send(server: &Server, method: &str, path: &str, token: &str, body: &Value) -> Reply {
    let url = format!("http://127.0.0.1:{}{path}", server.http_port);
    curl(
        &url,
        method,
        Some(token),
        &[
            "-H",
            "Content-Type: application/fhir+json",
            "--data",
            &body.to_string(),
        ],
    )
}

fn mwl_times(server: &Server, token: &str, date: &str) -> Vec<String> {
    let r = get(
        server,
        &format!("/api/worklist/mwl?date={date}"),
        Some(token),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            i["scheduled_step"]["start_time"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn the_ehr_places_changes_and_cancels_orders_over_fhir() {
    let (_tmp, data) = data_dir();
    let config = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&config, format!("data = {data:?}\n[auth]\n")).expect("config");
    add_user(&config, "ehr", "ehr", &[]);
    add_user(&config, "root", "admin", &[]);
    add_user(&config, "bill", "billing", &[]);
    add_user(&config, "pat", "patient", &["--patient-id", "MRN-1^^^HOSP"]);
    let server = Server::start_with_config(&data, &config);
    let ehr = session(&server, "ehr");

    let r = send(
        &server,
        "POST",
        "/fhir/ServiceRequest",
        &ehr,
        &order("ACC-1", "2026-12-05T09:30:00", "active"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        r.headers.contains("/fhir/ServiceRequest/ACC-1"),
        "{}",
        r.headers
    );
    assert_eq!(r.json()["status"], "active");

    let r = get(&server, "/fhir/ServiceRequest/ACC-1", Some(&ehr));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["contained"][0]["identifier"][0]["value"], "MRN-1");
    assert_eq!(
        get(&server, "/fhir/ServiceRequest/NOPE", Some(&ehr)).status,
        404
    );

    // The same accession again is a conflict.
    let r = send(
        &server,
        "POST",
        "/fhir/ServiceRequest",
        &ehr,
        &order("ACC-1", "2026-12-05T09:30:00", "active"),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["resourceType"], "OperationOutcome");

    assert_eq!(mwl_times(&server, &ehr, "20261205"), vec!["093000"]);
    let r = send(
        &server,
        "PUT",
        "/fhir/ServiceRequest?identifier=ACC-1",
        &ehr,
        &order("ACC-1", "2026-12-05T11:15:00", "active"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mwl_times(&server, &ehr, "20261205"), vec!["111500"]);
    // A conditional update of an unknown accession creates it.
    let r = send(
        &server,
        "PUT",
        "/fhir/ServiceRequest?identifier=ACC-2",
        &ehr,
        &order("ACC-2", "2026-12-06", "active"),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let r = get(
        &server,
        "/fhir/ServiceRequest?patient.identifier=HOSP|MRN-1",
        Some(&ehr),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["entry"].as_array().expect("entries").len(), 2);

    let r = send(
        &server,
        "PUT",
        "/fhir/ServiceRequest/ACC-1",
        &ehr,
        &order("ACC-1", "2026-12-05T11:15:00", "revoked"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(mwl_times(&server, &ehr, "20261205").is_empty());
    assert_eq!(
        get(&server, "/fhir/ServiceRequest/ACC-1", Some(&ehr)).json()["status"],
        "revoked"
    );

    // Bad resources name what is missing.
    for (field, mut bad) in [
        ("subject", order("ACC-3", "2026-12-05", "active")),
        ("performerType", order("ACC-3", "2026-12-05", "active")),
        ("intent", order("ACC-3", "2026-12-05", "active")),
    ] {
        bad.as_object_mut().expect("object").remove(field);
        let r = send(&server, "POST", "/fhir/ServiceRequest", &ehr, &bad);
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        let outcome = r.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .contains(field));
    }
    let r = send(&server, "POST", "/fhir/ServiceRequest", &ehr, &json!([1]));
    assert_eq!(r.status, 400, "{}", r.text());
    // Over 1 MiB: 413, still as an OperationOutcome.
    let mut huge = order("ACC-5", "2026-12-05", "active");
    huge["note"] = json!([{"text": "x".repeat(2 * 1024 * 1024)}]);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), huge.to_string()).expect("write");
    let r = curl(
        &format!("http://127.0.0.1:{}/fhir/ServiceRequest", server.http_port),
        "POST",
        Some(&ehr),
        &[
            "-H",
            "Content-Type: application/fhir+json",
            // No `Expect: 100-continue`: the answer comes without an interim 100.
            "-H",
            "Expect:",
            "--data-binary",
            &format!("@{}", file.path().display()),
        ],
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["resourceType"], "OperationOutcome", "{}", r.text());
    assert_eq!(r.json()["issue"][0]["code"], "too-costly", "{}", r.text());

    // Paged search: Bundle.total only when the whole result is in the answer.
    let r = get(&server, "/fhir/ServiceRequest?_count=1", Some(&ehr));
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.json();
    assert_eq!(page["entry"].as_array().map(Vec::len), Some(1), "{page}");
    assert!(
        page.get("total").is_none(),
        "a partial page has no total: {page}"
    );
    assert!(
        page["link"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["relation"] == "next")),
        "{page}"
    );
    let r = get(&server, "/fhir/ServiceRequest?identifier=ACC-1", Some(&ehr));
    assert_eq!(r.json()["total"], 1, "{}", r.text());

    for user in ["bill", "pat"] {
        let t = session(&server, user);
        assert_eq!(
            get(&server, "/fhir/ServiceRequest/ACC-2", Some(&t)).status,
            403,
            "{user}"
        );
        assert_eq!(
            get(&server, "/api/worklist/mwl", Some(&t)).status,
            403,
            "{user}"
        );
        let r = send(
            &server,
            "POST",
            "/fhir/ServiceRequest",
            &t,
            &order("ACC-4", "2026-12-05", "active"),
        );
        assert_eq!(r.status, 403, "{user}");
    }

    // The audit trail has each order action (the outbox events are written with the orders
    // by the intake; the events API does not list order events, so the audit is checked).
    let admin = session(&server, "root");
    for action in ["order.place", "order.change", "order.cancel", "order.read"] {
        let r = get(
            &server,
            &format!("/api/audit?action={action}"),
            Some(&admin),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        let records = body["records"].as_array().expect("records");
        assert!(
            records.iter().any(|e| e["patient_id"] == "MRN-1"),
            "{action}: {body}"
        );
    }
}
