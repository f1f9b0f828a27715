//! The replay item: a fixed-length slice of one episode written by an actor.

use crate::ReplayError;

/// Observation shape of the reference agent: one 84x84 RGB frame, no stacking (spec 1.2).
pub const DEFAULT_OBS_SHAPE: [usize; 3] = [84, 84, 3];

/// Steps per sequence of the reference agent: window 8 + n-step 3 + 1 (spec 7.4).
pub const DEFAULT_SEQUENCE_LENGTH: usize = 12;

/// One stored sequence of consecutive steps of a single episode.
///
/// Step `t` holds the observation `o_t` the actor saw, the action `a_t` it took there, the
/// (already clipped) reward `r_t` that action earned and `dones[t]`, set when the episode
/// *terminated* right after `a_t` (no `o_{t+1}` exists in the episode). This is the spec's stored
/// item `(obs_t, a_t, clipped r_t, done_t)` (section 7.4).
///
/// Step `t` may also carry the keypoint centres the actor's frozen keypoint model computed for
/// `o_t` (`keypoint_dims` floats, `(y, x)` pairs for K keypoints, so `2K`): with the model
/// frozen, the Gaussian heatmaps are a pure function of the centres, so a learner rebuilds them
/// from these instead of re-running the keypoint model on every sampled frame. `keypoint_dims`
/// 0 (the default of every producer that does not set it) stores none.
///
/// Layout: `burn_in` leading steps only warm the recurrent state (0 in the reference agent),
/// then the learning steps, then `padded_steps` trailing padding steps when the episode ended
/// before the sequence was full. Padding steps have all-zero observation bytes, all-zero
/// keypoints, action 0, reward 0 and `done = true`; they are never valid data and a learner
/// masks them out ([`Sequence::mask`]). The *valid* steps are `0..valid_len()`.
///
/// `truncated` says the episode stopped without terminating (time limit, actor shutdown) right
/// after the last valid step: a learner must not treat that step as terminal, and cannot
/// bootstrap past it either, since the following observation was never stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Environment stream that produced the sequence.
    pub env_id: u32,
    /// Random id of the actor run; a new id means the recurrent state was reset by a restart.
    pub run_id: u64,
    /// `T x h x w x c` bytes, step-major, each frame in `obs_shape` order.
    pub observations: Vec<u8>,
    /// Shape of one observation, `[h, w, c]`.
    pub obs_shape: [usize; 3],
    /// `T x keypoint_dims` keypoint centre floats, step-major: step `t`'s are
    /// `keypoints[t * keypoint_dims..(t + 1) * keypoint_dims]`, computed by the actor's frozen
    /// keypoint model on `o_t` (K `(y, x)` pairs in `[-1, 1]` for the PermaKey front end).
    /// Empty when `keypoint_dims` is 0; zeros on padding steps.
    pub keypoints: Vec<f32>,
    /// Keypoint floats stored per step: `2K` for K `(y, x)` centres, 0 when none are stored.
    pub keypoint_dims: u16,
    /// Action taken at each step (index into the minimal action set).
    pub actions: Vec<u16>,
    /// Reward of each step's action, already clipped by the actor.
    pub rewards: Vec<f32>,
    /// Episode terminated after this step's action.
    pub dones: Vec<bool>,
    /// The episode was cut (not terminated) right after the last valid step.
    pub truncated: bool,
    /// Leading steps used only to warm up the recurrent state.
    pub burn_in: u16,
    /// Trailing padding steps (zero frames, action 0, reward 0, done set).
    pub padded_steps: u16,
    /// Recurrent state (LSTM `h` then `c`) the actor had *before* step 0; empty when the learner
    /// starts every sequence from zeros, as the reference does.
    pub initial_recurrent_state: Vec<f32>,
    /// Version of the parameters the actor used at step 0.
    pub parameter_version: u64,
}

