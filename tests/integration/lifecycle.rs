//! Start-up settings and clean shutdown.

use std::process::Command;

use crate::support::*;

#[test]
fn sigterm_finishes_and_closes_cleanly() {
    let (_tmp, data) = data_dir();
    let mut server = Server::start(&data);
    storescu(&server, &[samples().join("mr_rle.dcm")]);
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(server.log().contains("stopped"), "{}", server.log());
    let server = Server::start(&data);
    assert_eq!(stats_tuple(&server.statistics()), (1, 1, 1, 1));
}

#[test]
fn config_file_in_the_working_directory_is_read() {
    let (tmp, data) = data_dir();
    // The harness runs the server in the data dir's parent, where this file is found.
    std::fs::write(
        tmp.path().join("pacs.toml"),
        "ae_title = \"FILEAE\"\nmax_associations = 8\n",
    )
    .expect("write");
    let server = Server::start(&data);
    let out = run(dcmtk("echoscu").args(["-aec", "FILEAE", "127.0.0.1", &server.port()]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_help_documents_every_setting() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_pacs")).args(["serve", "--help"]));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--data",
        "--ae-title",
        "--dicom-port",
        "--http-port",
        "--dicom-bind",
        "--http-bind",
        "--max-associations",
        "--duplicates",
        "PACS_AE_TITLE",
        "PACS_DATA",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}
