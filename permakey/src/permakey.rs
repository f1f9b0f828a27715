//! The PermaKey model: the three modules trained jointly from step 0 (spec section 5).
//!
//! One forward pass per batch gives three losses with disjoint gradient scopes:
//! VAE (encoder + decoder) <- NLL + KL; LSP MLPs <- LSP loss (features detached);
//! PointNet <- PointNet loss (error maps detached). Because the scopes are disjoint, the sum of the
//! three losses backpropagates exactly the gradients of the three separate `apply_gradients` calls
//! of the reference, and one optimiser step updates all modules (see [`crate::optim`] for the
//! learning-rate schedule decision).

use tch::{nn, Tensor};

use crate::{
    config::PermaKeyConfig,
    keypoints::gaussian_maps,
    lsp::Lsp,
    model::{KeypointModel, KeypointOutput},
    pointnet::{pointnet_loss, PointNet},
    vae::Vae,
};

/// The model's parts (variables live in the caller's `VarStore` under `vae/`, `lsp/`, `pnet/`).
#[derive(Debug)]
pub struct PermaKey {
    pub config: PermaKeyConfig,
    pub vae: Vae,
    pub lsp: Lsp,
    pub pnet: PointNet,
    device: tch::Device,
}

/// Scalar losses of one batch (tensors, for backprop) plus what a preview needs.
#[derive(Debug)]
pub struct PermaKeyLosses {
    pub nll: Tensor,
    pub kl: Tensor,
    pub lsp: Tensor,
    pub pnet: Tensor,
    /// nll + kl + lsp + pnet: backpropagating it trains each module on its own loss only.
    pub total: Tensor,
    /// `B x L x S x S` normalised error maps.
    pub error_maps: Tensor,
    /// `B x K x 2` keypoints.
    pub centres: Tensor,
}

/// Everything computed for a batch in inference mode, for visualisation.
#[derive(Debug)]
pub struct PermaKeyAnalysis {
    pub error_maps: Tensor,
    /// Sum over keypoints of the training-width Gaussians, resized to the image (`B x 1 x S x S`).
    pub reconstructed_error_map: Tensor,
    pub centres: Tensor,
}

impl PermaKey {
    pub fn new(path: &nn::Path, config: &PermaKeyConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            vae: Vae::new(&(path / "vae"), config),
            lsp: Lsp::new(&(path / "lsp"), config),
            pnet: PointNet::new(&(path / "pnet"), config),
            device: path.device(),
        })
    }

    /// The training forward pass on frames `B x 3 x S x S` in `[0, 1]`.
    pub fn losses(&self, frames: &Tensor, train: bool) -> PermaKeyLosses {
        let (encoded, vae) = self.vae.forward_losses(frames, train);
        let lsp = self.lsp.forward_t(&encoded.features, train);
        let pnet_out = self.pnet.forward_t(&lsp.error_maps, train);
        let grid = (pnet_out.maps.size()[2], pnet_out.maps.size()[3]);
        let pnet = pointnet_loss(&pnet_out.centres, grid, self.config.gauss_std, &lsp.error_maps);
        let total = &vae.nll + &vae.kl + &lsp.loss + &pnet;
        PermaKeyLosses { nll: vae.nll, kl: vae.kl, lsp: lsp.loss, pnet, total, error_maps: lsp.error_maps, centres: pnet_out.centres }
    }

    /// Error maps, their keypoint reconstruction and keypoints, in inference mode.
    pub fn analyse(&self, frames: &Tensor) -> PermaKeyAnalysis {
        tch::no_grad(|| {
            let encoded = self.vae.encoder.forward_t(frames, false);
            let lsp = self.lsp.forward_t(&encoded.features, false);
            let out = self.pnet.forward_t(&lsp.error_maps, false);
            let (h, w) = (out.maps.size()[2], out.maps.size()[3]);
            let summed = gaussian_maps(&out.centres, h, w, self.config.gauss_std).sum_dim_intlist(&[1][..], true, tch::Kind::Float);
            let size = self.config.image_size;
            PermaKeyAnalysis {
                reconstructed_error_map: crate::layers::resize_nearest(&summed, size, size),
                error_maps: lsp.error_maps,
                centres: out.centres,
            }
        })
    }
}

impl KeypointModel for PermaKey {
    fn num_keypoints(&self) -> i64 {
        self.config.num_keypoints
    }

    fn image_size(&self) -> i64 {
        self.config.image_size
    }

    /// Keypoints, agent-width heatmaps on PointNet's grid and the features of encoder layer
    /// `lsp_layers[-1]` (h2 by default: `B x 64 x 42 x 42`).
    fn keypoints(&self, frames: &Tensor) -> KeypointOutput {
        tch::no_grad(|| {
            let encoded = self.vae.encoder.forward_t(frames, false);
            let lsp = self.lsp.forward_t(&encoded.features, false);
            let out = self.pnet.forward_t(&lsp.error_maps, false);
            let (h, w) = (out.maps.size()[2], out.maps.size()[3]);
            let heatmaps = gaussian_maps(&out.centres, h, w, self.config.agent_gauss_std);
            let layer = *self.config.lsp_layers.last().expect("validated non-empty");
            KeypointOutput { centres: out.centres, heatmaps, features: encoded.features[layer].shallow_clone() }
        })
    }

