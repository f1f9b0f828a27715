//! Shared fakes for tests in this crate and its users (acme `acme/testing/fakes.py` style).

use crate::Sequence;

/// Builds small, valid [`Sequence`]s with recognisable contents: step `t` has every observation
/// byte equal to `t` (wrapping), action `t`, reward `t / 10`, and done unset; padding steps are
/// neutral (zero frame, action 0, reward 0, done set). No keypoints are stored unless
/// [`keypoints`](Self::keypoints) (step `t`'s floats all equal `t`, padding zeros) or
/// [`keypoint_values`](Self::keypoint_values) (given floats, used as they are) asks for them.
#[derive(Debug, Clone)]
pub struct SequenceBuilder {
    steps: usize,
    obs_shape: [usize; 3],
    env_id: u32,
    run_id: u64,
    burn_in: u16,
    padded_steps: u16,
    truncated: bool,
    recurrent_state: Vec<f32>,
    parameter_version: u64,
    tag: u8,
    keypoint_dims: u16,
    keypoint_values: Option<Vec<f32>>,
}

impl SequenceBuilder {
    /// Starts a sequence of `steps` steps of 2x2x1 observations.
    pub fn new(steps: usize) -> Self {
        Self {
            steps,
            obs_shape: [2, 2, 1],
            env_id: 0,
            run_id: 0,
            burn_in: 0,
            padded_steps: 0,
            truncated: false,
            recurrent_state: Vec::new(),
            parameter_version: 0,
            tag: 0,
            keypoint_dims: 0,
            keypoint_values: None,
        }
    }

    /// Sets the observation shape.
    pub fn obs_shape(mut self, obs_shape: [usize; 3]) -> Self {
        self.obs_shape = obs_shape;
        self
    }

    /// Sets the environment id.
    pub fn env_id(mut self, env_id: u32) -> Self {
        self.env_id = env_id;
        self
    }

    /// Sets the run id.
    pub fn run_id(mut self, run_id: u64) -> Self {
        self.run_id = run_id;
        self
    }

    /// Sets the burn-in length.
    pub fn burn_in(mut self, burn_in: u16) -> Self {
        self.burn_in = burn_in;
        self
    }

    /// Makes the last `padded_steps` steps padding.
    pub fn padded_steps(mut self, padded_steps: u16) -> Self {
        self.padded_steps = padded_steps;
        self
    }

    /// Sets the truncated-at-end flag.
    pub fn truncated(mut self, truncated: bool) -> Self {
        self.truncated = truncated;
        self
    }

    /// Sets the stored initial recurrent state.
    pub fn recurrent_state(mut self, recurrent_state: Vec<f32>) -> Self {
        self.recurrent_state = recurrent_state;
        self
    }

    /// Sets the parameter version.
    pub fn parameter_version(mut self, parameter_version: u64) -> Self {
        self.parameter_version = parameter_version;
        self
    }

    /// Stores `dims` keypoint floats per step: every float of valid step `t` is `t as f32`,
    /// padding steps store zeros. `dims` 0 (the default) stores none.
    pub fn keypoints(mut self, dims: u16) -> Self {
        self.keypoint_dims = dims;
        self.keypoint_values = None;
        self
    }

    /// Stores exactly `values` as the keypoints, `dims` floats per step, step-major. The values
    /// are used as they are (padding included), so a length that is not `steps * dims` builds an
    /// invalid sequence on purpose.
    pub fn keypoint_values(mut self, dims: u16, values: Vec<f32>) -> Self {
        self.keypoint_dims = dims;
        self.keypoint_values = Some(values);
        self
    }

    /// Adds `tag` to every valid observation byte, so sequences can be told apart.
    pub fn tag(mut self, tag: u8) -> Self {
        self.tag = tag;
        self
    }

    /// Builds the sequence (it is not validated: tests build invalid ones on purpose).
    pub fn build(self) -> Sequence {
        let frame: usize = self.obs_shape.iter().product();
        let valid = self.steps.saturating_sub(usize::from(self.padded_steps));
        let mut observations = Vec::with_capacity(self.steps * frame);
        let mut actions = Vec::with_capacity(self.steps);
        let mut rewards = Vec::with_capacity(self.steps);
        let mut dones = Vec::with_capacity(self.steps);
        let dims = usize::from(self.keypoint_dims);
        let generate_keypoints = self.keypoint_values.is_none();
        let mut keypoints = self
            .keypoint_values
            .unwrap_or_else(|| Vec::with_capacity(self.steps * dims));
        for step in 0..self.steps {
            if generate_keypoints {
                let value = if step < valid { step as f32 } else { 0.0 };
                keypoints.extend(std::iter::repeat_n(value, dims));
            }
            if step < valid {
                let byte = (step as u8).wrapping_add(self.tag);
                observations.extend(std::iter::repeat_n(byte, frame));
                actions.push(step as u16);
                rewards.push(step as f32 / 10.0);
                dones.push(false);
            } else {
                observations.extend(std::iter::repeat_n(0, frame));
                actions.push(0);
                rewards.push(0.0);
                dones.push(true);
            }
        }
        Sequence {
            env_id: self.env_id,
            run_id: self.run_id,
            observations,
            obs_shape: self.obs_shape,
            keypoints,
            keypoint_dims: self.keypoint_dims,
            actions,
            rewards,
            dones,
            truncated: self.truncated,
            burn_in: self.burn_in,
            padded_steps: self.padded_steps,
            initial_recurrent_state: self.recurrent_state,
            parameter_version: self.parameter_version,
        }
    }
}
