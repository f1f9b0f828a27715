//! The distributed mode's loops — [`trainer::run_actor`] on two actor threads and
//! [`trainer::DistributedLearner`] — with in-process transports, on the sprite corridor: the
//! learner keeps the embedded schedule over both actors' steps, stops on request with a
//! checkpoint, resumes from it (with restarted actors) and finishes the budget with the run
//! folder's files. The learning claim for the same loops is tested over gRPC, as separate
//! processes, in the cli package (`tests/cluster.rs`: the optimal return on the embedded
//! learning test's budget).

use std::sync::atomic::{AtomicBool, Ordering};

use agent::{AgentConfig, EncoderKind};
use learner::{LearnerConfig, TargetUpdateRule};
use tch::Device;
use trainer::{
    distributed::{actor_seed, Reporter},
    front_end_shape,
    toy::{OracleKeypoints, ToyConfig, ToyVecEnv},
    DistributedLearner, EnvFactory, EnvRole, LocalKeypoints, LocalParameters, LocalReplay, TrainConfig, TrainerSettings,
};

fn toy_envs() -> EnvFactory {
    Box::new(|role, seed| {
        let n = match role {
            EnvRole::Train { num_envs } | EnvRole::Eval { num_envs } => num_envs,
        };
        Ok(Box::new(ToyVecEnv::new(&ToyConfig::default(), n, seed)?))
    })
}

/// `learns_toy.rs`'s settings, with the 4 environments split over 2 actors.
fn settings() -> TrainerSettings {
    TrainerSettings {
        train: TrainConfig {
            agent_steps: 2500,
            num_envs: 2,
            learning_starts: 200,
            train_every: 2,
            epsilon_fraction: 0.6,
            epsilon_end: 0.05,
            eval_every: 1000,
            eval_episodes: 8,
            final_eval_episodes: 40,
            eval_envs: 4,
            checkpoint_every: 0,
            ..TrainConfig::default()
        },
        agent: AgentConfig { encoder: EncoderKind::Cnn, cnn_channels: 8, ..AgentConfig::default() },
        learner: LearnerConfig { learning_rate: 1e-3, discount: 0.9, target_update: TargetUpdateRule::Polyak { tau: 0.02 }, ..LearnerConfig::default() },
        ..TrainerSettings::default()
    }
}

