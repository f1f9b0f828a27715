//! [`Learner`]: one recurrent double-Q update of a [`KeypointAgent`] on a batch of replay
//! sequences, the target network, the optimiser and the published parameters.
//!
//! Inputs of the agent per stored step: the frozen front end's features, recomputed from the
//! stored frame ([`KeypointModel::features`], the cheap part of the model) unless the learner's
//! [`FeatureCache`] still holds them from an earlier update (`learner.feature_cache_mib`), and
//! the keypoint centres the actor stored with the frame (the expensive part, LSP + PointNet, is
//! never re-run). Only the frames whose features the cache lacks are converted and uploaded
//! ([`FeatureCache::features_of_rows`]); a warm cache's batch moves no frames at all.
//!
//! Masks of the loss, per sequence and position `t` (all multiplied):
//! - the n-step target exists ([`crate::n_step_double_q_targets`]'s `valid_mask`; padding steps
//!   are stored with `done = 1`, so a terminated episode's return stops at its real end);
//! - `t >= burn_in` (burn-in steps only warm the LSTM; the state is detached at `t = burn_in`);
//! - `t < valid_len` (no padding position learns);
//! - for a *truncated* sequence (cut without terminating), `t + n < valid_len`: the bootstrap
//!   observation `o_{t+n}` must be stored, since the padding's `done` flags would otherwise end the
//!   return as if the episode had terminated.
//!
//! The LSTM starts from the sequence's stored recurrent state when there is one (R2D2's stored
//! state), else from zeros (the reference).
//!
//! Padding steps never reach a network: only the valid steps' frames are converted and encoded,
//! and the LSTM sees a zero embedding at padding positions (whose outputs every mask drops).
//! Decision: encoding the padding's blank frames in training mode lets them dominate the
//! encoders' batch-norm statistics on short episodes (the toy corridor's episodes of 3-8 steps
//! fill a 12-step sequence with 4-9 blank steps), so the running averages used while acting
//! describe no real frame. The reference has no padding at all (it skips episodes shorter than
//! a sequence). It also saves the padding's share of the encoder's compute.

use std::sync::Arc;

use agent::{AgentConfig, FrontEndShape, KeypointAgent, LstmState};
use permakey::{
    model::KeypointModel,
    optim::{Adam, AdamConfig},
};
use replay::Sequence;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::{
    feature_cache::FeatureCache,
    clip_gradients_by_global_norm, n_step_double_q_targets, select_action_values, sequence_priority_tensor, td_loss,
    LearnerError, TargetUpdateRule, DEFAULT_DISCOUNT, DEFAULT_N_STEP, R2D2_PRIORITY_ETA,
};

/// The learner's settings (spec 7.4 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerConfig {
    /// Sequences per update (16).
    pub batch_size: usize,
    /// n of the n-step return (3).
    pub n_step: usize,
    /// Discount gamma (0.99).
    pub discount: f64,
    /// Adam learning rate (1e-4), beta 0.9 / 0.999, epsilon 1e-8 (tf.compat.v1 Adam).
    pub learning_rate: f64,
    pub adam_eps: f64,
    /// Global-norm gradient clip (10).
    pub max_grad_norm: f64,
    /// Polyak tau 0.005 after every update (default) or hard copies every N updates.
    pub target_update: TargetUpdateRule,
    /// R2D2's eta mixing max and mean |TD| into a sequence priority (0.9).
    pub priority_eta: f64,
    /// MiB of the learner's device memory for the front end's features of replayed frames
    /// ([`FeatureCache`], 0 = off: recompute every sampled frame). Not in the reference, which
    /// recomputes; the values are the same either way.
    pub feature_cache_mib: usize,
}

/// Default of [`LearnerConfig::feature_cache_mib`]: every frame of the CPU profile's runs
/// (~4000 frames of 226 KB), or ~2100 frames of the reference's 452 KB maps.
pub const DEFAULT_FEATURE_CACHE_MIB: usize = 1024;

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            n_step: DEFAULT_N_STEP,
            discount: DEFAULT_DISCOUNT,
            learning_rate: 1e-4,
            adam_eps: 1e-8,
            max_grad_norm: crate::GRADIENT_CLIP_NORM,
            target_update: TargetUpdateRule::default(),
            priority_eta: R2D2_PRIORITY_ETA,
            feature_cache_mib: DEFAULT_FEATURE_CACHE_MIB,
        }
    }
}

