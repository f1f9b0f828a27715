//! `permakey-rl run`: the embedded keypoint-agent training run (issue 7).
//!
//! 1. The keypoint front end: `keypoints.checkpoint` if set; otherwise (or from an earlier attempt
//!    of the same run folder) `keypoints.pretrain_frames` random-policy frames are collected and the
//!    model is pre-trained on them for `pretrain.steps` batches, inside the run folder.
//! 2. The agent trains on `env.game` with the embedded [`trainer::Trainer`] for the budget
//!    (`train.agent_steps`, or the preset's), evaluating as the spec says.
//! 3. The final score is printed with the run folder's files.

use std::path::Path;

use anyhow::Context;
use atari::{EnvConfig, EnvPool, RomCatalog};
use permakey::KeypointModel;
use pkrl_config::{Config, KeypointModelKind};
use tch::Tensor;
use trainer::{
    toy::{OracleKeypoints, ToyConfig, ToyVecEnv},
    EnvFactory, EnvRole, FinalScores, Trainer, VecEnv,
};

use crate::keypoints::{self, LoadedModel, ModelKind};

impl KeypointModel for LoadedModel {
    fn num_keypoints(&self) -> i64 {
        self.model().num_keypoints()
    }
    fn image_size(&self) -> i64 {
        self.model().image_size()
    }
    fn keypoints(&self, frames: &Tensor) -> permakey::KeypointOutput {
        self.model().keypoints(frames)
    }
    fn features(&self, frames: &Tensor) -> Tensor {
        self.model().features(frames)
    }
    fn gauss_std(&self) -> f64 {
        self.model().gauss_std()
    }
    fn device(&self) -> tch::Device {
        self.model().device()
    }
}

/// What a run's own keypoint pre-training cost (see [`front_end`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pretraining {
    /// Random-policy frames the model was (or, for an earlier attempt of the run, had been)
    /// pre-trained on.
    pub frames: u64,
    /// Seconds this process spent collecting them and training (0 where an earlier attempt did).
    pub collect_s: f64,
    pub train_s: f64,
}

/// The front end for `dir`'s run: the oracle of the toy world, the configured checkpoint, or one
/// pre-trained in `dir`; with what pre-training cost when the run pre-trains its own.
pub fn front_end(config: &Config, dir: &Path) -> anyhow::Result<(Box<dyn KeypointModel>, Option<Pretraining>)> {
    let device = permakey::resolve_device(config.device)?;
    if config.keypoints.model == KeypointModelKind::Oracle {
        return Ok((Box::new(OracleKeypoints::new(device)), None));
    }
    if let Some(path) = &config.keypoints.checkpoint {
        return Ok((Box::new(loaded_checkpoint(path, device)?), None));
    }
    let kind = match config.keypoints.model {
        KeypointModelKind::Permakey => ModelKind::Permakey,
        KeypointModelKind::Transporter => ModelKind::Transporter,
        KeypointModelKind::Oracle => unreachable!("handled above"),
    };
    let trained = dir.join(format!("{kind:?}").to_lowercase());
    let checkpoints = trained.join("checkpoints");
    let mut pretraining = Pretraining { frames: config.keypoints.pretrain_frames, ..Pretraining::default() };
    if permakey::checkpoint::resolve(&checkpoints).is_err() {
        anyhow::ensure!(
            config.keypoints.pretrain_frames > 0,
            "no keypoint model: set keypoints.checkpoint to a pre-trained model or keypoints.pretrain_frames > 0 to pre-train one"
        );
        let data = dir.join("keypoint-data");
        if !data.join("manifest.json").is_file() {
            let started = std::time::Instant::now();
            keypoints::collect(config, config.keypoints.pretrain_frames, &data)?;
            pretraining.collect_s = started.elapsed().as_secs_f64();
        }
        let started = std::time::Instant::now();
        keypoints::train(config, kind, &data, &trained, false)?;
        pretraining.train_s = started.elapsed().as_secs_f64();
    }
    Ok((Box::new(LoadedModel::load(&checkpoints, device)?), Some(pretraining)))
}

