//! `pacs import`: the same ingest path from disk, with a summary.

use std::process::Command;

use crate::support::*;

fn import(data: &std::path::Path, dir: &std::path::Path) -> std::process::Output {
    run(Command::new(env!("CARGO_BIN_EXE_pacs"))
        .args(["import", "--quiet", "--data"])
        .arg(data)
        .arg(dir))
}

#[test]
fn import_loads_samples_skips_non_dicom_and_refuses_a_running_servers_data() {
    let (tmp, data) = data_dir();
    let src = tmp.path().join("incoming");
    let nested = src.join("nested");
    std::fs::create_dir_all(&nested).expect("mkdir");
    for (i, f) in sample_files().iter().enumerate() {
        let dest = if i % 2 == 0 { &src } else { &nested };
        std::fs::copy(f, dest.join(f.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(src.join("notes.txt"), "not an image").expect("write");

    let out = import(&data, &src);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("11 files: 10 stored, 0 duplicates, 0 rejected, 1 skipped (not DICOM)"),
        "{stdout}"
    );
    assert!(stdout.contains("notes.txt"), "{stdout}");

    let out = import(&data, &src);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 stored, 10 duplicates"), "{stdout}");

    let server = Server::start(&data);
    assert_eq!(stats_tuple(&server.statistics()), (3, 4, 5, 10));
    let (sop, _) = file_uids(&samples().join("us_rgb_multiframe.dcm"));
    let rec = server.json(&format!("/api/instances/{sop}"));
    assert_eq!(rec["source"], "IMPORT");
    // Imported files are kept byte for byte, File Meta Information included.
    let blob = std::fs::read(server.blob_path(&sop)).expect("blob");
    assert!(blob == std::fs::read(samples().join("us_rgb_multiframe.dcm")).expect("sample"));

    let out = import(&data, &src);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "one clear line: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
