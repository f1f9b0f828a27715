//! The keypoint service against a raw tch forward of the same model, side by side in one run
//! (`cargo bench -p keypoint-service --bench keypoint_service`, part of `make bench`; the table
//! goes to stdout and `target/bench/keypoint-service.md`).
//!
//! 1. Throughput: frames/s of a PermaKey model (the quick profile's narrow layers, random
//!    weights: the cost does not depend on them) called directly at batch B, against the same
//!    model behind the service on loopback, fed by enough client threads of B frames each to keep
//!    it busy (`max_batch_size = B`). Goal >= 0.9x.
//! 2. Latency: p50/p99 of one request (one actor's vector step of 4 frames) with 1..64
//!    simulated actors in closed loop on loopback, each level run for a fixed time.
//!
//! Knobs: `PERMAKEY_BENCH_SECONDS` (per case, default 4), `PERMAKEY_BENCH_BATCH` (default 16),
//! `PERMAKEY_BENCH_DEVICE` (`cpu` default, `cuda`). Absolute rates on a shared VM are indicative;
//! read the ratios.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use keypoint_service::{DynamicBatcherConfig, KeypointServerConfig, RemoteKeypoints};
use permakey::{
    PermaKeyConfig,
    model::{KeypointModel, frames_to_tensor},
    permakey::PermaKey,
};
use tch::{Device, nn};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Model {
    _vs: nn::VarStore,
    net: PermaKey,
}

impl KeypointModel for Model {
    fn num_keypoints(&self) -> i64 {
        self.net.num_keypoints()
    }
    fn image_size(&self) -> i64 {
        self.net.image_size()
    }
    fn keypoints(&self, frames: &tch::Tensor) -> permakey::KeypointOutput {
        self.net.keypoints(frames)
    }
    fn gauss_std(&self) -> f64 {
        self.net.gauss_std()
    }
    fn device(&self) -> Device {
        self.net.device()
    }
}

fn model(device: Device) -> Model {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    // config/quick.toml's layer widths (the model `make run` trains).
    let config = PermaKeyConfig::narrow();
    let net = PermaKey::new(&vs.root(), &config).expect("valid config");
    Model { _vs: vs, net }
}

