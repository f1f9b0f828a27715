//! The Transporter baseline (Kulkarni et al., "Unsupervised Learning of Object Keypoints for
//! Perception and Control", NeurIPS 2019, arXiv 1906.11883) as the PermaKey reference re-implements
//! it (spec section 6: `vision_module.py` `TransporterEncoder`, `TransporterKeypointer`,
//! `TransporterDecoder`; `ul_loss.transporter_loss`).
//!
//! Architecture (NCHW, every conv TensorFlow "same" via [`SameConv2d`], Glorot-uniform kernels,
//! zero biases, Keras batch norm):
//! - feature encoder Phi and the keypointer's own encoder, same architecture, separate weights:
//!   conv 16 k3 s1 -> conv 16 k3 s1 -> conv 32 k3 s2 -> conv 32 k3 s1, each BN + ReLU
//!   (84x84x3 -> 42x42x32);
//! - keypointer: its encoder -> conv 1x1 to K maps (linear, no BN) -> marginal soft-argmax
//!   ([`soft_argmax`]) -> centres `B x K x 2` `(y, x)` in `[-1, 1]` -> Gaussian heatmaps on the
//!   42x42 grid ([`gaussian_maps`], `exp(-d^2 / sigma^2)`);
//! - "RefineNet" decoder: conv 128 k3 -> conv 128 k3 -> bilinear x2 (84) -> conv 64 k3 ->
//!   conv 32 k3, each BN + ReLU -> conv 3 k3 -> BN -> sigmoid.
//!
//! Training loss ([`Transporter::loss`]), source frame `a`, target frame `b`: Phi(a) and the
//! keypoints/heatmaps of `a` are stop-gradient; `f = Phi(a)`, then for `k = 0..K` in order
//! `f = (1 - H_a,k)(1 - H_b,k) f + H_b,k Phi(b)` ([`transport_features`]); the loss is the mean
//! squared error between `b` and `Dec(f)` over batch, channels and pixels.
//!
//! At inference (RL, comparisons) the reference feeds the same frame as `a` and `b` and keeps
//! `b`'s keypoints, heatmaps and Phi features; the transport and the decoder do not influence those
//! outputs, so [`KeypointModel::keypoints`] runs only Phi and the keypointer.
//!
//! Decisions:
//! - **Stop-gradient**: the source pass runs under [`tch::no_grad`] (equivalent to the reference's
//!   `tf.stop_gradient`, and it saves the source pass's autograd graph). Batch norm still runs in
//!   the caller's mode on the source pass, so in training its batch statistics are the source
//!   batch's and its moving averages are updated by it, as the reference's
//!   `encoder(image_a, training=True)` does. Call order is the reference's: Phi(a), keypointer(a),
//!   Phi(b), keypointer(b).
//! - **Bilinear upsampling**: TF 2's `tf.image.resize(..., method="bilinear")` uses half-pixel
//!   centres (`half_pixel_centers=True`; antialiasing is irrelevant when upsampling), which is
//!   PyTorch's `align_corners=False`; an exact x2 resize to `2h x 2w` is used.
//! - **"Same" padding**: reproduced by [`SameConv2d`] (explicit asymmetric zero padding, the extra
//!   row/column at the bottom/right, then a "valid" convolution). The 1x1 keypoint conv has no
//!   padding either way.
//! - **Conv biases**: kept, as in the reference, although a bias directly before a batch norm in
//!   training mode (and the 1x1 keypoint conv's bias, which soft-argmax ignores) gets no gradient.
//! - **L2 regulariser**: the reference declares `l2(0.1)` kernel regularisers but never adds them to
//!   the loss; they are omitted.
//! - **Heatmap sigma**: training renders heatmaps with [`TransporterConfig::gauss_std`] (0.1, from
//!   `transporter_train.py`); the heatmaps handed to the agent through [`KeypointModel`] use
//!   [`TransporterConfig::agent_gauss_std`] (0.15: the RL config rebuilds the keypoint nets with
//!   `gauss_std = 0.15`, spec 7.1 and 10.4). [`Transporter::keypoints_with_sigma`] renders with any
//!   other sigma. Field names follow [`crate::config::PermaKeyConfig`].
//! - The image size must be even, so that the stride-2 encoder and the x2 decoder upsampling give
//!   back the input size (84 -> 42 -> 84).

