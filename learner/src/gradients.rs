//! Global-norm gradient clipping (spec 7.4: clip 10).
//!
//! Follows TensorFlow's `tf.clip_by_global_norm`, which the reference uses: with
//! `N = sqrt(Σ_i ||g_i||²)` over all gradients, every gradient becomes `g_i · c / max(N, c)`, so
//! gradients are left alone when `N <= c`. `tch` also has `nn::Optimizer::clip_grad_norm`
//! (PyTorch's rule, `c / (N + 1e-6)`); it returns nothing, panics when no gradient is defined and
//! only sees the optimiser's variables, so this module has its own version that returns `N` for
//! logging and refuses a non-finite norm instead of spreading NaN through the weights.
//!
//! Both the norm and the scaling are multi-tensor calls ([`permakey::foreach`]): the norm reads one
//! number back from the device, not one per gradient (on a GPU each read-back waits for the queue).

use tch::Tensor;

use crate::error::{torch_message, LearnerError};

/// The reference's global-norm clip (spec 7.4).
pub const GRADIENT_CLIP_NORM: f64 = 10.0;

/// Returns `sqrt(Σ ||grad||²)` over the defined gradients of `variables` (0 if none is defined).
pub fn global_gradient_norm(variables: &[Tensor]) -> Result<f64, LearnerError> {
    norm_of(&defined_gradients(variables))
}

/// The defined gradients of `variables`.
fn defined_gradients(variables: &[Tensor]) -> Vec<Tensor> {
    variables.iter().map(Tensor::grad).filter(Tensor::defined).collect()
}

/// `sqrt(Σ ||g||²)` over `gradients`.
fn norm_of(gradients: &[Tensor]) -> Result<f64, LearnerError> {
    Ok(permakey::foreach::sum_of_squares(gradients).map_err(torch_message)?.sqrt())
}

/// Scales the gradients of `variables` in place so their global norm is at most `max_norm`;
/// returns the global norm measured before clipping.
///
/// Call between `loss.backward()` and `optimizer.step()`, e.g. with
/// `var_store.trainable_variables()`. On a NaN or infinite norm nothing is changed and
/// [`LearnerError::NonFiniteGradientNorm`] is returned, so the caller can skip the update.
pub fn clip_gradients_by_global_norm(
    variables: &[Tensor],
    max_norm: f64,
) -> Result<f64, LearnerError> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(LearnerError::InvalidArgument(format!(
            "max_norm must be positive and finite, got {max_norm}"
        )));
    }
    let gradients = defined_gradients(variables);
    let global_norm = norm_of(&gradients)?;
    if !global_norm.is_finite() {
        return Err(LearnerError::NonFiniteGradientNorm(global_norm));
    }
    if global_norm > max_norm {
        let scale = max_norm / global_norm;
        permakey::foreach::mul_scalar_(&gradients, scale).map_err(torch_message)?;
    }
    Ok(global_norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};
    use tch::nn::{self, Module, OptimizerConfig, VarStore};

    fn leaf(values: &[f64]) -> Tensor {
        Tensor::from_slice(values).set_requires_grad(true)
    }

    fn gradient(variable: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(variable.grad()).unwrap()
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{actual:?} vs {expected:?}");
        }
    }

    /// Variables a = [1, 2], b = [3], c (unused); loss = 3 a0 + 0 a1 + 4 b0,
    /// so grad a = [3, 0], grad b = [4], c has no gradient; N = sqrt(9 + 16) = 5.
    fn variables_with_gradient_norm_five() -> Vec<Tensor> {
        let a = leaf(&[1.0, 2.0]);
        let b = leaf(&[3.0]);
        let c = leaf(&[9.0]);
        let loss = (&a * Tensor::from_slice(&[3.0, 0.0])).sum(Kind::Double) + &b * 4.0;
        loss.sum(Kind::Double).backward();
        vec![a, b, c]
    }

    #[test]
    fn large_gradients_are_scaled_to_the_clip_norm() {
        let variables = variables_with_gradient_norm_five();
        let norm = clip_gradients_by_global_norm(&variables, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-12);
        // scale = 1 / 5: grad a = [0.6, 0], grad b = [0.8]; new norm sqrt(0.36 + 0.64) = 1
        assert_close(&gradient(&variables[0]), &[0.6, 0.0]);
        assert_close(&gradient(&variables[1]), &[0.8]);
        assert!(!variables[2].grad().defined());
        assert!((global_gradient_norm(&variables).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn small_gradients_are_left_alone() {
        let variables = variables_with_gradient_norm_five();
        // N = 5 <= 10: unchanged
        let norm = clip_gradients_by_global_norm(&variables, GRADIENT_CLIP_NORM).unwrap();
        assert!((norm - 5.0).abs() < 1e-12);
        assert_close(&gradient(&variables[0]), &[3.0, 0.0]);
        assert_close(&gradient(&variables[1]), &[4.0]);
    }

    #[test]
    fn no_gradients_give_norm_zero_and_bad_inputs_are_refused() {
        assert_eq!(
            clip_gradients_by_global_norm(&[leaf(&[1.0])], 1.0).unwrap(),
            0.0
        );
        assert!(clip_gradients_by_global_norm(&[], 0.0).is_err());
        let a = leaf(&[1.0]);
        (&a * f64::INFINITY).sum(Kind::Double).backward();
        assert!(matches!(
            clip_gradients_by_global_norm(&[a.shallow_clone()], 1.0),
            Err(LearnerError::NonFiniteGradientNorm(_))
        ));
        assert_eq!(
            gradient(&a),
            vec![f64::INFINITY],
            "a refused clip leaves gradients unchanged"
        );
    }

    #[test]
    fn clipping_agrees_with_tch_optimizer_clip_grad_norm_on_a_network() {
        // tch's rule uses c / (N + 1e-6); ours c / N. For N around 10^2 the two differ by ~1e-8 relative.
        tch::manual_seed(7);
        let store = VarStore::new(Device::Cpu);
        let net = nn::seq()
            .add(nn::linear(store.root() / "l1", 4, 8, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(store.root() / "l2", 8, 3, Default::default()));
        let optimizer = nn::Sgd::default().build(&store, 0.1).unwrap();
        let input = Tensor::randn([16, 4], (Kind::Float, Device::Cpu)) * 30.0;
        let loss = net.forward(&input).square().sum(Kind::Float);
        loss.backward();
        let variables = store.trainable_variables();
        let before: Vec<Tensor> = variables.iter().map(|v| v.grad().copy()).collect();
        let norm = clip_gradients_by_global_norm(&variables, GRADIENT_CLIP_NORM).unwrap();
        assert!(
            norm > GRADIENT_CLIP_NORM,
            "the test needs a gradient above the clip, got {norm}"
        );
        let ours: Vec<Tensor> = variables.iter().map(|v| v.grad().copy()).collect();
        // Restore the unclipped gradients and let tch clip them.
        tch::no_grad(|| {
            for (variable, original) in variables.iter().zip(&before) {
                let mut gradient = variable.grad();
                gradient.copy_(original);
            }
        });
        optimizer.clip_grad_norm(GRADIENT_CLIP_NORM);
        for (variable, ours) in variables.iter().zip(&ours) {
            let difference = (variable.grad() - ours).abs().max().double_value(&[]);
            assert!(difference < 1e-5, "difference {difference}");
        }
        assert!((global_gradient_norm(&variables).unwrap() - GRADIENT_CLIP_NORM).abs() < 1e-3);
    }
}
