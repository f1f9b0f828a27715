//! Step-indexed schedules: exploration ε (spec 7.4) and the keypoint pre-training learning rates
//! (spec 5 and 6).
//!
//! - ε: linear from 1.0 to 0.1 over `exploration_fraction × total_env_steps` environment steps,
//!   then constant (OpenAI-baselines `LinearSchedule`, as used by the reference;
//!   `exploration_fraction = 1.0` there, i.e. the whole run).
//! - Learning rate: Keras `InverseTimeDecay`,
//!   `lr(step) = initial / (1 + rate · floor(step / decay_steps))` with `staircase`, or
//!   `initial / (1 + rate · step / decay_steps)` without. PermaKey: (2e-4, 10000, 0.85, staircase);
//!   Transporter: (2e-4, 30000, 0.9, staircase). `step` is the optimiser's iteration counter. The
//!   PermaKey reference applies gradients four times per batch on one shared counter (spec 10.8),
//!   so passing `4 × batches` reproduces its decay every 2500 batches; passing `batches` gives the
//!   nominal schedule. Which one to use is the pre-training crate's decision.

use serde::{Deserialize, Serialize};

/// The reference's initial exploration ε (spec 7.4).
pub const EPSILON_START: f64 = 1.0;
/// The reference's final exploration ε (spec 7.4).
pub const EPSILON_END: f64 = 0.1;
/// The reference's `exp_fraction`: ε anneals over the whole run (spec 7.4).
pub const EXPLORATION_FRACTION: f64 = 1.0;

/// A value moving linearly from `initial_value` to `final_value` over `duration_steps`, then
/// staying at `final_value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSchedule {
    /// The value at step 0.
    pub initial_value: f64,
    /// The value from `duration_steps` on.
    pub final_value: f64,
    /// Steps the interpolation takes; 0 means `final_value` from the start.
    pub duration_steps: u64,
}

impl LinearSchedule {
    /// Returns the value at `step`: `initial + min(step / duration, 1) · (final - initial)`.
    pub fn value(&self, step: u64) -> f64 {
        if step >= self.duration_steps {
            return self.final_value;
        }
        let progress = step as f64 / self.duration_steps as f64;
        self.initial_value + progress * (self.final_value - self.initial_value)
    }
}

/// Builds the exploration schedule: ε from [`EPSILON_START`] to [`EPSILON_END`] over
/// `floor(exploration_fraction · total_env_steps)` environment steps.
///
/// `exploration_fraction` is clamped to `[0, 1]`.
pub fn exploration_epsilon_schedule(
    total_env_steps: u64,
    exploration_fraction: f64,
) -> LinearSchedule {
    let fraction = exploration_fraction.clamp(0.0, 1.0);
    LinearSchedule {
        initial_value: EPSILON_START,
        final_value: EPSILON_END,
        duration_steps: (fraction * total_env_steps as f64).floor() as u64,
    }
}

/// Keras `InverseTimeDecay`: `initial / (1 + rate · step / decay_steps)`, with the quotient
/// floored when `staircase` is set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InverseTimeDecay {
    /// The learning rate at step 0.
    pub initial_learning_rate: f64,
    /// Steps per decay period (must be at least 1).
    pub decay_steps: u64,
    /// How much each period adds to the divisor.
    pub decay_rate: f64,
    /// Whether the rate drops in steps at multiples of `decay_steps` (true in both references).
    pub staircase: bool,
}

impl InverseTimeDecay {
    /// The PermaKey pre-training schedule: 2e-4, every 10000 steps, rate 0.85, staircase (spec 5).
    pub const PERMAKEY_PRETRAINING: Self = Self {
        initial_learning_rate: 2e-4,
        decay_steps: 10_000,
        decay_rate: 0.85,
        staircase: true,
    };

    /// The Transporter pre-training schedule: 2e-4, every 30000 steps, rate 0.9, staircase (spec 6).
    pub const TRANSPORTER_PRETRAINING: Self = Self {
        initial_learning_rate: 2e-4,
        decay_steps: 30_000,
        decay_rate: 0.9,
        staircase: true,
    };

