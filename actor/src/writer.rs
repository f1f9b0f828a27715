//! [`SequenceWriter`]: cuts one environment stream into fixed-length replay sequences.

use std::collections::VecDeque;

use replay::{DEFAULT_OBS_SHAPE, DEFAULT_SEQUENCE_LENGTH, Sequence};
use serde::{Deserialize, Serialize};

use crate::ActorError;

/// How a [`SequenceWriter`] cuts episodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequenceWriterConfig {
    /// Steps per sequence after the burn-in, `L`. Default 12 = Q-learning window 8 + n-step 3
    /// + 1 (spec 7.4).
    pub sequence_length: usize,
    /// Steps between the learning starts of consecutive sequences, `P`; the overlap is `L - P`.
    /// Default 8 = the Q-learning window, so overlap 4 = n-step 3 + 1: when the learner trains
    /// the first 8 positions after the burn-in, every step of an episode is trained in exactly
    /// one sequence, and each of those positions has its n-step target inside the sequence.
    pub period: usize,
    /// Burn-in `B`: steps stored before the learning part only to warm the recurrent state.
    /// Default 0 (the reference starts every window from a zero state); R2D2 uses 40 of 80.
    pub burn_in: usize,
    /// Shape `[h, w, c]` of one observation. Default 84x84x3 (spec 1.2).
    pub obs_shape: [usize; 3],
    /// Entries of the recurrent state each step carries and sequences store (LSTM `h` then
    /// `c`). Default 0: nothing stored, the learner starts from zeros as the reference does;
    /// 256 for the LSTM(128) of spec 7.3 with R2D2's stored-state strategy.
    pub recurrent_state_len: usize,
    /// Keypoint floats each step carries and sequences store per step
    /// ([`replay::Sequence::keypoints`]): `2K` for the K `(y, x)` centres the frozen keypoint
    /// model computed on the step's observation, so the learner need not re-run it. Default 0:
    /// none stored. At most 65535 (stored as `u16`).
    pub keypoint_dims: usize,
}

impl Default for SequenceWriterConfig {
    fn default() -> Self {
        Self {
            sequence_length: DEFAULT_SEQUENCE_LENGTH,
            period: 8,
            burn_in: 0,
            obs_shape: DEFAULT_OBS_SHAPE,
            recurrent_state_len: 0,
            keypoint_dims: 0,
        }
    }
}

impl SequenceWriterConfig {
    /// Returns the steps of every emitted sequence, `burn_in + sequence_length`.
    pub fn total_length(&self) -> usize {
        self.burn_in + self.sequence_length
    }

    /// Returns the steps shared by consecutive sequences' learning parts, `L - P`.
    pub fn overlap(&self) -> usize {
        self.sequence_length - self.period
    }

    /// Checks `L >= 1`, `1 <= P <= L` (a larger period would skip steps), `B + L <= 65535`
    /// (stored as `u16`), a non-zero observation shape and `keypoint_dims <= 65535` (stored as
    /// `u16`).
    pub fn validate(&self) -> Result<(), ActorError> {
        if self.sequence_length == 0 {
            return Err(ActorError::InvalidConfig(
                "sequence_length must be at least 1".to_owned(),
            ));
        }
        if self.period == 0 || self.period > self.sequence_length {
            return Err(ActorError::InvalidConfig(format!(
                "period must be in 1..=sequence_length ({}), got {}: a longer period skips steps",
                self.sequence_length, self.period
            )));
        }
        if self.total_length() > usize::from(u16::MAX) {
            return Err(ActorError::InvalidConfig(format!(
                "burn_in + sequence_length must be at most {}, got {}",
                u16::MAX,
                self.total_length()
            )));
        }
        if self.obs_shape.contains(&0) {
            return Err(ActorError::InvalidConfig(format!(
                "obs_shape {:?} has a zero dimension",
                self.obs_shape
            )));
        }
        if self.keypoint_dims > usize::from(u16::MAX) {
            return Err(ActorError::InvalidConfig(format!(
                "keypoint_dims must be at most {}, got {}",
                u16::MAX,
                self.keypoint_dims
            )));
        }
        Ok(())
    }
}

/// One environment step as the actor hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Observation `o_t` the action was chosen on, `h * w * c` bytes.
    pub observation: &'a [u8],
    /// Action `a_t`.
    pub action: u16,
    /// Reward of `a_t`, already clipped.
    pub reward: f32,
    /// The episode terminated after `a_t` (a life loss counts in training, spec 1.2).
    pub terminal: bool,
    /// The episode was cut after `a_t` without terminating (time limit). Ignored when
    /// `terminal` is set.
    pub truncated: bool,
    /// Recurrent state *before* processing `o_t` (zeros at an episode start).
    pub recurrent_state: &'a [f32],
    /// Keypoint centres the frozen keypoint model computed on `o_t`, exactly
    /// [`SequenceWriterConfig::keypoint_dims`] finite floats (`&[]` when none are stored).
    pub keypoints: &'a [f32],
    /// Version of the parameters that chose `a_t`.
    pub parameter_version: u64,
}

