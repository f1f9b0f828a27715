//! [`Trainer`]: the embedded training loop, its run folder, checkpoints and resume.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use actor::SequenceWriterConfig;
use agent::AgentConfig;
use learner::{Learner, LearnerConfig, UpdatePhases};
use permakey::model::KeypointModel;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use replay::{ReplayConfig, SamplingMode, SequenceReplay};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::{
    actor::{evaluate, front_end_shape, EpisodeRecord, VecActor},
    config::{TrainConfig, TrainMode},
    env::VecEnv,
    plot,
    transport::{KeypointSource, LocalKeypoints, LocalParameters, LocalReplay, ParameterSink, ReplayClient, ReplayWriter},
};

/// Which environments a factory is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvRole {
    /// `n` training environments (life loss ends an episode where the game has lives).
    Train { num_envs: usize },
    /// `n` evaluation environments (whole games).
    Eval { num_envs: usize },
}

/// Builds environments for a role and a seed.
pub type EnvFactory = Box<dyn FnMut(EnvRole, u64) -> anyhow::Result<Box<dyn VecEnv>>>;

/// Everything the trainer is set up with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerSettings {
    pub train: TrainConfig,
    pub agent: AgentConfig,
    pub learner: LearnerConfig,
    pub replay: ReplayConfig,
    pub sequence: SequenceWriterConfig,
}

impl TrainerSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.train.validate()?;
        self.learner.validate()?;
        self.replay.validate()?;
        self.sequence.validate()?;
        anyhow::ensure!(
            self.sequence.sequence_length > self.learner.n_step,
            "sequence.sequence_length ({}) must exceed learner.n_step ({}) for any position to have a target",
            self.sequence.sequence_length,
            self.learner.n_step
        );
        Ok(())
    }
}

/// One periodic or final evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub agent_steps: u64,
    pub updates: u64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub returns: Vec<f32>,
    pub lengths: Vec<u32>,
}

impl EvalRecord {
    pub(crate) fn new(agent_steps: u64, updates: u64, results: &[(f32, u32)]) -> Self {
        let returns: Vec<f32> = results.iter().map(|r| r.0).collect();
        let n = returns.len().max(1) as f64;
        let mean = returns.iter().map(|&r| f64::from(r)).sum::<f64>() / n;
        let std = (returns.iter().map(|&r| (f64::from(r) - mean).powi(2)).sum::<f64>() / n).sqrt();
        let min = returns.iter().map(|&r| f64::from(r)).fold(f64::INFINITY, f64::min);
        let max = returns.iter().map(|&r| f64::from(r)).fold(f64::NEG_INFINITY, f64::max);
        Self { agent_steps, updates, mean, std, min, max, returns, lengths: results.iter().map(|r| r.1).collect() }
    }
}

/// NaN ("nothing measured yet") as JSON `null` and back: JSON has no NaN, and a checkpoint's
/// metrics rows must read back as they were written.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() { serializer.serialize_none() } else { serializer.serialize_some(value) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

/// One row of `metrics.csv` (NaN where nothing was measured in the window: no finished game, no
/// update).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub agent_steps: u64,
    pub updates: u64,
    pub episodes: u64,
    /// Mean raw return of the last (up to) 10 finished training games.
    #[serde(with = "nan_as_null")]
    pub train_return: f64,
    #[serde(with = "nan_as_null")]
    pub loss: f64,
    #[serde(with = "nan_as_null")]
    pub mean_q: f64,
    #[serde(with = "nan_as_null")]
    pub grad_norm: f64,
    pub epsilon: f64,
    pub replay_size: u64,
    /// Not part of the reproducible state: wall-clock figures of this process.
    pub agent_steps_per_s: f64,
    pub updates_per_s: f64,
}

/// What a checkpoint stores next to the tensors and the replay snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    agent_steps: u64,
    vector_steps: u64,
    segment: u64,
    actor_rng: (u128, [u8; 32]),
    replay_rng: (u128, [u8; 32]),
    optimizer_step: u64,
    episodes: Vec<EpisodeRecord>,
    evals: Vec<EvalRecord>,
    metrics: Vec<MetricsRow>,
    settings: TrainerSettings,
}

/// The final result (`final_scores.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalScores {
    pub agent_steps: u64,
    pub frames: u64,
    pub updates: u64,
    pub episodes: u64,
    /// The final evaluation's score (spec 8): the median over `final_eval_seeds` of the per-seed
    /// mean return, and the standard deviation of that median seed.
    pub score: f64,
    pub score_std: f64,
    /// The median seed's evaluation.
    pub final_eval: EvalRecord,
    /// Every seed's evaluation, in the order of `final_eval_seeds`.
    pub final_eval_per_seed: Vec<(u64, EvalRecord)>,
    pub best_periodic_eval_mean: Option<f64>,
    /// Random-policy frames the keypoint model was pre-trained on (spec 9b: reported apart from
    /// the RL budget); `None` when the caller did not say (a given checkpoint).
    pub keypoint_pretrain_frames: Option<u64>,
    pub wall_seconds: f64,
    /// Where this process's time went (issue 11's profile); absent in files of older versions.
    #[serde(default)]
    pub timing: Timing,
    /// The learner's device ("Cpu", "Cuda(0)"); empty in files of older versions.
    #[serde(default)]
    pub device: String,
    /// The commit of the binary that wrote the file ([`crate::BUILD_COMMIT`]); empty in files of
    /// older versions.
    #[serde(default)]
    pub commit: String,
}

