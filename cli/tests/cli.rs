//! The binary as a user meets it: real jobs and one-line errors.

use std::process::Command;

fn permakey_rl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_permakey-rl")).args(args).env("RUST_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn run_writes_a_complete_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = format!("run.out_dir={}", dir.path().display());
    let (ok, stdout, stderr) = permakey_rl(&[
        "--set", &out_dir, "--set", "run.name=smoke", "--set", "collect.agent_steps=400",
        "--set", "collect.num_envs=2", "--set", "collect.record_steps=20", "--set", "env.game=Breakout", "collect",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"agent_steps\": 400"), "{stdout}");
    let run = dir.path().join("smoke");
    for file in ["config.toml", "episodes.csv", "summary.json", "episode-clean.gif", "episode-noisy.png"] {
        assert!(run.join(file).metadata().map(|m| m.len() > 0).unwrap_or(false), "{file} missing");
    }
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("game = \"breakout\"") || resolved.contains("game = \"Breakout\""), "{resolved}");
}

/// `run` end to end at toy sizes: pre-training, agent training, final evaluation, run folder;
/// then `--resume` with a raised budget continues the same run.
#[test]
fn run_trains_the_agent_and_resume_extends_it() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = format!("run.out_dir={}", dir.path().display());
    let quick = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/quick.toml");
    let common = [
        "--config", quick, "--set", out_dir.as_str(), "--set", "run.name=agent", "--set", "keypoints.pretrain_frames=256",
        "--set", "pretrain.steps=4", "--set", "pretrain.checkpoint_every=4", "--set", "pretrain.progress=false",
        "--set", "env.max_episode_steps=100", "--set", "train.num_envs=4", "--set", "train.learning_starts=80",
        "--set", "train.eval_every=0", "--set", "train.final_eval_episodes=1", "--set", "train.eval_envs=1",
        "--set", "train.checkpoint_every=0", "--set", "learner.batch_size=4", "--set", "agent.cnn_channels=4",
    ];
    let with = |extra: &[&str]| -> Vec<String> { common.iter().chain(extra).map(|s| s.to_string()).collect() };
    let args = with(&["--set", "train.agent_steps=160", "run"]);
    let (ok, stdout, stderr) = permakey_rl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("final evaluation on MsPacman after 160 agent steps (640 frames), 20 updates: score"), "{stdout}");
    let run = dir.path().join("agent");
    for file in ["config.toml", "metrics.csv", "eval.csv", "episodes.csv", "learning_curve.png", "final_scores.json", "checkpoints/latest", "permakey/checkpoints/latest"] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let scores: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("final_scores.json")).unwrap()).unwrap();
    assert_eq!(scores["agent_steps"], 160);
    assert_eq!(scores["keypoint_pretrain_frames"], 256);
    assert_eq!(scores["device"], "Cpu");
    // Provenance: the binary's own commit, the one `--version` shows.
    let commit = scores["commit"].as_str().unwrap_or_default().to_owned();
    assert!(commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())), "commit {commit:?}");
    let (ok, version, _) = permakey_rl(&["--version"]);
    assert!(ok && version.trim().ends_with(&format!("(commit {commit})")), "{version}");
    // The per-phase profile: every phase this run went through took time, parts fit in wholes.
    let timing = &scores["timing"];
    let secs = |key: &str| timing[key].as_f64().unwrap_or_else(|| panic!("timing.{key} missing: {timing}"));
    for key in ["pretrain_collect_s", "pretrain_train_s", "rl_s", "acting_s", "acting_keypoints_s", "learning_s", "learning_features_s", "learning_online_s", "final_evaluation_s"] {
        assert!(secs(key) > 0.0, "timing.{key} = 0: {timing}");
    }
    assert!(secs("acting_keypoints_s") <= secs("acting_s"), "{timing}");
    let phases: f64 = ["learning_batch_s", "learning_features_s", "learning_online_s", "learning_target_s", "learning_backward_s"].iter().map(|k| secs(k)).sum();
    assert!(phases <= secs("learning_s"), "update phases {phases} > learning_s: {timing}");
    assert!(secs("rl_s") <= scores["wall_seconds"].as_f64().unwrap(), "{timing}");

    let args = with(&["--set", "train.agent_steps=240", "run", "--resume"]);
    let (ok, stdout, stderr) = permakey_rl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("after 240 agent steps (960 frames), 40 updates"), "{stdout}");
    let scores: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("final_scores.json")).unwrap()).unwrap();
    assert_eq!(scores["agent_steps"], 240);

    let args = with(&["--set", "run.name=", "run", "--resume"]);
    let (ok, _, stderr) = permakey_rl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && stderr.trim().starts_with("error: --resume needs the run's name"), "{stderr}");
    let args = with(&["--set", "run.name=nothing-here", "run", "--resume"]);
    let (ok, _, stderr) = permakey_rl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && stderr.contains("no run folder") && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn record_writes_gif_and_png_for_given_actions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (ok, stdout, stderr) =
        permakey_rl(&["atari", "record", "--game", "Seaquest", "--noise", "horizontal", "--actions", "1,1,2,3,4,5", "--out", out]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("seaquest-horizontal-seed0.gif"), "{stdout}");
    let gif = std::fs::read(dir.path().join("seaquest-horizontal-seed0.gif")).unwrap();
    assert_eq!(&gif[..6], b"GIF89a");
    let png = std::fs::read(dir.path().join("seaquest-horizontal-seed0.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn user_errors_are_one_clear_line_without_a_backtrace() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "env.game=Zork", "atari", "record"], "unknown game 'Zork'; known ids:"),
        (&["--config", "/no/such/file.toml", "run"], "cannot read config file /no/such/file.toml"),
        (&["--set", "env.frame_skp=3", "run"], "unknown field `frame_skp`"),
        (&["--set", "env.noise=zigzag", "run"], "zigzag"),
        (&["atari", "record", "--actions", "0,99", "--steps", "5"], "action 99 is out of range"),
    ];
    for (args, needle) in cases {
        let (ok, _, stderr) = permakey_rl(args);
        assert!(!ok, "{args:?} should fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    }
    // A bad allocator mode (permakey::malloc) names the variable, in one line, before any work.
    let out = Command::new(env!("CARGO_BIN_EXE_permakey-rl")).args(["doctor"]).env("PERMAKEY_MALLOC", "jemalloc").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.trim() == "error: PERMAKEY_MALLOC='jemalloc' is not a malloc mode: expected keep or system", "{stderr}");
    if !tch_has_cuda() {
        let (ok, _, stderr) = permakey_rl(&["--device", "cuda", "doctor", "--iterations", "1", "--batch", "1"]);
        assert!(!ok);
        assert!(stderr.trim().starts_with("error: --device cuda was asked for"), "{stderr}");
    }
}

fn tch_has_cuda() -> bool {
    tch::Cuda::is_available()
}

#[test]
fn doctor_trains_a_conv_net_on_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("timing.json");
    let (ok, stdout, stderr) =
        permakey_rl(&["--device", "cpu", "doctor", "--iterations", "3", "--batch", "4", "--json", json.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("device: --device cpu -> Cpu"), "{stdout}");
    // The runtime line reports libtorch's own reading of the matmul precision the binary applied.
    assert!(stdout.contains("tf32_matmul=false"), "{stdout}");
    let (ok, stdout, stderr) =
        permakey_rl(&["--device", "cpu", "--set", "matmul_precision=high", "doctor", "--iterations", "3", "--batch", "4"]);
    assert!(ok && stdout.contains("tf32_matmul=true"), "{stdout}{stderr}");
    let timing: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert!(timing["last_loss"].as_f64().unwrap() < timing["first_loss"].as_f64().unwrap(), "{timing}");
}

#[test]
fn keypoint_pipeline_collects_trains_resumes_and_visualises() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).to_str().unwrap().to_owned();
    let small = [
        "--set", "permakey.encoder_filters=[8,16,16,16]", "--set", "permakey.decoder_filters=[16,8,8,8,8]",
        "--set", "permakey.lsp_hidden=[32,16,16]", "--set", "permakey.pnet_filters=[8,8,8,8]",
        "--set", "pretrain.batch_size=4", "--set", "pretrain.checkpoint_every=2", "--set", "pretrain.preview_every=2",
        "--set", "pretrain.progress=false", "--set", "pretrain.log_every=1", "--device", "cpu",
    ];
    let with = |extra: &[&str]| -> Vec<String> { small.iter().chain(extra).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = permakey_rl(&refs);
        assert!(ok, "{args:?}: {stderr}");
        stdout
    };
    let out = run(with(&["--set", "env.game=Seaquest", "keypoints", "collect", "--frames", "1024", "--out", &path("data")]));
    assert!(out.contains("collected 1024 frames of seaquest"), "{out}");
    run(with(&["--set", "pretrain.steps=2", "keypoints", "train", "--data", &path("data"), "--out", &path("run")]));
    run(with(&["--set", "pretrain.steps=4", "keypoints", "train", "--data", &path("data"), "--out", &path("run"), "--resume"]));
    let csv = std::fs::read_to_string(dir.path().join("run/metrics.csv")).unwrap();
    let steps: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(steps, ["1", "2", "3", "4"], "the resumed run continues at step 3:\n{csv}");
    assert!(dir.path().join("run/previews/step-0000004.png").exists());
    let out = run(with(&["keypoints", "viz", "--checkpoint", &path("run/checkpoints"), "--game", "Seaquest", "--steps", "8", "--out", &path("viz")]));
    assert!(out.contains("permakey-seaquest-both-track.gif"), "{out}");
    for f in ["permakey-seaquest-none-grid.png", "permakey-seaquest-both-grid.png", "permakey-seaquest-none-track.gif"] {
        assert!(dir.path().join("viz").join(f).exists(), "{f}");
    }
    // the RAM-grounded metric scores the checkpoint next to the baselines
    let out = run(with(&["eval-keypoints", "--checkpoint", &path("run/checkpoints"), "--game", "Seaquest", "--frames", "30", "--out", &path("eval")]));
    for method in ["| model |", "| random |", "| grid |", "| frame_difference |", "| parked |"] {
        assert!(out.contains(method), "{out}");
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval/seaquest-none.json")).unwrap()).unwrap();
    assert_eq!(json["frames"], 30);
    // the Transporter trains, previews and visualises through the same commands
    let transporter = ["--set", "transporter.encoder_filters=[8,8,8,8]", "--set", "transporter.decoder_filters=[8,8,8,8]"];
    let mut args = with(&transporter);
    args.extend(["--set", "pretrain_transporter.steps=2", "--set", "pretrain_transporter.batch_size=4", "--set", "pretrain_transporter.progress=false", "keypoints", "train", "--model", "transporter", "--data", &path("data"), "--out", &path("tr")].map(String::from));
    run(args);
    assert!(dir.path().join("tr/previews/step-0000002.png").exists());
    let mut args = with(&transporter);
    args.extend(["keypoints", "viz", "--checkpoint", &path("tr/checkpoints"), "--steps", "4", "--out", &path("viz")].map(String::from));
    assert!(run(args).contains("transporter-"), "transporter viz");
    // a corrupted checkpoint is a one-line error
    let tensors = dir.path().join("run/checkpoints/step-0000004/model.safetensors");
    std::fs::write(&tensors, b"garbage").unwrap();
    let args = with(&["keypoints", "viz", "--checkpoint", &path("run/checkpoints"), "--out", &path("viz")]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, stderr) = permakey_rl(&refs);
    assert!(!ok && stderr.trim().lines().count() == 1 && stderr.contains("is corrupted"), "{stderr}");
}
