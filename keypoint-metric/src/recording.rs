//! Recorded frames for verifying RAM -> pixel mappings: the raw 210x160 RGB screen after each
//! agent step, with the RAM read at the same moment.

use atari::{AtariEnv, Preset, RomCatalog, SCREEN_HEIGHT, SCREEN_WIDTH};

use crate::Result;

/// One agent step: the RAM and the last emulated screen of that step (no max-pool).
#[derive(Debug, Clone)]
pub struct RamFrame {
    pub ram: [u8; 128],
    /// `SCREEN_HEIGHT * SCREEN_WIDTH * 3` bytes, row-major RGB.
    pub screen_rgb: Vec<u8>,
}

impl RamFrame {
    /// The RGB of screen pixel (`y`, `x`).
    pub fn pixel(&self, y: usize, x: usize) -> [u8; 3] {
        let offset = (y * SCREEN_WIDTH + x) * 3;
        [self.screen_rgb[offset], self.screen_rgb[offset + 1], self.screen_rgb[offset + 2]]
    }
}

/// Plays `steps` agent steps of `game` (Atari-100k eval settings: frame skip 4, no sticky
/// actions) with uniformly random actions from a small deterministic generator seeded by `seed`,
/// and returns the raw screen (max-pool off) and RAM after each step. Resets on game over.
pub fn record_random_play(game: &str, roms: &RomCatalog, seed: u64, steps: usize) -> Result<Vec<RamFrame>> {
    let mut config = Preset::Atari100k.eval_env(game);
    config.obs_height = SCREEN_HEIGHT as u32;
    config.obs_width = SCREEN_WIDTH as u32;
    config.max_pool = false;
    config.max_episode_steps = 0;
    let mut env = AtariEnv::new(&config, roms, seed)?;
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs)?;
    let num_actions = env.num_actions() as u64;
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut frames = Vec::with_capacity(steps);
    for _ in 0..steps {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let action = ((state >> 33) % num_actions) as usize;
        let info = env.step(action, &mut obs)?;
        frames.push(RamFrame { ram: info.ram, screen_rgb: obs.clone() });
        if info.terminated || info.truncated {
            env.reset(&mut obs)?;
        }
    }
    Ok(frames)
}
