//! Fill an index with a synthetic population (index records only, no pixel data) and measure
//! the query engine's study-level latency in-process. `benches/qr.sh` runs it, then measures
//! the same queries over DIMSE and C-MOVE throughput.
//!
//! usage: cargo bench --bench qr_populate -- DATA_DIR [STUDIES] [INSTANCES_PER_STUDY]

use std::time::Instant;

use pacs_storage::index::{DuplicatePolicy, Index, NewInstance, RocksIndex};
use pacs_storage::query::{Level, MatchOptions, Matcher, Query, QueryKey};
use pacs_storage::records::{patient_key, AttrValue, Attributes, InstanceRecord};
use pacs_storage::BlobKey;

const FAMILY: &[&str] = &[
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "JONES",
    "GARCIA",
    "MILLER",
    "DAVIS",
    "RODRIGUEZ",
    "MARTINEZ",
    "HERNANDEZ",
    "LOPEZ",
    "GONZALEZ",
    "WILSON",
    "ANDERSON",
    "THOMAS",
    "TAYLOR",
    "MOORE",
    "JACKSON",
    "MARTIN",
    "LEE",
    "PEREZ",
    "THOMPSON",
    "WHITE",
    "HARRIS",
    "SANCHEZ",
];
const GIVEN: &[&str] = &[
    "JOHN", "MARY", "JAMES", "PATRICIA", "ROBERT", "JENNIFER", "MICHAEL", "LINDA",
];
const MODALITIES: &[&str] = &["CT", "MR", "CR", "US", "DX", "MG", "PT", "NM"];

fn attrs(pairs: &[(&str, &str, String)]) -> Attributes {
    pairs
        .iter()
        .map(|(t, vr, v)| {
            (
                t.to_string(),
                AttrValue {
                    vr: vr.to_string(),
                    values: vec![v.clone()],
                },
            )
        })
        .collect()
}

fn study_date(n: usize) -> String {
    // Spread over 2015-2024, 360 "days" a year for simplicity.
    let day = (n * 7919) % 3600;
    format!(
        "{}{:02}{:02}",
        2015 + day / 360,
        (day % 360) / 30 + 1,
        day % 30 + 1
    )
}

fn population(studies: usize, per_study: usize) -> impl Iterator<Item = Vec<NewInstance>> {
    (0..studies).map(move |n| {
        let patient = n % (studies / 3).max(1);
        let pid = format!("P{patient:07}");
        let name = format!(
            "{}^{}",
            FAMILY[patient % FAMILY.len()],
            GIVEN[patient % GIVEN.len()]
        );
        let modality = MODALITIES[n % MODALITIES.len()];
        let study_uid = format!("1.2.826.0.1.3680043.9.7.{n}");
        let series_uid = format!("{study_uid}.1");
        (0..per_study)
            .map(|i| NewInstance {
                record: InstanceRecord {
                    sop_instance_uid: format!("{series_uid}.{i}"),
                    sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                    series_instance_uid: series_uid.clone(),
                    study_instance_uid: study_uid.clone(),
                    patient_key: patient_key(&pid, ""),
                    transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
                    size: 525_000,
                    blob: BlobKey(format!("synthetic/{n}/{i}")),
                    sha256: None,
                    received_ms: 0,
                    source: "BENCH".into(),
                    attributes: attrs(&[("00200013", "IS", (i + 1).to_string())]),
                    versions: Vec::new(),
                },
                patient: attrs(&[
                    ("00100010", "PN", name.clone()),
                    ("00100020", "LO", pid.clone()),
                ]),
                study: attrs(&[
                    ("00080020", "DA", study_date(n)),
                    ("00080050", "SH", format!("ACC{n:08}")),
                    ("00081030", "LO", format!("{modality} EXAM")),
                ]),
                series: attrs(&[("00080060", "CS", modality.to_string())]),
            })
            .collect()
    })
}

fn key(tag: &str, vr: &str, value: &str) -> QueryKey {
    QueryKey {
        tag: tag.into(),
        vr: vr.into(),
        matcher: Matcher::parse(vr, value).expect("valid key"),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let dir = args
        .first()
        .cloned()
        .unwrap_or_else(|| "/tmp/pacs-qr-bench".into());
    let studies: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let per_study: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    // PACS_INDEX_URL: populate and query a PostgreSQL index instead (benches/scale_out.sh).
    let index: Box<dyn Index> = match std::env::var("PACS_INDEX_URL") {
        Ok(url) => Box::new(
            pacs_storage::pg::PgIndex::open(&pacs_storage::IndexSettings {
                url,
                max_connections: 4,
            })
            .expect("open the PostgreSQL index"),
        ),
        Err(_) => Box::new(
            RocksIndex::open(std::path::Path::new(&dir).join("index")).expect("open index"),
        ),
    };

    let have = index.statistics().expect("stats").studies as usize;
    if have < studies {
        let started = Instant::now();
        let mut batch = Vec::new();
        for (n, instances) in population(studies, per_study).enumerate().skip(have) {
            batch.extend(instances);
            if batch.len() >= 5000 || n + 1 == studies {
                index
                    .store_instances(std::mem::take(&mut batch), DuplicatePolicy::Keep)
                    .expect("store");
            }
        }
        let s = started.elapsed().as_secs_f64();
        println!(
            "populated {studies} studies / {} instances in {s:.1} s ({:.0} instances/s)",
            studies * per_study,
            (studies * per_study) as f64 / s
        );
    }
    println!("index: {:?}", index.statistics().expect("stats"));

    let queries: Vec<(&str, Vec<QueryKey>)> = vec![
        ("PatientID exact", vec![key("00100020", "LO", "P0012345")]),
        (
            "PatientName prefix",
            vec![key("00100010", "PN", "GONZALEZ^MI*")],
        ),
        (
            "StudyDate month range",
            vec![key("00080020", "DA", "20210301-20210330")],
        ),
        (
            "AccessionNumber",
            vec![key("00080050", "SH", "ACC00054321")],
        ),
        (
            "ModalitiesInStudy=CT + date range",
            vec![
                key("00080061", "CS", "CT"),
                key("00080020", "DA", "20230101-20230130"),
            ],
        ),
    ];
    println!(
        "{:<36} {:>8} {:>10} {:>10}",
        "C-FIND study level (engine)", "matches", "p50 ms", "p99 ms"
    );
    for (name, keys) in queries {
        let mut query = Query {
            level: Level::Study,
            keys,
            options: MatchOptions::default(),
            relational: false,
        };
        for (tag, vr) in [
            ("0020000D", "UI"),
            ("00100010", "PN"),
            ("00081030", "LO"),
            ("00201208", "IS"),
        ] {
            if !query.keys.iter().any(|k| k.tag == tag) {
                query.keys.push(key(tag, vr, ""));
            }
        }
        let mut times = Vec::new();
        let mut matches = 0;
        for _ in 0..200 {
            let t = Instant::now();
            let mut n = 0;
            index
                .find(&query, &mut |_| {
                    n += 1;
                    true
                })
                .expect("query");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            matches = n;
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<36} {matches:>8} {:>10.3} {:>10.3}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
}
