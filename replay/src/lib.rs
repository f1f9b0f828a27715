//! Sequence replay for the PermaKey recurrent Q-learning agent (R2D2-style, issues 7 and 8).
//!
//! # Role
//!
//! Actors cut their episodes into fixed-length [`Sequence`]s (the `actor` crate's
//! `SequenceWriter`) and insert them here; the learner samples batches of sequences, unrolls its
//! LSTM over them and, with prioritised sampling, reports new priorities. This crate is the
//! storage and sampling library only: no tensors, no async, no networking. The replay service
//! wraps a [`SequenceReplay`] in a mutex and gates it with a [`BlockingRateLimiter`].
//!
//! # Loop of use
//!
//! ```
//! use std::time::Duration;
//! use rand::SeedableRng;
//! use replay::{
//!     BlockingRateLimiter, RateLimiterConfig, ReplayConfig, SamplingMode, SequenceReplay,
//!     testing::SequenceBuilder,
//! };
//!
//! let mut table = SequenceReplay::new(ReplayConfig {
//!     capacity_sequences: 100,
//!     sampling: SamplingMode::Prioritized,
//!     ..ReplayConfig::default()
//! })?;
//! let limiter = BlockingRateLimiter::new(RateLimiterConfig {
//!     min_size_to_sample: 4,
//!     samples_per_insert: 2.0,
//!     error_buffer: 8.0,
//! })?;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! for step in 0..8u8 {
//!     // Actor side: one sequence per `period` env steps.
//!     limiter.acquire_insert(Duration::from_secs(1))?;
//!     table.insert(SequenceBuilder::new(12).tag(step).build())?;
//! }
//! // Learner side: sample, learn, report |TD| priorities.
//! limiter.acquire_sample(4, Duration::from_secs(1))?;
//! let batch = table.sample(4, &mut rng)?;
//! let td_priorities = vec![0.5; batch.len()];
//! table.update_priorities(&batch.keys, &td_priorities)?;
//! # Ok::<(), replay::ReplayError>(())
//! ```
//!
//! # Decisions
//!
//! - **Item**: one [`Sequence`] of `burn_in + 12` steps (spec 7.4: window 8 + n-step 3 + 1; the
//!   reference has no burn-in), with per-step `(o_t, a_t, clipped r_t, done_t)`, optionally the
//!   per-step keypoint centres the actor's frozen keypoint model computed for `o_t`
//!   (`keypoint_dims` floats per step, `2K` for K `(y, x)` centres; 0 stores none), the
//!   recurrent state before step 0 (empty when the learner starts from zeros, as the reference
//!   does), the actor's `env_id`, `run_id` and parameter version. Episode ends are zero-padded
//!   and masked (see [`Sequence`]).
//! - **Stored keypoints**: with the keypoint model frozen, the Gaussian heatmaps are a pure
//!   function of the centres, so storing the centres is exact and spares the learner a
//!   keypoint-model forward pass (LSP + PointNet) on every sampled frame.
//! - **Sampling**: [`SamplingMode::Uniform`] is the default because it is paper-faithful: the
//!   reference samples without prioritisation (tf-agents `EpisodicReplayBuffer`). Prioritised
//!   replay is the option: `P(i) = p_i^alpha / sum_j p_j^alpha` on a [`SumTree`], importance
//!   weights `w_i = (N P(i))^-beta / max_batch w`, alpha 0.9 and beta 0.6 (R2D2). New sequences
//!   get the largest priority seen so far (initially 1). Draws are independent, with
//!   replacement. A zero priority is never drawn.
//! - **Capacity and eviction**: counted in sequences, FIFO. The reference counts episodes
//!   (350 by default); the default 12,500 sequences hold the whole 100k-step preset (spec 9b) at
//!   one sequence per 8 steps.
//! - **Stale priorities**: every insert has a generation number; a [`SampleKey`] is
//!   `(slot, generation)` and a priority update for a slot that has since been overwritten is
//!   ignored and counted.
//! - **Rate limiting**: Reverb's samples-per-insert rule, [`RateLimiter`] (pure) and
//!   [`BlockingRateLimiter`] (mutex + condvar, timeouts, close). Defaults reproduce the
//!   reference's replay ratio: 32 samples per insert after 1,250 sequences (10k steps).
//! - **Snapshots**: an own binary format with magic, version and CRC-32 checksums, written to a
//!   temporary file, fsynced and renamed ([`SequenceReplay::save_snapshot`]).
//!
//! # Memory
//!
//! A default sequence stores 12 frames of 84x84x3 bytes = 254,016 bytes, plus 12 x 7 bytes of
//! action (`u16`), reward (`f32`) and done flag, plus [`PER_SEQUENCE_OVERHEAD_BYTES`] of
//! bookkeeping (256 bytes on 64-bit targets): **254,356 bytes, about 248 KiB**. A stored LSTM(128)
//! state adds 1 KiB; stored keypoints add `12 x keypoint_dims x 4` bytes (672 for 7 keypoints).
//! The default capacity of 12,500 sequences therefore needs about **3.18 GB (2.96 GiB)**
//! (3.19 GB with 7 keypoints); [`sequence_memory_bytes`] and [`replay_memory_bytes`] compute
//! these numbers for other shapes.

