//! Fill an index with N synthetic imaging orders for the modality worklist benchmark, and dump
//! the orders exactly as the intake stored them (with the Study Instance UID, procedure and step
//! IDs it assigned) as JSON lines, from which `benches/mwl_wl.py` writes the same items as
//! Orthanc worklist files. `benches/mwl.sh` runs both.
//!
//! usage: cargo bench --bench mwl_populate -- DATA_DIR N ORDERS_JSONL

use std::io::Write;

use pacs_storage::index::RocksIndex;
use pacs_storage::order_intake::{receive, Intent};
use pacs_storage::orders::{
    Code, Order, OrderPatient, OrderSource, OrderStatus, Priority, ScheduledStep,
};

/// 64 family names, one of them starting with SMI (so `SMI*` matches about 1.6% of orders),
/// some with Latin-1 letters.
const FAMILY: &[&str] = &[
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "JONES",
    "GARCÍA",
    "MILLER",
    "DAVIS",
    "RODRÍGUEZ",
    "MARTÍNEZ",
    "HERNÁNDEZ",
    "LÓPEZ",
    "GONZÁLEZ",
    "WILSON",
    "ANDERSON",
    "THOMAS",
    "TAYLOR",
    "MOORE",
    "JACKSON",
    "MARTIN",
    "LEE",
    "PÉREZ",
    "THOMPSON",
    "WHITE",
    "HARRIS",
    "SÁNCHEZ",
    "CLARK",
    "RAMÍREZ",
    "LEWIS",
    "ROBINSON",
    "WALKER",
    "YOUNG",
    "MÜLLER",
    "SCHMIDT",
    "SCHNEIDER",
    "FISCHER",
    "WEBER",
    "MEYER",
    "WAGNER",
    "BECKER",
    "SCHÄFER",
    "KÖHLER",
    "LEFÈVRE",
    "FRANÇOIS",
    "DUPONT",
    "BERNARD",
    "DUBOIS",
    "ROUSSEAU",
    "JOHANSSON",
    "ÅBERG",
    "SØRENSEN",
    "NIELSEN",
    "BJÖRK",
    "LINDQVIST",
    "HANSEN",
    "OLSEN",
    "ROSSI",
    "FERRARI",
    "ESPOSITO",
    "BIANCHI",
    "ROMANO",
    "COLOMBO",
    "BRAGANÇA",
    "CONCEIÇÃO",
];
const GIVEN: &[&str] = &[
    "JOHN",
    "MARY",
    "JAMES",
    "PATRICIA",
    "ROBERT",
    "JENNIFER",
    "MICHAEL",
    "LINDA",
    "JOSÉ",
    "ANNA",
    "JÜRGEN",
    "RENÉE",
    "BJØRN",
    "INÊS",
    "LUCÍA",
    "FRANÇOISE",
];
/// A modality, its number of stations and its procedures as (code, meaning).
type Modality = (&'static str, usize, &'static [(&'static str, &'static str)]);

const MODALITIES: &[Modality] = &[
    (
        "CT",
        8,
        &[
            ("24627-2", "CT Chest"),
            ("30799-1", "CT Head"),
            ("36813-4", "CT Abdomen and Pelvis"),
            ("24725-4", "CT Head WO contrast"),
        ],
    ),
    (
        "MR",
        6,
        &[
            ("24590-2", "MR Brain"),
            ("24939-1", "MR Knee"),
            ("36229-3", "MR Lumbar spine"),
        ],
    ),
    (
        "US",
        6,
        &[("24558-9", "US Abdomen"), ("24869-0", "US Pelvis")],
    ),
    (
        "CR",
        5,
        &[
            ("36572-6", "XR Chest PA and Lateral"),
            ("37638-4", "XR Hand"),
        ],
    ),
    (
        "DX",
        5,
        &[("36554-4", "XR Chest PA"), ("37296-1", "XR Knee")],
    ),
];
const PRIORITIES: &[Priority] = &[
    Priority::Routine,
    Priority::Routine,
    Priority::Routine,
    Priority::Routine,
    Priority::Medium,
    Priority::High,
    Priority::Low,
    Priority::Stat,
];
/// The worklist's days: 2026-12-01 .. 2027-01-29 (60 days).
pub const DAYS: usize = 60;