use serde::{Deserialize, Serialize};
use tch::{nn, nn::ModuleT, Device, Tensor};

use crate::{
    keypoints::{gaussian_maps, soft_argmax},
    layers::{batch_norm2d, ConvBnRelu, SameConv2d},
    model::{KeypointModel, KeypointOutput},
};

/// Everything that shapes a Transporter model. Defaults: the reference's re-implementation
/// (spec section 6) with `colour_input = True`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransporterConfig {
    /// Keypoints K (reference default 7; the RL runs use per-game values, spec 7.4).
    pub num_keypoints: i64,
    /// Square input size in pixels (84); must be even.
    pub image_size: i64,
    /// Input and reconstruction channels: 3 for RGB (`colour_input = True`, default), 1 for grey.
    pub image_channels: i64,
    /// Filters of the encoder convs conv1..conv4 (kernel 3, strides 1, 1, 2, 1), shared by the
    /// feature encoder Phi and the keypointer's encoder: `[16, 16, 32, 32]`. The last one is the
    /// width of Phi's features.
    pub encoder_filters: [i64; 4],
    /// Filters of the decoder's BN + ReLU convs (kernel 3): two before the x2 upsampling, two after:
    /// `[128, 128, 64, 32]`.
    pub decoder_filters: [i64; 4],
    /// Gaussian width of the heatmaps during training (`gauss_std = 0.1` in `transporter_train.py`).
    pub gauss_std: f64,
    /// Gaussian width of the heatmaps handed to the agent by [`KeypointModel::keypoints`]
    /// (the RL config rebuilds the keypoint nets with `gauss_std = 0.15`, spec 7.1).
    pub agent_gauss_std: f64,
}

impl Default for TransporterConfig {
    fn default() -> Self {
        Self {
            num_keypoints: 7,
            image_size: 84,
            image_channels: 3,
            encoder_filters: [16, 16, 32, 32],
            decoder_filters: [128, 128, 64, 32],
            gauss_std: 0.1,
            agent_gauss_std: 0.15,
        }
    }
}

impl TransporterConfig {
    /// Side of the keypoint grid, of the heatmaps and of Phi's features (42 at 84).
    pub fn feature_size(&self) -> i64 {
        (self.image_size + 1) / 2
    }

    /// Checks the combination of fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_keypoints < 1 || self.num_keypoints > 64 {
            return Err(format!("num_keypoints must be in 1..=64, got {}", self.num_keypoints));
        }
        if self.image_size < 4 || self.image_size % 2 != 0 {
            return Err(format!("image_size must be even and at least 4, got {}", self.image_size));
        }
        if !matches!(self.image_channels, 1 | 3) {
            return Err(format!("image_channels must be 1 or 3, got {}", self.image_channels));
        }
        if self.encoder_filters.iter().chain(&self.decoder_filters).any(|&f| f < 1) {
            return Err(format!(
                "encoder_filters ({:?}) and decoder_filters ({:?}) must be positive",
                self.encoder_filters, self.decoder_filters
            ));
        }
        if !(self.gauss_std > 0.0 && self.agent_gauss_std > 0.0) {
            return Err("gauss_std and agent_gauss_std must be positive".into());
        }
        Ok(())
    }
}

/// `TransporterEncoder`: four 3x3 conv + BN + ReLU layers with strides 1, 1, 2, 1.
#[derive(Debug)]
struct TransporterEncoder {
    convs: Vec<ConvBnRelu>,
}

impl TransporterEncoder {
    const STRIDES: [i64; 4] = [1, 1, 2, 1];