impl LearnerConfig {
    pub fn validate(&self) -> Result<(), LearnerError> {
        let bad = |m: String| Err(LearnerError::InvalidArgument(m));
        if self.batch_size == 0 {
            return bad("learner.batch_size must be at least 1".into());
        }
        if self.n_step == 0 {
            return bad("learner.n_step must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.discount) {
            return bad(format!("learner.discount must lie in [0, 1], got {}", self.discount));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!("learner.learning_rate must be positive, got {}", self.learning_rate));
        }
        if !(self.max_grad_norm > 0.0 && self.max_grad_norm.is_finite()) {
            return bad(format!("learner.max_grad_norm must be positive, got {}", self.max_grad_norm));
        }
        if self.feature_cache_mib > 1 << 30 {
            return bad(format!("learner.feature_cache_mib must be at most 2^30 (MiB), got {}", self.feature_cache_mib));
        }
        Ok(())
    }
}

/// What one update did.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateStats {
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Mean `Q(o_t, a_t)` over the trained positions.
    pub mean_q: f64,
    /// New priority of each sequence of the batch, in order.
    pub priorities: Vec<f64>,
    /// Positions that contributed to the loss.
    pub trained_positions: usize,
    /// Where the update's time went.
    pub phases: UpdatePhases,
}

/// Wall seconds of one update's phases, measured on the host without device synchronisation:
/// exact on the CPU; on CUDA a phase ends when its kernels are queued, and the queue drains in
/// `backward_s`, whose loss read-back waits for it, so CUDA figures show the host side. Also
/// where the valid frames' features came from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpdatePhases {
    /// Stacking the sequences into tensors and moving them to the device.
    pub batch_s: f64,
    /// The frozen front end's features of the batch's valid frames (cache look-ups included).
    pub features_s: f64,
    /// Valid frames whose features came from the [`FeatureCache`],
    pub features_cached: u64,
    /// and those the front end computed in this update.
    pub features_computed: u64,
    /// Online network: keypoint encoder and LSTM unroll, with autograd.
    pub online_s: f64,
    /// Target network: encoder and unroll without gradients; n-step double-Q targets; loss.
    pub target_s: f64,
    /// Backward, gradient clipping, Adam, target update and the statistics read back.
    pub backward_s: f64,
}

/// A batch of sequences as tensors on the learner's device.
#[derive(Debug)]
pub struct SequenceTensors {
    /// `N x 3 x 84 x 84` floats in `[0, 1]`: the frames of the valid (non-padding) steps only,
    /// sequence-major, `N = sum of valid_len`.
    pub frames: Tensor,
    /// `N` int64: the position `b * T + t` of each row of `frames` in the flattened batch.
    pub valid_index: Tensor,
    /// `B x T x K x 2`.
    pub centres: Tensor,
    /// `B x T` int64, float, float.
    pub actions: Tensor,
    pub rewards: Tensor,
    pub dones: Tensor,
    /// `B x T` float: 1 where a position may learn (see the module docs), before the targets' mask.
    pub position_mask: Tensor,
    /// `B x T` bool: detach the state before this step (at `t = burn_in`, when `burn_in > 0`).
    pub stops: Tensor,
    /// The steps where any sequence of the batch stops (`stops`' set columns, known on the host).
    pub stop_steps: Vec<i64>,
    /// Initial LSTM state (stored or zeros).
    pub state: LstmState,
}

/// Stacks `sequences` into tensors; `num_keypoints` K must match every sequence's `keypoint_dims / 2`.
pub fn sequence_tensors(sequences: &[Arc<Sequence>], num_keypoints: i64, n_step: usize, device: Device) -> Result<SequenceTensors, LearnerError> {
    build_sequence_tensors(sequences, num_keypoints, n_step, device, true)
}

