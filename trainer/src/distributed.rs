//! The distributed mode's two loops (issue 8), written against the transport traits so that the
//! processes share the embedded trainer's logic — [`VecActor`], the [`Learner`] update, the
//! schedule, evaluation, the run folder — and differ from it only in transport:
//!
//! - [`run_actor`]: one actor process. `num_envs` environments, keypoints from a
//!   [`KeypointSource`] (the keypoint service), a local copy of the Q-network refreshed from a
//!   [`ParameterSource`] every `train.parameter_sync_every` vector steps, sequences to a
//!   [`ReplayWriter`], steps and finished games to a [`ProgressReporter`] after every vector step.
//! - [`DistributedLearner`]: the learner process. Batches are sampled on a prefetch thread (up to
//!   [`PREFETCH_DEPTH`] ahead), updates follow the embedded schedule over the total agent steps
//!   of all actors (`train.updates_due`), priorities go back to the replay, parameters are
//!   published after every update; evaluations, metrics rows and checkpoints happen at the same
//!   agent-step points as in the embedded trainer, and the run folder has the same files.
//!
//! # Decisions
//!
//! - **One schedule in both modes.** Actors report their cumulative steps to the learner's
//!   [`ProgressBoard`]; an actor whose report finds the learner more than `train.max_update_lag`
//!   updates behind the schedule waits (reporting again) until it catches up — the threads
//!   mode's rule across processes. So a distributed run does the embedded run's updates per agent
//!   step, whatever the speeds. The replay's samples-per-insert limiter stays as a guard; while
//!   the learner waits for data (below `min_size_to_sample`, or held by the limiter) the board
//!   holds no actor, so the two rules cannot deadlock.
//! - **Epsilon follows the run's total steps** (the latest total the learner answered plus the
//!   actor's steps since), as the embedded trainer's does.
//! - **Budget.** The learner marks the run done once the actors' total reaches
//!   `train.agent_steps`; actors then cut their episodes (the sequences so far go to replay) and
//!   exit; the learner runs the updates the budget makes due, the final evaluation, writes
//!   `final_scores.json` and a last checkpoint.
//! - **Checkpoints hold the learner, its optimiser and target network, the step accounting and
//!   the logs**, not the replay (the replay service snapshots itself) nor the actors' episodes: a
//!   resumed distributed run continues the schedule and counts but is not bit-identical to an
//!   uninterrupted one (the embedded lockstep mode is). The learner has no random stream of its
//!   own to save: an update draws nothing, evaluation seeds derive from the run seed and the
//!   evaluation's index (restored with the evaluation log), and sampling randomness is the
//!   replay service's.
//! - **A learner killed without a final checkpoint** (SIGKILL, a crash) resumes, under
//!   `--resume-or-start`, from its last periodic one (`train.checkpoint_every`): the updates
//!   since are redone (the actors' cumulative reports restore the step count, and the schedule
//!   owes the updates again), the games reported since are missing from `episodes.csv`, and, if
//!   an actor was also restarted after that checkpoint, its previous process's steps since the
//!   checkpoint are not counted (the run does a few more steps than `train.agent_steps`).
//! - **The budget is checkpointed before the actors hear `done`.** Actors that are told `done`
//!   exit and report no more, so a learner killed after that point could not learn the run's
//!   total again from them: resumed from an earlier periodic checkpoint, it would wait for steps
//!   no actor will report. When the total first reaches the budget the learner therefore writes a
//!   checkpoint (`step-<steps seen>-budget`, the step counts and games, no metrics row) and only
//!   then answers `done`; a learner resumed from it (or from any checkpoint whose counts reach the
//!   budget) answers `done` at once and runs the updates still due from the replay, the final
//!   evaluation and `final_scores.json`. Found by `cli/tests/faults.rs` when the learner was
//!   killed after the actors had stopped.
//! - **Parameter versions never go back for an actor.** The version is the learner's update
//!   count, so a resumed learner republishes versions the actors already passed; actors ignore
//!   parameters not newer than theirs ([`VecActor::sync`], and the parameter clients) and act
//!   with their copy until the learner's versions pass it (at most the redone updates, during
//!   which the schedule holds the actors anyway). Measured in `cli/tests/faults.rs`.
//! - **Actor seeds.** Actor `i` seeds its environments and exploration from the run seed and `i`
//!   (and a fresh draw per process start, so a restarted actor does not replay the same games).

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use agent::FrontEndShape;
use learner::Learner;
use pkrl_telemetry::names;
use learner_service::{ProgressBoard, ProgressState};
use permakey::model::KeypointModel;
use replay::SampledBatch;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::{
    actor::{front_end_shape, EpisodeRecord, VecActor},
    env::VecEnv,
    run::{crossed, derive_seed, final_evaluation, learn_on, periodic_eval_due, periodic_evaluation, publish_to, write_atomic, write_run_logs, EnvFactory, EvalRecord, FinalScores, MetricsRow, TrainerSettings, Window},
    transport::{KeypointSource, ParameterSink, ParameterSource, ProgressReporter, ReplayClient, ReplayWriter},
};