/// Runs two actor threads (process start `start`) against `learner` until the budget is spent
/// or `stop_at` total agent steps, when it sets the stop flag; returns the actors' summaries and
/// what `run` returned.
fn segment(learner: &mut DistributedLearner, s: &TrainerSettings, replay: &LocalReplay, start: u64, stop_at: Option<u64>) -> (Vec<trainer::ActorSummary>, Option<trainer::FinalScores>) {
    let params = LocalParameters::default();
    let stop = AtomicBool::new(false);
    let shape = front_end_shape(&OracleKeypoints::new(Device::Cpu));
    let board = learner.progress();
    std::thread::scope(|scope| {
        let actors: Vec<_> = (0..2u32)
            .map(|id| {
                let (s, mut replay, params, board, stop) = (s.clone(), replay.clone(), params.clone(), board.clone(), &stop);
                scope.spawn(move || {
                    let front = OracleKeypoints::new(Device::Cpu);
                    let mut env = ToyVecEnv::new(&ToyConfig::default(), s.train.num_envs, actor_seed(1, 1, id, start)).unwrap();
                    let mut reporter = Reporter { board, actor_id: id, run_id: 100 * start + u64::from(id), envs_per_actor: s.train.num_envs };
                    trainer::run_actor(&s, id, actor_seed(1, 3, id, start), shape, &mut env, &mut LocalKeypoints(&front), &mut replay, &params, &mut reporter, stop)
                })
            })
            .collect();
        if let Some(limit) = stop_at {
            let (board, stop) = (board.clone(), &stop);
            scope.spawn(move || {
                while board.total_agent_steps() < limit {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                stop.store(true, Ordering::Release);
            });
        }
        let mut priorities = replay.clone();
        let scores = learner.run(Box::new(replay.clone()), &mut priorities, &params, &stop).unwrap();
        stop.store(true, Ordering::Release);
        let summaries = actors.into_iter().map(|a| a.join().unwrap().unwrap()).collect();
        (summaries, scores)
    })
}

#[test]
fn the_learner_keeps_the_schedule_stops_resumes_and_finishes_the_budget() {
    tch::set_num_threads(2);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.train = TrainConfig { agent_steps: 900, eval_every: 400, final_eval_episodes: 8, ..s.train };
    let replay = LocalReplay::new(s.replay.clone(), 4).unwrap();
    let front = || Box::new(OracleKeypoints::new(Device::Cpu));

    // First segment: stopped at about 500 of 900 steps -> a checkpoint, no final scores.
    let mut learner = DistributedLearner::new(s.clone(), 1, dir.path(), front(), toy_envs(), false).unwrap();
    let (first, scores) = segment(&mut learner, &s, &replay, 0, Some(500));
    assert!(scores.is_none(), "a stopped run has no final scores");
    assert!(first.iter().all(|a| !a.finished_budget && a.agent_steps > 100), "{first:?}");
    let steps_first: u64 = first.iter().map(|a| a.agent_steps).sum();
    let updates_first = learner.learner().updates();
    // The learner held the actors to the schedule: at most max_update_lag (4) updates behind
    // what the steps made due, give or take the steps of the vector step in flight.
    let due = s.train.updates_due(steps_first);
    assert!(updates_first + 4 + 2 >= due && updates_first <= due, "{updates_first} updates for {steps_first} steps ({due} due)");
    let games_first = learner.episodes().len();
    assert!(!dir.path().join("final_scores.json").exists());
    drop(learner);

    // Resumed with new actor processes (new run ids): the counts continue from the checkpoint.
    let mut learner = DistributedLearner::new(s.clone(), 1, dir.path(), front(), toy_envs(), true).unwrap();
    assert_eq!(learner.learner().updates(), updates_first, "updates restored");
    assert_eq!(learner.progress().total_agent_steps(), steps_first, "the run's steps restored");
    let (second, scores) = segment(&mut learner, &s, &replay, 1, None);
    let scores = scores.expect("ran to the budget");
    assert!(second.iter().all(|a| a.finished_budget), "{second:?}");
    let steps: u64 = steps_first + second.iter().map(|a| a.agent_steps).sum::<u64>();
    assert!((900..1000).contains(&steps), "actors stop soon after the budget: {steps}");
    // The embedded schedule over the run's total: (900 - 200) / 2 updates.
    assert_eq!((scores.updates, scores.agent_steps), (350, 900));
    let games: usize = first.iter().chain(&second).map(|a| a.games.len()).sum();
    assert_eq!(learner.episodes().len(), games, "every finished game of both segments reached the learner");
    assert!(learner.episodes().len() > games_first);
    let evals: Vec<u64> = learner.evals().iter().map(|e| e.agent_steps).collect();
    assert_eq!(evals.len(), 2, "periodic evaluations at 400 and 800 steps, one per mark across the restart: {evals:?}");
    let rows: Vec<u64> = learner.metrics().iter().map(|r| r.agent_steps).collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]) && rows.last() == Some(&900), "{rows:?}");
    for file in ["metrics.csv", "eval.csv", "episodes.csv", "learning_curve.png", "final_scores.json", "checkpoints/latest"] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    // A fresh run refuses to overwrite the folder.
    let error = DistributedLearner::new(s.clone(), 1, dir.path(), front(), toy_envs(), false).err().unwrap().to_string();
    assert!(error.contains("--resume"), "{error}");
}

