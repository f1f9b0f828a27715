//! The monitoring files against a live cluster: `deploy/prometheus/prometheus.yml` passes
//! `promtool check config`; then a real `scripts/cluster.sh` run (replay, keypoint service,
//! learner, 2 actors on the sprite corridor, each serving /metrics) is scraped every second by a
//! real Prometheus (`/usr/bin/prometheus`, from scripts/setup.sh), and EVERY query of the Grafana
//! dashboard (`deploy/grafana/dashboards/permakey-rl.json`, panels of collapsed rows included)
//! must succeed with a non-empty result (GPU panels may be empty where no NVIDIA driver exists).
//! Every metric of the catalogue (`telemetry/src/lib.rs`, module `names`) must appear in some
//! panel, and must have reached Prometheus (apart from those a healthy run need not produce:
//! rate-limiter timeouts, actor holds, learner batch waits, and GPU gauges without a driver).
//! The test provokes one invalid replay request and one invalid keypoint request so the error
//! counters carry data. Finally the panel renderer (`cli/examples/render_panels.rs`) draws the
//! main panels into a temporary folder.
//!
//! Bounded to about 4 minutes; the cluster and Prometheus are stopped (SIGTERM to the cluster's
//! process group, then SIGKILL) whatever happens.

#[path = "../examples/render_panels.rs"]
#[allow(dead_code)]
mod render_panels;

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// Whole test budget (the cluster's first updates, an evaluation, a snapshot, then the queries).
const BUDGET: Duration = Duration::from_secs(225);
const ACTORS: u16 = 2;
/// Catalogue metrics a healthy short run need not produce.
const MAY_BE_ABSENT: &[&str] = &["pkrl_replay_rate_limiter_timeouts_total", "pkrl_actor_held_seconds", "pkrl_learner_batch_wait_seconds"];
const GPU_METRICS: &[&str] = &["pkrl_gpu_utilization_ratio", "pkrl_gpu_memory_used_bytes"];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Stops what the test started, on success and on panic alike.
struct Guard {
    cluster: Option<Child>,
    prometheus: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut prometheus) = self.prometheus.take() {
            let _ = prometheus.kill();
            let _ = prometheus.wait();
        }
        if let Some(mut cluster) = self.cluster.take() {
            // cluster.sh leads its own process group (process_group(0)): signal every process of
            // it, the script and its replay, keypoint, learner and actor children alike. Nothing
            // here blocks without a bound: a component slow to stop gets a second SIGTERM (exit at
            // once), then SIGKILL.
            let group = format!("-{}", cluster.id());
            let signal = |sig: &str| {
                let _ = Command::new("kill").args([sig, "--", &group]).stderr(Stdio::null()).status();
            };
            let mut wait_gone = |limit: Duration| {
                let started = Instant::now();
                loop {
                    // Reap cluster.sh (a zombie still counts as a member of the group).
                    let _ = cluster.try_wait();
                    let alive = Command::new("kill").args(["-0", "--", &group]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
                    if !alive || started.elapsed() > limit {
                        return !alive;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            };
            signal("-TERM");
            if !wait_gone(Duration::from_secs(15)) {
                eprintln!("dashboards: the cluster did not stop within 15 s of SIGTERM; signalling again, then SIGKILL");
                signal("-TERM");
                if !wait_gone(Duration::from_secs(5)) {
                    signal("-KILL");
                    wait_gone(Duration::from_secs(5));
                }
            }
            let _ = cluster.kill();
            let _ = cluster.wait();
        }
    }
}

/// `count` consecutive free ports of 127.0.0.1 (checked by binding), starting at a random base
/// above 40000.
fn free_ports(count: u16) -> u16 {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() ^ std::process::id().wrapping_mul(2_654_435_761);
    for attempt in 0..200u32 {
        let base = 40_000 + (seed.wrapping_add(attempt.wrapping_mul(7919)) % 20_000) as u16;
        if (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports above 40000");
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The catalogue's metric names: the `pub const X: &str = "..."` lines of telemetry's `names`.
fn catalogue() -> Vec<String> {
    let source = std::fs::read_to_string(workspace().join("telemetry/src/lib.rs")).unwrap();
    let start = source.find("pub mod names").expect("telemetry/src/lib.rs has `pub mod names`");
    let module = &source[start..];
    let module = &module[..module.find("\n}").unwrap_or(module.len())];
    let names: Vec<String> = module
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const ") && l.contains(": &str = \""))
        .filter_map(|l| l.split('"').nth(1).map(String::from))
        .collect();
    assert!(names.len() >= 30, "parsed only {} metric names from telemetry/src/lib.rs: {names:?}", names.len());
    names
}

/// Whether `text` names metric `name` (or its histogram/summary series) as a whole identifier.
fn uses_metric(text: &str, name: &str) -> bool {
    let identifier = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let rest = &text[at + name.len()..];
        let rest = ["_bucket", "_sum", "_count"].iter().find_map(|s| rest.strip_prefix(s)).unwrap_or(rest);
        !before.is_some_and(identifier) && !rest.chars().next().is_some_and(identifier)
    })
}