/// Batches the learner's sampling thread keeps ready.
pub const PREFETCH_DEPTH: usize = 2;
/// How long an actor sleeps between reports while it waits for the learner.
const HOLD_POLL: Duration = Duration::from_millis(20);
/// An actor counts as connected while its last report is at most this old.
const ACTIVE_WITHIN: Duration = Duration::from_secs(30);
const CHECKPOINT_KIND: &str = "distributed-learner";

/// The seed of actor `actor_id`'s environments (`role` 1) or exploration (`role` 3) in process
/// start `start` (the embedded trainer's roles, indices offset per actor).
pub fn actor_seed(seed: u64, role: u64, actor_id: u32, start: u64) -> u64 {
    derive_seed(seed, role, 1_000_000 + u64::from(actor_id) * 1_000 + start)
}

/// What an actor did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActorSummary {
    pub agent_steps: u64,
    pub vector_steps: u64,
    pub games: Vec<EpisodeRecord>,
    /// Parameter version the actor acted with last (learner updates).
    pub parameter_version: Option<u64>,
    /// Vector steps spent waiting for the learner.
    pub held_steps: u64,
    /// The learner said the budget is spent (otherwise `stop` ended the run).
    pub finished_budget: bool,
}

/// Runs one actor until the learner reports the budget spent or `stop` is set; returns what it did.
#[allow(clippy::too_many_arguments)]
pub fn run_actor(
    settings: &TrainerSettings,
    actor_id: u32,
    seed: u64,
    shape: FrontEndShape,
    env: &mut dyn VecEnv,
    front: &mut dyn KeypointSource,
    replay: &mut dyn ReplayWriter,
    params: &dyn ParameterSource,
    progress: &mut dyn ProgressReporter,
    stop: &AtomicBool,
) -> anyhow::Result<ActorSummary> {
    settings.validate()?;
    let t = &settings.train;
    let mut sequence = settings.sequence.clone();
    sequence.obs_shape = env.obs_shape();
    sequence.keypoint_dims = 2 * shape.num_keypoints as usize;
    sequence.recurrent_state_len = if t.store_recurrent_state { 2 * agent::encoders::EMBEDDING as usize } else { 0 };
    let mut actor = VecActor::new(&settings.agent, shape, env.num_actions() as i64, sequence, t.num_envs, seed, t.clip_rewards, Device::Cpu)?;
    // Sequence run ids must differ between actors (the replay keys episodes by env and run).
    actor.set_env_offset(actor_id as usize * t.num_envs)?;
    actor.start(env)?;
    let mut summary = ActorSummary::default();
    let mut reply = progress.report(0, &[], None)?;
    let mut reported_at = 0u64;
    let mut pending: Vec<EpisodeRecord> = Vec::new();
    while !stop.load(Ordering::Acquire) && !reply.done {
        if summary.vector_steps.is_multiple_of(t.parameter_sync_every) {
            actor.sync(params)?;
        }
        let epsilon = t.epsilon(reply.total_agent_steps + (actor.steps - reported_at));
        let finished = actor.step(env, front, replay, epsilon)?;
        summary.vector_steps += 1;
        for game in &finished {
            tracing::info!(actor = actor_id, env = game.env, game_return = game.game_return, game_length = game.game_length, "game finished");
        }
        pending.extend(finished.iter().cloned());
        summary.games.extend(finished);
        reply = progress.report(actor.steps, &pending, actor.version())?;
        reported_at = actor.steps;
        pending.clear();
        let mut held = None;
        while reply.updates_due > reply.updates + t.max_update_lag && !reply.done && !stop.load(Ordering::Acquire) {
            held.get_or_insert_with(Instant::now);
            std::thread::sleep(HOLD_POLL);
            reply = progress.report(actor.steps, &[], actor.version())?;
        }
        if let Some(since) = held {
            summary.held_steps += 1;
            metrics::histogram!(names::ACTOR_HELD_SECONDS).record(since.elapsed().as_secs_f64());
        }
        metrics::gauge!(names::ACTOR_PARAMETER_LAG).set(reply.updates.saturating_sub(actor.version().unwrap_or(0)) as f64);
    }
    let cut = actor.cut(replay)?;
    reply = progress.report(actor.steps, &[], actor.version())?;
    summary.agent_steps = actor.steps;
    summary.parameter_version = actor.version();
    summary.finished_budget = reply.done;
    tracing::info!(actor = actor_id, steps = actor.steps, games = summary.games.len(), truncated_sequences = cut, run_total = reply.total_agent_steps, "actor stopped");
    Ok(summary)
}

