//! Checks the crate's de-identification of real multi-vendor files against an independent
//! copy of PS3.15 Table E.1-1 (tests/data/ps3.15-e1-1.tsv, from the PyPI package idiscore;
//! see tests/data/README.md). The oracle is read here, never through the crate's table.
//!
//! Files: /work/main/sample-dicom/*.dcm (the repository's samples) and pydicom's bundled test
//! files, found in the repository's .venv or through the Python named by PACS_TEST_PYTHON.
//! Each file is de-identified with the basic profile, the basic profile plus each option, and
//! all options; every attribute the oracle lists, at every nesting level, must have had the
//! action the oracle gives for that profile. The test prints how many files and attribute
//! checks it made.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use pacs_deid::{deidentify_file, DateOption, HashedPseudonyms, MappingKind, Profile};

const COLUMNS: [&str; 11] = [
    "basic",
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_full_dates",
    "retain_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
];

/// Rows of Table E.1-1 added after the oracle's edition (scraped 2024-09-19) that the crate's
/// newer table (DICOM 2026c) lists with X, X/D or D: these may be removed or given a dummy
/// although the oracle does not list them. Checked to be absent from the oracle, so a newer
/// oracle shrinks this.
const NEWER_EDITION_ROWS: &[u32] = &[
    0x0008_1301,
    0x0008_1302,
    0x0008_1303,
    0x0008_1304,
    0x0010_0011,
    0x0010_0012,
    0x0010_0013,
    0x0010_0014,
    0x0010_0015,
    0x0010_0016,
    0x0010_0041,
    0x0010_0042,
    0x0010_0043,
    0x0010_0044,
    0x0010_0045,
    0x0010_0046,
    0x0010_0047,
    0x0010_2162,
    0x0018_1010,
    0x0018_1011,
    0x003A_0020,
    0x003A_0203,
    0x003A_020C,
    0x0040_0556,
    0x0040_A034,
    0x0040_A035,
    0x0040_B020,
    0x0040_B034,
    0x0040_B036,
    0x0040_B03B,
    0x0040_B03F,
    0x0040_E012,
    0x0070_0006,
];

/// Attributes the crate writes at the top level (checked separately).
const WRITTEN: [u32; 4] = [0x0012_0062, 0x0012_0063, 0x0012_0064, 0x0028_0303];

struct Oracle {
    rows: HashMap<u32, HashMap<&'static str, String>>,
    curves: HashMap<&'static str, String>,
    overlay_data: HashMap<&'static str, String>,
    overlay_comments: HashMap<&'static str, String>,
}

impl Oracle {
    fn load() -> Oracle {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ps3.15-e1-1.tsv");
        let text = std::fs::read_to_string(&path).expect("oracle table");
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
        assert_eq!(&header[2..], &COLUMNS[..], "oracle columns");
        let mut oracle = Oracle {
            rows: HashMap::new(),
            curves: HashMap::new(),
            overlay_data: HashMap::new(),
            overlay_comments: HashMap::new(),
        };
        for line in lines {
            let cells: Vec<&str> = line.split('\t').collect();
            let row: HashMap<&'static str, String> = COLUMNS
                .iter()
                .zip(&cells[2..])
                .filter(|(_, c)| !c.is_empty())
                .map(|(k, c)| (*k, c.to_string()))
                .collect();
            match cells[0] {
                "50xxxxxx" => oracle.curves = row,
                "60xx3000" => oracle.overlay_data = row,
                "60xx4000" => oracle.overlay_comments = row,
                "private" => {
                    assert_eq!(row["basic"], "X");
                }
                tag => {
                    let tag = u32::from_str_radix(tag, 16).expect("hex tag");
                    oracle.rows.insert(tag, row);
                }
            }
        }
        for t in NEWER_EDITION_ROWS {
            assert!(!oracle.rows.contains_key(t), "{t:08X} is in the oracle now");
        }
        oracle
    }

