//! C-STORE of every sample encoding, parallel load, durability and duplicates.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::support::*;

/// Each sample's record, blob bytes and file meta match what was sent.
fn check_samples(server: &Server) {
    for file in sample_files() {
        let (sop, ts) = file_uids(&file);
        let rec = server.json(&format!("/api/instances/{sop}"));
        assert_eq!(
            rec["transfer_syntax_uid"],
            ts.as_str(),
            "{}",
            file.display()
        );
        assert_eq!(rec["source"], "STORESCU");
        let blob = server.blob_path(&sop);
        assert!(
            dataset_bytes(&blob) == dataset_bytes(&file),
            "stored data set of {} differs from what was sent",
            file.display()
        );
        assert_eq!(
            rec["size"].as_u64(),
            Some(std::fs::metadata(&blob).expect("blob").len())
        );
        // The blob is a Part 10 file any tool opens, recording the sender.
        let out = run(dcmtk("dcmdump")
            .args(["-s", "-Un", "+P", "0002,0016", "+P", "0002,0010"])
            .arg(&blob));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("[STORESCU]"), "{text}");
        assert!(text.contains(&format!("[{ts}]")), "{text}");
    }
}

#[test]
fn every_sample_encoding_is_stored_as_received_and_survives_restart() {
    let (_tmp, data) = data_dir();
    let mut server = Server::start(&data);
    storescu(&server, &sample_files());

    // 3 patients, 4 studies, 5 series, 10 instances (sample-dicom/README.md).
    let stats = server.statistics();
    assert_eq!(stats_tuple(&stats), (3, 4, 5, 10), "{stats}");
    let blob_total: u64 = sample_files()
        .iter()
        .map(|f| {
            std::fs::metadata(server.blob_path(&file_uids(f).0))
                .expect("blob")
                .len()
        })
        .sum();
    assert_eq!(stats["bytes"].as_u64(), Some(blob_total));
    check_samples(&server);

    // The CR study holds the CR image and the secondary capture: two series, two modalities.
    let (cr_sop, _) = file_uids(&samples().join("cr_jpeg_lossless_monochrome1.dcm"));
    let study_uid = server.json(&format!("/api/instances/{cr_sop}"))["study_instance_uid"]
        .as_str()
        .expect("study uid")
        .to_string();
    let study = server.json(&format!("/api/studies/{study_uid}"));
    assert_eq!(study["study"]["num_series"], 2, "{study}");
    assert_eq!(study["study"]["num_instances"], 2);
    assert_eq!(
        study["study"]["modalities"],
        serde_json::json!(["CR", "OT"])
    );
    assert_eq!(study["series"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        study["study"]["attributes"]["00100010"]["values"][0],
        "SMITH^JOHN"
    );
    assert_eq!(
        study["study"]["attributes"]["00080050"]["values"][0],
        "A2023120144"
    );

    server.terminate();
    let server = Server::start(&data);
    assert_eq!(stats_tuple(&server.statistics()), (3, 4, 5, 10));
    check_samples(&server);

    // Sending everything again changes nothing: duplicates are kept, answered with success.
    storescu(&server, &sample_files());
    assert_eq!(stats_tuple(&server.statistics()), (3, 4, 5, 10));
    let blobs = files_under(&data.join("blobs"));
    assert_eq!(blobs.len(), 10, "no orphan blobs from duplicates");
}

#[test]
fn hundreds_of_instances_over_four_parallel_associations() {
    let (tmp, data) = data_dir();
    let small = tmp.path().join("small");
    let large = tmp.path().join("large");
    // 400 small CTs: 4 series of 100, 2 studies, 2 patients.
    generate(
        &small,
        400,
        &["--rows", "64", "--cols", "64", "--seed", "small"],
    );
    // 6 large CTs (8 MB each) in one more study of patient 0, interleaved with the small ones.
    generate(
        &large,
        6,
        &["--rows", "2048", "--cols", "2048", "--seed", "large"],
    );
    let server = Server::start(&data);

    let mut files: Vec<String> = Vec::new();
    let mut large_files: Vec<PathBuf> = files_under(&large);
    large_files.sort();
    let mut small_files: Vec<PathBuf> = files_under(&small);
    small_files.sort();
    for (i, f) in small_files.iter().enumerate() {
        files.push(f.display().to_string());
        if i % 67 == 0 {
            if let Some(l) = large_files.pop() {
                files.push(l.display().to_string());
            }
        }
    }
    let mut args = vec![
        "store".to_string(),
        server.port(),
        "--threads".into(),
        "4".into(),
    ];
    args.extend(files.iter().cloned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = scu(&argv);
    assert_eq!(v["statuses"]["0x0000"], 406, "{v}");
    assert_eq!(v["failed"].as_array().map(Vec::len), Some(0), "{v}");

    let stats = server.statistics();
    assert_eq!(stats_tuple(&stats), (2, 3, 5, 406), "{stats}");
    let mut seen = BTreeSet::new();
    for f in files.iter().map(PathBuf::from) {
        let (sop, _) = file_uids(&f);
        assert!(seen.insert(sop.clone()));
        assert!(
            dataset_bytes(&server.blob_path(&sop)) == dataset_bytes(&f),
            "{} differs",
            f.display()
        );
    }
    let staged: Vec<_> = files_under(&data.join("blobs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    assert!(staged.is_empty(), "no staged leftovers: {staged:?}");
}

#[test]
fn acknowledged_store_survives_kill_9() {
    let (_tmp, data) = data_dir();
    let mut server = Server::start(&data);
    let file = samples().join("ct_16bit_signed_implicit.dcm");
    storescu(&server, std::slice::from_ref(&file));
    server.kill9();

    let server = Server::start(&data);
    assert_eq!(stats_tuple(&server.statistics()), (1, 1, 1, 1));
    let (sop, _) = file_uids(&file);
    assert!(
        dataset_bytes(&server.blob_path(&sop)) == dataset_bytes(&file),
        "bytes differ"
    );
}

#[test]
fn overwrite_policy_replaces_the_stored_copy() {
    let (tmp, data) = data_dir();
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &["--duplicates", "overwrite"],
            ..Default::default()
        },
    );
    let original = samples().join("mr_explicit.dcm");
    storescu(&server, std::slice::from_ref(&original));
    let (sop, _) = file_uids(&original);
    let first_blob = server.blob_path(&sop);

    // Same SOP Instance UID, changed content.
    let changed = tmp.path().join("changed.dcm");
    std::fs::copy(&original, &changed).expect("copy");
    let out = run(dcmtk("dcmodify")
        .args(["-nb", "-m", "SeriesDescription=CORRECTED"])
        .arg(&changed));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    storescu(&server, std::slice::from_ref(&changed));

    assert_eq!(stats_tuple(&server.statistics()), (1, 1, 1, 1));
    let blob = server.blob_path(&sop);
    assert_ne!(blob, first_blob);
    assert!(!first_blob.exists(), "replaced blob is removed");
    assert!(
        dataset_bytes(&blob) == dataset_bytes(&changed),
        "bytes differ"
    );
}
