//! Built-in quality analyzers, run when a series is stable: blank and saturated images (from
//! the decoded pixels), missing slices in a CT series (gaps between ImagePositionPatient along
//! the slice normal) and inconsistent orientation (ImageOrientationPatient differing). Findings
//! become flags on the study, with ids derived from what they are about, so a re-analysis
//! replaces rather than duplicates them.

use dicom_pixeldata::PixelDecoder;
use pacs_storage::part10::read_instance;
use pacs_storage::records::{first_value, InstanceRecord};
use pacs_storage::{Event, EventKind, Flag, Severity, Store};
use rayon::prelude::*;

use super::{series_records, Prepared, Worker, WorkerError};

/// Images whose pixels are checked per series (the rest are sampled out).
const MAX_PIXEL_CHECKS: usize = 64;

pub struct QualityWorker;

fn floats(rec: &InstanceRecord, tag: &str) -> Option<Vec<f64>> {
    let v = rec.attributes.get(tag)?;
    let out: Vec<f64> = v
        .values
        .iter()
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    (!out.is_empty()).then_some(out)
}

fn flag(
    event: &Event,
    id: String,
    label: String,
    score: f64,
    severity: Severity,
    sop: Option<String>,
) -> Flag {
    Flag {
        id,
        study_instance_uid: event.study_instance_uid.clone(),
        label,
        score: score.clamp(0.0, 1.0),
        severity,
        source: "pacs-quality".into(),
        series_instance_uid: event.series_instance_uid.clone(),
        sop_instance_uid: sop,
        created_ms: event.time_ms,
    }
}

/// Gaps and orientation changes of a series from its geometry.
pub fn geometry_findings(event: &Event, recs: &[InstanceRecord]) -> Vec<Flag> {
    let series = event.series_instance_uid.clone().unwrap_or_default();
    let mut out = Vec::new();
    let geo: Vec<(Vec<f64>, Vec<f64>)> = recs
        .iter()
        .filter_map(|r| Some((floats(r, "00200032")?, floats(r, "00200037")?)))
        .filter(|(p, o)| p.len() == 3 && o.len() == 6)
        .collect();
    if geo.len() < 2 {
        return out;
    }
    let key = |o: &[f64]| {
        o.iter()
            .map(|v| (v * 1000.0).round() as i64)
            .collect::<Vec<_>>()
    };
    let mut orientations: Vec<Vec<i64>> = geo.iter().map(|(_, o)| key(o)).collect();
    orientations.sort();
    orientations.dedup();
    if orientations.len() > 1 {
        out.push(flag(
            event,
            format!("quality-orientation-{series}"),
            format!(
                "inconsistent orientation: {} different ImageOrientationPatient values",
                orientations.len()
            ),
            1.0,
            Severity::Medium,
            None,
        ));
        return out;
    }
    let modality = recs
        .first()
        .map(|r| first_value(&r.attributes, "00080060").to_string())
        .unwrap_or_default();
    if geo.len() < 3 {
        return out;
    }
    let o = &geo[0].1;
    let normal = [
        o[1] * o[5] - o[2] * o[4],
        o[2] * o[3] - o[0] * o[5],
        o[0] * o[4] - o[1] * o[3],
    ];
    let mut along: Vec<f64> = geo
        .iter()
        .map(|(p, _)| p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2])
        .collect();
    along.sort_by(f64::total_cmp);
    let steps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    let mut sorted = steps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    if median <= 0.0 {
        return out;
    }
    let missing: f64 = steps
        .iter()
        .filter(|s| **s > 1.5 * median)
        .map(|s| (s / median).round() - 1.0)
        .sum();
    if missing > 0.0 && (modality == "CT" || modality.is_empty()) {
        out.push(flag(
            event,
            format!("quality-gap-{series}"),
            format!("missing slices: about {missing} slice(s) absent (spacing {median:.2} mm)"),
            missing / (geo.len() as f64 + missing),
            Severity::High,
            None,
        ));
    }
    out
}

/// Blank (one value everywhere) or saturated (half the pixels at the top of the range).
fn pixel_finding(event: &Event, store: &Store, rec: &InstanceRecord) -> Option<Flag> {
    let obj = read_instance(store.blobs.as_ref(), &rec.blob, false).ok()?;
    let decoded = obj.decode_pixel_data_frame(0).ok()?;
    if decoded.samples_per_pixel() != 1 {
        return None;
    }
    let data = decoded.data();
    let values: Vec<u32> = match decoded.bits_allocated() {
        8 => data.iter().map(|v| u32::from(*v)).collect(),
        16 => data
            .chunks_exact(2)
            .map(|c| {
                u32::from(u16::from_le_bytes([c[0], c[1]]))
                    & ((1u32 << decoded.bits_stored().min(16)) - 1)
            })
            .collect(),
        _ => return None,
    };
    let (min, max) = (values.iter().min()?, values.iter().max()?);
    let sop = Some(rec.sop_instance_uid.clone());
    if min == max {
        return Some(flag(
            event,
            format!("quality-blank-{}", rec.sop_instance_uid),
            "blank image".into(),
            1.0,
            Severity::Medium,
            sop,
        ));
    }
    let top = (1u32 << decoded.bits_stored().min(16)) - 1;
    let at_top = values.iter().filter(|v| **v == top).count() as f64 / values.len() as f64;
    if *max == top && at_top >= 0.5 {
        return Some(flag(
            event,
            format!("quality-saturated-{}", rec.sop_instance_uid),
            format!(
                "saturated image: {:.0}% of pixels at the maximum",
                at_top * 100.0
            ),
            at_top,
            Severity::Low,
            sop,
        ));
    }
    None
}

impl Worker for QualityWorker {
    fn name(&self) -> &str {
        "quality"
    }

    fn yields_to_ingest(&self) -> bool {
        true
    }

    fn wants(&self, event: &Event) -> bool {
        event.kind == EventKind::SeriesStable
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let Some(series) = &event.series_instance_uid else {
            return Ok(Prepared::Skip);
        };
        let recs = series_records(store, series)?;
        let mut findings = geometry_findings(event, &recs);
        let images: Vec<&InstanceRecord> = recs
            .iter()
            .filter(|r| !first_value(&r.attributes, "00280010").is_empty())
            .collect();
        let step = images.len().div_ceil(MAX_PIXEL_CHECKS).max(1);
        let sampled: Vec<&InstanceRecord> = images.into_iter().step_by(step).collect();
        // Decoding is the heavy part: on the rayon pool (one thread per core), in parallel.
        findings.extend(
            sampled
                .par_iter()
                .filter_map(|rec| pixel_finding(event, store, rec))
                .collect::<Vec<_>>(),
        );
        for f in &findings {
            store.flags.add_flag(f)?;
            tracing::info!(study = %f.study_instance_uid, label = %f.label, "quality flag");
        }
        Ok(Prepared::Done)
    }
}
