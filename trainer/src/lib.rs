//! The embedded trainer (issue 7): environments, batched keypoint inference, the acting agent,
//! the sequence replay and the learner in one process — the default of `permakey-rl run`.
//!
//! # Shape of one run
//!
//! ```text
//!  VecEnv (N envs on threads) --frames--> frozen KeypointModel (one batch of N frames)
//!      ^                                        | centres K x 2, features C x H x W
//!      | actions (epsilon-greedy)               v
//!  VecActor: KeypointAgent step (LSTM state per env) --SequenceWriter--> ReplayClient
//!                 ^ ParameterSource                                          |
//!                 |                                                          v sample / priorities
//!           ParameterSink <-- Learner: recurrent double-Q update (features recomputed from frames)
//! ```
//!
//! The boxes talk through the interfaces of [`transport`], with in-process implementations
//! there and gRPC ones in [`remote`] (the replay and parameter services' clients).
//!
//! # Decisions
//!
//! - **Lockstep schedule.** One iteration is one vector step of all `N` environments followed by
//!   exactly the gradient updates that step made due (`(steps - learning_starts) / train_every`,
//!   the reference's one update per 4 environment steps). Acting and learning alternate on the
//!   same cores, which on a 2-core machine loses little against threads (both halves are torch
//!   ops that already use every core) and makes a run a pure function of its seed: the resume
//!   test depends on that. This is the default (`train.mode = "lockstep"`).
//! - **Threads mode** (`train.mode = "threads"`): the actor steps on its own thread with its own
//!   front-end instance and sends every vector step's sequences and finished games to the
//!   learner's thread over a bounded crossbeam channel; the learner stores them, runs the updates
//!   the reported steps made due and publishes parameters after each; the actor waits while the
//!   learner is more than `max_update_lag` updates behind, so the schedule (one update per
//!   `train_every` agent steps) holds while acting and learning overlap — the shape of the
//!   distributed system, in one process. Evaluations, checkpoints and metrics rows happen with
//!   the actor thread joined, exactly as in lockstep. Thread timing decides which parameter
//!   version acts at each step, so runs are not bit-reproducible.
//! - **Pipelined mode** (`train.mode = "pipelined"`): the actor takes each vector step on its own
//!   thread (own front-end instance) while the learner's thread runs the updates due at the
//!   steps stored before it; after every step the two meet, the step's sequences go to replay,
//!   the parameters are published and the actor goes on. The actor's step `k + 1` acts with the
//!   parameters after the updates due at step `k - 1` instead of `k`; each update samples the
//!   replay as it stands after the step that made it due, as in lockstep; at every evaluation,
//!   checkpoint and metrics row the updates due so far have run. Nothing depends on thread timing, so runs repeat and resume exactly (test:
//!   `pipelined_runs_repeat_and_resume_exactly`). Decision (issue 11): on the H200 both halves
//!   were the host issuing small kernels one after the other on one thread, ~12 s of acting
//!   against ~77 s of updates in the shortened run; the one-step parameter lag is the price of
//!   overlapping them without giving up reproducibility (an actor of the distributed system lags
//!   by more).
//! - **Replay stores frames plus keypoint centres.** The learner recomputes the front end's
//!   features from each sampled frame with [`permakey::model::KeypointModel::features`] (the VAE
//!   encoder only) and renders the heatmaps from the stored centres; the expensive LSP + PointNet
//!   pass runs once per environment step, never per sample. Exact, since the front end is frozen.
//! - **Checkpoints are episode cuts.** At every checkpoint the actor ends all running episodes as
//!   truncated (their sequences go to replay), the learner, the replay table (snapshot), the
//!   random generators and all logs are saved atomically, and the environments restart from
//!   seeds derived from the run seed and the checkpoint number. A run that stops at a checkpoint
//!   and is resumed therefore continues exactly as the uninterrupted run does; the price is one
//!   truncated episode per environment and checkpoint (4 per 25k steps with the defaults).
//! - **Evaluation** (spec 8): every `eval_every` agent steps after `learning_starts`, greedy
//!   (epsilon 0) whole games on separate environments seeded per evaluation, LSTM reset per game,
//!   raw scores; the final evaluation plays `final_eval_episodes` games after the budget. A
//!   periodic evaluation that would fall on the budget itself is skipped: the final one plays the
//!   same network right after (decision of issue 11's profile; saves one of the protocol's ten).
//!   With `train.background_eval` the periodic evaluations run on a thread of their own, on a
//!   copy of the online network and a front-end instance of their own
//!   ([`Trainer::add_eval_front`]), while training goes on; the records are the same (test:
//!   `evaluations_in_the_background_give_the_foreground_records`) and are joined at the next
//!   evaluation, at checkpoints and before the final evaluation. Decision (issue 11's profile):
//!   the H200 run spent ~8 s per periodic evaluation with the training thread idle.
//!   `train.final_eval_workers` deals the final evaluation's seeds round-robin to the training
//!   thread and up to that many minus one scoped threads, each with a network copy and one of the
//!   same front-end instances; the records are those of one thread (test:
//!   `final_evaluation_threads_give_the_records_of_one_thread`). Decision (same profile): the
//!   H200 played the 5 seeds one after the other, ~6.6 s each, with 10 games per seed as a
//!   batch of 10 that leaves the GPU and the 16 cores mostly idle.
//! - **Parameter sync.** The actor holds its own copy of the online network and refreshes it
//!   every `parameter_sync_every` vector steps (default 1: it acts with the newest parameters,
//!   as the single-process reference does); at checkpoints it always refreshes. In this process
//!   the learner publishes to a [`LocalParameters`] board, which keeps the parameters as tensors
//!   on the learner's device and copies them into the actor's network there (no host round trip;
//!   issue 11's profile); the distributed mode's actors fetch plain arrays over gRPC.
//!
//! # Run folder
//!
//! `config.toml` (resolved, written by the CLI), `metrics.csv` (every 1000 agent steps and at
//! checkpoints), `eval.csv`, `episodes.csv`, `learning_curve.png`, `final_scores.json`,
//! `checkpoints/<step-N>/` + `checkpoints/latest`.

pub mod actor;
pub mod config;
pub mod distributed;
pub mod env;
pub mod plot;
pub mod remote;
pub mod run;
pub mod toy;
pub mod transport;

pub use actor::{evaluate, front_end_shape, EpisodeRecord, VecActor};
pub use config::{TrainConfig, TrainMode};
pub use env::{EnvStep, VecEnv};
/// The commit this crate was built from (`trainer/build.rs`): a short hash, or "unknown" when
/// built without git and without `PKRL_BUILD_COMMIT`. Written into every `final_scores.json`.
pub const BUILD_COMMIT: &str = env!("PKRL_BUILD_COMMIT");
/// The `--version` text of every binary: the package version and [`BUILD_COMMIT`].
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PKRL_BUILD_COMMIT"), ")");

pub use run::{EnvFactory, EnvRole, EvalRecord, FinalScores, MetricsRow, Timing, Trainer, TrainerSettings};
pub use distributed::{run_actor, ActorSummary, DistributedLearner};
pub use transport::{KeypointSource, LocalKeypoints, LocalParameters, LocalReplay, ParameterSink, ParameterSource, Parameters, ProgressReply, ProgressReporter, ReplayClient, ReplayWriter};
