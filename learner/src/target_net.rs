//! Target-network maintenance on `tch` var-stores (spec 7.4, decision 9b, spec 10.6).
//!
//! - [`hard_update`]: `target ← online`, used once at start (decision 9b; the reference has no hard
//!   copy, spec 10.6) and optionally every N updates ([`TargetUpdateRule::HardEvery`]).
//! - [`soft_update`]: Polyak averaging `target ← τ · online + (1 - τ) · target`, τ = 0.005 after every
//!   gradient update (spec 7.4).
//!
//! Both run over **every named variable** of the store, trainable weights and buffers alike (for
//! example batch-norm `running_mean` / `running_var`, which `tch` registers as non-trainable
//! variables). The reference updates trainable variables only, so its target network keeps its
//! initial batch-norm statistics forever (spec 10.6); this project updates them too, so that the
//! target network's inference-mode normalisation follows the online one. Floating variables are
//! averaged; non-floating ones (integer counters) cannot be averaged and are copied. Both stores
//! must hold the same names with the same shapes and kinds. Updates run under `no_grad`, in place,
//! so modules built on the target store see the new values.

use std::collections::HashMap;

use tch::Tensor;
use tch::nn::VarStore;

use crate::error::{torch_message, LearnerError};

/// The reference's Polyak coefficient τ (spec 7.4).
pub const POLYAK_TAU: f64 = 0.005;

/// Pairs every target variable with the online variable of the same name, checking names, shapes
/// and kinds; returns the pairs sorted by name.
fn paired_variables(
    target: &VarStore,
    online: &VarStore,
) -> Result<Vec<(String, Tensor, Tensor)>, LearnerError> {
    let target_variables = target.variables();
    let mut online_variables: HashMap<String, Tensor> = online.variables();
    let mut names: Vec<&String> = target_variables.keys().collect();
    names.sort();
    let mut pairs = Vec::with_capacity(names.len());
    for name in names {
        let target_variable = &target_variables[name];
        let online_variable =
            online_variables
                .remove(name)
                .ok_or_else(|| LearnerError::VariableMismatch {
                    name: name.clone(),
                    present_in: "target",
                })?;
        if online_variable.size() != target_variable.size() {
            return Err(LearnerError::ShapeMismatch {
                what: format!("online variable {name}"),
                expected: target_variable.size(),
                actual: online_variable.size(),
            });
        }
        if online_variable.kind() != target_variable.kind() {
            return Err(LearnerError::UnsupportedKind {
                what: format!("online variable {name}"),
                kind: online_variable.kind(),
            });
        }
        pairs.push((
            name.clone(),
            target_variable.shallow_clone(),
            online_variable,
        ));
    }
    if let Some(name) = online_variables.keys().min() {
        return Err(LearnerError::VariableMismatch {
            name: name.clone(),
            present_in: "online",
        });
    }
    Ok(pairs)
}

/// Copies every variable of `online` into `target` (`target ← online`).
pub fn hard_update(target: &mut VarStore, online: &VarStore) -> Result<(), LearnerError> {
    let pairs = paired_variables(target, online)?;
    let device = target.device();
    tch::no_grad(|| {
        for (_name, mut target_variable, online_variable) in pairs {
            target_variable.f_copy_(&online_variable.f_to_device(device)?)?;
        }
        Ok(())
    })
}

/// Moves every floating variable of `target` towards `online`: `target ← τ · online + (1 - τ) · target`;
/// copies non-floating ones. `tau` must lie in `[0, 1]`.
pub fn soft_update(target: &mut VarStore, online: &VarStore, tau: f64) -> Result<(), LearnerError> {
    if !(0.0..=1.0).contains(&tau) {
        return Err(LearnerError::InvalidArgument(format!(
            "tau must lie in [0, 1], got {tau}"
        )));
    }
    let pairs = paired_variables(target, online)?;
    let device = target.device();
    let (mut targets, mut onlines) = (Vec::new(), Vec::new());
    tch::no_grad(|| -> Result<(), LearnerError> {
        for (_name, mut target_variable, online_variable) in pairs {
            let online_variable = online_variable.f_to_device(device)?;
            if target_variable.is_floating_point() {
                targets.push(target_variable);
                onlines.push(online_variable);
            } else {
                target_variable.f_copy_(&online_variable)?;
            }
        }
        Ok(())
    })?;
    // target += tau (online - target), in place: one multi-tensor call for the whole network
    // (permakey::foreach), where per-variable ops cost ~3 kernel launches each on a GPU.
    permakey::foreach::lerp_(&targets, &onlines, tau).map_err(torch_message)
}

