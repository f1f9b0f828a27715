//! Agent steps per second of the Atari stack against its baselines, all in one run so the ratios
//! sit side by side (`cargo bench -p atari --bench env_throughput`, or `make bench`):
//!
//! - (a) raw ALE: 4x [`Emulator::act`] and one RGB screen fetch per agent step;
//! - (b) ours: [`AtariEnv`] with the full Atari-100k training preprocessing
//!   ([`Preset::Atari100k`]: max-pool, 84x84 RGB area resize, no-op starts, episodic life,
//!   FIRE reset), noise off and noise "both"; [`EnvPool`] for the multi-thread rows;
//! - (c) Python EnvPool with the same settings (`scripts/bench/envpool_atari.py`);
//! - (d) the same preprocessing in Python: ale-py, numpy max-pool, cv2 INTER_AREA
//!   (`scripts/bench/ale_numpy_atari.py`, one process per thread).
//!
//! Frame skip 4 everywhere and uniformly random actions. Each case runs `PERMAKEY_BENCH_ROUNDS`
//! times (default 3), interleaved with the others so background load hits them alike, for
//! `PERMAKEY_BENCH_SECONDS` each (default 2); the table shows the median. Then a phase profile
//! of one environment step. The table is printed and written to `target/bench/atari.md`.
//! `PERMAKEY_BENCH_GAME` picks the game (default MsPacman). The Python baselines need
//! `scripts/setup.sh --bench`; without them the bench fails and says so.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Barrier,
    time::{Duration, Instant},
};

use atari::{
    noise::{draw_bars, paint_bars},
    preprocess::{palette_max, AreaResizer},
    AtariEnv, EnvConfig, EnvPool, Emulator, EmulatorSettings, NoiseType, Preset, RomCatalog, SCREEN_HEIGHT,
    SCREEN_WIDTH,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Environments per worker thread in the pooled rows (ours and Python EnvPool alike).
const ENVS_PER_THREAD: usize = 4;
const THREAD_COUNTS: [usize; 2] = [1, 2];
const WARMUP: Duration = Duration::from_millis(300);

/// What the bench measures, read once from the environment.
struct BenchSettings {
    game: String,
    seconds: f64,
    rounds: usize,
    python: PathBuf,
    scripts: PathBuf,
}

impl BenchSettings {
    fn from_env() -> Self {
        let number = |key: &str, default: f64| {
            std::env::var(key).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{key}={v} is not a number")))
        };
        let venv = std::env::var_os("PERMAKEY_VENV")
            .map(PathBuf::from)
            .or_else(|| option_env!("PERMAKEY_VENV").map(PathBuf::from))
            .unwrap_or_else(|| panic!("PERMAKEY_VENV is not set: run `scripts/setup.sh --bench` (or `make bench`)"));
        let python = venv.join("bin").join("python");
        assert!(python.is_file(), "no Python venv at {}: run `scripts/setup.sh --bench` (or `make bench`)", venv.display());
        Self {
            game: std::env::var("PERMAKEY_BENCH_GAME").unwrap_or_else(|_| "MsPacman".to_owned()),
            seconds: number("PERMAKEY_BENCH_SECONDS", 2.0),
            rounds: number("PERMAKEY_BENCH_ROUNDS", 3.0) as usize,
            python,
            scripts: workspace_root().join("scripts").join("bench"),
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("atari sits in the workspace").to_owned()
}

/// The cases of the table, each measured at 1 and 2 threads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    RawAle,
    Ours(NoiseType),
    PythonEnvPool,
    PythonAleNumpy,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::RawAle,
        Case::Ours(NoiseType::None),
        Case::Ours(NoiseType::Both),
        Case::PythonEnvPool,
        Case::PythonAleNumpy,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::RawAle => "(a) raw ALE: 4x `Emulator::act` + 1 RGB screen fetch",
            Case::Ours(NoiseType::None) => "(b) ours: `AtariEnv` Atari-100k, noise off",
            Case::Ours(_) => "(b) ours: `AtariEnv` Atari-100k, noise both",
            Case::PythonEnvPool => "(c) Python EnvPool, same settings",
            Case::PythonAleNumpy => "(d) Python ale-py + numpy max + cv2 INTER_AREA",
        }
    }
}

/// A small splitmix64 stream for random actions (no dependence on `rand`'s algorithms).
struct ActionStream(u64);

impl ActionStream {
    fn next(&mut self, num_actions: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % num_actions as u64) as usize
    }
}

