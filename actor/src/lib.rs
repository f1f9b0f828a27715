//! Actor-side replay writing for the PermaKey recurrent agent (issues 7 and 8).
//!
//! # Role
//!
//! An actor steps its environments, runs the frozen keypoint front end and the LSTM Q-network,
//! and hands every step of every environment stream to that stream's [`SequenceWriter`],
//! together with the keypoint centres the front end computed for the step's observation (when
//! `keypoint_dims > 0`, so the learner rebuilds the heatmaps from them). The
//! writer cuts the stream into fixed-length [`replay::Sequence`]s, which the actor sends to the
//! replay (the `replay` crate's `SequenceReplay`, embedded or behind the replay service). This
//! crate is pure: no tensors, no I/O.
//!
//! # Loop of use
//!
//! ```text
//! writer = SequenceWriter::new(config, env_id, run_id)      // one per environment stream
//! loop:
//!     state_before = lstm_state                             // zeros at an episode start
//!     keypoints = keypoint_model(observation)               // frozen: K (y, x) centres
//!     action, lstm_state = policy(observation, keypoints, lstm_state)
//!     reward, terminal, truncated, next_observation = env.step(action)
//!     for sequence in writer.add(Step { observation, keypoints, action, reward: clip(reward),
//!                                       terminal, truncated, recurrent_state: state_before, .. }):
//!         replay.insert(sequence)
//!     if terminal or truncated: lstm_state = zeros; observation = env.reset()
//! on shutdown: replay.insert_all(writer.flush_truncated())
//! ```
//!
//! # Decisions
//!
//! - **Length and overlap**: sequences of `L = 12` learning steps (window 8 + n-step 3 + 1,
//!   spec 7.4), a new one every `P = 8` steps, so consecutive sequences overlap by 4 = n + 1.
//!   A learner that trains the first 8 positions after the burn-in (the correctly aligned
//!   3-step target of spec 9b needs `o_{t+3}` for position `t`, so positions 0..=8 of 12 have
//!   it) trains every step of every episode exactly once; a property test checks this.
//! - **Burn-in**: `B = 0` by default (the reference starts every window from a zero state). With
//!   `B > 0` (R2D2) every sequence holds `B + L` steps; near an episode start the burn-in shrinks
//!   so the sequence starts at step 0, where the zero state is exact. The state *before* the
//!   sequence's first step is stored with it when `recurrent_state_len > 0`.
//! - **Episode ends**: the last, partial sequences are padded to full length with zero frames,
//!   zero keypoints, action 0, reward 0 and `done = true`, and `padded_steps` says how many (a mask, not
//!   repeated frames: repeats would look like real data to the keypoint network and the LSTM).
//!   A terminal step sets `done` on that step; a time-limit cut sets `truncated` instead.
//!   Sequences never span two episodes.

mod error;
mod writer;

pub use error::ActorError;
pub use writer::{SequenceWriter, SequenceWriterConfig, SequenceWriterStats, Step};