fn frames(n: usize, seed: usize) -> Vec<u8> {
    (0..n * 84 * 84 * 3).map(|i| ((i * 7 + seed * 13) % 256) as u8).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Server {
    endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<keypoint_service::ServeReport>>,
}

impl Server {
    fn start(device: Device, batching: DynamicBatcherConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = KeypointServerConfig { batching, default_timeout_ms: 60_000, ..KeypointServerConfig::default() };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                keypoint_service::serve(Box::new(model(device)), 1, config, Default::default(), listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
            })
        });
        Self { endpoint, stop: Some(stop), thread: Some(thread) }
    }

    fn stop(mut self) -> keypoint_service::ServeReport {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

/// `clients` threads each sending requests of `frames_per_request` frames; after every client
/// has had one answer (stream open, warm), requests are counted for `seconds`. Returns (frames
/// answered in the window, their latencies in ms sorted, the window's length in s).
fn drive(endpoint: &str, clients: usize, frames_per_request: usize, seconds: f64, features: bool) -> (u64, Vec<f64>, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(std::sync::Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (endpoint, stop, warm) = (endpoint.to_owned(), stop.clone(), warm.clone());
            std::thread::spawn(move || {
                let mut client = RemoteKeypoints::connect(&endpoint, Duration::from_secs(120)).unwrap();
                let bytes = frames(frames_per_request, i);
                client.infer(&bytes, frames_per_request, [84, 84, 3], features).unwrap();
                warm.wait();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    client.infer(&bytes, frames_per_request, [84, 84, 3], features).unwrap();
                    // A request still in flight when the window closes is not counted.
                    if !stop.load(Ordering::Relaxed) {
                        latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
                latencies
            })
        })
        .collect();
    warm.wait();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    latencies.sort_by(f64::total_cmp);
    ((latencies.len() * frames_per_request) as u64, latencies, elapsed)
}

fn main() {
    let seconds: f64 = env_or("PERMAKEY_BENCH_SECONDS", 4.0);
    let batch: usize = env_or("PERMAKEY_BENCH_BATCH", 16);
    let device = match std::env::var("PERMAKEY_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut table = String::new();
    writeln!(table, "## Keypoint service\n").unwrap();
    writeln!(table, "PermaKey with config/quick.toml's layers (random weights), 84x84x3 frames, {device:?}, {cores} cores; {seconds} s per case.\n").unwrap();

    // 1. Throughput: raw forward vs the service at the same batch.
    let direct = model(device);
    let input = frames(batch, 0);
    let x = frames_to_tensor(&input, batch as i64, 84, 84, 3, device);
    let _ = tch::no_grad(|| direct.keypoints(&x)); // warm-up
    let (mut done, started) = (0u64, Instant::now());
    while started.elapsed().as_secs_f64() < seconds {
        let x = frames_to_tensor(&input, batch as i64, 84, 84, 3, device);
        let out = tch::no_grad(|| direct.keypoints(&x));
        // The service copies centres and features to the host; so does the raw loop.
        let _ = Vec::<f32>::try_from(out.centres.to_device(Device::Cpu).flatten(0, -1)).unwrap();
        let _ = Vec::<f32>::try_from(out.features.to_device(Device::Cpu).flatten(0, -1)).unwrap();
        done += batch as u64;
    }
    let raw_rate = done as f64 / started.elapsed().as_secs_f64();
    let raw_batch_ms = started.elapsed().as_secs_f64() * 1e3 / (done / batch as u64) as f64;
    drop(direct);
    let server = Server::start(device, DynamicBatcherConfig { max_batch_size: batch, max_batch_wait_micros: 5_000, queue_capacity: 64 * batch.max(16) });
    // Two clients of B frames each: one batch runs while the next one is formed.
    let (frames_done, _, elapsed) = drive(&server.endpoint, 2, batch, seconds, true);
    let report = server.stop();
    let service_rate = frames_done as f64 / elapsed;
    let per_batch = |total: Duration, batches: u64| total.as_secs_f64() * 1e3 / batches.max(1) as f64;
    writeln!(table, "| path (batch {batch}) | frames/s | mean model batch | ms per batch in the model call |").unwrap();
    writeln!(table, "|---|---:|---:|---:|").unwrap();
    writeln!(table, "| raw tch forward (+ host copy of centres, features) | {raw_rate:.1} | {batch} | {:.1} |", raw_batch_ms).unwrap();
    writeln!(
        table,
        "| keypoint service on loopback, 2 clients x {batch} frames, features returned | {service_rate:.1} | {:.1} | {:.1} |",
        report.stats.mean_batch_size(),
        per_batch(report.stats.batch_function_total, report.stats.batches)
    )
    .unwrap();
    writeln!(table, "\nservice / raw: **{:.2}x** (goal >= 0.9x)\n", service_rate / raw_rate).unwrap();

    // 2. Latency against 1..64 simulated actors of 4 environments each.
    let server = Server::start(device, DynamicBatcherConfig { max_batch_size: 64, max_batch_wait_micros: 2_000, queue_capacity: 4096 });
    writeln!(table, "| simulated actors (4 frames each, closed loop) | requests | frames/s | p50 ms | p99 ms | max ms |").unwrap();
    writeln!(table, "|---:|---:|---:|---:|---:|---:|").unwrap();
    for actors in [1usize, 4, 16, 64] {
        let (frames_done, latencies, elapsed) = drive(&server.endpoint, actors, 4, seconds, true);
        writeln!(
            table,
            "| {actors} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            latencies.len(),
            frames_done as f64 / elapsed,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(f64::NAN)
        )
        .unwrap();
    }
    let report = server.stop();
    writeln!(table, "\nlatency server: {} forwards, mean batch {:.1} frames, {} refused (overload), {} expired", report.stats.batches, report.stats.mean_batch_size(), report.stats.rejected_overloaded, report.stats.expired_requests).unwrap();
    print!("{table}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keypoint-service.md"), &table).unwrap();
}
