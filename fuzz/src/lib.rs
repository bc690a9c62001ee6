//! Helpers shared by the fuzz targets. The targets call the parsers of the real crates
//! (`pacs`, `pacs-viewer-api`, `pacs-storage`), built without RocksDB (the `embedded` and
//! `rocksdb` features off), so a sanitizer build never compiles it.

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
