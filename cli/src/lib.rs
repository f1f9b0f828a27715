//! The `permakey-rl` command line. Each subcommand is a function here; `main.rs` only parses.
//!
//! - `run`: the main job on the embedded (single-process) default: pre-train PermaKey (unless a
//!   checkpoint is given), then train the keypoint agent with the embedded trainer and evaluate it
//!   ([`train`]); `--resume` continues a stopped run.
//! - `collect`: the Atari-100k environment pool stepping a seeded random policy: episode
//!   statistics, throughput and recordings of what the agent sees.
//! - `atari games | record`: list the ROMs; record an episode as GIF and PNG strip.
//! - [`cluster`]: the distributed mode's processes (`keypoint-server`, `learner`, `actor`
//!   binaries; `replay-server` too).
//! - `doctor`: checks libtorch, the device, the ROMs and ALE; times a conv net's forward+backward.

pub mod cluster;
pub mod collect;
pub mod doctor;
pub mod eval_keypoints;
pub mod keypoints;
pub mod record;
pub mod train;

use std::path::PathBuf;

use anyhow::Context;
use pkrl_config::Config;

/// Creates the run folder `<out_dir>/<name>` and writes the resolved config into it.
pub fn create_run_dir(config: &Config) -> anyhow::Result<PathBuf> {
    let name = if config.run.name.is_empty() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        format!("{}-{}-{now}", atari::roms::normalise_game_name(&config.env.game), config.run.seed)
    } else {
        config.run.name.clone()
    };
    let dir = config.run.out_dir.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create run folder {}", dir.display()))?;
    std::fs::write(dir.join("config.toml"), config.to_toml()).with_context(|| format!("cannot write {}/config.toml", dir.display()))?;
    Ok(dir)
}

/// Applies the config's process-wide libtorch settings (today `matmul_precision`) and logs them;
/// every binary calls it once, after its config is read and before it builds a model.
pub fn apply_torch_settings(config: &Config) -> anyhow::Result<()> {
    permakey::set_matmul_precision(config.matmul_precision).map_err(anyhow::Error::msg)?;
    tracing::info!(matmul_precision = %config.matmul_precision, tf32_matmul = permakey::tf32_matmul_allowed(), "float32 matmul precision");
    Ok(())
}