#[derive(Debug, Clone)]
struct BufferedStep {
    observation: Vec<u8>,
    keypoints: Vec<f32>,
    action: u16,
    reward: f32,
    terminal: bool,
    recurrent_state: Vec<f32>,
    parameter_version: u64,
}

/// Counters of a writer since its creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceWriterStats {
    /// Steps added.
    pub steps_total: u64,
    /// Sequences emitted.
    pub sequences_total: u64,
    /// Sequences emitted with padding.
    pub padded_sequences_total: u64,
    /// Episodes ended by `terminal`, `truncated` or [`SequenceWriter::flush_truncated`].
    pub episodes_total: u64,
}

/// Cuts one environment stream into [`Sequence`]s (acme's `SequenceAdder`, deepmind/acme
/// `acme/adders/reverb/sequence.py`, adapted).
///
/// # Cutting rule
///
/// With burn-in `B`, length `L` and period `P`, the `k`-th sequence of an episode learns from
/// step `s_k = k P` and starts at `start_k = s_k - min(B, s_k)`; its `burn_in` field is
/// `s_k - start_k` and it always holds `B + L` steps. So the first sequences of an episode get a
/// shorter burn-in (down to 0 at the episode start, where the zero state *is* the true state),
/// and every sequence has the same length, which batches without ragged tensors. When
/// `B > P` the first few sequences of an episode share their start and differ only in
/// `burn_in`.
///
/// A sequence is emitted as soon as its last step arrives. When the episode ends (a `terminal`
/// or `truncated` step, or [`SequenceWriter::flush_truncated`]), every sequence whose learning
/// start lies inside the episode and that is not yet out is emitted, padded to `B + L` steps
/// with zero frames, zero keypoints, action 0, reward 0 and `done = true` (a [`Sequence::mask`]
/// marks them);
/// then the writer starts a fresh episode. A sequence never spans two episodes.
///
/// `truncated` is set on the sequences emitted by a `truncated` step or by
/// [`SequenceWriter::flush_truncated`] whose valid part reaches the cut. A full sequence that
/// happened to end on the last step before a later `flush_truncated` was already sent without
/// the flag; a learner loses nothing, since it cannot bootstrap past a sequence's last step in
/// either case.
///
/// With the defaults (`L = 12`, `P = 8`, `B = 0`) an episode of 30 steps gives sequences over
/// steps `0..12`, `8..20`, `16..28` and `24..30` + 6 padding steps.
///
/// # Loop of use
///
/// ```
/// use actor::{SequenceWriter, SequenceWriterConfig, Step};
///
/// let config = SequenceWriterConfig { obs_shape: [1, 1, 1], ..SequenceWriterConfig::default() };
/// let mut writer = SequenceWriter::new(config, /* env_id */ 0, /* run_id */ 42)?;
/// let mut emitted = Vec::new();
/// for t in 0..20u16 {
///     // observe o_t, act a_t, get r_t and the episode flags from the environment...
///     emitted.extend(writer.add(Step {
///         observation: &[t as u8],
///         action: t,
///         reward: 0.0,
///         terminal: t == 19,
///         truncated: false,
///         recurrent_state: &[],
///         keypoints: &[],
///         parameter_version: 0,
///     })?);
/// }
/// // ...and send `emitted` to the replay.
/// assert_eq!(emitted.len(), 3); // steps 0..12, 8..20, 16..20 + padding
/// # Ok::<(), actor::ActorError>(())
/// ```
///
/// Compared with acme's `add_first(timestep)` / `add(action, next_timestep)` / `reset()`: the
/// actor here hands over `(o_t, a_t, r_t, done_t, state_t)` together, so one [`add`] per step
/// does both, the first `add` after construction or an episode end starts the episode, and
/// [`reset`] drops an unfinished episode without emitting it (e.g. after an environment error).
///
/// [`add`]: SequenceWriter::add
/// [`reset`]: SequenceWriter::reset
#[derive(Debug, Clone)]
pub struct SequenceWriter {
    config: SequenceWriterConfig,
    env_id: u32,
    run_id: u64,
    /// Steps of the current episode from `buffer_start` on.
    buffer: VecDeque<BufferedStep>,
    /// Episode step index of `buffer[0]`.
    buffer_start: usize,
    /// Steps added in the current episode.
    episode_len: usize,
    /// Index `k` of the next sequence of the current episode to emit.
    next_sequence: usize,
    stats: SequenceWriterStats,
}

impl SequenceWriter {
    /// Creates a writer for the stream `env_id` of the actor run `run_id`.
    pub fn new(config: SequenceWriterConfig, env_id: u32, run_id: u64) -> Result<Self, ActorError> {
        config.validate()?;
        Ok(Self {
            config,
            env_id,
            run_id,
            buffer: VecDeque::new(),
            buffer_start: 0,
            episode_len: 0,
            next_sequence: 0,
            stats: SequenceWriterStats::default(),
        })
    }

    /// Returns the configuration.
    pub fn config(&self) -> &SequenceWriterConfig {
        &self.config
    }

    /// Returns the number of steps added in the current episode.
    pub fn episode_len(&self) -> usize {
        self.episode_len
    }

    /// Returns the counters.
    pub fn stats(&self) -> SequenceWriterStats {
        self.stats
    }