/// Wall seconds per phase of a run, summed over the process that wrote them (a resumed run counts
/// from its restart). In threads mode acting and learning overlap, so the phases can sum to more
/// than `rl_s`; `actor_waiting_s` and `learner_idle_s` say which side waited for the other.
/// On CUDA the per-call figures include the device work only where a result is read back
/// (the front end's keypoints and the learner's loss are), so they are close, not exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Collecting the random-policy frames of keypoint pre-training (0 when a checkpoint was given).
    pub pretrain_collect_s: f64,
    /// Pre-training the keypoint model (0 when a checkpoint was given).
    pub pretrain_train_s: f64,
    /// The RL loop up to the final evaluation, periodic evaluations and checkpoints included.
    pub rl_s: f64,
    /// Actor vector steps: front end, agent forward, emulators, sequence writer.
    pub acting_s: f64,
    /// Of `acting_s`: the keypoint front end's forward on the step's frames.
    pub acting_keypoints_s: f64,
    /// The actor waiting for the learner (threads mode: `train.max_update_lag`; pipelined mode:
    /// for the updates due before its step to finish).
    pub actor_waiting_s: f64,
    /// Learner updates: sampling, features, online and target unrolls, backward, Adam, and publishing
    /// the parameters (after each update in the threads mode, after each step's updates in lockstep
    /// and pipelined).
    pub learning_s: f64,
    /// Of `learning_s` ([`learner::UpdatePhases`]): stacking the batch into tensors,
    pub learning_batch_s: f64,
    /// the front end's features of the sampled frames (computed, or from the learner's cache:
    /// the two counts below),
    pub learning_features_s: f64,
    /// sampled valid frames whose features came from the learner's feature cache,
    #[serde(default)]
    pub learning_features_cached: u64,
    /// and those the front end computed,
    #[serde(default)]
    pub learning_features_computed: u64,
    /// the online network's forward,
    pub learning_online_s: f64,
    /// the target network's forward, targets and loss,
    pub learning_target_s: f64,
    /// backward, clipping, Adam and the target update.
    pub learning_backward_s: f64,
    /// The learner waiting for the actor's next step (threads and pipelined modes).
    pub learner_idle_s: f64,
    /// Periodic greedy evaluations (with `train.background_eval`: the evaluation threads' own
    /// time, which overlaps training).
    pub evaluation_s: f64,
    /// With `train.background_eval`: training waiting for an evaluation thread to finish.
    #[serde(default)]
    pub evaluation_waiting_s: f64,
    /// Checkpoints (replay snapshot included).
    pub checkpoint_s: f64,
    /// The final evaluation over `train.final_eval_seeds`.
    pub final_evaluation_s: f64,
}

/// What the threaded actor reports after each vector step.
struct StepReport {
    /// Agent steps of the actor after the step.
    steps: u64,
    sequences: Vec<replay::Sequence>,
    finished: Vec<EpisodeRecord>,
}

/// The learner's progress as the threaded actor waits on it.
struct Progress {
    updates: std::sync::Mutex<u64>,
    changed: std::sync::Condvar,
    stopped: std::sync::atomic::AtomicBool,
    /// The replay holds something, so due updates will run (until then the actor never waits:
    /// the updates are made up once it fills, as in lockstep).
    replay_ready: std::sync::atomic::AtomicBool,
}

impl Progress {
    fn new(updates: u64, replay_ready: bool) -> Self {
        Self {
            updates: std::sync::Mutex::new(updates),
            changed: std::sync::Condvar::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            replay_ready: std::sync::atomic::AtomicBool::new(replay_ready),
        }
    }

    fn advance(&self, updates: u64) {
        *self.updates.lock().unwrap_or_else(|p| p.into_inner()) = updates;
        self.changed.notify_all();
    }

    fn replay_ready(&self) {
        self.replay_ready.store(true, std::sync::atomic::Ordering::Release);
    }

