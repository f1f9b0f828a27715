//! Pure prioritised-replay math (Schaul et al. 2016, "Prioritized Experience Replay"; the R2D2
//! variant of Kapturowski et al. 2019 uses the same formulas with alpha 0.9, beta 0.6).

/// Returns the sampling mass `p^alpha` of a priority.
///
/// A priority of exactly zero has mass zero for every `alpha` (so `alpha = 0` does not revive
/// it through `0^0 = 1`): zero always means "never sample".
pub fn priority_mass(priority: f64, priority_exponent: f64) -> f64 {
    if priority == 0.0 {
        0.0
    } else {
        priority.powf(priority_exponent)
    }
}

/// Returns importance-sampling weights `w_i = (N * P(i))^-beta`, each divided by the batch's
/// largest weight so that they lie in `(0, 1]`.
///
/// `probabilities` are the sampling probabilities of the batch's items, `replay_len` is `N`,
/// the number of stored items. With uniform sampling (`P(i) = 1/N`) every weight is 1.
pub fn importance_weights(
    probabilities: &[f64],
    replay_len: usize,
    importance_sampling_exponent: f64,
) -> Vec<f32> {
    debug_assert!(probabilities.iter().all(|&p| p > 0.0 && p <= 1.0));
    let n = replay_len as f64;
    let raw: Vec<f64> = probabilities
        .iter()
        .map(|&probability| (n * probability).powf(-importance_sampling_exponent))
        .collect();
    let max = raw.iter().copied().fold(0.0_f64, f64::max);
    raw.iter().map(|&weight| (weight / max) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: &[f32], expected: &[f32]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-6, "{actual:?} != {expected:?}");
        }
    }

    #[test]
    fn mass_is_priority_to_the_alpha() {
        assert_eq!(priority_mass(4.0, 0.5), 2.0);
        assert_eq!(priority_mass(3.0, 1.0), 3.0);
        assert_eq!(priority_mass(3.0, 0.0), 1.0);
        assert_eq!(priority_mass(0.0, 0.0), 0.0);
        assert_eq!(priority_mass(0.0, 0.9), 0.0);
    }

    #[test]
    fn hand_computed_weights() {
        // N = 4; N * P = 0.4, 0.8, 1.6.
        // beta = 1: raw 2.5, 1.25, 0.625 -> / 2.5.
        assert_close(
            &importance_weights(&[0.1, 0.2, 0.4], 4, 1.0),
            &[1.0, 0.5, 0.25],
        );
        // beta = 0.5: raw 0.4^-0.5, 0.8^-0.5, 1.6^-0.5 -> ratios 1, 1/sqrt(2), 1/2.
        assert_close(
            &importance_weights(&[0.1, 0.2, 0.4], 4, 0.5),
            &[1.0, std::f32::consts::FRAC_1_SQRT_2, 0.5],
        );
        // beta = 0 turns the correction off.
        assert_close(
            &importance_weights(&[0.1, 0.2, 0.4], 4, 0.0),
            &[1.0, 1.0, 1.0],
        );
        // The max is taken over the batch, wherever it sits.
        assert_close(&importance_weights(&[0.4, 0.1], 4, 1.0), &[0.25, 1.0]);
    }

    #[test]
    fn uniform_probabilities_give_unit_weights() {
        assert_close(&importance_weights(&[0.125; 5], 8, 0.6), &[1.0; 5]);
    }
}
