//! Load (issue 10, item 4): 64 simulated actors against keypoint-server and replay-server
//! processes on loopback for a bounded time (`cargo bench -p permakey-rl --bench load`; the
//! harness is `tests/support/load.rs`, its short form with assertions `tests/load.rs`).
//!
//! Knobs: `PERMAKEY_LOAD_SECONDS` (measured window, default 60), `PERMAKEY_LOAD_ACTORS` (default
//! 64), `PERMAKEY_LOAD_CAPACITY` (replay sequences, default 400). The report (errors, p50/p90/p99
//! latencies, throughput, servers' peak RSS) goes to stdout and `target/bench/load.md`; the exit
//! code is 1 when any call failed.

#[path = "../tests/support/load.rs"]
mod load;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing to run: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (workspace, bin_dir) = load::paths(env!("CARGO_MANIFEST_DIR"), env!("CARGO_BIN_EXE_replay-server"));
    let defaults = load::LoadSettings::default();
    let settings = load::LoadSettings {
        seconds: env_or("PERMAKEY_LOAD_SECONDS", 60.0),
        actors: env_or("PERMAKEY_LOAD_ACTORS", defaults.actors),
        capacity: env_or("PERMAKEY_LOAD_CAPACITY", defaults.capacity),
        ..defaults
    };
    let report = load::run(&bin_dir, &workspace, &settings);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let table = format!("## Load: simulated actors against keypoint-server and replay-server ({cores} cores)\n\n{}", report.table(&settings));
    print!("{table}");
    for error in &report.first_errors {
        println!("error: {error}");
    }
    let dir = workspace.join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("load.md"), &table);
    if report.errors > 0 {
        std::process::exit(1);
    }
}
