//! QIDO-RS query strings: `Search::parse` (form-urlencoded keys, limit/offset/includefield/
//! fuzzymatching, keyword or tag lookup, and pacs-storage's real `Matcher::parse`), then each
//! parsed key's matcher run against a value, as the query engine does for every candidate.
//!
//! Input: byte 0 picks the level, the UIDs the path fixes and the match options; then the
//! query string up to the first `\n`; then the value the matchers are run on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacs_viewer_api::dicomweb::qido::Search;
use pacs_storage::query::{Level, MatchOptions};

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    let (query, value) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let value = String::from_utf8_lossy(value).into_owned();
    // The routes: /studies, /series, /studies/{s}/series, /instances, .../series/{s}/instances.
    const STUDY: (&str, &str) = ("0020000D", "1.2.3");
    const SERIES: (&str, &str) = ("0020000E", "1.2.3.4");
    let (level, path_keys): (Level, &[(&str, &str)]) = match sel & 7 {
        0 => (Level::Study, &[]),
        1 => (Level::Series, &[]),
        2 => (Level::Series, &[STUDY]),
        3 => (Level::Image, &[]),
        4 => (Level::Image, &[STUDY]),
        5 => (Level::Image, &[STUDY, SERIES]),
        6 => (Level::Patient, &[]),
        _ => (Level::Study, &[STUDY]),
    };
    let options = MatchOptions {
        case_insensitive_names: sel & 8 != 0,
    };
    let Ok(search) = Search::parse(level, path_keys, query, options) else {
        return;
    };
    let values = [value];
    for key in &search.query.keys {
        let _ = key.matcher.literal_prefix();
        let _ = key.matcher.matches(&key.vr, &values, search.query.options);
    }
});