/// Runs `step` (which returns agent steps done) for the warm-up, then for `seconds`; steps/s.
fn timed(seconds: f64, barrier: Option<&Barrier>, mut step: impl FnMut() -> usize) -> f64 {
    let deadline = Instant::now() + WARMUP;
    while Instant::now() < deadline {
        step();
    }
    if let Some(barrier) = barrier {
        barrier.wait();
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut steps = 0;
    loop {
        steps += step();
        let now = Instant::now();
        if now >= deadline {
            return steps as f64 / (now - start).as_secs_f64();
        }
    }
}

/// (a): one emulator per thread, no synchronisation between threads; rates summed.
fn raw_ale(roms: &RomCatalog, settings: &BenchSettings, threads: usize) -> f64 {
    let rom = roms.resolve(&settings.game).expect("bench game ROM");
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (rom, barrier) = (&rom, &barrier);
                scope.spawn(move || {
                    let mut emulator = Emulator::new(rom, EmulatorSettings { seed: t as i32, ..Default::default() }).unwrap();
                    let actions = emulator.minimal_actions().to_vec();
                    let mut indices = vec![0u8; SCREEN_HEIGHT * SCREEN_WIDTH];
                    let mut rgb = vec![0u8; SCREEN_HEIGHT * SCREEN_WIDTH * 3];
                    let mut stream = ActionStream(t as u64);
                    timed(settings.seconds, Some(barrier), || {
                        let action = actions[stream.next(actions.len())];
                        for _ in 0..4 {
                            emulator.act(action);
                        }
                        if emulator.game_over() {
                            emulator.reset_game();
                        }
                        emulator.screen_rgb(&mut indices, &mut rgb).unwrap();
                        1
                    })
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("raw ALE worker")).sum()
    })
}

fn ours_config(settings: &BenchSettings, noise: NoiseType) -> EnvConfig {
    EnvConfig { noise, ..Preset::Atari100k.train_env(&settings.game) }
}

/// (b): one `AtariEnv` on this thread, or an `EnvPool` of `ENVS_PER_THREAD * threads` envs.
fn ours(roms: &RomCatalog, settings: &BenchSettings, threads: usize, noise: NoiseType) -> f64 {
    let config = ours_config(settings, noise);
    let mut stream = ActionStream(17);
    if threads == 1 {
        let mut env = AtariEnv::new(&config, roms, 0).unwrap();
        let mut obs = vec![0u8; env.obs_len()];
        env.reset(&mut obs).unwrap();
        let num_actions = env.num_actions();
        return timed(settings.seconds, None, || {
            let info = env.step(stream.next(num_actions), &mut obs).unwrap();
            if info.terminated || info.truncated {
                env.reset(&mut obs).unwrap();
            }
            1
        });
    }
    let num_envs = ENVS_PER_THREAD * threads;
    let mut pool = EnvPool::new(&config, roms, num_envs, threads, 0).unwrap();
    pool.reset().unwrap();
    let num_actions = pool.num_actions();
    let mut actions = vec![0usize; num_envs];
    timed(settings.seconds, None, || {
        actions.iter_mut().for_each(|a| *a = stream.next(num_actions));
        pool.step(&actions).unwrap();
        num_envs
    })
}