    fn stop(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::Release);
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Blocks while the learner is more than `max_update_lag` updates behind the schedule at
    /// `steps` agent steps (and could catch up), or until stopped.
    fn wait_for_learner(&self, t: &TrainConfig, steps: u64) {
        let mut done = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        while t.updates_due(steps) > *done + t.max_update_lag
            && self.replay_ready.load(std::sync::atomic::Ordering::Acquire)
            && !self.stopped()
        {
            done = self.changed.wait_timeout(done, std::time::Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// Serialises seeding libtorch's global generator and initialising the networks (see [`Trainer::new`]).
pub(crate) static NETWORK_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CHECKPOINT_KIND: &str = "trainer";
const REPLAY_FILE: &str = "replay.snapshot";

pub(crate) fn derive_seed(seed: u64, role: u64, index: u64) -> u64 {
    let mut z = seed ^ role.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn rng_state(rng: &ChaCha8Rng) -> (u128, [u8; 32]) {
    (rng.get_word_pos(), rng.get_seed())
}

pub(crate) fn rng_from(state: (u128, [u8; 32])) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(state.1);
    rng.set_word_pos(state.0);
    rng
}

/// The embedded trainer: environments, batched keypoints, actor, replay and learner in one
/// process, in lockstep (see the crate docs).
pub struct Trainer {
    settings: TrainerSettings,
    seed: u64,
    dir: PathBuf,
    front: Box<dyn KeypointModel>,
    envs: EnvFactory,
    env: Box<dyn VecEnv>,
    actor: VecActor,
    learner: Learner,
    replay: LocalReplay,
    params: LocalParameters,
    vector_steps: u64,
    segment: u64,
    episodes: Vec<EpisodeRecord>,
    evals: Vec<EvalRecord>,
    metrics: Vec<MetricsRow>,
    window: Window,
    started: Instant,
    /// Stop after this many agent steps even if the budget is larger (tests of resume).
    pub stop_at: Option<u64>,
    /// Written to `final_scores.json` as `keypoint_pretrain_frames`.
    pub keypoint_pretrain_frames: Option<u64>,
    /// The learner thread's front end in threads mode ([`Trainer::set_learner_front`]).
    learner_front: Option<Box<dyn KeypointModel>>,
    /// Evaluation front ends with network copies ([`Trainer::add_eval_front`]): a background
    /// evaluation takes one to its thread (and gives it back when joined); the final evaluation's
    /// extra threads take them all.
    eval_sides: Vec<EvalSide>,
    /// The running background evaluation.
    pending_eval: Option<std::thread::JoinHandle<(EvalSide, anyhow::Result<EvalRecord>, f64)>>,
    /// Agent steps at the last checkpoint.
    checkpointed_at: Option<u64>,
    /// Seconds per phase (the caller fills in the pre-training ones); in `final_scores.json`.
    pub timing: Timing,
}

impl Timing {
    fn add_update(&mut self, phases: &UpdatePhases) {
        self.learning_batch_s += phases.batch_s;
        self.learning_features_s += phases.features_s;
        self.learning_features_cached += phases.features_cached;
        self.learning_features_computed += phases.features_computed;
        self.learning_online_s += phases.online_s;
        self.learning_target_s += phases.target_s;
        self.learning_backward_s += phases.backward_s;
    }
}

/// An evaluation thread's own front end and copy of the online network.
pub(crate) struct EvalSide {
    front: Box<dyn KeypointModel>,
    vs: tch::nn::VarStore,
    agent: agent::KeypointAgent,
}

impl EvalSide {
    /// Copies the learner's online network into this side's.
    fn copy_network(&mut self, learner: &Learner) -> anyhow::Result<()> {
        self.vs.copy(learner.online().0).map_err(|e| anyhow::anyhow!("cannot copy the online network for an evaluation: {e}"))
    }
}

/// A [`KeypointSource`] that adds the seconds spent in `inner` to `seconds`.
struct TimedKeypoints<'a, S> {
    inner: S,
    seconds: &'a mut f64,
}

impl<S: KeypointSource> KeypointSource for TimedKeypoints<'_, S> {
    fn infer(&mut self, frames: &[u8], n: usize, shape: [usize; 3], device: Device) -> anyhow::Result<(Tensor, Tensor)> {
        let started = Instant::now();
        let out = self.inner.infer(frames, n, shape, device);
        *self.seconds += started.elapsed().as_secs_f64();
        out
    }
}

/// Sums over the updates since the last metrics row.
#[derive(Default)]
pub(crate) struct Window {
    loss: f64,
    q: f64,
    grad: f64,
    updates: u64,
    pub(crate) since: Option<(Instant, u64, u64)>,
}

impl Trainer {
    /// A fresh run writing into `dir` (created; must not hold a run already), or the
    /// continuation of the run in `dir` when `resume` is set.
    pub fn new(settings: TrainerSettings, seed: u64, dir: &Path, front: Box<dyn KeypointModel>, mut envs: EnvFactory, resume: bool) -> anyhow::Result<Self> {
        settings.validate()?;
        let checkpoints = dir.join("checkpoints");
        let saved = if resume {
            let loaded = permakey::checkpoint::load::<TrainerState>(&checkpoints, CHECKPOINT_KIND)
                .map_err(|e| anyhow::anyhow!("cannot resume from {}: {e}", dir.display()))?;
            Some(loaded)
        } else {
            anyhow::ensure!(
                !checkpoints.exists(),
                "{} already holds a run; pass --resume to continue it or choose another run name",
                dir.display()
            );
            None
        };
        let settings = match &saved {
            Some(loaded) => {
                let mut s = loaded.meta.config.settings.clone();
                // The budget may be raised on resume; nothing else may change.
                s.train.agent_steps = settings.train.agent_steps.max(s.train.agent_steps);
                s
            }
            None => settings,
        };
        fs::create_dir_all(dir)?;
        let device = front.device();
        let shape = front_end_shape(front.as_ref());
        let segment = saved.as_ref().map_or(0, |l| l.meta.config.segment);
        let env = envs(EnvRole::Train { num_envs: settings.train.num_envs }, derive_seed(seed, 1, segment))?;
        let num_actions = env.num_actions() as i64;
        // libtorch's generator is global to the process: hold a lock from seeding it until the
        // networks are initialised, so trainers built on other threads at the same time (tests,
        // a sweep in one process) cannot draw from it in between and change these weights.
        let init_guard = NETWORK_INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tch::manual_seed(derive_seed(seed, 2, 0) as i64);
        let learner = Learner::new(settings.learner.clone(), &settings.agent, shape, num_actions, device)?;
        let mut sequence = settings.sequence.clone();
        sequence.obs_shape = env.obs_shape();
        sequence.keypoint_dims = 2 * shape.num_keypoints as usize;
        sequence.recurrent_state_len = if settings.train.store_recurrent_state { 2 * agent::encoders::EMBEDDING as usize } else { 0 };
        let actor = VecActor::new(&settings.agent, shape, num_actions, sequence, settings.train.num_envs, derive_seed(seed, 3, 0), settings.train.clip_rewards, device)?;
        drop(init_guard);
        let replay = LocalReplay::new(settings.replay.clone(), derive_seed(seed, 4, 0))?;
        let mut trainer = Self {
            settings,
            seed,
            dir: dir.to_owned(),
            front,
            envs,
            env,
            actor,
            learner,
            replay,
            params: LocalParameters::default(),
            vector_steps: 0,
            segment,
            episodes: Vec::new(),
            evals: Vec::new(),
            metrics: Vec::new(),
            window: Window::default(),
            started: Instant::now(),
            stop_at: None,
            keypoint_pretrain_frames: None,
            learner_front: None,
            eval_sides: Vec::new(),
            pending_eval: None,
            checkpointed_at: None,
            timing: Timing::default(),
        };
        if let Some(loaded) = saved {
            let state = loaded.meta.config.clone();
            let named: Vec<(String, tch::Tensor)> = loaded.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
            trainer.learner.load_state(&named, loaded.meta.step, state.optimizer_step)?;
            let table = SequenceReplay::load_snapshot(loaded.dir.join(REPLAY_FILE))?;
            trainer.replay = LocalReplay::from_parts(table, rng_from(state.replay_rng));
            trainer.actor.rng = rng_from(state.actor_rng);
            trainer.actor.steps = state.agent_steps;
            trainer.vector_steps = state.vector_steps;
            trainer.episodes = state.episodes;
            trainer.evals = state.evals;
            trainer.metrics = state.metrics;
            trainer.checkpointed_at = Some(state.agent_steps);
            tracing::info!(agent_steps = state.agent_steps, updates = trainer.learner.updates(), "resumed from {}", loaded.dir.display());
        }
        trainer.publish()?;
        trainer.actor.start(trainer.env.as_mut())?;
        trainer.actor.sync(&trainer.params)?;
        Ok(trainer)
    }

    pub fn settings(&self) -> &TrainerSettings {
        &self.settings
    }

    pub fn agent_steps(&self) -> u64 {
        self.actor.steps
    }

    pub fn learner(&self) -> &Learner {
        &self.learner
    }

    pub fn evals(&self) -> &[EvalRecord] {
        &self.evals
    }

    pub fn metrics(&self) -> &[MetricsRow] {
        &self.metrics
    }

    pub fn episodes(&self) -> &[EpisodeRecord] {
        &self.episodes
    }

    fn publish(&mut self) -> anyhow::Result<()> {
        publish_to(&self.params, &self.learner)
    }

    /// Runs to the budget (or `stop_at`), then evaluates and writes the final files when the
    /// budget was reached. Returns the final scores, or `None` when stopped early.
    pub fn run(&mut self) -> anyhow::Result<Option<FinalScores>> {
        let budget = self.settings.train.agent_steps;
        let stop = self.stop_at.unwrap_or(budget).min(budget);
        self.window.since = Some((Instant::now(), self.actor.steps, self.learner.updates()));
        let rl_started = Instant::now();
        while self.actor.steps < stop {
            match self.settings.train.mode {
                TrainMode::Lockstep => self.iteration()?,
                TrainMode::Threads | TrainMode::Pipelined => self.segment_on_two_threads(stop)?,
            }
        }
        self.timing.rl_s += rl_started.elapsed().as_secs_f64();
        if self.actor.steps < budget {
            if self.checkpointed_at != Some(self.actor.steps) {
                self.checkpoint()?;
            }
            return Ok(None);
        }
        let finals = self.final_evaluation()?;
        Ok(Some(finals))
    }

    /// A second instance of the front end for the learner's thread (the threads and pipelined
    /// modes need one: libtorch modules are not shared across threads here). The lockstep mode
    /// ignores it.
    pub fn set_learner_front(&mut self, front: Box<dyn KeypointModel>) {
        self.learner_front = Some(front);
    }

    /// A front-end instance for evaluations off the training thread: background evaluations
    /// (`train.background_eval`, ignored without one) use one, and the final evaluation plays on
    /// up to `train.final_eval_workers - 1` of them beside the training thread's own.
    pub fn add_eval_front(&mut self, front: Box<dyn KeypointModel>) {
        let vs = tch::nn::VarStore::new(front.device());
        // The copy's initial weights are overwritten before every evaluation; the lock keeps
        // their draw from libtorch's global generator away from networks built elsewhere.
        let agent = {
            let _init = NETWORK_INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            agent::KeypointAgent::new(&vs.root(), &self.settings.agent, front_end_shape(front.as_ref()), self.env.num_actions() as i64)
        };
        self.eval_sides.push(EvalSide { front, vs, agent });
    }

    /// One vector step of the actor, then the updates it made due.
    fn iteration(&mut self) -> anyhow::Result<()> {
        let t = self.settings.train.clone();
        if self.vector_steps.is_multiple_of(t.parameter_sync_every) {
            self.actor.sync(&self.params)?;
        }
        let before = self.actor.steps;
        let epsilon = t.epsilon(before);
        let acting = Instant::now();
        let mut keypoints = TimedKeypoints { inner: LocalKeypoints(self.front.as_ref()), seconds: &mut self.timing.acting_keypoints_s };
        let finished = self.actor.step(self.env.as_mut(), &mut keypoints, &mut self.replay, epsilon)?;
        self.timing.acting_s += acting.elapsed().as_secs_f64();
        self.vector_steps += 1;
        self.episodes.extend(finished);
        let now = self.actor.steps;
        let mut updated = false;
        while self.learner.updates() < t.updates_due(now) && !self.replay.is_empty() {
            // Lockstep: the shared front end computes the features.
            update_once(&mut self.learner, &mut self.replay, self.front.as_ref(), &mut self.window, &self.settings, &mut self.timing)?;
            updated = true;
        }
        if updated {
            // Publishing is part of learning in every mode (the threads mode's after each update).
            publish_timed(&self.params, &self.learner, &mut self.timing)?;
        }
        self.after_step(before, now, epsilon)
    }

    /// Whether the vector step from `before` to `now` agent steps crossed an evaluation,
    /// checkpoint or logging point.
    fn crosses_event(t: &TrainConfig, before: u64, now: u64) -> bool {
        let passed = |every| crossed(every, before, now);
        periodic_eval_due(t, before, now) || passed(t.checkpoint_every) || passed(1000)
    }

    /// Evaluation, checkpoint and metrics row due after the vector step from `before` to `now`.
    fn after_step(&mut self, before: u64, now: u64, epsilon: f64) -> anyhow::Result<()> {
        let t = self.settings.train.clone();
        let passed = |every| crossed(every, before, now);
        if periodic_eval_due(&t, before, now) {
            self.periodic_evaluation()?;
        }
        if passed(t.checkpoint_every) && now < t.agent_steps {
            self.checkpoint()?;
        } else if passed(1000) {
            self.log_row(epsilon)?;
        }
        Ok(())
    }

    /// Threads and pipelined modes: the actor steps on a thread of its own up to the next
    /// evaluation, checkpoint or logging point (or `stop`), sending every step's report over a
    /// crossbeam channel, while this thread stores the sequences and runs the updates the
    /// reported steps made due. Events then run here exactly as in lockstep.
    ///
    /// - Threads: the actor waits before a step only while the learner is more than
    ///   `max_update_lag` updates behind; the learner publishes after every update.
    /// - Pipelined: after each step both meet: this thread stores the step's sequences and
    ///   finished games, publishes if it updated, and lets the actor take the next step. So the
    ///   actor's step `k + 1` acts with the parameters after the updates due at step `k - 1`
    ///   (lockstep: at step `k`), the updates due at step `k` sample the replay as it is after step
    ///   `k` (as in lockstep), and nothing depends on thread timing: a run is a pure function of
    ///   its seed. At the segment's end the updates due at its last step run before the events,
    ///   which therefore see the learner as lockstep does.
    fn segment_on_two_threads(&mut self, stop: u64) -> anyhow::Result<()> {
        let t = self.settings.train.clone();
        let pipelined = t.mode == TrainMode::Pipelined;
        anyhow::ensure!(
            self.learner_front.is_some(),
            "train.mode = {} needs a second front-end instance for the learner (Trainer::set_learner_front)",
            if pipelined { "pipelined" } else { "threads" }
        );
        let progress = Progress::new(self.learner.updates(), !self.replay.is_empty());
        // Every report of the previous segment has been stored: the learner has seen all steps.
        let mut steps_seen = self.actor.steps;
        let capacity = if pipelined { 1 } else { 2 * t.max_update_lag.max(1) as usize };
        let (tx, rx) = crossbeam_channel::bounded::<StepReport>(capacity);
        // Pipelined: the learner lets the actor take its next step.
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let (actor, env, front, params, vector_steps) = (&mut self.actor, &mut self.env, &mut self.front, &self.params, &mut self.vector_steps);
        let progress_ref = &progress;
        let t_actor = t.clone();
        let outcome = std::thread::scope(|scope| {
            let acting = scope.spawn(move || -> anyhow::Result<(u64, f64, ActorTimes)> {
                let t = t_actor;
                let mut times = ActorTimes::default();
                let mut first = true;
                loop {
                    let waiting = Instant::now();
                    if !pipelined {
                        progress_ref.wait_for_learner(&t, actor.steps);
                        if progress_ref.stopped() {
                            anyhow::bail!("the learner stopped");
                        }
                    } else if !first && go_rx.recv().is_err() {
                        anyhow::bail!("the learner stopped");
                    }
                    times.waiting += waiting.elapsed().as_secs_f64();
                    first = false;
                    if vector_steps.is_multiple_of(t.parameter_sync_every) {
                        actor.sync(params)?;
                    }
                    let before = actor.steps;
                    let epsilon = t.epsilon(before);
                    let mut sequences = Vec::new();
                    let stepping = Instant::now();
                    let mut keypoints = TimedKeypoints { inner: LocalKeypoints(front.as_ref()), seconds: &mut times.keypoints };
                    let finished = actor.step(env.as_mut(), &mut keypoints, &mut sequences, epsilon)?;
                    times.acting += stepping.elapsed().as_secs_f64();
                    *vector_steps += 1;
                    if tx.send(StepReport { steps: actor.steps, sequences, finished }).is_err() {
                        anyhow::bail!("the learner's end of the channel has gone");
                    }
                    if actor.steps >= stop || Self::crosses_event(&t, before, actor.steps) {
                        return Ok((before, epsilon, times));
                    }
                }
            });
            let mut side = LearnerSide {
                learner: &mut self.learner,
                replay: &mut self.replay,
                front: self.learner_front.as_deref().expect("checked above"),
                episodes: &mut self.episodes,
                window: &mut self.window,
                params: &self.params,
                settings: &self.settings,
                steps_seen: &mut steps_seen,
                timing: &mut self.timing,
            };
            let learned = if pipelined { side.learn_in_step(&rx, go_tx, &progress, &t, stop) } else { side.learn_from(&rx, &progress, &t) };
            if learned.is_err() {
                progress.stop();
            }
            drop(rx);
            let acted = acting.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the actor thread panicked")));
            learned.and(acted)
        });
        let (before, epsilon, times) = outcome?;
        self.timing.acting_s += times.acting;
        self.timing.acting_keypoints_s += times.keypoints;
        self.timing.actor_waiting_s += times.waiting;
        if !pipelined {
            // Pipelined has published after its last step's updates.
            self.publish()?;
        }
        let now = self.actor.steps;
        self.after_step(before, now, epsilon)
    }

    fn log_row(&mut self, epsilon: f64) -> anyhow::Result<()> {
        if self.metrics.last().is_some_and(|row| row.agent_steps == self.actor.steps) {
            // Already logged at this step (the final evaluation and its checkpoint both ask).
            return self.write_logs();
        }
        let w = std::mem::take(&mut self.window);
        let row = w.into_row(self.started, self.actor.steps, self.learner.updates(), &self.episodes, epsilon, self.replay.len() as u64);
        self.metrics.push(row);
        self.window.since = Some((Instant::now(), self.actor.steps, self.learner.updates()));
        self.write_logs()
    }

    fn periodic_evaluation(&mut self) -> anyhow::Result<()> {
        self.join_evaluation()?;
        let index = self.evals.len() as u64;
        let t = &self.settings.train;
        if t.background_eval
            && let Some(side) = self.eval_sides.last_mut()
        {
            let mut env = periodic_eval_env(&mut self.envs, t, self.seed, index)?;
            side.copy_network(&self.learner)?;
            let side = self.eval_sides.pop().expect("borrowed above");
            let (t, seed, steps, updates) = (t.clone(), self.seed, self.actor.steps, self.learner.updates());
            let handle = std::thread::Builder::new().name("evaluation".into()).spawn(move || {
                let started = Instant::now();
                let record = play_periodic_eval(&side.agent, side.front.as_ref(), env.as_mut(), &t, seed, index, steps, updates);
                (side, record, started.elapsed().as_secs_f64())
            })?;
            self.pending_eval = Some(handle);
            return Ok(());
        }
        let started = Instant::now();
        let record = periodic_evaluation(&self.learner, self.front.as_ref(), &mut self.envs, &self.settings.train, self.seed, index, self.actor.steps)?;
        self.timing.evaluation_s += started.elapsed().as_secs_f64();
        self.evals.push(record);
        self.write_logs()
    }

    /// Waits for the background evaluation, if one runs, and records it.
    fn join_evaluation(&mut self) -> anyhow::Result<()> {
        let Some(handle) = self.pending_eval.take() else { return Ok(()) };
        let waiting = Instant::now();
        let (side, record, seconds) = handle.join().map_err(|_| anyhow::anyhow!("the evaluation thread panicked"))?;
        self.timing.evaluation_waiting_s += waiting.elapsed().as_secs_f64();
        self.timing.evaluation_s += seconds;
        self.eval_sides.push(side);
        let record = record?;
        report_evaluation(&record);
        self.evals.push(record);
        self.write_logs()
    }

    fn final_evaluation(&mut self) -> anyhow::Result<FinalScores> {
        self.join_evaluation()?;
        self.log_row(self.settings.train.epsilon(self.actor.steps))?;
        let started = Instant::now();
        let helpers = self.settings.train.final_eval_workers.saturating_sub(1).min(self.eval_sides.len());
        let scores = final_evaluation(&self.learner, self.front.as_ref(), &mut self.eval_sides[..helpers], &mut self.envs, &self.settings.train, self.seed, self.actor.steps, self.episodes.len() as u64, &self.evals)?;
        self.timing.final_evaluation_s += started.elapsed().as_secs_f64();
        let scores = FinalScores {
            keypoint_pretrain_frames: self.keypoint_pretrain_frames,
            wall_seconds: self.started.elapsed().as_secs_f64(),
            timing: self.timing.clone(),
            device: format!("{:?}", self.learner.online().0.device()),
            ..scores
        };
        write_atomic(&self.dir.join("final_scores.json"), serde_json::to_string_pretty(&scores)?.as_bytes())?;
        self.checkpoint()?;
        Ok(scores)
    }

    /// Cuts every episode, saves learner, replay and counters, restarts the environments.
    fn checkpoint(&mut self) -> anyhow::Result<()> {
        // The evaluations so far belong in the checkpoint, so a resumed run has them.
        self.join_evaluation()?;
        let started = Instant::now();
        let saved = self.save_checkpoint();
        self.timing.checkpoint_s += started.elapsed().as_secs_f64();
        saved
    }

    fn save_checkpoint(&mut self) -> anyhow::Result<()> {
        self.actor.cut(&mut self.replay)?;
        self.log_row(self.settings.train.epsilon(self.actor.steps))?;
        let (named, updates, optimizer_step) = self.learner.state();
        let state = TrainerState {
            agent_steps: self.actor.steps,
            vector_steps: self.vector_steps,
            segment: self.segment + 1,
            actor_rng: rng_state(&self.actor.rng),
            replay_rng: self.replay.with(|s| rng_state(&s.rng)),
            optimizer_step,
            episodes: self.episodes.clone(),
            evals: self.evals.clone(),
            metrics: self.metrics.clone(),
            settings: self.settings.clone(),
        };
        let replay = self.replay.clone();
        let name = format!("step-{:09}", self.actor.steps);
        permakey::checkpoint::save_named(&self.dir.join("checkpoints"), &name, CHECKPOINT_KIND, &state, named, updates, 0, serde_json::Value::Null, |tmp| {
            replay.with(|s| s.table.save_snapshot(tmp.join(REPLAY_FILE))).map_err(|e| e.to_string())
        })?;
        self.segment += 1;
        self.checkpointed_at = Some(self.actor.steps);
        self.env = (self.envs)(EnvRole::Train { num_envs: self.settings.train.num_envs }, derive_seed(self.seed, 1, self.segment))?;
        self.actor.start(self.env.as_mut())?;
        self.actor.sync(&self.params)?;
        tracing::info!("checkpoint {name}");
        Ok(())
    }

    /// Rewrites `metrics.csv`, `eval.csv`, `episodes.csv` and `learning_curve.png`.
    fn write_logs(&self) -> anyhow::Result<()> {
        write_run_logs(&self.dir, &self.metrics, &self.evals, &self.episodes, self.settings.train.agent_steps)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn device(&self) -> Device {
        self.front.device()
    }
}

impl Window {
    /// The metrics row closing this window at `agent_steps` / `updates` (rates over the time since
    /// the window opened, or since `started`), logged as a progress line.
    pub(crate) fn into_row(self, started: Instant, agent_steps: u64, updates: u64, episodes: &[EpisodeRecord], epsilon: f64, replay_size: u64) -> MetricsRow {
        let w = self;
        let (since, steps0, updates0) = w.since.unwrap_or((started, 0, 0));
        let secs = since.elapsed().as_secs_f64().max(1e-9);
        let recent: Vec<f64> = episodes.iter().rev().take(10).map(|e| f64::from(e.game_return)).collect();
        let per = |x: f64| if w.updates > 0 { x / w.updates as f64 } else { f64::NAN };
        let row = MetricsRow {
            agent_steps,
            updates,
            episodes: episodes.len() as u64,
            train_return: if recent.is_empty() { f64::NAN } else { recent.iter().sum::<f64>() / recent.len() as f64 },
            loss: per(w.loss),
            mean_q: per(w.q),
            grad_norm: per(w.grad),
            epsilon,
            replay_size,
            agent_steps_per_s: agent_steps.saturating_sub(steps0) as f64 / secs,
            updates_per_s: updates.saturating_sub(updates0) as f64 / secs,
        };
        tracing::info!(
            steps = row.agent_steps,
            updates = row.updates,
            episodes = row.episodes,
            train_return = format!("{:.1}", row.train_return),
            loss = format!("{:.4}", row.loss),
            q = format!("{:.3}", row.mean_q),
            epsilon = format!("{:.3}", row.epsilon),
            steps_per_s = format!("{:.1}", row.agent_steps_per_s),
            "progress"
        );
        row
    }

    /// Adds one update's figures.
    pub(crate) fn add(&mut self, stats: &learner::UpdateStats) {
        self.loss += stats.loss;
        self.q += stats.mean_q;
        self.grad += stats.grad_norm;
        self.updates += 1;
    }
}

/// Rewrites `metrics.csv`, `eval.csv`, `episodes.csv` and `learning_curve.png` in `dir`.
pub(crate) fn write_run_logs(dir: &Path, metrics: &[MetricsRow], evals: &[EvalRecord], episodes: &[EpisodeRecord], budget: u64) -> anyhow::Result<()> {
    let mut csv = String::from("agent_steps,updates,episodes,train_return,loss,mean_q,grad_norm,epsilon,replay_size,agent_steps_per_s,updates_per_s\n");
    for r in metrics {
        csv += &format!(
            "{},{},{},{:.3},{:.6},{:.5},{:.4},{:.4},{},{:.2},{:.3}\n",
            r.agent_steps, r.updates, r.episodes, r.train_return, r.loss, r.mean_q, r.grad_norm, r.epsilon, r.replay_size, r.agent_steps_per_s, r.updates_per_s
        );
    }
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())?;
    let mut csv = String::from("agent_steps,updates,mean,std,min,max,episodes\n");
    for e in evals {
        csv += &format!("{},{},{:.2},{:.2},{:.1},{:.1},{}\n", e.agent_steps, e.updates, e.mean, e.std, e.min, e.max, e.returns.len());
    }
    write_atomic(&dir.join("eval.csv"), csv.as_bytes())?;
    let mut csv = String::from("agent_steps,env,return,length\n");
    for e in episodes {
        csv += &format!("{},{},{},{}\n", e.agent_steps, e.env, e.game_return, e.game_length);
    }
    write_atomic(&dir.join("episodes.csv"), csv.as_bytes())?;
    let train: Vec<(f64, f64)> = episodes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let from = i.saturating_sub(9);
            let window = &episodes[from..=i];
            (e.agent_steps as f64, window.iter().map(|x| f64::from(x.game_return)).sum::<f64>() / window.len() as f64)
        })
        .collect();
    let eval: Vec<(f64, f64)> = evals.iter().map(|e| (e.agent_steps as f64, e.mean)).collect();
    plot::learning_curve(&dir.join("learning_curve.png"), &train, &eval, budget as f64)?;
    Ok(())
}

