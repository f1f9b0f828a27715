//! libFuzzer target: replay snapshot loading, with the header's length and checksums fixed up
//! so the payload decoder is reached (see `replay::fuzzing`).
#![no_main]

use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"));
    let _ = replay::fuzzing::load_fuzz_input(data, dir.path());
});