    /// Records one step and returns the sequences it completes (usually none or one; more at an
    /// episode end). A step with `terminal` or `truncated` set ends the episode.
    ///
    /// The step is checked first (observation size, state and keypoint lengths, finite reward,
    /// state and keypoints); on error nothing is recorded.
    pub fn add(&mut self, step: Step<'_>) -> Result<Vec<Sequence>, ActorError> {
        self.check(&step)?;
        self.buffer.push_back(BufferedStep {
            observation: step.observation.to_vec(),
            keypoints: step.keypoints.to_vec(),
            action: step.action,
            reward: step.reward,
            terminal: step.terminal,
            recurrent_state: step.recurrent_state.to_vec(),
            parameter_version: step.parameter_version,
        });
        self.episode_len += 1;
        self.stats.steps_total += 1;

        let episode_ends = step.terminal || step.truncated;
        let cut_without_terminal = step.truncated && !step.terminal;
        let total_length = self.config.total_length();
        let mut emitted = Vec::new();
        while self.start_of(self.next_sequence) + total_length <= self.episode_len {
            let start = self.start_of(self.next_sequence);
            // A full sequence ending exactly at a truncation carries the flag too.
            let truncated = cut_without_terminal && start + total_length == self.episode_len;
            emitted.push(self.emit(self.next_sequence, truncated)?);
            self.next_sequence += 1;
            self.drop_unneeded_steps();
        }
        if episode_ends {
            emitted.extend(self.finish_episode(cut_without_terminal)?);
        }
        Ok(emitted)
    }

    /// Ends the current episode as truncated (the actor stops or restarts mid-episode) and
    /// returns its pending sequences, padded. Returns nothing when no step is pending.
    pub fn flush_truncated(&mut self) -> Result<Vec<Sequence>, ActorError> {
        if self.episode_len == 0 {
            return Ok(Vec::new());
        }
        self.finish_episode(true)
    }

    /// Drops the current episode's pending steps without emitting anything.
    pub fn reset(&mut self) {
        self.buffer.clear();
        self.buffer_start = 0;
        self.episode_len = 0;
        self.next_sequence = 0;
    }

    fn check(&self, step: &Step<'_>) -> Result<(), ActorError> {
        let expected = self.config.obs_shape.iter().product();
        if step.observation.len() != expected {
            return Err(ActorError::ObservationSize {
                actual: step.observation.len(),
                expected,
                obs_shape: self.config.obs_shape,
            });
        }
        if step.recurrent_state.len() != self.config.recurrent_state_len {
            return Err(ActorError::RecurrentStateSize {
                actual: step.recurrent_state.len(),
                expected: self.config.recurrent_state_len,
            });
        }
        if step.keypoints.len() != self.config.keypoint_dims {
            return Err(ActorError::KeypointSize {
                actual: step.keypoints.len(),
                expected: self.config.keypoint_dims,
            });
        }
        if !step.reward.is_finite() {
            return Err(ActorError::NonFiniteReward { value: step.reward });
        }
        if let Some((index, &value)) = step
            .recurrent_state
            .iter()
            .enumerate()
            .find(|(_, entry)| !entry.is_finite())
        {
            return Err(ActorError::NonFiniteRecurrentState { index, value });
        }
        if let Some((index, &value)) = step
            .keypoints
            .iter()
            .enumerate()
            .find(|(_, entry)| !entry.is_finite())
        {
            return Err(ActorError::NonFiniteKeypoint { index, value });
        }
        Ok(())
    }

    /// Episode step where sequence `k`'s learning part starts, `k P`.
    fn learning_start_of(&self, sequence: usize) -> usize {
        sequence * self.config.period
    }

    /// Episode step where sequence `k` starts, `k P - min(B, k P)`.
    fn start_of(&self, sequence: usize) -> usize {
        let learning_start = self.learning_start_of(sequence);
        learning_start - learning_start.min(self.config.burn_in)
    }

    /// Emits every pending sequence of the episode, padded, and starts a new episode.
    fn finish_episode(&mut self, truncated: bool) -> Result<Vec<Sequence>, ActorError> {
        let mut emitted = Vec::new();
        while self.learning_start_of(self.next_sequence) < self.episode_len {
            emitted.push(self.emit(self.next_sequence, truncated)?);
            self.next_sequence += 1;
        }
        self.stats.episodes_total += 1;
        self.reset();
        Ok(emitted)
    }

    /// Forgets buffered steps that no pending sequence needs.
    fn drop_unneeded_steps(&mut self) {
        let keep_from = self.start_of(self.next_sequence);
        while self.buffer_start < keep_from && !self.buffer.is_empty() {
            self.buffer.pop_front();
            self.buffer_start += 1;
        }
    }

