//! Throughput of the embedded trainer's halves on this machine, side by side in one run
//! (`cargo bench -p trainer --bench trainer_throughput`, part of `make bench`):
//!
//! - env: the Atari-100k MsPacman [`EnvPool`] alone under random actions (the emulator's limit);
//! - front end: the PermaKey forward (VAE encoder + LSP + PointNet) on one vector step's frames;
//! - acting: [`VecActor::step`] — front end, agent step, epsilon-greedy, env step, sequence writer;
//! - learner: [`Learner::update`] on batches sampled from a replay the actor filled (64+
//!   sequences), with the learner's feature cache off (every sampled frame's features computed)
//!   and on (the default 1024 MiB; warm, as the replay's frames all fit: the best case);
//! - lockstep: agent steps/s of the trainer's schedule (one update per `train_every` agent steps
//!   after `learning_starts`), `1 / (1 / acting + 1 / (train_every x updates/s))`, and the
//!   projected wall time of one Atari-100k run of RL (100k agent steps, 22.5k updates), both
//!   from the cache-off rate (a run's hit rate lies between; RESULTS.md measures it).
//!
//! Profiles: `quick` (the narrow model and 16-channel CNN of `config/quick.toml`) and
//! `reference` (the spec's sizes), CNN and GNN encoders, on `PERMAKEY_BENCH_DEVICE` (default:
//! CUDA if available, else CPU). Models are randomly initialised: throughput does not depend on
//! the weights. `PERMAKEY_BENCH_SECONDS` (default 3) bounds each measurement. The table is printed
//! and written to `target/bench/trainer.md`.

use std::{fmt::Write as _, time::{Duration, Instant}};

use actor::SequenceWriterConfig;
use agent::{AgentConfig, EncoderKind};
use atari::{EnvConfig, EnvPool, Preset, RomCatalog};
use learner::{Learner, LearnerConfig};
use permakey::{model::{frames_to_tensor, KeypointModel}, PermaKeyConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use replay::ReplayConfig;
use tch::Device;
use trainer::{front_end_shape, LocalReplay, ReplayClient, VecActor, VecEnv};

const NUM_ENVS: usize = 8;

struct Profile {
    name: &'static str,
    model: PermaKeyConfig,
    cnn_channels: i64,
}

fn profiles() -> Vec<Profile> {
    let narrow = PermaKeyConfig::narrow();
    vec![
        Profile { name: "quick", model: narrow, cnn_channels: 16 },
        Profile { name: "reference", model: PermaKeyConfig::default(), cnn_channels: 32 },
    ]
}

/// Runs `f` repeatedly for about `seconds` (after one warm-up call); returns calls per second.
fn rate(seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        f();
        calls += 1;
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    // As the binaries do (PERMAKEY_MALLOC=system for glibc's defaults), so the projection is theirs.
    let malloc = permakey::malloc::configure_from_env().map_err(anyhow::Error::msg)?;
    eprintln!("{malloc}");
    let seconds: f64 = std::env::var("PERMAKEY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let device = match std::env::var("PERMAKEY_BENCH_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::Cuda(0),
        _ => Device::cuda_if_available(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let roms = RomCatalog::discover()?;
    let env_config: EnvConfig = Preset::Atari100k.train_env("MsPacman");
    let learner_config = LearnerConfig::default();
    let updates_per_run = (100_000 - 10_000) / 4;
    let mut table = format!(
        "Embedded trainer throughput, MsPacman, {NUM_ENVS} envs, {device:?}, {threads} threads, batch {} x 12 steps\n\n\
         | profile | encoder | env steps/s (random) | front end frames/s | acting agent steps/s | acting / front end | learner updates/s, cache off | learner updates/s, cache warm | warm / off | lockstep agent steps/s (off) | Atari-100k RL (projected, off) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        learner_config.batch_size
    );
    let mut env = EnvPool::new(&env_config, &roms, NUM_ENVS, threads.min(NUM_ENVS), 0)?;
    let num_actions = VecEnv::num_actions(&env);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    VecEnv::reset(&mut env)?;
    let env_rate = rate(seconds, || {
        let actions: Vec<usize> = (0..NUM_ENVS).map(|_| rng.random_range(0..num_actions)).collect();
        VecEnv::step(&mut env, &actions).unwrap();
    }) * NUM_ENVS as f64;
    for profile in profiles() {
        let (_vs, model) = permakey::train::build(&profile.model, device, 0)?;
        let frames = frames_to_tensor(VecEnv::reset(&mut env)?, NUM_ENVS as i64, 84, 84, 3, device);
        let front_rate = rate(seconds, || {
            let out = model.keypoints(&frames);
            let _ = out.centres.sum(tch::Kind::Float).double_value(&[]);
        }) * NUM_ENVS as f64;
        for encoder in [EncoderKind::Cnn, EncoderKind::Gnn] {
            let shape = front_end_shape(&model);
            let agent = AgentConfig { encoder, cnn_channels: profile.cnn_channels, ..AgentConfig::default() };
            let writer = SequenceWriterConfig { keypoint_dims: 2 * shape.num_keypoints as usize, ..SequenceWriterConfig::default() };
            let mut actor = VecActor::new(&agent, shape, num_actions as i64, writer, NUM_ENVS, 1, true, device)?;
            let mut replay = LocalReplay::new(ReplayConfig { capacity_sequences: 2000, ..ReplayConfig::default() }, 2)?;
            actor.start(&mut env)?;
            let act_rate = rate(seconds, || {
                actor.step(&mut env, &mut trainer::LocalKeypoints(&model), &mut replay, 1.0).unwrap();
            }) * NUM_ENVS as f64;
            while replay.len() < 64 {
                actor.step(&mut env, &mut trainer::LocalKeypoints(&model), &mut replay, 1.0)?;
            }
            let off_config = LearnerConfig { feature_cache_mib: 0, ..learner_config.clone() };
            let mut learner = Learner::new(off_config, &agent, shape, num_actions as i64, device)?;
            let update_rate = rate(seconds, || {
                let batch = replay.sample(learner_config.batch_size).unwrap();
                learner.update(&model, &batch.items, &batch.weights).unwrap();
            });
            let mut cached = Learner::new(learner_config.clone(), &agent, shape, num_actions as i64, device)?;
            for _ in 0..(replay.len() / learner_config.batch_size) * 4 {
                let batch = replay.sample(learner_config.batch_size)?;
                cached.update(&model, &batch.items, &batch.weights)?;
            }
            let cached_rate = rate(seconds, || {
                let batch = replay.sample(learner_config.batch_size).unwrap();
                cached.update(&model, &batch.items, &batch.weights).unwrap();
            });
            let lockstep = 1.0 / (1.0 / act_rate + 1.0 / (4.0 * update_rate));
            let projected = 100_000.0 / act_rate + updates_per_run as f64 / update_rate;
            writeln!(
                table,
                "| {} | {encoder:?} | {env_rate:.0} | {front_rate:.0} | {act_rate:.0} | {:.2} | {update_rate:.2} | {cached_rate:.2} | {:.2}x | {lockstep:.0} | {:.1} min |",
                profile.name,
                act_rate / front_rate,
                cached_rate / update_rate,
                projected / 60.0
            )?;
            eprintln!("{} {encoder:?} done", profile.name);
        }
    }
    print!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("trainer.md"), &table)?;
    Ok(())
}