/// Runs one Python baseline script; returns its `steps_per_second` and the whole JSON reply.
fn python_baseline(settings: &BenchSettings, script: &str, args: &[String]) -> (f64, serde_json::Value) {
    let path = settings.scripts.join(script);
    let output = Command::new(&settings.python)
        .arg(&path)
        .args(args)
        .args(["--seconds".to_owned(), settings.seconds.to_string(), "--warmup".to_owned(), WARMUP.as_secs_f64().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", settings.python.display()));
    assert!(
        output.status.success(),
        "{} {} failed ({}); run `scripts/setup.sh --bench` (or `make bench`) to install the baselines:\n{}",
        settings.python.display(),
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let reply: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"));
    let rate = reply["steps_per_second"].as_f64().unwrap_or_else(|| panic!("{script}: no steps_per_second in {reply}"));
    (rate, reply)
}

fn measure(case: Case, roms: &RomCatalog, settings: &BenchSettings, threads: usize, versions: &mut Vec<String>) -> f64 {
    match case {
        Case::RawAle => raw_ale(roms, settings, threads),
        Case::Ours(noise) => ours(roms, settings, threads, noise),
        Case::PythonEnvPool => {
            let args = ["--game", &settings.game, "--threads", &threads.to_string(), "--envs", &(ENVS_PER_THREAD * threads).to_string()];
            let (rate, reply) = python_baseline(settings, "envpool_atari.py", &args.map(str::to_owned));
            versions.push(format!("envpool {}", reply["envpool"].as_str().unwrap_or("?")));
            rate
        }
        Case::PythonAleNumpy => {
            let args = ["--game", &settings.game, "--processes", &threads.to_string()];
            let (rate, reply) = python_baseline(settings, "ale_numpy_atari.py", &args.map(str::to_owned));
            versions.push(format!("opencv {}", reply["opencv"].as_str().unwrap_or("?")));
            rate
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

/// Wall time per phase of one `AtariEnv` step, rebuilt from the crate's public pieces in the
/// same order (`env.rs`: `skip_step`, `write_obs`, `info`): microseconds per agent step.
fn phase_profile(roms: &RomCatalog, settings: &BenchSettings) -> Vec<(&'static str, f64)> {
    let config = ours_config(settings, NoiseType::Both);
    let rom = roms.resolve(&config.game).unwrap();
    let mut emulator = Emulator::new(&rom, EmulatorSettings::default()).unwrap();
    let actions = emulator.minimal_actions().to_vec();
    let (h, w) = (emulator.screen_height(), emulator.screen_width());
    let (mut prev, mut last) = (vec![0u8; h * w], vec![0u8; h * w]);
    let mut pooled = vec![0u8; h * w * 3];
    let mut obs = vec![0u8; config.obs_len()];
    let mut resizer = AreaResizer::new(h, w, 84, 84, 3);
    let mut noise_rng = ChaCha8Rng::seed_from_u64(5);
    let mut stream = ActionStream(3);
    let names = ["ALE act x4", "screen indices x2", "palette + max-pool", "area resize 84x84", "noise bars (both)", "lives/RAM/counters"];
    let mut totals = [Duration::ZERO; 6];
    let mut steps = 0usize;
    let deadline = Instant::now() + Duration::from_secs_f64(settings.seconds);
    let mut checksum = 0u64;
    while Instant::now() < deadline {
        let action = actions[stream.next(actions.len())];
        let mut marks = [Instant::now(); 7];
        for _ in 0..4 {
            emulator.act(action);
        }
        marks[1] = Instant::now();
        emulator.screen_indices(&mut prev).unwrap();
        emulator.screen_indices(&mut last).unwrap();
        marks[2] = Instant::now();
        palette_max(&prev, &last, emulator.palette_rgb(), &mut pooled);
        marks[3] = Instant::now();
        resizer.resize(&pooled, &mut obs);
        marks[4] = Instant::now();
        let bars = draw_bars(NoiseType::Both, 84, 84, &mut noise_rng);
        paint_bars(bars, &mut obs, 84, 84, 3);
        marks[5] = Instant::now();
        let over = emulator.game_over();
        let lives = emulator.lives();
        let ram = emulator.ram();
        checksum = checksum.wrapping_add(emulator.frame_number() + emulator.episode_frame_number() + ram[0] as u64 + lives as u64);
        if over {
            emulator.reset_game();
        }
        marks[6] = Instant::now();
        for (i, total) in totals.iter_mut().enumerate() {
            *total += marks[i + 1] - marks[i];
        }
        steps += 1;
    }
    std::hint::black_box((checksum, &obs));
    names.into_iter().zip(totals).map(|(name, total)| (name, total.as_secs_f64() * 1e6 / steps as f64)).collect()
}

/// `YYYY-MM-DD` (UTC) of now, from the days since the epoch (proleptic Gregorian).
fn today_utc() -> String {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02}")
}

fn machine_note() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| text.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").ok().map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default();
    format!("{cpu}, {cores} cores available, load average {load} at the start")
}

fn ratio_cell(numerator: f64, denominator: f64, target: Option<f64>) -> String {
    let ratio = numerator / denominator;
    match target {
        Some(target) if ratio >= target => format!("{ratio:.2}x (met)"),
        Some(_) => format!("{ratio:.2}x (missed)"),
        None => format!("{ratio:.2}x"),
    }
}

fn main() {
    let settings = BenchSettings::from_env();
    let roms = RomCatalog::discover().expect("ROMs installed by `make setup`");
    let machine = machine_note();
    eprintln!("env_throughput: {} on {machine}; {} rounds of {} s per case", settings.game, settings.rounds, settings.seconds);

    let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); THREAD_COUNTS.len()]; Case::ALL.len()];
    let mut versions = Vec::new();
    for round in 0..settings.rounds {
        for (c, &case) in Case::ALL.iter().enumerate() {
            for (t, &threads) in THREAD_COUNTS.iter().enumerate() {
                let rate = measure(case, &roms, &settings, threads, &mut versions);
                eprintln!("round {round}: {} @ {threads} thread(s): {rate:.0} steps/s", case.label());
                samples[c][t].push(rate);
            }
        }
    }
    let rate = |case: Case, t: usize| median(&samples[Case::ALL.iter().position(|&c| c == case).unwrap()][t]);
    let spread = |c: usize, t: usize| {
        let s = &samples[c][t];
        let (lo, hi) = (s.iter().copied().fold(f64::INFINITY, f64::min), s.iter().copied().fold(0.0, f64::max));
        100.0 * (hi - lo) / median(s)
    };

    let mut table = String::new();
    let header = THREAD_COUNTS.iter().map(|t| format!("{t} thread{}", if *t > 1 { "s" } else { "" })).collect::<Vec<_>>();
    writeln!(table, "| agent steps/s (median of {} rounds; min-max spread) | {} |", settings.rounds, header.join(" | ")).unwrap();
    writeln!(table, "|---|{}", "---:|".repeat(THREAD_COUNTS.len())).unwrap();
    for (c, &case) in Case::ALL.iter().enumerate() {
        let cells: Vec<String> =
            (0..THREAD_COUNTS.len()).map(|t| format!("{:.0} ({:.0}%)", rate(case, t), spread(c, t))).collect();
        writeln!(table, "| {} | {} |", case.label(), cells.join(" | ")).unwrap();
    }
    let ratio_rows: [(&str, Case, Case, Option<f64>); 6] = [
        ("(b) noise off / (a), target >= 0.9", Case::Ours(NoiseType::None), Case::RawAle, Some(0.9)),
        ("(b) noise both / (a), target >= 0.9", Case::Ours(NoiseType::Both), Case::RawAle, Some(0.9)),
        ("(b) noise off / (c), target >= 2", Case::Ours(NoiseType::None), Case::PythonEnvPool, Some(2.0)),
        ("(b) noise both / (c), target >= 2", Case::Ours(NoiseType::Both), Case::PythonEnvPool, Some(2.0)),
        ("(b) noise off / (d)", Case::Ours(NoiseType::None), Case::PythonAleNumpy, None),
        ("(a) / (c): the ceiling of (b) / (c)", Case::RawAle, Case::PythonEnvPool, None),
    ];
    for (label, numerator, denominator, target) in ratio_rows {
        let cells: Vec<String> =
            (0..THREAD_COUNTS.len()).map(|t| ratio_cell(rate(numerator, t), rate(denominator, t), target)).collect();
        writeln!(table, "| **{label}** | {} |", cells.join(" | ")).unwrap();
    }

    let profile = phase_profile(&roms, &settings);
    let total: f64 = profile.iter().map(|(_, us)| us).sum();
    let mut phases = String::new();
    writeln!(phases, "| phase of one agent step (1 thread, noise both) | us/step | share |").unwrap();
    writeln!(phases, "|---|---:|---:|").unwrap();
    for (name, us) in &profile {
        writeln!(phases, "| {name} | {us:.1} | {:.1}% |", 100.0 * us / total).unwrap();
    }
    writeln!(phases, "| total | {total:.1} | 100% |").unwrap();

    versions.sort();
    versions.dedup();
    let report = format!(
        "## Atari environment throughput\n\n\
         Game {game}, frame skip 4, uniformly random actions; Atari-100k training preprocessing \
         (max-pool, 84x84 RGB INTER_AREA, 1..30 no-ops, episodic life, FIRE reset, 4000-step limit, \
         no sticky actions, no reward clipping). 1 thread: one `AtariEnv`; 2 threads: `EnvPool` of \
         {pooled} envs. Python EnvPool runs {per} envs per thread (batch = all envs); \
         (d) runs one process per thread. Baselines: {versions}.\n\n\
         {table}\n{phases}\n\
         Command: `cargo bench -p atari --bench env_throughput` ({date}; {machine}; \
         {rounds} rounds x {seconds} s per case). The machine's cores are shared with other \
         builds, so absolute numbers move between runs: compare the ratios.\n",
        game = settings.game,
        pooled = ENVS_PER_THREAD * 2,
        per = ENVS_PER_THREAD,
        versions = versions.join(", "),
        date = today_utc(),
        rounds = settings.rounds,
        seconds = settings.seconds,
    );
    println!("\n{report}");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir).expect("create target/bench");
    let out = out_dir.join("atari.md");
    std::fs::write(&out, &report).expect("write target/bench/atari.md");
    eprintln!("wrote {}", out.display());
}
