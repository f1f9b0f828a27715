//! Module 2: local spatial prediction (spec section 3).
//!
//! For a feature map `A` (`B x D x H x W`) and cell size `P`: zero-pad by `P`, cut `3P x 3P`
//! windows with stride `P` (an `H/P x W/P` grid); the window's centre `P x P` cell is the target
//! (`P^2 D` values) and its 8 neighbouring cells the input (`8 P^2 D`). One MLP per layer,
//! `in -> hidden0 -> 512 -> 256 -> P^2 D` with BN + ReLU between, predicts every centre from its
//! neighbours. The squared errors train the MLP (features are detached: the encoder gets no LSP
//! gradient) and, averaged per window, form the error map: RMSE (paper time, default) or MSE,
//! divided by `mean(target) + 1e-3` of the same window, resized (nearest) to the image size,
//! stacked over layers and min-max normalised per image and channel.
//!
//! Decision: the spec's normaliser "mean(target values)" is read per window (the centre cell's mean
//! activation), which makes the map a relative error, as the reference's
//! `errors_2d / (reduce_mean(centers) + 1e-3)` does. This is the default
//! ([`ErrorMapNormaliser::WindowMean`]). Option `error_map_normaliser = "none"` skips the division.
//! Measured reason for the option: on the synthetic scenes of `tests/learns_synthetic.rs` (bright
//! 7 px sprites on a dim, mildly textured background) the relative error inverts the contrast:
//! the sprites' windows have large mean activations, so their errors are divided by much more than
//! the background's, and after min-max normalisation the sprites are dark holes in a bright,
//! texture-driven map (mean 0.11 within 3 px of a sprite centre vs 0.25 elsewhere after 300 steps;
//! 0.03-0.05 of keypoints near a sprite). With the absolute error the same model gives 0.54 vs 0.05
//! from the first steps and the PointNet can find the sprites. The reference's choice stays the
//! default because the Atari runs reproduce the reference; how the two compare on Atari frames has
//! not been measured. Flattening order of the neighbours: window
//! pixels in row-major order, centre pixels skipped, channels innermost (the order only matters for
//! porting weights, which this project does not do).

use tch::{nn, nn::ModuleT, Kind, Tensor};

use crate::{
    config::{ErrorMapKind, ErrorMapNormaliser, PermaKeyConfig},
    layers::{batch_norm1d, dense, resize_nearest},
};

/// Splits `features` (`B x D x H x W`) into LSP `(neighbours, centres)`:
/// `(B * H/P * W/P) x 8P^2D` and `(B * H/P * W/P) x P^2D`, rows in `(b, y, x)` order.
pub fn extract_windows(features: &Tensor, patch: i64) -> (Tensor, Tensor) {
    extract_windows_with(features, patch, &WindowIndices::new(patch, features.device()))
}

/// [`window_indices`] as `i64` tensors on a device, made once per LSP layer: building them in
/// every forward pass uploaded two small host arrays per layer, and on a CUDA device every such
/// upload waits for all work queued before it (4 waits per PermaKey forward, in pre-training and
/// in every acting step).
#[derive(Debug)]
pub struct WindowIndices {
    centre: Tensor,
    neighbours: Tensor,
}

impl WindowIndices {
    pub fn new(patch: i64, device: tch::Device) -> Self {
        let (centre, neighbours) = window_indices(patch);
        Self { centre: Tensor::from_slice(&centre).to_device(device), neighbours: Tensor::from_slice(&neighbours).to_device(device) }
    }
}

/// [`extract_windows`] with the window's index tensors given (on the features' device).
fn extract_windows_with(features: &Tensor, patch: i64, indices: &WindowIndices) -> (Tensor, Tensor) {
    let [batch, depth, height, width] = features.size()[..] else { panic!("features must be B x D x H x W") };
    let (gh, gw) = (height / patch, width / patch);
    let window = 3 * patch;
    let padded = features.constant_pad_nd([patch, patch, patch, patch]);
    // B x D x gh x gw x 3P x 3P
    let windows = padded.unfold(2, window, patch).unfold(3, window, patch);
    let windows = windows.narrow(2, 0, gh).narrow(3, 0, gw);
    // (B gh gw) x (3P 3P) x D
    let pixels = windows.permute([0, 2, 3, 4, 5, 1]).reshape([batch * gh * gw, window * window, depth]);
    let targets = pixels.index_select(1, &indices.centre).reshape([batch * gh * gw, -1]);
    let inputs = pixels.index_select(1, &indices.neighbours).reshape([batch * gh * gw, -1]);
    (inputs, targets)
}

/// Row-major indices of a `3P x 3P` window's centre-cell pixels and of the other pixels.
pub fn window_indices(patch: i64) -> (Vec<i64>, Vec<i64>) {
    let window = 3 * patch;
    let mut centre = Vec::new();
    let mut others = Vec::new();
    for y in 0..window {
        for x in 0..window {
            let inside = (patch..2 * patch).contains(&y) && (patch..2 * patch).contains(&x);
            if inside { centre.push(y * window + x) } else { others.push(y * window + x) }
        }
    }
    (centre, others)
}

