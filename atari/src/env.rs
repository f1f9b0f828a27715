//! One Atari environment with the DQN-style wrappers of `baselines.atari_wrappers`, applied in the
//! order the reference uses (spec 1.2): NoopReset -> MaxAndSkip -> TimeLimit -> EpisodicLife ->
//! FireReset -> resize (area) -> distractor bars. Reward clipping stays with the agent
//! ([`crate::clip_reward`]); [`StepInfo::reward`] is always the raw game reward.
//!
//! Behaviour at the edges, as in baselines:
//! - no-ops are single emulator frames (NoopReset sits below frame skip); a game that ends during
//!   them is reset again;
//! - after a life loss with `terminal_on_life_loss`, [`AtariEnv::reset`] does not restart the game:
//!   it plays one NOOP step (and FIRE, UP where `fire_reset` applies) and goes on;
//! - FIRE reset applies only where the action set's index 1 is FIRE (ALE id 1), as baselines asserts;
//! - when a game ends inside a frame-skipped step the observation is the last frame emulated.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    config::{EnvConfig, NoiseType},
    emulator::{Emulator, EmulatorSettings, ALE_FIRE, RAM_SIZE},
    noise::{draw_bars, paint_bars},
    preprocess::AreaResizer,
    roms::RomCatalog,
    AtariError, Result,
};

/// What one agent step (or a reset) reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Raw game reward summed over the step's frames (unclipped).
    pub reward: f32,
    /// The agent's episode ended: game over, or a life lost under `terminal_on_life_loss`.
    pub terminated: bool,
    /// The game hit `max_episode_steps` (the next reset restarts it).
    pub truncated: bool,
    /// The game itself ended (game over or truncation): `episode_return`/`episode_length` are final.
    pub game_over: bool,
    pub lives: i32,
    /// Emulator frames since the environment was created.
    pub frame_number: u64,
    /// Emulator frames since the current game started.
    pub episode_frame_number: u64,
    /// Raw score of the current game so far (all lives).
    pub episode_return: f32,
    /// Agent steps of the current game so far (all lives).
    pub episode_length: u32,
    /// Console RAM after the step.
    pub ram: [u8; RAM_SIZE],
}

/// Derives ALE's 31-bit seed from an environment seed (splitmix64 finaliser).
pub fn ale_seed(seed: u64) -> i32 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 33) as i32
}

/// An Atari environment writing observations into caller-owned buffers.
#[derive(Debug)]
pub struct AtariEnv {
    config: EnvConfig,
    emulator: Emulator,
    /// ALE action ids the agent's action indices map to.
    actions: Vec<i32>,
    fire_reset: bool,
    noop_rng: ChaCha8Rng,
    noise_rng: ChaCha8Rng,
    screen_prev: Vec<u8>,
    screen_last: Vec<u8>,
    resizer: AreaResizer,
    palette_gray: [[u8; 1]; 256],
    lives: i32,
    needs_game_reset: bool,
    game_steps: u32,
    game_return: f32,
}