/// What a learner checkpoint stores beside its tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LearnerState {
    optimizer_step: u64,
    progress: ProgressState,
    /// Total agent steps the events (evaluations, rows, checkpoints) have been run up to.
    steps_seen: u64,
    episodes: Vec<EpisodeRecord>,
    evals: Vec<EvalRecord>,
    metrics: Vec<MetricsRow>,
    settings: TrainerSettings,
}

/// The learner process's loop.
pub struct DistributedLearner {
    settings: TrainerSettings,
    seed: u64,
    dir: PathBuf,
    front: Box<dyn KeypointModel>,
    envs: EnvFactory,
    learner: Learner,
    progress: Arc<ProgressBoard>,
    steps_seen: u64,
    episodes: Vec<EpisodeRecord>,
    evals: Vec<EvalRecord>,
    metrics: Vec<MetricsRow>,
    window: Window,
    started: Instant,
    checkpointed_at: Option<u64>,
    /// Written to `final_scores.json` as `keypoint_pretrain_frames`.
    pub keypoint_pretrain_frames: Option<u64>,
    time: LoopTime,
    /// How long the learner waits for a batch once the actors have stopped before it gives up the
    /// updates still due (the replay can offer no more samples). Default 30 s.
    pub drain_timeout: Duration,
}

impl DistributedLearner {
    /// A fresh learner writing into `dir`, or the continuation of the one checkpointed there.
    /// `envs` gives the evaluation environments (and the action count).
    pub fn new(settings: TrainerSettings, seed: u64, dir: &Path, front: Box<dyn KeypointModel>, mut envs: EnvFactory, resume: bool) -> anyhow::Result<Self> {
        settings.validate()?;
        if settings.train.background_eval {
            tracing::warn!("train.background_eval applies to the embedded trainer; the distributed learner still pauses its updates for each periodic evaluation");
        }
        if settings.train.final_eval_workers > 1 {
            tracing::warn!("train.final_eval_workers applies to the embedded trainer; the distributed learner plays the final evaluation's seeds one after the other");
        }
        let checkpoints = dir.join("checkpoints");
        let saved = if resume {
            Some(permakey::checkpoint::load::<LearnerState>(&checkpoints, CHECKPOINT_KIND).map_err(|e| anyhow::anyhow!("cannot resume the learner from {}: {e}", dir.display()))?)
        } else {
            anyhow::ensure!(!checkpoints.exists(), "{} already holds a run; pass --resume to continue it or choose another run name", dir.display());
            None
        };
        let settings = match &saved {
            Some(loaded) => {
                let mut s = loaded.meta.config.settings.clone();
                s.train.agent_steps = settings.train.agent_steps.max(s.train.agent_steps);
                s
            }
            None => settings,
        };
        std::fs::create_dir_all(dir)?;
        let shape = front_end_shape(front.as_ref());
        let num_actions = envs(crate::EnvRole::Eval { num_envs: 1 }, 0)?.num_actions() as i64;
        let init_guard = crate::run::NETWORK_INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tch::manual_seed(derive_seed(seed, 2, 0) as i64);
        let mut learner = Learner::new(settings.learner.clone(), &settings.agent, shape, num_actions, front.device())?;
        drop(init_guard);
        let t = settings.train.clone();
        let schedule: learner_service::progress::Schedule = Arc::new(move |steps| t.updates_due(steps.min(t.agent_steps)));
        let (mut progress_state, mut steps_seen, mut records, mut checkpointed_at) = (ProgressState::default(), 0, (Vec::new(), Vec::new(), Vec::new()), None);
        if let Some(loaded) = saved {
            let state = loaded.meta.config.clone();
            let named: Vec<(String, tch::Tensor)> = loaded.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
            learner.load_state(&named, loaded.meta.step, state.optimizer_step)?;
            progress_state = state.progress;
            steps_seen = state.steps_seen;
            records = (state.episodes, state.evals, state.metrics);
            checkpointed_at = Some(steps_seen);
            tracing::info!(agent_steps = steps_seen, updates = learner.updates(), "learner resumed from {}", loaded.dir.display());
        }
        let budget_reached = progress_state.total() >= settings.train.agent_steps;
        let progress = Arc::new(ProgressBoard::new(settings.train.agent_steps, schedule, progress_state, learner.updates()));
        if budget_reached {
            // The checkpoint was written when the actors were told `done`: they may all have
            // exited, and new ones must not start spending steps past the budget.
            progress.finish();
        }
        Ok(Self {
            settings,
            seed,
            dir: dir.to_owned(),
            front,
            envs,
            learner,
            progress,
            steps_seen,
            episodes: records.0,
            evals: records.1,
            metrics: records.2,
            window: Window::default(),
            started: Instant::now(),
            checkpointed_at,
            keypoint_pretrain_frames: None,
            time: LoopTime::default(),
            drain_timeout: Duration::from_secs(30),
        })
    }

