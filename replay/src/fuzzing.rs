//! Entry points for fuzzing snapshot loading (`fuzz/fuzz_targets/replay_snapshot.rs` with
//! cargo-fuzz, and the short proptest run in `replay/tests/fuzz_snapshot.rs`).
//!
//! Random bytes almost never pass a snapshot's checksums, so a fuzzer feeding whole files would
//! only exercise the header checks. [`snapshot_with_payload`] wraps arbitrary bytes in a header
//! with the right length and CRC-32s, so the fuzzer reaches the payload decoder: counts, sizes,
//! allocations and the per-item validation.

use std::path::Path;

use crate::{ReplayError, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, SequenceReplay};

/// A snapshot file image of format `version` whose header is valid for `payload`.
pub fn snapshot_with_payload(payload: &[u8], version: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(32 + payload.len());
    header.extend_from_slice(&SNAPSHOT_MAGIC);
    header.extend_from_slice(&version.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&header[0..28]);
    header.extend_from_slice(&header_crc.to_le_bytes());
    header.extend_from_slice(payload);
    header
}

/// The payload of a snapshot file image (everything after the 32-byte header).
pub fn payload_of(snapshot: &[u8]) -> &[u8] {
    snapshot.get(32..).unwrap_or_default()
}

/// The fuzz target: the first byte picks the format version (1 or 2) and whether the header is
/// fixed up (so the payload decoder runs) or the bytes are loaded as a whole file; loading must
/// return `Ok` or `Err`, never panic or allocate beyond what the bytes justify. A snapshot that
/// loads must save and load again to an equal table (through `dir`, so the file path is tested
/// too).
pub fn load_fuzz_input(data: &[u8], dir: &Path) -> Result<SequenceReplay, ReplayError> {
    let (mode, rest) = data.split_first().map_or((0, data), |(&m, rest)| (m, rest));
    let file = match mode % 3 {
        0 => snapshot_with_payload(rest, SNAPSHOT_VERSION),
        1 => snapshot_with_payload(rest, 1),
        _ => rest.to_vec(),
    };
    let replay = SequenceReplay::load_snapshot_bytes(&file, "fuzz input")?;
    let again = dir.join("fuzz-again.snapshot");
    replay.save_snapshot(&again)?;
    let reloaded = SequenceReplay::load_snapshot(&again)?;
    assert_eq!(reloaded.stats(), replay.stats(), "a loaded snapshot must round-trip");
    Ok(replay)
}
