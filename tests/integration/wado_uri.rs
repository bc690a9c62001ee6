//! WADO-URI (`GET /wado?requestType=WADO&...`) against the real server: the default JPEG, a
//! sized PNG, the object as stored and converted to Explicit VR Little Endian (read back with
//! dcmtk), and the refusals.

use crate::security::curl;
use crate::support::*;

#[test]
fn wado_uri_answers_images_and_objects() {
    let (tmp, data) = data_dir();
    let server = Server::start(&data);
    let ct = samples().join("ct_16bit_signed_implicit.dcm");
    storescu(&server, std::slice::from_ref(&ct));
    let (sop, stored_syntax) = file_uids(&ct);
    assert_eq!(
        stored_syntax, "1.2.840.10008.1.2",
        "the sample is implicit VR"
    );
    let (study, series) = server.parents_of(&sop);
    let base = format!(
        "http://127.0.0.1:{}/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}",
        server.http_port
    );
    let get = |query: &str| curl(&format!("{base}{query}"), "GET", None, &[]);

    // No contentType: a JPEG of the first frame.
    let r = get("");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers.contains("content-type: image/jpeg"),
        "{}",
        r.headers
    );
    assert_eq!(&r.body[..2], &[0xFF, 0xD8], "a JPEG");
    // PNG within 64 rows, aspect kept (the CT is square).
    let r = get("&contentType=image%2Fpng&rows=64&windowCenter=40&windowWidth=400");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&r.body[1..4], b"PNG");
    let be = |at: usize| {
        u32::from_be_bytes([r.body[at], r.body[at + 1], r.body[at + 2], r.body[at + 3]])
    };
    assert_eq!((be(16), be(20)), (64, 64), "PNG width and height");

    // The object, converted to Explicit VR Little Endian (the default), same data set.
    let r = get("&contentType=application%2Fdicom");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers
            .contains("content-type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1"),
        "{}",
        r.headers
    );
    let explicit = tmp.path().join("explicit.dcm");
    std::fs::write(&explicit, &r.body).expect("write");
    assert_eq!(
        file_uids(&explicit),
        (sop.clone(), "1.2.840.10008.1.2.1".to_string())
    );
    let (same, max_diff) = compare_pixels(&ct, &explicit);
    assert!(same, "pixels differ by {max_diff}");
    // As stored: the data set byte for byte.
    let r = get("&contentType=application%2Fdicom&transferSyntax=1.2.840.10008.1.2");
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = tmp.path().join("stored.dcm");
    std::fs::write(&stored, &r.body).expect("write");
    assert_eq!(dataset_bytes(&stored), dataset_bytes(&ct));

    // Refusals, each with its reason.
    for (query, status, reason) in [
        ("&contentType=video%2Fmpeg", 406, "contentType"),
        ("&frameNumber=2", 400, "frame"),
        ("&windowCenter=40", 400, "together"),
        (
            "&contentType=application%2Fdicom&transferSyntax=1.2.840.10008.1.2.4.80",
            406,
            "cannot be converted",
        ),
    ] {
        let r = get(query);
        assert_eq!(r.status, status, "{query}: {}", r.text());
        assert!(r.text().contains(reason), "{query}: {}", r.text());
    }
    let url = |q: &str| format!("http://127.0.0.1:{}/wado?{q}", server.http_port);
    for (query, status) in [
        (
            format!("requestType=WADO&studyUID={study}&seriesUID={series}"),
            400,
        ),
        (
            format!("requestType=WADO&studyUID={study}&seriesUID=1.2.3&objectUID={sop}"),
            404,
        ),
        (
            format!("requestType=WADO&studyUID={study}&seriesUID={series}&objectUID=a%2Fb"),
            400,
        ),
        (
            format!("studyUID={study}&seriesUID={series}&objectUID={sop}"),
            400,
        ),
    ] {
        let r = curl(&url(&query), "GET", None, &[]);
        assert_eq!(r.status, status, "{query}: {}", r.text());
    }
}

/// With accounts, WADO-URI is authorized and scoped like the DICOMweb paths: a patient reads
/// their own study's images, not another patient's, and may not retrieve as billing.
#[test]
fn wado_uri_is_scoped_by_the_callers_patients() {
    use crate::security::{add_user, get, import_two_patients, session};
    let (_tmp, data) = data_dir();
    let root = data.parent().expect("parent").to_path_buf();
    import_two_patients(&data, 32);
    let config = root.join("pacs.toml");
    std::fs::write(&config, format!("data = {data:?}\n[auth]\n")).expect("config");
    add_user(&config, "admin", "admin", &[]);
    add_user(&config, "pata", "patient", &["--patient-id", "PAT00000"]);
    add_user(&config, "bill", "billing", &[]);
    let server = Server::start_with_config(&data, &config);
    let admin = session(&server, "admin");
    let list = get(
        &server,
        "/dicom-web/instances?includefield=00100020,0020000D,0020000E",
        Some(&admin),
    )
    .json();
    let uid =
        |i: &serde_json::Value, tag: &str| i[tag]["Value"][0].as_str().unwrap_or("").to_string();
    let query_for = |patient: &str| {
        let i = list
            .as_array()
            .and_then(|a| a.iter().find(|i| uid(i, "00100020") == patient))
            .unwrap_or_else(|| panic!("an instance of {patient}: {list}"));
        format!(
            "/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}",
            uid(i, "0020000D"),
            uid(i, "0020000E"),
            uid(i, "00080018")
        )
    };
    let pata = session(&server, "pata");
    let r = get(&server, &query_for("PAT00000"), Some(&pata));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        get(&server, &query_for("PAT00001"), Some(&pata)).status,
        404
    );
    assert_eq!(get(&server, &query_for("PAT00000"), None).status, 401);
    let bill = session(&server, "bill");
    let dicom = format!("{}&contentType=application/dicom", query_for("PAT00000"));
    assert_eq!(get(&server, &dicom, Some(&bill)).status, 403);
    assert_eq!(get(&server, &dicom, Some(&admin)).status, 200);
}