    fn row(&self, tag: u32) -> Option<&HashMap<&'static str, String>> {
        let (group, element) = (tag >> 16, tag & 0xFFFF);
        if group & 0xFF00 == 0x5000 && group % 2 == 0 {
            return Some(&self.curves);
        }
        if group & 0xFF00 == 0x6000 && group % 2 == 0 {
            match element {
                0x3000 => return Some(&self.overlay_data),
                0x4000 => return Some(&self.overlay_comments),
                _ => {}
            }
        }
        self.rows.get(&tag)
    }

    /// The action under a profile: the basic column, overridden by the columns of the options
    /// the profile uses; where two options apply, K (retain) wins over C (retain cleaned).
    fn action(&self, tag: u32, p: &Profile) -> Option<String> {
        let row = self.row(tag)?;
        let enabled = [
            ("retain_uids", p.retain_uids),
            ("retain_device_identity", p.retain_device_identity),
            ("retain_institution_identity", p.retain_institution_identity),
            (
                "retain_patient_characteristics",
                p.retain_patient_characteristics,
            ),
            (
                "retain_full_dates",
                p.retain_longitudinal_dates == DateOption::Full,
            ),
            (
                "retain_modified_dates",
                p.retain_longitudinal_dates == DateOption::Modified,
            ),
            ("clean_descriptors", p.clean_descriptors),
        ];
        let mut option: Option<&str> = None;
        for (col, on) in enabled {
            if let (true, Some(code)) = (on, row.get(col)) {
                option = match option {
                    Some("K") => Some("K"),
                    _ => Some(code.as_str()),
                };
            }
        }
        Some(option.unwrap_or(row["basic"].as_str()).to_owned())
    }
}

fn profiles() -> Vec<Profile> {
    let b = Profile::basic;
    let with = |name: &str, f: &dyn Fn(&mut Profile)| {
        let mut p = b();
        p.name = name.to_owned();
        f(&mut p);
        p
    };
    vec![
        b(),
        with("uids", &|p| p.retain_uids = true),
        with("device", &|p| p.retain_device_identity = true),
        with("patient", &|p| p.retain_patient_characteristics = true),
        with("institution", &|p| p.retain_institution_identity = true),
        with("full-dates", &|p| {
            p.retain_longitudinal_dates = DateOption::Full
        }),
        with("modified-dates", &|p| {
            p.retain_longitudinal_dates = DateOption::Modified
        }),
        with("clean-descriptors", &|p| p.clean_descriptors = true),
        with("safe-private", &|p| p.retain_safe_private = true),
        with("all", &|p| {
            p.retain_uids = true;
            p.retain_device_identity = true;
            p.retain_patient_characteristics = true;
            p.retain_institution_identity = true;
            p.retain_longitudinal_dates = DateOption::Modified;
            p.clean_descriptors = true;
            p.retain_safe_private = true;
        }),
    ]
}

/// pydicom's bundled test files: the repository's .venv, else the Python of PACS_TEST_PYTHON.
fn pydicom_files_dir() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/lib/python3.11/site-packages/pydicom/data/test_files");
    if venv.is_dir() {
        return Some(venv);
    }
    let python = std::env::var("PACS_TEST_PYTHON").ok()?;
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))",
        ])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.is_dir().then_some(dir)
}

/// The files to walk; `None` (with the reason) when pydicom's files cannot be found, since the
/// repository's few samples alone are not the multi-vendor set the test is about.
fn test_files() -> Result<Vec<PathBuf>, String> {
    let pydicom = pydicom_files_dir().ok_or(
        "pydicom's test files not found (no ../.venv, and PACS_TEST_PYTHON unset or without pydicom)",
    )?;
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-dicom");
    let mut files = Vec::new();
    for dir in [samples, pydicom] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
                .collect();
            found.sort();
            files.extend(found);
        }
    }
    Ok(files)
}

fn tag32(tag: Tag) -> u32 {
    (u32::from(tag.group()) << 16) | u32::from(tag.element())
}

type Elem = dicom_object::mem::InMemElement;

