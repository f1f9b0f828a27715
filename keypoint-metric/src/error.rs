/// Errors of the keypoint metric.
#[derive(Debug, thiserror::Error)]
pub enum KeypointMetricError {
    #[error("atari: {0}")]
    Atari(#[from] atari::AtariError),
    #[error("unsupported game '{0}': expected one of MsPacman, Seaquest, Frostbite, BattleZone")]
    UnsupportedGame(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, KeypointMetricError>;
