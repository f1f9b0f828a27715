//! Fault tests of the distributed mode (issue 10, item 1): replay-server, keypoint-server, learner
//! and 2 actors as separate processes on loopback (`config/cluster-toy.toml`, a short budget), and
//! each component killed with SIGKILL mid-run and restarted, one after the other, in one run:
//!
//! 1. **actor 1**: the other processes go on (the replay keeps growing from actor 0), and the
//!    restarted actor 1 (same `--id`) rejoins and finishes games;
//! 2. **keypoint-server**: both actors back off while it is gone and resume once it is back; no
//!    actor exits;
//! 3. **replay-server** (snapshots every second), killed right after an insert: the restart
//!    restores its last snapshot; the sequences lost (size before the kill - size restored) are at
//!    most what was inserted in one snapshot interval (plus a margin for the time a snapshot
//!    takes);
//! 4. **learner** (`--resume-or-start`, checkpoints every 200 agent steps): the restart resumes
//!    from the last checkpoint (update count = the checkpoint's, at most the version published
//!    before the kill) and the run still finishes with the embedded schedule's update count; the
//!    parameter versions every actor loaded never go down (actors log each load at debug level).
//!
//! The measured figures (sequences lost, recovery times) are printed with `eprintln` (run with
//! `--nocapture`); `RELIABILITY.md` has them.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use replay_service::RemoteReplay;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_learner")).parent().unwrap().join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Agent steps of the run, and what the embedded schedule makes of them. The four faults take
/// about 10 s on a quiet machine, and the actors must still be running when the learner is killed
/// (so that they ride through its restart): at 1000 steps they once had spent the budget by then.
const AGENT_STEPS: u64 = 2000;
const LEARNING_STARTS: u64 = 200;
const TRAIN_EVERY: u64 = 4;
/// Seconds between the replay's periodic snapshots.
const SNAPSHOT_EVERY_S: u64 = 1;
/// The whole test gives up (with every process killed) after this long.
const LIMIT: Duration = Duration::from_secs(420);

/// The processes of one cluster, each logging to `<dir>/logs/<name>.log` (a restart gets a new
/// log: `<name>.2.log`).
struct Cluster {
    dir: PathBuf,
    ports: [u16; 3],
    children: Vec<(String, Child)>,
    started: Instant,
}

impl Cluster {
    fn args(&self) -> Vec<String> {
        let [replay, keypoints, learner] = self.ports;
        let mut args: Vec<String> = vec!["--config".into(), "config/cluster-toy.toml".into()];
        for set in [
            format!("run.out_dir=\"{}\"", self.dir.display()),
            "run.name=\"faults\"".into(),
            format!("replay_server.listen=\"127.0.0.1:{replay}\""),
            format!("replay_server.snapshot_path=\"{}\"", self.dir.join("replay.snapshot").display()),
            format!("replay_server.snapshot_every_s={SNAPSHOT_EVERY_S}"),
            format!("keypoint_server.listen=\"127.0.0.1:{keypoints}\""),
            format!("learner_server.listen=\"127.0.0.1:{learner}\""),
            format!("cluster.replay=\"http://127.0.0.1:{replay}\""),
            format!("cluster.keypoints=\"http://127.0.0.1:{keypoints}\""),
            format!("cluster.learner=\"http://127.0.0.1:{learner}\""),
            "cluster.retry_for_s=120".into(),
            format!("train.agent_steps={AGENT_STEPS}"),
            format!("train.learning_starts={LEARNING_STARTS}"),
            format!("train.train_every={TRAIN_EVERY}"),
            "train.checkpoint_every=200".into(),
            "train.eval_every=0".into(),
            "train.final_eval_episodes=8".into(),
            // Small batches: the test is about recovery, not learning, and 2 busy cores.
            "learner.batch_size=4".into(),
        ] {
            args.push("--set".into());
            args.push(set);
        }
        args
    }

