//! The PermaKey pre-training loop: batches in, checkpoints, a CSV log and PNG previews out.
//!
//! A run folder holds `model.json` (the model config), `metrics.csv` (one row per logged step:
//! step, epoch-free batch count, learning rate, the four losses, seconds), `previews/step-N.png`
//! (frames with keypoints, error maps per layer, the keypoints' reconstruction of the error map)
//! and `checkpoints/step-N/` (see [`crate::checkpoint`]) with `checkpoints/latest`.
//! `resume` continues from `checkpoints/latest`: weights, batch-norm statistics, Adam moments and
//! step count are restored; the caller's batch source is asked for batch `step` onwards, so a
//! seeded source continues where it stopped. On a CUDA device the source is asked, and its
//! batches copied to the device, on a helper thread up to [`crate::prefetch::DEPTH`] batches ahead
//! of training ([`crate::prefetch`]: the copy would otherwise wait for the update before it).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use crate::{
    checkpoint,
    config::PermaKeyConfig,
    optim::{Adam, AdamConfig},
    permakey::PermaKey,
    prefetch::{self, prefetched},
    viz,
};

pub const KIND: &str = "permakey";

/// Pre-training loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Batches to train in total (a resumed run stops at the same total).
    pub steps: u64,
    /// Frames per batch (32 in the reference).
    pub batch_size: i64,
    pub adam: AdamConfig,
    /// Batches between CSV rows.
    pub log_every: u64,
    /// Batches between PNG previews (0 = none).
    pub preview_every: u64,
    /// Batches between checkpoints (a final one is always written).
    pub checkpoint_every: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            steps: 5000,
            batch_size: 32,
            adam: AdamConfig::default(),
            log_every: 10,
            preview_every: 500,
            checkpoint_every: 1000,
            progress: true,
        }
    }
}

impl PretrainConfig {
    /// The Transporter's schedule (spec 6): batch 64, InverseTimeDecay(2e-4, 30000, 0.9) counted in
    /// batches (one optimiser step per batch there).
    pub fn transporter() -> Self {
        Self { batch_size: 64, adam: AdamConfig { decay_steps: 30_000, decay_rate: 0.9, ..AdamConfig::default() }, ..Self::default() }
    }
}

/// Losses of one logged step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepLosses {
    pub step: u64,
    pub nll: f64,
    pub kl: f64,
    pub lsp: f64,
    pub pnet: f64,
}

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("batch {step}: {reason}")]
    Batch { step: u64, reason: String },
    #[error("loss became {value} at batch {step}: lower the learning rate or check the data")]
    NonFinite { step: u64, value: f64 },
    #[error("cannot write {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// A trained (or training) model with its variables.
pub struct Trained {
    pub vs: nn::VarStore,
    pub model: PermaKey,
    pub step: u64,
    pub history: Vec<StepLosses>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io { path: path.to_owned(), reason: e.to_string() }
}

/// Writes `model.json` and opens `metrics.csv` for appending (with `header` unless a resumed run
/// already has the file).
fn start_run_files(run_dir: &Path, model_config: &impl Serialize, resume: bool, header: &str) -> Result<(PathBuf, fs::File), TrainError> {
    fs::write(run_dir.join("model.json"), serde_json::to_string_pretty(model_config).expect("config serialises"))
        .map_err(|e| io_err(run_dir, e))?;
    let csv_path = run_dir.join("metrics.csv");
    let fresh = !resume || !csv_path.exists();
    let mut csv = fs::OpenOptions::new().create(true).append(true).open(&csv_path).map_err(|e| io_err(&csv_path, e))?;
    if fresh {
        writeln!(csv, "{header}").map_err(|e| io_err(&csv_path, e))?;
    }
    Ok((csv_path, csv))
}

/// Losses of the batches since the last check, kept on the device. The loops check them for NaN
/// and infinity in one read-back when they read numbers anyway (a CSV row), before anything a
/// later run relies on is written (a preview, a checkpoint) and at the end, instead of after
/// every batch: on a CUDA device a per-batch read-back makes the host wait for the batch's forward
/// pass before it can queue the backward pass and the next batch. Decision: the error still names
/// the first batch whose loss was not finite and no checkpoint holds weights trained on it, but
/// up to [`PendingLosses::LIMIT`] batches after it are trained before the loop notices.
struct PendingLosses {
    steps: Vec<u64>,
    losses: Vec<Tensor>,
}

