//! The TD loss and R2D2-style sequence priorities.
//!
//! - Loss (spec 7.4, `trfl.double_qlearning` + mean): `0.5 · δ²` with
//!   `δ_{b,t} = y_{b,t} - Q(o_{b,t}, a_{b,t})`, averaged over the valid positions of the batch. The
//!   reference averages over `batch × window`; with every window position valid that is the same
//!   number. Optional per-sequence importance weights `w_b` (prioritised replay, Schaul et al. 2016)
//!   multiply each sequence's terms; the divisor stays the number of valid positions, so with all
//!   weights 1 the loss is exactly the plain mean.
//! - Priorities (R2D2, Kapturowski et al. 2019): `p_b = η · max_t |δ_{b,t}| + (1 - η) · mean_t |δ_{b,t}|`
//!   over the valid positions, `η = 0.9`. The reference samples uniformly (no prioritisation); this
//!   is for the optional prioritised replay. A sequence with no valid position gets priority 0.

use tch::{Kind, Tensor};

use crate::error::{expect_shape, LearnerError};

/// R2D2's mixing coefficient η between the max and the mean absolute TD error.
pub const R2D2_PRIORITY_ETA: f64 = 0.9;

/// The TD loss and the TD errors it was computed from.
#[derive(Debug)]
pub struct TdLoss {
    /// Scalar loss; gradients flow into the action values only (targets are detached).
    pub loss: Tensor,
    /// `δ = target - Q(o_t, a_t)`, `[B, T]`, detached, 0 at invalid positions.
    pub td_errors: Tensor,
}

/// Computes `Σ_{b,t} w_b m_{b,t} ½ δ_{b,t}² / max(1, Σ_{b,t} m_{b,t})`.
///
/// `action_values` is `Q(o_t, a_t)`, `[B, T]` (see [`crate::targets::select_action_values`]);
/// `targets` and `valid_mask` come from [`crate::targets::n_step_double_q_targets`];
/// `importance_weights`, if given, is `[B]`.
pub fn td_loss(
    action_values: &Tensor,
    targets: &Tensor,
    valid_mask: &Tensor,
    importance_weights: Option<&Tensor>,
) -> Result<TdLoss, LearnerError> {
    let (batch_size, sequence_length) = action_values.size2()?;
    if !action_values.is_floating_point() {
        return Err(LearnerError::UnsupportedKind {
            what: "action_values".to_owned(),
            kind: action_values.kind(),
        });
    }
    expect_shape("targets", targets, &[batch_size, sequence_length])?;
    expect_shape("valid_mask", valid_mask, &[batch_size, sequence_length])?;
    let kind = action_values.kind();
    let valid_mask = valid_mask.f_to_kind(kind)?.detach();
    let td = targets.f_to_kind(kind)?.detach() - action_values;
    let squared_terms = td.square() * 0.5 * &valid_mask;
    let weighted_terms = match importance_weights {
        Some(weights) => {
            expect_shape("importance_weights", weights, &[batch_size])?;
            squared_terms * weights.f_to_kind(kind)?.detach().f_unsqueeze(1)?
        }
        None => squared_terms,
    };
    let valid_count = valid_mask.f_sum(kind)?.f_clamp_min(1.0)?;
    let loss = weighted_terms.f_sum(kind)? / valid_count;
    let td_errors = (td * &valid_mask).detach();
    Ok(TdLoss { loss, td_errors })
}

/// Computes one sequence's priority `η · max|δ| + (1 - η) · mean|δ|` from its valid TD errors.
///
/// Signs are ignored; an empty slice gives 0.
pub fn sequence_priority(td_errors: &[f64], eta: f64) -> f64 {
    if td_errors.is_empty() {
        return 0.0;
    }
    let max_abs = td_errors.iter().fold(0.0f64, |max, td| max.max(td.abs()));
    let mean_abs = td_errors.iter().map(|td| td.abs()).sum::<f64>() / td_errors.len() as f64;
    eta * max_abs + (1.0 - eta) * mean_abs
}

