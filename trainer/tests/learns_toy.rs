//! End to end on the project's own sprite corridor ([`trainer::toy`]): the embedded trainer —
//! actor, sequence replay, recurrent double-Q learner, evaluation, checkpoints — learns the
//! optimal policy, and a run stopped at a checkpoint and resumed continues exactly.

use agent::{AgentConfig, EncoderKind};
use learner::{LearnerConfig, TargetUpdateRule};
use tch::Device;
use trainer::{
    toy::{OracleKeypoints, ToyConfig, ToyVecEnv},
    EnvFactory, EnvRole, TrainConfig, TrainMode, Trainer, TrainerSettings,
};

fn toy_envs() -> EnvFactory {
    Box::new(|role, seed| {
        let n = match role {
            EnvRole::Train { num_envs } | EnvRole::Eval { num_envs } => num_envs,
        };
        Ok(Box::new(ToyVecEnv::new(&ToyConfig::default(), n, seed)?))
    })
}

fn settings(agent_steps: u64, encoder: EncoderKind) -> TrainerSettings {
    TrainerSettings {
        train: TrainConfig {
            agent_steps,
            num_envs: 4,
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
        agent: AgentConfig { encoder, cnn_channels: 8, ..AgentConfig::default() },
        // Discount 0.9, not the spec's 0.99: in the corridor, waiting a step and then walking to
        // the goal is worth gamma^3 against gamma^2 for walking now, a gap of 0.01 at 0.99 that
        // the function approximation does not resolve (measured: greedy return 0.75 after 1000
        // steps, then the agent learns to stand still, 0.0 at 3000 steps; mean Q 0.92). At 0.9
        // the gap is 0.08 and the greedy policy is optimal from about 1000 steps on.
        learner: LearnerConfig {
            learning_rate: 1e-3,
            discount: 0.9,
            target_update: TargetUpdateRule::Polyak { tau: 0.02 },
            ..LearnerConfig::default()
        },
        ..TrainerSettings::default()
    }
}

#[test]
fn cnn_agent_reaches_the_optimal_return() {
    tch::set_num_threads(2);
    let dir = tempfile::tempdir().unwrap();
    let front = Box::new(OracleKeypoints::new(Device::Cpu));
    let mut trainer = Trainer::new(settings(2500, EncoderKind::Cnn), 1, dir.path(), front, toy_envs(), false).unwrap();
    let started = std::time::Instant::now();
    let scores = trainer.run().unwrap().expect("ran to the budget");
    let e = &scores.final_eval;
    eprintln!(
        "final greedy return {:.3} (min {}, max {}) over {} games; {} updates; periodic {:?}; {:.0} s",
        e.mean,
        e.min,
        e.max,
        e.returns.len(),
        scores.updates,
        trainer.evals().iter().map(|r| r.mean).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
    // Optimal: +1 in 3 steps every game; a random policy scores about 0.
    assert!(e.mean >= 0.95, "greedy return {} below 0.95", e.mean);
    assert!(e.lengths.iter().all(|&l| l <= 4), "games take the short way: {:?}", e.lengths);
    for file in ["metrics.csv", "eval.csv", "episodes.csv", "learning_curve.png", "final_scores.json", "checkpoints/latest"] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    let metrics = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert!(metrics.lines().count() >= 3, "{metrics}");
}

/// The threads mode — actor on its own thread, joined to the learner by a crossbeam channel —
/// learns the corridor as the lockstep mode does, on the same budget.
#[test]
fn threaded_actor_and_learner_reach_the_optimal_return() {
    two_thread_mode_reaches_the_optimal_return(TrainMode::Threads);
}

/// The pipelined mode learns the corridor on the lockstep budget and schedule.
#[test]
fn pipelined_actor_and_learner_reach_the_optimal_return() {
    two_thread_mode_reaches_the_optimal_return(TrainMode::Pipelined);
}

/// A run of `mode` (a second front end for the learner's thread) on the lockstep budget learns
/// the corridor with the lockstep schedule of updates and metrics rows.
fn two_thread_mode_reaches_the_optimal_return(mode: TrainMode) {
    tch::set_num_threads(2);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(2500, EncoderKind::Cnn);
    s.train.mode = mode;
    let mut trainer = Trainer::new(s, 1, dir.path(), Box::new(OracleKeypoints::new(Device::Cpu)), toy_envs(), false).unwrap();
    trainer.set_learner_front(Box::new(OracleKeypoints::new(Device::Cpu)));
    let scores = trainer.run().unwrap().expect("ran to the budget");
    let e = &scores.final_eval;
    eprintln!("{mode:?}: final greedy return {:.3} over {} games; {} updates; timing {:?}", e.mean, e.returns.len(), scores.updates, scores.timing);
    assert_eq!(scores.updates, 1150, "the lockstep schedule: (2500 - 200) / 2 updates");
    assert!(e.mean >= 0.95, "greedy return {} below 0.95", e.mean);
    let steps: Vec<u64> = trainer.metrics().iter().map(|r| r.agent_steps).collect();
    assert_eq!(steps, vec![1000, 2000, 2500], "a metrics row at every 1000 steps and at the end");
}

/// A pipelined run is a function of its seed, whatever the threads' timing: two runs agree, a
/// run stopped at a checkpoint and resumed continues exactly, and it is not the lockstep run
/// (its actor acts with parameters one vector step older).
#[test]
fn pipelined_runs_repeat_and_resume_exactly() {
    tch::set_num_threads(2);
    let mut s = settings(900, EncoderKind::Gnn);
    s.train.learning_starts = 100;
    s.train.checkpoint_every = 400;
    s.train.eval_every = 400;
    s.train.final_eval_episodes = 8;
    s.train.mode = TrainMode::Pipelined;
    let trainer = |s: &TrainerSettings, dir: &std::path::Path, resume: bool| {
        let mut t = Trainer::new(s.clone(), 7, dir, Box::new(OracleKeypoints::new(Device::Cpu)), toy_envs(), resume).unwrap();
        t.set_learner_front(Box::new(OracleKeypoints::new(Device::Cpu)));
        t
    };
    let strip = |rows: &[trainer::MetricsRow]| -> Vec<(u64, u64, u64, String, String)> {
        rows.iter().map(|r| (r.agent_steps, r.updates, r.episodes, format!("{:.9}", r.loss), format!("{:.9}", r.mean_q))).collect()
    };
    let same = |a: &Trainer, b: &Trainer, what: &str| {
        assert_eq!(a.episodes(), b.episodes(), "{what}: episodes");
        assert_eq!(a.evals(), b.evals(), "{what}: evaluations");
        assert_eq!(strip(a.metrics()), strip(b.metrics()), "{what}: metrics");
        for ((na, ta), (nb, tb)) in a.learner().parameters().iter().zip(&b.learner().parameters()) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{what}: parameter {na} differs");
        }
    };
    let (d1, d2, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = trainer(&s, d1.path(), false);
    let final_a = a.run().unwrap().unwrap();
    let mut b = trainer(&s, d2.path(), false);
    let final_b = b.run().unwrap().unwrap();
    same(&a, &b, "two runs");
    assert_eq!(final_a.final_eval_per_seed, final_b.final_eval_per_seed);
    assert_eq!(final_a.updates, 400, "(900 - 100) / 2 updates");

    let mut c = trainer(&s, d3.path(), false);
    c.stop_at = Some(400);
    assert!(c.run().unwrap().is_none(), "stopped early");
    drop(c);
    let mut c = trainer(&s, d3.path(), true);
    assert_eq!(c.agent_steps(), 400);
    let final_c = c.run().unwrap().unwrap();
    same(&a, &c, "resumed");
    assert_eq!(final_a.final_eval_per_seed, final_c.final_eval_per_seed);

    let mut lockstep = s.clone();
    lockstep.train.mode = TrainMode::Lockstep;
    let d4 = tempfile::tempdir().unwrap();
    let mut l = trainer(&lockstep, d4.path(), false);
    l.run().unwrap().unwrap();
    assert_eq!(l.learner().updates(), a.learner().updates());
    let differs = a.learner().parameters().iter().zip(&l.learner().parameters()).any(|((_, ta), (_, tl))| !ta.equal(tl));
    assert!(differs, "the pipelined actor acts with older parameters, so its run is not the lockstep one");
}

#[test]
fn a_resumed_run_continues_exactly() {
    // libtorch's thread count is global to the process and float reductions depend on it: both
    // tests of this file set the same count, so neither changes it under the other's runs.
    tch::set_num_threads(2);
    let budget = 900;
    let mut s = settings(budget, EncoderKind::Gnn);
    s.train.learning_starts = 100;
    s.train.checkpoint_every = 400;
    s.train.eval_every = 400;
    s.train.final_eval_episodes = 8;
    let front = || Box::new(OracleKeypoints::new(Device::Cpu));
    let whole = tempfile::tempdir().unwrap();
    let mut a = Trainer::new(s.clone(), 7, whole.path(), front(), toy_envs(), false).unwrap();
    let final_a = a.run().unwrap().unwrap();

    let split = tempfile::tempdir().unwrap();
    let mut b = Trainer::new(s.clone(), 7, split.path(), front(), toy_envs(), false).unwrap();
    b.stop_at = Some(400);
    assert!(b.run().unwrap().is_none(), "stopped early");
    assert_eq!(b.agent_steps(), 400);
    drop(b);
    assert!(Trainer::new(s.clone(), 7, split.path(), front(), toy_envs(), false).is_err(), "a fresh run refuses a used folder");
    let mut c = Trainer::new(s, 7, split.path(), front(), toy_envs(), true).unwrap();
    assert_eq!(c.agent_steps(), 400);
    let final_c = c.run().unwrap().unwrap();

    assert_eq!(final_a.updates, final_c.updates);
    assert_eq!(a.episodes(), c.episodes());
    assert_eq!(a.evals(), c.evals());
    let strip = |rows: &[trainer::MetricsRow]| -> Vec<(u64, u64, u64, String, String)> {
        rows.iter().map(|r| (r.agent_steps, r.updates, r.episodes, format!("{:.9}", r.loss), format!("{:.9}", r.mean_q))).collect()
    };
    assert_eq!(strip(a.metrics()), strip(c.metrics()));
    let (pa, pc) = (a.learner().parameters(), c.learner().parameters());
    assert_eq!(pa.len(), pc.len());
    for ((na, ta), (nc, tc)) in pa.iter().zip(&pc) {
        assert_eq!(na, nc);
        assert!(ta.equal(tc), "parameter {na} differs after resume");
    }
    assert_eq!(final_a.final_eval_per_seed, final_c.final_eval_per_seed);
}

#[test]
fn evaluations_in_the_background_give_the_foreground_records() {
    tch::set_num_threads(2);
    let mut s = settings(900, EncoderKind::Cnn);
    s.train.learning_starts = 100;
    s.train.eval_every = 300;
    s.train.final_eval_episodes = 8;
    let run = |background: bool, checkpoint_every: u64| {
        let mut s = s.clone();
        s.train.background_eval = background;
        s.train.checkpoint_every = checkpoint_every;
        let dir = tempfile::tempdir().unwrap();
        let mut t = Trainer::new(s, 3, dir.path(), Box::new(OracleKeypoints::new(Device::Cpu)), toy_envs(), false).unwrap();
        t.add_eval_front(Box::new(OracleKeypoints::new(Device::Cpu)));
        let scores = t.run().unwrap().unwrap();
        let csv = std::fs::read_to_string(dir.path().join("eval.csv")).unwrap();
        (t.evals().to_vec(), scores, csv, t.learner().parameters())
    };
    // Without checkpoints the 300 evaluation is joined at the 600 one and that one before the
    // final evaluation; with them each is joined at the checkpoint of its step. (Checkpoints cut
    // episodes, so each setting has its own foreground run.)
    for checkpoint_every in [0, 300] {
        let (evals, scores, csv, params) = run(false, checkpoint_every);
        assert_eq!(evals.iter().map(|e| e.agent_steps).collect::<Vec<_>>(), [300, 600], "evaluations at 300 and 600 (900 is the final one)");
        assert_eq!(scores.timing.evaluation_waiting_s, 0.0);
        let (b_evals, b_scores, b_csv, b_params) = run(true, checkpoint_every);
        assert_eq!(b_evals, evals, "checkpoint_every {checkpoint_every}");
        assert_eq!(b_csv, csv);
        assert_eq!(b_scores.final_eval_per_seed, scores.final_eval_per_seed);
        assert_eq!(b_scores.updates, scores.updates);
        for ((na, ta), (nb, tb)) in params.iter().zip(&b_params) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "parameter {na} differs");
        }
        assert!(b_scores.timing.evaluation_s > 0.0);
        assert!(b_scores.timing.evaluation_waiting_s > 0.0, "the evaluations ran on their thread and were joined");
    }
}

