//! De-identified export (`POST /api/studies/{uid}/export?profile=`): a zip of the study with
//! the identity removed (read back with pydicom), the same new UIDs for the same project and
//! other ones for another project, and the refusals.

use serde_json::Value;

use crate::security::{curl, import_two_patients};
use crate::support::*;

/// What pydicom reads in an exported zip: per file, PatientID, PatientName, the UIDs and
/// PatientIdentityRemoved.
fn read_zip(zip: &std::path::Path) -> Vec<Value> {
    let script = r#"
import json, sys, zipfile, io
import pydicom
out = []
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in sorted(z.namelist()):
        ds = pydicom.dcmread(io.BytesIO(z.read(name)))
        out.append({"name": name, "pid": str(ds.get("PatientID", "")), "pn": str(ds.get("PatientName", "")),
                    "study": ds.StudyInstanceUID, "sop": ds.SOPInstanceUID,
                    "meta_sop": ds.file_meta.MediaStorageSOPInstanceUID,
                    "removed": ds.get("PatientIdentityRemoved", ""), "rows": int(ds.Rows)})
print(json.dumps(out))
"#;
    let out = run(python().args(["-c", script]).arg(zip));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn a_study_exports_de_identified_with_consistent_uids() {
    let (tmp, data) = data_dir();
    import_two_patients(&data, 16);
    let server = Server::start(&data);
    let studies = server.json("/api/studies");
    let study = studies[0].as_str().expect("study").to_string();
    let export = |query: &str, file: &str| {
        let path = tmp.path().join(file);
        let r = curl(
            &format!(
                "http://127.0.0.1:{}/api/studies/{study}/export{query}",
                server.http_port
            ),
            "POST",
            None,
            &[],
        );
        std::fs::write(&path, &r.body).expect("write");
        (r, path)
    };
    let (r, first) = export("?profile=basic", "a.zip");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.contains("application/zip"), "{}", r.headers);
    let files = read_zip(&first);
    assert_eq!(files.len(), 4, "{files:?}");
    let new_study = files[0]["study"].as_str().expect("uid").to_string();
    assert_ne!(new_study, study);
    for f in &files {
        assert_eq!(f["removed"], "YES", "{f}");
        assert!(
            !f["pid"].as_str().unwrap_or("PAT").starts_with("PAT"),
            "{f}"
        );
        assert!(!f["pn"].as_str().unwrap_or_default().contains("PAT"), "{f}");
        assert_eq!(f["study"], new_study.as_str(), "one study, one new UID");
        assert_eq!(f["sop"], f["meta_sop"], "file meta follows");
        assert_eq!(f["rows"], 16, "pixel data kept");
    }
    // Same project: the same UIDs; another project: other ones.
    let (_, again) = export("", "b.zip");
    assert_eq!(read_zip(&again), files);
    let (_, other) = export("?profile=basic&project=research-2", "c.zip");
    assert_ne!(read_zip(&other)[0]["study"], new_study.as_str());

    // The pseudonym table re-identifies what the export handed out.
    let lookup = |query: &str| {
        curl(
            &format!(
                "http://127.0.0.1:{}/api/pseudonyms?{query}",
                server.http_port
            ),
            "GET",
            None,
            &[],
        )
    };
    let r = lookup(&format!("value={new_study}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["entries"][0]["kind"], "uid", "{}", r.text());
    assert_eq!(r.json()["entries"][0]["original"], study.as_str());
    let pid = files[0]["pid"].as_str().expect("pid");
    let r = lookup(&format!("value={pid}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["entries"][0]["original"]
            .as_str()
            .is_some_and(|o| o.starts_with("PAT0000")),
        "{}",
        r.text()
    );
    assert_eq!(lookup(&format!("value={pid}&project=other")).status, 404);
    assert_eq!(lookup("value=1.2.3.4").status, 404);

    let (r, _) = export("?profile=nope", "d.zip");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("basic"), "{}", r.text());
    let r = curl(
        &format!(
            "http://127.0.0.1:{}/api/studies/1.2.3/export",
            server.http_port
        ),
        "POST",
        None,
        &[],
    );
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn a_study_exports_de_identified_to_a_dicomweb_endpoint() {
    let (tmp, data) = data_dir();
    import_two_patients(&data, 16);
    let source = Server::start(&data);
    let (_tmp_b, data_b) = data_dir();
    let target = Server::start(&data_b);
    let study = source.json("/api/studies")[0]
        .as_str()
        .expect("study")
        .to_string();
    let export = |body: &str| {
        curl(
            &format!(
                "http://127.0.0.1:{}/api/studies/{study}/export?profile=basic",
                source.http_port
            ),
            "POST",
            None,
            &["-H", "Content-Type: application/json", "--data", body],
        )
    };
    let stow = format!(
        "{{\"stow\": \"http://127.0.0.1:{}/dicom-web/\"}}",
        target.http_port
    );
    let r = export(&stow);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stored"], 4, "{}", r.text());

    // The target holds the study de-identified, under the UID the zip export gives too.
    let zip = curl(
        &format!(
            "http://127.0.0.1:{}/api/studies/{study}/export?profile=basic",
            source.http_port
        ),
        "POST",
        None,
        &[],
    );
    let path = tmp.path().join("same.zip");
    std::fs::write(&path, &zip.body).expect("write");
    let new_study = read_zip(&path)[0]["study"]
        .as_str()
        .expect("uid")
        .to_string();
    assert_eq!(target.json("/api/studies"), serde_json::json!([new_study]));
    let meta = target.json(&format!("/dicom-web/studies/{new_study}/metadata"));
    let meta = meta.as_array().expect("metadata");
    assert_eq!(meta.len(), 4);
    for m in meta {
        assert_eq!(m["00120062"]["Value"][0], "YES", "{m}");
        let pid = m["00100020"]["Value"][0].as_str().unwrap_or_default();
        assert!(!pid.starts_with("PAT"), "{pid}");
    }
    // Sending again stores the same instances again (the same UIDs), nothing new.
    let r = export(&stow);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        target.json("/api/studies").as_array().map(Vec::len),
        Some(1)
    );

    // Refusals: not an http URL, an unknown key, an endpoint that is not there.
    let r = export("{\"stow\": \"ftp://127.0.0.1/dicom-web\"}");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = export("{\"stow\": \"http://127.0.0.1:9/x\", \"to\": \"AE\"}");
    assert_eq!(r.status, 400, "{}", r.text());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let r = export(&format!(
        "{{\"stow\": \"http://127.0.0.1:{port}/dicom-web\"}}"
    ));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("0 of 4"), "{}", r.text());
}

#[test]
fn a_research_link_downloads_its_study_de_identified_and_nothing_else() {
    use crate::security::{add_user, get, session};
    let (tmp, data) = data_dir();
    import_two_patients(&data, 16);
    let config = tmp.path().join("pacs.toml");
    std::fs::write(&config, format!("data = {data:?}\n[auth]\n")).expect("config");
    add_user(&config, "admin", "admin", &[]);
    add_user(&config, "rad", "radiologist", &[]);
    let server = Server::start_with_config(&data, &config);
    let admin = session(&server, "admin");
    let rad = session(&server, "rad");
    let studies = get(&server, "/api/studies", Some(&admin)).json();
    let study = studies[0].as_str().expect("study").to_string();
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let make = |token: &str, query: &str| {
        curl(
            &format!("{base}/api/studies/{study}/share{query}"),
            "POST",
            Some(token),
            &[],
        )
    };

    // Only an admin makes one; bad parameters are refused.
    assert_eq!(make(&rad, "?profile=basic").status, 403);
    assert_eq!(make(&admin, "?profile=nonesuch").status, 400);
    assert_eq!(make(&admin, "?hours=0").status, 400);
    let r = make(&admin, "?profile=basic&project=cohort-1&hours=2");
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["url"].as_str().expect("url").to_string();
    assert!(url.starts_with(&format!("{base}/api/research/")), "{url}");

    // The link, with no credentials: the study de-identified, as the export gives it.
    let link = curl(&url, "GET", None, &[]);
    assert_eq!(link.status, 200, "{}", link.text());
    let zip = tmp.path().join("research.zip");
    std::fs::write(&zip, &link.body).expect("write");
    let files = read_zip(&zip);
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files
        .iter()
        .all(|f| f["removed"] == "YES" && f["study"] != study.as_str()));
    let export = curl(
        &format!("{base}/api/studies/{study}/export?profile=basic&project=cohort-1"),
        "POST",
        Some(&admin),
        &[],
    );
    let exported = tmp.path().join("export.zip");
    std::fs::write(&exported, &export.body).expect("write");
    assert_eq!(
        read_zip(&exported)[0]["study"],
        files[0]["study"],
        "same project, same UIDs"
    );

    // It opens nothing else: not the portal summary, not an altered token, not another path.
    let token = url
        .split("/api/research/")
        .nth(1)
        .and_then(|t| t.strip_suffix("/study.zip"))
        .expect("token")
        .to_string();
    assert_eq!(
        get(&server, &format!("/api/share/{token}"), None).status,
        403
    );
    let first = if token.starts_with('A') { "B" } else { "A" };
    let altered = format!("{first}{}", &token[1..]);
    assert_eq!(
        get(&server, &format!("/api/research/{altered}/study.zip"), None).status,
        403
    );
    assert_eq!(
        get(
            &server,
            &format!("/api/research/{token}/study.zip"),
            Some(&admin)
        )
        .status,
        200,
        "the link is the credential, whoever sends it"
    );
    let audit = get(
        &server,
        "/api/audit?action=study.export&limit=20",
        Some(&admin),
    )
    .json();
    let research = audit["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| {
            r["detail"]
                .as_str()
                .unwrap_or_default()
                .starts_with("research link")
        })
        .count();
    assert_eq!(research, 2, "{audit}");
}

