//! [`KeypointAgent`]: the trainable part of a PermaKey agent — keypoint encoder (CNN or GNN) plus
//! recurrent Q-network — on top of a frozen keypoint front end's centres and features.
//!
//! The agent renders the keypoint heatmaps itself from the centres, as Gaussians of the front
//! end's RL standard deviation directly at the features' resolution (spec 7.1-7.2 and decision
//! 9b: heatmaps at the feature resolution). Since the front end is frozen and a heatmap is a pure
//! function of its centre, an actor can ship only the `K x 2` centres with each stored frame, and
//! the learner recomputes the (cheap) features from the frame: the same inputs the actor saw.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::{EncoderKind, KeypointCnnEncoder, KeypointGnnEncoder, LstmState, RecurrentQNetwork};

/// The agent's shape (spec 7.2-7.4 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// `cnn` (PKey-CNN, default) or `gnn` (PKey-GNN).
    pub encoder: EncoderKind,
    /// Channels of the CNN encoder's convs (spec `kpt_cnn_channels` 32).
    pub cnn_channels: i64,
    /// Message-passing steps of the GNN core (spec `mp_num_steps` 1).
    pub message_passing_steps: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self { encoder: EncoderKind::Cnn, cnn_channels: 32, message_passing_steps: 1 }
    }
}

/// What the agent needs to know about its front end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrontEndShape {
    /// Keypoints K.
    pub num_keypoints: i64,
    /// Feature channels C and side H = W of the front end's features.
    pub feature_channels: i64,
    pub feature_size: i64,
    /// Heatmap standard deviation in `[-1, 1]` units.
    pub gauss_std: f64,
}

#[derive(Debug)]
enum Encoder {
    Cnn(KeypointCnnEncoder),
    Gnn(KeypointGnnEncoder),
}

/// Encoder + LSTM + Q head.
#[derive(Debug)]
pub struct KeypointAgent {
    encoder: Encoder,
    qnet: RecurrentQNetwork,
    front: FrontEndShape,
}

impl KeypointAgent {
    pub fn new(path: &nn::Path, config: &AgentConfig, front: FrontEndShape, num_actions: i64) -> Self {
        let encoder = match config.encoder {
            EncoderKind::Cnn => Encoder::Cnn(KeypointCnnEncoder::new(
                &(path / "encoder"),
                front.feature_channels,
                front.feature_size,
                config.cnn_channels,
            )),
            EncoderKind::Gnn => Encoder::Gnn(KeypointGnnEncoder::new(
                &(path / "encoder"),
                front.feature_channels,
                front.num_keypoints,
                config.message_passing_steps,
            )),
        };
        Self { encoder, qnet: RecurrentQNetwork::new(&(path / "qnet"), num_actions), front }
    }

    pub fn num_actions(&self) -> i64 {
        self.qnet.num_actions
    }

    pub fn front_end(&self) -> FrontEndShape {
        self.front
    }

    /// Embeddings `N x 128` of `centres` (`N x K x 2`) and `features` (`N x C x H x W`).
    pub fn embed(&self, centres: &Tensor, features: &Tensor, train: bool) -> Tensor {
        let size = features.size();
        let heatmaps = permakey::keypoints::gaussian_maps(centres, size[2], size[3], self.front.gauss_std);
        match &self.encoder {
            Encoder::Cnn(cnn) => cnn.forward_t(&heatmaps, features, train),
            Encoder::Gnn(gnn) => gnn.forward_t(centres, &heatmaps, features, train),
        }
    }

    /// One acting step in inference mode: Q-values `N x A` and the next LSTM state.
    pub fn step(&self, centres: &Tensor, features: &Tensor, state: &LstmState) -> (Tensor, LstmState) {
        tch::no_grad(|| self.qnet.step(&self.embed(centres, features, false), state))
    }

    /// Q-values `B x T x A` over sequences: `centres` `B x T x K x 2`, `features`
    /// `B x T x C x H x W`, from `state`, zeroing it before steps where `resets` (`B x T` bool) is set.
    pub fn unroll(&self, centres: &Tensor, features: &Tensor, state: LstmState, resets: Option<&Tensor>, train: bool) -> (Tensor, LstmState) {
        self.unroll_with_stops(centres, features, state, resets, None, train)
    }