/// Periodic evaluation number `index` (spec 8) of the learner's online network at `agent_steps`.
pub(crate) fn periodic_evaluation(learner: &Learner, front: &dyn KeypointModel, envs: &mut EnvFactory, t: &TrainConfig, seed: u64, index: u64, agent_steps: u64) -> anyhow::Result<EvalRecord> {
    let mut env = periodic_eval_env(envs, t, seed, index)?;
    let (_, agent) = learner.online();
    let record = play_periodic_eval(agent, front, env.as_mut(), t, seed, index, agent_steps, learner.updates())?;
    report_evaluation(&record);
    Ok(record)
}

/// The environments of periodic evaluation number `index`.
fn periodic_eval_env(envs: &mut EnvFactory, t: &TrainConfig, seed: u64, index: u64) -> anyhow::Result<Box<dyn VecEnv>> {
    envs(EnvRole::Eval { num_envs: crate::actor::eval_env_count(t.eval_envs, t.eval_episodes) }, derive_seed(seed, 5, index))
}

/// Plays periodic evaluation number `index` of `agent` in `env` (from [`periodic_eval_env`]).
#[allow(clippy::too_many_arguments)]
fn play_periodic_eval(agent: &agent::KeypointAgent, front: &dyn KeypointModel, env: &mut dyn VecEnv, t: &TrainConfig, seed: u64, index: u64, agent_steps: u64, updates: u64) -> anyhow::Result<EvalRecord> {
    let results = evaluate(agent, front, env, t.eval_episodes, 0.0, derive_seed(seed, 6, index))?;
    Ok(EvalRecord::new(agent_steps, updates, &results))
}