    /// The board the learner's `ReportProgress` service must serve.
    pub fn progress(&self) -> Arc<ProgressBoard> {
        self.progress.clone()
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

    /// Trains until the budget is spent (then evaluates, writes `final_scores.json` and returns the
    /// scores) or `stop` is set (then checkpoints and returns `None`). `sampler` moves to the
    /// prefetch thread; `replay` takes priority updates and size queries; `params` gets every
    /// update's parameters.
    pub fn run(&mut self, sampler: Box<dyn ReplayClient>, replay: &mut dyn ReplayClient, params: &dyn ParameterSink, stop: &AtomicBool) -> anyhow::Result<Option<FinalScores>> {
        let t = self.settings.train.clone();
        let budget = t.agent_steps;
        if let Some(scores) = self.finished_scores()? {
            // A resumed run whose budget was spent and evaluated (a supervisor restarted the
            // learner after it finished): answer actors `done` and return the scores as written.
            self.progress.finish();
            publish_to(params, &self.learner)?;
            tracing::info!(agent_steps = self.steps_seen, score = scores.score, "the run has already finished");
            return Ok(Some(scores));
        }
        let batch_size = self.settings.learner.batch_size;
        let (tx, rx) = crossbeam_channel::bounded::<anyhow::Result<SampledBatch>>(PREFETCH_DEPTH);
        let prefetch_stop = Arc::new(AtomicBool::new(false));
        let prefetching = {
            let stop = prefetch_stop.clone();
            let mut sampler = sampler;
            std::thread::Builder::new().name("prefetch".into()).spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if sampler.is_empty() {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    let batch = sampler.sample(batch_size);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })?
        };
        let _stop_prefetch = StopOnDrop(prefetch_stop);
        drop(prefetching); // detached: it may sit in a retrying sample when the run ends
        publish_to(params, &self.learner)?;
        metrics::gauge!(names::LEARNER_BUDGET_AGENT_STEPS).set(budget as f64);
        self.window.since = Some((Instant::now(), self.steps_seen, self.learner.updates()));
        let mut drained_since: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Acquire) {
                if self.checkpointed_at != Some(self.steps_seen) {
                    self.checkpoint(replay)?;
                }
                return Ok(None);
            }
            self.collect_games();
            let total = self.progress.total_agent_steps().min(budget);
            metrics::gauge!(names::LEARNER_RUN_AGENT_STEPS).set(total as f64);
            metrics::gauge!(names::LEARNER_ACTORS).set(self.progress.active_actors(ACTIVE_WITHIN) as f64);
            if total >= budget && !self.progress.is_done() {
                // Before any actor hears `done` (and exits), the counts that say the budget is
                // spent must be on disk: see "The budget is checkpointed" in the crate docs.
                self.collect_games();
                self.save_checkpoint(&format!("step-{:09}-budget", self.steps_seen))?;
                self.progress.finish();
            }
            // Events (evaluations, rows, checkpoints) run at the agent-step points the learner
            // has caught up with, so each sees the updates the embedded trainer would have done.
            let covered = covered_steps(&t, total, self.learner.updates());
            if covered > self.steps_seen {
                let t0 = Instant::now();
                self.after_steps(self.steps_seen, covered, replay)?;
                self.time.events += t0.elapsed();
            }
            if covered >= budget {
                return self.finish(replay).map(Some);
            }
            let due = t.updates_due(total);
            if self.learner.updates() < due {
                let batch = match rx.try_recv() {
                    Ok(batch) => Some(batch),
                    Err(crossbeam_channel::TryRecvError::Disconnected) => anyhow::bail!("the replay sampling thread stopped"),
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        self.progress.set_waiting_for_data(true);
                        let waited = Instant::now();
                        let got = rx.recv_timeout(Duration::from_millis(200));
                        self.time.batch_wait += waited.elapsed();
                        metrics::histogram!(names::LEARNER_BATCH_WAIT_SECONDS).record(waited.elapsed().as_secs_f64());
                        self.progress.set_waiting_for_data(false);
                        match got {
                            Ok(batch) => Some(batch),
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => anyhow::bail!("the replay sampling thread stopped"),
                        }
                    }
                };
                match batch {
                    Some(batch) => {
                        drained_since = None;
                        let t0 = Instant::now();
                        learn_on(&mut self.learner, self.front.as_ref(), &batch?, replay, &mut self.window, &self.settings)?;
                        let t1 = Instant::now();
                        publish_to(params, &self.learner)?;
                        self.time.update += t1 - t0;
                        self.time.publish += t1.elapsed();
                        self.progress.set_updates(self.learner.updates());
                    }
                    None if self.progress.is_done() => {
                        let since = *drained_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.drain_timeout {
                            tracing::warn!(due, done = self.learner.updates(), "the replay offers no more samples after the actors stopped; skipping the updates still due");
                            self.after_steps(self.steps_seen, budget, replay)?;
                            return self.finish(replay).map(Some);
                        }
                    }
                    None => {}
                }
                continue;
            }
            let idle = Instant::now();
            std::thread::sleep(Duration::from_millis(2));
            self.time.actor_wait += idle.elapsed();
        }
    }

    /// `final_scores.json` of a run whose budget the restored checkpoint has covered.
    fn finished_scores(&self) -> anyhow::Result<Option<FinalScores>> {
        let path = self.dir.join("final_scores.json");
        if self.steps_seen < self.settings.train.agent_steps || !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        Ok(Some(serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?))
    }

    fn collect_games(&mut self) {
        let envs_per_actor = self.settings.train.num_envs;
        for game in self.progress.drain_games() {
            self.episodes.push(EpisodeRecord {
                agent_steps: game.total_agent_steps,
                env: game.actor_id as usize * envs_per_actor + game.env_id as usize,
                game_return: game.game_return,
                game_length: game.game_length,
            });
        }
    }

    /// Evaluation, checkpoint and metrics row due between `before` and `now` total agent steps.
    fn after_steps(&mut self, before: u64, now: u64, replay: &mut dyn ReplayClient) -> anyhow::Result<()> {
        let t = self.settings.train.clone();
        self.steps_seen = now;
        let passed = |every| crossed(every, before, now);
        if periodic_eval_due(&t, before, now) {
            let index = self.evals.len() as u64;
            let record = periodic_evaluation(&self.learner, self.front.as_ref(), &mut self.envs, &t, self.seed, index, now)?;
            self.evals.push(record);
        }
        if passed(t.checkpoint_every) && now < t.agent_steps {
            self.checkpoint(replay)?;
        } else if passed(1000) {
            self.log_row(replay)?;
        }
        Ok(())
    }

    fn log_row(&mut self, replay: &dyn ReplayClient) -> anyhow::Result<()> {
        let now = self.steps_seen;
        if self.metrics.last().is_none_or(|row| row.agent_steps != now) {
            let w = std::mem::take(&mut self.window);
            let row = w.into_row(self.started, now, self.learner.updates(), &self.episodes, self.settings.train.epsilon(now), replay.len() as u64);
            self.metrics.push(row);
            self.window.since = Some((Instant::now(), now, self.learner.updates()));
        }
        write_run_logs(&self.dir, &self.metrics, &self.evals, &self.episodes, self.settings.train.agent_steps)
    }

    fn checkpoint(&mut self, replay: &dyn ReplayClient) -> anyhow::Result<()> {
        self.collect_games();
        self.log_row(replay)?;
        let name = format!("step-{:09}", self.steps_seen);
        self.save_checkpoint(&name)?;
        self.checkpointed_at = Some(self.steps_seen);
        Ok(())
    }

    /// Writes the learner and the run's accounting (games collected so far) as checkpoint `name`
    /// and points `latest` at it.
    fn save_checkpoint(&mut self, name: &str) -> anyhow::Result<()> {
        let (named, updates, optimizer_step) = self.learner.state();
        let state = LearnerState {
            optimizer_step,
            progress: self.progress.state(),
            steps_seen: self.steps_seen,
            episodes: self.episodes.clone(),
            evals: self.evals.clone(),
            metrics: self.metrics.clone(),
            settings: self.settings.clone(),
        };
        permakey::checkpoint::save_named(&self.dir.join("checkpoints"), name, CHECKPOINT_KIND, &state, named, updates, 0, serde_json::Value::Null, |_| Ok(()))?;
        tracing::info!(updates, "learner checkpoint {name}");
        Ok(())
    }

    fn finish(&mut self, replay: &mut dyn ReplayClient) -> anyhow::Result<FinalScores> {
        self.time.log(self.started.elapsed());
        self.collect_games();
        self.log_row(replay)?;
        let t = self.settings.train.clone();
        let scores = final_evaluation(&self.learner, self.front.as_ref(), &mut [], &mut self.envs, &t, self.seed, self.steps_seen, self.episodes.len() as u64, &self.evals)?;
        let scores = FinalScores { keypoint_pretrain_frames: self.keypoint_pretrain_frames, wall_seconds: self.started.elapsed().as_secs_f64(), ..scores };
        write_atomic(&self.dir.join("final_scores.json"), serde_json::to_string_pretty(&scores)?.as_bytes())?;
        write_run_logs(&self.dir, &self.metrics, &self.evals, &self.episodes, t.agent_steps)?;
        self.checkpoint(replay)?;
        Ok(scores)
    }
}

