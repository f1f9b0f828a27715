//! The crate's one error type.

use std::{path::PathBuf, time::Duration};

/// Everything that can go wrong in the replay library.
///
/// Messages are one line, lowercase, without a trailing period, and name the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A sequence with zero steps.
    #[error("invalid sequence: it has no steps")]
    EmptySequence,
    /// A per-step field whose length differs from the number of steps (`actions.len()`).
    #[error("invalid sequence: {field} has {actual} entries but the sequence has {steps} steps")]
    SequenceLengthMismatch {
        field: &'static str,
        actual: usize,
        steps: usize,
    },
    /// An observation shape with a zero dimension.
    #[error("invalid sequence: observation shape {obs_shape:?} has a zero dimension")]
    ZeroObservationShape { obs_shape: [usize; 3] },
    /// `observations.len() != steps * h * w * c`.
    #[error(
        "invalid sequence: observations hold {actual} bytes, expected {expected} ({steps} steps x {obs_shape:?})"
    )]
    ObservationSizeMismatch {
        actual: usize,
        expected: usize,
        steps: usize,
        obs_shape: [usize; 3],
    },
    /// `keypoints.len() != steps * keypoint_dims`.
    #[error(
        "invalid sequence: keypoints hold {actual} floats, expected {expected} ({steps} steps x keypoint_dims {keypoint_dims})"
    )]
    KeypointSizeMismatch {
        actual: usize,
        expected: usize,
        steps: usize,
        keypoint_dims: usize,
    },
    /// A NaN or infinite keypoint float (`index` within the step's `keypoint_dims`).
    #[error(
        "invalid sequence: keypoints entry {index} of step {step} is {value}, keypoints must be finite"
    )]
    NonFiniteKeypoint {
        step: usize,
        index: usize,
        value: f32,
    },
    /// A NaN or infinite reward.
    #[error("invalid sequence: reward at step {step} is {value}, rewards must be finite")]
    NonFiniteReward { step: usize, value: f32 },
    /// A NaN or infinite entry in the stored recurrent state.
    #[error(
        "invalid sequence: initial recurrent state entry {index} is {value}, it must be finite"
    )]
    NonFiniteRecurrentState { index: usize, value: f32 },
    /// More padding steps than steps, or no valid step at all.
    #[error("invalid sequence: {padded_steps} padding steps leave no valid step out of {steps}")]
    InvalidPadding { padded_steps: usize, steps: usize },
    /// A padding step that is not neutral (reward 0 and done set).
    #[error("invalid sequence: padding step {step} must have reward 0 and done set")]
    PaddingNotNeutral { step: usize },
    /// A burn-in that leaves no valid step to learn from.
    #[error(
        "invalid sequence: burn-in of {burn_in} steps leaves nothing to learn from in {valid_steps} valid steps"
    )]
    BurnInTooLong { burn_in: usize, valid_steps: usize },
    /// A padding step whose keypoints are not all zero.
    #[error("invalid sequence: padding step {step} must have all-zero keypoints")]
    PaddingKeypointsNotZero { step: usize },
    /// A configuration value out of range.
    #[error("invalid replay config: {0}")]
    InvalidConfig(String),
    /// A NaN, infinite or negative priority.
    #[error("invalid priority {value}: priorities must be finite and non-negative")]
    InvalidPriority { value: f64 },
    /// A sum-tree leaf index past the capacity.
    #[error("sum tree index {index} is out of range for capacity {capacity}")]
    IndexOutOfRange { index: usize, capacity: usize },
    /// `update_priorities` got different numbers of keys and priorities.
    #[error("got {keys} keys but {priorities} priorities")]
    KeyPriorityCountMismatch { keys: usize, priorities: usize },
    /// A batch size of zero.
    #[error("batch size must be positive")]
    ZeroBatchSize,
    /// Sampling from an empty replay.
    #[error("cannot sample: the replay holds no sequences")]
    EmptyReplay,
    /// Prioritised sampling when every stored sequence has priority zero.
    #[error("cannot sample: every stored sequence has priority zero")]
    ZeroPriorityMass,
    /// A blocking rate-limiter call that waited past its timeout.
    #[error("rate limiter timed out after {waited:?} waiting to {operation}")]
    RateLimiterTimeout {
        operation: &'static str,
        waited: Duration,
    },
    /// A blocking rate-limiter call on (or woken by) a closed limiter.
    #[error("rate limiter is closed")]
    RateLimiterClosed,
    /// A sample request the limiter could never grant without deadlocking the inserters.
    #[error(
        "a request for {num_samples} samples can deadlock the rate limiter: at most {max_samples} per request"
    )]
    SampleRequestTooLarge { num_samples: u64, max_samples: u64 },
    /// Reading or writing a snapshot failed at the operating-system level.
    #[error("snapshot i/o failed for {path}: {source}")]
    SnapshotIo {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A snapshot file whose bytes do not decode (bad magic, checksum, truncation, bad values).
    #[error("snapshot {path} is corrupt: {reason}")]
    SnapshotCorrupt { path: PathBuf, reason: String },
    /// A snapshot written by a format version this build cannot read.
    #[error(
        "snapshot {path} has format version {found}, this build reads versions {oldest_supported} to {supported}"
    )]
    SnapshotVersion {
        path: PathBuf,
        found: u32,
        /// Oldest version this build still reads.
        oldest_supported: u32,
        /// Version this build writes (and the newest it reads).
        supported: u32,
    },
}
