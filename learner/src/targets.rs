//! n-step double-Q targets (spec 7.4, decision 9b: the correctly aligned target).
//!
//! # Conventions
//!
//! A sampled sequence has positions `t = 0..T`. Position `t` holds the observation `o_t`, the
//! action `a_t` taken in it, the (clipped) reward `r_t` that action earned, and the flag
//! `done_t`: **`done_t` is true when the transition `(o_t, a_t) -> o_{t+1}` ended the episode**
//! (so `o_{t+1}`, if present, is never bootstrapped from). Q-value inputs hold one row per
//! observation: `q[t] = Q(o_t, ·)`.
//!
//! # The target
//!
//! For `Q(o_t, a_t)` with `n` steps and discount `γ`:
//!
//! ```text
//! y_t = Σ_{k<n} γ^k r_{t+k} + γ^n Q_target(o_{t+n}, argmax_a Q_online(o_{t+n}, a))
//! ```
//!
//! If `done_{t+j}` is true for some `j < n` (first such `j`), the sum stops after `r_{t+j}` and
//! there is no bootstrap term: `y_t = Σ_{k<=j} γ^k r_{t+k}`. This is the usual
//! `(1 - done) γ^n` bootstrap factor, with `done` the "episode ended within the n steps" flag.
//! The greedy action is chosen by the online network and evaluated by the target network
//! (double Q-learning, van Hasselt et al. 2016, as in `trfl.double_qlearning`). Ties in the
//! argmax go to the lowest action index (libtorch's `argmax` rule).
//!
//! A position whose target would need data beyond the end of the sequence (a reward
//! `r_{t+k}` with `t+k >= T`, or the bootstrap observation `o_{t+n}` with `t+n >= T`, while the
//! episode is still running) has no target: the slice version returns `None`, the batched
//! version sets `valid_mask = 0` and `target = 0` there, and the loss ignores it. With no episode
//! end inside the sequence, positions `0..T-n` are valid, so a window of `W` learning positions
//! needs sequences of length `W + n`.
//!
//! Truncation (the 4000-step time limit) is whatever the caller encodes in `done`: the reference
//! marks it terminal (spec 10.5); passing `done = false` there bootstraps through it instead.
//!
//! # How the reference repository differs (spec 7.4, 10.5)
//!
//! `rl_loss.q_learning` in agopal42/permakey, with sequences of 12 items and window 8, learns
//! `Q_online(o_{t+3}, a_{t+3})` (online LSTM unrolled over `o_3..o_10`) towards
//! `r_t + γ r_{t+1} + γ² r_{t+2} + γ³ (1 - done_{t+4}) Q_target(o_{t+4}, argmax Q'(o_{t+4}))`, where
//! the target LSTM and the action-selecting online LSTM (fed target-encoder features) are both
//! unrolled from a zero state over `o_4..o_11`. Because item `i` stores the reward of `a_i`, the
//! rewards belong to the three actions *before* `a_{t+3}` and the bootstrap sits four steps ahead
//! with only `γ³`. That target is not reproduced here: it is not a shift of the same Q tensors
//! (it needs a second LSTM unroll starting at `o_4`), so it cannot be offered as a cheap flag on
//! these functions. This module implements only the intended, aligned target above.

use tch::{Kind, Tensor};

use crate::error::{expect_shape, LearnerError};

/// The reference's n-step horizon (spec 7.4).
pub const DEFAULT_N_STEP: usize = 3;

/// The reference's discount factor γ (spec 7.4).
pub const DEFAULT_DISCOUNT: f64 = 0.99;

fn check_n_step_and_discount(n_step: usize, discount: f64) -> Result<(), LearnerError> {
    if n_step == 0 {
        return Err(LearnerError::InvalidArgument(
            "n_step must be at least 1".to_owned(),
        ));
    }
    if !(0.0..=1.0).contains(&discount) {
        return Err(LearnerError::InvalidArgument(format!(
            "discount must lie in [0, 1], got {discount}"
        )));
    }
    Ok(())
}

