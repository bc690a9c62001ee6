//! Part 10 files as ingest (C-STORE, STOW-RS, `pacs import`) takes them: the staged file
//! goes through `pacs_storage::lengths::check_part10_file`, then dicom-object opens it up to
//! Pixel Data as `check_staged` does, and whole as WADO-RS and rendering later do. The malloc
//! limit catches a length the walk let through; a value the walk refused as running past the
//! end must make dicom-object fail too (else the walk frames the file differently). The
//! parse runs on a small stack, so nesting the walk should have refused shows as a crash.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use libfuzzer_sys::fuzz_target;
use pacs_fuzz::on_small_stack;
use pacs_storage::lengths::{check_part10_file, LengthError};

fn staged_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("pacs-fuzz-part10-{}.dcm", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = staged_path();
    std::fs::write(path, data).expect("write the staged file");
    match check_part10_file(path) {
        Ok(()) => on_small_stack(|| {
            let _ = OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .open_file(path);
            let _ = OpenFileOptions::new().open_file(path);
        }),
        // Pixel data fragments are copied as far as they go, not read exactly: no failure.
        Err(LengthError::PastEnd {
            tag,
            len,
            remaining,
        }) if tag != Tag(0xFFFE, 0xE000) && u64::from(len) - remaining <= 1 << 16 => {
            assert!(
                OpenFileOptions::new().open_file(path).is_err(),
                "lengths refused {tag} ({len} bytes, {remaining} remain) but dicom-object reads it"
            );
        }
        Err(_) => {}
    }
});