/// A periodic evaluation's gauge and log line.
fn report_evaluation(record: &EvalRecord) {
    metrics::gauge!(pkrl_telemetry::names::EVAL_RETURN).set(record.mean);
    tracing::info!(steps = record.agent_steps, mean = format!("{:.1}", record.mean), std = format!("{:.1}", record.std), "evaluation");
}

/// The final evaluation (spec 8) over `t.final_eval_seeds`: the median seed's mean is the score.
/// The seeds are dealt round-robin to the calling thread (the learner's network on `front`) and
/// one scoped thread per side in `helpers` (the online network copied into each): the records do
/// not depend on which thread played a seed. `keypoint_pretrain_frames` and `wall_seconds` are
/// left for the caller to fill in.
#[allow(clippy::too_many_arguments)]
pub(crate) fn final_evaluation(
    learner: &Learner,
    front: &dyn KeypointModel,
    helpers: &mut [EvalSide],
    envs: &mut EnvFactory,
    t: &TrainConfig,
    seed: u64,
    agent_steps: u64,
    episodes: u64,
    evals: &[EvalRecord],
) -> anyhow::Result<FinalScores> {
    let updates = learner.updates();
    let play = |agent: &agent::KeypointAgent, front: &dyn KeypointModel, eval_seed: u64, env: &mut dyn VecEnv| -> anyhow::Result<EvalRecord> {
        let results = evaluate(agent, front, env, t.final_eval_episodes, 0.0, derive_seed(seed, 7, eval_seed))?;
        let record = EvalRecord::new(agent_steps, updates, &results);
        tracing::info!(seed = eval_seed, mean = format!("{:.1}", record.mean), std = format!("{:.1}", record.std), "final evaluation");
        Ok(record)
    };
    let used = helpers.len().min(t.final_eval_seeds.len().saturating_sub(1));
    let helpers = &mut helpers[..used];
    for side in helpers.iter_mut() {
        side.copy_network(learner)?;
    }
    let workers = helpers.len() + 1;
    // Spec 8: the environments of evaluation seed s are seeded with 2s.
    let num_envs = crate::actor::eval_env_count(t.eval_envs, t.final_eval_episodes);
    let mut env_of = |eval_seed: u64| envs(EnvRole::Eval { num_envs }, 2 * eval_seed);
    // Seed i goes to worker i % workers (0: this thread). The helpers' environments are made
    // here, before their threads start; this thread's one at a time, as it plays them.
    let mut shares: Vec<Vec<(usize, u64, Box<dyn VecEnv>)>> = (1..workers).map(|_| Vec::new()).collect();
    for (i, &eval_seed) in t.final_eval_seeds.iter().enumerate() {
        if i % workers != 0 {
            shares[i % workers - 1].push((i, eval_seed, env_of(eval_seed)?));
        }
    }
    let mut records: Vec<Option<anyhow::Result<EvalRecord>>> = t.final_eval_seeds.iter().map(|_| None).collect();
    let mut failure: Option<anyhow::Error> = None;
    std::thread::scope(|scope| {
        let handles: Vec<_> = helpers
            .iter_mut()
            .zip(shares)
            .map(|(side, share)| {
                let play = &play;
                std::thread::Builder::new().name("final-evaluation".into()).spawn_scoped(scope, move || {
                    share.into_iter().map(|(i, eval_seed, mut env)| (i, play(&side.agent, side.front.as_ref(), eval_seed, env.as_mut()))).collect::<Vec<_>>()
                })
            })
            .collect();
        for (i, &eval_seed) in t.final_eval_seeds.iter().enumerate().step_by(workers) {
            records[i] = Some(env_of(eval_seed).and_then(|mut env| play(learner.online().1, front, eval_seed, env.as_mut())));
        }
        for handle in handles {
            match handle.map_err(anyhow::Error::from).and_then(|h| h.join().map_err(|_| anyhow::anyhow!("a final-evaluation thread panicked"))) {
                Ok(done) => done.into_iter().for_each(|(i, record)| records[i] = Some(record)),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let mut per_seed = Vec::with_capacity(records.len());
    for (&eval_seed, record) in t.final_eval_seeds.iter().zip(records) {
        let record = record.ok_or_else(|| anyhow::anyhow!("final evaluation seed {eval_seed} was not played"))??;
        per_seed.push((eval_seed, record));
    }
    let mut order: Vec<usize> = (0..per_seed.len()).collect();
    order.sort_by(|&a, &b| per_seed[a].1.mean.total_cmp(&per_seed[b].1.mean));
    let final_eval = per_seed[order[order.len() / 2]].1.clone();
    Ok(FinalScores {
        score: final_eval.mean,
        score_std: final_eval.std,
        final_eval_per_seed: per_seed,
        agent_steps,
        frames: agent_steps * 4,
        updates: learner.updates(),
        episodes,
        final_eval,
        best_periodic_eval_mean: evals.iter().map(|e| e.mean).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
        keypoint_pretrain_frames: None,
        wall_seconds: 0.0,
        timing: Timing::default(),
        device: format!("{:?}", learner.online().0.device()),
        commit: crate::BUILD_COMMIT.to_owned(),
    })
}

/// Whether a periodic evaluation is due after the step from `before` to `now`: it passed a
/// multiple of `eval_every` after `learning_starts`, before the budget. At the budget the final
/// evaluation follows and plays the same network on more games, so a periodic one there would
/// only repeat it (one of the ten of the Atari-100k protocol).
pub(crate) fn periodic_eval_due(t: &TrainConfig, before: u64, now: u64) -> bool {
    crossed(t.eval_every, before, now) && now >= t.learning_starts && now < t.agent_steps
}

/// Whether a step from `before` to `now` agent steps passed a multiple of `every` (0: never).
pub(crate) fn crossed(every: u64, before: u64, now: u64) -> bool {
    every > 0 && before / every != now / every
}

/// One learner update on a batch sampled from `replay`, features from `front`; accumulates the
/// metrics window, and the update's seconds and phases in `timing`.
fn update_once(learner: &mut Learner, replay: &mut LocalReplay, front: &dyn KeypointModel, window: &mut Window, settings: &TrainerSettings, timing: &mut Timing) -> anyhow::Result<()> {
    let started = Instant::now();
    let batch = replay.sample(settings.learner.batch_size)?;
    let phases = learn_on(learner, front, &batch, replay, window, settings)?;
    timing.learning_s += started.elapsed().as_secs_f64();
    timing.add_update(&phases);
    Ok(())
}

/// [`publish_to`], its seconds counted as learning in `timing`.
fn publish_timed(params: &dyn ParameterSink, learner: &Learner, timing: &mut Timing) -> anyhow::Result<()> {
    let started = Instant::now();
    publish_to(params, learner)?;
    timing.learning_s += started.elapsed().as_secs_f64();
    Ok(())
}

/// One learner update on `batch`, new priorities to `replay` when sampling is prioritised;
/// accumulates the metrics window; returns the update's phase times.
pub(crate) fn learn_on(learner: &mut Learner, front: &dyn KeypointModel, batch: &replay::SampledBatch, replay: &mut dyn ReplayClient, window: &mut Window, settings: &TrainerSettings) -> anyhow::Result<UpdatePhases> {
    let started = Instant::now();
    let stats = learner.update(front, &batch.items, &batch.weights)?;
    {
        use pkrl_telemetry::names;
        metrics::histogram!(names::LEARNER_UPDATE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(names::LEARNER_UPDATES).increment(1);
        metrics::gauge!(names::LEARNER_LOSS).set(stats.loss);
        metrics::gauge!(names::LEARNER_Q_MEAN).set(stats.mean_q);
        metrics::gauge!(names::LEARNER_GRAD_NORM).set(stats.grad_norm);
        metrics::counter!(names::LEARNER_FEATURES_CACHED).increment(stats.phases.features_cached);
        metrics::counter!(names::LEARNER_FEATURES_COMPUTED).increment(stats.phases.features_computed);
    }
    if settings.replay.sampling == SamplingMode::Prioritized {
        replay.update_priorities(&batch.keys, &stats.priorities)?;
    }
    window.add(&stats);
    Ok(stats.phases)
}

/// The learner thread's share of the trainer in threads mode (disjoint from the actor's).
struct LearnerSide<'a> {
    learner: &'a mut Learner,
    replay: &'a mut LocalReplay,
    front: &'a dyn KeypointModel,
    episodes: &'a mut Vec<EpisodeRecord>,
    window: &'a mut Window,
    params: &'a LocalParameters,
    settings: &'a TrainerSettings,
    steps_seen: &'a mut u64,
    timing: &'a mut Timing,
}

/// The actor thread's seconds in one threads-mode segment.
#[derive(Default)]
struct ActorTimes {
    acting: f64,
    keypoints: f64,
    waiting: f64,
}

impl LearnerSide<'_> {
    /// Until the actor's channel closes and no update is due: store reported sequences and run
    /// the updates the reported steps made due, publishing after each.
    fn learn_from(&mut self, rx: &crossbeam_channel::Receiver<StepReport>, progress: &Progress, t: &TrainConfig) -> anyhow::Result<()> {
        let mut open = true;
        loop {
            while open {
                match rx.try_recv() {
                    Ok(report) => self.store(report, progress)?,
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => open = false,
                }
            }
            if self.learner.updates() < t.updates_due(*self.steps_seen) && !self.replay.is_empty() {
                update_once(self.learner, self.replay, self.front, self.window, self.settings, self.timing)?;
                publish_timed(self.params, self.learner, self.timing)?;
                progress.advance(self.learner.updates());
                continue;
            }
            if !open {
                return Ok(());
            }
            let idle = Instant::now();
            let received = rx.recv();
            self.timing.learner_idle_s += idle.elapsed().as_secs_f64();
            match received {
                Ok(report) => self.store(report, progress)?,
                Err(_) => open = false,
            }
        }
    }

    /// The pipelined mode's learner (see [`Trainer::segment_on_two_threads`]): while the actor takes
    /// a step, the updates due at the steps stored so far; then the step's report is stored, the
    /// parameters published if anything was updated, and the actor let go (`go` is dropped on
    /// return, so an actor waiting for it stops). Returns after the segment's last step and its
    /// updates; an actor that failed ends it early (its error comes from its join).
    fn learn_in_step(&mut self, reports: &crossbeam_channel::Receiver<StepReport>, go: crossbeam_channel::Sender<()>, progress: &Progress, t: &TrainConfig, stop: u64) -> anyhow::Result<()> {
        loop {
            let mut updated = self.catch_up(t)?;
            let idle = Instant::now();
            let Ok(report) = reports.recv() else { return Ok(()) };
            self.timing.learner_idle_s += idle.elapsed().as_secs_f64();
            let (before, now) = (*self.steps_seen, report.steps);
            self.store(report, progress)?;
            let last = now >= stop || Trainer::crosses_event(t, before, now);
            if last {
                updated |= self.catch_up(t)?;
            }
            if updated {
                publish_timed(self.params, self.learner, self.timing)?;
            }
            if last {
                return Ok(());
            }
            if go.send(()).is_err() {
                return Ok(());
            }
        }
    }

    /// Runs the updates due at the agent steps stored so far; whether it ran any.
    fn catch_up(&mut self, t: &TrainConfig) -> anyhow::Result<bool> {
        let mut updated = false;
        while self.learner.updates() < t.updates_due(*self.steps_seen) && !self.replay.is_empty() {
            update_once(self.learner, self.replay, self.front, self.window, self.settings, self.timing)?;
            updated = true;
        }
        Ok(updated)
    }

    fn store(&mut self, report: StepReport, progress: &Progress) -> anyhow::Result<()> {
        self.replay.insert(report.sequences)?;
        self.episodes.extend(report.finished);
        *self.steps_seen = report.steps;
        if !self.replay.is_empty() {
            progress.replay_ready();
        }
        Ok(())
    }
}

/// Publishes the learner's online parameters under its update count.
pub(crate) fn publish_to(params: &dyn ParameterSink, learner: &Learner) -> anyhow::Result<()> {
    let (vs, _) = learner.online();
    params.publish_from(learner.updates(), vs)?;
    metrics::gauge!(pkrl_telemetry::names::LEARNER_PARAMETER_VERSION).set(learner.updates() as f64);
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_evaluations_fall_on_multiples_after_learning_starts_and_before_the_budget() {
        let t = TrainConfig { eval_every: 2000, learning_starts: 1000, agent_steps: 6000, ..TrainConfig::default() };
        // Vector steps of 8 from 0 to the budget: evaluations at 2000 and 4000, not at 6000.
        let due: Vec<u64> = (0..750u64).map(|i| (8 * i, 8 * i + 8)).filter(|&(b, n)| periodic_eval_due(&t, b, n)).map(|(_, n)| n).collect();
        assert_eq!(due, vec![2000, 4000]);
        // Before learning_starts: not due even on a multiple.
        let late = TrainConfig { learning_starts: 2500, ..t.clone() };
        assert!(!periodic_eval_due(&late, 1992, 2000) && periodic_eval_due(&late, 3992, 4000));
        // A step that jumps past a multiple counts once, 0 disables.
        assert!(periodic_eval_due(&t, 1990, 2010) && !periodic_eval_due(&t, 2010, 2030));
        assert!(!periodic_eval_due(&TrainConfig { eval_every: 0, ..t.clone() }, 1992, 2000));
    }

    #[test]
    fn metrics_rows_with_nothing_measured_round_trip_through_json() {
        let row = MetricsRow { agent_steps: 1000, train_return: f64::NAN, loss: f64::NAN, mean_q: 0.25, ..MetricsRow::default() };
        let text = serde_json::to_string(&row).unwrap();
        assert!(text.contains(r#""loss":null"#) && text.contains(r#""mean_q":0.25"#), "{text}");
        let back: MetricsRow = serde_json::from_str(&text).unwrap();
        assert!(back.loss.is_nan() && back.train_return.is_nan());
        assert_eq!((back.agent_steps, back.mean_q, back.grad_norm), (1000, 0.25, 0.0));
    }
}