impl PendingLosses {
    /// Batches held before a check is forced.
    const LIMIT: usize = 64;

    fn new() -> Self {
        Self { steps: Vec::new(), losses: Vec::new() }
    }

    /// Holds batch `step`'s loss; checks when [`PendingLosses::LIMIT`] are held.
    fn push(&mut self, step: u64, loss: &Tensor) -> Result<(), TrainError> {
        self.steps.push(step);
        self.losses.push(loss.detach().reshape([1]));
        if self.losses.len() >= Self::LIMIT {
            return self.check();
        }
        Ok(())
    }

    /// Reads the held losses back; the first that is not finite is the error.
    fn check(&mut self) -> Result<(), TrainError> {
        if self.losses.is_empty() {
            return Ok(());
        }
        let values = Tensor::cat(&self.losses, 0).to_kind(tch::Kind::Double).to_device(Device::Cpu);
        let values = Vec::<f64>::try_from(values).map_err(|e| TrainError::Batch { step: self.steps[0], reason: format!("cannot read the losses back: {e}") })?;
        let bad = self.steps.iter().copied().zip(values).find(|(_, v)| !v.is_finite());
        self.steps.clear();
        self.losses.clear();
        match bad {
            Some((step, value)) => Err(TrainError::NonFinite { step, value }),
            None => Ok(()),
        }
    }
}

/// Runs a pre-training loop, `train_loop`, on the batches of `upload` for `steps`, made `depth`
/// ahead on a helper thread ([`crate::prefetch`]; 0: inline), then logs how long the batches took
/// to make (read, convert, copy to the device) and how much of that the training thread waited
/// for (all of it when they are made inline, on the CPU). The log line comes even when the loop
/// failed.
fn train_on_batches<T: Send>(
    steps: std::ops::Range<u64>,
    depth: usize,
    upload: &mut (dyn FnMut(u64) -> Result<T, String> + Send),
    started: Instant,
    train_loop: impl FnOnce(&mut dyn FnMut(u64) -> Result<T, String>) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let (trained, stats) = prefetched(steps, depth, upload, train_loop);
    tracing::info!(
        batches = stats.made,
        making_s = format!("{:.2}", stats.making_s),
        waiting_s = format!("{:.2}", stats.waiting_s),
        training_s = format!("{:.2}", started.elapsed().as_secs_f64()),
        "pre-training batches made; the training thread waited waiting_s of making_s for them"
    );
    trained
}

/// What a pre-training loop writes after a batch.
struct Due {
    /// A CSV row.
    log: bool,
    preview: bool,
    /// A checkpoint.
    save: bool,
}

impl Due {
    /// After `done` batches (the last batch gets all three, a preview only if previews are on).
    fn after(train: &PretrainConfig, done: u64) -> Self {
        let last = done == train.steps;
        Self {
            log: done % train.log_every.max(1) == 0 || last,
            preview: train.preview_every > 0 && (done % train.preview_every == 0 || last),
            save: done % train.checkpoint_every.max(1) == 0 || last,
        }
    }
}