/// The string values of an element (trimmed), `None` for binary values and sequences.
fn strs(e: &Elem) -> Option<Vec<String>> {
    let p = e.value().primitive()?;
    use dicom_core::PrimitiveValue as P;
    match p {
        P::Empty => Some(Vec::new()),
        // UN-encoded text (implicit VR without a dictionary, or explicit UN) is read as text.
        P::U8(bytes) if e.vr() == VR::UN => std::str::from_utf8(bytes).ok().map(|s| {
            s.split('\\')
                .map(|v| v.trim_matches(['\0', ' ']).to_owned())
                .collect()
        }),
        P::Str(_) | P::Strs(_) | P::Date(_) | P::DateTime(_) | P::Time(_) => Some(
            p.to_multi_str()
                .iter()
                .map(|s| s.trim_matches(['\0', ' ']).to_owned())
                .collect(),
        ),
        _ => None,
    }
}

fn is_empty(e: &Elem) -> bool {
    match e.value() {
        Value::Sequence(s) => s.items().is_empty(),
        Value::PixelSequence(_) => false,
        Value::Primitive(p) => match strs(e) {
            Some(v) => v.iter().all(String::is_empty),
            None => p.calculate_byte_len() == 0,
        },
    }
}

fn is_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Default)]
struct Stats {
    checks: usize,
    per_action: HashMap<String, usize>,
    tags_seen: BTreeSet<u32>,
    failures: Vec<String>,
}

struct Run<'a> {
    oracle: &'a Oracle,
    profile: &'a Profile,
    file: String,
    uid_map: HashMap<String, String>,
    uid_back: HashMap<String, String>,
    patient_id: Option<String>,
    patient_name: Option<String>,
    stats: &'a mut Stats,
}

