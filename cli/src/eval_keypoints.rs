//! `permakey-rl eval-keypoints`: scores a keypoint checkpoint against object positions decoded from
//! the emulator's RAM (issue 6), next to object-blind baselines, on seeded random-play frames.

use std::{fmt::Write as _, path::Path};

use anyhow::Context;
use atari::{AtariEnv, EnvConfig, RomCatalog};
use keypoint_metric::{baselines, metric, ram};
use permakey::{frames_to_tensor, keypoints::to_pixels};
use pkrl_config::Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::keypoints::LoadedModel;

/// What `eval-keypoints` writes as JSON.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub game: String,
    pub noise: String,
    pub seed: u64,
    pub frames: usize,
    pub checkpoint: String,
    pub num_keypoints: i64,
    /// method -> report (model, random, grid, frame_difference)
    pub reports: Vec<(String, metric::KeypointMetricReport)>,
}

/// Plays `frames` random-policy steps of `env_config`, scores the checkpoint and the baselines,
/// writes `<out>/<stem>.json` and `<out>/<stem>.md`, returns the evaluation.
pub fn evaluate(config: &Config, checkpoint: &Path, env_config: &EnvConfig, frames: usize, out: &Path) -> anyhow::Result<Evaluation> {
    let game = ram::Game::from_id(&env_config.game)?;
    let device = permakey::resolve_device(config.device)?;
    let loaded = LoadedModel::load(checkpoint, device)?;
    let model = loaded.model();
    let roms = RomCatalog::discover()?;
    let seed = config.run.seed;
    let mut env = AtariEnv::new(env_config, &roms, seed)?;
    let [h, w, c] = env.obs_shape();
    anyhow::ensure!(c == 3 && h == w, "eval-keypoints needs square RGB observations, got {h}x{w}x{c}");
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xE7A1);
    let (mut observations, mut objects) = (Vec::with_capacity(frames), Vec::with_capacity(frames));
    while observations.len() < frames {
        let info = env.step(rng.random_range(0..env.num_actions()), &mut obs)?;
        observations.push(obs.clone());
        objects.push(ram::object_positions_frame84(game, &info.ram));
        if info.terminated || info.truncated {
            env.reset(&mut obs)?;
        }
    }
    let mut model_keypoints = Vec::with_capacity(frames);
    for chunk in observations.chunks(64) {
        let flat: Vec<u8> = chunk.iter().flatten().copied().collect();
        let batch = frames_to_tensor(&flat, chunk.len() as i64, h as i64, w as i64, 3, device);
        let centres = to_pixels(&model.try_keypoints(&batch)?.centres, h as i64).to_device(tch::Device::Cpu);
        let values = Vec::<f32>::try_from(centres.flatten(0, -1)).context("keypoints to floats")?;
        let k = model.num_keypoints() as usize;
        model_keypoints.extend(values.chunks_exact(2 * k).map(|f| f.chunks_exact(2).map(|p| [p[0], p[1]]).collect::<Vec<_>>()));
    }
    let k = model.num_keypoints() as usize;
    let radii = metric::DEFAULT_RADII;
    let reports = vec![
        ("model".to_owned(), metric::evaluate(&model_keypoints, &objects, &radii)?),
        ("random".to_owned(), metric::evaluate(&baselines::random_keypoints(frames, k, h, seed), &objects, &radii)?),
        ("grid".to_owned(), metric::evaluate(&vec![baselines::grid_keypoints(k, h); frames], &objects, &radii)?),
        ("frame_difference".to_owned(), metric::evaluate(&baselines::frame_difference_keypoints(&observations, h, 3, k), &objects, &radii)?),
    ];
    let evaluation = Evaluation {
        game: game.id().to_owned(),
        noise: format!("{:?}", env_config.noise).to_lowercase(),
        seed,
        frames,
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
        "{} ({} noise), {} frames, seed {}, K = {}, checkpoint `{}`\n\n| method | P@4 | R@4 | P@8 | R@8 | jitter px |\n|---|---:|---:|---:|---:|---:|\n",
        evaluation.game, evaluation.noise, evaluation.frames, evaluation.seed, evaluation.num_keypoints, evaluation.checkpoint
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
