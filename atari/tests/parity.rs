//! Parity with ale-py 0.12.1 (the ALE build the reference's Python stack uses) and with OpenCV's
//! `INTER_AREA` resize (the reference's `WarpFrame`).
//!
//! The Python side is `tests/python/ale_trace.py`, run with the project venv
//! (`$PERMAKEY_VENV/bin/python`, made by `make setup`). A missing venv fails these tests with a
//! message naming `make setup`; they never skip.
//!
//! - frame-by-frame emulation: same ROM, same `random_seed`, same ALE action ids (generated here,
//!   handed over as JSON), sticky actions off and at 0.25; per frame the md5 of the RGB screen,
//!   the reward, `game_over`, `lives` and the RAM must be identical;
//! - the ROMs ALE refuses as single-player games are the same on both sides;
//! - our area resizer agrees with `cv2.resize(..., INTER_AREA)` on recorded frames.

mod common;

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use atari::{preprocess::AreaResizer, Emulator, EmulatorSettings, RomCatalog, SCREEN_HEIGHT, SCREEN_WIDTH};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::json;

/// Emulator frames per run (about 33 s of game time).
const FRAMES_PER_RUN: usize = 2000;
const SCREEN_RGB_LEN: usize = SCREEN_HEIGHT * SCREEN_WIDTH * 3;

/// The venv's Python, or a panic that says how to make it.
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("PERMAKEY_VENV")
        .map(PathBuf::from)
        .or_else(|| option_env!("PERMAKEY_VENV").map(PathBuf::from))
        .unwrap_or_else(|| {
            panic!(
                "PERMAKEY_VENV is not set: run `make setup` (scripts/setup.sh), which creates the Python venv \
                 with ale-py 0.12.1 and OpenCV and points cargo at it through .cargo/config.toml"
            )
        });
    let python = venv.join("bin").join("python");
    assert!(
        python.is_file(),
        "no Python venv at {} (PERMAKEY_VENV): run `make setup` (scripts/setup.sh) to create it",
        venv.display()
    );
    python
}