impl Run<'_> {
    fn fail(&mut self, path: &str, msg: String) {
        self.stats.failures.push(format!(
            "{} [{}] {path}: {msg}",
            self.file, self.profile.name
        ));
    }

    fn uid(&mut self, path: &str, old: &str, new: &str) {
        if old.is_empty() {
            return;
        }
        if new == old || !is_uid(new) {
            self.fail(
                path,
                format!("UID {old} -> {new}: not replaced by a valid UID"),
            );
        }
        if let Some(prev) = self.uid_map.insert(old.to_owned(), new.to_owned()) {
            if prev != new {
                self.fail(path, format!("UID {old} mapped to {prev} and {new}"));
            }
        }
        if let Some(prev) = self.uid_back.insert(new.to_owned(), old.to_owned()) {
            if prev != old {
                self.fail(path, format!("UIDs {prev} and {old} both mapped to {new}"));
            }
        }
    }

    fn walk(&mut self, orig: &InMemDicomObject, out: &InMemDicomObject, path: &str, depth: usize) {
        for o in orig.iter() {
            let tag = o.tag();
            let t = tag32(tag);
            let here = format!("{path}{tag}");
            let new = out.get(tag);
            if tag.group() % 2 == 1 {
                self.stats.checks += 1;
                *self.stats.per_action.entry("private".into()).or_default() += 1;
                if new.is_some() {
                    self.fail(&here, "private attribute kept".into());
                }
                continue;
            }
            if depth == 0 && WRITTEN.contains(&t) {
                continue;
            }
            if t == 0x0010_0010 || t == 0x0010_0020 {
                // Z (Patient's Name) and Z/D (Patient ID) in the table; replaced by the
                // reported pseudonym instead, so the pseudonym table can re-identify.
                self.stats.checks += 1;
                *self.stats.per_action.entry("pseudonym".into()).or_default() += 1;
                let expected = if t == 0x0010_0010 {
                    &self.patient_name
                } else {
                    &self.patient_id
                };
                let got = new.and_then(strs).map(|v| v.join("\\"));
                if got.is_none() || got.as_ref() != expected.as_ref() {
                    self.fail(&here, format!("pseudonym {got:?}, mapping {expected:?}"));
                }
                continue;
            }
            let Some(action) = self.oracle.action(t, self.profile) else {
                // Not in the table: kept (sequences walked), unless a newer edition lists it
                // or it is a retired group length.
                let newer = NEWER_EDITION_ROWS.contains(&t) || tag.element() == 0;
                match (new, o.value()) {
                    (None, _) if newer => {}
                    (None, _) => self.fail(&here, "unlisted attribute removed".into()),
                    (Some(n), Value::Sequence(_)) => self.items(o, n, &here, depth),
                    (Some(n), _) => {
                        if n.value() != o.value() && strs(n) != strs(o) && !newer {
                            self.fail(&here, "unlisted attribute changed".into());
                        }
                    }
                }
                continue;
            };
            self.stats.checks += 1;
            self.stats.tags_seen.insert(t);
            *self.stats.per_action.entry(action.clone()).or_default() += 1;
            let allowed: &[&str] = match action.as_str() {
                "X" => &["removed"],
                "Z" => &["empty"],
                "D" => &["dummy"],
                "K" => &["kept"],
                "C" => &["cleaned"],
                "U" => &["uid"],
                "Z/D" => &["empty", "dummy"],
                "X/Z" => &["removed", "empty"],
                "X/D" => &["removed", "dummy"],
                "X/Z/D" => &["removed", "empty", "dummy"],
                "X/Z/U*" => &["removed", "empty", "uid"],
                other => panic!("unknown action {other}"),
            };
            let Some(n) = new else {
                if !allowed.contains(&"removed") {
                    self.fail(&here, format!("{action}: removed"));
                }
                continue;
            };
            let is_seq = matches!(o.value(), Value::Sequence(_));
            let outcome = if is_seq && !is_empty(n) {
                // A kept, dummy, cleaned or UID-replaced sequence: its items are walked.
                self.items(o, n, &here, depth);
                "walked"
            } else if is_empty(n) {
                "empty"
            } else if allowed.contains(&"uid") {
                let (ov, nv) = (strs(o).unwrap_or_default(), strs(n).unwrap_or_default());
                if ov.len() != nv.len() {
                    self.fail(&here, format!("U: {ov:?} -> {nv:?}"));
                }
                for (a, b) in ov.iter().zip(&nv) {
                    self.uid(&here, a, b);
                }
                "uid"
            } else if n.value() == o.value() || (strs(n).is_some() && strs(n) == strs(o)) {
                "same"
            } else {
                "changed"
            };
            let any = |names: &[&str]| names.iter().any(|a| allowed.contains(a));
            let ok = match outcome {
                "walked" => any(&["kept", "dummy", "cleaned", "uid"]),
                // C may empty a value it cannot clean; an empty value stays empty under K/C/U,
                // and an empty sequence has no item to give a dummy.
                "empty" => {
                    any(&["empty", "cleaned"])
                        || (is_empty(o) && any(&["kept", "uid"]))
                        || (is_empty(o) && is_seq && any(&["dummy"]))
                }
                "uid" => true,
                "same" => any(&["kept", "cleaned"]),
                _ => any(&["dummy", "cleaned"]),
            };
            if !ok {
                self.fail(
                    &here,
                    format!(
                        "{action}: {outcome} ({:?} -> {:?})",
                        strs(o).map(|v| v.join("\\")),
                        strs(n).map(|v| v.join("\\"))
                    ),
                );
            }
            if action == "C"
                && self.profile.retain_longitudinal_dates == DateOption::Modified
                && matches!(o.vr(), VR::DA | VR::DT)
                && !is_empty(o)
                && strs(n) == strs(o)
            {
                self.fail(&here, "modified dates: date not shifted".into());
            }
        }
    }

    fn items(&mut self, o: &Elem, n: &Elem, path: &str, depth: usize) {
        match (o.value(), n.value()) {
            (Value::Sequence(a), Value::Sequence(b)) if a.items().len() == b.items().len() => {
                for (i, (x, y)) in a.items().iter().zip(b.items()).enumerate() {
                    self.walk(x, y, &format!("{path}[{i}]."), depth + 1);
                }
            }
            _ => self.fail(path, "sequence items not kept for walking".into()),
        }
    }
}

