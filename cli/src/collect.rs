//! `permakey-rl run` (for now): the environment pool under a seeded random policy.

use std::{fmt::Write as _, path::Path, time::Instant};

use anyhow::Context;
use atari::{EnvConfig, EnvPool, NoiseType, RomCatalog};
use pkrl_config::Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tracing::info;

use crate::record::record_pair;

/// What a collection run measured.
#[derive(Debug, Clone, Serialize)]
pub struct CollectSummary {
    pub game: String,
    pub agent_steps: u64,
    pub frames: u64,
    pub games_finished: usize,
    pub mean_game_return: Option<f64>,
    pub max_game_return: Option<f64>,
    pub mean_game_length: Option<f64>,
    pub seconds: f64,
    pub agent_steps_per_second: f64,
    pub num_envs: usize,
    pub num_threads: usize,
}

/// Steps `config.collect.num_envs` environments with uniformly random actions for
/// `config.collect.agent_steps` agent steps; writes `episodes.csv`, `summary.json` and recordings.
pub fn run_collect(config: &Config, run_dir: &Path) -> anyhow::Result<CollectSummary> {
    let roms = RomCatalog::discover()?;
    let threads = match config.collect.num_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let envs = config.collect.num_envs;
    let mut pool = EnvPool::new(&config.env, &roms, envs, threads, config.run.seed)?;
    let num_actions = pool.num_actions();
    info!(game = %config.env.game, envs, threads, num_actions, steps = config.collect.agent_steps, "collecting with a random policy");
    let mut rng = ChaCha8Rng::seed_from_u64(config.run.seed ^ 0xAC71_0A5);
    let mut csv = String::from("env,game_return,game_length,frames\n");
    let (mut returns, mut lengths) = (Vec::new(), Vec::new());
    pool.reset()?;
    let started = Instant::now();
    let mut actions = vec![0usize; envs];
    let rounds = config.collect.agent_steps.div_ceil(envs as u64);
    let mut last_log = Instant::now();
    for round in 0..rounds {
        for a in actions.iter_mut() {
            *a = rng.random_range(0..num_actions);
        }
        let view = pool.step(&actions)?;
        for (env, info) in view.infos.iter().enumerate() {
            if info.game_over {
                writeln!(csv, "{env},{},{},{}", info.episode_return, info.episode_length, info.episode_frame_number)?;
                returns.push(info.episode_return as f64);
                lengths.push(info.episode_length as f64);
            }
        }
        if last_log.elapsed().as_secs_f64() > 5.0 {
            last_log = Instant::now();
            let done = (round + 1) * envs as u64;
            info!(done, games = returns.len(), steps_per_s = done as f64 / started.elapsed().as_secs_f64(), "progress");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let agent_steps = rounds * envs as u64;
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let summary = CollectSummary {
        game: config.env.game.clone(),
        agent_steps,
        frames: agent_steps * config.env.frame_skip as u64,
        games_finished: returns.len(),
        mean_game_return: mean(&returns),
        max_game_return: returns.iter().copied().fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r)))),
        mean_game_length: mean(&lengths),
        seconds,
        agent_steps_per_second: agent_steps as f64 / seconds,
        num_envs: envs,
        num_threads: threads,
    };
    std::fs::write(run_dir.join("episodes.csv"), csv).context("cannot write episodes.csv")?;
    std::fs::write(run_dir.join("summary.json"), serde_json::to_string_pretty(&summary)?).context("cannot write summary.json")?;
    if config.collect.record_steps > 0 {
        let noisy = EnvConfig { noise: NoiseType::Both, ..config.eval_env() };
        record_pair(&config.eval_env(), &noisy, &roms, config.run.seed, config.collect.record_steps, run_dir)?;
    }
    Ok(summary)
}
