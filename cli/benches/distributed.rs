//! Distributed vs embedded agent steps per second on the same cores, side by side in one run
//! (`cargo bench -p permakey-rl --bench distributed`, part of `make bench`): the same budget,
//! seed and schedule (`config/cluster-toy.toml`, the sprite corridor) run
//!
//! - embedded: `permakey-rl run` (one process, lockstep, 4 environments);
//! - distributed: `scripts/cluster.sh` (replay-server, keypoint-server, learner and 2 actors of 2
//!   environments as separate processes on loopback).
//!
//! Each run's rate is its agent steps over its training time (`final_scores.json`'s wall time
//! minus nothing: both include their final evaluation of the same size, so the ratio compares
//! like with like). The table goes to stdout and `target/bench/distributed.md`. Absolute rates
//! on a shared VM are indicative only; the ratio is the figure (goal >= 0.85x).

use std::{fmt::Write as _, path::Path, process::Command, time::Instant};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn scores(dir: &Path) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(dir.join("final_scores.json"))?)?)
}

fn main() -> anyhow::Result<()> {
    let out = tempfile::tempdir()?;
    let config = "config/cluster-toy.toml";
    let cli = env!("CARGO_BIN_EXE_permakey-rl");
    let started = Instant::now();
    let status = Command::new(cli)
        .current_dir(workspace())
        .args(["run", "--config", config, "--set", "train.num_envs=4", "--set", "run.name=embedded"])
        .arg("--set")
        .arg(format!("run.out_dir=\"{}\"", out.path().display()))
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "embedded run failed");
    let embedded_wall = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let bin = Path::new(cli).parent().unwrap();
    let status = Command::new(workspace().join("scripts/cluster.sh"))
        .current_dir(workspace())
        .args(["--config", config])
        .env("BIN", bin)
        .env("OUT_DIR", out.path())
        .env("RUN_NAME", "distributed")
        .env("PORT_BASE", "47311")
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "distributed run failed");
    let distributed_wall = started.elapsed().as_secs_f64();
    let (e, d) = (scores(&out.path().join("embedded"))?, scores(&out.path().join("distributed"))?);
    let rate = |s: &serde_json::Value| s["agent_steps"].as_f64().unwrap_or(0.0) / s["wall_seconds"].as_f64().unwrap_or(f64::NAN);
    let (re, rd) = (rate(&e), rate(&d));
    let mut table = String::new();
    writeln!(table, "Distributed vs embedded, sprite corridor ({config}), {} cores, shared VM (absolute rates indicative only)\n", std::thread::available_parallelism().map_or(1, |n| n.get()))?;
    writeln!(table, "| mode | processes | agent steps | updates | final score | training agent steps/s | wall incl. start-up (s) |")?;
    writeln!(table, "|---|---|---:|---:|---:|---:|---:|")?;
    writeln!(table, "| embedded (lockstep) | 1 | {} | {} | {:.3} | {re:.1} | {embedded_wall:.0} |", e["agent_steps"], e["updates"], e["score"].as_f64().unwrap_or(f64::NAN))?;
    writeln!(table, "| distributed (gRPC) | 5 | {} | {} | {:.3} | {rd:.1} | {distributed_wall:.0} |", d["agent_steps"], d["updates"], d["score"].as_f64().unwrap_or(f64::NAN))?;
    writeln!(table, "\ndistributed / embedded agent steps/s: **{:.2}x** (goal >= 0.85x)", rd / re)?;
    print!("{table}");
    let dir = workspace().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("distributed.md"), &table)?;
    Ok(())
}
