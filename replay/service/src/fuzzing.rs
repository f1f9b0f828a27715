//! Entry point for fuzzing what the replay service does with a client's bytes
//! (`fuzz/fuzz_targets/wire_messages.rs`; the short proptest run in `tests/integration/fuzz_wire.rs`):
//! [`pkrl_proto::fuzzing::decode_and_validate`] on every message type, then, for a message the
//! replay service takes, the server's own path: an insert's sequences converted to library
//! sequences and inserted into a small table, a priority update applied to it, a sample drawn.
//! Any step may reject the input with an error; none may panic.

use pkrl_proto::fuzzing::{Validated, decode_and_validate};
use rand::SeedableRng;
use replay::{ReplayConfig, SamplingMode, SequenceReplay};

use crate::wire::{key_from_wire, sequence_from_validated_wire};

/// Runs one fuzz input through decoding, validation and the replay table (module docs). Returns
/// whether the input was accepted all the way.
pub fn wire_message(data: &[u8]) -> bool {
    let Ok(message) = decode_and_validate(data) else {
        return false;
    };
    let mut table = SequenceReplay::new(ReplayConfig {
        capacity_sequences: 8,
        sampling: SamplingMode::Prioritized,
        priority_exponent: 0.9,
        importance_sampling_exponent: 0.6,
        initial_max_priority: 1.0,
    })
    .expect("a valid config");
    match message {
        Validated::Insert(request) => {
            for sequence in request.sequences {
                let Ok((sequence, priority)) = sequence_from_validated_wire(sequence) else {
                    return false;
                };
                let Ok(key) = table.insert(sequence) else {
                    return false;
                };
                if table.update_priorities(&[key], &[f64::from(priority)]).is_err() {
                    return false;
                }
            }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            table.sample(2, &mut rng).is_ok()
        }
        Validated::UpdatePriorities(request) => {
            let keys: Vec<_> = request.keys.iter().map(|&key| key_from_wire(key, table.capacity())).collect();
            let priorities: Vec<f64> = request.priorities.iter().map(|&p| f64::from(p)).collect();
            table.update_priorities(&keys, &priorities).is_ok()
        }
        _ => true,
    }
}