/// [`sequence_tensors`]; without `with_frames`, `frames` is left empty (`0 x C x H x W`) and only
/// the byte counts are checked: [`Learner::update`] converts just the frames the feature cache
/// lacks, from the sequences' bytes (on a GPU run ~95% of them are cached, and converting and
/// uploading all 192 frames of a batch was most of building it).
fn build_sequence_tensors(sequences: &[Arc<Sequence>], num_keypoints: i64, n_step: usize, device: Device, with_frames: bool) -> Result<SequenceTensors, LearnerError> {
    let first = sequences.first().ok_or_else(|| LearnerError::InvalidArgument("an update needs at least one sequence".into()))?;
    let (steps, shape) = (first.len(), first.obs_shape);
    let frame_len: usize = shape.iter().product();
    let state_len = first.initial_recurrent_state.len();
    let dims = 2 * num_keypoints as usize;
    let batch = sequences.len();
    let mut frames = Vec::with_capacity(batch * first.observations.len());
    let (mut centres, mut actions, mut rewards, mut dones) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut mask, mut stops, mut states, mut valid_index) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut stop_steps = Vec::new();
    for (i, s) in sequences.iter().enumerate() {
        if s.len() != steps || s.obs_shape != shape || s.initial_recurrent_state.len() != state_len {
            return Err(LearnerError::InvalidArgument(format!(
                "sequence {i} of the batch has {} steps of {:?} and a {}-float state; the first has {steps} of {shape:?} and {state_len}",
                s.len(),
                s.obs_shape,
                s.initial_recurrent_state.len()
            )));
        }
        if usize::from(s.keypoint_dims) != dims || s.keypoints.len() != steps * dims {
            return Err(LearnerError::InvalidArgument(format!(
                "sequence {i} stores {} keypoint floats per step, the model has {num_keypoints} keypoints ({dims} floats)",
                s.keypoint_dims
            )));
        }
        let (valid, burn_in) = (s.valid_len(), usize::from(s.burn_in));
        if s.observations.len() != steps * frame_len {
            return Err(LearnerError::InvalidArgument(format!(
                "sequence {i} of the batch has {} observation bytes for {steps} steps of {shape:?}",
                s.observations.len()
            )));
        }
        if with_frames {
            frames.extend_from_slice(&s.observations[..valid * frame_len]);
        }
        valid_index.extend((0..valid).map(|t| (i * steps + t) as i64));
        centres.extend_from_slice(&s.keypoints);
        actions.extend(s.actions.iter().map(|&a| i64::from(a)));
        rewards.extend_from_slice(&s.rewards);
        dones.extend(s.dones.iter().map(|&d| if d { 1f32 } else { 0.0 }));
        let last_learnable = if s.truncated { valid.saturating_sub(n_step) } else { valid };
        mask.extend((0..steps).map(|t| if t >= burn_in && t < last_learnable { 1f32 } else { 0.0 }));
        stops.extend((0..steps).map(|t| burn_in > 0 && t == burn_in));
        if burn_in > 0 && burn_in < steps && !stop_steps.contains(&(burn_in as i64)) {
            stop_steps.push(burn_in as i64);
        }
        states.extend_from_slice(&s.initial_recurrent_state);
    }
    let (b, t) = (batch as i64, steps as i64);
    let [h, w, c] = shape.map(|x| x as i64);
    let frames = if with_frames {
        permakey::model::try_frames_to_tensor(&frames, valid_index.len() as i64, h, w, c, device).map_err(|e| LearnerError::InvalidArgument(e.to_string()))?
    } else {
        Tensor::zeros([0, c, h, w], (Kind::Float, device))
    };
    let state = if state_len == 0 {
        LstmState::zeros(b, device)
    } else {
        LstmState::from_flat(&Tensor::from_slice(&states).view([b, state_len as i64]).to_device(device))
    };
    Ok(SequenceTensors {
        frames,
        valid_index: Tensor::from_slice(&valid_index).to_device(device),
        centres: Tensor::from_slice(&centres).view([b, t, num_keypoints, 2]).to_device(device),
        actions: Tensor::from_slice(&actions).view([b, t]).to_device(device),
        rewards: Tensor::from_slice(&rewards).view([b, t]).to_device(device),
        dones: Tensor::from_slice(&dones).view([b, t]).to_device(device),
        position_mask: Tensor::from_slice(&mask).view([b, t]).to_device(device),
        stops: Tensor::from_slice(&stops).view([b, t]).to_device(device),
        stop_steps,
        state,
    })
}