    /// Starts `exe` as `name` (extra arguments after the common ones).
    fn spawn(&mut self, name: &str, exe: &str, extra: &[&str]) {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let mut path = logs.join(format!("{name}.log"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = logs.join(format!("{name}.{n}.log"));
        }
        let log = File::create(&path).unwrap();
        let child = Command::new(bin(exe))
            .current_dir(workspace())
            .args(self.args())
            .args(extra)
            // Actors log every parameter load (trainer::actor, debug) for the version check.
            .env("RUST_LOG", "info,trainer::actor=debug")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.children.retain(|(n, _)| n != name);
        self.children.push((name.to_owned(), child));
    }

    fn child(&mut self, name: &str) -> &mut Child {
        &mut self.children.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no process {name}")).1
    }

    fn sigkill(&mut self, name: &str) {
        let child = self.child(name);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Panics (naming `name`) when the process has exited.
    fn assert_running(&mut self, name: &str) {
        if let Some(status) = self.child(name).try_wait().unwrap() {
            panic!("{name} exited ({status}) during the fault tests:\n{}", tail(&self.log(name)));
        }
    }

    /// The text of `name`'s latest log (or `name.N` for an earlier or later one).
    fn log(&self, name: &str) -> String {
        let logs = self.dir.join("logs");
        let mut latest = String::new();
        let mut n = 1;
        loop {
            let file = if n == 1 { format!("{name}.log") } else { format!("{name}.{n}.log") };
            match std::fs::read_to_string(logs.join(file)) {
                Ok(text) => latest = text,
                Err(_) => return latest,
            }
            n += 1;
        }
    }

    /// Every log of `name` (first start, then restarts), concatenated.
    fn all_logs(&self, name: &str) -> String {
        let logs = self.dir.join("logs");
        let mut all = String::new();
        for n in 1.. {
            let file = if n == 1 { format!("{name}.log") } else { format!("{name}.{n}.log") };
            match std::fs::read_to_string(logs.join(file)) {
                Ok(text) => all.push_str(&text),
                Err(_) => break,
            }
        }
        all
    }

    /// Waits until `ready` holds, polling every 50 ms; panics with `what` after `limit` or when
    /// the whole test runs out of time.
    fn wait_until(&mut self, limit: Duration, what: &str, mut ready: impl FnMut(&mut Self) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            if ready(self) {
                return started.elapsed();
            }
            if started.elapsed() > limit || self.started.elapsed() > LIMIT {
                panic!("{what}: not within {limit:?}\nlearner log:\n{}\nactor-0 log:\n{}\nactor-1 log:\n{}", tail(&self.log("learner")), tail(&self.log("actor-0")), tail(&self.log("actor-1")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// The number after `key=` on the last line of `text` containing `needle`.
fn field(text: &str, needle: &str, key: &str) -> Option<u64> {
    let line = text.lines().rev().find(|l| l.contains(needle))?;
    let rest = &line[line.find(&format!("{key}="))? + key.len() + 1..];
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// The replay's size from one short stats call (None while it is down).
fn replay_size(replay: &RemoteReplay) -> Option<u64> {
    replay.stats_once().ok().map(|s| s.size)
}

#[test]
fn killed_components_recover_and_the_run_completes() {
    let out = tempfile::tempdir().unwrap();
    let mut c = Cluster { dir: out.path().to_owned(), ports: [free_port(), free_port(), free_port()], children: Vec::new(), started: Instant::now() };
    c.spawn("replay", "replay-server", &[]);
    c.spawn("keypoints", "keypoint-server", &[]);
    c.spawn("learner", "learner", &["--resume-or-start"]);
    c.spawn("actor-0", "actor", &["--id", "0"]);
    c.spawn("actor-1", "actor", &["--id", "1"]);
    let replay = RemoteReplay::connect(&format!("http://127.0.0.1:{}", c.ports[0]), Duration::from_secs(60)).unwrap().with_retry_for(Duration::from_secs(5));
    let run = out.path().join("faults");
    let finished = |c: &mut Cluster| c.dir.join("faults/final_scores.json").exists();

    // Warm: both actors write and the learner trains.
    c.wait_until(Duration::from_secs(120), "the cluster starts and the replay passes 20 sequences", |_| replay_size(&replay).is_some_and(|s| s >= 20));

    eprintln!("[{:.0} s] warm", c.started.elapsed().as_secs_f64());
    // 1. Actor 1: SIGKILL; the rest goes on; the restarted one rejoins and finishes games.
    c.sigkill("actor-1");
    let size = replay_size(&replay).unwrap();
    c.wait_until(Duration::from_secs(60), "the replay grows from actor 0 while actor 1 is dead", |_| replay_size(&replay).is_some_and(|s| s >= size + 4));
    for name in ["replay", "keypoints", "learner", "actor-0"] {
        c.assert_running(name);
    }
    c.spawn("actor-1", "actor", &["--id", "1"]);
    let first_game = c.wait_until(Duration::from_secs(90), "the restarted actor 1 finishes a game", |c| count(&c.log("actor-1"), "game finished") >= 1);
    assert!(!finished(&mut c), "the budget ran out before the actor fault was over; raise AGENT_STEPS");
    eprintln!("actor kill: restarted actor 1 finished its first game {:.1} s after its restart", first_game.as_secs_f64());

    eprintln!("[{:.0} s] actor fault done", c.started.elapsed().as_secs_f64());
    // 2. Keypoint service: SIGKILL, 3 s down, restart; actors back off and resume, none exits.
    c.sigkill("keypoints");
    std::thread::sleep(Duration::from_secs(3));
    for name in ["actor-0", "actor-1", "learner", "replay"] {
        c.assert_running(name);
    }
    let games_before = [count(&c.log("actor-0"), "game finished"), count(&c.log("actor-1"), "game finished")];
    c.spawn("keypoints", "keypoint-server", &[]);
    let resumed = c.wait_until(Duration::from_secs(90), "both actors finish games after the keypoint service restarts", |c| {
        count(&c.log("actor-0"), "game finished") > games_before[0] && count(&c.log("actor-1"), "game finished") > games_before[1]
    });
    for name in ["actor-0", "actor-1"] {
        c.assert_running(name);
    }
    assert!(!finished(&mut c), "the budget ran out before the keypoint fault was over; raise AGENT_STEPS");
    eprintln!("keypoint-server kill: 3 s down; both actors finished a game {:.1} s after its restart", resumed.as_secs_f64());

    eprintln!("[{:.0} s] keypoint fault done", c.started.elapsed().as_secs_f64());
    // 3. Replay: SIGKILL between snapshots; the restart restores the last one.
    let mut history: Vec<(Instant, u64)> = Vec::new();
    let capacity = replay.stats_once().unwrap().capacity;
    // Watch the size for two snapshot intervals, so the history covers the last one.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(2300 * SNAPSHOT_EVERY_S) {
        if let Some(size) = replay_size(&replay) {
            history.push((Instant::now(), size));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Kill right after an insert, so that (unless a snapshot just ran) the replay holds
    // sequences its last snapshot lacks.
    let last = history.last().unwrap().1;
    let wait = Instant::now();
    loop {
        if let Some(size) = replay_size(&replay) {
            history.push((Instant::now(), size));
            if size > last {
                break;
            }
        }
        assert!(wait.elapsed() < Duration::from_secs(60), "no insert into the replay for 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (killed_at, before) = *history.last().unwrap();
    c.sigkill("replay");
    let killed_at = killed_at.max(Instant::now() - Duration::from_millis(1)); // the kill follows the last reading
    assert!(before < capacity, "no evictions yet ({before} of {capacity}), so the size counts the inserts");
    let snapshots_before = count(&c.log("replay"), "replay snapshot written");
    assert!(snapshots_before >= 2, "periodic snapshots every {SNAPSHOT_EVERY_S} s:\n{}", tail(&c.log("replay")));
    // Inserted in the last snapshot interval, plus 1 s for the snapshot's own copy and write.
    let window = Duration::from_millis(1000 * SNAPSHOT_EVERY_S + 1000);
    let at_window_start = history.iter().rev().find(|(t, _)| killed_at.duration_since(*t) >= window).map_or(0, |&(_, s)| s);
    let bound = before - at_window_start;
    let restart = Instant::now();
    c.spawn("replay", "replay-server", &[]);
    let restored_in = c.wait_until(Duration::from_secs(60), "the restarted replay restores its snapshot", |c| c.log("replay").contains("replay restored from its snapshot"));
    let restored = field(&c.log("replay"), "replay restored from its snapshot", "sequences").expect("restored sequences in the log");
    let lost = before.saturating_sub(restored);
    let back = c.wait_until(Duration::from_secs(90), "actors write to the restored replay again", |_| replay_size(&replay).is_some_and(|s| s > restored));
    eprintln!(
        "replay kill: size {before} at the kill, {restored} restored from the snapshot: {lost} sequences lost (bound: {bound} inserted in the last {:.1} s); restored in {:.1} s, new inserts {:.1} s after the restart",
        window.as_secs_f64(),
        restored_in.as_secs_f64(),
        restart.elapsed().as_secs_f64()
    );
    let _ = back;
    assert!(restored > 0 && restored <= before, "restored {restored}, {before} before the kill");
    assert!(lost <= bound, "{lost} sequences lost, more than the {bound} inserted in one snapshot interval");
    for name in ["actor-0", "actor-1", "learner", "keypoints"] {
        c.assert_running(name);
    }
    assert!(!finished(&mut c), "the budget ran out before the replay fault was over; raise AGENT_STEPS");

    eprintln!("[{:.0} s] replay fault done", c.started.elapsed().as_secs_f64());
    // 4. Learner: SIGKILL after a checkpoint; --resume-or-start continues from it.
    c.wait_until(Duration::from_secs(120), "the learner writes a checkpoint after some updates", |c| field(&c.log("learner"), "learner checkpoint", "updates").is_some_and(|u| u > 0));
    std::thread::sleep(Duration::from_millis(1500)); // some updates past the checkpoint
    let params = learner_service::RemoteParameters::new(&format!("http://127.0.0.1:{}", c.ports[2]), Duration::from_secs(5)).unwrap();
    let published = params.latest_version().unwrap() - 1; // wire version = updates + 1
    for name in ["actor-0", "actor-1"] {
        c.assert_running(name);
    }
    c.sigkill("learner");
    let checkpoint_updates = field(&c.log("learner"), "learner checkpoint", "updates").unwrap();
    assert!(!finished(&mut c), "the budget ran out before the learner fault; raise AGENT_STEPS");
    let restart = Instant::now();
    c.spawn("learner", "learner", &["--resume-or-start"]);
    c.wait_until(Duration::from_secs(60), "the restarted learner resumes", |c| c.log("learner").contains("learner resumed from"));
    let log = c.log("learner");
    let resumed_updates = field(&log, "learner resumed from", "updates").unwrap();
    let resumed_steps = field(&log, "learner resumed from", "agent_steps").unwrap();
    c.wait_until(Duration::from_secs(60), "the restarted learner publishes", |_| params.latest_version().is_ok_and(|v| v > resumed_updates));
    let serving = restart.elapsed();
    eprintln!(
        "learner kill: {published} updates published at the kill, resumed from the checkpoint at {resumed_steps} agent steps with {resumed_updates} updates ({} updates redone); serving again {:.1} s after the restart",
        published - resumed_updates,
        serving.as_secs_f64()
    );
    assert_eq!(resumed_updates, checkpoint_updates, "the learner resumes from its last checkpoint");
    assert!(resumed_updates <= published && resumed_steps > LEARNING_STARTS, "{resumed_updates} updates at {resumed_steps} steps, {published} published");

    eprintln!("[{:.0} s] learner fault done", c.started.elapsed().as_secs_f64());
    // The run completes: the learner finishes the budget with the embedded schedule's updates,
    // both actors stop at the budget, no process failed.
    c.wait_until(LIMIT, "the learner finishes the budget", |c| c.child("learner").try_wait().unwrap().is_some());
    let status = c.child("learner").wait().unwrap();
    assert!(status.success(), "learner: {status}\n{}", tail(&c.log("learner")));
    let scores: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("final_scores.json")).unwrap()).unwrap();
    assert_eq!(scores["updates"].as_u64(), Some((AGENT_STEPS - LEARNING_STARTS) / TRAIN_EVERY), "{scores}");
    for name in ["actor-0", "actor-1"] {
        c.wait_until(Duration::from_secs(60), "the actors stop at the budget", |c| c.child(name).try_wait().unwrap().is_some());
        let exit = c.child(name).wait().unwrap();
        let text = c.log(name);
        assert!(exit.success() && text.contains("budget spent"), "{name}: {exit}\n{}", tail(&text));
        // The parameter versions the actor loaded never go down, across the learner's restart.
        let versions: Vec<u64> = c.all_logs(name).lines().filter(|l| l.contains("parameters loaded")).filter_map(|l| field(l, "parameters loaded", "version")).collect();
        assert!(versions.len() > 10, "{name} logs its parameter loads: {versions:?}");
        for run in c.all_logs(name).split("actor starting").skip(1) {
            let versions: Vec<u64> = run.lines().filter_map(|l| field(l, "parameters loaded", "version")).collect();
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "{name}: parameter versions go back: {versions:?}");
        }
        let ignored = count(&c.all_logs(name), "older parameters ignored");
        eprintln!("{name}: {} parameter loads, last version {:?}, {ignored} older offers ignored", versions.len(), versions.last());
    }
    eprintln!("fault run: {:.0} s in all", c.started.elapsed().as_secs_f64());
    if std::env::var_os("PERMAKEY_KEEP_FAULT_RUN").is_some() {
        eprintln!("run folder kept: {}", out.keep().display());
    }
}