impl Sequence {
    /// Returns the number of steps, padding included.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Returns true when the sequence has no step (such a sequence never validates).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Returns the number of bytes of one observation, `h * w * c`.
    pub fn observation_len(&self) -> usize {
        self.obs_shape.iter().product()
    }

    /// Returns the observation bytes of step `step`.
    ///
    /// # Panics
    /// If `step >= len()` or the observation buffer is shorter than the shape says.
    pub fn observation(&self, step: usize) -> &[u8] {
        let frame = self.observation_len();
        &self.observations[step * frame..(step + 1) * frame]
    }

    /// Returns the keypoint floats of step `step` (`keypoint_dims` of them; empty when the
    /// sequence stores no keypoints).
    ///
    /// # Panics
    /// If `step >= len()` or the keypoint buffer is shorter than `len() * keypoint_dims`.
    pub fn step_keypoints(&self, step: usize) -> &[f32] {
        let dims = usize::from(self.keypoint_dims);
        &self.keypoints[step * dims..(step + 1) * dims]
    }

    /// Returns the number of valid (non-padding) steps.
    pub fn valid_len(&self) -> usize {
        self.len().saturating_sub(usize::from(self.padded_steps))
    }

    /// Returns one flag per step: true for valid steps, false for padding.
    pub fn mask(&self) -> Vec<bool> {
        let valid = self.valid_len();
        (0..self.len()).map(|step| step < valid).collect()
    }

    /// Returns the bytes this sequence occupies in memory, see [`sequence_memory_bytes`].
    pub fn memory_bytes(&self) -> usize {
        sequence_memory_bytes(
            self.len(),
            self.obs_shape,
            self.initial_recurrent_state.len(),
            usize::from(self.keypoint_dims),
        )
    }

    /// Checks the invariants a learner relies on; the first violation is returned.
    ///
    /// Checked: at least one step; `rewards` and `dones` have one entry per action;
    /// `observations.len() == T * h * w * c` with no zero dimension;
    /// `keypoints.len() == T * keypoint_dims`; rewards, recurrent state and keypoints finite;
    /// padding leaves at least one valid step and is neutral (reward 0, done set, keypoints
    /// zero); burn-in leaves at least one valid step to learn from.
    pub fn validate(&self) -> Result<(), ReplayError> {
        let steps = self.len();
        if steps == 0 {
            return Err(ReplayError::EmptySequence);
        }
        for (field, actual) in [("rewards", self.rewards.len()), ("dones", self.dones.len())] {
            if actual != steps {
                return Err(ReplayError::SequenceLengthMismatch {
                    field,
                    actual,
                    steps,
                });
            }
        }
        if self.obs_shape.contains(&0) {
            return Err(ReplayError::ZeroObservationShape {
                obs_shape: self.obs_shape,
            });
        }
        let expected = steps * self.observation_len();
        if self.observations.len() != expected {
            return Err(ReplayError::ObservationSizeMismatch {
                actual: self.observations.len(),
                expected,
                steps,
                obs_shape: self.obs_shape,
            });
        }
        let keypoint_dims = usize::from(self.keypoint_dims);
        let expected = steps * keypoint_dims;
        if self.keypoints.len() != expected {
            return Err(ReplayError::KeypointSizeMismatch {
                actual: self.keypoints.len(),
                expected,
                steps,
                keypoint_dims,
            });
        }
        if let Some((step, &value)) = self
            .rewards
            .iter()
            .enumerate()
            .find(|(_, reward)| !reward.is_finite())
        {
            return Err(ReplayError::NonFiniteReward { step, value });
        }
        if let Some((index, &value)) = self
            .initial_recurrent_state
            .iter()
            .enumerate()
            .find(|(_, entry)| !entry.is_finite())
        {
            return Err(ReplayError::NonFiniteRecurrentState { index, value });
        }
        if let Some((index, &value)) = self
            .keypoints
            .iter()
            .enumerate()
            .find(|(_, entry)| !entry.is_finite())
        {
            return Err(ReplayError::NonFiniteKeypoint {
                step: index / keypoint_dims,
                index: index % keypoint_dims,
                value,
            });
        }
        let padded_steps = usize::from(self.padded_steps);
        if padded_steps >= steps {
            return Err(ReplayError::InvalidPadding {
                padded_steps,
                steps,
            });
        }
        let valid_steps = steps - padded_steps;
        if let Some(step) =
            (valid_steps..steps).find(|&step| self.rewards[step] != 0.0 || !self.dones[step])
        {
            return Err(ReplayError::PaddingNotNeutral { step });
        }
        if let Some(step) = (valid_steps..steps)
            .find(|&step| self.step_keypoints(step).iter().any(|&value| value != 0.0))
        {
            return Err(ReplayError::PaddingKeypointsNotZero { step });
        }
        let burn_in = usize::from(self.burn_in);
        if burn_in >= valid_steps {
            return Err(ReplayError::BurnInTooLong {
                burn_in,
                valid_steps,
            });
        }
        Ok(())
    }
}