    fn features(&self, frames: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let layer = *self.config.lsp_layers.last().expect("validated non-empty");
            self.vae.encoder.features_through(frames, layer, false)
        })
    }

    fn gauss_std(&self) -> f64 {
        self.config.agent_gauss_std
    }

    fn device(&self) -> tch::Device {
        self.device
    }
}

#[cfg(test)]
mod tests {
    use tch::{nn::OptimizerConfig, Device, Kind};

    use super::*;

    fn small() -> PermaKeyConfig {
        PermaKeyConfig {
            encoder_filters: [8, 16, 16, 16],
            decoder_filters: [16, 8, 8, 8, 8],
            lsp_hidden: [64, 32, 32],
            pnet_filters: [8, 16, 16, 16],
            ..PermaKeyConfig::default()
        }
    }

    fn zero_grads(vs: &nn::VarStore) {
        for var in vs.trainable_variables() {
            let mut grad = var.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    #[test]
    fn keypoint_output_has_the_spec_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = PermaKey::new(&vs.root(), &PermaKeyConfig::default()).unwrap();
        let out = model.keypoints(&Tensor::rand([2, 3, 84, 84], (Kind::Float, Device::Cpu)));
        assert_eq!(out.centres.size(), [2, 7, 2]);
        assert_eq!(out.heatmaps.size(), [2, 7, 42, 42]);
        assert_eq!(out.features.size(), [2, 64, 42, 42]);
        let head = PermaKey::new(&(vs.root() / "head"), &PermaKeyConfig::reference_head()).unwrap();
        assert_eq!(head.keypoints(&Tensor::rand([1, 3, 84, 84], (Kind::Float, Device::Cpu))).heatmaps.size(), [1, 7, 21, 21]);
    }

    #[test]
    fn features_are_the_keypoint_passes_features_without_the_upper_layers() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        // Patch sizes divide the layers' sides: 84 and 42 by 2, 21 by 3.
        for (lsp_layers, patch_sizes) in [(vec![0, 1], vec![2, 2]), (vec![0, 2], vec![2, 3]), (vec![3], vec![3])] {
            let config = PermaKeyConfig { lsp_layers, patch_sizes, ..small() };
            let model = PermaKey::new(&(vs.root() / format!("m{:?}", config.lsp_layers)), &config).unwrap();
            let frames = Tensor::rand([3, 3, 84, 84], (Kind::Float, Device::Cpu));
            let full = model.keypoints(&frames).features;
            let cheap = model.features(&frames);
            assert_eq!(cheap.size(), full.size(), "{:?}", config.lsp_layers);
            assert!(cheap.equal(&full), "{:?}: features differ from the full pass", config.lsp_layers);
        }
    }

    #[test]
    fn every_parameter_gets_a_gradient_from_its_own_loss_only() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = PermaKey::new(&vs.root(), &small()).unwrap();
        let frames = Tensor::rand([4, 3, 84, 84], (Kind::Float, Device::Cpu));
        let losses = model.losses(&frames, true);
        losses.total.backward();
        for (name, var) in vs.variables() {
            if !var.requires_grad() {
                continue;
            }
            let grad = var.grad();
            assert!(grad.defined(), "{name} has no gradient");
            assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} has a zero gradient");
        }
        // scopes: the PointNet loss alone reaches only PointNet variables
        zero_grads(&vs);
        let losses = model.losses(&frames, true);
        losses.pnet.backward();
        for (name, var) in vs.variables() {
            if !var.requires_grad() {
                continue;
            }
            let touched = var.grad().defined() && var.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0;
            assert_eq!(touched, name.starts_with("pnet"), "{name}");
        }
        zero_grads(&vs);
        let losses = model.losses(&frames, true);
        losses.lsp.backward();
        for (name, var) in vs.variables() {
            if !var.requires_grad() {
                continue;
            }
            let touched = var.grad().defined() && var.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0;
            assert_eq!(touched, name.starts_with("lsp"), "{name}");
        }
    }

    #[test]
    fn a_few_adam_steps_lower_every_loss() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = PermaKey::new(&vs.root(), &small()).unwrap();
        let frames = Tensor::rand([4, 3, 84, 84], (Kind::Float, Device::Cpu)).gt(0.9).to_kind(Kind::Float);
        let mut opt = nn::Adam::default().build(&vs, 2e-3).unwrap();
        let first = model.losses(&frames, true);
        let (nll0, lsp0) = (first.nll.double_value(&[]), first.lsp.double_value(&[]));
        for _ in 0..15 {
            let losses = model.losses(&frames, true);
            opt.backward_step(&losses.total);
        }
        let last = model.losses(&frames, true);
        assert!(last.nll.double_value(&[]) < nll0, "nll {nll0} -> {}", last.nll.double_value(&[]));
        assert!(last.lsp.double_value(&[]) < lsp0, "lsp {lsp0} -> {}", last.lsp.double_value(&[]));
    }
}