fn day(n: usize) -> String {
    if n < 31 {
        format!("202612{:02}", n + 1)
    } else {
        format!("202701{:02}", n - 30)
    }
}

/// SplitMix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn order(rng: &mut Rng, n: usize) -> Order {
    let acc = format!("A{:06}", n + 1);
    let stations: usize = MODALITIES.iter().map(|m| m.1).sum();
    // Station first (30 of them), the modality follows from it.
    let mut s = rng.below(stations);
    let (modality, procedures) = MODALITIES
        .iter()
        .find_map(|(m, count, procs)| {
            if s < *count {
                Some((*m, *procs))
            } else {
                s -= count;
                None
            }
        })
        .expect("station");
    let station = format!("{modality}{:02}", s + 1);
    let (code, meaning) = *rng.pick(procedures);
    let slot = rng.below(48); // 07:00 .. 18:45 in 15-minute slots
    let time = format!("{:02}{:02}00", 7 + slot / 4, (slot % 4) * 15);
    let birth = format!(
        "{}{:02}{:02}",
        1930 + rng.below(90),
        1 + rng.below(12),
        1 + rng.below(28)
    );
    let name = format!("{}^{}", rng.pick(FAMILY), rng.pick(GIVEN));
    let sex = if rng.below(2) == 0 { "F" } else { "M" };
    Order {
        accession_number: acc.clone(),
        placer_order_number: Some(format!("PL{:06}", n + 1)),
        filler_order_number: None,
        status: OrderStatus::Scheduled,
        patient: OrderPatient {
            id: format!("PID{:07}", rng.below(1_000_000)),
            issuer: "HOSP".into(),
            name,
            birth_date: birth,
            sex: sex.into(),
        },
        study_instance_uid: String::new(),
        requested_procedure_id: String::new(),
        procedure: Some(Code {
            value: code.into(),
            scheme: "LN".into(),
            meaning: meaning.into(),
        }),
        procedure_description: meaning.into(),
        priority: *rng.pick(PRIORITIES),
        reason: String::new(),
        requesting_physician: "HOUSE^GREGORY".into(),
        referring_physician: String::new(),
        admission_id: String::new(),
        step: ScheduledStep {
            id: String::new(),
            modality: modality.into(),
            station_ae_title: station,
            start_date: day(rng.below(DAYS)),
            start_time: time,
            description: meaning.into(),
            ..Default::default()
        },
        charset: "ISO_IR 100".into(),
        source: OrderSource::Hl7,
        created_ms: 0,
        updated_ms: 0,
        performed_steps: Vec::new(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(data), Some(n), Some(out)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: mwl_populate DATA_DIR N ORDERS_JSONL");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N");
    let data = std::path::Path::new(data);
    let done = data.join(format!(".mwl-{n}"));
    if done.exists() && std::path::Path::new(out).exists() {
        eprintln!("{} orders already in {}", n, data.display());
        return;
    }
    let _ = std::fs::remove_dir_all(data);
    std::fs::create_dir_all(data).expect("data dir");
    let index = RocksIndex::open(data.join("index")).expect("index");
    let mut jsonl = std::io::BufWriter::new(std::fs::File::create(out).expect("jsonl"));
    let mut rng = Rng(0x4D57_4C00);
    let t0 = std::time::Instant::now();
    for i in 0..n {
        let placed = receive(&index, order(&mut rng, i), Intent::Place, 1_000 + i as u64)
            .expect("place order");
        serde_json::to_writer(&mut jsonl, &placed.order).expect("json");
        jsonl.write_all(b"\n").expect("json");
    }
    jsonl.flush().expect("json");
    drop(index);
    std::fs::write(&done, b"").expect("marker");
    eprintln!("{n} orders placed in {:.1} s", t0.elapsed().as_secs_f64());
}
