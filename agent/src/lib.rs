//! The agent's networks (spec section 7.2-7.3): keypoint encoders on top of the frozen keypoint
//! front end, and the recurrent Q-network.
//!
//! - [`encoders::KeypointCnnEncoder`] ("PKey-CNN", KeyQN-style): features masked by the thresholded
//!   sum of the keypoint heatmaps, then 4 convs and a dense layer to 128.
//! - [`encoders::KeypointGnnEncoder`] ("PKey-GNN"): one node per keypoint (masked mean feature +
//!   learned positional encoding), a fully connected graph with self-edges, graph-nets
//!   encode-process-decode with one interaction-network step, and a dense readout to 128.
//! - [`qnet::RecurrentQNetwork`]: encoder output -> LSTM(128) -> linear Q-values; unrolled over a
//!   sequence from a given (or zero) state.
//!
//! Decision (spec 9b): heatmaps are resized (nearest) to the feature resolution in both encoders,
//! which removes the reference HEAD's 21-vs-42 mismatch in the CNN branch.

pub mod encoders;
pub mod qnet;

pub use encoders::{EncoderKind, KeypointCnnEncoder, KeypointGnnEncoder};
pub use qnet::{LstmState, RecurrentQNetwork};
pub mod policy;
pub use policy::{AgentConfig, FrontEndShape, KeypointAgent};