/// The LSP MLP of one layer.
#[derive(Debug)]
pub struct LspMlp {
    layers: Vec<(nn::Linear, nn::BatchNorm)>,
    out: nn::Linear,
}

impl LspMlp {
    pub fn new(path: &nn::Path, inputs: i64, outputs: i64, hidden: [i64; 3]) -> Self {
        let widths = [if hidden[0] == 0 { inputs } else { hidden[0] }, hidden[1], hidden[2]];
        let mut layers = Vec::new();
        let mut previous = inputs;
        for (i, &w) in widths.iter().enumerate() {
            layers.push((dense(path / format!("dense{}", i + 1), previous, w), batch_norm1d(path / format!("bn{}", i + 1), w)));
            previous = w;
        }
        Self { layers, out: dense(path / "out", previous, outputs) }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (linear, bn) in &self.layers {
            h = bn.forward_t(&h.apply(linear), train).relu();
        }
        h.apply(&self.out)
    }
}

/// All LSP networks of a model and the error maps they produce.
#[derive(Debug)]
pub struct Lsp {
    mlps: Vec<LspMlp>,
    /// Each layer's window indices, on the variables' device.
    windows: Vec<WindowIndices>,
    layers: Vec<usize>,
    patches: Vec<i64>,
    kind: ErrorMapKind,
    normaliser: ErrorMapNormaliser,
    image_size: i64,
}

/// LSP results for a batch.
#[derive(Debug)]
pub struct LspOutput {
    /// Sum over layers of the mean squared prediction error (the LSP loss).
    pub loss: Tensor,
    /// Normalised error maps `B x L x S x S` in `[0, 1]`, detached (PointNet input and target).
    pub error_maps: Tensor,
}

impl Lsp {
    pub fn new(path: &nn::Path, config: &PermaKeyConfig) -> Self {
        let depth = |layer: usize| config.encoder_filters[layer];
        let mlps = config
            .lsp_layers
            .iter()
            .zip(&config.patch_sizes)
            .enumerate()
            .map(|(i, (&layer, &p))| {
                let cell = p * p * depth(layer);
                LspMlp::new(&(path / format!("mlp{i}")), 8 * cell, cell, config.lsp_hidden)
            })
            .collect();
        Self {
            mlps,
            windows: config.patch_sizes.iter().map(|&p| WindowIndices::new(p, path.device())).collect(),
            layers: config.lsp_layers.clone(),
            patches: config.patch_sizes.clone(),
            kind: config.error_map,
            normaliser: config.error_map_normaliser,
            image_size: config.image_size,
        }
    }

    /// Predicts every window of the selected encoder layers (`features` = h1..h4).
    pub fn forward_t(&self, features: &[Tensor], train: bool) -> LspOutput {
        let mut loss = Tensor::zeros([], (Kind::Float, features[0].device()));
        let mut maps = Vec::with_capacity(self.mlps.len());
        for (((mlp, &layer), &patch), windows) in self.mlps.iter().zip(&self.layers).zip(&self.patches).zip(&self.windows) {
            let feature = features[layer].detach();
            let [batch, _, height, width] = feature.size()[..] else { unreachable!() };
            let (inputs, targets) = extract_windows_with(&feature, patch, windows);
            let predictions = mlp.forward_t(&inputs, train);
            let errors = (&targets - predictions).square();
            loss = loss + errors.mean(Kind::Float);
            let map = tch::no_grad(|| {
                let mut per_window = errors.mean_dim(&[1][..], false, Kind::Float);
                if self.kind == ErrorMapKind::Rmse {
                    per_window = per_window.sqrt();
                }
                if self.normaliser == ErrorMapNormaliser::WindowMean {
                    per_window = per_window / (targets.mean_dim(&[1][..], false, Kind::Float) + 1e-3);
                }
                per_window.view([batch, 1, height / patch, width / patch])
            });
            maps.push(resize_nearest(&map, self.image_size, self.image_size));
        }
        let error_maps = tch::no_grad(|| min_max_normalise(&Tensor::cat(&maps, 1)));
        LspOutput { loss, error_maps }
    }
}

