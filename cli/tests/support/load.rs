//! The load harness shared by `cli/benches/load.rs` (long run, report) and `cli/tests/load.rs`
//! (short run, assertions) — issue 10, item 4.
//!
//! `keypoint-server` and `replay-server` run as their own processes on loopback (the toy
//! config: the sprite corridor's colour-centroid keypoint oracle on 84x84x3 frames, one torch
//! thread), so their peak memory is their own (`VmHWM` of `/proc/<pid>/status`). `actors`
//! simulated actors, each a thread with the real blocking clients ([`RemoteKeypoints`],
//! [`RemoteReplay`]), run in closed loop as the keypoint service's bench does
//! (`keypoint-service/benches/keypoint_service.rs`: warm every client, then count a fixed
//! window): per vector step one keypoint request of `envs` frames (features returned), and every
//! `period` steps one insert of `envs` sequences of `steps` steps. One learner thread samples
//! batches and sends priorities back all along. Every failed call counts as an error (the clients
//! retry overload and transient failures with backoff themselves, as in a real run).

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Barrier, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use keypoint_service::RemoteKeypoints;
use replay::testing::SequenceBuilder;
use replay_service::RemoteReplay;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub actors: usize,
    /// Length of the measured window (after every client's first answer).
    pub seconds: f64,
    /// Frames per keypoint request (an actor's environments).
    pub envs: usize,
    /// Vector steps between an actor's inserts (`sequence.period`).
    pub period: usize,
    /// Steps per inserted sequence (burn-in 8 + 12, as the toy run's).
    pub steps: usize,
    /// Sequences the replay holds (then it evicts the oldest).
    pub capacity: usize,
    /// The learner thread's batch size.
    pub batch: usize,
}

impl Default for LoadSettings {
    fn default() -> Self {
        Self { actors: 64, seconds: 60.0, envs: 2, period: 8, steps: 20, capacity: 400, batch: 32 }
    }
}

impl LoadSettings {
    /// Bytes of a full replay at this capacity (the sequences' own arrays).
    pub fn replay_bytes(&self) -> usize {
        replay::replay_memory_bytes(self.capacity, self.steps, FRAME, 16, 8)
    }
}

const FRAME: [usize; 3] = [84, 84, 3];

/// Sorted latencies (ms) of one kind of call.
#[derive(Debug, Default, Clone)]
pub struct Latencies(pub Vec<f64>);

impl Latencies {
    pub fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0[((self.0.len() - 1) as f64 * p).round() as usize]
    }

    pub fn row(&self, name: &str, seconds: f64) -> String {
        format!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.0.len(),
            self.0.len() as f64 / seconds,
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.0.last().copied().unwrap_or(f64::NAN)
        )
    }
}

/// What a load run measured.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub seconds: f64,
    pub keypoints: Latencies,
    pub inserts: Latencies,
    pub samples: Latencies,
    pub errors: u64,
    /// The first few errors, one line each.
    pub first_errors: Vec<String>,
    /// Peak resident memory (`VmHWM`, bytes) of the keypoint and replay server processes.
    pub keypoint_peak_rss: u64,
    pub replay_peak_rss: u64,
    /// Resident memory (`VmRSS`, bytes) of the servers at the middle and at the end of the
    /// window: bounded memory means no growth between the two once the replay is full.
    pub keypoint_rss: [u64; 2],
    pub replay_rss: [u64; 2],
    pub replay_size: u64,
    pub replay_evicted: u64,
    /// Frames answered by the keypoint service in the window.
    pub frames: u64,
}

impl LoadReport {
    /// A Markdown table of the run.
    pub fn table(&self, settings: &LoadSettings) -> String {
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        let mut out = format!(
            "{} simulated actors x {} frames (84x84x3) per step, {} s window; replay capacity {} sequences of {} steps ({:.0} MiB of arrays)\n\n",
            settings.actors,
            settings.envs,
            self.seconds.round(),
            settings.capacity,
            settings.steps,
            settings.replay_bytes() as f64 / (1 << 20) as f64
        );
        out += "| call | count | per s | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n";
        out += &self.keypoints.row(&format!("keypoint request ({} frames)", settings.envs), self.seconds);
        out += "\n";
        out += &self.inserts.row(&format!("replay insert ({} sequences)", settings.envs), self.seconds);
        out += "\n";
        out += &self.samples.row(&format!("replay sample (batch {}) + priorities", settings.batch), self.seconds);
        out += &format!(
            "\n\nerrors: {}; keypoint frames/s {:.0}; replay size {} (evicted {}); peak RSS keypoint-server {:.0} MiB, replay-server {:.0} MiB; RSS mid -> end: keypoint-server {:.0} -> {:.0} MiB, replay-server {:.0} -> {:.0} MiB\n",
            self.errors,
            self.frames as f64 / self.seconds,
            self.replay_size,
            self.replay_evicted,
            mb(self.keypoint_peak_rss),
            mb(self.replay_peak_rss),
            mb(self.keypoint_rss[0]),
            mb(self.keypoint_rss[1]),
            mb(self.replay_rss[0]),
            mb(self.replay_rss[1]),
        );
        out
    }
}