/// Computes [`sequence_priority`] for every sequence of a `[B, T]` TD-error tensor, counting only
/// positions where `valid_mask` is non-zero.
pub fn sequence_priorities(
    td_errors: &Tensor,
    valid_mask: &Tensor,
    eta: f64,
) -> Result<Vec<f64>, LearnerError> {
    let priorities = sequence_priority_tensor(td_errors, valid_mask, eta)?;
    Ok(Vec::<f64>::try_from(priorities.f_to_device(tch::Device::Cpu)?)?)
}

/// [`sequence_priorities`] as a float64 tensor `[B]` on the TD errors' device (no read-back, so
/// a caller can bring it back together with other figures).
pub fn sequence_priority_tensor(
    td_errors: &Tensor,
    valid_mask: &Tensor,
    eta: f64,
) -> Result<Tensor, LearnerError> {
    let (batch_size, sequence_length) = td_errors.size2()?;
    expect_shape("valid_mask", valid_mask, &[batch_size, sequence_length])?;
    if !(0.0..=1.0).contains(&eta) {
        return Err(LearnerError::InvalidArgument(format!(
            "eta must lie in [0, 1], got {eta}"
        )));
    }
    tch::no_grad(|| {
        let valid_mask = valid_mask.f_ne(0)?.f_to_kind(Kind::Double)?;
        // Masked entries become 0, which cannot raise a max of absolute values.
        let absolute = td_errors.f_to_kind(Kind::Double)?.f_abs()? * &valid_mask;
        let max_abs = absolute.f_amax(1, false)?;
        let valid_count = valid_mask
            .f_sum_dim_intlist(1, false, Kind::Double)?
            .f_clamp_min(1.0)?;
        let mean_abs = absolute.f_sum_dim_intlist(1, false, Kind::Double)? / valid_count;
        Ok(max_abs * eta + mean_abs * (1.0 - eta))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor_2d(values: &[&[f64]]) -> Tensor {
        let flat: Vec<f64> = values.iter().flat_map(|row| row.iter().copied()).collect();
        Tensor::from_slice(&flat).view([values.len() as i64, -1])
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn td_loss_is_half_mean_squared_error_over_valid_positions() {
        // q = [[1, 2, 3], [0, 0, 0]], y = [[2, 0, 100], [1, -3, 100]], mask = [[1, 1, 0], [1, 1, 0]]
        // δ = y - q = [[1, -2, (97)], [1, -3, (100)]]; masked: [[1, -2, 0], [1, -3, 0]]
        // loss = 0.5 * (1 + 4 + 1 + 9) / 4 = 7.5 / 4 = 1.875
        let q = tensor_2d(&[&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0]]).set_requires_grad(true);
        let y = tensor_2d(&[&[2.0, 0.0, 100.0], &[1.0, -3.0, 100.0]]);
        let mask = tensor_2d(&[&[1.0, 1.0, 0.0], &[1.0, 1.0, 0.0]]);
        let TdLoss { loss, td_errors } = td_loss(&q, &y, &mask, None).unwrap();
        assert!(close(loss.double_value(&[]), 1.875));
        let td: Vec<Vec<f64>> = Vec::try_from(&td_errors).unwrap();
        assert_eq!(td, vec![vec![1.0, -2.0, 0.0], vec![1.0, -3.0, 0.0]]);
        // d loss / d q = -δ * mask / 4 = [[-0.25, 0.5, 0], [-0.25, 0.75, 0]]
        loss.backward();
        let gradient: Vec<Vec<f64>> = Vec::try_from(&q.grad()).unwrap();
        assert_eq!(
            gradient,
            vec![vec![-0.25, 0.5, 0.0], vec![-0.25, 0.75, 0.0]]
        );
        assert!(!td_errors.requires_grad());
    }

    #[test]
    fn td_loss_applies_per_sequence_importance_weights() {
        // Same δ as above; w = [0.5, 2]:
        // loss = (0.5 * 0.5 * (1 + 4) + 2 * 0.5 * (1 + 9)) / 4 = (1.25 + 10) / 4 = 2.8125
        let q = tensor_2d(&[&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0]]);
        let y = tensor_2d(&[&[2.0, 0.0, 100.0], &[1.0, -3.0, 100.0]]);
        let mask = tensor_2d(&[&[1.0, 1.0, 0.0], &[1.0, 1.0, 0.0]]);
        let weights = Tensor::from_slice(&[0.5, 2.0]);
        let TdLoss { loss, .. } = td_loss(&q, &y, &mask, Some(&weights)).unwrap();
        assert!(close(loss.double_value(&[]), 2.8125));
    }

    #[test]
    fn td_loss_with_nothing_valid_is_zero_and_rejects_bad_shapes() {
        let q = tensor_2d(&[&[1.0, 2.0]]);
        let y = tensor_2d(&[&[5.0, 5.0]]);
        let nothing_valid = tensor_2d(&[&[0.0, 0.0]]);
        assert_eq!(
            td_loss(&q, &y, &nothing_valid, None)
                .unwrap()
                .loss
                .double_value(&[]),
            0.0
        );
        assert!(td_loss(&q, &tensor_2d(&[&[5.0]]), &nothing_valid, None).is_err());
        assert!(
            td_loss(
                &q,
                &y,
                &nothing_valid,
                Some(&Tensor::from_slice(&[1.0, 1.0]))
            )
            .is_err()
        );
    }

    #[test]
    fn sequence_priority_matches_hand_computation() {
        // |δ| = [1, 2, 3]: max 3, mean 2 -> 0.9 * 3 + 0.1 * 2 = 2.9
        assert!(close(
            sequence_priority(&[1.0, -2.0, 3.0], R2D2_PRIORITY_ETA),
            2.9
        ));
        // |δ| = [4]: 0.9 * 4 + 0.1 * 4 = 4
        assert!(close(sequence_priority(&[-4.0], R2D2_PRIORITY_ETA), 4.0));
        // η = 0 gives the mean, η = 1 the max
        assert!(close(sequence_priority(&[1.0, -2.0, 3.0], 0.0), 2.0));
        assert!(close(sequence_priority(&[1.0, -2.0, 3.0], 1.0), 3.0));
        assert_eq!(sequence_priority(&[], R2D2_PRIORITY_ETA), 0.0);
    }

    #[test]
    fn sequence_priorities_use_only_valid_positions() {
        // Row 0: valid |δ| = [1, 2] (the 50 is masked): 0.9 * 2 + 0.1 * 1.5 = 1.95
        // Row 1: valid |δ| = [0.5, 1, 3]: 0.9 * 3 + 0.1 * 1.5 = 2.85
        // Row 2: nothing valid -> 0
        let td = tensor_2d(&[&[1.0, -2.0, 50.0], &[-0.5, 1.0, 3.0], &[7.0, 7.0, 7.0]]);
        let mask = tensor_2d(&[&[1.0, 1.0, 0.0], &[1.0, 1.0, 1.0], &[0.0, 0.0, 0.0]]);
        let priorities = sequence_priorities(&td, &mask, R2D2_PRIORITY_ETA).unwrap();
        assert_eq!(priorities.len(), 3);
        assert!(close(priorities[0], 1.95), "{priorities:?}");
        assert!(close(priorities[1], 2.85), "{priorities:?}");
        assert_eq!(priorities[2], 0.0);
        // The slice version agrees on the same rows.
        assert!(close(
            priorities[0],
            sequence_priority(&[1.0, -2.0], R2D2_PRIORITY_ETA)
        ));
        assert!(close(
            priorities[1],
            sequence_priority(&[-0.5, 1.0, 3.0], R2D2_PRIORITY_ETA)
        ));
        assert!(sequence_priorities(&td, &mask, 1.5).is_err());
    }
}