mod error;
pub mod fuzzing;
mod priority;
mod rate_limiter;
mod sequence;
mod server_config;
mod snapshot;
mod sum_tree;
mod table;
pub mod testing;

pub use error::ReplayError;
pub use priority::{importance_weights, priority_mass};
pub use rate_limiter::{BlockingRateLimiter, RateLimiter, RateLimiterConfig, RateLimiterCounts};
pub use sequence::{
    DEFAULT_OBS_SHAPE, DEFAULT_SEQUENCE_LENGTH, PER_SEQUENCE_OVERHEAD_BYTES, Sequence,
    sequence_memory_bytes,
};
pub use server_config::ReplayServerConfig;
pub use snapshot::{SNAPSHOT_MAGIC, SNAPSHOT_OLDEST_READABLE_VERSION, SNAPSHOT_VERSION};
pub use sum_tree::SumTree;
pub use table::{
    MAX_CAPACITY_SEQUENCES, PriorityUpdateOutcome, ReplayConfig, ReplayStats, SampleKey, SampledBatch, SamplingMode,
    SequenceReplay,
};

/// Returns the bytes a full replay of `capacity_sequences` sequences of `steps` steps occupies,
/// `capacity_sequences * sequence_memory_bytes(..)` (the sum tree's spare power-of-two leaves
/// and allocator slack are not counted). `keypoint_dims` is the keypoint floats stored per step
/// (`2K` for K keypoints, 0 when none are stored).
pub fn replay_memory_bytes(
    capacity_sequences: usize,
    steps: usize,
    obs_shape: [usize; 3],
    recurrent_state_len: usize,
    keypoint_dims: usize,
) -> usize {
    capacity_sequences * sequence_memory_bytes(steps, obs_shape, recurrent_state_len, keypoint_dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the numbers in the crate docs honest.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn documented_memory_numbers() {
        assert_eq!(PER_SEQUENCE_OVERHEAD_BYTES, 256);
        assert_eq!(
            sequence_memory_bytes(DEFAULT_SEQUENCE_LENGTH, DEFAULT_OBS_SHAPE, 0, 0),
            254_356
        );
        let capacity = ReplayConfig::default().capacity_sequences;
        let total = replay_memory_bytes(capacity, DEFAULT_SEQUENCE_LENGTH, DEFAULT_OBS_SHAPE, 0, 0);
        assert_eq!(total, 3_179_450_000);
        let gib = total as f64 / f64::from(1u32 << 30);
        assert!((gib - 2.96).abs() < 0.005, "{gib}");
        // 7 keypoints, (y, x) each: 12 x 14 floats per sequence.
        assert_eq!(
            sequence_memory_bytes(DEFAULT_SEQUENCE_LENGTH, DEFAULT_OBS_SHAPE, 0, 14),
            255_028
        );
        let with_keypoints =
            replay_memory_bytes(capacity, DEFAULT_SEQUENCE_LENGTH, DEFAULT_OBS_SHAPE, 0, 14);
        assert_eq!(with_keypoints, 3_187_850_000);
    }
}