    /// [`KeypointAgent::unroll`] with gradient stops on the state (see
    /// [`RecurrentQNetwork::unroll_with_stops`]).
    pub fn unroll_with_stops(&self, centres: &Tensor, features: &Tensor, state: LstmState, resets: Option<&Tensor>, stops: Option<&Tensor>, train: bool) -> (Tensor, LstmState) {
        let c = centres.size();
        let (batch, steps) = (c[0], c[1]);
        let embeddings = self
            .embed(&centres.flatten(0, 1), &features.flatten(0, 1), train)
            .view([batch, steps, crate::encoders::EMBEDDING]);
        self.qnet.unroll_with_stops(&embeddings, state, resets, stops)
    }

    /// The recurrent half of [`KeypointAgent::unroll_with_stops`] on embeddings `B x T x 128`
    /// computed by [`KeypointAgent::embed`] (a learner embeds only the valid steps of a batch),
    /// each mask given with the steps where any of its rows is set
    /// ([`RecurrentQNetwork::unroll_marked`]: no read-back, and one LSTM call between them).
    pub fn unroll_embeddings(&self, embeddings: &Tensor, state: LstmState, resets: Option<(&Tensor, &[i64])>, stops: Option<(&Tensor, &[i64])>) -> (Tensor, LstmState) {
        self.qnet.unroll_marked(embeddings, state, resets, stops)
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    fn front() -> FrontEndShape {
        FrontEndShape { num_keypoints: 3, feature_channels: 4, feature_size: 10, gauss_std: 0.15 }
    }

    #[test]
    fn both_encoders_give_q_values_of_the_right_shape_and_unroll_matches_stepping() {
        for encoder in [EncoderKind::Cnn, EncoderKind::Gnn] {
            tch::manual_seed(1);
            let vs = nn::VarStore::new(Device::Cpu);
            let config = AgentConfig { encoder, cnn_channels: 8, ..AgentConfig::default() };
            let agent = KeypointAgent::new(&vs.root(), &config, front(), 5);
            let centres = Tensor::rand([2, 4, 3, 2], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
            let features = Tensor::rand([2, 4, 4, 10, 10], (Kind::Float, Device::Cpu));
            let (q, _) = agent.unroll(&centres, &features, LstmState::zeros(2, Device::Cpu), None, false);
            assert_eq!(q.size(), [2, 4, 5], "{encoder:?}");
            let mut state = LstmState::zeros(2, Device::Cpu);
            for t in 0..4 {
                let (qt, next) = agent.step(&centres.select(1, t), &features.select(1, t), &state);
                assert!(qt.allclose(&q.select(1, t), 1e-5, 1e-5, false), "{encoder:?} step {t}");
                state = next;
            }
        }
    }

    #[test]
    fn gradients_reach_every_parameter() {
        for encoder in [EncoderKind::Cnn, EncoderKind::Gnn] {
            let vs = nn::VarStore::new(Device::Cpu);
            let config = AgentConfig { encoder, cnn_channels: 8, ..AgentConfig::default() };
            let agent = KeypointAgent::new(&vs.root(), &config, front(), 5);
            let centres = Tensor::rand([3, 2, 3, 2], (Kind::Float, Device::Cpu)) * 1.6 - 0.8;
            let features = Tensor::rand([3, 2, 4, 10, 10], (Kind::Float, Device::Cpu));
            let (q, _) = agent.unroll(&centres, &features, LstmState::zeros(3, Device::Cpu), None, true);
            q.square().sum(Kind::Float).backward();
            for (name, var) in vs.variables() {
                if !var.requires_grad() {
                    continue;
                }
                let grad = var.grad();
                // The GNN's decoded edges feed nothing downstream (as in the reference), so they get none.
                if name.contains("decode_edge") {
                    continue;
                }
                // The edges start as zeros (spec 7.2), so the edge encoder's output is one and
                // the same vector on every edge of the batch; the core edge MLP's batch norm
                // removes any such constant, so in training mode no gradient reaches the edge
                // encoder (the reference's architecture behaves the same).
                if name.contains("encode_edge") {
                    continue;
                }
                assert!(grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{encoder:?}: no gradient for {name}");
            }
        }
    }
}
