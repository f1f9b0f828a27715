//! Module 3: the PointNet keypoint bottleneck (spec section 4).
//!
//! Error maps `E` (`B x L x S x S`) -> conv 32 k4 s1 -> conv 64 k3 s(1|2) -> conv 64 k3 s2 ->
//! conv 128 k3 s1 (BN + ReLU) -> conv K k1 (linear) = `F`; keypoints = marginal soft-argmax of `F`;
//! heatmaps = Gaussians on `F`'s grid. Loss: the sum over keypoints of the heatmaps, resized
//! (nearest) to `S x S`, compared by MSE with every channel of `E`.

use tch::{nn, Kind, Tensor};

use crate::{
    config::PermaKeyConfig,
    keypoints::{gaussian_maps, soft_argmax},
    layers::{resize_nearest, ConvBnRelu, SameConv2d},
};

#[derive(Debug)]
pub struct PointNet {
    convs: Vec<ConvBnRelu>,
    head: SameConv2d,
}

/// PointNet results for a batch.
#[derive(Debug)]
pub struct PointNetOutput {
    /// `B x K x 2`, `(y, x)` in `[-1, 1]`.
    pub centres: Tensor,
    /// The raw keypoint maps `F` (`B x K x h x w`).
    pub maps: Tensor,
}

impl PointNet {
    pub fn new(path: &nn::Path, config: &PermaKeyConfig) -> Self {
        let f = config.pnet_filters;
        let channels = config.lsp_layers.len() as i64;
        let specs = [(channels, f[0], 4, 1), (f[0], f[1], 3, config.pnet_conv2_stride), (f[1], f[2], 3, 2), (f[2], f[3], 3, 1)];
        let convs = specs
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, k, s))| ConvBnRelu::new(&(path / format!("conv{}", i + 1)), cin, cout, k, s))
            .collect();
        Self { convs, head: SameConv2d::new(path / "conv5", f[3], config.num_keypoints, 1, 1) }
    }

    pub fn forward_t(&self, error_maps: &Tensor, train: bool) -> PointNetOutput {
        let mut h = error_maps.shallow_clone();
        for conv in &self.convs {
            h = conv.forward_t(&h, train);
        }
        let maps = self.head.forward(&h);
        PointNetOutput { centres: soft_argmax(&maps), maps }
    }
}

/// `mean over B, S, S, L of (resize(sum_k G_k) - E_l)^2` with Gaussians of width `sigma` on the
/// keypoint grid `h x w`.
pub fn pointnet_loss(centres: &Tensor, grid: (i64, i64), sigma: f64, error_maps: &Tensor) -> Tensor {
    let size = error_maps.size();
    let summed = gaussian_maps(centres, grid.0, grid.1, sigma).sum_dim_intlist(&[1][..], true, Kind::Float);
    let reconstruction = resize_nearest(&summed, size[2], size[3]);
    (reconstruction - error_maps).square().mean(Kind::Float)
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn loss_is_zero_when_the_gaussians_are_the_error_map() {
        let centres = Tensor::from_slice(&[0.0f32, 0.0]).view([1, 1, 2]);
        let target = gaussian_maps(&centres, 21, 21, 0.2);
        let loss = pointnet_loss(&centres, (21, 21), 0.2, &target);
        assert!(loss.double_value(&[]) < 1e-12);
        // a map of zeros: loss = mean of G^2 over the grid
        let zeros = target.zeros_like();
        let expected = target.square().mean(Kind::Float).double_value(&[]);
        assert!((pointnet_loss(&centres, (21, 21), 0.2, &zeros).double_value(&[]) - expected).abs() < 1e-9);
    }

    #[test]
    fn shapes_follow_the_spec_for_both_variants() {
        for (stride, side) in [(1, 42), (2, 21)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let config = PermaKeyConfig { pnet_conv2_stride: stride, ..PermaKeyConfig::default() };
            let pnet = PointNet::new(&vs.root(), &config);
            let out = pnet.forward_t(&Tensor::rand([2, 2, 84, 84], (Kind::Float, Device::Cpu)), false);
            assert_eq!(out.maps.size(), [2, 7, side, side]);
            assert_eq!(out.centres.size(), [2, 7, 2]);
        }
    }
}