/// The front end of a process that must not train one (the keypoint service, the distributed
/// learner): the oracle for the toy world, otherwise `keypoints.checkpoint`.
pub fn frozen_front_end(config: &Config) -> anyhow::Result<Box<dyn KeypointModel>> {
    let device = permakey::resolve_device(config.device)?;
    if config.keypoints.model == KeypointModelKind::Oracle {
        return Ok(Box::new(OracleKeypoints::new(device)));
    }
    let path = config.keypoints.checkpoint.as_ref().ok_or_else(|| {
        anyhow::anyhow!("keypoints.checkpoint must name a pre-trained model here (train one with `permakey-rl keypoints train`, or use env.game = \"toy\" with keypoints.model = \"oracle\")")
    })?;
    Ok(Box::new(loaded_checkpoint(path, device)?))
}

fn loaded_checkpoint(path: &Path, device: tch::Device) -> anyhow::Result<LoadedModel> {
    LoadedModel::load(path, device).with_context(|| format!("keypoints.checkpoint {}", path.display()))
}

/// Environments of `config` for the trainer: Atari, or the sprite corridor for `env.game = "toy"`.
pub fn env_factory(config: &Config) -> anyhow::Result<EnvFactory> {
    if config.env.game == pkrl_config::TOY_GAME {
        let toy = ToyConfig { size: config.env.obs_height as usize, ..ToyConfig::default() };
        toy.validate()?;
        anyhow::ensure!(config.env.obs_height == config.env.obs_width && !config.env.grayscale, "the toy world renders square RGB frames; set env.obs_height = env.obs_width and grayscale = false");
        return Ok(Box::new(move |role, seed| -> anyhow::Result<Box<dyn VecEnv>> {
            let n = match role {
                EnvRole::Train { num_envs } | EnvRole::Eval { num_envs } => num_envs,
            };
            Ok(Box::new(ToyVecEnv::new(&toy, n, seed)?))
        }));
    }
    let roms = RomCatalog::discover()?;
    let (train, eval): (EnvConfig, EnvConfig) = (config.env.clone(), config.eval_env());
    let threads = match config.train.env_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    Ok(Box::new(move |role, seed| -> anyhow::Result<Box<dyn VecEnv>> {
        let pool = match role {
            EnvRole::Train { num_envs } => EnvPool::new(&train, &roms, num_envs, threads.min(num_envs), seed)?,
            EnvRole::Eval { num_envs } => EnvPool::new(&eval, &roms, num_envs, threads.min(num_envs), seed)?,
        };
        Ok(Box::new(pool))
    }))
}

/// Trains (or resumes) the agent in `dir`; returns the final scores.
pub fn train_agent(config: &Config, dir: &Path, resume: bool) -> anyhow::Result<Option<FinalScores>> {
    let (front, pretraining) = front_end(config, dir)?;
    anyhow::ensure!(
        front.image_size() == i64::from(config.env.obs_height) && config.env.obs_height == config.env.obs_width && !config.env.grayscale,
        "the keypoint model takes {0}x{0} RGB frames; env gives {1}x{2} {3}",
        front.image_size(),
        config.env.obs_height,
        config.env.obs_width,
        if config.env.grayscale { "grayscale" } else { "RGB" }
    );
    let envs = env_factory(config)?;
    let mut trainer = Trainer::new(config.trainer_settings(), config.run.seed, dir, front, envs, resume)?;
    trainer.keypoint_pretrain_frames = pretraining.map(|p| p.frames);
    if let Some(p) = pretraining {
        trainer.timing.pretrain_collect_s = p.collect_s;
        trainer.timing.pretrain_train_s = p.train_s;
    }
    if matches!(config.train.mode, trainer::TrainMode::Threads | trainer::TrainMode::Pipelined) {
        // The learner's thread gets its own instance of the same frozen model.
        let (second, _) = front_end(config, dir)?;
        trainer.set_learner_front(second);
    }
    // So do the background evaluations' thread and the final evaluation's extra threads (one
    // instance serves both: the background one is joined before the final evaluation).
    let background = usize::from(config.train.background_eval && config.train.eval_every > 0);
    let final_helpers = config.train.final_eval_workers.min(config.train.final_eval_seeds.len()).saturating_sub(1);
    for _ in 0..background.max(final_helpers) {
        let (extra, _) = front_end(config, dir)?;
        trainer.add_eval_front(extra);
    }
    trainer.run()
}
