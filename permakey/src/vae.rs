//! Module 1: the VAE spatial feature embedding (spec section 2).
//!
//! Encoder: conv 32 k4 s1 -> conv 64 k3 s2 -> conv 64 k3 s2 -> conv 128 k3 s1, each BN + ReLU
//! (84 -> 84 -> 42 -> 21 -> 21), flatten -> dense(2 x latent) -> mu and s = softplus(raw), where s
//! is the standard deviation. Decoder: z -> dense(21 x 21) + ReLU -> 21x21x1 -> conv 128 k3 ->
//! nearest up x2 -> conv 64 k3 -> up x2 -> conv 64 k3 -> conv 32 k3 -> conv 16 k4 -> conv 3 k4 ->
//! BN -> sigmoid (all stride 1, TF "same"; all but the last with BN + ReLU).
//! ELBO with one reparameterised sample: KL(q || N(0, I)) summed over latents, and the NLL of a
//! Gaussian with fixed variance 0.1 without its constant, i.e. mean over pixels of
//! `(x_hat - x)^2 / 0.2`; both averaged over the batch.

use tch::{nn, nn::ModuleT, Kind, Tensor};

use crate::{
    config::PermaKeyConfig,
    layers::{batch_norm2d, dense, ConvBnRelu, SameConv2d},
};

/// Encoder outputs: posterior parameters and the four post-ReLU feature maps h1..h4.
#[derive(Debug)]
pub struct Encoded {
    pub mu: Tensor,
    pub std: Tensor,
    pub features: Vec<Tensor>,
}

#[derive(Debug)]
pub struct Encoder {
    convs: Vec<ConvBnRelu>,
    head: nn::Linear,
    latent_dim: i64,
}

impl Encoder {
    pub fn new(path: &nn::Path, config: &PermaKeyConfig) -> Self {
        let f = config.encoder_filters;
        let specs = [(3, f[0], 4, 1), (f[0], f[1], 3, 2), (f[1], f[2], 3, 2), (f[2], f[3], 3, 1)];
        let convs = specs
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, k, s))| ConvBnRelu::new(&(path / format!("conv{}", i + 1)), cin, cout, k, s))
            .collect();
        let side = config.encoder_size(3);
        let head = dense(path / "head", f[3] * side * side, 2 * config.latent_dim);
        Self { convs, head, latent_dim: config.latent_dim }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Encoded {
        let mut features = Vec::with_capacity(4);
        let mut h = x.shallow_clone();
        for conv in &self.convs {
            h = conv.forward_t(&h, train);
            features.push(h.shallow_clone());
        }
        let raw = h.flatten(1, -1).apply(&self.head);
        let mu = raw.narrow(1, 0, self.latent_dim);
        let std = raw.narrow(1, self.latent_dim, self.latent_dim).softplus();
        Encoded { mu, std, features }
    }

    /// The output of conv layer `layer` (0 = h1 ... 3 = h4) alone: the same tensor as
    /// `forward_t(x, train).features[layer]`, without running the layers above it or the latent
    /// head (what the agent's feature maps need: the learner recomputes them for every sampled
    /// frame, so the skipped layers were most of an update's front-end cost).
    pub fn features_through(&self, x: &Tensor, layer: usize, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for conv in &self.convs[..=layer.min(self.convs.len() - 1)] {
            h = conv.forward_t(&h, train);
        }
        h
    }
}

#[derive(Debug)]
pub struct Decoder {
    dense: nn::Linear,
    convs: Vec<ConvBnRelu>,
    last: SameConv2d,
    last_bn: nn::BatchNorm,
    side: i64,
    image_size: i64,
}

impl Decoder {
    pub fn new(path: &nn::Path, config: &PermaKeyConfig) -> Self {
        let d = config.decoder_filters;
        let side = config.encoder_size(3);
        let specs = [(1, d[0], 3), (d[0], d[1], 3), (d[1], d[2], 3), (d[2], d[3], 3), (d[3], d[4], 4)];
        let convs = specs
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, k))| ConvBnRelu::new(&(path / format!("conv{}", i + 1)), cin, cout, k, 1))
            .collect();
        Self {
            dense: dense(path / "dense", config.latent_dim, side * side),
            convs,
            last: SameConv2d::new(path / "conv6", d[4], 3, 4, 1),
            last_bn: batch_norm2d(path / "bn6", 3),
            side,
            image_size: config.image_size,
        }
    }

    pub fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        let batch = z.size()[0];
        let mut h = z.apply(&self.dense).relu().view([batch, 1, self.side, self.side]);
        let half = config_half(self.image_size);
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward_t(&h, train);
            match i {
                0 => h = h.upsample_nearest2d([half, half], None, None),
                1 => h = h.upsample_nearest2d([self.image_size, self.image_size], None, None),
                _ => {}
            }
        }
        self.last_bn.forward_t(&self.last.forward(&h), train).sigmoid()
    }
}

