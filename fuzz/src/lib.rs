//! The parsers under fuzzing, compiled from the main crates' own source files through
//! `#[path]` modules (no copies), laid out as in those crates so that their `crate::` and
//! `super::` paths resolve. `pacs_storage` is the stand-in in shims/pacs-storage.

pub mod dicomweb;
pub mod dimse;
pub mod render;

/// viewer-api's error type, the real file.
#[path = "../../viewer-api/src/error.rs"]
pub mod error;

/// Run `f` (a parser) on a thread with a small stack: nesting that the length check lets
/// through must fit in it, and were the check's depth limit lost, inputs of the fuzzer's
/// sizes (a few hundred levels) would overflow it and crash the target, rather than only the
/// thousands of levels that overflow a server thread's 2 MiB.
pub fn on_small_stack(f: impl FnOnce() + Send) {
    const PARSE_STACK: usize = 256 * 1024;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(PARSE_STACK)
            .spawn_scoped(s, f)
            .expect("spawn the parser thread")
            .join()
            .expect("the parser does not panic");
    });
}
