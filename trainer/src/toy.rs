//! The sprite corridor: the project's own tiny deterministic world, and an oracle keypoint model
//! for it.
//!
//! The agent's end-to-end learning test needs an environment with a known optimal return that a
//! recurrent Q-learner masters in seconds on a CPU; Atari games take hours. The world is a
//! horizontal corridor of `num_cells` cells (default 7) across the middle rows of an RGB frame
//! (default 84 x 84, black). The agent is a white 6 x 6 square starting at the middle cell. At each
//! episode start a green goal is placed at one end (left or right, from the environment's seeded
//! [`ChaCha8Rng`]) and a red pit at the other. Actions: 0 stay, 1 left, 2 right. Entering the
//! goal's cell gives +1 and terminates, the pit's -1 and terminates; every other step gives 0, and
//! after `max_steps` steps (default 8) the episode is truncated.
//!
//! The optimal return is +1, reached in `(num_cells - 1) / 2` steps; a uniformly random policy
//! scores about 0 (the corridor is symmetric and the goal's side is a fair coin).
//!
//! Sprite `i` (cell index) is centred at pixel coordinates (row, column)
//! `((size - 1) / 2, (i + 0.5) * size / num_cells - 0.5)`: the 6 x 6 block covers rows
//! `size / 2 - 3 .. size / 2 + 3` and columns `floor((2i + 1) * size / (2 num_cells)) - 3 ..+6`
//! (exact centres when `size` is even and `size / num_cells` is an even integer, as with 84 / 7).
//!
//! [`OracleKeypoints`] is a [`KeypointModel`] that reads the sprites straight off the frame (colour
//! centroids), so the agent can be tested apart from keypoint learning.

use anyhow::{bail, ensure};
use permakey::keypoints::gaussian_maps;
use permakey::model::{KeypointModel, KeypointOutput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::env::{EnvStep, VecEnv};

/// Actions of the corridor: 0 stay, 1 left, 2 right.
pub const NUM_ACTIONS: usize = 3;
/// Side of the square sprites, in pixels.
pub const SPRITE: usize = 6;
const WHITE: [u8; 3] = [255, 255, 255];
const GREEN: [u8; 3] = [0, 255, 0];
const RED: [u8; 3] = [255, 0, 0];

/// Shape of the sprite corridor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToyConfig {
    /// Cells in the corridor (odd, >= 3): the agent starts in the middle one.
    pub num_cells: usize,
    /// Steps before an episode is truncated.
    pub max_steps: u32,
    /// Side of the square frames, in pixels.
    pub size: usize,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self { num_cells: 7, max_steps: 8, size: 84 }
    }
}

impl ToyConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        let Self { num_cells, max_steps, size } = *self;
        ensure!(num_cells >= 3 && num_cells % 2 == 1, "toy num_cells must be odd and at least 3, got {num_cells}");
        ensure!(
            size >= (SPRITE + 2) * num_cells && size <= 1024,
            "toy size must be in {}..=1024 ({} pixels per cell so sprites do not touch), got {size}",
            (SPRITE + 2) * num_cells,
            SPRITE + 2
        );
        ensure!(
            max_steps as usize >= self.optimal_steps(),
            "toy max_steps must be at least (num_cells - 1) / 2 = {} so the goal is reachable, got {max_steps}",
            self.optimal_steps()
        );
        Ok(())
    }

    /// Steps the optimal policy takes to the goal.
    pub fn optimal_steps(&self) -> usize {
        (self.num_cells - 1) / 2
    }

    /// Pixel coordinates (row, column) of the centre of a sprite at `cell` (the centroid of its
    /// pixel indices, the convention of [`permakey::keypoints::to_pixels`]).
    pub fn sprite_centre_px(&self, cell: usize) -> (f64, f64) {
        let (top, left) = self.sprite_origin(cell);
        let half = (SPRITE as f64 - 1.0) / 2.0;
        (top as f64 + half, left as f64 + half)
    }

    /// Top-left pixel of the sprite at `cell`.
    fn sprite_origin(&self, cell: usize) -> (usize, usize) {
        let top = self.size / 2 - SPRITE / 2;
        let left = (2 * cell + 1) * self.size / (2 * self.num_cells) - SPRITE / 2;
        (top, left)
    }
}

/// One sprite corridor (see the module docs).
#[derive(Debug, Clone)]
pub struct SpriteCorridor {
    config: ToyConfig,
    rng: ChaCha8Rng,
    agent: usize,
    goal: usize,
    pit: usize,
    steps: u32,
    episode_return: f32,
    done: bool,
}