/// Bookkeeping bytes one stored sequence costs beyond its own buffers: the `Sequence` struct,
/// the two reference counts of its `Arc`, the table slot (pointer, generation, priority) and
/// the sum tree's leaf plus its share of inner nodes (one more `f64`, amortised).
pub const PER_SEQUENCE_OVERHEAD_BYTES: usize = std::mem::size_of::<Sequence>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<usize>()
    + std::mem::size_of::<u64>()
    + std::mem::size_of::<f64>()
    + 2 * std::mem::size_of::<f64>();

/// Returns the bytes one stored sequence of `steps` steps occupies: observation bytes
/// (`steps * h * w * c`), 2 + 4 + 1 bytes per step for action, reward and done, 4 bytes per
/// keypoint float (`steps * keypoint_dims` of them; pass 0 when no keypoints are stored), 4 bytes
/// per recurrent-state entry, plus [`PER_SEQUENCE_OVERHEAD_BYTES`]. Allocator slack is not
/// counted.
///
/// For the reference default (12 steps of 84x84x3, no stored state, no keypoints) that is
/// `254_016 + 84 + overhead`, about 248 KiB; 7 keypoints (`keypoint_dims` 14) add
/// `12 x 14 x 4 = 672` bytes. See the crate docs.
pub fn sequence_memory_bytes(
    steps: usize,
    obs_shape: [usize; 3],
    recurrent_state_len: usize,
    keypoint_dims: usize,
) -> usize {
    let observation_bytes = steps * obs_shape.iter().product::<usize>();
    let per_step_bytes = steps
        * (std::mem::size_of::<u16>() + std::mem::size_of::<f32>() + std::mem::size_of::<bool>());
    let keypoint_bytes = steps * keypoint_dims * std::mem::size_of::<f32>();
    let state_bytes = recurrent_state_len * std::mem::size_of::<f32>();
    observation_bytes + per_step_bytes + keypoint_bytes + state_bytes + PER_SEQUENCE_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SequenceBuilder;

    #[test]
    fn a_well_formed_sequence_validates() {
        let sequence = SequenceBuilder::new(12).obs_shape([2, 3, 1]).build();
        sequence.validate().unwrap();
        assert_eq!(sequence.len(), 12);
        assert_eq!(sequence.valid_len(), 12);
        assert_eq!(sequence.observation(1).len(), 6);
    }

    #[test]
    fn empty_sequence_is_rejected() {
        let sequence = SequenceBuilder::new(0).build();
        let error = sequence.validate().unwrap_err();
        assert!(matches!(error, ReplayError::EmptySequence));
        assert_eq!(error.to_string(), "invalid sequence: it has no steps");
    }

    #[test]
    fn per_step_length_mismatches_name_the_field() {
        let mut sequence = SequenceBuilder::new(4).build();
        sequence.rewards.pop();
        assert_eq!(
            sequence.validate().unwrap_err().to_string(),
            "invalid sequence: rewards has 3 entries but the sequence has 4 steps"
        );
        let mut sequence = SequenceBuilder::new(4).build();
        sequence.dones.push(false);
        assert!(matches!(
            sequence.validate(),
            Err(ReplayError::SequenceLengthMismatch {
                field: "dones",
                actual: 5,
                steps: 4
            })
        ));
    }

    #[test]
    fn observation_size_must_match_steps_times_shape() {
        let mut sequence = SequenceBuilder::new(3).obs_shape([2, 2, 3]).build();
        sequence.observations.truncate(35);
        assert_eq!(
            sequence.validate().unwrap_err().to_string(),
            "invalid sequence: observations hold 35 bytes, expected 36 (3 steps x [2, 2, 3])"
        );
        let mut sequence = SequenceBuilder::new(3).build();
        sequence.obs_shape = [0, 2, 3];
        assert!(matches!(
            sequence.validate(),
            Err(ReplayError::ZeroObservationShape { .. })
        ));
    }

    #[test]
    fn non_finite_rewards_and_states_are_rejected() {
        let mut sequence = SequenceBuilder::new(3).build();
        sequence.rewards[2] = f32::NAN;
        assert!(matches!(
            sequence.validate(),
            Err(ReplayError::NonFiniteReward { step: 2, .. })
        ));
        let mut sequence = SequenceBuilder::new(3)
            .recurrent_state(vec![0.5; 4])
            .build();
        sequence.initial_recurrent_state[1] = f32::INFINITY;
        assert_eq!(
            sequence.validate().unwrap_err().to_string(),
            "invalid sequence: initial recurrent state entry 1 is inf, it must be finite"
        );
    }

    #[test]
    fn padding_must_leave_a_valid_step_and_be_neutral() {
        let sequence = SequenceBuilder::new(4).padded_steps(4).build();
        assert!(matches!(
            sequence.validate(),
            Err(ReplayError::InvalidPadding { .. })
        ));
        let mut sequence = SequenceBuilder::new(4).padded_steps(2).build();
        sequence.validate().unwrap();
        assert_eq!(sequence.mask(), vec![true, true, false, false]);
        sequence.rewards[3] = 1.0;
        assert!(matches!(
            sequence.validate(),
            Err(ReplayError::PaddingNotNeutral { step: 3 })
        ));
    }

    #[test]
    fn burn_in_must_leave_a_learning_step() {
        let sequence = SequenceBuilder::new(6).padded_steps(2).burn_in(4).build();
        assert!(matches!(
            sequence.validate(),
            Err(ReplayError::BurnInTooLong {
                burn_in: 4,
                valid_steps: 4
            })
        ));
        SequenceBuilder::new(6)
            .padded_steps(2)
            .burn_in(3)
            .build()
            .validate()
            .unwrap();
    }

    #[test]
    fn memory_of_the_reference_sequence() {
        // 12 frames of 84x84x3 bytes, plus 12 x (2 + 4 + 1) bytes of action, reward, done.
        let buffers = 12 * 84 * 84 * 3 + 12 * 7;
        assert_eq!(buffers, 254_100);
        assert_eq!(
            sequence_memory_bytes(12, DEFAULT_OBS_SHAPE, 0, 0),
            buffers + PER_SEQUENCE_OVERHEAD_BYTES
        );
        // An LSTM(128) state (h and c) adds 256 floats.
        assert_eq!(
            sequence_memory_bytes(12, DEFAULT_OBS_SHAPE, 256, 0)
                - sequence_memory_bytes(12, DEFAULT_OBS_SHAPE, 0, 0),
            1024
        );
        // 7 keypoints, (y, x) each, add 12 x 14 floats.
        assert_eq!(
            sequence_memory_bytes(12, DEFAULT_OBS_SHAPE, 0, 14)
                - sequence_memory_bytes(12, DEFAULT_OBS_SHAPE, 0, 0),
            672
        );
        // The overhead is small next to the frames: under 0.2 %.
        const { assert!(PER_SEQUENCE_OVERHEAD_BYTES < 500) };
        let sequence = SequenceBuilder::new(12)
            .obs_shape(DEFAULT_OBS_SHAPE)
            .build();
        assert_eq!(
            sequence.memory_bytes(),
            sequence_memory_bytes(12, DEFAULT_OBS_SHAPE, 0, 0)
        );
        let with_keypoints = SequenceBuilder::new(12)
            .obs_shape(DEFAULT_OBS_SHAPE)
            .keypoints(14)
            .build();
        assert_eq!(
            with_keypoints.memory_bytes(),
            sequence_memory_bytes(12, DEFAULT_OBS_SHAPE, 0, 14)
        );
    }

    #[test]
    fn keypoints_are_optional_and_step_major() {
        let none = SequenceBuilder::new(3).build();
        assert_eq!(none.keypoint_dims, 0);
        assert!(none.keypoints.is_empty());
        assert!(none.step_keypoints(2).is_empty());
        none.validate().unwrap();
        let sequence = SequenceBuilder::new(4).keypoints(4).padded_steps(1).build();
        sequence.validate().unwrap();
        assert_eq!(sequence.keypoints.len(), 16);
        assert_eq!(sequence.step_keypoints(1), &[1.0; 4]);
        assert_eq!(
            sequence.step_keypoints(3),
            &[0.0; 4],
            "padding stores zeros"
        );
        let explicit = SequenceBuilder::new(2)
            .keypoint_values(2, vec![-0.5, 0.5, 0.25, -0.25])
            .build();
        explicit.validate().unwrap();
        assert_eq!(explicit.step_keypoints(1), &[0.25, -0.25]);
    }

    #[test]
    fn keypoint_length_must_match_steps_times_dims() {
        let mut sequence = SequenceBuilder::new(3).keypoints(4).build();
        sequence.keypoints.pop();
        assert_eq!(
            sequence.validate().unwrap_err().to_string(),
            "invalid sequence: keypoints hold 11 floats, expected 12 (3 steps x keypoint_dims 4)"
        );
        // Keypoints without dims, and dims without keypoints.
        let mut sequence = SequenceBuilder::new(3).build();
        sequence.keypoints = vec![0.0; 6];
        assert!(matches!(
            sequence.validate(),
            Err(ReplayError::KeypointSizeMismatch {
                actual: 6,
                expected: 0,
                steps: 3,
                keypoint_dims: 0
            })
        ));
        let mut sequence = SequenceBuilder::new(3).build();
        sequence.keypoint_dims = 2;
        assert_eq!(
            sequence.validate().unwrap_err().to_string(),
            "invalid sequence: keypoints hold 0 floats, expected 6 (3 steps x keypoint_dims 2)"
        );
    }

    #[test]
    fn non_finite_keypoints_are_rejected() {
        let mut sequence = SequenceBuilder::new(3).keypoints(4).build();
        sequence.keypoints[2 * 4 + 1] = f32::NAN;
        assert!(matches!(
            sequence.validate(),
            Err(ReplayError::NonFiniteKeypoint {
                step: 2,
                index: 1,
                ..
            })
        ));
        assert_eq!(
            sequence.validate().unwrap_err().to_string(),
            "invalid sequence: keypoints entry 1 of step 2 is NaN, keypoints must be finite"
        );
        let mut sequence = SequenceBuilder::new(3).keypoints(2).build();
        sequence.keypoints[0] = f32::NEG_INFINITY;
        assert_eq!(
            sequence.validate().unwrap_err().to_string(),
            "invalid sequence: keypoints entry 0 of step 0 is -inf, keypoints must be finite"
        );
    }

    #[test]
    fn padding_keypoints_must_be_zero() {
        let mut sequence = SequenceBuilder::new(4).keypoints(2).padded_steps(2).build();
        sequence.validate().unwrap();
        sequence.keypoints[3 * 2] = 0.5;
        assert_eq!(
            sequence.validate().unwrap_err().to_string(),
            "invalid sequence: padding step 3 must have all-zero keypoints"
        );
    }
}