/// [`OracleKeypoints`] that counts the frames it is given, so a test can tell which instance played.
struct Counted {
    inner: OracleKeypoints,
    frames: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl permakey::KeypointModel for Counted {
    fn num_keypoints(&self) -> i64 {
        self.inner.num_keypoints()
    }
    fn image_size(&self) -> i64 {
        self.inner.image_size()
    }
    fn keypoints(&self, frames: &tch::Tensor) -> permakey::KeypointOutput {
        self.frames.fetch_add(frames.size()[0], std::sync::atomic::Ordering::Relaxed);
        self.inner.keypoints(frames)
    }
    fn features(&self, frames: &tch::Tensor) -> tch::Tensor {
        self.inner.features(frames)
    }
    fn gauss_std(&self) -> f64 {
        self.inner.gauss_std()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
}

#[test]
fn final_evaluation_threads_give_the_records_of_one_thread() {
    tch::set_num_threads(2);
    let mut s = settings(400, EncoderKind::Cnn);
    s.train.learning_starts = 100;
    s.train.eval_every = 0;
    s.train.final_eval_episodes = 4;
    s.train.final_eval_seeds = vec![1, 2, 3, 4, 5];
    // (workers, extra front ends): more workers than instances, and more instances than seeds.
    let run = |workers: usize, fronts: usize| {
        let mut s = s.clone();
        s.train.final_eval_workers = workers;
        let dir = tempfile::tempdir().unwrap();
        let mut t = Trainer::new(s, 5, dir.path(), Box::new(OracleKeypoints::new(Device::Cpu)), toy_envs(), false).unwrap();
        let counts: Vec<_> = (0..fronts).map(|_| std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0))).collect();
        for c in &counts {
            t.add_eval_front(Box::new(Counted { inner: OracleKeypoints::new(Device::Cpu), frames: c.clone() }));
        }
        let scores = t.run().unwrap().unwrap();
        (scores, counts.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).collect::<Vec<_>>())
    };
    let (one, _) = run(1, 0);
    let seeds: Vec<u64> = one.final_eval_per_seed.iter().map(|(s, _)| *s).collect();
    assert_eq!(seeds, [1, 2, 3, 4, 5]);
    let returns: Vec<Vec<f32>> = one.final_eval_per_seed.iter().map(|(_, r)| r.returns.clone()).collect();
    assert!(returns.iter().any(|r| r != &returns[0]), "the seeds play different games here, so a mix-up would show: {returns:?}");
    for (workers, fronts, used) in [(1, 2, 0), (3, 2, 2), (3, 4, 2), (8, 6, 4)] {
        let (many, counts) = run(workers, fronts);
        assert_eq!(many.final_eval_per_seed, one.final_eval_per_seed, "{workers} workers, {fronts} extra front ends");
        assert_eq!((many.score, many.updates), (one.score, one.updates));
        let played = counts.iter().filter(|&&c| c > 0).count();
        assert_eq!(played, used, "{workers} workers, {fronts} extra front ends: frames per instance {counts:?}");
    }
    let mut bad = s.clone();
    bad.train.final_eval_workers = 0;
    let err = Trainer::new(bad, 5, tempfile::tempdir().unwrap().path(), Box::new(OracleKeypoints::new(Device::Cpu)), toy_envs(), false).err().expect("0 workers is refused");
    assert!(err.to_string().contains("train.final_eval_workers"), "{err}");
}