impl SpriteCorridor {
    /// A corridor seeded with `seed`, already reset.
    pub fn new(config: &ToyConfig, seed: u64) -> anyhow::Result<Self> {
        config.validate()?;
        let mut env = Self {
            config: config.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            agent: 0,
            goal: 0,
            pit: 0,
            steps: 0,
            episode_return: 0.0,
            done: false,
        };
        env.reset();
        Ok(env)
    }

    /// Starts a new episode: agent in the middle, goal at a random end, pit at the other.
    pub fn reset(&mut self) {
        let last = self.config.num_cells - 1;
        self.agent = last / 2;
        (self.goal, self.pit) = if self.rng.random_bool(0.5) { (0, last) } else { (last, 0) };
        self.steps = 0;
        self.episode_return = 0.0;
        self.done = false;
    }

    /// Applies `action` (0 stay, 1 left, 2 right). Fails on an unknown action or a finished episode.
    pub fn step(&mut self, action: usize) -> anyhow::Result<EnvStep> {
        check_action(action)?;
        ensure!(!self.done, "the toy episode is over: reset the corridor before stepping it again");
        self.agent = match action {
            1 => self.agent.saturating_sub(1),
            2 => (self.agent + 1).min(self.config.num_cells - 1),
            _ => self.agent,
        };
        self.steps += 1;
        let reward = if self.agent == self.goal {
            1.0
        } else if self.agent == self.pit {
            -1.0
        } else {
            0.0
        };
        let terminated = reward != 0.0;
        let truncated = !terminated && self.steps >= self.config.max_steps;
        self.episode_return += reward;
        self.done = terminated || truncated;
        Ok(EnvStep {
            reward,
            terminated,
            truncated,
            game_over: self.done,
            game_return: self.episode_return,
            game_length: self.steps,
        })
    }

    /// Draws the current state as an HWC RGB frame into `out` (`size * size * 3` bytes).
    ///
    /// # Panics
    /// If `out` has the wrong length (see [`SpriteCorridor::frame_len`]).
    pub fn render(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.frame_len(), "toy frame buffer has the wrong length");
        out.fill(0);
        // The agent is drawn last: on the frame that ends an episode it covers the goal or pit.
        for (cell, colour) in [(self.goal, GREEN), (self.pit, RED), (self.agent, WHITE)] {
            let (top, left) = self.config.sprite_origin(cell);
            for row in top..top + SPRITE {
                let start = (row * self.config.size + left) * 3;
                for pixel in out[start..start + SPRITE * 3].chunks_exact_mut(3) {
                    pixel.copy_from_slice(&colour);
                }
            }
        }
    }

    /// The current frame in a fresh buffer.
    pub fn frame(&self) -> Vec<u8> {
        let mut out = vec![0; self.frame_len()];
        self.render(&mut out);
        out
    }

    /// Bytes of one frame.
    pub fn frame_len(&self) -> usize {
        self.config.size * self.config.size * 3
    }
    pub fn config(&self) -> &ToyConfig {
        &self.config
    }
    pub fn agent_cell(&self) -> usize {
        self.agent
    }
    pub fn goal_cell(&self) -> usize {
        self.goal
    }
    pub fn pit_cell(&self) -> usize {
        self.pit
    }
}

fn check_action(action: usize) -> anyhow::Result<()> {
    ensure!(action < NUM_ACTIONS, "toy action {action} is out of range: 0 stay, 1 left, 2 right");
    Ok(())
}

/// `n` sprite corridors seeded `base_seed + i`, stepped together.
#[derive(Debug, Clone)]
pub struct ToyVecEnv {
    envs: Vec<SpriteCorridor>,
    obs: Vec<u8>,
}