    fn new(path: &nn::Path, in_channels: i64, filters: [i64; 4]) -> Self {
        let mut channels = in_channels;
        let convs = filters
            .iter()
            .zip(Self::STRIDES)
            .enumerate()
            .map(|(i, (&out_channels, stride))| {
                let conv = ConvBnRelu::new(&(path / format!("conv{}", i + 1)), channels, out_channels, 3, stride);
                channels = out_channels;
                conv
            })
            .collect();
        Self { convs }
    }

    fn forward_t(&self, frames: &Tensor, train: bool) -> Tensor {
        self.convs.iter().fold(frames.shallow_clone(), |h, conv| conv.forward_t(&h, train))
    }
}

/// `TransporterKeypointer`: its own encoder, then a linear 1x1 conv to K keypoint maps.
#[derive(Debug)]
struct TransporterKeypointer {
    encoder: TransporterEncoder,
    keypoint_conv: SameConv2d,
}

impl TransporterKeypointer {
    fn new(path: &nn::Path, config: &TransporterConfig) -> Self {
        let encoder = TransporterEncoder::new(&(path / "encoder"), config.image_channels, config.encoder_filters);
        let keypoint_conv = SameConv2d::new(path / "keypoint_conv", config.encoder_filters[3], config.num_keypoints, 1, 1);
        Self { encoder, keypoint_conv }
    }

    /// Keypoint centres `B x K x 2` (`(y, x)` in `[-1, 1]`) of frames `B x C x H x W`.
    fn centres(&self, frames: &Tensor, train: bool) -> Tensor {
        soft_argmax(&self.keypoint_conv.forward(&self.encoder.forward_t(frames, train)))
    }
}

/// Bilinear x2 upsampling with TF 2 `tf.image.resize` semantics (half-pixel centres, i.e.
/// `align_corners = False`).
fn upsample_bilinear_x2(x: &Tensor) -> Tensor {
    let size = x.size();
    x.upsample_bilinear2d([2 * size[2], 2 * size[3]], false, None, None)
}

/// `TransporterDecoder` ("RefineNet"): two BN + ReLU convs, bilinear x2, two BN + ReLU convs,
/// then a conv to the image channels -> BN -> sigmoid.
#[derive(Debug)]
struct RefineNetDecoder {
    before_upsampling: [ConvBnRelu; 2],
    after_upsampling: [ConvBnRelu; 2],
    output_conv: SameConv2d,
    output_bn: nn::BatchNorm,
}

impl RefineNetDecoder {
    fn new(path: &nn::Path, config: &TransporterConfig) -> Self {
        let [f1, f2, f3, f4] = config.decoder_filters;
        let conv = |index: usize, cin: i64, cout: i64| ConvBnRelu::new(&(path / format!("conv{index}")), cin, cout, 3, 1);
        Self {
            before_upsampling: [conv(1, config.encoder_filters[3], f1), conv(2, f1, f2)],
            after_upsampling: [conv(3, f2, f3), conv(4, f3, f4)],
            output_conv: SameConv2d::new(path / "conv5" / "conv", f4, config.image_channels, 3, 1),
            output_bn: batch_norm2d(path / "conv5" / "bn", config.image_channels),
        }
    }

    fn forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        let [c1, c2] = &self.before_upsampling;
        let [c3, c4] = &self.after_upsampling;
        let h = c2.forward_t(&c1.forward_t(features, train), train);
        let h = upsample_bilinear_x2(&h);
        let h = c4.forward_t(&c3.forward_t(&h, train), train);
        self.output_bn.forward_t(&self.output_conv.forward(&h), train).sigmoid()
    }
}

