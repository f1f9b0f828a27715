//! Replay throughput, side by side in one run (`cargo bench -p replay-service --bench
//! replay_throughput`, part of `make bench`): the library in process against the gRPC service
//! on 127.0.0.1 (server and client in this process, on the same cores), for Atari-sized
//! sequences (12 steps of 84x84x3 frames, 7 keypoints: 255 KB each) and for small ones (12 steps
//! of 4x4x3, to show the per-item cost without the frame copies).
//!
//! Rows: inserts/s (one RPC per sequence as actors insert, and 256 per stream with
//! `RemoteReplay::insert_batch`) and sampled items/s (batches of 32 and 256), and the
//! gRPC/library ratio. The library
//! inserts shared `Arc`s (no frame copy) and samples return `Arc`s; over gRPC every item is
//! encoded, copied through HTTP/2 on loopback and decoded. The table is
//! printed and written to `target/bench/replay.md`. `PERMAKEY_BENCH_SECONDS` (default 2) bounds
//! each measurement. The gRPC client inserts one sequence per stream (see `RemoteReplay`).

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use rand::SeedableRng;
use replay::{RateLimiterConfig, ReplayConfig, ReplayServerConfig, SequenceReplay, testing::SequenceBuilder};
use replay_service::RemoteReplay;

const BATCH: usize = 32;
/// Sequences per bulk insert stream and per large sample.
const BULK: usize = 256;

/// Calls `f` for about `seconds` after one warm-up call; returns items per second, `f` returning
/// the items it handled.
fn rate(seconds: f64, mut f: impl FnMut() -> usize) -> f64 {
    f();
    let started = Instant::now();
    let mut items = 0;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        items += f();
    }
    items as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let seconds: f64 = std::env::var("PERMAKEY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let table = ReplayConfig { capacity_sequences: 4096, ..ReplayConfig::default() };
    let server = ReplayServerConfig {
        rate_limiter: RateLimiterConfig { min_size_to_sample: 1, samples_per_insert: 1000.0, error_buffer: 1e15 },
        ..ReplayServerConfig::default()
    };
    let served_table = table.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            replay_service::serve(served_table, server, Default::default(), listener, std::future::pending()).await.unwrap();
        });
    });
    let remote = RemoteReplay::connect(&format!("http://{address}"), Duration::from_secs(10)).unwrap();

    let mut out = String::from("| sequence | operation | library (items/s) | gRPC loopback (items/s) | gRPC / library |\n|---|---|---:|---:|---:|\n");
    for (name, shape) in [("Atari 12x84x84x3 + 7 keypoints", [84, 84, 3]), ("small 12x4x4x3", [4, 4, 3])] {
        let sequence = SequenceBuilder::new(12).obs_shape(shape).keypoints(14).build();
        let shared = Arc::new(sequence.clone());
        let mut library = SequenceReplay::new(table.clone()).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let local_insert = rate(seconds, || {
            library.insert_shared(shared.clone()).unwrap();
            1
        });
        let local_sample = rate(seconds, || library.sample(BATCH, &mut rng).unwrap().len());
        let batch = vec![sequence; 8];
        let remote_insert = rate(seconds, || {
            remote.insert(&batch).unwrap();
            batch.len()
        });
        let remote_sample = rate(seconds, || remote.sample(BATCH).unwrap().len());
        let bulk = vec![batch[0].clone(); BULK];
        let remote_bulk_insert = rate(seconds, || {
            remote.insert_batch(&bulk).unwrap();
            bulk.len()
        });
        let local_big_sample = rate(seconds, || library.sample(BULK, &mut rng).unwrap().len());
        let remote_big_sample = rate(seconds, || remote.sample(BULK).unwrap().len());
        for (operation, local, over_grpc) in [
            ("insert (one RPC per sequence)", local_insert, remote_insert),
            (&*format!("insert ({BULK} per stream, `insert_batch`)"), local_insert, remote_bulk_insert),
            (&*format!("sample (batch {BATCH})"), local_sample, remote_sample),
            (&*format!("sample (batch {BULK})"), local_big_sample, remote_big_sample),
        ] {
            writeln!(out, "| {name} | {operation} | {local:.0} | {over_grpc:.0} | {:.4} |", over_grpc / local).unwrap();
        }
    }
    print!("{out}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("replay.md"), &out).unwrap();
}