/// The largest agent-step count up to `total` whose due updates `updates` covers.
fn covered_steps(t: &crate::TrainConfig, total: u64, updates: u64) -> u64 {
    if t.updates_due(total) <= updates {
        total
    } else {
        // updates_due(s) = (s - learning_starts) / train_every <= updates  <=>  s < learning_starts + (updates + 1) * train_every
        (t.learning_starts + (updates + 1) * t.train_every - 1).min(total)
    }
}

/// Where the learner's loop spent its time (logged when the run ends).
#[derive(Debug, Default, Clone, Copy)]
struct LoopTime {
    /// Learner updates (sampled batch -> gradients -> priorities).
    update: Duration,
    /// Publishing parameters after each update.
    publish: Duration,
    /// Waiting for the prefetch thread's next batch.
    batch_wait: Duration,
    /// Nothing due: waiting for the actors' steps.
    actor_wait: Duration,
    /// Evaluations, metrics rows, checkpoints.
    events: Duration,
}

impl LoopTime {
    fn log(&self, total: Duration) {
        let s = |d: Duration| format!("{:.1}", d.as_secs_f64());
        tracing::info!(
            total_s = s(total),
            update_s = s(self.update),
            publish_s = s(self.publish),
            batch_wait_s = s(self.batch_wait),
            actor_wait_s = s(self.actor_wait),
            events_s = s(self.events),
            "learner loop time"
        );
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The wire report of an actor's progress.
pub fn progress_request(actor_id: u32, run_id: u64, agent_steps: u64, finished: &[EpisodeRecord], parameter_version: Option<u64>, envs_per_actor: usize) -> pkrl_proto::v1::ReportProgressRequest {
    pkrl_proto::v1::ReportProgressRequest {
        actor_id,
        run_id,
        agent_steps,
        finished: finished
            .iter()
            .map(|g| pkrl_proto::v1::FinishedGame { env_id: (g.env % envs_per_actor.max(1)) as u32, game_return: g.game_return, game_length: g.game_length.max(1) })
            .collect(),
        parameter_version: parameter_version.map_or(0, |v| v + 1),
    }
}

fn reply_from(response: pkrl_proto::v1::ReportProgressResponse) -> crate::ProgressReply {
    crate::ProgressReply { total_agent_steps: response.total_agent_steps, updates: response.updates, updates_due: response.updates_due, done: response.done }
}

/// An actor's reports to a [`ProgressBoard`] in the same process (tests, one-process clusters)
/// or, through [`learner_service::RemoteParameters`], to the learner's service.
pub struct Reporter<B> {
    pub board: B,
    pub actor_id: u32,
    /// Drawn per actor process start (see [`learner_service::progress`]).
    pub run_id: u64,
    pub envs_per_actor: usize,
}

impl ProgressReporter for Reporter<Arc<ProgressBoard>> {
    fn report(&mut self, agent_steps: u64, finished: &[EpisodeRecord], parameter_version: Option<u64>) -> anyhow::Result<crate::ProgressReply> {
        let request = progress_request(self.actor_id, self.run_id, agent_steps, finished, parameter_version, self.envs_per_actor);
        pkrl_proto::validate::validate_report_progress(&request)?;
        Ok(reply_from(self.board.report(&request)))
    }
}

impl ProgressReporter for Reporter<Arc<learner_service::RemoteParameters>> {
    fn report(&mut self, agent_steps: u64, finished: &[EpisodeRecord], parameter_version: Option<u64>) -> anyhow::Result<crate::ProgressReply> {
        let mut reply = crate::ProgressReply::default();
        // Keep each request within the server's limit on games per report.
        let chunks: Vec<&[EpisodeRecord]> = if finished.is_empty() { vec![&[]] } else { finished.chunks(pkrl_proto::validate::MAX_FINISHED_GAMES_PER_REPORT).collect() };
        for chunk in chunks {
            let request = progress_request(self.actor_id, self.run_id, agent_steps, chunk, parameter_version, self.envs_per_actor);
            reply = reply_from(self.board.report_progress(&request)?);
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_wait_for_the_updates_their_steps_made_due() {
        let t = crate::TrainConfig { learning_starts: 100, train_every: 4, agent_steps: 1000, ..crate::TrainConfig::default() };
        assert_eq!(covered_steps(&t, 80, 0), 80, "nothing due before learning starts");
        assert_eq!(covered_steps(&t, 200, 25), 200, "all 25 updates of 200 steps done");
        // 200 steps owe 25 updates; with 10 done the learner has covered up to step 143 (due 10).
        assert_eq!(covered_steps(&t, 200, 10), 143);
        assert_eq!((t.updates_due(143), t.updates_due(144)), (10, 11));
        assert_eq!(covered_steps(&t, 150, 0), 103);
    }
}
