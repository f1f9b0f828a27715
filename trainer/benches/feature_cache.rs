//! Where a learner update's time goes with the feature cache off and warm, and with the C
//! allocator's two settings ([`permakey::malloc`]), side by side in one run
//! (`cargo bench -p trainer --bench feature_cache`, part of `make bench`): the quick profile (the
//! narrow PermaKey of `config/quick.toml`, 16-channel CNN), MsPacman, batches of 8 sequences of 12
//! steps sampled from a replay of 64+ sequences an actor filled (the batch size of
//! `config/results-cpu.toml`).
//!
//! The malloc setting is process-wide, so the bench runs itself as one child process per round
//! and setting (`PERMAKEY_BENCH_ROUNDS`, default 2; the settings alternate, system first). A child
//! applies its setting first, fills its replay, then per encoder builds a learner with
//! `feature_cache_mib = 0` and one with the default, each timed over `PERMAKEY_BENCH_UPDATES`
//! (default 10) updates after 20 warm-up updates (which fill the cache: every frame of the replay
//! fits). The table shows each cell's mean milliseconds per update and phase
//! ([`learner::UpdatePhases`]) and the child's wall time; below it, the ratios over all rounds.
//! Writes `target/bench/feature_cache.md`.

use std::{collections::BTreeMap, fmt::Write as _, process::Command};

use actor::SequenceWriterConfig;
use agent::{AgentConfig, EncoderKind};
use atari::{EnvConfig, EnvPool, Preset, RomCatalog};
use learner::{Learner, LearnerConfig, DEFAULT_FEATURE_CACHE_MIB};
use permakey::{malloc::MallocMode, PermaKeyConfig};
use replay::ReplayConfig;
use tch::Device;
use trainer::{front_end_shape, LocalReplay, ReplayClient, VecActor, VecEnv};
use pkrl_test_support::env_number;

const NUM_ENVS: usize = 8;
const BATCH: usize = 8;
/// Set in a child: the malloc mode it measures.
const CHILD_ENV: &str = "PERMAKEY_BENCH_MALLOC_CHILD";
const MODES: [MallocMode; 2] = [MallocMode::System, MallocMode::Keep];

fn main() -> anyhow::Result<()> {
    match std::env::var(CHILD_ENV) {
        Ok(mode) => child(mode.parse().map_err(anyhow::Error::msg)?),
        Err(_) => parent(),
    }
}

/// One measured cell, as a child prints it: `cell <encoder> <off|warm> <batch> <features> <online>
/// <target> <backward> <frames computed>` (milliseconds per update).
struct Cell {
    encoder: String,
    cache: String,
    ms: [f64; 5],
    computed: f64,
}

