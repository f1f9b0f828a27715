//! Keypoint encoders: keypoints + heatmaps + features -> a 128-d state embedding.

use permakey::layers::{batch_norm1d, dense, resize_nearest, ConvBnRelu};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::ModuleT, Kind, Tensor};

/// Which encoder the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    Cnn,
    Gnn,
}

/// Heatmap threshold of the masks (spec 7.1: `mask_threshold = 0.2`).
pub const MASK_THRESHOLD: f64 = 0.2;
/// Width of the encoders' output (spec: `agent_size = 128`).
pub const EMBEDDING: i64 = 128;

/// `1[sum_k G_k >= threshold]` at the features' resolution: `B x 1 x H x W` floats.
pub fn summed_mask(heatmaps: &Tensor, height: i64, width: i64, threshold: f64) -> Tensor {
    let summed = heatmaps.sum_dim_intlist(&[1][..], true, Kind::Float);
    resize_nearest(&summed, height, width).ge(threshold).to_kind(Kind::Float)
}

/// Per-keypoint masks `1[G_k >= threshold]` at the features' resolution: `B x K x H x W`.
pub fn keypoint_masks(heatmaps: &Tensor, height: i64, width: i64, threshold: f64) -> Tensor {
    resize_nearest(&heatmaps.to_kind(Kind::Float), height, width).ge(threshold).to_kind(Kind::Float)
}

/// Mean of the feature vectors under each keypoint's mask: `B x K x D` (zero where a mask is empty).
pub fn masked_means(features: &Tensor, masks: &Tensor) -> Tensor {
    // features B x D x H x W, masks B x K x H x W -> B x K x D
    let weighted = Tensor::einsum("bkhw,bdhw->bkd", &[masks, features], None::<&[i64]>);
    let counts = masks.sum_dim_intlist(&[2, 3][..], false, Kind::Float).unsqueeze(-1);
    weighted / counts.clamp_min(1.0)
}

/// "PKey-CNN": `features * mask` -> conv32 k3 s1 -> conv32 k3 s1 -> conv32 k3 s2 -> conv32 k3 s1
/// (BN + ReLU each) -> flatten -> dense(128) + ReLU.
#[derive(Debug)]
pub struct KeypointCnnEncoder {
    convs: Vec<ConvBnRelu>,
    head: nn::Linear,
}

impl KeypointCnnEncoder {
    /// `feature_channels` D and `feature_size` H = W of the front end's features (64 and 42 for PermaKey).
    pub fn new(path: &nn::Path, feature_channels: i64, feature_size: i64, channels: i64) -> Self {
        let specs = [(feature_channels, 1), (channels, 1), (channels, 2), (channels, 1)];
        let convs = specs
            .iter()
            .enumerate()
            .map(|(i, &(cin, stride))| ConvBnRelu::new(&(path / format!("conv{}", i + 1)), cin, channels, 3, stride))
            .collect();
        let side = (feature_size + 1) / 2;
        Self { convs, head: dense(path / "dense", channels * side * side, EMBEDDING) }
    }

    pub fn forward_t(&self, heatmaps: &Tensor, features: &Tensor, train: bool) -> Tensor {
        let size = features.size();
        let mut h = features * summed_mask(heatmaps, size[2], size[3], MASK_THRESHOLD);
        for conv in &self.convs {
            h = conv.forward_t(&h, train);
        }
        h.flatten(1, -1).apply(&self.head).relu()
    }
}

/// Two linear layers, each followed by batch norm and ReLU (Sonnet's MLP as the reference builds it).
#[derive(Debug)]
struct Mlp {
    layers: Vec<(nn::Linear, nn::BatchNorm)>,
}

impl Mlp {
    fn new(path: &nn::Path, inputs: i64, width: i64) -> Self {
        let layers = (0..2)
            .map(|i| {
                let cin = if i == 0 { inputs } else { width };
                (dense(path / format!("linear{i}"), cin, width), batch_norm1d(path / format!("bn{i}"), width))
            })
            .collect();
        Self { layers }
    }

    /// Applies to the last dimension of `x` (any leading shape).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let shape = x.size();
        let mut h = x.reshape([-1, shape[shape.len() - 1]]);
        for (linear, bn) in &self.layers {
            h = bn.forward_t(&h.apply(linear), train).relu();
        }
        let mut out_shape = shape[..shape.len() - 1].to_vec();
        out_shape.push(h.size()[1]);
        h.reshape(out_shape)
    }
}

/// "PKey-GNN" (spec 7.2): nodes = keypoints, complete graph with self-edges, encode-process-decode.
#[derive(Debug)]
pub struct KeypointGnnEncoder {
    position: (nn::Linear, nn::BatchNorm, nn::Linear),
    encode_edge: Mlp,
    encode_node: Mlp,
    core_edge: Mlp,
    core_node: Mlp,
    decode_edge: Mlp,
    decode_node: Mlp,
    readout: Vec<(nn::Linear, nn::BatchNorm)>,
    steps: usize,
    num_keypoints: i64,
}

/// Edge features are 32 wide and start at zero; nodes are 32 wide after encoding.
const LATENT: i64 = 32;
const DECODED: i64 = 64;

