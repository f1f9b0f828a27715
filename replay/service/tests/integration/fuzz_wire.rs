//! Short fuzz run of message validation and the replay service's handling of what passes
//! (issue 10, item 3). The cargo-fuzz target `fuzz/fuzz_targets/wire_messages.rs` runs the same
//! function (`replay_service::fuzzing::wire_message`) under libFuzzer for millions of inputs
//! (`scripts/fuzz.sh`); here proptest drives it over mutated encodings of valid messages, over
//! structured messages with hostile field values, and over random bytes. Nothing may panic.
//!
//! `PKRL_FUZZ_CASES` raises the number of cases (default 2000 per property).

use pkrl_proto::{
    fuzzing::{Validated, decode_and_validate},
    v1::{InsertRequest, SampleRequest, UpdatePrioritiesRequest},
};
use prost::Message;
use proptest::prelude::*;
use replay::testing::SequenceBuilder;
use replay_service::{fuzzing::wire_message, wire::sequence_to_wire};

fn cases() -> u32 {
    std::env::var("PKRL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

/// Selector byte 1 (InsertRequest) and a valid two-sequence insert.
fn valid_insert() -> Vec<u8> {
    let sequences = (0..2u8)
        .map(|tag| sequence_to_wire(&SequenceBuilder::new(4).tag(tag).burn_in(1).recurrent_state(vec![0.25; 4]).keypoints(2).build(), 0.5).unwrap())
        .collect();
    let mut data = vec![1u8];
    data.extend(InsertRequest { sequences }.encode_to_vec());
    data
}

#[test]
fn a_valid_insert_goes_all_the_way_and_bad_fields_are_named() {
    assert!(wire_message(&valid_insert()));
    // a NaN priority update is rejected with the field named
    let mut data = vec![3u8];
    data.extend(UpdatePrioritiesRequest { keys: vec![1], priorities: vec![f32::NAN] }.encode_to_vec());
    let err = decode_and_validate(&data).unwrap_err().to_string();
    assert!(err.contains("priorities[0]") && err.contains("not finite"), "{err}");
    // an oversized sample request is refused
    let mut data = vec![2u8];
    data.extend(SampleRequest { batch_size: 1 << 30 }.encode_to_vec());
    assert!(decode_and_validate(&data).is_err());
    assert!(matches!(decode_and_validate(&valid_insert()), Ok(Validated::Insert(_))));
    assert!(decode_and_validate(&[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_inserts_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut data = valid_insert();
        for (at, value) in edits {
            let at = 1 + at % (data.len() - 1);
            data[at] = value;
        }
        if cut % 4 == 0 {
            data.truncate(1 + cut % (data.len() - 1));
        }
        let _ = wire_message(&data);
    }

    #[test]
    fn hostile_priority_updates_never_panic(
        keys in proptest::collection::vec(any::<u64>(), 0..8),
        priorities in proptest::collection::vec(prop_oneof![any::<f32>(), Just(f32::NAN), Just(f32::INFINITY), Just(-1.0f32), Just(f32::MAX)], 0..8),
    ) {
        let mut data = vec![3u8];
        data.extend(UpdatePrioritiesRequest { keys, priorities }.encode_to_vec());
        let _ = wire_message(&data);
    }

    #[test]
    fn random_bytes_of_every_message_never_panic(selector in 0u8..7, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut data = vec![selector];
        data.extend(bytes);
        let _ = wire_message(&data);
    }
}