fn no_private(obj: &InMemDicomObject) -> bool {
    obj.iter().all(|e| {
        e.tag().group() % 2 == 0
            && match e.value() {
                Value::Sequence(s) => s.items().iter().all(no_private),
                _ => true,
            }
    })
}

fn count_elements(obj: &InMemDicomObject) -> usize {
    obj.iter()
        .map(|e| {
            1 + match e.value() {
                Value::Sequence(s) => s.items().iter().map(count_elements).sum(),
                _ => 0,
            }
        })
        .sum()
}

/// Same tags and values after writing and reading back (values compared as strings where
/// they are text, so re-encoding differences such as padding do not count).
fn same_content(a: &InMemDicomObject, b: &InMemDicomObject) -> Result<(), String> {
    let (ta, tb): (Vec<Tag>, Vec<Tag>) = (a.tags().collect(), b.tags().collect());
    if ta != tb {
        return Err(format!("tags differ: {ta:?} vs {tb:?}"));
    }
    for (x, y) in a.iter().zip(b.iter()) {
        match (x.value(), y.value()) {
            (Value::Sequence(s), Value::Sequence(t)) => {
                if s.items().len() != t.items().len() {
                    return Err(format!("{}: item count", x.tag()));
                }
                for (i, j) in s.items().iter().zip(t.items()) {
                    same_content(i, j)?;
                }
            }
            _ => {
                let same = match (strs(x), strs(y)) {
                    (Some(p), Some(q)) => p == q,
                    _ => x.value().to_bytes().ok() == y.value().to_bytes().ok(),
                };
                if !same && x.vr() != VR::UN {
                    return Err(format!("{}: value differs after round trip", x.tag()));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn deidentification_matches_the_standard_table_on_real_files() {
    let oracle = Oracle::load();
    let files = match test_files() {
        Ok(files) => files,
        Err(reason) => {
            println!("SKIPPED: {reason}");
            return;
        }
    };
    let profiles = profiles();
    let mut stats = Stats::default();
    let (mut walked, mut skipped, mut elements) = (0usize, Vec::new(), 0usize);
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let original: DefaultDicomObject = match dicom_object::open_file(path) {
            Ok(o) => o,
            Err(e) => {
                skipped.push(format!("{name}: {e}"));
                continue;
            }
        };
        walked += 1;
        elements += count_elements(&original);
        for profile in &profiles {
            let mut out = original.clone();
            let mut pseudonyms = HashedPseudonyms::new("oracle-test", b"test secret");
            deidentify_file(&mut out, profile, &mut pseudonyms)
                .unwrap_or_else(|e| panic!("{name} [{}]: {e}", profile.name));
            let mappings = pseudonyms.take_mappings();
            let mapped = |kind| {
                mappings
                    .iter()
                    .find(|m| m.kind == kind)
                    .map(|m| m.replacement.clone())
            };
            let mut run = Run {
                oracle: &oracle,
                profile,
                file: name.clone(),
                uid_map: HashMap::new(),
                uid_back: HashMap::new(),
                patient_id: mapped(MappingKind::PatientId),
                patient_name: mapped(MappingKind::PatientName),
                stats: &mut stats,
            };
            run.walk(&original, &out, "", 0);
            // The file meta follows the new SOP Instance UID (U, or K with Retain UIDs); with
            // no SOP Instance UID in the data set, its own UID is replaced (U) or kept.
            let old_ms = original
                .meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0');
            let new_ms = out
                .meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0');
            run.stats.checks += 1;
            let sop = out
                .get(Tag(0x0008, 0x0018))
                .and_then(strs)
                .and_then(|v| v.into_iter().next())
                .filter(|s| !s.is_empty());
            match sop {
                Some(sop) if sop != new_ms => run.fail(
                    "meta",
                    format!("MediaStorageSOPInstanceUID {new_ms} != SOP {sop}"),
                ),
                Some(_) => {}
                None if profile.retain_uids && old_ms != new_ms => {
                    run.fail("meta", "MediaStorageSOPInstanceUID changed".into())
                }
                None if !profile.retain_uids => run.uid("meta (0002,0003)", old_ms, new_ms),
                None => {}
            }
            // The attributes the crate writes.
            let text = |t: Tag| {
                out.get(t)
                    .and_then(|e| e.value().to_multi_str().ok().map(|v| v.join("\\")))
            };
            let longitudinal = match profile.retain_longitudinal_dates {
                DateOption::Remove => "REMOVED",
                DateOption::Full => "UNMODIFIED",
                DateOption::Modified => "MODIFIED",
            };
            if text(Tag(0x0012, 0x0062)).as_deref() != Some("YES")
                || text(Tag(0x0028, 0x0303)).as_deref() != Some(longitudinal)
                || text(Tag(0x0012, 0x0063)).is_none_or(|m| m.is_empty())
            {
                run.fail("top", "identity-removed attributes not set".into());
            }
            let codes: Vec<String> = out
                .get(Tag(0x0012, 0x0064))
                .and_then(|e| e.value().items().map(|i| i.to_vec()))
                .unwrap_or_default()
                .iter()
                .filter_map(|i| {
                    i.get(Tag(0x0008, 0x0100))?
                        .value()
                        .to_str()
                        .ok()
                        .map(|s| s.to_string())
                })
                .collect();
            if codes.first().map(String::as_str) != Some("113100") {
                run.fail("top", format!("method codes {codes:?}"));
            }
            if !no_private(&out) {
                run.fail("top", "private attributes left".into());
            }
            // Round trip through Part 10.
            let mut buf = Vec::new();
            match out.write_all(&mut buf) {
                Err(e) => run.fail("write", e.to_string()),
                Ok(()) => match dicom_object::from_reader(buf.get(128..).unwrap_or_default()) {
                    Err(e) => run.fail("read back", e.to_string()),
                    Ok(back) => {
                        if let Err(e) = same_content(&out, &back) {
                            run.fail("read back", e);
                        }
                        if back.meta().media_storage_sop_instance_uid()
                            != out.meta().media_storage_sop_instance_uid()
                        {
                            run.fail("read back", "meta UID differs".into());
                        }
                    }
                },
            }
        }
    }
    let mut actions: Vec<_> = stats.per_action.iter().collect();
    actions.sort();
    println!(
        "oracle check: {walked} files walked ({} skipped as not Part 10 or unreadable), {elements} \
         attributes in them, {} profiles, {} attribute checks against the table ({} distinct \
         listed tags seen); checks per action: {actions:?}",
        skipped.len(),
        profiles.len(),
        stats.checks,
        stats.tags_seen.len()
    );
    for s in &skipped {
        println!("  skipped {s}");
    }
    for f in stats.failures.iter().take(80) {
        println!("FAIL {f}");
    }
    assert!(walked >= 20, "only {walked} files could be walked");
    assert!(
        stats.failures.is_empty(),
        "{} failures",
        stats.failures.len()
    );
}

/// The crate's table, row by row, against the oracle: every tag the oracle lists, under every
/// test profile, must get the same action code (repeating groups checked on one instance).
#[test]
fn action_table_matches_the_oracle_row_by_row() {
    let oracle = Oracle::load();
    let mut tags: Vec<u32> = oracle.rows.keys().copied().collect();
    tags.extend([0x5000_3000, 0x6000_3000, 0x6002_4000]);
    tags.sort();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for profile in profiles() {
        for &tag in &tags {
            let expected = oracle.action(tag, &profile);
            let got = pacs_deid::actions::action_for(tag, &profile).map(|c| c.as_str().to_owned());
            checked += 1;
            if got != expected {
                mismatches.push(format!(
                    "[{}] {tag:08X}: crate {got:?}, oracle {expected:?}",
                    profile.name
                ));
            }
        }
    }
    println!(
        "table check: {} oracle rows x {} profiles = {checked} actions compared",
        tags.len(),
        profiles().len()
    );
    for m in &mismatches {
        println!("MISMATCH {m}");
    }
    assert!(mismatches.is_empty(), "{} mismatches", mismatches.len());
}
