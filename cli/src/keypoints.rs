//! `permakey-rl keypoints ...`: collect frames, pre-train PermaKey or the Transporter, visualise
//! a checkpoint on a game, and time the model.

use std::{path::Path, time::Instant};

use anyhow::{bail, Context};
use atari::{
    record::{write_gif, write_png, Recording},
    AtariEnv, EnvConfig, RomCatalog,
};
use permakey::{
    dataset::{self, CollectDatasetConfig, Dataset, FrameLoader, FrameLoaderConfig, PairLoader, PairLoaderConfig, Split},
    frames_to_tensor,
    train::{self, PretrainConfig},
    viz, KeypointModel, PermaKey,
};
use pkrl_config::Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// Which keypoint model a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    Permakey,
    Transporter,
}

/// Collects `frames` random-policy observations of the configured environment into `out`.
pub fn collect(config: &Config, frames: u64, out: &Path) -> anyhow::Result<()> {
    let roms = RomCatalog::discover()?;
    let settings = CollectDatasetConfig { env: config.env.clone(), frames, seed: config.run.seed, ..CollectDatasetConfig::default() };
    let started = Instant::now();
    let manifest = dataset::collect(&settings, &roms, out)?;
    println!(
        "collected {} frames of {} ({} shards) into {} in {:.1} s",
        manifest.frames,
        manifest.game,
        manifest.shards.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An endless, seeded batch stream over the train split: batch `step` is the same for a resumed run.
fn frame_batches(data: &Dataset, batch: usize, seed: u64) -> anyhow::Result<impl FnMut(u64) -> Result<Tensor, String> + Send> {
    let loader = FrameLoader::new(data, Split::Train, FrameLoaderConfig { batch_size: batch, seed, ..FrameLoaderConfig::default() })?;
    let per_epoch = loader.batches_per_epoch().max(1) as u64;
    let mut current: Option<(u64, permakey::dataset::FrameEpoch, u64)> = None; // (epoch, iterator, next index)
    Ok(move |step: u64| {
        let (epoch, index) = (step / per_epoch, step % per_epoch);
        if !matches!(&current, Some((e, _, i)) if *e == epoch && *i == index) {
            let mut iter = loader.epoch(epoch);
            for _ in 0..index {
                iter.next();
            }
            current = Some((epoch, iter, index));
        }
        let (_, iter, next) = current.as_mut().expect("set above");
        *next += 1;
        match iter.next() {
            Some(Ok(batch)) => Ok(batch.frames),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the loader ended an epoch early".into()),
        }
    })
}

/// Pre-trains `kind` on the dataset in `data` into `out`.
pub fn train(config: &Config, kind: ModelKind, data: &Path, out: &Path, resume: bool) -> anyhow::Result<()> {
    let device = permakey::resolve_device(config.device)?;
    let dataset = Dataset::open(data)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("config.toml"), config.to_toml())?;
    let pretrain: &PretrainConfig = match kind {
        ModelKind::Permakey => &config.pretrain,
        ModelKind::Transporter => &config.pretrain_transporter,
    };
    let started = Instant::now();
    match kind {
        ModelKind::Permakey => {
            let mut batches = frame_batches(&dataset, pretrain.batch_size as usize, config.run.seed)?;
            let trained = train::pretrain(&config.permakey, pretrain, device, config.run.seed as i64, out, resume, &mut batches)?;
            if let Some(last) = trained.history.last() {
                println!("step {}: nll {:.4} kl {:.4} lsp {:.5} pnet {:.5}", last.step, last.nll, last.kl, last.lsp, last.pnet);
            }
        }
        ModelKind::Transporter => {
            let loader = PairLoader::new(&dataset, Split::Train, PairLoaderConfig { batch_size: pretrain.batch_size as usize, seed: config.run.seed, ..PairLoaderConfig::default() })?;
            let mut epoch = 0;
            let mut iter = loader.epoch(epoch);
            let mut next_pair = move |_step: u64| loop {
                match iter.next() {
                    Some(Ok(pair)) => return Ok((pair.source, pair.target)),
                    Some(Err(e)) => return Err(e.to_string()),
                    None => {
                        epoch += 1;
                        iter = loader.epoch(epoch);
                    }
                }
            };
            train::pretrain_transporter(&config.transporter, pretrain, device, config.run.seed as i64, out, resume, &mut next_pair)?;
        }
    }
    println!("trained in {:.1} s; checkpoints in {}", started.elapsed().as_secs_f64(), out.join("checkpoints").display());
    Ok(())
}

/// A loaded keypoint model of either kind (keeps its variables alive).
pub enum LoadedModel {
    Permakey(tch::nn::VarStore, PermaKey),
    Transporter(tch::nn::VarStore, permakey::transporter::Transporter),
}

impl LoadedModel {
    pub fn load(path: &Path, device: Device) -> anyhow::Result<Self> {
        match train::load_model(path, device) {
            Ok((vs, model, _)) => Ok(Self::Permakey(vs, model)),
            Err(train::TrainError::Checkpoint(permakey::checkpoint::CheckpointError::Mismatch { .. })) => {
                let (vs, model, _) = train::load_transporter(path, device)?;
                Ok(Self::Transporter(vs, model))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn model(&self) -> &dyn KeypointModel {
        match self {
            Self::Permakey(_, m) => m,
            Self::Transporter(_, m) => m,
        }
    }
}

/// Plays `steps` random agent steps of `env` and returns the observations.
fn play(env_config: &EnvConfig, roms: &RomCatalog, seed: u64, steps: usize) -> anyhow::Result<Recording> {
    let mut env = AtariEnv::new(env_config, roms, seed)?;
    let [height, width, channels] = env.obs_shape();
    if channels != 3 {
        bail!("keypoint models take RGB frames; set env.grayscale = false");
    }
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut frames = vec![obs.clone()];
    for _ in 0..steps {
        let info = env.step(rng.random_range(0..env.num_actions()), &mut obs)?;
        if info.terminated || info.truncated {
            env.reset(&mut obs)?;
        }
        frames.push(obs.clone());
    }
    Ok(Recording { height, width, channels, frames, actions: Vec::new(), rewards: Vec::new(), episode_return: 0.0 })
}

/// Writes `<stem>-grid.png` (PermaKey: frame + keypoints, error maps, reconstruction; Transporter:
/// frame + keypoints, summed heatmaps) and `<stem>-track.gif` (keypoints over the episode).
pub fn visualise(config: &Config, checkpoint: &Path, env_config: &EnvConfig, steps: usize, out: &Path, stem: &str) -> anyhow::Result<()> {
    let device = permakey::resolve_device(config.device)?;
    let loaded = LoadedModel::load(checkpoint, device)?;
    let kind = match &loaded {
        LoadedModel::Permakey(..) => "permakey",
        LoadedModel::Transporter(..) => "transporter",
    };
    let stem = format!("{kind}-{stem}");
    let stem = stem.as_str();
    let roms = RomCatalog::discover()?;
    let recording = play(env_config, &roms, config.run.seed, steps)?;
    let (h, w) = (recording.height as i64, recording.width as i64);
    let every = (recording.frames.len() / 4).max(1);
    let picked: Vec<u8> = recording.frames.iter().step_by(every).take(4).flatten().copied().collect();
    let batch = frames_to_tensor(&picked, (picked.len() / recording.frames[0].len()) as i64, h, w, 3, device);
    let grid_path = out.join(format!("{stem}-grid.png"));
    match &loaded {
        LoadedModel::Permakey(_, model) => train::write_preview(model, &batch, &grid_path)?,
        LoadedModel::Transporter(_, model) => {
            let output = model.keypoints(&batch);
            let (frames, centres, heat) = (batch.to_device(Device::Cpu), output.centres.to_device(Device::Cpu), output.heatmaps.sum_dim_intlist(&[1][..], false, tch::Kind::Float).to_device(Device::Cpu));
            let rows: Vec<Vec<viz::Canvas>> = (0..frames.size()[0])
                .map(|b| {
                    let mut frame = viz::frame_canvas(&frames.get(b)).upscale(2);
                    viz::draw_keypoints(&mut frame, &centres.get(b));
                    let side = frame.height / (heat.size()[1] as usize);
                    vec![frame, viz::heat_canvas(&heat.get(b)).upscale(side.max(1))]
                })
                .collect();
            let image = viz::grid(&rows);
            write_png(&grid_path, &image.rgb, image.height, image.width)?;
        }
    }
    // keypoint tracks: every frame with its keypoints, upscaled x2
    let mut tracked = Recording { height: recording.height * 2, width: recording.width * 2, frames: Vec::new(), ..recording.clone() };
    for chunk in recording.frames.chunks(64) {
        let flat: Vec<u8> = chunk.iter().flatten().copied().collect();
        let tensor = frames_to_tensor(&flat, chunk.len() as i64, h, w, 3, device);
        let centres = loaded.model().keypoints(&tensor).centres.to_device(Device::Cpu);
        let cpu = tensor.to_device(Device::Cpu);
        for b in 0..chunk.len() as i64 {
            let mut canvas = viz::frame_canvas(&cpu.get(b)).upscale(2);
            viz::draw_keypoints(&mut canvas, &centres.get(b));
            tracked.frames.push(canvas.rgb);
        }
    }
    let gif_path = out.join(format!("{stem}-track.gif"));
    write_gif(&gif_path, &tracked, 1, 6)?;
    println!("wrote {} and {}", grid_path.display(), gif_path.display());
    Ok(())
}

/// One row of the keypoint benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub batch: i64,
    pub train_steps_per_second: f64,
    pub inference_frames_per_second: f64,
    pub encoder_only_frames_per_second: f64,
}

/// Times PermaKey training steps and inference at each batch size on the configured device.
pub fn bench(config: &Config, batches: &[i64], seconds: f64) -> anyhow::Result<Vec<BenchRow>> {
    let device = permakey::resolve_device(config.device)?;
    let (vs, model) = train::build(&config.permakey, device, 0)?;
    let mut adam = permakey::optim::Adam::new(&vs, config.pretrain.adam.clone());
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let time = |f: &mut dyn FnMut()| {
        f();
        sync(); // warm-up
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed().as_secs_f64() < seconds || n < 2 {
            f();
            n += 1;
        }
        sync();
        n as f64 / started.elapsed().as_secs_f64()
    };
    let mut rows = Vec::new();
    for &batch in batches {
        let size = config.permakey.image_size;
        let frames = Tensor::rand([batch, 3, size, size], (tch::Kind::Float, device));
        let train_rate = time(&mut || {
            let losses = model.losses(&frames, true);
            adam.backward_step(&losses.total);
        });
        let infer_rate = time(&mut || {
            let _ = model.keypoints(&frames).centres;
        });
        let encoder_rate = time(&mut || {
            let _ = tch::no_grad(|| model.vae.encoder.forward_t(&frames, false).mu);
        });
        rows.push(BenchRow {
            batch,
            train_steps_per_second: train_rate,
            inference_frames_per_second: infer_rate * batch as f64,
            encoder_only_frames_per_second: encoder_rate * batch as f64,
        });
    }
    Ok(rows)
}
