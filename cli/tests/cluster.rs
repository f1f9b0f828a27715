//! The distributed mode as separate processes on loopback (issue 8, item 8): `scripts/cluster.sh`
//! starts replay-server, keypoint-server, learner and 2 actors with `config/cluster-toy.toml`
//! (the embedded learning test's schedule on the sprite corridor, its 4 environments split over
//! 2 actors). The learner's updates and the replay's size grow, both actors finish games and stop
//! when the budget is spent, and the run reaches the optimal greedy return as the embedded
//! trainer does on the same budget (`trainer/tests/learns_toy.rs`, same threshold).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn replay_keypoints_learner_and_two_actors_learn_the_corridor() {
    let out = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_learner")).parent().unwrap();
    let port_base = 20_000 + (std::process::id() % 20_000) as u16 / 3 * 3;
    let started = Instant::now();
    let mut child = Command::new(workspace().join("scripts/cluster.sh"))
        .args(["--config", "config/cluster-toy.toml"])
        .current_dir(workspace())
        .env("BIN", bin)
        .env("OUT_DIR", out.path())
        .env("RUN_NAME", "toy")
        .env("ACTORS", "2")
        .env("PORT_BASE", port_base.to_string())
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(900) {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            panic!("the cluster did not finish in 900 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let dir = out.path().join("toy");
    let log = |name: &str| std::fs::read_to_string(dir.join("logs").join(name)).unwrap_or_default();
    assert!(status.success(), "cluster failed: {status}\nlearner log tail:\n{}", tail(&log("learner.log")));
    eprintln!("cluster run: {:.0} s", started.elapsed().as_secs_f64());

    let scores: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("final_scores.json")).unwrap()).unwrap();
    let score = scores["score"].as_f64().unwrap();
    eprintln!("distributed final greedy return {score:.3}, {} updates, {} games", scores["updates"], scores["episodes"]);
    assert_eq!(scores["updates"].as_u64(), Some(1150), "the embedded schedule: (2500 - 200) / 2 updates");
    assert!(score >= 0.95, "greedy return {score} below 0.95 (the embedded trainer's threshold)");

    // The learner's updates and the replay's size grow from row to row.
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let rows: Vec<Vec<f64>> = metrics.lines().skip(1).map(|l| l.split(',').map(|x| x.parse().unwrap_or(f64::NAN)).collect()).collect();
    assert!(rows.len() >= 3, "{metrics}");
    for pair in rows.windows(2) {
        assert!(pair[1][1] > pair[0][1], "updates grow: {metrics}");
        assert!(pair[1][8] >= pair[0][8] && pair[1][8] > 0.0, "replay size grows: {metrics}");
    }
    // Both actors finished games, reported to the learner, and stopped at the budget.
    let episodes = std::fs::read_to_string(dir.join("episodes.csv")).unwrap();
    let envs: std::collections::BTreeSet<u64> = episodes.lines().skip(1).filter_map(|l| l.split(',').nth(1)?.parse().ok()).collect();
    assert!(envs.contains(&0) && envs.contains(&2), "games of actor 0 (envs 0-1) and actor 1 (envs 2-3): {envs:?}");
    for id in 0..2 {
        let text = log(&format!("actor-{id}.log"));
        assert!(text.contains("budget spent"), "actor {id} did not stop at the budget:\n{}", tail(&text));
    }
    // The replay service wrote its snapshot when the script stopped it.
    assert!(dir.join("replay.snapshot").is_file(), "replay log:\n{}", tail(&log("replay.log")));
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_exit(child: &mut std::process::Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something listens on `port` of 127.0.0.1.
fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &std::process::Child) {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
}

