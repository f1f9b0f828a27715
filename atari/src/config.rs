//! Environment settings (serde, validated) and the named presets.
//!
//! # Presets
//! [`Preset::Atari100k`] is the paper's protocol as `../shared/spec/permakey-reference.md` section
//! 1.2 writes it (gym `NoFrameskip-v4` + baselines `atari_wrappers`): 1..30 random no-ops at reset
//! (single frames, before frame skip), frame skip 4 with a max over the last two frames, a 4000
//! agent-step time limit (train and eval), terminal on life loss (train only), FIRE on reset where
//! the game has FIRE, 84x84 RGB with area interpolation, the minimal action set, no sticky actions,
//! sign reward clipping on the agent side (train only). The budget the spec leaves open follows
//! the standard Atari-100k (SimPLE / data-efficient Rainbow): 100k agent steps = 400k frames.
//! [`Preset::PermakeyRepo`] is the same with the reference repository's 400k agent steps.

use serde::{Deserialize, Serialize};

use crate::{AtariError, Result};

/// Distractor bars of "Noisy Atari" (spec section 1.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseType {
    #[default]
    None,
    Vertical,
    Horizontal,
    Both,
}

impl std::str::FromStr for NoiseType {
    type Err = AtariError;
    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "vertical" => Ok(Self::Vertical),
            "horizontal" => Ok(Self::Horizontal),
            "both" => Ok(Self::Both),
            _ => Err(AtariError::Config(format!(
                "unknown noise type '{text}': expected none, vertical, horizontal or both"
            ))),
        }
    }
}

/// Settings of one Atari environment. Every wrapper is explicit; see the crate docs for order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvConfig {
    /// Game id (`MsPacman`, `ms_pacman` and `MsPacmanNoFrameskip-v4` all work).
    pub game: String,
    /// Emulator frames per agent step (the action repeats; rewards are summed).
    pub frame_skip: u32,
    /// Observation = pixel-wise max of the last two emulated frames of a step (removes flicker).
    pub max_pool: bool,
    /// ALE's sticky-action probability (`repeat_action_probability`); 0 in the paper's protocol.
    pub sticky_action_probability: f32,
    /// At reset, a uniform 1..=noop_max number of single-frame NOOPs (0 disables).
    pub noop_max: u32,
    /// A lost life ends the agent's episode (training); the game itself goes on.
    pub terminal_on_life_loss: bool,
    /// Press FIRE (then UP) after every reset, for games whose action 1 is FIRE.
    pub fire_reset: bool,
    /// All 18 actions instead of the game's minimal set.
    pub full_action_space: bool,
    /// Truncate a game after this many agent steps (0 = no limit).
    pub max_episode_steps: u32,
    /// Observation height and width after resizing (area interpolation); 210x160 keeps the raw screen.
    pub obs_height: u32,
    pub obs_width: u32,
    /// One luminance channel (ALE's palette) instead of RGB.
    pub grayscale: bool,
    /// Distractor bars painted on observations only (never on RAM or rewards).
    pub noise: NoiseType,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Preset::Atari100k.train_env("MsPacman")
    }
}

impl EnvConfig {
    /// Checks every field; the error names the field and the accepted range.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(AtariError::Config(msg));
        if self.game.trim().is_empty() {
            return bad("game must be set (e.g. \"MsPacman\")".into());
        }
        if !(1..=64).contains(&self.frame_skip) {
            return bad(format!("frame_skip must be in 1..=64, got {}", self.frame_skip));
        }
        if self.max_pool && self.frame_skip < 2 {
            return bad("max_pool needs frame_skip >= 2 (it takes the max of the last two frames of a step)".into());
        }
        if !(0.0..=1.0).contains(&self.sticky_action_probability) || self.sticky_action_probability.is_nan() {
            return bad(format!("sticky_action_probability must be in [0, 1], got {}", self.sticky_action_probability));
        }
        if self.noop_max > 1000 {
            return bad(format!("noop_max must be at most 1000, got {}", self.noop_max));
        }
        if !(8..=210).contains(&self.obs_height) || !(8..=160).contains(&self.obs_width) {
            return bad(format!(
                "obs_height must be in 8..=210 and obs_width in 8..=160 (the Atari screen is 210x160), got {}x{}",
                self.obs_height, self.obs_width
            ));
        }
        if self.noise != NoiseType::None && (self.obs_height < 10 || self.obs_width < 10) {
            return bad("noise bars are 5 px wide at 84x84 and need an observation of at least 10x10".into());
        }
        Ok(())
    }

    /// Observation shape `[height, width, channels]` (HWC, u8).
    pub fn obs_shape(&self) -> [usize; 3] {
        [self.obs_height as usize, self.obs_width as usize, if self.grayscale { 1 } else { 3 }]
    }

    /// Bytes of one observation.
    pub fn obs_len(&self) -> usize {
        self.obs_shape().iter().product()
    }
}

/// Named protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's low-data protocol: 100k agent steps (400k frames).
    Atari100k,
    /// The reference repository's default budget: 400k agent steps (1.6M frames).
    PermakeyRepo,
}