/// Transports features keypoint by keypoint (the Transporter's core operation): starting from
/// `f = source_features`, for `k = 0..K` in order,
/// `f = (1 - source_heatmaps[k]) (1 - target_heatmaps[k]) f + target_heatmaps[k] target_features`.
///
/// Features are `B x C x h x w`, heatmaps `B x K x h x w` (each heatmap broadcast over channels).
pub fn transport_features(
    source_features: &Tensor,
    source_heatmaps: &Tensor,
    target_features: &Tensor,
    target_heatmaps: &Tensor,
) -> Tensor {
    debug_assert_eq!(source_features.size(), target_features.size(), "source and target features differ in shape");
    debug_assert_eq!(source_heatmaps.size(), target_heatmaps.size(), "source and target heatmaps differ in shape");
    let num_keypoints = source_heatmaps.size()[1];
    (0..num_keypoints).fold(source_features.shallow_clone(), |transported, k| {
        let source_mask = source_heatmaps.narrow(1, k, 1);
        let target_mask = target_heatmaps.narrow(1, k, 1);
        (1.0 - source_mask) * (1.0 - &target_mask) * transported + target_mask * target_features
    })
}

/// What one source/target pass computes: the target frame's keypoint outputs and the
/// reconstruction of the target from transported features.
#[derive(Debug)]
pub struct TransporterReconstruction {
    /// Target keypoint centres `B x K x 2`, `(y, x)` in `[-1, 1]`.
    pub target_centres: Tensor,
    /// Target heatmaps `B x K x h x w`, rendered with the training sigma.
    pub target_heatmaps: Tensor,
    /// Phi(target) `B x C x h x w`.
    pub target_features: Tensor,
    /// Dec(transported features) `B x channels x H x W`, in `[0, 1]`.
    pub reconstruction: Tensor,
}

/// The Transporter keypoint model: feature encoder Phi, keypointer and RefineNet decoder.
#[derive(Debug)]
pub struct Transporter {
    config: TransporterConfig,
    feature_encoder: TransporterEncoder,
    keypointer: TransporterKeypointer,
    decoder: RefineNetDecoder,
    device: Device,
}

impl Transporter {
    /// Builds the model's variables under `path` (`feature_encoder`, `keypointer`, `decoder`).
    ///
    /// # Panics
    /// If `config` fails [`TransporterConfig::validate`].
    pub fn new(path: &nn::Path, config: &TransporterConfig) -> Self {
        if let Err(message) = config.validate() {
            panic!("invalid transporter config: {message}");
        }
        Self {
            config: config.clone(),
            feature_encoder: TransporterEncoder::new(&(path / "feature_encoder"), config.image_channels, config.encoder_filters),
            keypointer: TransporterKeypointer::new(&(path / "keypointer"), config),
            decoder: RefineNetDecoder::new(&(path / "decoder"), config),
            device: path.device(),
        }
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &TransporterConfig {
        &self.config
    }

    /// Phi's features `B x C x h x w` of frames `B x channels x H x W` in `[0, 1]`.
    pub fn features(&self, frames: &Tensor, train: bool) -> Tensor {
        self.feature_encoder.forward_t(frames, train)
    }

    /// Keypoint centres `B x K x 2`, `(y, x)` in `[-1, 1]`, of frames `B x channels x H x W`.
    pub fn keypoint_centres(&self, frames: &Tensor, train: bool) -> Tensor {
        self.keypointer.centres(frames, train)
    }

    /// Gaussian heatmaps `B x K x h x w` on the keypoint grid (42x42 at 84) around `centres`.
    pub fn render_heatmaps(&self, centres: &Tensor, sigma: f64) -> Tensor {
        let size = self.config.feature_size();
        gaussian_maps(centres, size, size, sigma)
    }

    /// Reconstructs `target` from `source` by transporting features around both frames'
    /// keypoints; the source pass is stop-gradient. Heatmaps use the training sigma.
    pub fn reconstruct(&self, source: &Tensor, target: &Tensor, train: bool) -> TransporterReconstruction {
        debug_assert_eq!(source.size(), target.size(), "source and target frames differ in shape");
        let sigma = self.config.gauss_std;
        let (source_features, source_heatmaps) = tch::no_grad(|| {
            let features = self.features(source, train);
            let heatmaps = self.render_heatmaps(&self.keypoint_centres(source, train), sigma);
            (features, heatmaps)
        });
        let target_features = self.features(target, train);
        let target_centres = self.keypoint_centres(target, train);
        let target_heatmaps = self.render_heatmaps(&target_centres, sigma);
        let transported = transport_features(&source_features, &source_heatmaps, &target_features, &target_heatmaps);
        let reconstruction = self.decoder.forward_t(&transported, train);
        TransporterReconstruction { target_centres, target_heatmaps, target_features, reconstruction }
    }

    /// The Transporter loss: mean squared error (over batch, channels and pixels) between `target`
    /// and its reconstruction from `source` (frames `B x channels x H x W` in `[0, 1]`). A scalar.
    pub fn loss(&self, source: &Tensor, target: &Tensor, train: bool) -> Tensor {
        let reconstructed = self.reconstruct(source, target, train);
        (&reconstructed.reconstruction - target).square().mean(reconstructed.reconstruction.kind())
    }

    /// [`KeypointModel::keypoints`] with heatmaps rendered at `sigma` instead of
    /// [`TransporterConfig::agent_gauss_std`] (e.g. the training sigma for visualisation).
    /// Inference mode, no gradients.
    pub fn keypoints_with_sigma(&self, frames: &Tensor, sigma: f64) -> KeypointOutput {
        tch::no_grad(|| {
            let features = self.features(frames, false);
            let centres = self.keypoint_centres(frames, false);
            let heatmaps = self.render_heatmaps(&centres, sigma);
            KeypointOutput { centres, heatmaps, features }
        })
    }
}

impl KeypointModel for Transporter {
    fn num_keypoints(&self) -> i64 {
        self.config.num_keypoints
    }

