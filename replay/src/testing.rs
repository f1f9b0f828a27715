//! Shared fakes for tests in this crate and its users (acme `acme/testing/fakes.py` style).

use crate::Sequence;

/// Builds small, valid [`Sequence`]s with recognisable contents: step `t` has every observation
/// byte equal to `t` (wrapping), action `t`, reward `t / 10`, and done unset; padding steps are
/// neutral (zero frame, action 0, reward 0, done set).
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
        for step in 0..self.steps {
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