/// Runs `ale_trace.py` with `args`, feeding it `stdin`; returns its stdout, or panics with its stderr.
fn run_driver(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ale_trace.py");
    let python = venv_python();
    let mut child = Command::new(&python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; run `make setup`", python.display()));
    // the driver reads all of stdin before it writes anything, so writing first cannot deadlock
    child.stdin.take().expect("piped stdin").write_all(stdin).expect("write the driver's request");
    let output = child.wait_with_output().expect("wait for the Python driver");
    assert!(
        output.status.success(),
        "{} {} {} failed ({}); if ale_py or cv2 is missing, run `make setup`:\n{}",
        python.display(),
        script.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// One emulator run both sides play.
struct Run {
    name: String,
    game: &'static str,
    seed: i32,
    repeat_action_probability: f32,
    /// ALE action ids, one per frame.
    actions: Vec<i32>,
}

/// What one side observed, frame by frame (the layout `ale_trace.py trace` writes).
#[derive(Debug, Deserialize)]
struct Trace {
    name: String,
    screen_md5: Vec<String>,
    reward: Vec<i64>,
    game_over: Vec<bool>,
    lives: Vec<i64>,
    ram: Vec<String>,
}

#[derive(Deserialize)]
struct TraceResponse {
    runs: Vec<Trace>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parity_runs(roms: &RomCatalog) -> Vec<Run> {
    let plan: [(&'static str, f32); 6] = [
        ("MsPacman", 0.0),
        ("Seaquest", 0.0),
        ("Pong", 0.0),
        ("Breakout", 0.0),
        ("MsPacman", 0.25),
        ("Breakout", 0.25),
    ];
    plan.iter()
        .enumerate()
        .map(|(i, &(game, repeat_action_probability))| {
            let emulator = Emulator::new(&roms.resolve(game).unwrap(), EmulatorSettings::default()).unwrap();
            let minimal = emulator.minimal_actions();
            // Actions change every 8 frames, so paddles and players actually travel somewhere.
            let choices = common::actions(100 + i as u64, FRAMES_PER_RUN.div_ceil(8), minimal.len());
            let actions = (0..FRAMES_PER_RUN).map(|frame| minimal[choices[frame / 8]]).collect();
            Run {
                name: format!("{game} sticky={repeat_action_probability}"),
                game,
                seed: 4242 + 17 * i as i32,
                repeat_action_probability,
                actions,
            }
        })
        .collect()
}

/// Plays `run` on our emulator, recording what `ale_trace.py` records.
fn rust_trace(roms: &RomCatalog, run: &Run) -> Trace {
    let rom = roms.resolve(run.game).unwrap();
    let settings = EmulatorSettings { seed: run.seed, repeat_action_probability: run.repeat_action_probability };
    let mut emulator = Emulator::new(&rom, settings).unwrap();
    let mut reference = vec![0u8; SCREEN_RGB_LEN];
    let mut palette_path = vec![0u8; SCREEN_RGB_LEN];
    let mut indices = vec![0u8; SCREEN_HEIGHT * SCREEN_WIDTH];
    let mut trace = Trace {
        name: run.name.clone(),
        screen_md5: Vec::new(),
        reward: Vec::new(),
        game_over: Vec::new(),
        lives: Vec::new(),
        ram: Vec::new(),
    };
    for (frame, &action) in run.actions.iter().enumerate() {
        let reward = emulator.act(action);
        emulator.screen_rgb_reference(&mut reference).unwrap();
        emulator.screen_rgb(&mut indices, &mut palette_path).unwrap();
        assert!(palette_path == reference, "{}: frame {frame}: screen_rgb differs from screen_rgb_reference", run.name);
        trace.screen_md5.push(format!("{:x}", Md5::digest(&reference)));
        trace.reward.push(reward as i64);
        let over = emulator.game_over();
        trace.game_over.push(over);
        trace.lives.push(emulator.lives() as i64);
        trace.ram.push(hex(&emulator.ram()));
        if over {
            emulator.reset_game();
        }
    }
    trace
}

/// The first frame where a field differs, described.
fn first_difference<T: PartialEq + std::fmt::Debug>(field: &str, ours: &[T], ale_py: &[T]) -> Option<String> {
    if ours.len() != ale_py.len() {
        return Some(format!("{field}: {} frames here, {} from ale-py", ours.len(), ale_py.len()));
    }
    let frame = ours.iter().zip(ale_py).position(|(a, b)| a != b)?;
    Some(format!("{field} differs first at frame {frame}: ours {:?}, ale-py {:?}", ours[frame], ale_py[frame]))
}

#[test]
fn emulator_matches_ale_py_frame_by_frame() {
    let roms = common::roms();
    let runs = parity_runs(&roms);
    let request = json!({
        "runs": runs.iter().map(|run| json!({
            "name": run.name,
            "rom": roms.resolve(run.game).unwrap().path,
            "seed": run.seed,
            "repeat_action_probability": run.repeat_action_probability,
            "actions": run.actions,
        })).collect::<Vec<_>>(),
    });
    let stdout = run_driver(&["trace"], request.to_string().as_bytes());
    let response: TraceResponse = serde_json::from_slice(&stdout).expect("ale_trace.py trace writes JSON");
    assert_eq!(response.runs.len(), runs.len());
    let mut failures = Vec::new();
    let mut resets = 0;
    let mut rewarded_frames = 0;
    for (run, theirs) in runs.iter().zip(&response.runs) {
        assert_eq!(theirs.name, run.name);
        let ours = rust_trace(&roms, run);
        let differences = [
            first_difference("screen md5", &ours.screen_md5, &theirs.screen_md5),
            first_difference("reward", &ours.reward, &theirs.reward),
            first_difference("game_over", &ours.game_over, &theirs.game_over),
            first_difference("lives", &ours.lives, &theirs.lives),
            first_difference("ram", &ours.ram, &theirs.ram),
        ];
        failures.extend(differences.into_iter().flatten().map(|d| format!("{}: {d}", run.name)));
        let distinct_screens = ours.screen_md5.iter().collect::<BTreeSet<_>>().len();
        let run_resets = ours.game_over.iter().filter(|&&over| over).count();
        let run_rewarded = ours.reward.iter().filter(|&&r| r != 0).count();
        println!(
            "{}: {} frames, {distinct_screens} distinct screens, {run_rewarded} rewarded frames, {run_resets} game overs",
            run.name,
            ours.screen_md5.len()
        );
        assert!(distinct_screens > 50, "{}: the screen barely changes ({distinct_screens} distinct)", run.name);
        resets += run_resets;
        rewarded_frames += run_rewarded;
    }
    assert!(failures.is_empty(), "emulation differs from ale-py 0.12.1:\n{}", failures.join("\n"));
    assert!(rewarded_frames > 0, "no run scored: the traces do not exercise rewards");
    assert!(resets > 0, "no run reached game over: the traces do not exercise reset_game");
}

#[test]
fn ale_py_refuses_the_same_roms_as_our_emulator() {
    let roms = common::roms();
    let dir = roms.dir().to_str().expect("ROM folder path is UTF-8").to_owned();
    let stdout = run_driver(&["unsupported", &dir], b"");
    #[derive(Deserialize)]
    struct Unsupported {
        unsupported: BTreeSet<String>,
    }
    let ale_py: Unsupported = serde_json::from_slice(&stdout).expect("ale_trace.py unsupported writes JSON");
    let ours: BTreeSet<String> = roms
        .game_ids()
        .filter(|id| {
            let rom = roms.resolve(id).unwrap();
            match Emulator::new(&rom, EmulatorSettings::default()) {
                Ok(_) => false,
                Err(e) => {
                    assert!(e.to_string().contains("does not support"), "{id}: unexpected error {e}");
                    true
                }
            }
        })
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> =
        ["combat", "joust", "maze_craze", "warlords"].into_iter().map(str::to_owned).collect();
    assert_eq!(ale_py.unsupported, expected, "ROMs ale-py's ALEInterface.isSupportedROM refuses");
    assert_eq!(ours, expected, "ROMs our Emulator::new refuses");
}

/// Raw RGB frames from a few recorded episodes: every 10th of 600 frames per game.
fn recorded_frames(roms: &RomCatalog) -> Vec<u8> {
    let mut frames = Vec::new();
    let mut screen = vec![0u8; SCREEN_RGB_LEN];
    for (i, game) in ["MsPacman", "Seaquest", "Pong", "Breakout"].into_iter().enumerate() {
        let mut emulator = Emulator::new(&roms.resolve(game).unwrap(), EmulatorSettings::default()).unwrap();
        let minimal = emulator.minimal_actions().to_vec();
        for (frame, choice) in common::actions(7 + i as u64, 600, minimal.len()).into_iter().enumerate() {
            emulator.act(minimal[choice]);
            if emulator.game_over() {
                emulator.reset_game();
            }
            if frame % 10 == 9 {
                emulator.screen_rgb_reference(&mut screen).unwrap();
                frames.extend_from_slice(&screen);
            }
        }
    }
    frames
}

#[test]
fn area_resize_matches_opencv_inter_area() {
    let roms = common::roms();
    let frames = recorded_frames(&roms);
    let count = frames.len() / SCREEN_RGB_LEN;
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("frames.u8"), dir.path().join("resized.u8"));
    std::fs::write(&input, &frames).unwrap();
    let stdout = run_driver(&["resize", input.to_str().unwrap(), output.to_str().unwrap()], b"");
    let opencv = std::fs::read(&output).unwrap();
    let out_len = 84 * 84 * 3;
    assert_eq!(opencv.len(), count * out_len, "cv2 resized every frame ({})", String::from_utf8_lossy(&stdout));

    let mut resizer = AreaResizer::new(SCREEN_HEIGHT, SCREEN_WIDTH, 84, 84, 3);
    let mut ours = vec![0u8; out_len];
    let (mut max_difference, mut exact, mut frames_exact) = (0u8, 0usize, 0usize);
    for (frame, theirs) in frames.chunks_exact(SCREEN_RGB_LEN).zip(opencv.chunks_exact(out_len)) {
        resizer.resize(frame, &mut ours);
        let mut frame_exact = true;
        for (&a, &b) in ours.iter().zip(theirs) {
            max_difference = max_difference.max(a.abs_diff(b));
            if a == b {
                exact += 1;
            } else {
                frame_exact = false;
            }
        }
        frames_exact += frame_exact as usize;
    }
    let exact_fraction = exact as f64 / (count * out_len) as f64;
    println!(
        "area resize vs cv2 INTER_AREA ({}): {count} frames, max |difference| {max_difference}, \
         exact bytes {exact_fraction:.6}, exact frames {frames_exact}/{count}",
        String::from_utf8_lossy(&stdout).trim()
    );
    // `AreaResizer` forms the same f32 sums in the same order as OpenCV and rounds them half to
    // even like cvRound, so every byte matches (measured: 240 of 240 frames whole).
    assert_eq!(max_difference, 0, "a resized byte differs from OpenCV by {max_difference}");
    assert_eq!(exact, count * out_len, "only {exact_fraction:.6} of the bytes match OpenCV exactly");
    assert_eq!(frames_exact, count);
}
