//! `scripts/results_report.py` (RESULTS.md, issue 11) on a hand-made results tree: mean (std) over
//! seeds, the paper's figure beside it, the K = 7 row taken from the main table, the device, the
//! timing shares and the deviations from config/example.toml.

use std::{fs, path::Path, process::Command};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One run's files as `scripts/results-runs.sh` copies them.
#[allow(clippy::too_many_arguments)]
fn write_run(root: &Path, experiment: &str, cell: &str, game: &str, variant: &str, k: u32, seed: u32, score: f64, device: &str, config: &str) {
    let dir = root.join(experiment).join(cell).join(format!("seed{seed}"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("run.json"),
        format!(
            r#"{{"experiment": "{experiment}", "cell": "{cell}", "game": "{game}", "variant": "{variant}", "noise": "none",
               "num_keypoints": {k}, "seed": {seed}, "profile": "config/results-cpu.toml", "command": "permakey-rl run",
               "run_wall_s": 100, "keypoint_eval_wall_s": 5, "host_cpus": 2, "gpu": "", "commit": "abc1234"}}"#
        ),
    )
    .unwrap();
    fs::write(
        dir.join("final_scores.json"),
        format!(
            r#"{{"agent_steps": 4000, "frames": 16000, "updates": 750, "episodes": 10, "score": {score}, "score_std": 1.0,
               "best_periodic_eval_mean": 50.0, "keypoint_pretrain_frames": 2048, "wall_seconds": 90.0, "device": "{device}",
               "timing": {{"pretrain_collect_s": 2.0, "pretrain_train_s": 8.0, "rl_s": 80.0, "acting_s": 30.0,
                          "acting_keypoints_s": 20.0, "actor_waiting_s": 40.0, "learning_s": 60.0, "learner_idle_s": 5.0,
                          "evaluation_s": 5.0, "checkpoint_s": 0.0, "final_evaluation_s": 10.0}}}}"#
        ),
    )
    .unwrap();
    fs::write(dir.join("config.toml"), config).unwrap();
    fs::write(dir.join("eval.csv"), format!("agent_steps,updates,mean,std,min,max,episodes\n1500,125,{:.2},0,0,0,3\n", score / 2.0)).unwrap();
    fs::write(dir.join("metrics.csv"), "agent_steps,updates,episodes,train_return\n1000,0,0,NaN\n").unwrap();
    // The keypoint metric: the model's recall@8 is 0.1 x seed + 0.4, the baselines' fixed.
    let report = |name: &str, p8: f64, r8: f64, jitter: f64| {
        format!(
            r#"["{name}", {{"scores": [{{"radius": 4.0, "precision": 0.0, "recall": 0.0}}, {{"radius": 8.0, "precision": {p8}, "recall": {r8}}}], "temporal_jitter": {jitter}}}]"#
        )
    };
    let reports = [report("model", 0.6, 0.1 * f64::from(seed) + 0.4, 0.5), report("random", 0.1, 0.2, 20.0), report("grid", 0.15, 0.3, 0.0), report("frame_difference", 0.5, 0.8, 15.0)];
    fs::write(dir.join("keypoints-none.json"), format!(r#"{{"game": "{game}", "reports": [{}]}}"#, reports.join(", "))).unwrap();
}

/// RESULTS.md as `scripts/results_report.py` writes it for the runs under `root`.
fn report_of(root: &Path) -> String {
    let out = Command::new("python3").arg(Path::new(REPO).join("scripts/results_report.py")).arg(root).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The report's first line starting with `start`.
fn line_of(report: &str, start: &str) -> String {
    report.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line starting {start:?} in\n{report}")).to_owned()
}

#[test]
fn report_averages_seeds_next_to_the_paper_and_lists_deviations() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    let changed = "[train]\nagent_steps = 4000\n[learner]\nbatch_size = 8\n";
    // Two seeds of MsPacman PKey-CNN: 100 and 200 -> mean 150, population std 50.
    write_run(&root, "main", "MsPacman-pkey-cnn", "MsPacman", "pkey-cnn", 7, 0, 100.0, "Cpu", changed);
    write_run(&root, "main", "MsPacman-pkey-cnn", "MsPacman", "pkey-cnn", 7, 1, 200.0, "Cpu", changed);
    write_run(&root, "keypoints", "MsPacman-pkey-cnn-k5", "MsPacman", "pkey-cnn", 5, 0, 80.0, "Cpu", changed);
    // The random policy on MsPacman, two seeds: 240 and 260 -> 250 (10).
    for (seed, value) in [(0, 240.0), (1, 260.0)] {
        let dir = root.join(format!("random/MsPacman/seed{seed}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("run.json"), format!(r#"{{"experiment": "random", "cell": "MsPacman", "game": "MsPacman", "noise": "none", "seed": {seed}}}"#)).unwrap();
        fs::write(dir.join("summary.json"), format!(r#"{{"game": "ms_pacman", "mean_game_return": {value}}}"#)).unwrap();
    }
    let report = report_of(&root);
    let line = |start: &str| line_of(&report, start);
    // Main table: ours beside the poster's 1038.5 (417.1); empty cells are dashes.
    let mspacman = line("| MsPacman |");
    assert!(mspacman.starts_with("| MsPacman | 250.0 (10.0) [2] | 150.0 (50.0) [2] | 1038.5 (417.1) |"), "{mspacman}");
    assert!(line("| Seaquest |").starts_with("| Seaquest | — | — | 520.0 (159.9) |"), "{report}");
    // The ablation: its own K = 5 run, and K = 7 from the main table.
    assert!(line("| 5 |").contains("| 80.0 [1] | 1004.3 (319.15) |"), "{report}");
    assert!(line("| 7 |").contains("| 150.0 (50.0) [2] |"), "{report}");
    // MsPacman PKey-CNN (150) is below its random floor (250); the K = 5 cell (80) too.
    assert!(report.contains("**Against the random policy:** 0 of 2 run cells score above it on their environments."), "{report}");
    // Provenance, the profile, the deviations (read against config/example.toml, not typed in).
    assert!(report.contains("CPU (2 cores)"), "{report}");
    assert!(report.contains("25x fewer agent steps than Atari-100k"), "{report}");
    // learner updates: 3 runs x 60 s of 3 x (10 + 90) s of wall time.
    assert!(line("| learner updates |").contains("| 180 | 60% |"), "{report}");
    assert!(line("| `learner.batch_size` |").contains("`16` | `8` |"), "{report}");
    assert!(line("| `train.agent_steps` |").contains("`0` (the preset's budget: 100000 for atari100k) | `4000` |"), "{report}");
    assert!(!report.contains("`run.seed`"), "identity keys are not deviations: {report}");
    // Keypoint scores of the checkpoints used: seeds 0 and 1 give recall@8 0.4 and 0.5.
    assert!(line("| main/MsPacman-pkey-cnn |").contains("| 2 | 0.600 | 0.450 | 0.50 | 0.200 | 0.300 | 0.800 |"), "{report}");
    let plot = fs::read_to_string(dir.path().join("plots/main-MsPacman.svg")).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("PKey-CNN") && plot.contains("<polyline"), "{plot}");
    assert!(plot.contains("stroke-dasharray") && plot.contains("random policy"), "the random floor is drawn: {plot}");
}

#[test]
fn report_of_an_empty_folder_says_how_to_fill_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3").arg(Path::new(REPO).join("scripts/results_report.py")).arg(dir.path().join("runs")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No runs yet: run `make results`."));
}

#[test]
fn report_compares_runs_with_the_feature_cache_against_the_same_cells_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    let config = "[train]\nagent_steps = 4000\n";
    write_run(&root, "main", "Seaquest-pkey-cnn", "Seaquest", "pkey-cnn", 7, 0, 100.0, "Cpu", config);
    write_run(&root, "main", "Seaquest-pkey-cnn", "Seaquest", "pkey-cnn", 7, 1, 120.0, "Cpu", config);
    // Seed 0 ran before the cache (no counts), seed 1 with it: 900 of its 1000 frames cached.
    let edit = |seed: u32, with: &str| {
        let path = root.join(format!("main/Seaquest-pkey-cnn/seed{seed}/final_scores.json"));
        let text = fs::read_to_string(&path).unwrap().replace(r#""learning_s": 60.0,"#, with);
        fs::write(path, text).unwrap();
    };
    edit(0, r#""learning_s": 60.0, "learning_features_s": 35.0,"#);
    edit(1, r#""learning_s": 30.0, "learning_features_s": 5.0, "learning_features_cached": 900, "learning_features_computed": 100,"#);
    let report = report_of(&root);
    assert!(report.contains("1 runs had the learner's feature cache (`learner.feature_cache_mib`): of their 1000 sampled"), "{report}");
    assert!(report.contains("valid frames, 900 (90.0%) took their front-end features from the cache and 100 were computed."), "{report}");
    let line = |start: &str| line_of(&report, start);
    // 750 updates per run: 35 / 750 = 0.047 s against 5 / 750 = 0.007 s; 60 / 750 against 30 / 750.
    assert_eq!(line("| features of the sampled frames"), "| features of the sampled frames, s per update | 0.047 | 0.007 | 7.00x |");
    assert_eq!(line("| whole learner update"), "| whole learner update, s per update | 0.080 | 0.040 | 2.00x |");
    assert_eq!(line("| runs |"), "| runs | 1 | 1 |  |");
    // Split by encoder: the CNN cell has a row, and no GNN row is printed without GNN runs.
    assert_eq!(line("| &nbsp;&nbsp;of which the CNN"), "| &nbsp;&nbsp;of which the CNN-encoder cells | 0.080 | 0.040 | 2.00x |");
    assert!(!report.contains("GNN-encoder cells"), "{report}");
}
