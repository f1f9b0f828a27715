//! Short fuzz run of snapshot loading (issue 10, item 3): the cargo-fuzz target
//! `fuzz/fuzz_targets/replay_snapshot.rs` runs the same function (`replay::fuzzing`) under
//! libFuzzer for millions of inputs (`scripts/fuzz.sh`); here proptest drives it over mutations of
//! a valid snapshot and over random bytes. Loading must return `Ok` or a clear error, never
//! panic, and never allocate more than the file justifies (a payload announcing billions of
//! items or a capacity of 2^32 sequences must fail before allocating).
//!
//! `PKRL_FUZZ_CASES` raises the number of cases (default 2000 per property).

use proptest::prelude::*;
use replay::{
    ReplayConfig, SamplingMode, SequenceReplay,
    fuzzing::{load_fuzz_input, payload_of, snapshot_with_payload},
    testing::SequenceBuilder,
};

fn cases() -> u32 {
    std::env::var("PKRL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

/// A valid snapshot of a small prioritised table (3 of capacity 4, with keypoints and state).
fn valid_payload() -> Vec<u8> {
    let mut table = SequenceReplay::new(ReplayConfig {
        capacity_sequences: 4,
        sampling: SamplingMode::Prioritized,
        priority_exponent: 0.9,
        importance_sampling_exponent: 0.6,
        initial_max_priority: 1.0,
    })
    .unwrap();
    for tag in 0..3u8 {
        let sequence = SequenceBuilder::new(3).tag(tag).recurrent_state(vec![0.5; 4]).keypoints(2).build();
        table.insert(sequence).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("valid.snapshot");
    table.save_snapshot(&path).unwrap();
    payload_of(&std::fs::read(&path).unwrap()).to_vec()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, value: u8 },
    /// Overwrites 8 bytes with a large little-endian count (item counts, lengths, capacity).
    Huge { at: usize, value: u64 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        (any::<usize>(), prop_oneof![Just(u64::MAX), Just(u32::MAX as u64), Just(1u64 << 40), any::<u64>()])
            .prop_map(|(at, value)| Mutation::Huge { at, value }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

fn apply(payload: &mut Vec<u8>, mutation: &Mutation) {
    let len = payload.len().max(1);
    match mutation {
        Mutation::Flip { at, bit } => {
            if let Some(byte) = payload.get_mut(at % len) {
                *byte ^= 1 << bit;
            }
        }
        Mutation::Set { at, value } => {
            if let Some(byte) = payload.get_mut(at % len) {
                *byte = *value;
            }
        }
        Mutation::Huge { at, value } => {
            let start = at % len;
            for (offset, byte) in value.to_le_bytes().iter().enumerate() {
                if let Some(slot) = payload.get_mut(start + offset) {
                    *slot = *byte;
                }
            }
        }
        Mutation::Truncate { len: keep } => payload.truncate(keep % len),
        Mutation::Insert { at, bytes } => {
            let at = at % len;
            payload.splice(at.min(payload.len())..at.min(payload.len()), bytes.iter().copied());
        }
    }
}

#[test]
fn the_valid_payload_loads_through_the_fuzz_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = vec![0u8];
    data.extend(valid_payload());
    assert_eq!(load_fuzz_input(&data, dir.path()).unwrap().len(), 3);
    // whole-file mode with a good file loads too; a flipped payload byte is a checksum error
    let mut whole = vec![2u8];
    whole.extend(snapshot_with_payload(&valid_payload(), replay::SNAPSHOT_VERSION));
    assert!(load_fuzz_input(&whole, dir.path()).is_ok());
    let last = whole.len() - 1;
    whole[last] ^= 1;
    let err = load_fuzz_input(&whole, dir.path()).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
}

#[test]
fn a_huge_capacity_or_item_count_fails_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let payload = valid_payload();
    // capacity is the first u64 of the payload; the insert count the 6th field after the config
    for capacity in [u32::MAX as u64, 1 << 31, 1 << 25] {
        let mut bad = payload.clone();
        bad[0..8].copy_from_slice(&capacity.to_le_bytes());
        let mut data = vec![0u8];
        data.extend(bad);
        let err = load_fuzz_input(&data, dir.path()).unwrap_err().to_string();
        assert!(err.contains("capacity"), "capacity {capacity}: {err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_snapshots_load_or_fail_cleanly(mutations in proptest::collection::vec(mutation(), 1..4), mode in 0u8..3) {
        let dir = tempfile::tempdir().unwrap();
        let mut payload = valid_payload();
        for m in &mutations {
            apply(&mut payload, m);
        }
        let mut data = vec![mode];
        if mode == 2 {
            data.extend(snapshot_with_payload(&payload, replay::SNAPSHOT_VERSION));
        } else {
            data.extend(payload);
        }
        if let Err(error) = load_fuzz_input(&data, dir.path()) {
            let message = error.to_string();
            prop_assert!(!message.is_empty() && !message.contains('\n'), "one-line error: {message}");
        }
    }

    #[test]
    fn random_bytes_load_or_fail_cleanly(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let _ = load_fuzz_input(&data, dir.path());
    }
}