/// The learner's networks and optimiser.
#[derive(Debug)]
pub struct Learner {
    pub config: LearnerConfig,
    online_vs: nn::VarStore,
    online: KeypointAgent,
    target_vs: nn::VarStore,
    target: KeypointAgent,
    optimizer: Adam,
    updates: u64,
    feature_cache: FeatureCache,
}

impl Learner {
    /// A fresh online network (seeded by the caller through `tch::manual_seed`) and a hard-copied
    /// target on `device`.
    pub fn new(config: LearnerConfig, agent: &AgentConfig, front: FrontEndShape, num_actions: i64, device: Device) -> Result<Self, LearnerError> {
        config.validate()?;
        let online_vs = nn::VarStore::new(device);
        let online = KeypointAgent::new(&online_vs.root(), agent, front, num_actions);
        let mut target_vs = nn::VarStore::new(device);
        let target = KeypointAgent::new(&target_vs.root(), agent, front, num_actions);
        crate::hard_update(&mut target_vs, &online_vs)?;
        let optimizer = Adam::new(
            &online_vs,
            AdamConfig { learning_rate: config.learning_rate, decay_rate: 0.0, eps: config.adam_eps, ..AdamConfig::default() },
        );
        let feature_cache = FeatureCache::new(config.feature_cache_mib << 20);
        Ok(Self { config, online_vs, online, target_vs, target, optimizer, updates: 0, feature_cache })
    }