impl AtariEnv {
    /// Builds the environment of `config` with the ROM from `roms`, seeded by `seed`.
    pub fn new(config: &EnvConfig, roms: &RomCatalog, seed: u64) -> Result<Self> {
        config.validate()?;
        let rom = roms.resolve(&config.game)?;
        let settings = EmulatorSettings {
            seed: ale_seed(seed),
            repeat_action_probability: config.sticky_action_probability,
        };
        let emulator = Emulator::new(&rom, settings)?;
        let actions = if config.full_action_space {
            emulator.legal_actions().to_vec()
        } else {
            emulator.minimal_actions().to_vec()
        };
        let fire_reset = config.fire_reset && actions.len() >= 3 && actions[1] == ALE_FIRE;
        let (h, w) = (emulator.screen_height(), emulator.screen_width());
        let [oh, ow, channels] = config.obs_shape();
        let mut palette_gray = [[0u8; 1]; 256];
        for (i, g) in emulator.palette_gray().iter().enumerate() {
            palette_gray[i] = [*g];
        }
        Ok(Self {
            config: EnvConfig { game: rom.id, ..config.clone() },
            emulator,
            actions,
            fire_reset,
            noop_rng: ChaCha8Rng::seed_from_u64(seed),
            noise_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6E6F_6973_6521),
            screen_prev: vec![0; h * w],
            screen_last: vec![0; h * w],
            resizer: AreaResizer::new(h, w, oh, ow, channels),
            palette_gray,
            lives: 0,
            needs_game_reset: true,
            game_steps: 0,
            game_return: 0.0,
        })
    }

    pub fn config(&self) -> &EnvConfig {
        &self.config
    }

    /// Number of actions the agent chooses from.
    pub fn num_actions(&self) -> usize {
        self.actions.len()
    }

    /// ALE action ids behind the agent's action indices.
    pub fn action_ids(&self) -> &[i32] {
        &self.actions
    }

    pub fn obs_shape(&self) -> [usize; 3] {
        self.config.obs_shape()
    }

    pub fn obs_len(&self) -> usize {
        self.config.obs_len()
    }

    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Starts an agent episode and writes its first observation into `obs`.
    /// After a life loss (under `terminal_on_life_loss`) the game goes on from where it was.
    pub fn reset(&mut self, obs: &mut [u8]) -> Result<StepInfo> {
        self.check_obs(obs)?;
        if self.needs_game_reset {
            self.reset_game();
        } else {
            self.skip_step(self.actions[0]);
            if self.emulator.game_over() {
                self.reset_game();
            }
        }
        if self.fire_reset {
            for index in [1, 2] {
                self.skip_step(self.actions[index]);
                if self.emulator.game_over() {
                    self.reset_game();
                }
            }
        }
        self.lives = self.emulator.lives();
        self.write_obs(obs);
        Ok(self.info(0.0, false, false))
    }

    /// Plays action index `action` for `frame_skip` frames and writes the observation into `obs`.
    pub fn step(&mut self, action: usize, obs: &mut [u8]) -> Result<StepInfo> {
        self.check_obs(obs)?;
        let ale_action = *self.actions.get(action).ok_or_else(|| AtariError::ActionOutOfRange {
            game: self.config.game.clone(),
            action,
            num_actions: self.actions.len(),
        })?;
        let reward = self.skip_step(ale_action);
        self.game_steps += 1;
        self.game_return += reward;
        let game_over = self.emulator.game_over();
        let lives = self.emulator.lives();
        let life_lost = lives < self.lives && lives > 0;
        self.lives = lives;
        let terminated = game_over || (self.config.terminal_on_life_loss && life_lost);
        let limit = self.config.max_episode_steps;
        let truncated = !terminated && limit > 0 && self.game_steps >= limit;
        self.needs_game_reset = game_over || truncated;
        self.write_obs(obs);
        Ok(self.info(reward, terminated, truncated))
    }

    fn check_obs(&self, obs: &[u8]) -> Result<()> {
        let expected = self.obs_len();
        if obs.len() == expected { Ok(()) } else { Err(AtariError::BufferSize { expected, got: obs.len() }) }
    }

    fn info(&self, reward: f32, terminated: bool, truncated: bool) -> StepInfo {
        StepInfo {
            reward,
            terminated,
            truncated,
            game_over: self.needs_game_reset && (terminated || truncated),
            lives: self.lives,
            frame_number: self.emulator.frame_number(),
            episode_frame_number: self.emulator.episode_frame_number(),
            episode_return: self.game_return,
            episode_length: self.game_steps,
            ram: self.emulator.ram(),
        }
    }

    /// Restarts the game, then 1..=noop_max single-frame NOOPs.
    fn reset_game(&mut self) {
        self.emulator.reset_game();
        let noops = if self.config.noop_max > 0 { self.noop_rng.random_range(1..=self.config.noop_max) } else { 0 };
        for _ in 0..noops {
            self.emulator.act(0);
            if self.emulator.game_over() {
                self.emulator.reset_game();
            }
        }
        self.grab_last_screens_after_reset();
        self.needs_game_reset = false;
        self.game_steps = 0;
        self.game_return = 0.0;
    }

    fn grab_last_screens_after_reset(&mut self) {
        self.emulator.screen_indices(&mut self.screen_last).expect("sized at construction");
        self.screen_prev.copy_from_slice(&self.screen_last);
    }

    /// `frame_skip` frames of one ALE action; keeps the last two screens; returns the summed reward.
    fn skip_step(&mut self, ale_action: i32) -> f32 {
        let skip = self.config.frame_skip as usize;
        let pool = self.config.max_pool;
        let mut reward = 0i64;
        let mut grabbed_prev = false;
        for k in 0..skip {
            reward += self.emulator.act(ale_action) as i64;
            let over = self.emulator.game_over();
            if pool && k + 2 == skip {
                self.emulator.screen_indices(&mut self.screen_prev).expect("sized at construction");
                grabbed_prev = true;
            }
            if k + 1 == skip || over {
                self.emulator.screen_indices(&mut self.screen_last).expect("sized at construction");
                if pool && !grabbed_prev {
                    // the game ended before the second-to-last frame: pool the final frame with itself
                    self.screen_prev.copy_from_slice(&self.screen_last);
                }
                break;
            }
        }
        reward as f32
    }

    fn write_obs(&mut self, obs: &mut [u8]) {
        // palette lookup, max-pool and area resize in one pass over the index screens (see
        // `AreaResizer::resize_palette_max`): the same bytes as palette_max + resize
        let last = &self.screen_last;
        match (self.config.grayscale, self.config.max_pool) {
            (false, true) => self.resizer.resize_palette_max(&self.screen_prev, last, self.emulator.palette_rgb(), obs),
            (false, false) => self.resizer.resize_palette(last, self.emulator.palette_rgb(), obs),
            (true, true) => self.resizer.resize_palette_max(&self.screen_prev, last, &self.palette_gray, obs),
            (true, false) => self.resizer.resize_palette(last, &self.palette_gray, obs),
        }
        if self.config.noise != NoiseType::None {
            let [h, w, c] = self.obs_shape();
            let bars = draw_bars(self.config.noise, h, w, &mut self.noise_rng);
            paint_bars(bars, obs, h, w, c);
        }
    }
}