impl ToyVecEnv {
    pub fn new(config: &ToyConfig, num_envs: usize, base_seed: u64) -> anyhow::Result<Self> {
        ensure!(num_envs >= 1, "the toy environment needs at least one env, got num_envs = 0");
        let envs = (0..num_envs)
            .map(|i| SpriteCorridor::new(config, base_seed.wrapping_add(i as u64)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let obs = vec![0; num_envs * envs[0].frame_len()];
        let mut vec_env = Self { envs, obs };
        vec_env.render_all();
        Ok(vec_env)
    }

    pub fn envs(&self) -> &[SpriteCorridor] {
        &self.envs
    }

    fn render_all(&mut self) {
        let len = self.envs[0].frame_len();
        for (env, out) in self.envs.iter().zip(self.obs.chunks_exact_mut(len)) {
            env.render(out);
        }
    }
}

impl VecEnv for ToyVecEnv {
    fn num_envs(&self) -> usize {
        self.envs.len()
    }
    fn num_actions(&self) -> usize {
        NUM_ACTIONS
    }
    fn obs_shape(&self) -> [usize; 3] {
        let size = self.envs[0].config.size;
        [size, size, 3]
    }
    fn reset(&mut self) -> anyhow::Result<&[u8]> {
        self.envs.iter_mut().for_each(SpriteCorridor::reset);
        self.render_all();
        Ok(&self.obs)
    }
    fn step(&mut self, actions: &[usize]) -> anyhow::Result<(&[u8], Vec<EnvStep>)> {
        if actions.len() != self.envs.len() {
            bail!("got {} actions for {} toy environments", actions.len(), self.envs.len());
        }
        for (i, &action) in actions.iter().enumerate() {
            check_action(action).map_err(|e| e.context(format!("toy env {i}")))?;
        }
        let mut steps = Vec::with_capacity(actions.len());
        for (env, &action) in self.envs.iter_mut().zip(actions) {
            let step = env.step(action)?; // episodes never stay finished: reset below
            if step.game_over {
                env.reset();
            }
            steps.push(step);
        }
        self.render_all();
        Ok((&self.obs, steps))
    }
}

/// Keypoints read off sprite-corridor frames: K = 3 colour centroids (white agent, green goal,
/// red pit; `(0, 0)` when a colour is absent), Gaussian heatmaps of std [`OracleKeypoints::GAUSS_STD`]
/// at quarter resolution, and the frame average-pooled 4 x 4 as features (C = 3, 21 x 21 for the
/// default 84 x 84 frames: a quarter of the CNN encoder's work at 42 x 42, which keeps the
/// end-to-end learning test inside a CPU budget; the sprites stay 1.5 px wide and apart).
#[derive(Debug, Clone, Copy)]
pub struct OracleKeypoints {
    device: Device,
}

impl OracleKeypoints {
    pub const IMAGE_SIZE: i64 = 84;
    pub const HEATMAP_SIZE: i64 = 21;
    pub const GAUSS_STD: f64 = 0.15;

    pub fn new(device: Device) -> Self {
        Self { device }
    }

    fn pooled(frames: &Tensor) -> Tensor {
        frames.avg_pool2d([4, 4], [4, 4], [0, 0], false, true, None)
    }
}

impl KeypointModel for OracleKeypoints {
    fn num_keypoints(&self) -> i64 {
        3
    }
    fn image_size(&self) -> i64 {
        Self::IMAGE_SIZE
    }
    fn keypoints(&self, frames: &Tensor) -> KeypointOutput {
        tch::no_grad(|| {
            let (r, g, b) = (frames.select(1, 0).gt(0.5), frames.select(1, 1).gt(0.5), frames.select(1, 2).gt(0.5));
            let white = r.logical_and(&g).logical_and(&b);
            let green = g.logical_and(&r.logical_not()).logical_and(&b.logical_not());
            let red = r.logical_and(&g.logical_not()).logical_and(&b.logical_not());
            let masks = Tensor::stack(&[white, green, red], 1).to_kind(frames.kind()); // B x 3 x H x W
            let (h, w) = (frames.size()[2], frames.size()[3]);
            let opts = (frames.kind(), frames.device());
            // The pixel <-> [-1, 1] convention of permakey::keypoints: pixel i at linspace(-1, 1, n)[i].
            let ys = Tensor::linspace(-1.0, 1.0, h, opts).view([1, 1, h, 1]);
            let xs = Tensor::linspace(-1.0, 1.0, w, opts).view([1, 1, 1, w]);
            let sum = |t: Tensor| t.sum_dim_intlist(&[2, 3][..], false, frames.kind());
            let count = sum(masks.shallow_clone()).clamp_min(1.0);
            let y = sum(&masks * ys) / &count;
            let x = sum(&masks * xs) / &count;
            let centres = Tensor::stack(&[y, x], -1); // B x 3 x 2
            let heatmaps = gaussian_maps(&centres, h / 4, w / 4, Self::GAUSS_STD);
            KeypointOutput { centres, heatmaps, features: Self::pooled(frames) }
        })
    }
    fn features(&self, frames: &Tensor) -> Tensor {
        tch::no_grad(|| Self::pooled(frames))
    }
    fn gauss_std(&self) -> f64 {
        Self::GAUSS_STD
    }
    fn device(&self) -> Device {
        self.device
    }
}

#[cfg(test)]
mod tests {
    use permakey::keypoints::to_pixels;
    use permakey::model::frames_to_tensor;
    use tch::Kind;

    use super::*;

    fn pixel(frame: &[u8], size: usize, (row, col): (f64, f64)) -> [u8; 3] {
        let i = (row.round() as usize * size + col.round() as usize) * 3;
        [frame[i], frame[i + 1], frame[i + 2]]
    }

    fn optimal(env: &SpriteCorridor) -> usize {
        if env.goal_cell() < env.agent_cell() { 1 } else { 2 }
    }

    #[test]
    fn sprites_are_drawn_where_documented() {
        let config = ToyConfig::default();
        let env = SpriteCorridor::new(&config, 3).unwrap();
        let frame = env.frame();
        assert_eq!(config.sprite_centre_px(0), (41.5, 5.5));
        assert_eq!(config.sprite_centre_px(3), (41.5, 41.5));
        assert_eq!(config.sprite_centre_px(6), (41.5, 77.5));
        let colour = |cell| pixel(&frame, 84, config.sprite_centre_px(cell));
        assert_eq!(colour(3), WHITE);
        assert_eq!(colour(env.goal_cell()), GREEN);
        assert_eq!(colour(env.pit_cell()), RED);
        assert_eq!(colour(1), [0; 3]);
        // The agent block covers exactly rows 39..45, columns 39..45.
        let lit = |r: usize, c: usize| frame[(r * 84 + c) * 3] == 255 && frame[(r * 84 + c) * 3 + 1] == 255;
        assert!(lit(39, 39) && lit(44, 44) && !lit(38, 41) && !lit(45, 41) && !lit(41, 38) && !lit(41, 45));
        assert_eq!(frame.iter().filter(|&&v| v != 0).count(), 36 * (3 + 1 + 1));
    }

    #[test]
    fn goal_pays_one_pit_costs_one_and_time_truncates() {
        let config = ToyConfig::default();
        let mut env = SpriteCorridor::new(&config, 0).unwrap();
        let toward_goal = optimal(&env);
        for t in 1..=2 {
            assert_eq!(env.step(toward_goal).unwrap(), quiet(t));
        }
        let last = env.step(toward_goal).unwrap();
        assert!(last.terminated && last.game_over && !last.truncated && last.reward == 1.0 && last.game_length == 3);
        assert!(env.step(0).is_err(), "stepping a finished episode must fail");

        env.reset();
        let away = 3 - optimal(&env);
        let steps: Vec<_> = (0..3).map(|_| env.step(away).unwrap()).collect();
        assert!(steps[2].terminated && steps[2].reward == -1.0 && steps[2].game_return == -1.0);

        env.reset();
        for t in 1..=8 {
            let s = env.step(0).unwrap();
            assert_eq!((s.truncated, s.game_over, s.terminated, s.game_length), (t == 8, t == 8, false, t));
        }
        let err = env.step(3).unwrap_err().to_string();
        assert_eq!(err, "toy action 3 is out of range: 0 stay, 1 left, 2 right");
    }

    /// The report of a step that neither scores nor ends the episode.
    fn quiet(game_length: u32) -> EnvStep {
        EnvStep { game_length, ..Default::default() }
    }

    #[test]
    fn same_seed_same_stream() {
        let config = ToyConfig::default();
        let (mut a, mut b) = (SpriteCorridor::new(&config, 9).unwrap(), SpriteCorridor::new(&config, 9).unwrap());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut goals = Vec::new();
        for _ in 0..300 {
            let action = rng.random_range(0..3);
            assert_eq!(a.step(action).unwrap(), b.step(action).unwrap());
            assert_eq!(a.frame(), b.frame());
            if a.done {
                a.reset();
                b.reset();
                goals.push(a.goal_cell());
                assert_eq!(a.frame(), b.frame());
            }
        }
        assert!(goals.contains(&0) && goals.contains(&6), "both goal sides occur");
    }

    #[test]
    fn vec_env_resets_in_the_same_step() {
        let config = ToyConfig::default();
        let mut venv = ToyVecEnv::new(&config, 2, 5).unwrap();
        assert_eq!((venv.num_envs(), venv.num_actions(), venv.obs_shape()), (2, 3, [84, 84, 3]));
        venv.reset().unwrap();
        let frame_len = 84 * 84 * 3;
        let start = venv.obs[frame_len..].to_vec();
        for t in 1..=3 {
            let actions = [optimal(&venv.envs[0]), 0];
            let (obs, steps) = venv.step(&actions).unwrap();
            assert_eq!(obs.len(), 2 * frame_len);
            assert_eq!(steps[1], quiet(t));
            if t == 3 {
                assert_eq!(steps[0], EnvStep { reward: 1.0, terminated: true, game_over: true, game_return: 1.0, game_length: 3, ..Default::default() });
                // The observation is already the next episode's first frame, agent in the middle.
                assert_eq!(venv.envs[0].agent_cell(), 3);
                assert_eq!(venv.envs[0].steps, 0);
                assert_eq!(&venv.obs[..frame_len], &venv.envs[0].frame()[..]);
            }
        }
        assert_eq!(&venv.obs[frame_len..], &start[..], "env 1 stayed put");
        assert_eq!(venv.step(&[0]).unwrap_err().to_string(), "got 1 actions for 2 toy environments");
        let err = format!("{:#}", venv.step(&[0, 7]).unwrap_err());
        assert_eq!(err, "toy env 1: toy action 7 is out of range: 0 stay, 1 left, 2 right");
        assert_eq!(venv.envs[1].steps, 3, "a rejected step changes nothing");
    }

    #[test]
    fn oracle_finds_the_sprites() {
        let config = ToyConfig::default();
        let mut venv = ToyVecEnv::new(&config, 4, 11).unwrap();
        venv.step(&[1, 2, 0, 1]).unwrap();
        let frames = frames_to_tensor(&venv.obs, 4, 84, 84, 3, Device::Cpu);
        let oracle = OracleKeypoints::new(Device::Cpu);
        let out = oracle.try_keypoints(&frames).unwrap();
        assert_eq!(out.centres.size(), [4, 3, 2]);
        assert_eq!(out.heatmaps.size(), [4, 3, 21, 21]);
        assert_eq!(out.features.size(), [4, 3, 21, 21]);
        let px = Vec::<f32>::try_from(to_pixels(&out.centres, 84).flatten(0, -1)).unwrap();
        for (b, env) in venv.envs().iter().enumerate() {
            for (k, cell) in [env.agent_cell(), env.goal_cell(), env.pit_cell()].into_iter().enumerate() {
                let (row, col) = config.sprite_centre_px(cell);
                let i = (b * 3 + k) * 2;
                assert!((px[i] as f64 - row).abs() < 1.0 && (px[i + 1] as f64 - col).abs() < 1.0, "env {b} kp {k}");
            }
        }
        assert!(oracle.features(&frames).equal(&out.features) && oracle.gauss_std() == 0.15);
        let peak = out.heatmaps.amax(&[2, 3][..], false);
        assert!(peak.min().double_value(&[]) > 0.9, "heatmaps peak near 1");
        let empty = oracle.keypoints(&Tensor::zeros([1, 3, 84, 84], (Kind::Float, Device::Cpu)));
        assert_eq!(empty.centres.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn random_scores_about_zero_and_optimal_scores_one() {
        let config = ToyConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut random, mut optimal_total) = (0.0, 0.0);
        let mut env = SpriteCorridor::new(&config, 1).unwrap();
        for _ in 0..200 {
            env.reset();
            loop {
                let s = env.step(rng.random_range(0..3)).unwrap();
                if s.game_over {
                    random += s.game_return;
                    break;
                }
            }
            env.reset();
            let mut last = EnvStep::default();
            for _ in 0..config.optimal_steps() {
                last = env.step(optimal(&env)).unwrap();
            }
            assert!(last.terminated && last.game_return == 1.0);
            optimal_total += last.game_return;
        }
        let mean = random / 200.0;
        assert!(mean > -0.5 && mean < 0.5, "random mean return {mean}");
        assert_eq!(optimal_total, 200.0);
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            ToyConfig { num_cells: 4, ..Default::default() },
            ToyConfig { num_cells: 1, ..Default::default() },
            ToyConfig { size: 40, ..Default::default() },
            ToyConfig { max_steps: 2, ..Default::default() },
        ];
        for config in bad {
            assert!(SpriteCorridor::new(&config, 0).is_err(), "{config:?}");
        }
        assert!(ToyVecEnv::new(&ToyConfig::default(), 0, 0).is_err());
        let config: ToyConfig = serde_json::from_str(r#"{"num_cells": 5}"#).unwrap();
        assert_eq!((config.num_cells, config.max_steps, config.size), (5, 8, 84));
    }
}