#[test]
fn a_query_exports_every_study_it_matches() {
    let (tmp, data) = data_dir();
    import_two_patients(&data, 16);
    let server = Server::start(&data);
    let export = |query: &str| {
        curl(
            &format!("http://127.0.0.1:{}/api/export?{query}", server.http_port),
            "POST",
            None,
            &[],
        )
    };
    let zip_of = |r: &crate::security::Reply, name: &str| {
        assert_eq!(r.status, 200, "{}", r.text());
        let path = tmp.path().join(name);
        std::fs::write(&path, &r.body).expect("write");
        read_zip(&path)
    };
    let one = zip_of(
        &export("PatientID=PAT00000&profile=basic&project=q"),
        "one.zip",
    );
    assert_eq!(one.len(), 4, "{one:?}");
    let both = zip_of(&export("PatientID=PAT0*&project=q"), "both.zip");
    assert_eq!(both.len(), 8);
    let mut studies: Vec<&str> = both.iter().filter_map(|f| f["study"].as_str()).collect();
    studies.sort();
    studies.dedup();
    assert_eq!(studies.len(), 2, "{both:?}");
    assert!(both.iter().all(|f| f["removed"] == "YES"));
    assert!(
        studies.contains(&one[0]["study"].as_str().expect("study")),
        "same project, same new UIDs"
    );
    for (bad, why) in [
        ("profile=basic", "name the studies"),
        ("PatientID=PAT00000&limit=5", "no meaning"),
        (
            "PatientID=PAT00000&profile=nonesuch",
            "no de-identification profile",
        ),
        ("NoSuchKey=1", ""),
    ] {
        let r = export(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.text().contains(why), "{bad}: {}", r.text());
    }
    let r = export("PatientID=NOBODY");
    assert_eq!(r.status, 404, "{}", r.text());
    let audit = server.json("/api/audit?action=study.export&limit=10");
    assert!(
        audit["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("2 studies matching"))),
        "{audit}"
    );
}