/// Min-max normalises `B x C x H x W` maps per image and channel to `[0, 1]` (no epsilon in the
/// reference; a constant map would divide by zero there, here it becomes all zeros).
pub fn min_max_normalise(maps: &Tensor) -> Tensor {
    let flat = maps.flatten(2, -1);
    let low = flat.amin(&[-1][..], true);
    let high = flat.amax(&[-1][..], true);
    let range = &high - &low;
    let safe = range.where_self(&range.gt(0.0), &range.ones_like());
    ((flat - low) / safe).view_as(maps)
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn window_indices_split_centre_and_neighbours() {
        let (centre, others) = window_indices(1);
        assert_eq!(centre, vec![4]);
        assert_eq!(others, vec![0, 1, 2, 3, 5, 6, 7, 8]);
        let (centre, others) = window_indices(2);
        assert_eq!(centre, vec![14, 15, 20, 21]);
        assert_eq!(others.len(), 32);
    }

    #[test]
    fn windows_hold_the_right_values() {
        // One 4x4 single-channel map with values 0..16, P = 2: a 2x2 grid of windows.
        let features = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
        let (inputs, targets) = extract_windows(&features, 2);
        assert_eq!(inputs.size(), [4, 32]);
        assert_eq!(targets.size(), [4, 4]);
        // window (0, 0): its centre cell is the top-left 2x2 block [0, 1, 4, 5]
        assert_eq!(Vec::<f32>::try_from(targets.get(0)).unwrap(), vec![0.0, 1.0, 4.0, 5.0]);
        // window (1, 1): centre = bottom-right block [10, 11, 14, 15]
        assert_eq!(Vec::<f32>::try_from(targets.get(3)).unwrap(), vec![10.0, 11.0, 14.0, 15.0]);
        // window (0, 0)'s neighbours: zero padding above/left; right cell [2, 3, 6, 7]; below [8, 9, 12, 13];
        // below-right [10, 11, 14, 15]. Sum = 2+3+6+7 + 8+9+12+13 + 10+11+14+15 = 110.
        assert_eq!(inputs.get(0).sum(Kind::Float).double_value(&[]), 110.0);
    }

    #[test]
    fn min_max_normalise_per_image_and_channel() {
        let maps = Tensor::from_slice(&[1.0f32, 3.0, 5.0, 5.0, 2.0, 2.0, 2.0, 2.0]).view([1, 2, 2, 2]);
        let out = Vec::<f32>::try_from(min_max_normalise(&maps).flatten(0, -1)).unwrap();
        assert_eq!(out, vec![0.0, 0.5, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn the_normaliser_option_changes_only_the_maps() {
        let features = vec![
            Tensor::rand([2, 8, 16, 16], (Kind::Float, Device::Cpu)) * 3.0,
            Tensor::rand([2, 8, 8, 8], (Kind::Float, Device::Cpu)),
        ];
        // Both networks get the same weights by copying, not by reseeding the global RNG, which
        // the tests running in parallel share.
        let reference = nn::VarStore::new(Device::Cpu);
        let config = |normaliser| PermaKeyConfig {
            image_size: 16,
            encoder_filters: [8, 8, 8, 8],
            lsp_hidden: [16, 16, 16],
            error_map_normaliser: normaliser,
            ..PermaKeyConfig::default()
        };
        let _ = Lsp::new(&reference.root(), &config(ErrorMapNormaliser::WindowMean));
        let run = |normaliser: ErrorMapNormaliser| {
            let mut vs = nn::VarStore::new(Device::Cpu);
            let lsp = Lsp::new(&vs.root(), &config(normaliser));
            vs.copy(&reference).unwrap();
            lsp.forward_t(&features, false)
        };
        let (relative, absolute) = (run(ErrorMapNormaliser::WindowMean), run(ErrorMapNormaliser::None));
        assert_eq!(relative.loss.double_value(&[]), absolute.loss.double_value(&[]));
        assert_eq!(absolute.error_maps.size(), [2, 2, 16, 16]);
        assert!((absolute.error_maps.max().double_value(&[]) - 1.0).abs() < 1e-6);
        assert!(!relative.error_maps.allclose(&absolute.error_maps, 1e-4, 1e-4, false));
        assert_eq!(PermaKeyConfig::default().error_map_normaliser, ErrorMapNormaliser::WindowMean);
        let parsed: PermaKeyConfig = serde_json::from_str(r#"{"error_map_normaliser": "none"}"#).unwrap();
        assert_eq!(parsed.error_map_normaliser, ErrorMapNormaliser::None);
        assert!(serde_json::to_string(&PermaKeyConfig::default()).unwrap().contains(r#""error_map_normaliser":"window_mean""#));
    }

    #[test]
    fn error_maps_have_the_spec_shape_and_range() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = PermaKeyConfig { lsp_hidden: [64, 32, 16], ..PermaKeyConfig::default() };
        let lsp = Lsp::new(&vs.root(), &config);
        let features = vec![
            Tensor::rand([2, 32, 84, 84], (Kind::Float, Device::Cpu)),
            Tensor::rand([2, 64, 42, 42], (Kind::Float, Device::Cpu)),
        ];
        let out = lsp.forward_t(&features, true);
        assert_eq!(out.error_maps.size(), [2, 2, 84, 84]);
        assert!((out.error_maps.max().double_value(&[]) - 1.0).abs() < 1e-6);
        assert!(out.error_maps.min().double_value(&[]).abs() < 1e-6);
        assert!(!out.error_maps.requires_grad(), "error maps are detached");
        out.loss.backward();
        assert!(vs.trainable_variables().iter().all(|v| v.grad().defined()));
    }
}