    fn image_size(&self) -> i64 {
        self.config.image_size
    }

    /// Keypoints of the target frame when each frame is fed as both source and target:
    /// centres `B x K x 2`, heatmaps `B x K x 42 x 42` at `agent_gauss_std`, Phi `B x 32 x 42 x 42`.
    fn keypoints(&self, frames: &Tensor) -> KeypointOutput {
        self.keypoints_with_sigma(frames, self.config.agent_gauss_std)
    }

    fn features(&self, frames: &Tensor) -> Tensor {
        tch::no_grad(|| Transporter::features(self, frames, false))
    }

    fn gauss_std(&self) -> f64 {
        self.config.agent_gauss_std
    }

    fn device(&self) -> Device {
        self.device
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tch::{nn::OptimizerConfig, Kind};

    use super::*;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    fn small_config(image_size: i64) -> TransporterConfig {
        TransporterConfig {
            num_keypoints: 3,
            image_size,
            encoder_filters: [4, 4, 8, 8],
            decoder_filters: [8, 8, 8, 4],
            ..TransporterConfig::default()
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap()
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().double_value(&[])
    }

    /// Trainable variables by name, with a deep copy of their current gradients.
    fn gradients(vs: &nn::VarStore) -> BTreeMap<String, Tensor> {
        vs.variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .map(|(name, v)| {
                let grad = v.grad();
                assert!(grad.defined(), "{name} has no gradient");
                (name, grad.copy())
            })
            .collect()
    }

    /// Frames `n x 3 x size x size`: a bright square of side `side` at `positions` on grey.
    fn squares(size: i64, side: i64, positions: &[(i64, i64)]) -> Tensor {
        let frames = Tensor::full([positions.len() as i64, 3, size, size], 0.2, CPU);
        for (i, &(y, x)) in positions.iter().enumerate() {
            let _ = frames.get(i as i64).narrow(1, y, side).narrow(2, x, side).fill_(0.9);
        }
        frames
    }

    #[test]
    fn default_config_is_the_reference_and_round_trips() {
        let config = TransporterConfig::default();
        assert_eq!(config.num_keypoints, 7);
        assert_eq!(config.feature_size(), 42);
        assert_eq!(config.encoder_filters, [16, 16, 32, 32]);
        assert_eq!(config.decoder_filters, [128, 128, 64, 32]);
        assert_eq!((config.gauss_std, config.agent_gauss_std), (0.1, 0.15));
        config.validate().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<TransporterConfig>(&json).unwrap(), config);
        let partial: TransporterConfig = serde_json::from_str(r#"{"num_keypoints": 10}"#).unwrap();
        assert_eq!(partial, TransporterConfig { num_keypoints: 10, ..TransporterConfig::default() });
        assert!(serde_json::from_str::<TransporterConfig>(r#"{"num_keypoint": 10}"#).is_err());
        assert!(TransporterConfig { image_size: 85, ..config.clone() }.validate().is_err());
        assert!(TransporterConfig { num_keypoints: 0, ..config.clone() }.validate().is_err());
        assert!(TransporterConfig { agent_gauss_std: 0.0, ..config }.validate().is_err());
    }

    #[test]
    fn shapes_follow_the_spec_at_full_size() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Transporter::new(&vs.root(), &TransporterConfig::default());
        let frames = Tensor::rand([2, 3, 84, 84], CPU);
        let out = model.keypoints(&frames);
        assert_eq!(out.centres.size(), [2, 7, 2]);
        assert_eq!(out.heatmaps.size(), [2, 7, 42, 42]);
        assert_eq!(out.features.size(), [2, 32, 42, 42]);
        assert_eq!(model.num_keypoints(), 7);
        assert_eq!(KeypointModel::device(&model), Device::Cpu);
        let reconstructed = model.reconstruct(&frames, &frames.flip([3]), true);
        assert_eq!(reconstructed.reconstruction.size(), [2, 3, 84, 84]);
        assert_eq!(reconstructed.target_centres.size(), [2, 7, 2]);
        assert_eq!(reconstructed.target_heatmaps.size(), [2, 7, 42, 42]);
        assert_eq!(reconstructed.target_features.size(), [2, 32, 42, 42]);
        let r = values(&reconstructed.reconstruction);
        assert!(r.iter().all(|v| (0.0..=1.0).contains(v)), "sigmoid output leaves [0, 1]");
    }

    #[test]
    fn agent_heatmaps_use_the_agent_sigma() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Transporter::new(&vs.root(), &small_config(16));
        let frames = Tensor::rand([2, 3, 16, 16], CPU);
        let out = model.keypoints(&frames);
        let expected = gaussian_maps(&out.centres, 8, 8, 0.15);
        assert!(max_abs(&(&out.heatmaps - expected)) < 1e-6);
        let at_training_sigma = model.keypoints_with_sigma(&frames, 0.1);
        let expected = gaussian_maps(&out.centres, 8, 8, 0.1);
        assert!(max_abs(&(&at_training_sigma.heatmaps - expected)) < 1e-6);
        assert!(!out.centres.requires_grad() && !out.heatmaps.requires_grad() && !out.features.requires_grad());
    }

    #[test]
    fn transport_matches_hand_computed_values() {
        // One pixel, two channels, two keypoints.
        let source_features = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2, 1, 1]);
        let target_features = Tensor::from_slice(&[10.0f32, 20.0]).view([1, 2, 1, 1]);
        let source_heatmaps = Tensor::from_slice(&[0.5f32, 0.0]).view([1, 2, 1, 1]);
        let target_heatmaps = Tensor::from_slice(&[0.25f32, 0.5]).view([1, 2, 1, 1]);
        // k = 0: f = 0.5 * 0.75 * fa + 0.25 * fb = 2.875 fa (fb = 10 fa);
        // k = 1: f = 1 * 0.5 * f + 0.5 * fb = 6.4375 fa.
        let f = transport_features(&source_features, &source_heatmaps, &target_features, &target_heatmaps);
        assert_eq!(f.size(), [1, 2, 1, 1]);
        for (got, expected) in values(&f).into_iter().zip([6.4375f32, 12.875]) {
            assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        }
    }