    /// Completed updates.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    pub fn online(&self) -> (&nn::VarStore, &KeypointAgent) {
        (&self.online_vs, &self.online)
    }

    /// The cache of the front end's features ([`LearnerConfig::feature_cache_mib`]).
    pub fn feature_cache(&self) -> &FeatureCache {
        &self.feature_cache
    }

    /// One update on `sequences` with importance `weights` (all 1 for uniform replay).
    ///
    /// `front` must stay the same frozen model from update to update while features are cached:
    /// cached features belong to the model object at `front`'s address (another address empties
    /// the cache); a caller that changes a model's weights in place must build a new `Learner`.
    pub fn update(&mut self, front: &dyn KeypointModel, sequences: &[Arc<Sequence>], weights: &[f32]) -> Result<UpdateStats, LearnerError> {
        let k = front.num_keypoints();
        let device = self.online_vs.device();
        let num_actions = self.online.num_actions();
        for (i, s) in sequences.iter().enumerate() {
            if let Some((t, a)) = s.actions.iter().enumerate().find(|&(_, &a)| i64::from(a) >= num_actions) {
                return Err(LearnerError::InvalidArgument(format!(
                    "sequence {i} of the batch has action {a} at step {t}; the network has {num_actions} actions"
                )));
            }
        }
        let mut clock = std::time::Instant::now();
        let mut lap = || {
            let now = std::time::Instant::now();
            let seconds = now.duration_since(clock).as_secs_f64();
            clock = now;
            seconds
        };
        let mut phases = UpdatePhases::default();
        let batch = build_sequence_tensors(sequences, k, self.config.n_step, device, false)?;
        phases.batch_s = lap();
        if weights.len() != sequences.len() {
            return Err(LearnerError::InvalidArgument(format!("{} weights for {} sequences", weights.len(), sequences.len())));
        }
        let (b, t) = batch.actions.size2()?;
        let keys: Vec<&[u8]> = sequences
            .iter()
            .flat_map(|s| {
                let frame_len = s.observations.len() / s.len().max(1);
                s.observations[..s.valid_len() * frame_len].chunks_exact(frame_len.max(1))
            })
            .collect();
        let owner = std::ptr::from_ref(front).cast::<()>() as usize;
        let [h, w, c] = sequences[0].obs_shape.map(|x| x as i64);
        let looked_up = self.feature_cache.features_of_rows(owner, &keys, |rows| {
            let mut bytes = Vec::with_capacity(rows.len() * keys.first().map_or(0, |k| k.len()));
            for &row in rows {
                bytes.extend_from_slice(keys[row as usize]);
            }
            front.features(&permakey::model::frames_to_tensor(&bytes, rows.len() as i64, h, w, c, device))
        });
        let features = looked_up.features;
        phases.features_cached = looked_up.cached as u64;
        phases.features_computed = looked_up.computed as u64;
        phases.features_s = lap();
        let centres = batch.centres.flatten(0, 1).index_select(0, &batch.valid_index);
        // Embeddings of the valid steps, scattered into B x T with zeros at padding positions.
        let scatter = |embedded: Tensor| {
            Tensor::zeros([b * t, embedded.size()[1]], (embedded.kind(), device)).index_copy(0, &batch.valid_index, &embedded).view([b, t, -1])
        };
        let online_embeddings = scatter(self.online.embed(&centres, &features, true));
        let state = LstmState { h: batch.state.h.shallow_clone(), c: batch.state.c.shallow_clone() };
        let (q_online, _) = self.online.unroll_embeddings(&online_embeddings, state, None, Some((&batch.stops, &batch.stop_steps)));
        phases.online_s = lap();
        let q_target = tch::no_grad(|| {
            let target_embeddings = scatter(self.target.embed(&centres, &features, false));
            self.target.unroll_embeddings(&target_embeddings, batch.state, None, None).0
        });
        let targets = n_step_double_q_targets(&batch.rewards, &batch.dones, &q_online.detach(), &q_target, self.config.n_step, self.config.discount)?;
        let valid = &targets.valid_mask * &batch.position_mask;
        let action_values = select_action_values(&q_online, &batch.actions)?;
        let weights = Tensor::from_slice(weights).to_device(device);
        let loss = td_loss(&action_values, &targets.targets, &valid, Some(&weights))?;
        // The figures the caller gets, queued now and read back in one transfer at the end (on a
        // GPU every read-back waits for the queue): positions trained, sum of their Q, loss,
        // then the B priorities.
        let figures = tch::no_grad(|| -> Result<Tensor, LearnerError> {
            let scalars = Tensor::stack(
                &[valid.sum(Kind::Double), (action_values.detach() * &valid).sum(Kind::Double), loss.loss.detach().to_kind(Kind::Double)],
                0,
            );
            Ok(Tensor::cat(&[scalars, sequence_priority_tensor(&loss.td_errors, &valid, self.config.priority_eta)?], 0))
        })?;
        phases.target_s = lap();
        self.optimizer.zero_grad();
        loss.loss.backward();
        let trainable: Vec<Tensor> = self.online_vs.trainable_variables();
        let grad_norm = clip_gradients_by_global_norm(&trainable, self.config.max_grad_norm)?;
        self.optimizer.apply();
        self.optimizer.zero_grad();
        self.updates += 1;
        self.config.target_update.apply(&mut self.target_vs, &self.online_vs, self.updates)?;
        let figures = Vec::<f64>::try_from(figures.to_device(Device::Cpu))?;
        let (trained, loss_value) = (figures[0], figures[2]);
        let mean_q = figures[1] / trained.max(1.0);
        let priorities = figures[3..].to_vec();
        phases.backward_s = lap();
        Ok(UpdateStats { loss: loss_value, grad_norm, mean_q, priorities, trained_positions: trained as usize, phases })
    }

    /// The online parameters as named CPU tensors (what the actors load).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        named_cpu_copies(&self.online_vs)
    }

    /// Everything a resume needs: online and target networks, optimiser moments, counters.
    pub fn state(&self) -> (Vec<(String, Tensor)>, u64, u64) {
        let mut named = Vec::new();
        named.extend(named_cpu_copies(&self.online_vs).into_iter().map(|(n, t)| (format!("online.{n}"), t)));
        named.extend(named_cpu_copies(&self.target_vs).into_iter().map(|(n, t)| (format!("target.{n}"), t)));
        named.extend(self.optimizer.state().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))));
        (named, self.updates, self.optimizer.step)
    }

    /// Restores [`Learner::state`]'s output.
    pub fn load_state(&mut self, named: &[(String, Tensor)], updates: u64, optimizer_step: u64) -> Result<(), LearnerError> {
        let find = |prefix: &str| -> std::collections::BTreeMap<String, Tensor> {
            named.iter().filter_map(|(n, t)| n.strip_prefix(prefix).map(|rest| (rest.to_owned(), t.shallow_clone()))).collect()
        };
        load_named(&mut self.online_vs, &find("online."), "online network")?;
        load_named(&mut self.target_vs, &find("target."), "target network")?;
        let adam: std::collections::BTreeMap<String, Tensor> =
            named.iter().filter(|(n, _)| n.starts_with("adam.")).map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        self.optimizer.load_state(&adam, optimizer_step).map_err(LearnerError::InvalidArgument)?;
        self.updates = updates;
        Ok(())
    }
}

