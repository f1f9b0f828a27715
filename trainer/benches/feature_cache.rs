//! Where a learner update's time goes with the feature cache off and warm, side by side in one
//! run (`cargo bench -p trainer --bench feature_cache`, part of `make bench`): the quick profile
//! (the narrow PermaKey of `config/quick.toml`, 16-channel CNN), MsPacman, batches of 8 sequences
//! of 12 steps sampled from a replay of 64+ sequences an actor filled (the batch size of
//! `config/results-cpu.toml`). Per encoder and round: a learner with `feature_cache_mib = 0` and
//! one with the default, each after 20 warm-up updates (which fill the cache: every frame of the
//! replay fits), then `PERMAKEY_BENCH_UPDATES` (default 10) timed updates; rounds alternate off
//! and warm (`PERMAKEY_BENCH_ROUNDS`, default 2) and the table shows each round's mean
//! milliseconds per update and phase ([`learner::UpdatePhases`]). Writes
//! `target/bench/feature_cache.md`.

use std::fmt::Write as _;

use actor::SequenceWriterConfig;
use agent::{AgentConfig, EncoderKind};
use atari::{EnvConfig, EnvPool, Preset, RomCatalog};
use learner::{Learner, LearnerConfig, DEFAULT_FEATURE_CACHE_MIB};
use permakey::PermaKeyConfig;
use replay::ReplayConfig;
use tch::Device;
use trainer::{front_end_shape, LocalReplay, ReplayClient, VecActor, VecEnv};

const NUM_ENVS: usize = 8;
const BATCH: usize = 8;

fn main() -> anyhow::Result<()> {
    let env_number = |name: &str, default: usize| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let (updates, rounds) = (env_number("PERMAKEY_BENCH_UPDATES", 10).max(1), env_number("PERMAKEY_BENCH_ROUNDS", 2).max(1));
    let device = match std::env::var("PERMAKEY_BENCH_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::Cuda(0),
        _ => Device::cuda_if_available(),
    };
    let roms = RomCatalog::discover()?;
    let env_config: EnvConfig = Preset::Atari100k.train_env("MsPacman");
    let mut env = EnvPool::new(&env_config, &roms, NUM_ENVS, 2, 0)?;
    let num_actions = VecEnv::num_actions(&env);
    let (_vs, model) = permakey::train::build(&PermaKeyConfig::narrow(), device, 0)?;
    let shape = front_end_shape(&model);
    let mut table = format!(
        "Learner update with the feature cache off and warm: quick profile, MsPacman, {device:?}, batch {BATCH} x 12 steps, mean of {updates} updates per cell, ms\n\n\
         | encoder | round | cache | batch | features | online | target | backward | whole update | frames computed per update |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut totals: Vec<(EncoderKind, f64, f64)> = Vec::new();
    for encoder in [EncoderKind::Cnn, EncoderKind::Gnn] {
        let agent = AgentConfig { encoder, cnn_channels: 16, ..AgentConfig::default() };
        let writer = SequenceWriterConfig { keypoint_dims: 2 * shape.num_keypoints as usize, ..SequenceWriterConfig::default() };
        let mut actor = VecActor::new(&agent, shape, num_actions as i64, writer, NUM_ENVS, 1, true, device)?;
        let mut replay = LocalReplay::new(ReplayConfig { capacity_sequences: 2000, ..ReplayConfig::default() }, 2)?;
        actor.start(&mut env)?;
        while replay.len() < 64 {
            actor.step(&mut env, &mut trainer::LocalKeypoints(&model), &mut replay, 1.0)?;
        }
        let (mut off_total, mut warm_total) = (0.0, 0.0);
        for round in 1..=rounds {
            for mib in [0, DEFAULT_FEATURE_CACHE_MIB] {
                let config = LearnerConfig { feature_cache_mib: mib, batch_size: BATCH, ..LearnerConfig::default() };
                let mut learner = Learner::new(config, &agent, shape, num_actions as i64, device)?;
                for _ in 0..20 {
                    let batch = replay.sample(BATCH)?;
                    learner.update(&model, &batch.items, &batch.weights)?;
                }
                let mut sums = [0f64; 6];
                for _ in 0..updates {
                    let batch = replay.sample(BATCH)?;
                    let p = learner.update(&model, &batch.items, &batch.weights)?.phases;
                    for (sum, value) in sums.iter_mut().zip([p.batch_s, p.features_s, p.online_s, p.target_s, p.backward_s, p.features_computed as f64]) {
                        *sum += value;
                    }
                }
                let ms = |i: usize| 1000.0 * sums[i] / updates as f64;
                let whole = (0..5).map(ms).sum::<f64>();
                if mib == 0 { off_total += whole } else { warm_total += whole }
                writeln!(
                    table,
                    "| {encoder:?} | {round} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {whole:.1} | {:.1} |",
                    if mib == 0 { "off" } else { "warm" },
                    ms(0), ms(1), ms(2), ms(3), ms(4),
                    sums[5] / updates as f64
                )?;
            }
        }
        totals.push((encoder, off_total, warm_total));
        eprintln!("{encoder:?} done");
    }
    table.push('\n');
    for (encoder, off, warm) in totals {
        writeln!(table, "{encoder:?}: whole update off / warm, all rounds: {:.2}x", off / warm)?;
    }
    print!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("feature_cache.md"), &table)?;
    Ok(())
}