    #[test]
    fn bilinear_upsampling_uses_half_pixel_centres() {
        // TF 2 `tf.image.resize` bilinear on [0, 1] to width 4 samples at -0.25, 0.25, 0.75, 1.25
        // (clamped): [0, 0.25, 0.75, 1].
        let x = Tensor::from_slice(&[0.0f32, 1.0]).view([1, 1, 1, 2]);
        let up = upsample_bilinear_x2(&x);
        assert_eq!(up.size(), [1, 1, 2, 4]);
        assert_eq!(values(&up), vec![0.0, 0.25, 0.75, 1.0, 0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn loss_is_a_finite_positive_scalar() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Transporter::new(&vs.root(), &small_config(16));
        let source = Tensor::rand([4, 3, 16, 16], CPU);
        let target = Tensor::rand([4, 3, 16, 16], CPU);
        for train in [true, false] {
            let loss = model.loss(&source, &target, train);
            assert_eq!(loss.size(), Vec::<i64>::new());
            let value = loss.double_value(&[]);
            assert!(value.is_finite() && value > 0.0, "loss {value}");
        }
    }

    #[test]
    fn gradients_reach_every_trainable_parameter() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Transporter::new(&vs.root(), &small_config(16));
        let source = Tensor::rand([4, 3, 16, 16], CPU);
        let target = Tensor::rand([4, 3, 16, 16], CPU);
        model.loss(&source, &target, true).backward();
        let grads = gradients(&vs);
        for prefix in ["feature_encoder.", "keypointer.encoder.", "keypointer.keypoint_conv.", "decoder."] {
            assert!(grads.keys().any(|name| name.starts_with(prefix)), "no variables under {prefix}");
        }
        for (name, grad) in &grads {
            // A conv bias feeding a training-mode batch norm is cancelled by the mean subtraction,
            // and soft-argmax is invariant to a per-map constant: those gradients are zero in
            // exact arithmetic (only defined).
            let cancelled = name.ends_with("conv.bias") || name == "keypointer.keypoint_conv.bias";
            if !cancelled {
                assert!(max_abs(grad) > 0.0, "{name} gets a zero gradient");
            }
        }
        // The cancelled biases are indeed (numerically) zero.
        let bias = &grads["feature_encoder.conv1.conv.bias"];
        assert!(max_abs(bias) < 1e-4, "conv bias before batch norm gets {}", max_abs(bias));
    }

    #[test]
    fn the_source_pass_contributes_no_gradient() {
        tch::manual_seed(2);
        let config = small_config(16);
        // Three stores with the same weights: `full` takes the Transporter loss; `target_only`
        // rebuilds it with the source pass from a *separate* copy `source_copy`, so its gradients
        // come from the target pass alone.
        let full = nn::VarStore::new(Device::Cpu);
        let mut target_only = nn::VarStore::new(Device::Cpu);
        let mut source_copy = nn::VarStore::new(Device::Cpu);
        let full_model = Transporter::new(&full.root(), &config);
        let target_model = Transporter::new(&target_only.root(), &config);
        let source_model = Transporter::new(&source_copy.root(), &config);
        target_only.copy(&full).unwrap();
        source_copy.copy(&full).unwrap();
        let source = squares(16, 4, &[(1, 2), (8, 9)]);
        let target = squares(16, 4, &[(9, 3), (2, 10)]);

        let full_loss = full_model.loss(&source, &target, true);
        full_loss.backward();

        // The same loss by hand, without any stop-gradient on the source copy.
        let sigma = config.gauss_std;
        let source_features = source_model.features(&source, true);
        let source_heatmaps = source_model.render_heatmaps(&source_model.keypoint_centres(&source, true), sigma);
        let target_features = target_model.features(&target, true);
        let target_heatmaps = target_model.render_heatmaps(&target_model.keypoint_centres(&target, true), sigma);
        let transported = transport_features(&source_features, &source_heatmaps, &target_features, &target_heatmaps);
        let reconstruction = target_model.decoder.forward_t(&transported, true);
        let manual_loss = (reconstruction - &target).square().mean(Kind::Float);
        manual_loss.backward();
        assert!((full_loss.double_value(&[]) - manual_loss.double_value(&[])).abs() < 1e-7);

        let full_grads = gradients(&full);
        let target_grads = gradients(&target_only);
        for (name, grad) in &full_grads {
            let difference = max_abs(&(grad - &target_grads[name]));
            assert!(difference <= 1e-6 * (1.0 + max_abs(grad)), "{name}: source pass leaks gradient ({difference})");
        }
        // Without the stop-gradient the source pass would carry gradient into Phi and the keypointer.
        let source_variables = source_copy.variables();
        for name in ["feature_encoder.conv1.conv.weight", "keypointer.encoder.conv1.conv.weight"] {
            let grad = source_variables[name].grad();
            assert!(grad.defined() && max_abs(&grad) > 0.0, "{name}: the source pass carries no gradient at all");
        }
    }

    #[test]
    fn adam_steps_reduce_the_loss_on_a_moving_square() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let config = TransporterConfig { num_keypoints: 2, ..small_config(24) };
        let model = Transporter::new(&vs.root(), &config);
        let mut optimizer = nn::Adam::default().build(&vs, 1e-2).unwrap();
        let source_positions = [(2, 2), (14, 3), (5, 15), (16, 16), (9, 9), (1, 12), (12, 1), (7, 17)];
        let target_positions = [(4, 5), (11, 6), (8, 13), (13, 12), (6, 11), (3, 15), (15, 4), (10, 14)];
        let source = squares(24, 6, &source_positions);
        let target = squares(24, 6, &target_positions);
        let mut losses = Vec::new();
        for _ in 0..50 {
            let loss = model.loss(&source, &target, true);
            optimizer.backward_step(&loss);
            losses.push(loss.double_value(&[]));
        }
        let first = losses[0];
        let last = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
        assert!(last < 0.5 * first, "loss did not fall: {first} -> {last} ({losses:?})");
    }