fn config_half(n: i64) -> i64 {
    (n + 1) / 2
}

/// The whole VAE.
#[derive(Debug)]
pub struct Vae {
    pub encoder: Encoder,
    pub decoder: Decoder,
}

/// The ELBO's two terms.
#[derive(Debug)]
pub struct VaeLosses {
    pub nll: Tensor,
    pub kl: Tensor,
}

impl Vae {
    pub fn new(path: &nn::Path, config: &PermaKeyConfig) -> Self {
        Self { encoder: Encoder::new(&(path / "encoder"), config), decoder: Decoder::new(&(path / "decoder"), config) }
    }

    /// Encodes, samples z = mu + std * eps, decodes; returns the encoding and the losses.
    pub fn forward_losses(&self, x: &Tensor, train: bool) -> (Encoded, VaeLosses) {
        let encoded = self.encoder.forward_t(x, train);
        let eps = encoded.mu.randn_like();
        let z = &encoded.mu + &encoded.std * eps;
        let reconstruction = self.decoder.forward_t(&z, train);
        let losses = elbo_terms(x, &reconstruction, &encoded.mu, &encoded.std);
        (encoded, losses)
    }
}

/// `nll = mean_b mean_hwc (x_hat - x)^2 / (2 * 0.1)`, `kl = mean_b sum_d KL(N(mu, std^2) || N(0, 1))`.
pub fn elbo_terms(x: &Tensor, reconstruction: &Tensor, mu: &Tensor, std: &Tensor) -> VaeLosses {
    let nll = (reconstruction - x).square().mean(Kind::Float) / 0.2;
    let variance = std.square();
    let kl_per_dim = (mu.square() + &variance - 1.0 - variance.clamp_min(1e-12).log()) * 0.5;
    let kl = kl_per_dim.sum_dim_intlist(&[1][..], false, Kind::Float).mean(Kind::Float);
    VaeLosses { nll, kl }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn elbo_terms_match_hand_computed_values() {
        // x = [0, 1], x_hat = [0.5, 0.5]: mean squared error 0.25 -> nll = 0.25 / 0.2 = 1.25.
        let x = Tensor::from_slice(&[0.0f32, 1.0]).view([1, 2]);
        let xh = Tensor::from_slice(&[0.5f32, 0.5]).view([1, 2]);
        // mu = [1, 0], std = [1, 0.5]: KL = 0.5 (1 + 1 - 1 - 0) + 0.5 (0 + 0.25 - 1 - ln 0.25)
        //                                = 0.5 + 0.5 (-0.75 + 1.386294) = 0.818147
        let mu = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
        let std = Tensor::from_slice(&[1.0f32, 0.5]).view([1, 2]);
        let losses = elbo_terms(&x, &xh, &mu, &std);
        assert!((losses.nll.double_value(&[]) - 1.25).abs() < 1e-6);
        assert!((losses.kl.double_value(&[]) - 0.818147).abs() < 1e-5, "{}", losses.kl.double_value(&[]));
    }

    #[test]
    fn shapes_follow_the_spec() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = PermaKeyConfig::default();
        let vae = Vae::new(&vs.root(), &config);
        let x = Tensor::rand([2, 3, 84, 84], (Kind::Float, Device::Cpu));
        let (encoded, losses) = vae.forward_losses(&x, true);
        let sizes: Vec<Vec<i64>> = encoded.features.iter().map(|f| f.size()).collect();
        assert_eq!(sizes, vec![vec![2, 32, 84, 84], vec![2, 64, 42, 42], vec![2, 64, 21, 21], vec![2, 128, 21, 21]]);
        assert_eq!(encoded.mu.size(), [2, 32]);
        assert!(encoded.std.min().double_value(&[]) > 0.0);
        assert!(losses.nll.double_value(&[]).is_finite() && losses.kl.double_value(&[]) >= 0.0);
        let z = Tensor::zeros([2, 32], (Kind::Float, Device::Cpu));
        assert_eq!(vae.decoder.forward_t(&z, false).size(), [2, 3, 84, 84]);
    }
}
