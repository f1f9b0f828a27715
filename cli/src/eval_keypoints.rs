//! `permakey-rl eval-keypoints`: scores a keypoint checkpoint against object positions decoded from
//! the emulator's RAM (issue 6), next to object-blind baselines, on seeded random-play frames.

use std::{fmt::Write as _, path::Path};

use anyhow::Context;
use atari::{AtariEnv, EnvConfig, RomCatalog};
use keypoint_metric::{
    baselines, metric, ram,
    sampling::{ClipSampling, sample_clips},
};
use permakey::{frames_to_tensor, keypoints::to_pixels};
use pkrl_config::Config;
use serde::Serialize;

use crate::keypoints::LoadedModel;

/// What `eval-keypoints` writes as JSON.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub game: String,
    pub noise: String,
    pub seed: u64,
    pub frames: usize,
    /// Clips of consecutive frames, each after a random warm-up (`keypoint_metric::sampling`).
    pub clips: usize,
    pub clip_len: usize,
    pub max_warmup: usize,
    pub checkpoint: String,
    pub num_keypoints: i64,
    /// method -> report (model, random, grid, frame_difference, parked)
    pub reports: Vec<(String, metric::KeypointMetricReport)>,
}

/// Samples `sampling.frames` random-play frames of `env_config` in clips at random points of the
/// episodes (`keypoint_metric::sampling`), scores the checkpoint and the baselines, writes
/// `<out>/<stem>.json` and `<out>/<stem>.md`, returns the evaluation.
pub fn evaluate(config: &Config, checkpoint: &Path, env_config: &EnvConfig, sampling: &ClipSampling, out: &Path) -> anyhow::Result<Evaluation> {
    let game = ram::Game::from_id(&env_config.game)?;
    let device = permakey::resolve_device(config.device)?;
    let loaded = LoadedModel::load(checkpoint, device)?;
    let model = loaded.model();
    let roms = RomCatalog::discover()?;
    let seed = sampling.seed;
    let mut env = AtariEnv::new(env_config, &roms, seed)?;
    let [h, w, c] = env.obs_shape();
    anyhow::ensure!(c == 3 && h == w, "eval-keypoints needs square RGB observations, got {h}x{w}x{c}");
    let frames = sample_clips(&mut env, game, sampling)?;
    // where the objects are one no-op step after a reset, for the parked baseline
    let mut start_env = AtariEnv::new(env_config, &roms, seed)?;
    let mut obs = vec![0u8; start_env.obs_len()];
    start_env.reset(&mut obs)?;
    let start_objects = ram::object_positions_frame84(game, &start_env.step(0, &mut obs)?.ram);
    let n = frames.observations.len();
    let k = model.num_keypoints() as usize;
    let mut model_keypoints = Vec::with_capacity(n);
    for chunk in frames.observations.chunks(64) {
        let flat: Vec<u8> = chunk.iter().flatten().copied().collect();
        let batch = frames_to_tensor(&flat, chunk.len() as i64, h as i64, w as i64, 3, device);
        let centres = to_pixels(&model.try_keypoints(&batch)?.centres, h as i64).to_device(tch::Device::Cpu);
        let values = Vec::<f32>::try_from(centres.flatten(0, -1)).context("keypoints to floats")?;
        model_keypoints.extend(values.chunks_exact(2 * k).map(|f| f.chunks_exact(2).map(|p| [p[0], p[1]]).collect::<Vec<_>>()));
    }
    let difference: Vec<Vec<[f32; 2]>> = frames
        .clip_ranges()
        .zip(&frames.before_clip)
        .flat_map(|(range, before)| baselines::frame_difference_keypoints_after(before, &frames.observations[range], h, 3, k))
        .collect();
    let (objects, starts, radii) = (&frames.objects, &frames.clip_starts, metric::DEFAULT_RADII);
    let score = |keypoints: &[Vec<[f32; 2]>]| metric::evaluate_clips(keypoints, objects, starts, &radii);
    let reports = vec![
        ("model".to_owned(), score(&model_keypoints)?),
        ("random".to_owned(), score(&baselines::random_keypoints(n, k, h, seed))?),
        ("grid".to_owned(), score(&vec![baselines::grid_keypoints(k, h); n])?),
        ("frame_difference".to_owned(), score(&difference)?),
        ("parked".to_owned(), score(&vec![baselines::parked_keypoints(&start_objects, k, h); n])?),
    ];
    let evaluation = Evaluation {
        game: game.id().to_owned(),
        noise: format!("{:?}", env_config.noise).to_lowercase(),
        seed,
        frames: n,
        clips: starts.len(),
        clip_len: sampling.clip_len,
        max_warmup: sampling.max_warmup,
        checkpoint: checkpoint.display().to_string(),
        num_keypoints: model.num_keypoints(),
        reports,
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let stem = format!("{}-{}", atari::roms::normalise_game_name(&evaluation.game), evaluation.noise);
    std::fs::write(out.join(format!("{stem}.json")), serde_json::to_string_pretty(&evaluation)?)?;
    std::fs::write(out.join(format!("{stem}.md")), markdown(&evaluation))?;
    Ok(evaluation)
}

/// The evaluation as a markdown table.
pub fn markdown(evaluation: &Evaluation) -> String {
    let mut text = format!(
        "{} ({} noise), {} frames in {} clips (up to {} consecutive frames after 0-{} random steps), seed {}, K = {}, checkpoint `{}`\n\n| method | P@4 | R@4 | P@8 | R@8 | jitter px |\n|---|---:|---:|---:|---:|---:|\n",
        evaluation.game,
        evaluation.noise,
        evaluation.frames,
        evaluation.clips,
        evaluation.clip_len,
        evaluation.max_warmup,
        evaluation.seed, evaluation.num_keypoints, evaluation.checkpoint
    );
    let cell = |v: Option<f32>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    for (method, report) in &evaluation.reports {
        let at = |r: f32| report.scores.iter().find(|s| s.radius == r);
        let _ = writeln!(
            text,
            "| {method} | {} | {} | {} | {} | {} |",
            cell(at(4.0).and_then(|s| s.precision)),
            cell(at(4.0).and_then(|s| s.recall)),
            cell(at(8.0).and_then(|s| s.precision)),
            cell(at(8.0).and_then(|s| s.recall)),
            cell(report.temporal_jitter)
        );
    }
    text
}