/// A progress bar with losses and ETA (hidden when `train.progress` is off), at `position`.
fn progress_bar(train: &PretrainConfig, position: u64) -> indicatif::ProgressBar {
    let bar = if train.progress { indicatif::ProgressBar::new(train.steps) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(position);
    bar
}

/// Builds a PermaKey model and its variables on `device`, seeded.
pub fn build(config: &PermaKeyConfig, device: Device, seed: i64) -> Result<(nn::VarStore, PermaKey), TrainError> {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(device);
    let model = PermaKey::new(&vs.root(), config).map_err(TrainError::Config)?;
    Ok((vs, model))
}

/// Loads a PermaKey checkpoint (a checkpoint folder or a run's `checkpoints/` folder) for inference.
pub fn load_model(path: &Path, device: Device) -> Result<(nn::VarStore, PermaKey, u64), TrainError> {
    let loaded = checkpoint::load::<PermaKeyConfig>(path, KIND)?;
    let (mut vs, model) = build(&loaded.meta.config, device, 0)?;
    loaded.restore(&mut vs)?;
    Ok((vs, model, loaded.meta.step))
}

/// Trains for `train.steps` batches from `next_batch(step)` (frames `B x 3 x S x S` in `[0, 1]`),
/// writing into `run_dir`; resumes from `run_dir/checkpoints/latest` when `resume` is set.
pub fn pretrain(
    model_config: &PermaKeyConfig,
    train: &PretrainConfig,
    device: Device,
    seed: i64,
    run_dir: &Path,
    resume: bool,
    next_batch: &mut (dyn FnMut(u64) -> Result<Tensor, String> + Send),
) -> Result<Trained, TrainError> {
    pretrain_with_depth(model_config, train, device, seed, run_dir, resume, next_batch, prefetch::depth_for(device))
}

/// [`pretrain`] with `depth` batches made ahead on a helper thread (0: inline), whatever the device.
#[allow(clippy::too_many_arguments)]
fn pretrain_with_depth(
    model_config: &PermaKeyConfig,
    train: &PretrainConfig,
    device: Device,
    seed: i64,
    run_dir: &Path,
    resume: bool,
    next_batch: &mut (dyn FnMut(u64) -> Result<Tensor, String> + Send),
    depth: usize,
) -> Result<Trained, TrainError> {
    let checkpoints = run_dir.join("checkpoints");
    fs::create_dir_all(run_dir.join("previews")).map_err(|e| io_err(run_dir, e))?;
    let (mut vs, model) = build(model_config, device, seed)?;
    let mut adam = Adam::new(&vs, train.adam.clone());
    if resume {
        let loaded = checkpoint::load::<PermaKeyConfig>(&checkpoints, KIND)?;
        if &loaded.meta.config != model_config {
            return Err(TrainError::Config(format!(
                "the checkpoint in {} was trained with another model config; resume with the same config",
                loaded.dir.display()
            )));
        }
        loaded.restore(&mut vs)?;
        adam.load_state(&loaded.optimiser_state(), loaded.meta.step).map_err(TrainError::Config)?;
        tracing::info!(step = adam.step, from = %loaded.dir.display(), "resumed");
    }
    let (csv_path, mut csv) = start_run_files(run_dir, model_config, resume, "step,learning_rate,nll,kl,lsp,pnet,seconds")?;
    let bar = progress_bar(train, adam.step);
    let started = Instant::now();
    let mut history = Vec::new();
    let mut pending = PendingLosses::new();
    // On a CUDA device batches are read and copied to the device on a helper thread (`crate::prefetch`).
    let mut upload = |step: u64| next_batch(step).map(|frames| frames.to_device(device));
    train_on_batches(adam.step..train.steps, depth, &mut upload, started, |next_batch| {
        while adam.step < train.steps {
            let step = adam.step;
            let frames = next_batch(step).map_err(|reason| TrainError::Batch { step, reason })?;
            let losses = model.losses(&frames, true);
            pending.push(step, &losses.total)?;
            let lr = adam.current_lr();
            adam.backward_step(&losses.total);
            let done = adam.step;
            let Due { log, preview, save } = Due::after(train, done);
            if log || preview || save {
                pending.check()?;
            }
            if log {
                let row = StepLosses {
                    step: done,
                    nll: losses.nll.double_value(&[]),
                    kl: losses.kl.double_value(&[]),
                    lsp: losses.lsp.double_value(&[]),
                    pnet: losses.pnet.double_value(&[]),
                };
                writeln!(csv, "{},{lr:.6e},{:.6},{:.6},{:.6},{:.6},{:.2}", done, row.nll, row.kl, row.lsp, row.pnet, started.elapsed().as_secs_f64())
                    .map_err(|e| io_err(&csv_path, e))?;
                bar.set_message(format!("nll {:.3} kl {:.3} lsp {:.4} pnet {:.4}", row.nll, row.kl, row.lsp, row.pnet));
                history.push(row);
            }
            if preview {
                let path = run_dir.join("previews").join(format!("step-{done:07}.png"));
                write_preview(&model, &frames.narrow(0, 0, frames.size()[0].min(4)), &path)?;
            }
            if save {
                let name = format!("step-{done:07}");
                checkpoint::save(&checkpoints, &name, KIND, model_config, &vs, &adam.state(), done, 0, serde_json::Value::Null)?;
            }
            bar.set_position(done);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let step = adam.step;
    Ok(Trained { vs, model, step, history })
}

/// Writes a preview grid: one row per frame with the frame + keypoints, each error map, and the
/// keypoints' reconstruction of the error map (all upscaled x2).
pub fn write_preview(model: &PermaKey, frames: &Tensor, path: &Path) -> Result<(), TrainError> {
    let analysis = model.analyse(frames);
    let cpu = |t: &Tensor| t.to_device(Device::Cpu);
    let (frames, maps, recon, centres) = (cpu(frames), cpu(&analysis.error_maps), cpu(&analysis.reconstructed_error_map), cpu(&analysis.centres));
    let mut rows = Vec::new();
    for b in 0..frames.size()[0] {
        let mut frame = viz::frame_canvas(&frames.get(b)).upscale(2);
        viz::draw_keypoints(&mut frame, &centres.get(b));
        let mut row = vec![frame];
        for l in 0..maps.size()[1] {
            row.push(viz::heat_canvas(&maps.get(b).get(l)).upscale(2));
        }
        let mut reconstruction = viz::heat_canvas(&recon.get(b).get(0)).upscale(2);
        viz::draw_keypoints(&mut reconstruction, &centres.get(b));
        row.push(reconstruction);
        rows.push(row);
    }
    let image = viz::grid(&rows);
    atari::record::write_png(path, &image.rgb, image.height, image.width).map_err(|e| io_err(path, e))
}

/// Checkpoint kind of the Transporter baseline.
pub const TRANSPORTER_KIND: &str = "transporter";

/// Trains the Transporter baseline for `train.steps` batches of `(source, target)` pairs from
/// `next_pair(step)`, with Adam and InverseTimeDecay(2e-4, 30000, 0.9) unless `train.adam` says
/// otherwise; `metrics.csv` (step, learning rate, reconstruction loss) and checkpoints as for PermaKey.
pub fn pretrain_transporter(
    model_config: &crate::transporter::TransporterConfig,
    train: &PretrainConfig,
    device: Device,
    seed: i64,
    run_dir: &Path,
    resume: bool,
    next_pair: &mut (dyn FnMut(u64) -> Result<(Tensor, Tensor), String> + Send),
) -> Result<(nn::VarStore, crate::transporter::Transporter, u64), TrainError> {
    model_config.validate().map_err(TrainError::Config)?;
    let checkpoints = run_dir.join("checkpoints");
    fs::create_dir_all(run_dir.join("previews")).map_err(|e| io_err(run_dir, e))?;
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(device);
    let model = crate::transporter::Transporter::new(&vs.root(), model_config);
    let mut adam = Adam::new(&vs, train.adam.clone());
    if resume {
        let loaded = checkpoint::load::<crate::transporter::TransporterConfig>(&checkpoints, TRANSPORTER_KIND)?;
        loaded.restore(&mut vs)?;
        adam.load_state(&loaded.optimiser_state(), loaded.meta.step).map_err(TrainError::Config)?;
    }
    let (csv_path, mut csv) = start_run_files(run_dir, model_config, resume, "step,learning_rate,reconstruction,seconds")?;
    let bar = progress_bar(train, adam.step);
    let started = Instant::now();
    let mut pending = PendingLosses::new();
    let mut upload = |step: u64| next_pair(step).map(|(source, target)| (source.to_device(device), target.to_device(device)));
    train_on_batches(adam.step..train.steps, prefetch::depth_for(device), &mut upload, started, |next_pair| {
        while adam.step < train.steps {
            let step = adam.step;
            let (source, target) = next_pair(step).map_err(|reason| TrainError::Batch { step, reason })?;
            let loss = model.loss(&source, &target, true);
            pending.push(step, &loss)?;
            let lr = adam.current_lr();
            adam.backward_step(&loss);
            let done = adam.step;
            let Due { log, preview, save } = Due::after(train, done);
            if log || preview || save {
                pending.check()?;
            }
            if log {
                let value = loss.double_value(&[]);
                writeln!(csv, "{done},{lr:.6e},{value:.6},{:.2}", started.elapsed().as_secs_f64()).map_err(|e| io_err(&csv_path, e))?;
                bar.set_message(format!("reconstruction {value:.4}"));
            }
            if preview {
                let path = run_dir.join("previews").join(format!("step-{done:07}.png"));
                let n = source.size()[0].min(4);
                write_transporter_preview(&model, &source.narrow(0, 0, n), &target.narrow(0, 0, n), &path)?;
            }
            if save {
                let name = format!("step-{done:07}");
                checkpoint::save(&checkpoints, &name, TRANSPORTER_KIND, model_config, &vs, &adam.state(), done, 0, serde_json::Value::Null)?;
            }
            bar.set_position(done);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let step = adam.step;
    Ok((vs, model, step))
}

/// Writes a Transporter preview: one row per pair with the source and the target frame (each with
/// its keypoints) and the reconstruction of the target from transported source features.
pub fn write_transporter_preview(
    model: &crate::transporter::Transporter,
    source: &Tensor,
    target: &Tensor,
    path: &Path,
) -> Result<(), TrainError> {
    let (source_centres, reconstruction) = tch::no_grad(|| {
        let out = model.reconstruct(source, target, false);
        (model.keypoint_centres(source, false), out)
    });
    let cpu = |t: &Tensor| t.to_device(Device::Cpu);
    let (source, target) = (cpu(source), cpu(target));
    let (source_centres, target_centres, image) = (cpu(&source_centres), cpu(&reconstruction.target_centres), cpu(&reconstruction.reconstruction));
    let mut rows = Vec::new();
    for b in 0..source.size()[0] {
        let mut a = viz::frame_canvas(&source.get(b)).upscale(2);
        viz::draw_keypoints(&mut a, &source_centres.get(b));
        let mut t = viz::frame_canvas(&target.get(b)).upscale(2);
        viz::draw_keypoints(&mut t, &target_centres.get(b));
        rows.push(vec![a, t, viz::frame_canvas(&image.get(b)).upscale(2)]);
    }
    let grid = viz::grid(&rows);
    atari::record::write_png(path, &grid.rgb, grid.height, grid.width).map_err(|e| io_err(path, e))
}

/// Loads a Transporter checkpoint for inference.
pub fn load_transporter(path: &Path, device: Device) -> Result<(nn::VarStore, crate::transporter::Transporter, u64), TrainError> {
    let loaded = checkpoint::load::<crate::transporter::TransporterConfig>(path, TRANSPORTER_KIND)?;
    loaded.meta.config.validate().map_err(TrainError::Config)?;
    let mut vs = nn::VarStore::new(device);
    let model = crate::transporter::Transporter::new(&vs.root(), &loaded.meta.config);
    loaded.restore(&mut vs)?;
    Ok((vs, model, loaded.meta.step))
}

#[cfg(test)]
mod tests {
    use tch::Kind;

    use super::*;

    fn small() -> PermaKeyConfig {
        PermaKeyConfig {
            encoder_filters: [4, 8, 8, 8],
            decoder_filters: [8, 4, 4, 4, 4],
            lsp_hidden: [16, 16, 16],
            pnet_filters: [4, 8, 8, 8],
            ..PermaKeyConfig::default()
        }
    }

    /// Trains `small()` on random batches, batch `bad` all NaN, `depth` batches made ahead on a
    /// helper thread; returns the result, the batches asked for and the checkpoints written.
    fn train_with_nan(train: &PretrainConfig, bad: u64, depth: usize) -> (Result<Trained, TrainError>, u64, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut asked = 0;
        let mut next = |step: u64| {
            asked += 1;
            let frames = Tensor::rand([2, 3, 84, 84], (Kind::Float, Device::Cpu));
            Ok(if step == bad { frames.fill(f64::NAN) } else { frames })
        };
        let result = pretrain_with_depth(&small(), train, Device::Cpu, 0, dir.path(), false, &mut next, depth);
        let mut saved: Vec<String> = fs::read_dir(dir.path().join("checkpoints"))
            .map(|entries| entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with("step-")).collect())
            .unwrap_or_default();
        saved.sort();
        (result, asked, saved)
    }

    /// Frames that depend on `step` only (no torch RNG: the source runs on the prefetch thread).
    fn frames_of(step: u64) -> Tensor {
        let values: Vec<f32> = (0..2 * 3 * 84 * 84u64).map(|i| ((i * 7919 + step * 104_729) % 256) as f32 / 255.0).collect();
        Tensor::from_slice(&values).view([2, 3, 84, 84])
    }

    /// Pre-trains `small()` in `dir` up to `steps`; returns the steps the source was asked for.
    fn train_to(dir: &Path, steps: u64, resume: bool, depth: usize) -> Vec<u64> {
        let train = PretrainConfig { steps, batch_size: 2, log_every: 1, preview_every: 0, checkpoint_every: 3, progress: false, ..PretrainConfig::default() };
        let mut asked = Vec::new();
        let mut next = |step: u64| {
            asked.push(step);
            Ok(frames_of(step))
        };
        let trained = pretrain_with_depth(&small(), &train, Device::Cpu, 0, dir, resume, &mut next, depth).unwrap();
        assert_eq!(trained.step, steps);
        asked
    }

    /// (That the helper leaves a run's numbers alone is checked on whole runs, not here: other
    /// tests of this binary draw from torch's global RNG at the same time.)
    #[test]
    fn prefetched_batches_come_in_order_and_a_resumed_run_asks_for_the_next_one() {
        for depth in [0, prefetch::DEPTH] {
            let (one, three) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let asked = train_to(one.path(), 6, false, depth);
            assert_eq!(asked, [0, 1, 2, 3, 4, 5], "depth {depth}: the source is asked for every batch once, in order, and no further");
            // Stopped at the step-3 checkpoint, resumed to 6: asked for 3, 4, 5.
            let asked = train_to(three.path(), 3, false, depth);
            assert_eq!(asked, [0, 1, 2], "depth {depth}");
            let asked = train_to(three.path(), 6, true, depth);
            assert_eq!(asked, [3, 4, 5], "depth {depth}");
            let history = fs::read_to_string(three.path().join("metrics.csv")).unwrap();
            let steps: Vec<&str> = history.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
            assert_eq!(steps, ["1", "2", "3", "4", "5", "6"], "depth {depth}: {history}");
        }
    }

    #[test]
    fn a_non_finite_loss_names_its_batch_and_no_checkpoint_holds_weights_trained_on_it() {
        // Inline (the CPU's way) and with the helper thread a CUDA device uses.
        for depth in [0, prefetch::DEPTH] {
            let base = PretrainConfig { steps: 12, batch_size: 2, log_every: 5, preview_every: 0, checkpoint_every: 4, progress: false, ..PretrainConfig::default() };
            // Batch 5 is trained at step 6; the check before the step-8 checkpoint finds it.
            let (result, asked, saved) = train_with_nan(&base, 5, depth);
            match result {
                Err(TrainError::NonFinite { step: 5, value }) => assert!(value.is_nan()),
                other => panic!("depth {depth}: expected the NaN of batch 5, got {:?}", other.err()),
            }
            // Batches 0..8 were trained before the check; the helper may have made `depth` more.
            assert!((8..=8 + depth as u64).contains(&asked), "depth {depth}: asked for {asked} batches");
            assert_eq!(saved, ["step-0000004"], "depth {depth}: the step-8 checkpoint would hold NaN weights");
            // Nothing logged or saved for a long stretch: the held losses force a check.
            let sparse = PretrainConfig { steps: 200, log_every: 1000, checkpoint_every: 1000, ..base.clone() };
            let (result, asked, _) = train_with_nan(&sparse, 3, depth);
            assert!(matches!(result, Err(TrainError::NonFinite { step: 3, .. })), "depth {depth}: {:?}", result.err());
            let limit = PendingLosses::LIMIT as u64;
            assert!((limit..=limit + depth as u64).contains(&asked), "depth {depth}: asked for {asked} batches");
            // The last batch is checked too.
            let (result, _, saved) = train_with_nan(&PretrainConfig { steps: 7, ..base }, 6, depth);
            assert!(matches!(result, Err(TrainError::NonFinite { step: 6, .. })), "depth {depth}: {:?}", result.err());
            assert_eq!(saved, ["step-0000004"], "depth {depth}");
        }
    }
}