fn parent() -> anyhow::Result<()> {
    let rounds = env_number("PERMAKEY_BENCH_ROUNDS", 2);
    let exe = std::env::current_exe()?;
    let mut table = String::from(
        "| malloc | round | encoder | cache | batch | features | online | target | backward | whole update | frames computed per update | child wall s |\n\
         |---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    // (encoder, cache, mode) -> summed whole-update ms over rounds
    let mut wholes: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    let mut walls: BTreeMap<String, f64> = BTreeMap::new();
    let mut title = String::new();
    for round in 1..=rounds {
        for mode in MODES {
            let started = std::time::Instant::now();
            let out = Command::new(&exe).env(CHILD_ENV, mode.to_string()).output()?;
            let wall = started.elapsed().as_secs_f64();
            let stdout = String::from_utf8_lossy(&out.stdout);
            anyhow::ensure!(out.status.success(), "child ({mode}) failed: {}", String::from_utf8_lossy(&out.stderr));
            *walls.entry(mode.to_string()).or_default() += wall;
            for line in stdout.lines() {
                if let Some(rest) = line.strip_prefix("title ") {
                    if mode == MallocMode::Keep {
                        title = rest.to_owned(); // names the thresholds in force
                    }
                }
                let Some(cell) = parse_cell(line) else { continue };
                let whole: f64 = cell.ms.iter().sum();
                *wholes.entry((cell.encoder.clone(), cell.cache.clone(), mode.to_string())).or_default() += whole;
                let [batch, features, online, target, backward] = cell.ms;
                writeln!(
                    table,
                    "| {mode} | {round} | {} | {} | {batch:.1} | {features:.1} | {online:.1} | {target:.1} | {backward:.1} | {whole:.1} | {:.1} | {wall:.1} |",
                    cell.encoder, cell.cache, cell.computed
                )?;
            }
            eprintln!("round {round}, malloc {mode}: {wall:.1} s");
        }
    }
    let mut report = format!("{title}\n\n{table}\n");
    let get = |e: &str, c: &str, m: MallocMode| wholes.get(&(e.to_owned(), c.to_owned(), m.to_string())).copied().unwrap_or(f64::NAN);
    for encoder in ["Cnn", "Gnn"] {
        for cache in ["off", "warm"] {
            writeln!(report, "{encoder}, cache {cache}: whole update system / keep, all rounds: {:.2}x", get(encoder, cache, MallocMode::System) / get(encoder, cache, MallocMode::Keep))?;
        }
        for mode in MODES {
            writeln!(report, "{encoder}, malloc {mode}: whole update cache off / warm, all rounds: {:.2}x", get(encoder, "off", mode) / get(encoder, "warm", mode))?;
        }
    }
    writeln!(report, "child wall time (set-up and every cell) system / keep: {:.2}x", walls["system"] / walls["keep"])?;
    print!("{report}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("feature_cache.md"), &report)?;
    Ok(())
}

fn parse_cell(line: &str) -> Option<Cell> {
    let fields: Vec<&str> = line.strip_prefix("cell ")?.split_whitespace().collect();
    let numbers: Vec<f64> = fields.get(2..)?.iter().map(|x| x.parse().ok()).collect::<Option<_>>()?;
    (numbers.len() == 6).then(|| Cell {
        encoder: fields[0].to_owned(),
        cache: fields[1].to_owned(),
        ms: [numbers[0], numbers[1], numbers[2], numbers[3], numbers[4]],
        computed: numbers[5],
    })
}

fn child(mode: MallocMode) -> anyhow::Result<()> {
    let setup = permakey::malloc::apply(mode).map_err(anyhow::Error::msg)?;
    let updates = env_number("PERMAKEY_BENCH_UPDATES", 10);
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
    println!(
        "title Learner update with the feature cache off and warm, per malloc setting (child {mode}: {setup}): \
         quick profile, MsPacman, {device:?}, batch {BATCH} x 12 steps, mean of {updates} updates per cell, ms"
    );
    for encoder in [EncoderKind::Cnn, EncoderKind::Gnn] {
        let agent = AgentConfig { encoder, cnn_channels: 16, ..AgentConfig::default() };
        let writer = SequenceWriterConfig { keypoint_dims: 2 * shape.num_keypoints as usize, ..SequenceWriterConfig::default() };
        let mut actor = VecActor::new(&agent, shape, num_actions as i64, writer, NUM_ENVS, 1, true, device)?;
        let mut replay = LocalReplay::new(ReplayConfig { capacity_sequences: 2000, ..ReplayConfig::default() }, 2)?;
        actor.start(&mut env)?;
        while replay.len() < 64 {
            actor.step(&mut env, &mut trainer::LocalKeypoints(&model), &mut replay, 1.0)?;
        }
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
            let ms: Vec<String> = (0..5).map(|i| format!("{:.3}", 1000.0 * sums[i] / updates as f64)).collect();
            println!("cell {encoder:?} {} {} {:.3}", if mib == 0 { "off" } else { "warm" }, ms.join(" "), sums[5] / updates as f64);
        }
    }
    Ok(())
}