    /// Builds sequence `k` from the buffered steps, padding past the last available step.
    fn emit(&mut self, sequence_index: usize, truncated: bool) -> Result<Sequence, ActorError> {
        let start = self.start_of(sequence_index);
        let burn_in = self.learning_start_of(sequence_index) - start;
        let total_length = self.config.total_length();
        let valid = (self.episode_len - start).min(total_length);
        let padded = total_length - valid;
        debug_assert!(start >= self.buffer_start && valid > burn_in);
        let frame: usize = self.config.obs_shape.iter().product();

        let first = start - self.buffer_start;
        let steps = || self.buffer.range(first..first + valid);
        let mut observations = Vec::with_capacity(total_length * frame);
        for step in steps() {
            observations.extend_from_slice(&step.observation);
        }
        observations.resize(total_length * frame, 0);
        let keypoint_dims = self.config.keypoint_dims;
        let mut keypoints = Vec::with_capacity(total_length * keypoint_dims);
        for step in steps() {
            keypoints.extend_from_slice(&step.keypoints);
        }
        keypoints.resize(total_length * keypoint_dims, 0.0);
        let mut actions: Vec<u16> = steps().map(|step| step.action).collect();
        actions.resize(total_length, 0);
        let mut rewards: Vec<f32> = steps().map(|step| step.reward).collect();
        rewards.resize(total_length, 0.0);
        let mut dones: Vec<bool> = steps().map(|step| step.terminal).collect();
        dones.resize(total_length, true);
        let first_step = &self.buffer[first];

        let sequence = Sequence {
            env_id: self.env_id,
            run_id: self.run_id,
            observations,
            obs_shape: self.config.obs_shape,
            keypoints,
            keypoint_dims: u16::try_from(keypoint_dims).expect("validated: keypoint_dims fits u16"),
            actions,
            rewards,
            dones,
            truncated,
            burn_in: u16::try_from(burn_in).expect("validated: B + L fits u16"),
            padded_steps: u16::try_from(padded).expect("validated: B + L fits u16"),
            initial_recurrent_state: first_step.recurrent_state.clone(),
            parameter_version: first_step.parameter_version,
        };
        sequence.validate()?;
        self.stats.sequences_total += 1;
        if padded > 0 {
            self.stats.padded_sequences_total += 1;
        }
        Ok(sequence)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum End {
        Terminal,
        Truncated,
        Open,
    }

    fn config(sequence_length: usize, period: usize, burn_in: usize) -> SequenceWriterConfig {
        SequenceWriterConfig {
            sequence_length,
            period,
            burn_in,
            obs_shape: [1, 1, 2],
            recurrent_state_len: 2,
            keypoint_dims: KEYPOINT_DIMS,
        }
    }

    /// Keypoint floats per step in the test config (3, odd on purpose: the writer does not
    /// interpret them).
    const KEYPOINT_DIMS: usize = 3;

    fn writer(config: SequenceWriterConfig) -> SequenceWriter {
        SequenceWriter::new(config, 3, 77).unwrap()
    }

    /// Step `t` of episode `episode`: observation `[episode, t]`, keypoints `[t; 3]`, action
    /// `t`, reward `t`, state `[episode, t]`, parameter version `100 + t`.
    fn add_step(writer: &mut SequenceWriter, episode: u8, t: usize, end: End) -> Vec<Sequence> {
        let observation = [episode, t as u8];
        let keypoints = [t as f32; KEYPOINT_DIMS];
        let state = [f32::from(episode), t as f32];
        writer
            .add(Step {
                observation: &observation,
                keypoints: &keypoints,
                action: t as u16,
                reward: t as f32,
                terminal: end == End::Terminal,
                truncated: end == End::Truncated,
                recurrent_state: &state,
                parameter_version: 100 + t as u64,
            })
            .unwrap()
    }

    /// Adds an episode of `len` steps whose last step ends it as `end`; returns, per step, the
    /// sequences that step emitted.
    fn add_episode(
        writer: &mut SequenceWriter,
        episode: u8,
        len: usize,
        end: End,
    ) -> Vec<Vec<Sequence>> {
        (0..len)
            .map(|t| {
                add_step(
                    writer,
                    episode,
                    t,
                    if t + 1 == len { end } else { End::Open },
                )
            })
            .collect()
    }

    /// Episode step of each valid step of a sequence.
    fn steps_of(sequence: &Sequence) -> Vec<usize> {
        (0..sequence.valid_len())
            .map(|step| usize::from(sequence.observation(step)[1]))
            .collect()
    }

    fn range(start: usize, end: usize) -> Vec<usize> {
        (start..end).collect()
    }

    /// Checks that valid step `i` of `sequence` stores the keypoints of episode step
    /// `steps_of(sequence)[i]` (all equal to that step index, see `add_step`) and padding steps
    /// store zeros.
    fn assert_keypoints_follow_steps(sequence: &Sequence) {
        assert_eq!(usize::from(sequence.keypoint_dims), KEYPOINT_DIMS);
        assert_eq!(sequence.keypoints.len(), sequence.len() * KEYPOINT_DIMS);
        for (i, t) in steps_of(sequence).into_iter().enumerate() {
            assert_eq!(
                sequence.step_keypoints(i),
                &[t as f32; KEYPOINT_DIMS],
                "position {i} holds episode step {t}"
            );
        }
        for i in sequence.valid_len()..sequence.len() {
            assert_eq!(
                sequence.step_keypoints(i),
                &[0.0; KEYPOINT_DIMS],
                "padding position {i}"
            );
        }
    }

    #[test]
    fn default_config_matches_the_reference_window() {
        let config = SequenceWriterConfig::default();
        config.validate().unwrap();
        assert_eq!(config.total_length(), 8 + 3 + 1);
        assert_eq!(config.period, 8);
        assert_eq!(config.overlap(), 4);
        assert_eq!(config.burn_in, 0);
        assert_eq!(config.obs_shape, [84, 84, 3]);
        assert_eq!(config.keypoint_dims, 0);
    }

    #[test]
    fn config_rejects_inconsistent_values() {
        for bad in [
            config(0, 1, 0),
            config(12, 0, 0),
            config(12, 13, 0),
            config(60_000, 8, 6_000),
            SequenceWriterConfig {
                obs_shape: [84, 0, 3],
                ..SequenceWriterConfig::default()
            },
            SequenceWriterConfig {
                keypoint_dims: usize::from(u16::MAX) + 1,
                ..SequenceWriterConfig::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(ActorError::InvalidConfig(_))),
                "{bad:?}"
            );
            assert!(SequenceWriter::new(bad, 0, 0).is_err());
        }
        let error = config(12, 13, 0).validate().unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid sequence writer config: period must be in 1..=sequence_length (12), got 13: a longer period skips steps"
        );
        let error = SequenceWriterConfig {
            keypoint_dims: 70_000,
            ..SequenceWriterConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "invalid sequence writer config: keypoint_dims must be at most 65535, got 70000"
        );
        SequenceWriterConfig {
            keypoint_dims: usize::from(u16::MAX),
            ..SequenceWriterConfig::default()
        }
        .validate()
        .unwrap();
        let parsed: SequenceWriterConfig = serde_json::from_str(r#"{"burn_in": 40}"#).unwrap();
        assert_eq!(parsed.burn_in, 40);
        assert_eq!(parsed.sequence_length, 12);
        assert_eq!(parsed.keypoint_dims, 0, "keypoints are off by default");
        let parsed: SequenceWriterConfig =
            serde_json::from_str(r#"{"keypoint_dims": 14}"#).unwrap();
        assert_eq!(parsed.keypoint_dims, 14);
        assert!(serde_json::from_str::<SequenceWriterConfig>(r#"{"overlap": 4}"#).is_err());
    }

    #[test]
    fn default_cutting_of_a_30_step_episode() {
        let mut writer = writer(config(12, 8, 0));
        let per_step = add_episode(&mut writer, 1, 30, End::Terminal);
        let emitted_at: Vec<usize> = per_step
            .iter()
            .enumerate()
            .flat_map(|(t, sequences)| std::iter::repeat_n(t, sequences.len()))
            .collect();
        assert_eq!(emitted_at, vec![11, 19, 27, 29]);
        let sequences: Vec<Sequence> = per_step.into_iter().flatten().collect();
        assert_eq!(steps_of(&sequences[0]), range(0, 12));
        assert_eq!(steps_of(&sequences[1]), range(8, 20));
        assert_eq!(steps_of(&sequences[2]), range(16, 28));
        assert_eq!(steps_of(&sequences[3]), range(24, 30));
        for sequence in &sequences {
            assert_eq!(sequence.len(), 12);
            assert_eq!(sequence.burn_in, 0);
            assert!(!sequence.truncated);
            assert_eq!((sequence.env_id, sequence.run_id), (3, 77));
        }
        assert_eq!(sequences[3].padded_steps, 6);
        // Keypoints follow the steps (the 4 overlapping steps appear in both sequences), padding
        // stores zeros.
        for sequence in &sequences {
            assert_keypoints_follow_steps(sequence);
        }
        assert_eq!(sequences[1].step_keypoints(0), &[8.0; 3]);
        assert_eq!(
            sequences[0].step_keypoints(8),
            sequences[1].step_keypoints(0)
        );
        assert_eq!(
            sequences[3].keypoints,
            [
                (24..30).flat_map(|t| [t as f32; 3]).collect::<Vec<_>>(),
                vec![0.0; 6 * 3]
            ]
            .concat()
        );
        // Actions, rewards and dones follow the steps; only the last valid step is terminal.
        assert_eq!(sequences[1].actions, (8..20).collect::<Vec<u16>>());
        assert_eq!(sequences[1].rewards[0], 8.0);
        assert!(sequences[..3].iter().all(|s| s.dones.iter().all(|&d| !d)));
        assert_eq!(
            sequences[3].dones,
            [vec![false; 5], vec![true; 7]].concat(),
            "step 29 is terminal, padding is done"
        );
        assert_eq!(
            writer.stats(),
            SequenceWriterStats {
                steps_total: 30,
                sequences_total: 4,
                padded_sequences_total: 1,
                episodes_total: 1,
            }
        );
        assert_eq!(writer.episode_len(), 0);
    }

    #[test]
    fn consecutive_sequences_overlap_by_length_minus_period() {
        let mut writer = writer(config(12, 8, 0));
        let sequences: Vec<Sequence> = add_episode(&mut writer, 1, 60, End::Open)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(
            sequences.len(),
            7,
            "starts 0, 8, ..., 48 are complete by step 59"
        );
        for pair in sequences.windows(2) {
            let (a, b) = (steps_of(&pair[0]), steps_of(&pair[1]));
            assert_eq!(a[8..], b[..4], "4 shared steps");
            assert_eq!(
                pair[0].keypoints[8 * 3..],
                pair[1].keypoints[..4 * 3],
                "and their keypoints"
            );
        }
        sequences.iter().for_each(assert_keypoints_follow_steps);
        let mut half_overlap = SequenceWriter::new(config(6, 3, 0), 0, 0).unwrap();
        let sequences: Vec<Sequence> = add_episode(&mut half_overlap, 1, 12, End::Open)
            .into_iter()
            .flatten()
            .collect();
        let starts: Vec<usize> = sequences.iter().map(|s| steps_of(s)[0]).collect();
        assert_eq!(starts, vec![0, 3, 6]);
    }

    #[test]
    fn burn_in_prepends_steps_and_shrinks_at_the_episode_start() {
        // B 4, L 12, P 8: every sequence holds 16 steps.
        let mut writer = writer(config(12, 8, 4));
        let sequences: Vec<Sequence> = add_episode(&mut writer, 1, 40, End::Terminal)
            .into_iter()
            .flatten()
            .collect();
        let summary: Vec<(usize, u16, u16)> = sequences
            .iter()
            .map(|s| (steps_of(s)[0], s.burn_in, s.padded_steps))
            .collect();
        assert_eq!(
            summary,
            vec![(0, 0, 0), (4, 4, 0), (12, 4, 0), (20, 4, 0), (28, 4, 4)]
        );
        assert!(sequences.iter().all(|s| s.len() == 16));
        // The learning part starts at k * 8 in each; the burn-in steps carry their own keypoints.
        for (k, sequence) in sequences.iter().enumerate() {
            assert_eq!(steps_of(sequence)[usize::from(sequence.burn_in)], 8 * k);
            assert_keypoints_follow_steps(sequence);
            assert_eq!(
                sequence.step_keypoints(usize::from(sequence.burn_in)),
                &[(8 * k) as f32; 3]
            );
        }
        // Sequence 1 burns in on steps 4..8, which sequence 0 also holds as learning steps.
        assert_eq!(
            sequences[1].keypoints[..4 * 3],
            sequences[0].keypoints[4 * 3..8 * 3]
        );
        assert_eq!(
            sequences[4].keypoints[12 * 3..],
            [0.0; 4 * 3],
            "4 padding steps"
        );
    }

    #[test]
    fn burn_in_longer_than_the_period_shares_the_episode_start() {
        // B 10, L 6, P 4: learning starts 0, 4, 8, 12 start at 0, 0, 0, 2.
        let mut writer = writer(config(6, 4, 10));
        let sequences: Vec<Sequence> = add_episode(&mut writer, 1, 16, End::Terminal)
            .into_iter()
            .flatten()
            .collect();
        let summary: Vec<(usize, u16, u16)> = sequences
            .iter()
            .map(|s| (steps_of(s)[0], s.burn_in, s.padded_steps))
            .collect();
        assert_eq!(summary, vec![(0, 0, 0), (0, 4, 0), (0, 8, 0), (2, 10, 2)]);
        sequences.iter().for_each(assert_keypoints_follow_steps);
    }

    #[test]
    fn the_stored_state_and_version_are_those_of_the_first_step() {
        let mut writer = writer(config(12, 8, 4));
        let sequences: Vec<Sequence> = add_episode(&mut writer, 5, 30, End::Terminal)
            .into_iter()
            .flatten()
            .collect();
        for sequence in &sequences {
            let first = steps_of(sequence)[0];
            assert_eq!(sequence.initial_recurrent_state, vec![5.0, first as f32]);
            assert_eq!(sequence.parameter_version, 100 + first as u64);
        }
        // Without a configured state, nothing is stored.
        let mut stateless = SequenceWriter::new(
            SequenceWriterConfig {
                obs_shape: [1, 1, 1],
                ..SequenceWriterConfig::default()
            },
            0,
            0,
        )
        .unwrap();
        let step = Step {
            observation: &[1],
            action: 0,
            reward: 0.0,
            terminal: true,
            truncated: false,
            recurrent_state: &[],
            keypoints: &[],
            parameter_version: 0,
        };
        let sequences = stateless.add(step).unwrap();
        assert!(sequences[0].initial_recurrent_state.is_empty());
        // Nor keypoints.
        assert_eq!(sequences[0].keypoint_dims, 0);
        assert!(sequences[0].keypoints.is_empty());
    }

    #[test]
    fn a_terminal_at_a_full_sequence_end_still_emits_the_tail() {
        let mut writer = writer(config(12, 8, 0));
        let per_step = add_episode(&mut writer, 1, 20, End::Terminal);
        let last: &Vec<Sequence> = &per_step[19];
        assert_eq!(last.len(), 2);
        assert_eq!(steps_of(&last[0]), range(8, 20));
        assert_eq!(last[0].padded_steps, 0);
        assert!(
            last[0].dones[11],
            "the full sequence ends on the terminal step"
        );
        assert_eq!(steps_of(&last[1]), range(16, 20));
        assert_eq!(last[1].padded_steps, 8);
    }

    #[test]
    fn a_short_episode_is_padded_with_zero_done_steps() {
        let mut writer = writer(config(12, 8, 0));
        let sequences: Vec<Sequence> = add_episode(&mut writer, 9, 3, End::Terminal)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(sequences.len(), 1);
        let sequence = &sequences[0];
        assert_eq!(sequence.padded_steps, 9);
        assert_eq!(sequence.mask(), [vec![true; 3], vec![false; 9]].concat());
        assert_eq!(&sequence.observations[..6], &[9, 0, 9, 1, 9, 2]);
        assert!(sequence.observations[6..].iter().all(|&b| b == 0));
        assert_eq!(&sequence.actions[..3], &[0, 1, 2]);
        assert!(sequence.actions[3..].iter().all(|&a| a == 0));
        assert!(sequence.rewards[3..].iter().all(|&r| r == 0.0));
        assert_eq!(
            sequence.dones,
            [vec![false, false, true], vec![true; 9]].concat()
        );
        assert_eq!(
            sequence.keypoints,
            [vec![0.0; 3], vec![1.0; 3], vec![2.0; 3], vec![0.0; 9 * 3]].concat()
        );
        assert_keypoints_follow_steps(sequence);
        sequence.validate().unwrap();
    }

    #[test]
    fn a_truncated_episode_is_flagged_and_not_terminal() {
        let mut writer = writer(config(12, 8, 0));
        let sequences: Vec<Sequence> = add_episode(&mut writer, 1, 20, End::Truncated)
            .into_iter()
            .flatten()
            .collect();
        let summary: Vec<(Vec<usize>, bool)> = sequences
            .iter()
            .map(|s| (steps_of(s), s.truncated))
            .collect();
        assert_eq!(
            summary,
            vec![
                (range(0, 12), false),
                (range(8, 20), true),
                (range(16, 20), true),
            ]
        );
        for sequence in &sequences {
            assert!(sequence.dones[..sequence.valid_len()].iter().all(|&d| !d));
            assert_keypoints_follow_steps(sequence);
        }
    }

    #[test]
    fn terminal_wins_over_truncated() {
        let mut writer = writer(config(4, 4, 0));
        let sequences = writer
            .add(Step {
                observation: &[0, 0],
                action: 0,
                reward: 1.0,
                terminal: true,
                truncated: true,
                recurrent_state: &[0.0, 0.0],
                keypoints: &[0.5; 3],
                parameter_version: 0,
            })
            .unwrap();
        assert!(!sequences[0].truncated);
        assert!(sequences[0].dones[0]);
        assert_eq!(
            sequences[0].keypoints,
            [vec![0.5; 3], vec![0.0; 3 * 3]].concat()
        );
    }

    #[test]
    fn no_sequence_spans_two_episodes() {
        let mut writer = writer(config(12, 8, 4));
        let first: Vec<Sequence> = add_episode(&mut writer, 1, 13, End::Terminal)
            .into_iter()
            .flatten()
            .collect();
        let second: Vec<Sequence> = add_episode(&mut writer, 2, 21, End::Terminal)
            .into_iter()
            .flatten()
            .collect();
        for (episode, sequences) in [(1u8, &first), (2, &second)] {
            for sequence in sequences {
                for step in 0..sequence.valid_len() {
                    assert_eq!(sequence.observation(step)[0], episode);
                }
                assert_keypoints_follow_steps(sequence);
            }
        }
        assert_eq!(
            steps_of(&second[0]),
            range(0, 16),
            "a new episode starts at its step 0"
        );
        assert_eq!(second[0].burn_in, 0);
        assert_eq!(second[0].initial_recurrent_state, vec![2.0, 0.0]);
    }

    #[test]
    fn flush_truncated_ends_an_open_episode() {
        let mut writer = writer(config(12, 8, 0));
        let during: Vec<Sequence> = add_episode(&mut writer, 1, 14, End::Open)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(during.len(), 1);
        let flushed = writer.flush_truncated().unwrap();
        let summary: Vec<(Vec<usize>, bool)> =
            flushed.iter().map(|s| (steps_of(s), s.truncated)).collect();
        assert_eq!(summary, vec![(range(8, 14), true)]);
        assert_keypoints_follow_steps(&flushed[0]);
        assert!(
            writer.flush_truncated().unwrap().is_empty(),
            "nothing pending"
        );
        assert_eq!(writer.stats().episodes_total, 1);
    }

    #[test]
    fn reset_drops_the_pending_episode() {
        let mut writer = writer(config(12, 8, 0));
        add_episode(&mut writer, 1, 10, End::Open);
        writer.reset();
        assert_eq!(writer.episode_len(), 0);
        assert!(writer.flush_truncated().unwrap().is_empty());
        let sequences: Vec<Sequence> = add_episode(&mut writer, 2, 12, End::Open)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(sequences.len(), 1);
        assert!(steps_of(&sequences[0]).iter().eq(range(0, 12).iter()));
        assert!((0..12).all(|step| sequences[0].observation(step)[0] == 2));
    }

    #[test]
    fn invalid_steps_are_rejected_and_not_recorded() {
        let mut writer = writer(config(12, 8, 0));
        add_episode(&mut writer, 1, 2, End::Open);
        let good = Step {
            observation: &[1, 2],
            action: 0,
            reward: 0.0,
            terminal: false,
            truncated: false,
            recurrent_state: &[0.0, 0.0],
            keypoints: &[0.0, 0.5, -0.5],
            parameter_version: 0,
        };
        let cases = [
            (
                Step {
                    observation: &[1, 2, 3],
                    ..good
                },
                "observation has 3 bytes, expected 2 for shape [1, 1, 2]",
            ),
            (
                Step {
                    recurrent_state: &[0.0],
                    ..good
                },
                "recurrent state has 1 entries, expected 2",
            ),
            (
                Step {
                    reward: f32::NAN,
                    ..good
                },
                "reward NaN is not finite",
            ),
            (
                Step {
                    recurrent_state: &[0.0, f32::NEG_INFINITY],
                    ..good
                },
                "recurrent state entry 1 is -inf, it must be finite",
            ),
            (
                Step {
                    keypoints: &[0.0, 0.5],
                    ..good
                },
                "keypoints have 2 floats, expected keypoint_dims = 3",
            ),
            (
                Step {
                    keypoints: &[],
                    ..good
                },
                "keypoints have 0 floats, expected keypoint_dims = 3",
            ),
            (
                Step {
                    keypoints: &[0.0, f32::NAN, 0.5],
                    ..good
                },
                "keypoint entry 1 is NaN, it must be finite",
            ),
        ];
        for (step, message) in cases {
            assert_eq!(writer.add(step).unwrap_err().to_string(), message);
        }
        assert_eq!(writer.episode_len(), 2);
        assert_eq!(writer.stats().steps_total, 2);
        // A writer without keypoints rejects any.
        let mut plain = SequenceWriter::new(
            SequenceWriterConfig {
                keypoint_dims: 0,
                ..config(12, 8, 0)
            },
            0,
            0,
        )
        .unwrap();
        assert!(matches!(
            plain.add(good),
            Err(ActorError::KeypointSize {
                actual: 3,
                expected: 0
            })
        ));
        plain
            .add(Step {
                keypoints: &[],
                ..good
            })
            .unwrap();
    }

    proptest! {
        /// Over random configs and episode streams: every sequence validates and has B + L
        /// steps, holds consecutive steps of one episode starting at `k P - burn_in`, stores the
        /// state of its first step, and every step of every episode is a learning position
        /// (`burn_in..burn_in + P`) of exactly one sequence.
        #[test]
        fn every_step_is_trained_exactly_once_and_episodes_never_mix(
            sequence_length in 1usize..16,
            period_fraction in 0.0f64..1.0,
            burn_in in 0usize..10,
            episodes in prop::collection::vec(
                (1usize..50, prop_oneof![Just(End::Terminal), Just(End::Truncated), Just(End::Open)]),
                1..6,
            ),
        ) {
            let period = 1 + ((sequence_length - 1) as f64 * period_fraction) as usize;
            let mut writer = writer(config(sequence_length, period, burn_in));
            for (episode, &(len, end)) in episodes.iter().enumerate() {
                let episode = episode as u8 + 1;
                let mut sequences: Vec<Sequence> =
                    add_episode(&mut writer, episode, len, end).into_iter().flatten().collect();
                // Sequences completed before an open episode is flushed cannot know it will be
                // cut; only the flushed ones carry the flag.
                let emitted_before_flush = sequences.len();
                if end == End::Open {
                    sequences.extend(writer.flush_truncated().unwrap());
                }
                prop_assert_eq!(sequences.len(), len.div_ceil(period));
                let mut trained = vec![0usize; len];
                for (k, sequence) in sequences.iter().enumerate() {
                    sequence.validate().unwrap();
                    prop_assert_eq!(sequence.len(), burn_in + sequence_length);
                    let steps = steps_of(sequence);
                    let burn = usize::from(sequence.burn_in);
                    prop_assert_eq!(steps[0] + burn, k * period);
                    prop_assert!(steps.windows(2).all(|w| w[1] == w[0] + 1));
                    // `steps` has one entry per valid step.
                    for (step, &t) in steps.iter().enumerate() {
                        prop_assert_eq!(sequence.observation(step)[0], episode);
                        prop_assert_eq!(sequence.step_keypoints(step), &[t as f32; KEYPOINT_DIMS]);
                    }
                    prop_assert!(sequence.keypoints[sequence.valid_len() * KEYPOINT_DIMS..]
                        .iter()
                        .all(|&value| value == 0.0));
                    prop_assert_eq!(
                        &sequence.initial_recurrent_state,
                        &vec![f32::from(episode), steps[0] as f32]
                    );
                    for &t in steps.iter().skip(burn).take(period) {
                        trained[t] += 1;
                    }
                    let last_of_episode = *steps.last().unwrap() == len - 1;
                    prop_assert_eq!(
                        sequence.dones[sequence.valid_len() - 1],
                        last_of_episode && end == End::Terminal
                    );
                    let cut = match end {
                        End::Terminal => false,
                        End::Truncated => true,
                        End::Open => k >= emitted_before_flush,
                    };
                    prop_assert_eq!(sequence.truncated, last_of_episode && cut);
                }
                prop_assert!(trained.iter().all(|&count| count == 1), "{:?}", trained);
                prop_assert_eq!(writer.episode_len(), 0);
            }
        }
    }
}
