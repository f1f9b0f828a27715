//! What handing the learner's parameters to the actor costs per vector step in the embedded mode,
//! the plain-array path against the device board ([`trainer::LocalParameters`]), side by side in
//! one run (`cargo bench -p trainer --bench parameter_board`, part of `make bench`).
//!
//! The agents are the reference's (PKey-CNN and PKey-GNN behind the reference PermaKey's front
//! end: 7 keypoints, 64 x 42 x 42 features; 9 actions, MsPacman). A cycle is one publish and one
//! actor load, what every vector step of a lockstep run does after learning starts
//! (`parameter_sync_every = 1`). The array path is [`ParameterSink::publish`] of
//! [`Parameters::from_var_store`] then a load; the board path is
//! [`ParameterSink::publish_from`] then [`ParameterSource::load_newer`]. The two alternate for
//! `PERMAKEY_BENCH_ROUNDS` rounds (default 3) of `PERMAKEY_BENCH_CYCLES` cycles (default 50).
//! Writes `target/bench/parameter_board.md`. On a CPU this measures the host copies the board
//! saves; on a CUDA device (`--device cuda` is not taken: the bench follows
//! `PERMAKEY_BENCH_DEVICE`, `cpu` by default) also the waits.

use std::{fmt::Write as _, time::Instant};

use agent::{AgentConfig, EncoderKind, FrontEndShape, KeypointAgent};
use tch::{nn, Device};
use trainer::{LocalParameters, ParameterSink, ParameterSource, Parameters};
use pkrl_test_support::env_number;

fn main() -> anyhow::Result<()> {
    let rounds = env_number("PERMAKEY_BENCH_ROUNDS", 3);
    let cycles = env_number("PERMAKEY_BENCH_CYCLES", 50);
    let device = match std::env::var("PERMAKEY_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok(other) => anyhow::bail!("PERMAKEY_BENCH_DEVICE must be cpu or cuda, got {other:?}"),
    };
    let front = FrontEndShape { num_keypoints: 7, feature_channels: 64, feature_size: 42, gauss_std: 0.15 };
    let mut table = String::from("| encoder | parameters | MB | round | arrays ms/cycle | board ms/cycle |\n|---|---:|---:|---:|---:|---:|\n");
    let mut summary = String::new();
    for encoder in [EncoderKind::Cnn, EncoderKind::Gnn] {
        let config = AgentConfig { encoder, ..AgentConfig::default() };
        let learner = nn::VarStore::new(device);
        let _online = KeypointAgent::new(&learner.root(), &config, front, 9);
        let mut actor = nn::VarStore::new(device);
        let _acting = KeypointAgent::new(&actor.root(), &config, front, 9);
        let count: i64 = learner.variables().values().map(|t| t.numel() as i64).sum();
        let board = LocalParameters::default();
        let mut version = 0u64;
        let mut cycle = |board_path: bool, actor: &mut nn::VarStore| -> anyhow::Result<()> {
            version += 1;
            if board_path {
                board.publish_from(version, &learner)?;
            } else {
                board.publish(Parameters::from_var_store(version, &learner)?)?;
            }
            anyhow::ensure!(board.load_newer(Some(version - 1), actor)? == Some(version), "version {version} not loaded");
            Ok(())
        };
        // Warm-up: allocations and first-touch of both paths.
        for _ in 0..5 {
            cycle(false, &mut actor)?;
            cycle(true, &mut actor)?;
        }
        let (mut arrays_all, mut board_all) = (0.0, 0.0);
        for round in 1..=rounds {
            let mut timed = |board_path: bool| -> anyhow::Result<f64> {
                let started = Instant::now();
                for _ in 0..cycles {
                    cycle(board_path, &mut actor)?;
                }
                if device.is_cuda() {
                    tch::Cuda::synchronize(0);
                }
                Ok(started.elapsed().as_secs_f64() * 1e3 / cycles as f64)
            };
            let arrays = timed(false)?;
            let on_board = timed(true)?;
            arrays_all += arrays;
            board_all += on_board;
            writeln!(table, "| {encoder:?} | {count} | {:.1} | {round} | {arrays:.3} | {on_board:.3} |", count as f64 * 4.0 / 1e6)?;
        }
        writeln!(summary, "- {encoder:?}: arrays {:.3} ms, board {:.3} ms per cycle ({:.1}x)", arrays_all / rounds as f64, board_all / rounds as f64, arrays_all / board_all)?;
    }
    let report = format!(
        "# Parameter hand-over per vector step (device {device:?}, {rounds} rounds of {cycles} cycles)\n\n{table}\nMeans over the rounds:\n\n{summary}"
    );
    println!("{report}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("parameter_board.md"), &report)?;
    Ok(())
}