impl KeypointGnnEncoder {
    pub fn new(path: &nn::Path, feature_channels: i64, num_keypoints: i64, message_passing_steps: usize) -> Self {
        let node_in = feature_channels + LATENT;
        Self {
            position: (dense(path / "pos1", 2, 64), batch_norm1d(path / "pos_bn", 64), dense(path / "pos2", 64, LATENT)),
            encode_edge: Mlp::new(&(path / "encode_edge"), LATENT, LATENT),
            encode_node: Mlp::new(&(path / "encode_node"), node_in, LATENT),
            core_edge: Mlp::new(&(path / "core_edge"), 3 * LATENT, LATENT),
            core_node: Mlp::new(&(path / "core_node"), 2 * LATENT, LATENT),
            decode_edge: Mlp::new(&(path / "decode_edge"), LATENT, DECODED),
            decode_node: Mlp::new(&(path / "decode_node"), LATENT, DECODED),
            readout: vec![
                (dense(path / "readout1", num_keypoints * DECODED, EMBEDDING), batch_norm1d(path / "readout_bn1", EMBEDDING)),
                (dense(path / "readout2", EMBEDDING, EMBEDDING), batch_norm1d(path / "readout_bn2", EMBEDDING)),
            ],
            steps: message_passing_steps.max(1),
            num_keypoints,
        }
    }

    /// `centres` B x K x 2, `heatmaps` B x K x h x w, `features` B x D x H x W -> B x 128.
    pub fn forward_t(&self, centres: &Tensor, heatmaps: &Tensor, features: &Tensor, train: bool) -> Tensor {
        let size = features.size();
        let (batch, k) = (size[0], self.num_keypoints);
        let masks = keypoint_masks(heatmaps, size[2], size[3], MASK_THRESHOLD);
        let pooled = masked_means(features, &masks); // B x K x D
        let (p1, pbn, p2) = &self.position;
        let position = pbn.forward_t(&centres.reshape([-1, 2]).apply(p1), train).relu().apply(p2).reshape([batch, k, LATENT]);
        let nodes = self.encode_node.forward_t(&Tensor::cat(&[pooled, position], -1), train); // B x K x 32
        let edges0 = Tensor::zeros([batch, k, k, LATENT], (Kind::Float, features.device())); // [b, receiver, sender]
        let edges = self.encode_edge.forward_t(&edges0, train);
        // The reference re-applies the core to the same encoded graph for every step (no chaining).
        let (mut core_nodes, mut core_edges) = (nodes.shallow_clone(), edges.shallow_clone());
        for _ in 0..self.steps {
            let receivers = nodes.unsqueeze(2).expand([batch, k, k, LATENT], false);
            let senders = nodes.unsqueeze(1).expand([batch, k, k, LATENT], false);
            core_edges = self.core_edge.forward_t(&Tensor::cat(&[&edges, &receivers, &senders], -1), train);
            let incoming = core_edges.sum_dim_intlist(&[2][..], false, Kind::Float); // sum over senders
            core_nodes = self.core_node.forward_t(&Tensor::cat(&[&incoming, &nodes], -1), train);
        }
        let _decoded_edges = self.decode_edge.forward_t(&core_edges, train);
        let decoded = self.decode_node.forward_t(&core_nodes, train); // B x K x 64
        let mut h = decoded.reshape([batch, k * DECODED]);
        for (linear, bn) in &self.readout {
            h = bn.forward_t(&h.apply(linear), train).relu();
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn masks_threshold_the_heatmaps_at_the_feature_resolution() {
        // 1 keypoint on a 2x2 heatmap, features 4x4: nearest resize copies each value into 2x2 blocks.
        let heat = Tensor::from_slice(&[0.1f32, 0.3, 0.2, 0.0]).view([1, 1, 2, 2]);
        let mask = summed_mask(&heat, 4, 4, 0.2);
        let expected = [0.0f32, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        assert_eq!(Vec::<f32>::try_from(mask.flatten(0, -1)).unwrap(), expected);
    }

    #[test]
    fn masked_means_average_only_under_the_mask() {
        // features D=1: [[1, 2], [3, 4]]; mask of keypoint 0 covers (0,1) and (1,1): mean (2+4)/2 = 3;
        // keypoint 1 has an empty mask -> 0.
        let features = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 1, 2, 2]);
        let masks = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]).view([1, 2, 2, 2]);
        assert_eq!(Vec::<f32>::try_from(masked_means(&features, &masks).flatten(0, -1)).unwrap(), vec![3.0, 0.0]);
    }

    #[test]
    fn both_encoders_give_128_and_train_every_parameter() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cnn = KeypointCnnEncoder::new(&(vs.root() / "cnn"), 64, 42, 32);
        let gnn = KeypointGnnEncoder::new(&(vs.root() / "gnn"), 64, 7, 1);
        let centres = Tensor::rand([3, 7, 2], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let heatmaps = permakey::keypoints::gaussian_maps(&centres, 42, 42, 0.15);
        let features = Tensor::rand([3, 64, 42, 42], (Kind::Float, Device::Cpu));
        let a = cnn.forward_t(&heatmaps, &features, true);
        let b = gnn.forward_t(&centres, &heatmaps, &features, true);
        assert_eq!((a.size(), b.size()), (vec![3, 128], vec![3, 128]));
        (a.sum(Kind::Float) + b.sum(Kind::Float)).backward();
        for (name, var) in vs.variables() {
            if var.requires_grad() && !name.contains("decode_edge") {
                assert!(var.grad().defined(), "{name} gets no gradient");
            }
        }
    }
}
