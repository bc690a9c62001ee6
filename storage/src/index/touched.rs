//! The quiet-period marks a transaction collects and its backend writes at commit.

/// Studies that received instances in one transaction: study → (patient key, series in
/// order of arrival), the quiet-period marks a backend writes at commit.
pub(crate) type Touched = std::collections::BTreeMap<String, (String, Vec<String>)>;

/// Note that `study` received an instance of `series`; a study already noted keeps the
/// patient key it was first noted with.
pub(crate) fn touch(touched: &mut Touched, study: &str, patient_key: &str, series: &str) {
    let (_, list) = touched
        .entry(study.to_string())
        .or_insert_with(|| (patient_key.to_string(), Vec::new()));
    if !list.iter().any(|s| s == series) {
        list.push(series.to_string());
    }
}
