//! The vectorised environment interface the trainer steps: Atari ([`atari::EnvPool`]) or the
//! project's own toy world ([`crate::toy`]).

/// What one environment reports after a step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EnvStep {
    /// Raw (unclipped) reward of the step.
    pub reward: f32,
    /// The agent's episode terminated after this step (in training, a lost life counts).
    pub terminated: bool,
    /// The episode was cut by the time limit after this step.
    pub truncated: bool,
    /// The whole game ended (all lives or the time limit): `game_return`/`game_length` are final.
    pub game_over: bool,
    /// Raw return of the current game so far (all lives).
    pub game_return: f32,
    /// Agent steps of the current game so far.
    pub game_length: u32,
}

/// `num_envs` environments stepped together. Observations are `num_envs` HWC u8 frames back to
/// back. A finished episode (terminated or truncated) is reset inside the same `step` call: the
/// observation then is the next episode's first frame while the [`EnvStep`] still describes the
/// step that ended the episode.
pub trait VecEnv: Send {
    fn num_envs(&self) -> usize;
    fn num_actions(&self) -> usize;
    /// `[h, w, c]` of one observation.
    fn obs_shape(&self) -> [usize; 3];
    /// Resets every environment; returns the observations.
    fn reset(&mut self) -> anyhow::Result<&[u8]>;
    /// Steps environment `i` with `actions[i]`; returns the observations and per-env reports.
    fn step(&mut self, actions: &[usize]) -> anyhow::Result<(&[u8], Vec<EnvStep>)>;
    /// Emulator frames per agent step (Atari's frame skip; 1 for worlds without frames).
    fn frames_per_step(&self) -> u64 {
        1
    }
}

impl VecEnv for atari::EnvPool {
    fn num_envs(&self) -> usize {
        atari::EnvPool::num_envs(self)
    }
    fn num_actions(&self) -> usize {
        atari::EnvPool::num_actions(self)
    }
    fn obs_shape(&self) -> [usize; 3] {
        atari::EnvPool::obs_shape(self)
    }
    fn frames_per_step(&self) -> u64 {
        u64::from(atari::EnvPool::frame_skip(self))
    }
    fn reset(&mut self) -> anyhow::Result<&[u8]> {
        Ok(atari::EnvPool::reset(self)?.obs)
    }
    fn step(&mut self, actions: &[usize]) -> anyhow::Result<(&[u8], Vec<EnvStep>)> {
        let view = atari::EnvPool::step(self, actions)?;
        let steps = view
            .infos
            .iter()
            .map(|i| EnvStep {
                reward: i.reward,
                terminated: i.terminated,
                truncated: i.truncated,
                game_over: i.game_over,
                game_return: i.episode_return,
                game_length: i.episode_length,
            })
            .collect();
        Ok((view.obs, steps))
    }
}
