//! Recordings of what the agent sees.

use std::path::Path;

use anyhow::Context;
use atari::{
    record::{record_episode, write_gif, write_png_strip, ActionSource},
    EnvConfig, RomCatalog,
};

/// Records one episode with `source` and writes `<stem>.gif` and `<stem>.png` into `dir`.
pub fn record_to(config: &EnvConfig, roms: &RomCatalog, seed: u64, source: &ActionSource, steps: usize, dir: &Path, stem: &str) -> anyhow::Result<f32> {
    let recording = record_episode(config, roms, seed, source, steps)?;
    let gif = dir.join(format!("{stem}.gif"));
    let png = dir.join(format!("{stem}.png"));
    write_gif(&gif, &recording, 2, 4).with_context(|| format!("cannot write {}", gif.display()))?;
    let every = (recording.frames.len() / 16).max(1);
    write_png_strip(&png, &recording, 2, every, 16).with_context(|| format!("cannot write {}", png.display()))?;
    tracing::info!(gif = %gif.display(), png = %png.display(), frames = recording.frames.len(), episode_return = recording.episode_return, "recorded");
    Ok(recording.episode_return)
}

/// The same random-action episode, clean and noisy, side by side in `dir`.
pub fn record_pair(clean: &EnvConfig, noisy: &EnvConfig, roms: &RomCatalog, seed: u64, steps: usize, dir: &Path) -> anyhow::Result<()> {
    let source = ActionSource::Random { seed };
    record_to(clean, roms, seed, &source, steps, dir, "episode-clean")?;
    record_to(noisy, roms, seed, &source, steps, dir, "episode-noisy")?;
    Ok(())
}
