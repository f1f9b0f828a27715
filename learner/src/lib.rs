//! The PermaKey-RL learner's maths: recurrent double-DQN targets, loss, priorities, schedules,
//! target-network maintenance and gradient clipping (spec `permakey-reference.md` 7.3, 7.4, 9b, 10).
//!
//! Everything here is a pure function of its inputs (slices, tensors, or two var-stores), so the
//! learner loop built on it stays a thin sequence of calls. One update on a sampled batch:
//!
//! ```text
//! q_online  = online_net.unroll(observations)                 // [B, T, A], with grad
//! q_online_next, q_target = no_grad(online_net, target_net)   // [B, T, A]
//! NStepTargets { targets, valid_mask } =
//!     n_step_double_q_targets(rewards, dones, q_online_next, q_target, 3, 0.99)
//! action_values = select_action_values(q_online, actions)     // [B, T]
//! TdLoss { loss, td_errors } = td_loss(action_values, targets, valid_mask, weights)
//! optimizer.zero_grad(); loss.backward()
//! clip_gradients_by_global_norm(online_store.trainable_variables(), 10.0)
//! optimizer.step()
//! TargetUpdateRule::default().apply(target_store, online_store, update_index)  // Polyak 0.005
//! priorities = sequence_priorities(td_errors, valid_mask, 0.9) // only with prioritised replay
//! epsilon = exploration_epsilon_schedule(total_env_steps, 1.0).value(env_step)
//! ```
//!
//! (`q_online_next` is the same online network's Q-values, detached; with a single unroll it is
//! just `q_online.detach()`.)
//!
//! # Paper / reference features, by module
//!
//! - [`targets`]: n-step (n = 3, γ = 0.99) double-Q targets for a recurrent Q-network (spec 7.4,
//!   `trfl.double_qlearning`), episode ends truncating the return, a mask for positions without a
//!   bootstrap; a slice reference implementation and the batched tensor version.
//! - [`loss`]: `0.5 · TD²` averaged over valid batch × window positions (spec 7.4), optional
//!   per-sequence importance weights, R2D2 sequence priorities `η max|δ| + (1-η) mean|δ|`, η = 0.9.
//! - [`schedules`]: linear ε 1.0 → 0.1 over the whole run (spec 7.4); Keras `InverseTimeDecay`
//!   for PermaKey (2e-4, 10000, 0.85) and Transporter (2e-4, 30000, 0.9) pre-training (spec 5, 6).
//! - [`target_net`]: hard copy and Polyak (τ = 0.005) target updates (spec 7.4, 9b).
//! - [`gradients`]: global-norm gradient clipping at 10, TensorFlow's rule (spec 7.4).
//!
//! # Decisions
//!
//! - **Aligned n-step target** (decision 9b, spec 7.4, 10.5): `Q(o_t, a_t)` learns towards
//!   `Σ_{k<n} γ^k r_{t+k} + γ^n (1 - done) Q_target(o_{t+n}, argmax_a Q_online(o_{t+n}, a))`;
//!   `done_t` means the step-`t` transition ended the episode. The reference's misaligned target
//!   (rewards of the three earlier actions, bootstrap four steps ahead with γ³) is documented in
//!   [`targets`] and not offered: it needs a second LSTM unroll, not a flag on these functions.
//! - **Sequence length**: with aligned targets a window of `W` learning positions needs `W + n`
//!   items (11 for W = 8, n = 3), one fewer than the reference's `W + n + 1 = 12`; positions past
//!   `T - n` are masked unless the episode ended.
//! - **Loss normalisation**: divided by the number of valid positions (= batch × window when all
//!   are valid, as in the reference); importance weights do not change the divisor.
//! - **Target network** (decision 9b, spec 10.6): hard copy at start, then Polyak τ = 0.005 per
//!   update, or hard copies every N updates as an option; over all variables *including*
//!   batch-norm running statistics (the reference averages trainable variables only and so never
//!   updates the target's statistics).
//! - **Gradient clipping**: TensorFlow's `clip_by_global_norm` rule `c / max(N, c)` rather than
//!   tch's `c / (N + 1e-6)`; the pre-clip norm is returned for logging; a non-finite norm is an
//!   error and leaves gradients untouched.
//! - **Priorities** are for an optional prioritised replay; the reference samples uniformly.
//! - **Feature cache** ([`feature_cache`], not in the reference): the frozen front end's features
//!   of a replayed frame are computed once and reused by later updates while they fit in
//!   `learner.feature_cache_mib` (default 1024 MiB, 0 = off), instead of once per sampling. Same
//!   values; in the CPU profile the recomputation was 35% of the runs' wall time.

pub mod error;
pub mod feature_cache;
pub mod gradients;
pub mod loss;
pub mod schedules;
pub mod target_net;
pub mod targets;
pub mod update;

pub use error::LearnerError;
pub use gradients::{GRADIENT_CLIP_NORM, clip_gradients_by_global_norm, global_gradient_norm};
pub use loss::{R2D2_PRIORITY_ETA, TdLoss, sequence_priorities, sequence_priority, sequence_priority_tensor, td_loss};
pub use schedules::{
    EPSILON_END, EPSILON_START, EXPLORATION_FRACTION, InverseTimeDecay, LinearSchedule,
    exploration_epsilon_schedule,
};
pub use target_net::{POLYAK_TAU, TargetUpdateRule, hard_update, soft_update};
pub use targets::{
    DEFAULT_DISCOUNT, DEFAULT_N_STEP, NStepTargets, n_step_double_q_targets,
    n_step_double_q_targets_reference, select_action_values,
};
pub use feature_cache::{CachedFeatures, FeatureCache};
pub use update::{DEFAULT_FEATURE_CACHE_MIB, Learner, LearnerConfig, SequenceTensors, UpdatePhases, UpdateStats, load_named, named_cpu_copies, sequence_tensors};