/// Named CPU copies of every variable of `vs` (sorted by name).
pub fn named_cpu_copies(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.detach().to_device(Device::Cpu).copy())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Copies `named` into the variables of `vs`; every variable must be present with its shape.
pub fn load_named(vs: &mut nn::VarStore, named: &std::collections::BTreeMap<String, Tensor>, what: &str) -> Result<(), LearnerError> {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let saved = named.get(&name).ok_or_else(|| LearnerError::InvalidArgument(format!("{what}: saved parameters lack {name}")))?;
            if saved.size() != var.size() {
                return Err(LearnerError::ShapeMismatch { what: format!("{what} {name}"), expected: var.size(), actual: saved.size() });
            }
            var.copy_(&saved.to_device(var.device()));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use permakey::model::KeypointOutput;
    use replay::testing::SequenceBuilder;

    use super::*;

    /// A front end over 8x8x3 frames whose features are the frames themselves; it records how
    /// many frames each `features` call saw.
    struct CountingFront {
        seen: Mutex<Vec<i64>>,
    }

    impl KeypointModel for CountingFront {
        fn num_keypoints(&self) -> i64 {
            2
        }
        fn image_size(&self) -> i64 {
            8
        }
        fn keypoints(&self, frames: &Tensor) -> KeypointOutput {
            let b = frames.size()[0];
            let centres = Tensor::zeros([b, 2, 2], (Kind::Float, Device::Cpu));
            let heatmaps = permakey::keypoints::gaussian_maps(&centres, 8, 8, 0.15);
            KeypointOutput { centres, heatmaps, features: frames.shallow_clone() }
        }
        fn features(&self, frames: &Tensor) -> Tensor {
            self.seen.lock().unwrap().push(frames.size()[0]);
            frames.shallow_clone()
        }
        fn gauss_std(&self) -> f64 {
            0.15
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
    }

    const SHAPE: [usize; 3] = [8, 8, 3];

    fn full() -> Arc<Sequence> {
        Arc::new(SequenceBuilder::new(12).obs_shape(SHAPE).keypoints(4).build())
    }

    /// 7 valid steps then 5 padding steps, cut by truncation, 2 burn-in steps.
    fn cut() -> Arc<Sequence> {
        Arc::new(SequenceBuilder::new(12).obs_shape(SHAPE).keypoints(4).padded_steps(5).truncated(true).burn_in(2).build())
    }

    fn row(t: &Tensor, b: i64) -> Vec<f32> {
        Vec::<f32>::try_from(t.get(b).to_kind(Kind::Float)).unwrap()
    }

    #[test]
    fn batches_hold_only_valid_frames_and_mask_what_cannot_learn() {
        let batch = sequence_tensors(&[full(), cut()], 2, 3, Device::Cpu).unwrap();
        assert_eq!(batch.frames.size(), [12 + 7, 3, 8, 8]);
        let index = Vec::<i64>::try_from(&batch.valid_index).unwrap();
        assert_eq!(index, (0..12).chain(12..19).collect::<Vec<i64>>());
        // Step t's frame bytes all equal t (the builder's pattern), scaled to [0, 1].
        let first_pixel = |i: i64| batch.frames.get(i).max().double_value(&[]) * 255.0;
        assert!((first_pixel(5) - 5.0).abs() < 1e-3 && (first_pixel(12 + 6) - 6.0).abs() < 1e-3);
        assert_eq!(row(&batch.position_mask, 0), vec![1.0; 12]);
        // Truncated with 7 valid steps and n = 3: o_{t+3} must be stored, so t < 4; burn-in t >= 2.
        assert_eq!(row(&batch.position_mask, 1), vec![0., 0., 1., 1., 0., 0., 0., 0., 0., 0., 0., 0.]);
        assert_eq!(row(&batch.stops, 0), vec![0.0; 12]);
        let mut stops = vec![0.0; 12];
        stops[2] = 1.0;
        assert_eq!(row(&batch.stops, 1), stops);
        assert_eq!(batch.centres.size(), [2, 12, 2, 2]);
        assert_eq!(batch.state.h.size(), [2, 128]);
        assert_eq!(batch.state.h.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn a_stored_recurrent_state_starts_the_lstm() {
        let state: Vec<f32> = (0..256).map(|i| i as f32 / 256.0).collect();
        let with_state = Arc::new(SequenceBuilder::new(12).obs_shape(SHAPE).keypoints(4).recurrent_state(state.clone()).build());
        let batch = sequence_tensors(&[with_state], 2, 3, Device::Cpu).unwrap();
        assert_eq!(row(&batch.state.h, 0), state[..128].to_vec());
        assert_eq!(row(&batch.state.c, 0), state[128..].to_vec());
    }

    #[test]
    fn mismatched_batches_are_refused_with_a_reason() {
        let other_keypoints = Arc::new(SequenceBuilder::new(12).obs_shape(SHAPE).keypoints(6).build());
        let err = sequence_tensors(&[full(), other_keypoints], 2, 3, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("sequence 1") && err.contains("keypoint"), "{err}");
        let shorter = Arc::new(SequenceBuilder::new(10).obs_shape(SHAPE).keypoints(4).build());
        let err = sequence_tensors(&[full(), shorter], 2, 3, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("sequence 1 of the batch has 10 steps"), "{err}");
        assert!(sequence_tensors(&[], 2, 3, Device::Cpu).is_err());
        // Observations that do not fill their steps: one line, from the builder and from an
        // update (which no longer converts the frames up front), and the learner goes on.
        let mut torn = SequenceBuilder::new(12).obs_shape(SHAPE).keypoints(4).build();
        torn.observations.truncate(100);
        let torn = Arc::new(torn);
        let err = sequence_tensors(&[full(), torn.clone()], 2, 3, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("sequence 1 of the batch has 100 observation bytes for 12 steps") && !err.contains('\n'), "{err}");
        let mut learner = learner(agent::EncoderKind::Cnn);
        let front = CountingFront { seen: Mutex::new(Vec::new()) };
        let err = learner.update(&front, &[torn], &[1.0]).unwrap_err().to_string();
        assert!(err.contains("100 observation bytes"), "{err}");
        assert!(learner.update(&front, &[full()], &[1.0]).is_ok());
    }

    fn learner(encoder: agent::EncoderKind) -> Learner {
        learner_caching(encoder, DEFAULT_FEATURE_CACHE_MIB)
    }

    fn learner_caching(encoder: agent::EncoderKind, feature_cache_mib: usize) -> Learner {
        tch::manual_seed(3);
        let front = FrontEndShape { num_keypoints: 2, feature_channels: 3, feature_size: 8, gauss_std: 0.15 };
        let agent = AgentConfig { encoder, cnn_channels: 4, ..AgentConfig::default() };
        // The builder's step t takes action t: 12 actions cover a 12-step sequence.
        Learner::new(LearnerConfig { learning_rate: 1e-3, feature_cache_mib, ..LearnerConfig::default() }, &agent, front, 12, Device::Cpu).unwrap()
    }

    #[test]
    fn padding_never_reaches_the_front_end_and_updates_fit_a_fixed_batch() {
        let front = CountingFront { seen: Mutex::new(Vec::new()) };
        // Uncached: the padding's zero frames equal step 0's frame of the builder, so a cache
        // would hide whether padding reached the front end.
        let mut learner = learner_caching(agent::EncoderKind::Cnn, 0);
        let batch = [full(), cut()];
        let first = learner.update(&front, &batch, &[1.0, 1.0]).unwrap();
        assert_eq!(*front.seen.lock().unwrap(), vec![19], "only the 12 + 7 valid frames are encoded");
        // Positions with a target: full sequence t < 9 (o_{t+3} stored), cut one t in {2, 3}.
        assert_eq!(first.trained_positions, 9 + 2);
        assert_eq!(first.priorities.len(), 2);
        assert!(first.loss.is_finite() && first.grad_norm > 0.0);
        let mut last = first.loss;
        for _ in 0..150 {
            last = learner.update(&front, &batch, &[1.0, 1.0]).unwrap().loss;
        }
        assert!(last < 0.5 * first.loss, "TD loss on a fixed batch: {} -> {last}", first.loss);
        assert_eq!(learner.updates(), 151);
        let err = learner.update(&front, &batch, &[1.0]).unwrap_err().to_string();
        assert!(err.contains("1 weights for 2 sequences"), "{err}");
        let long = Arc::new(SequenceBuilder::new(14).obs_shape(SHAPE).keypoints(4).build());
        let err = learner.update(&front, &[long], &[1.0]).unwrap_err().to_string();
        assert!(err.contains("action 12 at step 12; the network has 12 actions"), "{err}");
    }

    #[test]
    fn cached_features_train_exactly_as_recomputed_ones() {
        // The builder's frames repeat per step (step t's bytes all equal t) and the padding is
        // zeros like step 0: the batch's 12 + 7 valid frames are 12 distinct ones.
        let batch = [full(), cut()];
        let (front, recount) = (CountingFront { seen: Mutex::new(Vec::new()) }, CountingFront { seen: Mutex::new(Vec::new()) });
        let (mut cached, mut uncached) = (learner(agent::EncoderKind::Gnn), learner_caching(agent::EncoderKind::Gnn, 0));
        // The same start whatever other tests do to the global seed meanwhile.
        let (named, updates, step) = cached.state();
        uncached.load_state(&named, updates, step).unwrap();
        for update in 0..4 {
            let a = cached.update(&front, &batch, &[1.0, 0.5]).unwrap();
            let b = uncached.update(&recount, &batch, &[1.0, 0.5]).unwrap();
            assert_eq!((a.loss, a.grad_norm, &a.priorities), (b.loss, b.grad_norm, &b.priorities), "update {update}");
            let expected = if update == 0 { (7, 12) } else { (19, 0) };
            assert_eq!((a.phases.features_cached, a.phases.features_computed), expected, "update {update}");
            assert_eq!((b.phases.features_cached, b.phases.features_computed), (0, 19));
        }
        assert_eq!(*front.seen.lock().unwrap(), vec![12], "each distinct frame went through the front end once");
        assert_eq!(*recount.seen.lock().unwrap(), vec![19; 4]);
        for ((na, ta), (nb, tb)) in cached.parameters().iter().zip(&uncached.parameters()) {
            assert!(ta.equal(tb), "{na} vs {nb}");
        }
        assert_eq!(cached.feature_cache().len(), 12);
        // Another front end object: its features are computed, not taken from the first one's.
        let other = CountingFront { seen: Mutex::new(Vec::new()) };
        let stats = cached.update(&other, &batch, &[1.0, 0.5]).unwrap();
        assert_eq!((stats.phases.features_cached, stats.phases.features_computed), (7, 12));
        assert_eq!(*other.seen.lock().unwrap(), vec![12]);
    }

    #[test]
    fn state_round_trips_into_a_fresh_learner() {
        let front = CountingFront { seen: Mutex::new(Vec::new()) };
        let mut a = learner(agent::EncoderKind::Gnn);
        for _ in 0..3 {
            a.update(&front, &[full(), cut()], &[1.0, 0.5]).unwrap();
        }
        let (named, updates, step) = a.state();
        let mut b = learner(agent::EncoderKind::Gnn);
        b.load_state(&named, updates, step).unwrap();
        let next_a = a.update(&front, &[full()], &[1.0]).unwrap();
        let next_b = b.update(&front, &[full()], &[1.0]).unwrap();
        assert_eq!(next_a.loss, next_b.loss);
        for ((na, ta), (nb, tb)) in a.parameters().iter().zip(&b.parameters()) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{na}");
        }
        let missing: Vec<(String, Tensor)> = named.into_iter().filter(|(n, _)| !n.starts_with("target.")).collect();
        assert!(learner(agent::EncoderKind::Gnn).load_state(&missing, 3, 3).unwrap_err().to_string().contains("target network"));
    }
}