    /// Returns the learning rate at optimiser iteration `step`.
    pub fn learning_rate(&self, step: u64) -> f64 {
        debug_assert!(self.decay_steps > 0, "decay_steps must be at least 1");
        let decay_steps = self.decay_steps.max(1);
        let periods = if self.staircase {
            (step / decay_steps) as f64
        } else {
            step as f64 / decay_steps as f64
        };
        self.initial_learning_rate / (1.0 + self.decay_rate * periods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn epsilon_anneals_over_the_whole_run_by_default() {
        let schedule = exploration_epsilon_schedule(400_000, EXPLORATION_FRACTION);
        assert_eq!(schedule.duration_steps, 400_000);
        assert_eq!(schedule.value(0), 1.0);
        // 1 + (100000 / 400000) * (0.1 - 1) = 1 - 0.225 = 0.775
        assert!(close(schedule.value(100_000), 0.775));
        // 1 - 0.5 * 0.9 = 0.55
        assert!(close(schedule.value(200_000), 0.55));
        assert!(close(schedule.value(400_000), 0.1));
        assert!(close(schedule.value(1_000_000), 0.1));
    }

    #[test]
    fn epsilon_fraction_shortens_the_ramp() {
        // 0.1 of 100000 steps = 10000; at 5000: 1 - 0.5 * 0.9 = 0.55; after 10000: 0.1
        let schedule = exploration_epsilon_schedule(100_000, 0.1);
        assert_eq!(schedule.duration_steps, 10_000);
        assert!(close(schedule.value(5_000), 0.55));
        assert!(close(schedule.value(10_000), 0.1));
        assert!(close(schedule.value(99_999), 0.1));
        // A zero-length ramp is already at the end.
        assert_eq!(exploration_epsilon_schedule(100_000, 0.0).value(0), 0.1);
    }

    #[test]
    fn permakey_learning_rate_decays_in_stairs_of_ten_thousand() {
        let schedule = InverseTimeDecay::PERMAKEY_PRETRAINING;
        assert_eq!(schedule.learning_rate(0), 2e-4);
        assert_eq!(schedule.learning_rate(9_999), 2e-4);
        // floor(10000 / 10000) = 1: 2e-4 / 1.85 = 1.0810810810...e-4
        assert!(close(
            schedule.learning_rate(10_000),
            1.081_081_081_081_081e-4
        ));
        // floor(25000 / 10000) = 2: 2e-4 / 2.7 = 7.4074074...e-5
        assert!(close(
            schedule.learning_rate(25_000),
            7.407_407_407_407_407e-5
        ));
    }

    #[test]
    fn transporter_learning_rate_decays_in_stairs_of_thirty_thousand() {
        let schedule = InverseTimeDecay::TRANSPORTER_PRETRAINING;
        assert_eq!(schedule.learning_rate(29_999), 2e-4);
        // floor(30000 / 30000) = 1: 2e-4 / 1.9 = 1.0526315789...e-4
        assert!(close(
            schedule.learning_rate(30_000),
            1.052_631_578_947_368_4e-4
        ));
        // floor(95000 / 30000) = 3: 2e-4 / 3.7 = 5.4054054...e-5
        assert!(close(
            schedule.learning_rate(95_000),
            5.405_405_405_405_405e-5
        ));
    }

    #[test]
    fn smooth_inverse_time_decay_uses_the_fractional_step() {
        let schedule = InverseTimeDecay {
            staircase: false,
            ..InverseTimeDecay::PERMAKEY_PRETRAINING
        };
        // 5000 / 10000 = 0.5: 2e-4 / (1 + 0.425) = 2e-4 / 1.425 = 1.4035087719...e-4
        assert!(close(
            schedule.learning_rate(5_000),
            1.403_508_771_929_824_5e-4
        ));
    }
}