/// Returns the index of the largest value, the lowest index among ties.
fn argmax_lowest_index(values: &[f64]) -> usize {
    let mut best_index = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best_index] {
            best_index = index;
        }
    }
    best_index
}

/// Computes the aligned n-step double-Q target of every position of one sequence.
///
/// This is the readable reference implementation; [`n_step_double_q_targets`] is the batched
/// tensor version and is tested against it. `rewards[t]`, `dones[t]` follow the module's
/// conventions; `online_q_values[t]` and `target_q_values[t]` are `Q_online(o_t, ·)` and
/// `Q_target(o_t, ·)`. Returns `Some(y_t)`, or `None` where the target needs data past the end of
/// the sequence.
pub fn n_step_double_q_targets_reference(
    rewards: &[f64],
    dones: &[bool],
    online_q_values: &[Vec<f64>],
    target_q_values: &[Vec<f64>],
    n_step: usize,
    discount: f64,
) -> Result<Vec<Option<f64>>, LearnerError> {
    check_n_step_and_discount(n_step, discount)?;
    let sequence_length = rewards.len();
    for (what, length) in [
        ("dones", dones.len()),
        ("online_q_values", online_q_values.len()),
        ("target_q_values", target_q_values.len()),
    ] {
        if length != sequence_length {
            return Err(LearnerError::ShapeMismatch {
                what: what.to_owned(),
                expected: vec![sequence_length as i64],
                actual: vec![length as i64],
            });
        }
    }
    let num_actions = online_q_values.first().map_or(1, Vec::len);
    if num_actions == 0 {
        return Err(LearnerError::InvalidArgument(
            "Q-value rows must not be empty".to_owned(),
        ));
    }
    for (what, rows) in [
        ("online_q_values", online_q_values),
        ("target_q_values", target_q_values),
    ] {
        if let Some(row) = rows.iter().find(|row| row.len() != num_actions) {
            return Err(LearnerError::ShapeMismatch {
                what: format!("{what} row"),
                expected: vec![num_actions as i64],
                actual: vec![row.len() as i64],
            });
        }
    }

    let target_of_position = |position: usize| -> Option<f64> {
        let mut n_step_return = 0.0;
        let mut discount_power = 1.0;
        for k in 0..n_step {
            let step = position + k;
            if step >= sequence_length {
                return None;
            }
            n_step_return += discount_power * rewards[step];
            discount_power *= discount;
            if dones[step] {
                return Some(n_step_return);
            }
        }
        // Here discount_power == discount^n_step.
        let bootstrap_index = position + n_step;
        if bootstrap_index >= sequence_length {
            return None;
        }
        let greedy_action = argmax_lowest_index(&online_q_values[bootstrap_index]);
        Some(n_step_return + discount_power * target_q_values[bootstrap_index][greedy_action])
    };
    Ok((0..sequence_length).map(target_of_position).collect())
}

/// Batched n-step targets and the mask of positions that have one, both `[B, T]`.
#[derive(Debug)]
pub struct NStepTargets {
    /// `y_{b,t}`, detached from any graph; 0 where `valid_mask` is 0. Kind of the rewards.
    pub targets: Tensor,
    /// 1 where the target is defined, 0 where it would need steps beyond the sequence.
    pub valid_mask: Tensor,
}

/// Returns `x` moved `shift` steps left along dimension 1 (`out[:, t] = x[:, t + shift]`), with
/// zeros where `t + shift` is past the end.
fn shift_left_along_time(x: &Tensor, shift: i64) -> Result<Tensor, LearnerError> {
    debug_assert!(shift >= 0);
    let mut padding_shape = x.size();
    let sequence_length = padding_shape[1];
    let dropped = shift.min(sequence_length);
    padding_shape[1] = dropped;
    let padding = Tensor::f_zeros(padding_shape.as_slice(), (x.kind(), x.device()))?;
    let kept = x.f_narrow(1, dropped, sequence_length - dropped)?;
    Ok(Tensor::f_cat(&[kept, padding], 1)?)
}

