//! Per-node access from `pacs.toml`: who may associate, from where, and with which services.

use crate::support::*;

#[test]
fn restricted_nodes_get_only_their_services() {
    let (tmp, data) = data_dir();
    std::fs::write(
        tmp.path().join("pacs.toml"),
        "restrict_to_nodes = true\n\n\
         [[nodes]]\nae_title = \"FINDONLY\"\nhost = \"127.0.0.1\"\nport = 104\nallow = [\"find\"]\n\n\
         [[nodes]]\nae_title = \"MODALITY\"\nhost = \"127.0.0.1\"\nport = 104\nallow = [\"store\"]\n\n\
         [[nodes]]\nae_title = \"ELSEWHERE\"\nhost = \"10.9.9.9\"\nport = 104\n",
    )
    .expect("pacs.toml");
    let server = Server::start(&data);
    let echo = |aet: &str| {
        run(dcmtk("echoscu").args(["-aet", aet, "-aec", AE, "127.0.0.1", &server.port()]))
    };

    // Unlisted title, or a listed title from another address: A-ASSOCIATE-RJ.
    let v = scu(&["echo", &server.port()]);
    assert_eq!(v["rejected"]["reason"], 3, "calling AE not recognized: {v}");
    let out = echo("ELSEWHERE");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && log.contains("Reason: Calling AE Title Not Recognized"),
        "a listed title from another address is rejected as not recognized: {log}"
    );
    assert!(echo("FINDONLY").status.success());

    // A store-only node stores; a find-only node's storage contexts are refused.
    let file = samples().join("mr_explicit.dcm");
    let out = run(dcmtk("storescu")
        .args(["-aet", "MODALITY", "-aec", AE, "127.0.0.1", &server.port()])
        .arg(&file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(dcmtk("storescu")
        .args(["-aet", "FINDONLY", "-aec", AE, "127.0.0.1", &server.port()])
        .arg(&file));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && log.contains("No Acceptable Presentation Contexts"),
        "a find-only node's storage contexts are refused: {log}"
    );

    let find = |aet: &str| {
        run(dcmtk("findscu").args([
            "-v",
            "-S",
            "-aet",
            aet,
            "-aec",
            AE,
            "127.0.0.1",
            &server.port(),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientID=MRN-200871",
        ]))
    };
    let out = find("FINDONLY");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches("(Pending)").count(), 1, "{log}");
    assert!(
        log.contains("Received Final Find Response (Success)"),
        "{log}"
    );
    // A store-only node gets no answer at all: its query contexts are refused, so no query
    // ran (not a query that failed or matched nothing).
    let out = find("MODALITY");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && log.contains("No Acceptable Presentation Contexts"),
        "{log}"
    );
    assert_eq!(log.matches("(Pending)").count(), 0, "{log}");
    assert!(
        server.log().contains("association rejected"),
        "refusals are logged"
    );
    assert_eq!(stats_tuple(&server.statistics()), (1, 1, 1, 1));
}