fn has_nvidia_driver() -> bool {
    Path::new("/proc/driver/nvidia/version").exists()
}

/// A query's result vector, or why there is none.
fn instant(prometheus: &str, expr: &str) -> Result<Vec<Value>, String> {
    let data = render_panels::query(prometheus, expr).map_err(|e| format!("{e:#}"))?;
    match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
        Some("scalar") => Ok(vec![data["result"].clone()]),
        other => Err(format!("unexpected result type {other:?}")),
    }
}

/// Sends one malformed Sample to the replay and one keypoint request without frames, so the
/// invalid-request and keypoint-error counters exist (with their labels) as in a run that saw one.
fn provoke_invalid_requests(replay: &str, keypoints: &str) {
    use pkrl_proto::v1::{keypoint_service_client::KeypointServiceClient, replay_service_client::ReplayServiceClient, InferRequest, SampleRequest};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = ReplayServiceClient::connect(replay.to_string()).await.expect("connect to the replay");
        let status = client.sample(SampleRequest { batch_size: 0 }).await.expect_err("batch_size 0 is refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let mut client = KeypointServiceClient::connect(keypoints.to_string()).await.expect("connect to the keypoint service");
        let request = InferRequest { request_id: 7, frames: None, ..Default::default() };
        let mut answers = client.infer(tonic::codegen::tokio_stream::iter(vec![request])).await.expect("open an infer stream").into_inner();
        let answer = answers.message().await.expect("an answer").expect("one answer");
        assert!(answer.error.is_some(), "a request without frames is answered with an error: {answer:?}");
    });
}