/// Each component binary on its own: the learner checkpoints on SIGTERM and resumes from it, the
/// keypoint server stops cleanly, an actor with no services to talk to gives up after its retry
/// budget with one line naming the service, and bad settings are one line and exit code 1.
#[test]
fn component_binaries_stop_cleanly_resume_and_fail_with_one_line() {
    use std::process::Stdio;
    let out = tempfile::tempdir().unwrap();
    let bin = |name: &str| Path::new(env!("CARGO_BIN_EXE_learner")).parent().unwrap().join(name);
    let (replay_port, keypoint_port, learner_port) = (free_port(), free_port(), free_port());
    let common = |cmd: &mut Command| {
        cmd.current_dir(workspace())
            .args(["--config", "config/cluster-toy.toml"])
            .args(["--set", &format!("run.out_dir=\"{}\"", out.path().display()), "--set", "run.name=solo"])
            .args(["--set", &format!("replay_server.listen=\"127.0.0.1:{replay_port}\"")])
            .args(["--set", &format!("keypoint_server.listen=\"127.0.0.1:{keypoint_port}\"")])
            .args(["--set", &format!("learner_server.listen=\"127.0.0.1:{learner_port}\"")])
            .args(["--set", &format!("cluster.replay=\"http://127.0.0.1:{replay_port}\"")])
            .args(["--set", &format!("cluster.keypoints=\"http://127.0.0.1:{keypoint_port}\"")])
            .args(["--set", &format!("cluster.learner=\"http://127.0.0.1:{learner_port}\"")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    };
    let spawn = |name: &str, extra: &[&str]| {
        let mut cmd = Command::new(bin(name));
        common(&mut cmd);
        cmd.args(extra).spawn().unwrap()
    };
    let mut replay = spawn("replay-server", &[]);
    let mut keypoints = spawn("keypoint-server", &[]);

    // The learner: up, SIGTERM -> checkpoint and exit 0; --resume starts from it.
    let mut learner = spawn("learner", &[]);
    wait_for_port(learner_port, "learner");
    let params = learner_service::RemoteParameters::new(&format!("http://127.0.0.1:{learner_port}"), Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    while params.latest_version().unwrap() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the learner publishes its initial parameters");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(params.latest_version().unwrap(), 1, "version 1 = the initial parameters (0 updates)");
    sigterm(&learner);
    let status = wait_for_exit(&mut learner, Duration::from_secs(60), "learner");
    let output = learner.wait_with_output().unwrap();
    assert!(status.success(), "learner exit {status:?}: {}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("continue with --resume"));
    let run = out.path().join("solo");
    assert!(run.join("checkpoints/latest").exists(), "SIGTERM wrote a learner checkpoint");
    let mut learner = spawn("learner", &["--resume"]);
    wait_for_port(learner_port, "resumed learner");
    sigterm(&learner);
    assert!(wait_for_exit(&mut learner, Duration::from_secs(60), "resumed learner").success());
    let log = String::from_utf8_lossy(&learner.wait_with_output().unwrap().stderr).into_owned();
    assert!(log.contains("learner resumed from"), "{log}");

    // The keypoint and replay servers stop cleanly on SIGTERM.
    for (child, what) in [(&mut keypoints, "keypoint-server"), (&mut replay, "replay-server")] {
        sigterm(child);
        assert!(wait_for_exit(child, Duration::from_secs(30), what).success(), "{what}");
    }

    // An actor with nothing to talk to gives up after cluster.retry_for_s, with one line.
    let started = Instant::now();
    let output = {
        let mut cmd = Command::new(bin("actor"));
        common(&mut cmd);
        cmd.args(["--set", "cluster.retry_for_s=2"]).output().unwrap()
    };
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("actor: ") && last.contains(&format!("127.0.0.1:{keypoint_port}")), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Bad settings: one line, exit 1.
    for (name, set, needle) in [
        ("keypoint-server", "keypoint_server.batching.max_batch_size=0", "max_batch_size"),
        ("learner", "cluster.replay=127.0.0.1:1", "cluster.replay"),
        ("actor", "keypoints.model=permakey", "keypoints.model"),
    ] {
        let mut cmd = Command::new(bin(name));
        common(&mut cmd);
        let output = cmd.args(["--set", set]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name} --set {set}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(needle), "{name}: {stderr}");
    }
}
