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
        "--set", "collect.num_envs=2", "--set", "collect.record_steps=20", "--set", "env.game=Breakout", "run",
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
    let timing: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert!(timing["last_loss"].as_f64().unwrap() < timing["first_loss"].as_f64().unwrap(), "{timing}");
}