/// Computes the aligned n-step double-Q targets for a batch of sequences.
///
/// - `rewards`: `[B, T]`, a floating kind (the output has this kind and device);
/// - `dones`: `[B, T]`, bool or numeric, non-zero meaning the step-`t` transition ended the
///   episode;
/// - `online_q_values`, `target_q_values`: `[B, T, A]`, `Q(o_t, ·)` from the online and target
///   networks (converted to the rewards' kind).
///
/// Same formula and conventions as [`n_step_double_q_targets_reference`] (see the module docs),
/// vectorised over batch and time with `n_step` tensor passes. Runs without gradient tracking.
pub fn n_step_double_q_targets(
    rewards: &Tensor,
    dones: &Tensor,
    online_q_values: &Tensor,
    target_q_values: &Tensor,
    n_step: usize,
    discount: f64,
) -> Result<NStepTargets, LearnerError> {
    check_n_step_and_discount(n_step, discount)?;
    let (batch_size, sequence_length) = rewards.size2()?;
    let kind = rewards.kind();
    if !rewards.is_floating_point() {
        return Err(LearnerError::UnsupportedKind {
            what: "rewards".to_owned(),
            kind,
        });
    }
    expect_shape("dones", dones, &[batch_size, sequence_length])?;
    let num_actions = online_q_values.size().get(2).copied().unwrap_or(0);
    if num_actions == 0 {
        return Err(LearnerError::InvalidArgument(
            "online_q_values must be [B, T, A] with A >= 1".to_owned(),
        ));
    }
    expect_shape(
        "online_q_values",
        online_q_values,
        &[batch_size, sequence_length, num_actions],
    )?;
    expect_shape(
        "target_q_values",
        target_q_values,
        &[batch_size, sequence_length, num_actions],
    )?;

    tch::no_grad(|| {
        let device = rewards.device();
        let rewards = rewards.detach();
        let dones = dones.f_ne(0)?.f_to_kind(kind)?.f_to(device)?;
        let n_step = n_step as i64;
        // positions[0, t] = t, broadcast over the batch.
        let positions = Tensor::f_arange(sequence_length, (Kind::Int64, device))?.f_unsqueeze(0)?;

        // Steps past the end of the sequence read zero padding (reward 0, done 0), so a position
        // whose episode is still running there keeps still_running = 1 and, since then also
        // t + n >= T, loses its target through the bootstrap check below.
        let mut n_step_return = Tensor::f_zeros([batch_size, sequence_length], (kind, device))?;
        // still_running[b, t] = 1 while no done flag was met in steps t..t+k-1.
        let mut still_running = Tensor::f_ones([batch_size, sequence_length], (kind, device))?;
        let mut discount_power = 1.0;
        for k in 0..n_step {
            let reward_k = shift_left_along_time(&rewards, k)?;
            n_step_return += &still_running * reward_k * discount_power;
            let done_k = shift_left_along_time(&dones, k)?;
            still_running *= 1.0 - done_k;
            discount_power *= discount;
        }
        // Here discount_power == discount^n_step. A position has a target unless its episode is
        // still running after n steps and o_{t+n} lies past the end.
        let bootstrap_in_sequence = positions.f_lt(sequence_length - n_step)?.f_to_kind(kind)?;
        let valid_mask = 1.0 - &still_running * (1.0 - &bootstrap_in_sequence);

        let online_next = shift_left_along_time(
            &online_q_values.detach().f_to_kind(kind)?.f_to(device)?,
            n_step,
        )?;
        let target_next = shift_left_along_time(
            &target_q_values.detach().f_to_kind(kind)?.f_to(device)?,
            n_step,
        )?;
        let greedy_actions = online_next.f_argmax(-1, true)?;
        let bootstrap_values = target_next
            .f_gather(-1, &greedy_actions, false)?
            .f_squeeze_dim(-1)?;
        let bootstrap_term =
            still_running * bootstrap_in_sequence * bootstrap_values * discount_power;
        let targets = (n_step_return + bootstrap_term) * &valid_mask;
        Ok(NStepTargets {
            targets,
            valid_mask,
        })
    })
}

