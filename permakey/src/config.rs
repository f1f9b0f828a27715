//! PermaKey's hyper-parameters (spec sections 2-5, with the project's decisions of section 9b).

use serde::{Deserialize, Serialize};

/// How an LSP window's prediction error becomes an error-map value (spec 3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMapKind {
    /// Root of the mean squared error: the reference before commit 75a90c4, i.e. paper time (default).
    Rmse,
    /// Mean squared error: the reference at HEAD.
    Mse,
}

/// What an LSP window's error is divided by before the per-image min-max normalisation (spec 3.5).
/// Serialised as `"window_mean"` / `"none"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorMapNormaliser {
    /// `mean(target cell) + 1e-3` of the same window, i.e. a relative error: the reference's
    /// `errors_2d / (reduce_mean(centers) + 1e-3)` (default).
    #[default]
    WindowMean,
    /// No division: the window's absolute error (RMSE or MSE). Measured on the synthetic sprite
    /// scenes (`tests/learns_synthetic.rs`): the relative error is *lowest* on the bright sprites,
    /// whose features have large means, and highest on the dim textured background (mean
    /// normalised map 0.11 within 3 px of a sprite centre vs 0.25 elsewhere after 300 steps, so no
    /// keypoint went near a sprite); the absolute error gives 0.54 vs 0.05. See [`crate::lsp`].
    None,
}

/// Everything that shapes a PermaKey model. Defaults: the paper-time variant (spec 9b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PermaKeyConfig {
    /// Keypoints K (7 for MsPacman; per-game values in spec section 4).
    pub num_keypoints: i64,
    /// Square input size (84).
    pub image_size: i64,
    /// VAE encoder filters of conv1..conv4 (kernels 4, 3, 3, 3; strides 1, 2, 2, 1).
    pub encoder_filters: [i64; 4],
    /// VAE latent size.
    pub latent_dim: i64,
    /// VAE decoder filters (conv 128 k3, up, conv 64 k3, up, conv 64 k3, conv 32 k3, conv 16 k4).
    pub decoder_filters: [i64; 5],
    /// Encoder layers whose feature maps the LSP predicts (0 = h1 ... 3 = h4).
    pub lsp_layers: Vec<usize>,
    /// LSP cell size P per selected layer.
    pub patch_sizes: Vec<i64>,
    /// LSP MLP hidden widths; a 0 means "the input width" (the reference's first layer).
    pub lsp_hidden: [i64; 3],
    pub error_map: ErrorMapKind,
    /// Divisor of each window's error: `window_mean` (the reference, default) or `none`.
    pub error_map_normaliser: ErrorMapNormaliser,
    /// PointNet filters of conv1..conv4.
    pub pnet_filters: [i64; 4],
    /// PointNet conv2 stride: 1 = paper time (42x42 heatmaps, default), 2 = HEAD (21x21).
    pub pnet_conv2_stride: i64,
    /// Gaussian width of the heatmaps during training (0.1 paper time, 0.12 at HEAD).
    pub gauss_std: f64,
    /// Gaussian width of the heatmaps handed to the agent (the RL config rebuilds them with 0.15).
    pub agent_gauss_std: f64,
}

impl Default for PermaKeyConfig {
    fn default() -> Self {
        Self {
            num_keypoints: 7,
            image_size: 84,
            encoder_filters: [32, 64, 64, 128],
            latent_dim: 32,
            decoder_filters: [128, 64, 64, 32, 16],
            lsp_layers: vec![0, 1],
            patch_sizes: vec![2, 2],
            lsp_hidden: [0, 512, 256],
            error_map: ErrorMapKind::Rmse,
            error_map_normaliser: ErrorMapNormaliser::WindowMean,
            pnet_filters: [32, 64, 64, 128],
            pnet_conv2_stride: 1,
            gauss_std: 0.1,
            agent_gauss_std: 0.15,
        }
    }
}

impl PermaKeyConfig {
    /// The reference at HEAD (commit 75a90c4): MSE error maps, 21x21 heatmaps, sigma 0.12.
    pub fn reference_head() -> Self {
        Self { error_map: ErrorMapKind::Mse, pnet_conv2_stride: 2, gauss_std: 0.12, ..Self::default() }
    }

    /// The narrow layer widths of `config/quick.toml` (the model `make run` trains on a CPU;
    /// the benches' "quick" profile): everything else the reference's.
    pub fn narrow() -> Self {
        Self {
            encoder_filters: [16, 32, 32, 32],
            decoder_filters: [32, 16, 16, 16, 8],
            lsp_hidden: [128, 64, 64],
            pnet_filters: [16, 32, 32, 32],
            ..Self::default()
        }
    }

    /// Spatial size of encoder layer `layer` (84, 84, 42, 21, 21 for layers h1..h4 at 84).
    pub fn encoder_size(&self, layer: usize) -> i64 {
        let half = |n: i64| (n + 1) / 2;
        match layer {
            0 => self.image_size,
            1 => half(self.image_size),
            _ => half(half(self.image_size)),
        }
    }

    /// Checks the combination of fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_keypoints < 1 || self.num_keypoints > 64 {
            return Err(format!("num_keypoints must be in 1..=64, got {}", self.num_keypoints));
        }
        if self.image_size < 16 {
            return Err(format!("image_size must be at least 16, got {}", self.image_size));
        }
        if self.lsp_layers.is_empty() || self.lsp_layers.len() != self.patch_sizes.len() {
            return Err(format!(
                "lsp_layers ({:?}) and patch_sizes ({:?}) must be non-empty and of the same length",
                self.lsp_layers, self.patch_sizes
            ));
        }
        if let Some(&layer) = self.lsp_layers.iter().find(|&&l| l > 3) {
            return Err(format!("lsp_layers names encoder layer {layer}; there are 4 (0..=3)"));
        }
        for (&layer, &p) in self.lsp_layers.iter().zip(&self.patch_sizes) {
            let size = self.encoder_size(layer);
            if p < 1 || size % p != 0 {
                return Err(format!("patch size {p} must divide layer {layer}'s size {size}"));
            }
        }
        if !matches!(self.pnet_conv2_stride, 1 | 2) {
            return Err(format!("pnet_conv2_stride must be 1 or 2, got {}", self.pnet_conv2_stride));
        }
        if !(self.gauss_std > 0.0 && self.agent_gauss_std > 0.0) {
            return Err("gauss_std and agent_gauss_std must be positive".into());
        }
        Ok(())
    }
}