/// How the target network follows the online one after each gradient update.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum TargetUpdateRule {
    /// Polyak averaging after every update (the reference's rule, τ = [`POLYAK_TAU`]).
    Polyak {
        /// Weight of the online network in each average.
        tau: f64,
    },
    /// Hard copy after every `period_updates`-th update (DQN-style option, decision 9b).
    HardEvery {
        /// Updates between copies (must be at least 1).
        period_updates: u64,
    },
}

impl Default for TargetUpdateRule {
    fn default() -> Self {
        Self::Polyak { tau: POLYAK_TAU }
    }
}

impl TargetUpdateRule {
    /// Applies the rule after gradient update number `completed_updates` (counting from 1);
    /// returns whether the target changed.
    pub fn apply(
        &self,
        target: &mut VarStore,
        online: &VarStore,
        completed_updates: u64,
    ) -> Result<bool, LearnerError> {
        match *self {
            Self::Polyak { tau } => {
                soft_update(target, online, tau)?;
                Ok(true)
            }
            Self::HardEvery { period_updates } => {
                if period_updates == 0 {
                    return Err(LearnerError::InvalidArgument(
                        "period_updates must be at least 1".to_owned(),
                    ));
                }
                if !completed_updates.is_multiple_of(period_updates) {
                    return Ok(false);
                }
                hard_update(target, online)?;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, ModuleT};
    use tch::{Device, Kind};

    /// A tiny net, linear(2 -> 1) then batch-norm over its one feature, plus an integer buffer.
    struct TinyNet {
        store: VarStore,
        linear: nn::Linear,
        batch_norm: nn::BatchNorm,
    }

    fn tiny_net() -> TinyNet {
        let store = VarStore::new(Device::Cpu);
        let root = store.root();
        let linear = nn::linear(&root / "fc", 2, 1, Default::default());
        let batch_norm = nn::batch_norm1d(&root / "bn", 1, Default::default());
        let _update_count = root.add("update_count", Tensor::from_slice(&[0i64]), false);
        TinyNet {
            store,
            linear,
            batch_norm,
        }
    }

    fn set(store: &VarStore, name: &str, values: &[f64]) {
        let variables = store.variables();
        let mut variable = variables[name].shallow_clone();
        let source = Tensor::from_slice(values)
            .to_kind(variable.kind())
            .view(variable.size().as_slice());
        tch::no_grad(|| variable.copy_(&source));
    }

    fn get(store: &VarStore, name: &str) -> Vec<f64> {
        Vec::<f64>::try_from(store.variables()[name].to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-6, "{actual:?} vs {expected:?}");
        }
    }

    fn fill(net: &TinyNet, weight: [f64; 2], bias: f64, bn: [f64; 4], count: i64) {
        set(&net.store, "fc.weight", &weight);
        set(&net.store, "fc.bias", &[bias]);
        set(&net.store, "bn.weight", &[bn[0]]);
        set(&net.store, "bn.bias", &[bn[1]]);
        set(&net.store, "bn.running_mean", &[bn[2]]);
        set(&net.store, "bn.running_var", &[bn[3]]);
        set(&net.store, "update_count", &[count as f64]);
    }

    #[test]
    fn soft_update_averages_weights_and_batch_norm_statistics() {
        let online = tiny_net();
        let mut target = tiny_net();
        fill(&online, [1.0, 2.0], 10.0, [2.0, 1.0, 2.0, 3.0], 7);
        fill(&target, [3.0, 4.0], 0.0, [1.0, 0.0, 0.0, 1.0], 0);
        soft_update(&mut target.store, &online.store, POLYAK_TAU).unwrap();
        // weight: 0.005 * [1, 2] + 0.995 * [3, 4] = [0.005 + 2.985, 0.01 + 3.98] = [2.99, 3.99]
        assert_close(&get(&target.store, "fc.weight"), &[2.99, 3.99]);
        // bias: 0.005 * 10 + 0.995 * 0 = 0.05
        assert_close(&get(&target.store, "fc.bias"), &[0.05]);
        // bn gamma: 0.005 * 2 + 0.995 * 1 = 1.005; beta: 0.005 * 1 = 0.005
        assert_close(&get(&target.store, "bn.weight"), &[1.005]);
        assert_close(&get(&target.store, "bn.bias"), &[0.005]);
        // running mean: 0.005 * 2 + 0.995 * 0 = 0.01; running var: 0.005 * 3 + 0.995 * 1 = 1.01
        assert_close(&get(&target.store, "bn.running_mean"), &[0.01]);
        assert_close(&get(&target.store, "bn.running_var"), &[1.01]);
        // The integer buffer cannot be averaged and is copied.
        assert_eq!(get(&target.store, "update_count"), vec![7.0]);
        // The online store is untouched and the target weights are still trainable leaves.
        assert_close(&get(&online.store, "fc.weight"), &[1.0, 2.0]);
        let target_weight = &target.store.variables()["fc.weight"];
        assert!(target_weight.requires_grad() && target_weight.is_leaf());
    }

    #[test]
    fn hard_update_makes_the_target_compute_the_online_function() {
        let online = tiny_net();
        let mut target = tiny_net();
        fill(&online, [1.0, -2.0], 0.5, [2.0, 1.0, 0.25, 4.0], 3);
        hard_update(&mut target.store, &online.store).unwrap();
        for name in [
            "fc.weight",
            "fc.bias",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "update_count",
        ] {
            assert_eq!(get(&target.store, name), get(&online.store, name), "{name}");
        }
        // In inference mode, y = gamma * (x·w + b - mean) / sqrt(var + 1e-5) + beta.
        // For x = [1, 1]: x·w + b = 1 - 2 + 0.5 = -0.5; (-0.5 - 0.25) / sqrt(4.00001) * 2 + 1 ≈ 0.25
        let input = Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2]);
        let forward = |net: &TinyNet| {
            net.batch_norm
                .forward_t(&net.linear.forward_t(&input, false), false)
        };
        let expected = -0.75 / 4.00001f64.sqrt() * 2.0 + 1.0;
        assert!((forward(&target).double_value(&[0, 0]) - expected).abs() < 1e-5);
        assert!((forward(&online).double_value(&[0, 0]) - expected).abs() < 1e-5);
    }

    #[test]
    fn soft_update_with_tau_one_is_a_hard_copy_and_tau_zero_changes_nothing() {
        let online = tiny_net();
        let mut target = tiny_net();
        fill(&online, [1.0, 2.0], 3.0, [4.0, 5.0, 6.0, 7.0], 1);
        fill(&target, [0.0, 0.0], 0.0, [1.0, 0.0, 0.0, 1.0], 0);
        soft_update(&mut target.store, &online.store, 0.0).unwrap();
        assert_close(&get(&target.store, "fc.weight"), &[0.0, 0.0]);
        soft_update(&mut target.store, &online.store, 1.0).unwrap();
        assert_close(&get(&target.store, "fc.weight"), &[1.0, 2.0]);
        assert_close(&get(&target.store, "bn.running_var"), &[7.0]);
        assert!(soft_update(&mut target.store, &online.store, 1.5).is_err());
    }

    #[test]
    fn updates_reject_stores_with_different_variables() {
        let online = tiny_net();
        let mut wider = VarStore::new(Device::Cpu);
        let _ = nn::linear(&wider.root() / "fc", 3, 1, Default::default());
        assert!(matches!(
            hard_update(&mut wider, &online.store),
            Err(LearnerError::ShapeMismatch { .. })
        ));
        let mut smaller = VarStore::new(Device::Cpu);
        let _ = nn::linear(&smaller.root() / "fc", 2, 1, Default::default());
        assert!(matches!(
            soft_update(&mut smaller, &online.store, POLYAK_TAU),
            Err(LearnerError::VariableMismatch {
                present_in: "online",
                ..
            })
        ));
        let mut target = tiny_net();
        assert!(matches!(
            hard_update(&mut target.store, &smaller),
            Err(LearnerError::VariableMismatch {
                present_in: "target",
                ..
            })
        ));
    }

    #[test]
    fn hard_every_rule_copies_only_on_its_period() {
        let online = tiny_net();
        let mut target = tiny_net();
        fill(&online, [1.0, 2.0], 3.0, [4.0, 5.0, 6.0, 7.0], 1);
        fill(&target, [0.0, 0.0], 0.0, [1.0, 0.0, 0.0, 1.0], 0);
        let rule = TargetUpdateRule::HardEvery { period_updates: 4 };
        assert!(!rule.apply(&mut target.store, &online.store, 3).unwrap());
        assert_close(&get(&target.store, "fc.weight"), &[0.0, 0.0]);
        assert!(rule.apply(&mut target.store, &online.store, 4).unwrap());
        assert_close(&get(&target.store, "fc.weight"), &[1.0, 2.0]);
        assert!(
            TargetUpdateRule::HardEvery { period_updates: 0 }
                .apply(&mut target.store, &online.store, 1)
                .is_err()
        );
    }

    #[test]
    fn default_rule_is_the_reference_polyak_average() {
        assert_eq!(
            TargetUpdateRule::default(),
            TargetUpdateRule::Polyak { tau: 0.005 }
        );
        let online = tiny_net();
        let mut target = tiny_net();
        fill(&online, [2.0, 2.0], 0.0, [1.0, 0.0, 0.0, 1.0], 0);
        fill(&target, [0.0, 0.0], 0.0, [1.0, 0.0, 0.0, 1.0], 0);
        assert!(
            TargetUpdateRule::default()
                .apply(&mut target.store, &online.store, 1)
                .unwrap()
        );
        // 0.005 * 2 + 0.995 * 0 = 0.01
        assert_close(&get(&target.store, "fc.weight"), &[0.01, 0.01]);
    }
}
