use std::path::PathBuf;

/// Everything that can go wrong in this crate; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum AtariError {
    #[error("unknown game '{name}'; known ids: {known}")]
    UnknownGame { name: String, known: String },
    #[error(
        "no usable ROM folder at {dir}: {reason}; run `make setup` or set PERMAKEY_ROM_DIR to the \
         `ale_py/roms` folder of ale-py 0.12.1"
    )]
    RomDir { dir: PathBuf, reason: String },
    #[error("ROM for '{game}' is missing at {path}; run `make setup` to reinstall the ale-py 0.12.1 ROMs")]
    MissingRom { game: String, path: PathBuf },
    #[error(
        "ROM {path} has md5 {actual}, but ale-py 0.12.1 expects {expected} for '{game}'; replace it with \
         the ROM shipped by ale-py 0.12.1"
    )]
    RomChecksum { game: String, path: PathBuf, expected: String, actual: String },
    #[error("invalid environment config: {0}")]
    Config(String),
    #[error("action {action} is out of range: '{game}' has {num_actions} actions (0..{num_actions})")]
    ActionOutOfRange { game: String, action: usize, num_actions: usize },
    #[error("buffer of {got} bytes given where {expected} are needed")]
    BufferSize { expected: usize, got: usize },
    #[error("ALE error: {0}")]
    Ale(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

pub type Result<T, E = AtariError> = std::result::Result<T, E>;