#[test]
fn every_dashboard_query_has_data_from_a_live_cluster() {
    let started = Instant::now();
    let left = || BUDGET.saturating_sub(started.elapsed());
    assert!(Path::new(PROMETHEUS).is_file() && Path::new(PROMTOOL).is_file(), "{PROMETHEUS} or {PROMTOOL} is missing: run scripts/setup.sh (it installs the prometheus package)");

    // (1) The compose scrape config is valid.
    let config = workspace().join("deploy/prometheus/prometheus.yml");
    let output = Command::new(PROMTOOL).arg("check").arg("config").arg(&config).output().unwrap();
    assert!(output.status.success(), "promtool check config {}:\n{}{}", config.display(), String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    // The dashboard: every target expression, and every catalogue metric used by one.
    let dashboard_path = workspace().join("deploy/grafana/dashboards/permakey-rl.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&dashboard_path).unwrap()).expect("the dashboard is JSON");
    let panels = render_panels::panels(&dashboard);
    let variables = render_panels::template_variables(&dashboard);
    let variables = &variables;
    let exprs: Vec<(String, String, bool)> = panels
        .iter()
        .flat_map(|p| p.targets.iter().map(move |t| (p.title.clone(), render_panels::substitute(&t.expr, "10s", "5s", "300s", variables, ".*"), p.is_gpu())))
        .collect();
    assert!(exprs.len() >= 40, "only {} panel queries found in {}", exprs.len(), dashboard_path.display());
    for (title, expr, _) in &exprs {
        assert!(!expr.contains('$'), "panel {title:?}: a Grafana variable was left unreplaced: {expr}");
    }
    let all_exprs: String = exprs.iter().map(|(_, e, _)| e.as_str()).collect::<Vec<_>>().join("\n");
    let names = catalogue();
    let unused: Vec<&String> = names.iter().filter(|n| !uses_metric(&all_exprs, n)).collect();
    assert!(unused.is_empty(), "catalogue metrics no dashboard panel uses: {unused:?}");
    for row in ["Throughput", "Learning", "Latency", "Replay", "Health"] {
        assert!(panels.iter().any(|p| p.row == row), "no panels in a row titled {row}");
    }
    for panel in &panels {
        assert!(!panel.unit.is_empty(), "panel {:?} has no unit", panel.title);
    }

    // (2) A cluster with metrics. A long budget (the guard stops it), an evaluation soon after
    // learning starts, and a replay snapshot every 5 s.
    let out = tempfile::tempdir().unwrap();
    let metrics_base = free_ports(3 + ACTORS);
    let port_base = loop {
        let base = free_ports(3);
        if base + 3 <= metrics_base || base >= metrics_base + 3 + ACTORS {
            break base;
        }
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_learner")).parent().unwrap();
    let cluster_log = out.path().join("cluster.log");
    let mut guard = Guard { cluster: None, prometheus: None };
    let sets = [
        "train.agent_steps=100000",
        "train.learning_starts=64",
        "train.eval_every=128",
        "train.eval_episodes=2",
        "train.eval_envs=2",
        "replay_server.snapshot_every_s=5",
    ];
    let mut cluster = Command::new(workspace().join("scripts/cluster.sh"));
    cluster.args(["--config", "config/cluster-toy.toml"]);
    for set in sets {
        cluster.args(["--set", set]);
    }
    guard.cluster = Some(
        cluster
            .current_dir(workspace())
            .env("BIN", bin)
            .env("OUT_DIR", out.path())
            .env("RUN_NAME", "dash")
            .env("ACTORS", ACTORS.to_string())
            .env("PORT_BASE", port_base.to_string())
            .env("METRICS_PORT_BASE", metrics_base.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&cluster_log).unwrap())
            .stderr(std::fs::File::create(out.path().join("cluster.err")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let logs = out.path().join("dash/logs");
    let diagnose = |why: &str| -> String {
        let mut text = format!("{why}\n--- cluster.sh:\n{}\n{}", tail(&cluster_log, 10), tail(&out.path().join("cluster.err"), 10));
        for log in ["replay", "keypoint-service", "learner", "actor-0", "actor-1"] {
            text += &format!("\n--- {log}.log:\n{}", tail(&logs.join(format!("{log}.log")), 8));
        }
        text
    };

    // (3) Prometheus scraping the cluster every second, with the compose file's job names.
    let prometheus_port = loop {
        let port = free_ports(1);
        if !(metrics_base..metrics_base + 3 + ACTORS).contains(&port) && !(port_base..port_base + 3).contains(&port) {
            break port;
        }
    };
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");
    let target = |offset: u16| format!("\"127.0.0.1:{}\"", metrics_base + offset);
    let job = |name: &str, targets: Vec<String>| format!("  - job_name: {name}\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n        labels:\n          component: {name}\n", targets.join(", "));
    let scrape = [
        job("replay", vec![target(0)]),
        job("keypoint-service", vec![target(1)]),
        job("learner", vec![target(2)]),
        job("actor", (0..ACTORS).map(|i| target(3 + i)).collect()),
    ]
    .concat();
    let prometheus_config = out.path().join("prometheus.yml");
    std::fs::write(&prometheus_config, format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape}")).unwrap();
    let prometheus_log = out.path().join("prometheus.log");
    guard.prometheus = Some(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", prometheus_config.display()))
            .arg(format!("--storage.tsdb.path={}", out.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prometheus_log).unwrap())
            .spawn()
            .unwrap(),
    );
    while !render_panels::http_get(&prometheus, "/-/ready").is_ok_and(|(status, _)| status == 200) {
        assert!(started.elapsed() < Duration::from_secs(60), "Prometheus did not get ready:\n{}", tail(&prometheus_log, 20));
        std::thread::sleep(Duration::from_millis(250));
    }
    let run_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    eprintln!("dashboards: cluster gRPC :{port_base}.., metrics :{metrics_base}.., Prometheus {prometheus} (config check and setup {:.0} s)", started.elapsed().as_secs_f64());

    // (4) The learner's updates rise in Prometheus.
    let mut first: Option<f64> = None;
    loop {
        if let Some(status) = guard.cluster.as_mut().unwrap().try_wait().unwrap() {
            panic!("{}", diagnose(&format!("cluster.sh exited early ({status})")));
        }
        let updates = instant(&prometheus, "sum(pkrl_learner_updates_total)").ok().and_then(|r| r.first().and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok()));
        match (first, updates) {
            (None, Some(u)) => first = Some(u),
            (Some(a), Some(b)) if b > a => break,
            _ => {}
        }
        assert!(!left().is_zero(), "{}", diagnose("timed out waiting for pkrl_learner_updates_total to rise in Prometheus"));
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("dashboards: learner updates rising after {:.0} s", started.elapsed().as_secs_f64());
    provoke_invalid_requests(&format!("http://127.0.0.1:{port_base}"), &format!("http://127.0.0.1:{}", port_base + 1));

    // (5) Every panel query: success and data. Polled until all pass (the evaluation and the
    // first snapshot take a while) or the budget runs out; then every failure is reported.
    let gpu = has_nvidia_driver();
    let presence = |name: &str| format!("count({{__name__=~\"{name}|{name}_bucket|{name}_sum|{name}_count\"}})");
    let failures = loop {
        let mut failures = Vec::new();
        let mut hard = false;
        for (title, expr, is_gpu) in &exprs {
            match instant(&prometheus, expr) {
                Err(e) => {
                    hard = true;
                    failures.push(format!("panel {title:?}: query failed: {e}\n    {expr}"));
                }
                Ok(result) if result.is_empty() && !(*is_gpu && !gpu) => failures.push(format!("panel {title:?}: empty result\n    {expr}")),
                Ok(_) => {}
            }
        }
        // (6, live) Every catalogue metric reached Prometheus.
        for name in &names {
            if MAY_BE_ABSENT.contains(&name.as_str()) || (!gpu && GPU_METRICS.contains(&name.as_str())) {
                continue;
            }
            if instant(&prometheus, &presence(name)).map(|r| r.is_empty()).unwrap_or(true) {
                failures.push(format!("metric {name}: no series in Prometheus"));
            }
        }
        if failures.is_empty() || hard || left() < Duration::from_secs(5) {
            break failures;
        }
        if let Some(status) = guard.cluster.as_mut().unwrap().try_wait().unwrap() {
            panic!("{}", diagnose(&format!("cluster.sh exited early ({status}) with queries still empty:\n{}", failures.join("\n"))));
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    assert!(
        failures.is_empty(),
        "{}",
        diagnose(&format!("{} of {} dashboard checks failed after {:.0} s:\n{}", failures.len(), exprs.len() + names.len(), started.elapsed().as_secs_f64(), failures.join("\n")))
    );
    let absent: Vec<&&str> = MAY_BE_ABSENT.iter().filter(|n| instant(&prometheus, &presence(n)).map(|r| r.is_empty()).unwrap_or(true)).collect();
    eprintln!(
        "dashboards: {} queries of {} panels all returned data after {:.0} s ({} GPU queries {}); {} catalogue metrics in use; not produced by this run: {absent:?}",
        exprs.len(),
        panels.len(),
        started.elapsed().as_secs_f64(),
        exprs.iter().filter(|e| e.2).count(),
        if gpu { "checked" } else { "allowed empty: no NVIDIA driver" },
        names.len(),
    );

    // The renderer over the run so far: one PNG per main panel.
    let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let titles: Vec<String> = render_panels::MAIN_PANELS.iter().map(|t| t.to_string()).collect();
    let pngs = out.path().join("pngs");
    let written: Vec<PathBuf> = render_panels::render(&prometheus, &dashboard, &render_panels::Range { start: run_start - 5.0, end, scrape_interval: 1.0, rate_interval: Some(10.0) }, Some(&titles), &pngs).expect("render the main panels");
    assert_eq!(written.len(), titles.len());
    for path in &written {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 1000 && &bytes[1..4] == b"PNG", "{}", path.display());
    }
    eprintln!("dashboards: rendered {} panels; total {:.0} s", written.len(), started.elapsed().as_secs_f64());
    drop(guard);
}