impl std::str::FromStr for Preset {
    type Err = AtariError;
    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "atari100k" => Ok(Self::Atari100k),
            "permakeyrepo" | "repo" => Ok(Self::PermakeyRepo),
            _ => Err(AtariError::Config(format!("unknown preset '{text}': expected atari100k or permakey-repo"))),
        }
    }
}

/// What a preset fixes besides the two environment configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolBudget {
    /// Agent steps of RL interaction (each `frame_skip` emulator frames).
    pub agent_steps: u64,
    /// Sign-clip rewards for the learner (train only; evaluation reports raw game score).
    pub clip_rewards_train: bool,
    /// Greedy evaluation episodes per evaluation.
    pub eval_episodes: u32,
    /// Agent steps between periodic evaluations.
    pub eval_every_steps: u64,
}

impl Preset {
    /// The training environment of this protocol.
    pub fn train_env(self, game: &str) -> EnvConfig {
        EnvConfig {
            game: game.to_owned(),
            frame_skip: 4,
            max_pool: true,
            sticky_action_probability: 0.0,
            noop_max: 30,
            terminal_on_life_loss: true,
            fire_reset: true,
            full_action_space: false,
            max_episode_steps: 4000,
            obs_height: 84,
            obs_width: 84,
            grayscale: false,
            noise: NoiseType::None,
        }
    }

    /// The evaluation environment: whole games (no life-loss terminal), same time limit.
    pub fn eval_env(self, game: &str) -> EnvConfig {
        EnvConfig { terminal_on_life_loss: false, ..self.train_env(game) }
    }

    pub fn budget(self) -> ProtocolBudget {
        let agent_steps = match self {
            Self::Atari100k => 100_000,
            Self::PermakeyRepo => 400_000,
        };
        ProtocolBudget { agent_steps, clip_rewards_train: true, eval_episodes: 10, eval_every_steps: 10_000 }
    }
}

/// Agent-side reward clipping to {-1, 0, +1} (baselines `ClipRewardEnv`).
pub fn clip_reward(reward: f32) -> f32 {
    if reward > 0.0 {
        1.0
    } else if reward < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atari100k_preset_matches_the_spec() {
        let train = Preset::Atari100k.train_env("MsPacman");
        assert_eq!(train.frame_skip, 4);
        assert!(train.max_pool);
        assert_eq!(train.sticky_action_probability, 0.0);
        assert_eq!(train.noop_max, 30);
        assert!(train.terminal_on_life_loss);
        assert!(train.fire_reset);
        assert!(!train.full_action_space);
        assert_eq!(train.max_episode_steps, 4000);
        assert_eq!(train.obs_shape(), [84, 84, 3]);
        assert_eq!(train.noise, NoiseType::None);
        let eval = Preset::Atari100k.eval_env("MsPacman");
        assert!(!eval.terminal_on_life_loss);
        assert_eq!(eval.max_episode_steps, 4000);
        let budget = Preset::Atari100k.budget();
        assert_eq!(budget.agent_steps * train.frame_skip as u64, 400_000, "100k agent steps = 400k frames");
        assert!(budget.clip_rewards_train);
        assert_eq!((budget.eval_episodes, budget.eval_every_steps), (10, 10_000));
        assert_eq!(Preset::PermakeyRepo.budget().agent_steps, 400_000);
    }

    #[test]
    fn bad_configs_are_rejected_with_the_field_named() {
        let good = EnvConfig::default();
        good.validate().unwrap();
        let cases = [
            (EnvConfig { frame_skip: 0, ..good.clone() }, "frame_skip"),
            (EnvConfig { frame_skip: 1, ..good.clone() }, "max_pool"),
            (EnvConfig { sticky_action_probability: 1.5, ..good.clone() }, "sticky_action_probability"),
            (EnvConfig { sticky_action_probability: f32::NAN, ..good.clone() }, "sticky_action_probability"),
            (EnvConfig { obs_height: 300, ..good.clone() }, "obs_height"),
            (EnvConfig { game: String::new(), ..good.clone() }, "game"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn toml_round_trip_and_unknown_fields() {
        let config = Preset::Atari100k.train_env("Seaquest");
        let text = toml::to_string(&config).unwrap();
        let back: EnvConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
        let err = toml::from_str::<EnvConfig>("game = \"Pong\"\nframe_skp = 4\n").unwrap_err().to_string();
        assert!(err.contains("frame_skp"), "{err}");
        let err = toml::from_str::<EnvConfig>("noise = \"diagonal\"\n").unwrap_err().to_string();
        assert!(err.contains("diagonal"), "{err}");
    }

    #[test]
    fn reward_clipping_is_the_sign() {
        assert_eq!([clip_reward(200.0), clip_reward(0.0), clip_reward(-3.5)], [1.0, 0.0, -1.0]);
    }

    #[test]
    fn parses_names() {
        assert_eq!("both".parse::<NoiseType>().unwrap(), NoiseType::Both);
        assert!("zigzag".parse::<NoiseType>().is_err());
        assert_eq!("atari-100k".parse::<Preset>().unwrap(), Preset::Atari100k);
        assert_eq!("permakey_repo".parse::<Preset>().unwrap(), Preset::PermakeyRepo);
    }
}
