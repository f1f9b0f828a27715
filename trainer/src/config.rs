//! The embedded trainer's schedule (spec 7.4 and 8 defaults, Atari-100k budget of decision 9b).

use serde::{Deserialize, Serialize};

/// How acting and learning share the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainMode {
    /// One thread alternates a vector step of the actor with the updates it made due: a run is
    /// a pure function of its seed (the default; resume is exact).
    #[default]
    Lockstep,
    /// The actor steps on its own thread and sends each step's sequences and finished games to
    /// the learner's thread over a crossbeam channel; the actor waits while the learner is more
    /// than `max_update_lag` updates behind the schedule, so the update-to-step ratio stays the
    /// same while acting and learning overlap. Not bit-reproducible (thread timing decides which
    /// parameters act and what the replay holds at each update).
    Threads,
    /// The actor takes each vector step on its own thread while the learner's thread runs the
    /// updates due at the steps before it; the two meet after every step. The actor acts with
    /// parameters one vector step's updates older than in lockstep (each update samples the
    /// replay as it stands after the step that made it due, as in lockstep), and a run is still
    /// a pure function of its seed (resume is exact).
    Pipelined,
}

/// How long and how the trainer runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Agent steps of RL interaction, all environments together; 0 = the preset's budget
    /// (`atari100k`: 100,000 agent steps = 400k frames; `permakeyrepo`: 400,000). Keypoint
    /// pre-training frames are collected separately and reported separately (spec 9b).
    pub agent_steps: u64,
    /// Environments stepped together by the actor (their frames share one keypoint batch).
    pub num_envs: usize,
    /// Threads stepping the environments (0 = one per core).
    pub env_threads: usize,
    /// Agent steps before the first update (spec: 10,000).
    pub learning_starts: u64,
    /// Agent steps per gradient update (spec: 4).
    pub train_every: u64,
    /// Exploration epsilon: linear from `epsilon_start` to `epsilon_end` over
    /// `epsilon_fraction x agent_steps` (spec: 1.0 -> 0.1 over the whole run).
    pub epsilon_start: f64,
    pub epsilon_end: f64,
    pub epsilon_fraction: f64,
    /// Actor refreshes its copy of the parameters every this many of its vector steps (1 = acts
    /// with the newest parameters, as the single-process reference does).
    pub parameter_sync_every: u64,
    /// Keep the LSTM state with every sequence (R2D2 stored state); off = zero start (reference).
    pub store_recurrent_state: bool,
    /// Agent steps between periodic greedy evaluations (spec: 10,000; 0 = none).
    pub eval_every: u64,
    /// Episodes per periodic evaluation (spec: 10).
    pub eval_episodes: usize,
    /// Episodes of the final evaluation per evaluation seed (spec: 10).
    pub final_eval_episodes: usize,
    /// Evaluation seeds of the final evaluation (spec 8: the README's 1..5, environments seeded
    /// with 2s); an odd number, so the median seed exists. The reported score is the median over
    /// seeds of the per-seed mean, with that seed's standard deviation.
    pub final_eval_seeds: Vec<u64>,
    /// Parallel environments of an evaluation (at most its game count is created); each counts
    /// a fixed share of the games ([`crate::actor::GameQuota`]).
    pub eval_envs: usize,
    /// Agent steps between checkpoints (0 = only at the end). Checkpoints cut every running
    /// episode (see the crate docs): resuming from one continues exactly.
    pub checkpoint_every: u64,
    /// Sign-clip training rewards (evaluation reports raw game scores).
    pub clip_rewards: bool,
    /// `lockstep` (default) or `threads` (see [`TrainMode`]).
    pub mode: TrainMode,
    /// Threads mode: how many updates the learner may lag behind the schedule before the actor
    /// waits for it.
    pub max_update_lag: u64,
    /// Play each periodic evaluation on a thread of its own, on a copy of the online network
    /// taken when it is due, while training goes on (the embedded trainer; it needs a front-end
    /// instance of its own, `Trainer::add_eval_front`). The records are the same as in the
    /// foreground: an evaluation is a function of the copied parameters and its seeds, and draws
    /// from no generator training uses. They land in `eval.csv` when the thread is joined: at the
    /// next evaluation, at a checkpoint (so a resumed run has them) and before the final
    /// evaluation, which stays in the foreground. Meant for a GPU machine with spare cores; on
    /// a CPU the two threads share the cores.
    pub background_eval: bool,
    /// Threads the final evaluation spreads its seeds over (1: one after the other). Each thread
    /// plays on a copy of the online network and a front-end instance of its own
    /// (`Trainer::add_eval_front`; the background evaluations' instance is reused), so the
    /// records are the same as one after the other: a seed's games are a function of the network,
    /// the model and that seed. More threads than seeds are not used. Meant for a GPU machine
    /// with spare cores, where each seed's games are small batches that leave the device idle;
    /// the embedded trainer only.
    pub final_eval_workers: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            agent_steps: 0,
            num_envs: 8,
            env_threads: 0,
            learning_starts: 10_000,
            train_every: 4,
            epsilon_start: 1.0,
            epsilon_end: 0.1,
            epsilon_fraction: 1.0,
            parameter_sync_every: 1,
            store_recurrent_state: false,
            eval_every: 10_000,
            eval_episodes: 10,
            final_eval_episodes: 10,
            final_eval_seeds: vec![1, 2, 3, 4, 5],
            eval_envs: 10,
            checkpoint_every: 25_000,
            clip_rewards: true,
            mode: TrainMode::Lockstep,
            max_update_lag: 4,
            background_eval: false,
            final_eval_workers: 1,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.agent_steps > 0, "train.agent_steps must be at least 1 once the preset's budget is resolved");
        anyhow::ensure!(self.num_envs > 0, "train.num_envs must be at least 1");
        anyhow::ensure!(self.train_every > 0, "train.train_every must be at least 1");
        anyhow::ensure!(self.parameter_sync_every > 0, "train.parameter_sync_every must be at least 1");
        anyhow::ensure!(self.eval_envs > 0, "train.eval_envs must be at least 1");
        anyhow::ensure!(self.final_eval_episodes > 0, "train.final_eval_episodes must be at least 1");
        anyhow::ensure!(self.eval_every == 0 || self.eval_episodes > 0, "train.eval_episodes must be at least 1 while train.eval_every is set (0 turns periodic evaluation off)");
        anyhow::ensure!(
            self.final_eval_workers >= 1,
            "train.final_eval_workers must be at least 1 (1 plays the final evaluation's seeds one after the other), got {}",
            self.final_eval_workers
        );
        anyhow::ensure!(
            self.final_eval_seeds.len() % 2 == 1,
            "train.final_eval_seeds must hold an odd number of seeds (the score is the median seed's), got {}",
            self.final_eval_seeds.len()
        );
        for (name, v) in [("epsilon_start", self.epsilon_start), ("epsilon_end", self.epsilon_end)] {
            anyhow::ensure!((0.0..=1.0).contains(&v), "train.{name} must lie in [0, 1], got {v}");
        }
        anyhow::ensure!(
            self.epsilon_fraction > 0.0 && self.epsilon_fraction <= 1.0,
            "train.epsilon_fraction must lie in (0, 1], got {}",
            self.epsilon_fraction
        );
        Ok(())
    }

    /// Epsilon after `step` agent steps.
    pub fn epsilon(&self, step: u64) -> f64 {
        let ramp = (self.epsilon_fraction * self.agent_steps as f64).max(1.0);
        let progress = (step as f64 / ramp).min(1.0);
        self.epsilon_start + (self.epsilon_end - self.epsilon_start) * progress
    }

    /// Gradient updates due after `step` agent steps.
    pub fn updates_due(&self, step: u64) -> u64 {
        step.saturating_sub(self.learning_starts) / self.train_every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_and_update_schedule() {
        let c = TrainConfig { agent_steps: 1000, learning_starts: 100, train_every: 4, ..TrainConfig::default() };
        assert_eq!(c.epsilon(0), 1.0);
        assert!((c.epsilon(500) - 0.55).abs() < 1e-12);
        assert!((c.epsilon(1000) - 0.1).abs() < 1e-12);
        assert!((c.epsilon(5000) - 0.1).abs() < 1e-12);
        assert_eq!(c.updates_due(99), 0);
        assert_eq!(c.updates_due(103), 0);
        assert_eq!(c.updates_due(104), 1);
        assert_eq!(c.updates_due(1000), 225);
        assert!(TrainConfig { num_envs: 0, ..c.clone() }.validate().is_err());
        assert!(TrainConfig { epsilon_end: 1.5, ..c }.validate().unwrap_err().to_string().contains("epsilon_end"));
    }
}
