//! The crate's one error type.

/// Everything that can go wrong on the actor side of replay writing.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// A configuration value out of range or options that do not fit together.
    #[error("invalid sequence writer config: {0}")]
    InvalidConfig(String),
    /// A step whose observation does not have `h * w * c` bytes.
    #[error("observation has {actual} bytes, expected {expected} for shape {obs_shape:?}")]
    ObservationSize {
        actual: usize,
        expected: usize,
        obs_shape: [usize; 3],
    },
    /// A step whose recurrent state has the wrong length.
    #[error("recurrent state has {actual} entries, expected {expected}")]
    RecurrentStateSize { actual: usize, expected: usize },
    /// A step whose keypoints do not have `keypoint_dims` floats.
    #[error("keypoints have {actual} floats, expected keypoint_dims = {expected}")]
    KeypointSize { actual: usize, expected: usize },
    /// A NaN or infinite reward.
    #[error("reward {value} is not finite")]
    NonFiniteReward { value: f32 },
    /// A NaN or infinite recurrent-state entry.
    #[error("recurrent state entry {index} is {value}, it must be finite")]
    NonFiniteRecurrentState { index: usize, value: f32 },
    /// A NaN or infinite keypoint float.
    #[error("keypoint entry {index} is {value}, it must be finite")]
    NonFiniteKeypoint { index: usize, value: f32 },
    /// An emitted sequence failed the replay's validation (a writer bug, reported not hidden).
    #[error("emitted an invalid sequence: {0}")]
    Replay(#[from] replay::ReplayError),
}
