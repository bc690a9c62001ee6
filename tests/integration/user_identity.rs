//! DICOM User Identity negotiation against the real server, with pynetdicom and dcmtk as the
//! requestors: who may associate under `dicom_user_identity = "required"`, what their role
//! lets them negotiate, which patients their scope lets C-FIND and C-GET see, a node that is
//! exempt, and the audit trail naming the users.

use std::path::Path;

use serde_json::Value;

use crate::security::{
    add_user, audit, get, import_two_patients, jwt, session, testdata, AUD, ISS, PASSWORD,
};
use crate::support::*;

/// One association by tests/support/identity_scu.py; its JSON line.
fn identity_scu(server: &Server, args: &[&str]) -> Value {
    let out = run(python()
        .arg(repo().join("tests/support/identity_scu.py"))
        .arg(server.port())
        .args(args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!(
            "identity_scu.py {args:?}: stdout={stdout} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn assert_rejected(v: &Value, what: &str) {
    // A-ASSOCIATE-RJ: rejected-permanent, by the service user, no reason given.
    assert_eq!(
        v["rejected"],
        serde_json::json!({"result": 1, "source": 1, "reason": 1}),
        "{what}: {v}"
    );
}

fn storescu(server: &Server, file: &Path, args: &[&str]) -> std::process::Output {
    run(dcmtk("storescu")
        .args(["-aec", "PACS", "-ta", "20", "-td", "20"])
        .args(args)
        .arg("127.0.0.1")
        .arg(server.port())
        .arg(file))
}

#[test]
fn user_identity_decides_who_associates_and_what_they_see() {
    let (_tmp, data) = data_dir();
    let root = data.parent().expect("parent").to_path_buf();
    // Two patients, PAT00000 and PAT00001, one study of 4 instances each.
    import_two_patients(&data, 32);
    let extra = root.join("extra");
    generate(
        &extra,
        3,
        &["--rows", "16", "--cols", "16", "--seed", "extra"],
    );
    let extra_files = files_under(&extra);

    let config = root.join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "data = {data:?}\ndicom_user_identity = \"required\"\n\
             [auth]\n[auth.oidc]\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\njwks_file = {:?}\n\
             [[nodes]]\nae_title = \"CT1\"\nhost = \"127.0.0.1\"\nport = 104\n\
             user_identity = \"none\"\n",
            testdata().join("jwks.json")
        ),
    )
    .expect("config");
    add_user(&config, "admin", "admin", &[]);
    add_user(&config, "rad", "radiologist", &[]);
    add_user(&config, "bill", "billing", &[]);
    add_user(&config, "tech", "technologist", &[]);
    let server = Server::start_with_config(&data, &config);
    let admin = session(&server, "admin");
    let studies = get(
        &server,
        "/dicom-web/studies?includefield=00100020",
        Some(&admin),
    )
    .json();
    let mut own = String::new();
    let mut other = String::new();
    for s in studies.as_array().map(Vec::as_slice).unwrap_or_default() {
        let uid = s["0020000D"]["Value"][0].as_str().unwrap_or("").to_string();
        match s["00100020"]["Value"][0].as_str() {
            Some("PAT00001") => own = uid,
            _ => other = uid,
        }
    }

    // 1. Without an identity, with a bare name, a wrong password or an expired token: refused.
    assert_rejected(&identity_scu(&server, &[]), "no identity");
    assert_rejected(&identity_scu(&server, &["--user", "rad"]), "name only");
    assert_rejected(
        &identity_scu(&server, &["--user", "rad", "--password", "wrong"]),
        "wrong password",
    );
    let expired = jwt("rsa.pem", &["--role", "radiologist", "--exp-in", "-3600"]);
    assert_rejected(&identity_scu(&server, &["--jwt", &expired]), "expired JWT");
    let forged = jwt("rsa-other.pem", &["--role", "radiologist"]);
    assert_rejected(&identity_scu(&server, &["--jwt", &forged]), "forged JWT");
    // Kerberos (type 3) is not supported: under "required" that is a refusal too.
    assert_rejected(
        &identity_scu(&server, &["--user", "ticket", "--type", "3"]),
        "kerberos",
    );

    // 2. A radiologist by password: every service of the role, every patient, and the
    // positive response asked for (zero length for a password, PS3.7 D.3.3.7.2).
    let rad = identity_scu(
        &server,
        &[
            "--user",
            "rad",
            "--password",
            PASSWORD,
            "--positive",
            "--get",
            &other,
        ],
    );
    assert_eq!(rad["established"], true, "{rad}");
    assert_eq!(rad["positive_response"], "", "{rad}");
    assert_eq!(
        rad["patients"],
        serde_json::json!(["PAT00000", "PAT00001"]),
        "{rad}"
    );
    assert_eq!(rad["get"]["received"], 4, "{rad}");
    assert_eq!(rad["get"]["status"], 0, "{rad}");
    // Not asked for: no user identity item in the A-ASSOCIATE-AC.
    let quiet = identity_scu(&server, &["--user", "rad", "--password", PASSWORD]);
    assert_eq!(quiet["established"], true, "{quiet}");
    assert_eq!(quiet["positive_response"], Value::Null, "{quiet}");

    // 3. A patient's token: C-FIND sees their own study only, C-GET of another patient's study
    // sends nothing, their own study arrives whole.
    let patient = jwt(
        "rsa.pem",
        &[
            "--role",
            "patient",
            "--patient-id",
            "PAT00001",
            "--sub",
            "bob",
        ],
    );
    let bob = identity_scu(&server, &["--jwt", &patient, "--get", &other]);
    assert_eq!(bob["established"], true, "{bob}");
    assert_eq!(bob["patients"], serde_json::json!(["PAT00001"]), "{bob}");
    assert_eq!(bob["get"]["received"], 0, "{bob}");
    let bob = identity_scu(&server, &["--jwt", &patient, "--get", &own]);
    assert_eq!(bob["get"]["received"], 4, "{bob}");

    // 4. Billing searches but retrieves and stores nothing: C-MOVE, C-GET and storage are not
    // negotiated.
    let bill = identity_scu(&server, &["--user", "bill", "--password", PASSWORD]);
    assert_eq!(bill["established"], true, "{bill}");
    let accepted = bill["accepted"].as_array().cloned().unwrap_or_default();
    assert!(accepted.contains(&"find".into()), "{bill}");
    assert!(!accepted.contains(&"get".into()), "{bill}");
    assert!(!accepted.contains(&"move".into()), "{bill}");
    assert!(!accepted.contains(&"ct-storage".into()), "{bill}");
    assert_eq!(bill["patients"].as_array().map(Vec::len), Some(2), "{bill}");

    // 5. dcmtk: a technologist stores with a password; without one the association is refused;
    // the scanner's node is exempt (`user_identity = "none"`) and stores without.
    let out = storescu(
        &server,
        &extra_files[0],
        &["--user", "tech", "--password", PASSWORD, "--pos-response"],
    );
    assert!(
        out.status.success(),
        "technologist store: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = storescu(&server, &extra_files[1], &["-aet", "STORESCU"]);
    assert!(!out.status.success(), "stored without an identity");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(log.contains("Association Rejected"), "{log}");
    let out = storescu(&server, &extra_files[1], &["-aet", "CT1"]);
    assert!(
        out.status.success(),
        "exempt node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token_file = root.join("tech.jwt");
    let token = jwt("rsa.pem", &["--role", "technologist", "--sub", "carol"]);
    std::fs::write(&token_file, token).expect("jwt");
    let token_arg = token_file.to_str().expect("utf-8");
    let out = storescu(&server, &extra_files[2], &["--jwt", token_arg]);
    assert!(
        out.status.success(),
        "storescu --jwt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = get(&server, "/api/statistics", Some(&admin)).json();
    assert_eq!(stats["instances"], 11, "{stats}");

    // 6. The audit trail names the users, refused or served.
    let records = audit(&server, &admin, "interface=dimse");
    let has = |f: &dyn Fn(&Value) -> bool| records.iter().any(f);
    let detail = |r: &Value, text: &str| r["detail"].as_str().is_some_and(|d| d.contains(text));
    assert!(
        has(&|r| r["action"] == "dimse.associate"
            && r["outcome"] == "denied"
            && r["user"] == "rad"
            && detail(r, "user identity refused")),
        "no record of rad's wrong password: {records:?}"
    );
    assert!(
        has(&|r| r["action"] == "dimse.c-find"
            && r["user"] == "rad"
            && detail(r, "user identity by password")),
        "no C-FIND record for rad"
    );
    assert!(
        has(&|r| r["action"] == "dimse.c-get" && r["user"] == "bob" && detail(r, "by jwt")),
        "no C-GET record for bob"
    );
    assert!(
        has(&|r| r["action"] == "dimse.c-store" && r["user"] == "tech"),
        "no C-STORE record for tech"
    );
    assert!(
        has(&|r| r["action"] == "dimse.c-store" && r["user"] == "carol"),
        "no C-STORE record for the JWT's subject"
    );
}