/// The learner answers `done` only once a checkpoint on disk says the budget is spent: actors
/// told `done` exit and report no more, so a learner killed after that (the faults test's SIGKILL
/// once hung here) must be able to finish from what it left behind, with no actor running.
#[test]
fn a_learner_killed_after_the_actors_stopped_finishes_from_its_budget_checkpoint() {
    tch::set_num_threads(2);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.train = TrainConfig { agent_steps: 600, eval_every: 0, final_eval_episodes: 4, ..s.train };
    let replay = LocalReplay::new(s.replay.clone(), 4).unwrap();
    let front = || Box::new(OracleKeypoints::new(Device::Cpu));
    let checkpoints = dir.path().join("checkpoints");
    // The largest run total any checkpoint on disk holds (its `progress` counts).
    let total_on_disk = |checkpoints: &std::path::Path| -> u64 {
        let Ok(entries) = std::fs::read_dir(checkpoints) else { return 0 };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("checkpoint.json")).ok())
            .map(|text| {
                let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
                let progress = &meta["config"]["progress"];
                progress["retired_steps"].as_u64().unwrap() + progress["actors"].as_object().unwrap().values().map(|v| v[1].as_u64().unwrap()).sum::<u64>()
            })
            .max()
            .unwrap_or(0)
    };

    let mut learner = DistributedLearner::new(s.clone(), 1, dir.path(), front(), toy_envs(), false).unwrap();
    let board = learner.progress();
    let watcher = {
        let checkpoints = checkpoints.clone();
        std::thread::spawn(move || {
            while !board.is_done() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            total_on_disk(&checkpoints)
        })
    };
    let (actors, scores) = segment(&mut learner, &s, &replay, 0, None);
    assert_eq!(scores.expect("ran to the budget").updates, 200);
    assert!(actors.iter().all(|a| a.finished_budget), "{actors:?}");
    let on_disk_at_done = watcher.join().unwrap();
    assert!(on_disk_at_done >= 600, "when the actors were told done, the checkpoints on disk held {on_disk_at_done} of 600 steps");
    drop(learner);

    // What a SIGKILL right after `done` leaves: the budget checkpoint, and no final scores.
    let budget = std::fs::read_dir(&checkpoints).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).find(|n| n.ends_with("-budget")).expect("a budget checkpoint");
    let killed = tempfile::tempdir().unwrap();
    let copy = killed.path().join("checkpoints").join(&budget);
    std::fs::create_dir_all(&copy).unwrap();
    for file in std::fs::read_dir(checkpoints.join(&budget)).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), copy.join(file.file_name())).unwrap();
    }
    std::fs::write(killed.path().join("checkpoints/latest"), &budget).unwrap();
    let mut resumed = DistributedLearner::new(s.clone(), 1, killed.path(), front(), toy_envs(), true).unwrap();
    assert!(resumed.progress().is_done(), "a learner resumed past the budget answers done at once");
    assert!(resumed.learner().updates() < 200, "the budget checkpoint precedes the last updates ({} done)", resumed.learner().updates());
    // No actor runs; a timer stops the learner (a failure) if it waits for steps that never come.
    let (params, stop) = (LocalParameters::default(), AtomicBool::new(false));
    let scores = std::thread::scope(|scope| {
        let stop = &stop;
        let timer = scope.spawn(move || {
            let started = std::time::Instant::now();
            while started.elapsed() < std::time::Duration::from_secs(120) && !stop.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            stop.store(true, Ordering::Release);
        });
        let mut priorities = replay.clone();
        let scores = resumed.run(Box::new(replay.clone()), &mut priorities, &params, stop).unwrap();
        stop.store(true, Ordering::Release);
        timer.join().unwrap();
        scores
    });
    let scores = scores.expect("the resumed learner finishes the budget without actors (it was stopped after 120 s)");
    assert_eq!((scores.updates, scores.agent_steps), (200, 600), "the updates the budget makes due: (600 - 200) / 2");
    assert!(killed.path().join("final_scores.json").exists());
}