/// A field of `/proc/<pid>/status` in bytes (`VmHWM`, `VmRSS`); 0 when unreadable.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str, server: &mut Server) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(bin: &Path, workspace: &Path, extra: &[String]) -> Server {
    let mut cmd = Command::new(bin);
    cmd.current_dir(workspace).args(["--config", "config/cluster-toy.toml"]);
    for set in extra {
        cmd.args(["--set", set]);
    }
    Server(cmd.env("RUST_LOG", "warn").env("NO_COLOR", "1").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap())
}

/// Counts errors, keeping the first few messages.
#[derive(Default)]
struct Errors {
    count: u64,
    first: Vec<String>,
}

fn record(errors: &Mutex<Errors>, what: &str, error: &anyhow::Error) {
    let mut e = errors.lock().unwrap();
    e.count += 1;
    if e.first.len() < 5 {
        e.first.push(format!("{what}: {}", format!("{error:#}").replace('\n', " ")));
    }
}

/// Starts the two servers (`bin_dir` holds `keypoint-server` and `replay-server`), runs the load
/// and stops them.
pub fn run(bin_dir: &Path, workspace: &Path, settings: &LoadSettings) -> LoadReport {
    let (replay_port, keypoint_port) = (free_port(), free_port());
    let mut keypoint_server = spawn(
        &bin_dir.join("keypoint-server"),
        workspace,
        &[format!("keypoint_server.listen=\"127.0.0.1:{keypoint_port}\"")],
    );
    let mut replay_server = spawn(
        &bin_dir.join("replay-server"),
        workspace,
        &[
            format!("replay_server.listen=\"127.0.0.1:{replay_port}\""),
            format!("replay.capacity_sequences={}", settings.capacity),
            "replay_server.snapshot_every_s=0".into(),
            // The limiter is not under test: 64 actors insert far more than one learner thread
            // samples at the toy run's ratio (64 samples per insert), and the limiter would hold
            // inserts (by design) until they time out.
            "replay_server.rate_limiter.samples_per_insert=1.0".into(),
            "replay_server.rate_limiter.error_buffer=1e12".into(),
        ],
    );
    wait_for_port(keypoint_port, "keypoint-server", &mut keypoint_server);
    wait_for_port(replay_port, "replay-server", &mut replay_server);
    let keypoints_endpoint = format!("http://127.0.0.1:{keypoint_port}");
    let replay_endpoint = format!("http://127.0.0.1:{replay_port}");
    let retry_for = Duration::from_secs(30);

    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Errors::default()));
    let warm = Arc::new(Barrier::new(settings.actors + 2));
    type Lat = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut threads: Vec<std::thread::JoinHandle<Lat>> = Vec::new();
    for actor in 0..settings.actors {
        let (stop, measuring, errors, warm, settings) = (stop.clone(), measuring.clone(), errors.clone(), warm.clone(), settings.clone());
        let (keypoints_endpoint, replay_endpoint) = (keypoints_endpoint.clone(), replay_endpoint.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("actor-{actor}"))
                .spawn(move || {
                    let (mut kp, mut ins) = (Vec::new(), Vec::new());
                    let clients = RemoteKeypoints::connect(&keypoints_endpoint, retry_for).and_then(|k| Ok((k, RemoteReplay::connect(&replay_endpoint, retry_for)?)));
                    let (mut keypoints, replay) = match clients {
                        Ok(c) => c,
                        Err(error) => {
                            record(&errors, "connect", &error);
                            warm.wait();
                            return (kp, ins, Vec::new());
                        }
                    };
                    let frames: Vec<u8> = (0..settings.envs * FRAME.iter().product::<usize>()).map(|i| ((i * 7 + actor * 13) % 256) as u8).collect();
                    let sequences: Vec<replay::Sequence> = (0..settings.envs)
                        .map(|e| {
                            SequenceBuilder::new(settings.steps)
                                .obs_shape(FRAME)
                                .env_id((actor * settings.envs + e) as u32)
                                .burn_in(8)
                                .keypoints(8)
                                .recurrent_state(vec![0.5; 16])
                                .tag(actor as u8)
                                .build()
                        })
                        .collect();
                    // Warm: the stream is open and the first insert went through.
                    if let Err(error) = keypoints.infer(&frames, settings.envs, FRAME, true) {
                        record(&errors, "keypoint request", &error);
                    }
                    if let Err(error) = replay.insert(&sequences) {
                        record(&errors, "replay insert", &error);
                    }
                    warm.wait();
                    let mut step = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let answer = keypoints.infer(&frames, settings.envs, FRAME, true);
                        let counted = measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed);
                        match answer {
                            Ok(_) if counted => kp.push(t.elapsed().as_secs_f64() * 1e3),
                            Ok(_) => {}
                            Err(error) => record(&errors, "keypoint request", &error),
                        }
                        step += 1;
                        if step.is_multiple_of(settings.period) {
                            let t = Instant::now();
                            let done = replay.insert(&sequences);
                            let counted = measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed);
                            match done {
                                Ok(_) if counted => ins.push(t.elapsed().as_secs_f64() * 1e3),
                                Ok(_) => {}
                                Err(error) => record(&errors, "replay insert", &error),
                            }
                        }
                    }
                    (kp, ins, Vec::new())
                })
                .unwrap(),
        );
    }
    // The learner: samples and sends priorities back.
    {
        let (stop, measuring, errors, warm, settings, endpoint) = (stop.clone(), measuring.clone(), errors.clone(), warm.clone(), settings.clone(), replay_endpoint.clone());
        threads.push(std::thread::spawn(move || {
            let mut samples = Vec::new();
            let replay = match RemoteReplay::connect(&endpoint, retry_for) {
                Ok(r) => r,
                Err(error) => {
                    record(&errors, "connect", &error);
                    warm.wait();
                    return (Vec::new(), Vec::new(), samples);
                }
            };
            warm.wait();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let done = replay.sample(settings.batch).and_then(|batch| {
                    let priorities: Vec<f64> = batch.keys.iter().enumerate().map(|(i, _)| 0.5 + (i % 7) as f64).collect();
                    replay.update_priorities(&batch.keys, &priorities)
                });
                let counted = measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed);
                match done {
                    Ok(_) if counted => samples.push(t.elapsed().as_secs_f64() * 1e3),
                    Ok(_) => {}
                    Err(error) => record(&errors, "replay sample", &error),
                }
            }
            (Vec::new(), Vec::new(), samples)
        }));
    }
    warm.wait();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let pids = (keypoint_server.0.id(), replay_server.0.id());
    std::thread::sleep(Duration::from_secs_f64(settings.seconds / 2.0));
    let mid = (proc_status_bytes(pids.0, "VmRSS"), proc_status_bytes(pids.1, "VmRSS"));
    std::thread::sleep(Duration::from_secs_f64(settings.seconds / 2.0));
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let end = (proc_status_bytes(pids.0, "VmRSS"), proc_status_bytes(pids.1, "VmRSS"));
    let mut report = LoadReport { seconds, keypoint_rss: [mid.0, end.0], replay_rss: [mid.1, end.1], ..LoadReport::default() };
    for thread in threads {
        let (kp, ins, samples) = thread.join().expect("a load thread panicked");
        report.keypoints.0.extend(kp);
        report.inserts.0.extend(ins);
        report.samples.0.extend(samples);
    }
    for l in [&mut report.keypoints, &mut report.inserts, &mut report.samples] {
        l.0.sort_by(f64::total_cmp);
    }
    report.frames = (report.keypoints.0.len() * settings.envs) as u64;
    if let Ok(stats) = RemoteReplay::connect(&replay_endpoint, retry_for).and_then(|r| r.stats()) {
        report.replay_size = stats.size;
        report.replay_evicted = stats.evicted_total;
    }
    report.keypoint_peak_rss = proc_status_bytes(pids.0, "VmHWM");
    report.replay_peak_rss = proc_status_bytes(pids.1, "VmHWM");
    for (server, what) in [(&mut keypoint_server, "keypoint-server"), (&mut replay_server, "replay-server")] {
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut e = errors.lock().unwrap();
            e.count += 1;
            e.first.push(format!("{what} exited during the load: {status}"));
        }
    }
    let e = errors.lock().unwrap();
    report.errors = e.count;
    report.first_errors = e.first.clone();
    report
}

/// The workspace root and the folder of the package's binaries, from a test's or bench's
/// `CARGO_MANIFEST_DIR` and `CARGO_BIN_EXE_*`.
pub fn paths(manifest_dir: &str, some_bin: &str) -> (PathBuf, PathBuf) {
    (Path::new(manifest_dir).parent().unwrap().to_owned(), Path::new(some_bin).parent().unwrap().to_owned())
}