    #[test]
    fn inference_is_deterministic_and_per_item() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Transporter::new(&vs.root(), &small_config(16));
        // Move the batch-norm statistics away from their initial values first.
        for _ in 0..3 {
            let _ = model.loss(&Tensor::rand([4, 3, 16, 16], CPU), &Tensor::rand([4, 3, 16, 16], CPU), true);
        }
        let running_before: BTreeMap<String, Tensor> =
            vs.variables().into_iter().filter(|(_, v)| !v.requires_grad()).map(|(n, v)| (n, v.copy())).collect();
        let frame = Tensor::rand([1, 3, 16, 16], CPU);
        let other = Tensor::rand([1, 3, 16, 16], CPU);
        let batch = Tensor::cat(&[&frame, &other, &frame], 0);
        let first = model.keypoints(&batch);
        let second = model.keypoints(&batch);
        let alone = model.keypoints(&frame);
        for (a, b) in [(&first.centres, &second.centres), (&first.heatmaps, &second.heatmaps), (&first.features, &second.features)] {
            assert_eq!(values(a), values(b), "inference is not deterministic");
        }
        for t in [&first.centres, &first.heatmaps, &first.features] {
            assert_eq!(values(&t.get(0)), values(&t.get(2)), "identical frames give different outputs");
        }
        for (batched, single) in [(&first.centres, &alone.centres), (&first.features, &alone.features)] {
            assert!(max_abs(&(batched.get(0) - single.get(0))) < 1e-5, "batch items are not independent");
        }
        for (name, before) in &running_before {
            let now = vs.variables()[name].copy();
            assert_eq!(values(before), values(&now), "inference changed {name}");
        }
    }
}