/// Picks `Q(o_t, a_t)` out of `[B, T, A]` Q-values with `[B, T]` integer actions; keeps the graph.
pub fn select_action_values(q_values: &Tensor, actions: &Tensor) -> Result<Tensor, LearnerError> {
    let (batch_size, sequence_length, _num_actions) = q_values.size3()?;
    expect_shape("actions", actions, &[batch_size, sequence_length])?;
    let actions = actions.f_to_kind(Kind::Int64)?.f_unsqueeze(-1)?;
    Ok(q_values.f_gather(-1, &actions, false)?.f_squeeze_dim(-1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rows(values: &[[f64; 2]]) -> Vec<Vec<f64>> {
        values.iter().map(|row| row.to_vec()).collect()
    }

    fn tensor_2d(values: &[Vec<f64>]) -> Tensor {
        let width = values.first().map_or(0, Vec::len) as i64;
        let flat: Vec<f64> = values.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([values.len() as i64, width])
    }

    fn tensor_3d(values: &[Vec<Vec<f64>>]) -> Tensor {
        let sequence_length = values.first().map_or(0, Vec::len) as i64;
        let num_actions = values.first().and_then(|s| s.first()).map_or(0, Vec::len) as i64;
        let flat: Vec<f64> = values.iter().flatten().flatten().copied().collect();
        Tensor::from_slice(&flat).view([values.len() as i64, sequence_length, num_actions])
    }

    fn to_rows(tensor: &Tensor) -> Vec<Vec<f64>> {
        Vec::<Vec<f64>>::try_from(tensor.to_kind(Kind::Double)).unwrap()
    }

    // Shared hand example: gamma = 0.5, n = 3, two actions.
    // Online Q picks argmax; target Q evaluates it (double Q).
    //   o3: online [5, 1] -> action 0, target [10, 20] -> 10 (plain max would give 20)
    //   o4: online [1, 5] -> action 1, target [30, 40] -> 40
    //   o5: online [2, 2] -> tie -> action 0, target [7, 9] -> 7
    const GAMMA: f64 = 0.5;
    fn online_rows() -> Vec<Vec<f64>> {
        rows(&[
            [0.0, 1.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [5.0, 1.0],
            [1.0, 5.0],
            [2.0, 2.0],
        ])
    }
    fn target_rows() -> Vec<Vec<f64>> {
        rows(&[
            [100.0, 100.0],
            [100.0, 100.0],
            [100.0, 100.0],
            [10.0, 20.0],
            [30.0, 40.0],
            [7.0, 9.0],
        ])
    }

    #[test]
    fn reference_targets_without_episode_end_match_hand_computation() {
        let rewards = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let dones = [false; 6];
        let targets = n_step_double_q_targets_reference(
            &rewards,
            &dones,
            &online_rows(),
            &target_rows(),
            3,
            GAMMA,
        )
        .unwrap();
        // t=0: 1 + 0.5*2 + 0.25*3 + 0.125*Q_target(o3, 0)=10  = 1 + 1 + 0.75 + 1.25 = 4.0
        // t=1: 2 + 0.5*3 + 0.25*4 + 0.125*Q_target(o4, 1)=40  = 2 + 1.5 + 1 + 5     = 9.5
        // t=2: 3 + 0.5*4 + 0.25*5 + 0.125*Q_target(o5, 0)=7   = 3 + 2 + 1.25 + 0.875 = 7.125
        // t=3..5: need o6..o8, past the end -> None
        assert_eq!(
            targets,
            vec![Some(4.0), Some(9.5), Some(7.125), None, None, None]
        );
    }

    #[test]
    fn reference_targets_stop_at_episode_end_and_drop_bootstrap() {
        let rewards = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        // The transition out of o1 ended the episode; o2.. belong to the next episode.
        let dones = [false, true, false, false, false, false];
        let targets = n_step_double_q_targets_reference(
            &rewards,
            &dones,
            &online_rows(),
            &target_rows(),
            3,
            GAMMA,
        )
        .unwrap();
        // t=0: 1 + 0.5*2, stop at done_1, no bootstrap      = 2.0
        // t=1: 2, stop at done_1                            = 2.0
        // t=2: 3 + 0.5*4 + 0.25*5 + 0.125*7 (o5, action 0)  = 7.125
        // t=3..5: past the end -> None
        assert_eq!(
            targets,
            vec![Some(2.0), Some(2.0), Some(7.125), None, None, None]
        );
    }

    #[test]
    fn reference_targets_at_sequence_end_are_valid_when_the_episode_ended() {
        let rewards = [1.0, 2.0, 3.0, 4.0];
        let dones = [false, false, false, true];
        let online = rows(&[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [3.0, 1.0]]);
        let target = rows(&[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [8.0, 50.0]]);
        let targets =
            n_step_double_q_targets_reference(&rewards, &dones, &online, &target, 3, GAMMA)
                .unwrap();
        // t=0: 1 + 0.5*2 + 0.25*3 + 0.125*Q_target(o3, 0)=8 = 1 + 1 + 0.75 + 1 = 3.75
        // t=1: 2 + 0.5*3 + 0.25*4, done_3 -> no bootstrap   = 4.5
        // t=2: 3 + 0.5*4                                    = 5.0
        // t=3: 4                                            = 4.0
        assert_eq!(targets, vec![Some(3.75), Some(4.5), Some(5.0), Some(4.0)]);
    }

    #[test]
    fn reference_one_step_target_is_the_double_q_bellman_target() {
        let rewards = [1.0, 2.0];
        let dones = [false, false];
        let online = rows(&[[0.0, 0.0], [1.0, 4.0]]);
        let target = rows(&[[0.0, 0.0], [6.0, 2.0]]);
        let targets =
            n_step_double_q_targets_reference(&rewards, &dones, &online, &target, 1, 0.9).unwrap();
        // t=0: 1 + 0.9*Q_target(o1, argmax online = 1)=2 = 2.8; t=1: needs o2 -> None
        assert_eq!(targets.len(), 2);
        assert!((targets[0].unwrap() - 2.8).abs() < 1e-12);
        assert_eq!(targets[1], None);
    }

    #[test]
    fn reference_rejects_bad_arguments() {
        let q = rows(&[[0.0, 0.0]]);
        assert!(n_step_double_q_targets_reference(&[0.0], &[false], &q, &q, 0, 0.9).is_err());
        assert!(n_step_double_q_targets_reference(&[0.0], &[false], &q, &q, 1, 1.5).is_err());
        assert!(n_step_double_q_targets_reference(&[0.0, 1.0], &[false], &q, &q, 1, 0.9).is_err());
        let ragged = vec![vec![0.0, 0.0], vec![0.0]];
        assert!(
            n_step_double_q_targets_reference(
                &[0.0, 1.0],
                &[false, false],
                &ragged,
                &ragged,
                1,
                0.9
            )
            .is_err()
        );
    }

    #[test]
    fn batched_targets_match_hand_computation() {
        // Row 0: no episode end; row 1: episode end after step 1 (same numbers as above).
        let rewards = tensor_2d(&[
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        ])
        .to_kind(Kind::Float);
        let dones = Tensor::from_slice(&[
            false, false, false, false, false, false, false, true, false, false, false, false,
        ])
        .view([2, 6]);
        let online = tensor_3d(&[online_rows(), online_rows()]);
        let target = tensor_3d(&[target_rows(), target_rows()]);
        let NStepTargets {
            targets,
            valid_mask,
        } = n_step_double_q_targets(&rewards, &dones, &online, &target, 3, GAMMA).unwrap();
        assert_eq!(targets.kind(), Kind::Float);
        assert_eq!(
            to_rows(&targets),
            vec![
                vec![4.0, 9.5, 7.125, 0.0, 0.0, 0.0],
                vec![2.0, 2.0, 7.125, 0.0, 0.0, 0.0]
            ]
        );
        assert_eq!(
            to_rows(&valid_mask),
            vec![
                vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
                vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
            ]
        );
    }

    #[test]
    fn batched_targets_accept_float_done_flags_and_short_sequences() {
        // T = 2 < n = 3. Row 0 ends at step 0; row 1 never ends, so nothing is valid there.
        let rewards = tensor_2d(&[vec![1.0, 2.0], vec![1.0, 2.0]]);
        let dones = tensor_2d(&[vec![1.0, 0.0], vec![0.0, 0.0]]);
        let q = Tensor::zeros([2, 2, 3], (Kind::Double, tch::Device::Cpu));
        let NStepTargets {
            targets,
            valid_mask,
        } = n_step_double_q_targets(&rewards, &dones, &q, &q, 3, GAMMA).unwrap();
        // Row 0: t=0 -> 1 (done_0); t=1 -> 2 + 0.5*r_2 needed, r_2 is missing -> invalid.
        assert_eq!(to_rows(&targets), vec![vec![1.0, 0.0], vec![0.0, 0.0]]);
        assert_eq!(to_rows(&valid_mask), vec![vec![1.0, 0.0], vec![0.0, 0.0]]);
    }

    #[test]
    fn batched_targets_do_not_track_gradients() {
        let rewards = Tensor::ones([1, 4], (Kind::Float, tch::Device::Cpu));
        let dones = Tensor::zeros([1, 4], (Kind::Bool, tch::Device::Cpu));
        let online =
            Tensor::randn([1, 4, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let target =
            Tensor::randn([1, 4, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let result = n_step_double_q_targets(&rewards, &dones, &online, &target, 1, 0.99).unwrap();
        assert!(!result.targets.requires_grad());
    }

    #[test]
    fn batched_targets_reject_bad_shapes() {
        let rewards = Tensor::zeros([2, 5], (Kind::Float, tch::Device::Cpu));
        let dones = Tensor::zeros([2, 5], (Kind::Float, tch::Device::Cpu));
        let q = Tensor::zeros([2, 5, 3], (Kind::Float, tch::Device::Cpu));
        let q_wrong = Tensor::zeros([2, 4, 3], (Kind::Float, tch::Device::Cpu));
        assert!(n_step_double_q_targets(&rewards, &dones, &q, &q_wrong, 3, 0.99).is_err());
        assert!(
            n_step_double_q_targets(&rewards, &dones.narrow(1, 0, 4), &q, &q, 3, 0.99).is_err()
        );
        assert!(
            n_step_double_q_targets(&rewards.to_kind(Kind::Int64), &dones, &q, &q, 3, 0.99)
                .is_err()
        );
        assert!(n_step_double_q_targets(&rewards, &dones, &q, &q, 0, 0.99).is_err());
    }

    #[test]
    fn select_action_values_gathers_the_taken_actions() {
        // q[b=0] = [[1, 2], [3, 4]], q[b=1] = [[5, 6], [7, 8]]; actions [[1, 0], [0, 1]]
        let q = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).view([2, 2, 2]);
        let actions = Tensor::from_slice(&[1i64, 0, 0, 1]).view([2, 2]);
        let taken = select_action_values(&q, &actions).unwrap();
        assert_eq!(to_rows(&taken), vec![vec![2.0, 3.0], vec![5.0, 8.0]]);
    }

    /// One random batch: rewards, done flags and two Q tables, all [B][T](...).
    #[derive(Debug, Clone)]
    struct RandomBatch {
        rewards: Vec<Vec<f64>>,
        dones: Vec<Vec<bool>>,
        online_q_values: Vec<Vec<Vec<f64>>>,
        target_q_values: Vec<Vec<Vec<f64>>>,
        n_step: usize,
        discount: f64,
    }

    fn random_batch() -> impl Strategy<Value = RandomBatch> {
        (1usize..4, 1usize..9, 1usize..5, 1usize..5, 0.0f64..=1.0).prop_flat_map(
            |(batch_size, sequence_length, num_actions, n_step, discount)| {
                let q_table = proptest::collection::vec(
                    proptest::collection::vec(
                        proptest::collection::vec(-10.0f64..10.0, num_actions),
                        sequence_length,
                    ),
                    batch_size,
                );
                (
                    proptest::collection::vec(
                        proptest::collection::vec(-1.0f64..1.0, sequence_length),
                        batch_size,
                    ),
                    proptest::collection::vec(
                        proptest::collection::vec(proptest::bool::weighted(0.2), sequence_length),
                        batch_size,
                    ),
                    q_table.clone(),
                    q_table,
                )
                    .prop_map(
                        move |(rewards, dones, online_q_values, target_q_values)| RandomBatch {
                            rewards,
                            dones,
                            online_q_values,
                            target_q_values,
                            n_step,
                            discount,
                        },
                    )
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn batched_targets_equal_the_reference_on_random_batches(batch in random_batch()) {
            let done_flags: Vec<bool> = batch.dones.iter().flatten().copied().collect();
            let dones = Tensor::from_slice(&done_flags).view([batch.rewards.len() as i64, -1]);
            let result = n_step_double_q_targets(
                &tensor_2d(&batch.rewards),
                &dones,
                &tensor_3d(&batch.online_q_values),
                &tensor_3d(&batch.target_q_values),
                batch.n_step,
                batch.discount,
            ).unwrap();
            let targets = to_rows(&result.targets);
            let valid_mask = to_rows(&result.valid_mask);
            for b in 0..batch.rewards.len() {
                let expected = n_step_double_q_targets_reference(
                    &batch.rewards[b],
                    &batch.dones[b],
                    &batch.online_q_values[b],
                    &batch.target_q_values[b],
                    batch.n_step,
                    batch.discount,
                ).unwrap();
                for (t, expected_target) in expected.iter().enumerate() {
                    match expected_target {
                        Some(value) => {
                            prop_assert_eq!(valid_mask[b][t], 1.0);
                            prop_assert!((targets[b][t] - value).abs() < 1e-9, "b={} t={} {} vs {}", b, t, targets[b][t], value);
                        }
                        None => {
                            prop_assert_eq!(valid_mask[b][t], 0.0);
                            prop_assert_eq!(targets[b][t], 0.0);
                        }
                    }
                }
            }
        }

        #[test]
        fn reference_targets_are_valid_exactly_when_the_data_suffices(batch in random_batch()) {
            let rewards = &batch.rewards[0];
            let dones = &batch.dones[0];
            let targets = n_step_double_q_targets_reference(
                rewards, dones, &batch.online_q_values[0], &batch.target_q_values[0], batch.n_step, batch.discount,
            ).unwrap();
            for (t, target) in targets.iter().enumerate() {
                let horizon_end = (t + batch.n_step).min(rewards.len());
                let ends_inside = dones[t..horizon_end].iter().any(|done| *done);
                let has_bootstrap = t + batch.n_step < rewards.len();
                prop_assert_eq!(target.is_some(), ends_inside || has_bootstrap);
            }
        }
    }
}
