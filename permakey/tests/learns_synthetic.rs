//! Learning test (issue 5): a short CPU training of PermaKey on synthetic scenes — coloured sprites
//! moving over a textured background, positions known — makes the losses fall and puts the
//! keypoints on the sprites.

use atari::NoiseType;
use permakey::{
    config::ErrorMapNormaliser,
    keypoints::to_pixels,
    optim::{Adam, AdamConfig},
    synthetic::{synthetic_batch, BarMotion, SyntheticConfig},
    train::build,
    PermaKeyConfig,
};
use tch::{nn, Device, Kind, Tensor};

/// Held by each test for its whole run. libtorch's random generator is process-global and the
/// VAE's sampling draws from it on every step, so two trainings in parallel would interleave their
/// draws and each run would see different noise; serialised, a seed fixes the run.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `name`'s value from the environment, else `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Share of keypoints (`B x K x 2` in `[-1, 1]`) within `radius` px of some sprite centre
/// (`B x S x 2` pixels) on a `size x size` frame.
fn share_near_sprites(centres: &Tensor, sprites: &Tensor, size: i64, radius: f64) -> f64 {
    let keypoints = to_pixels(centres, size); // B x K x 2
    let distances = (keypoints.unsqueeze(2) - sprites.unsqueeze(1)).square().sum_dim_intlist(&[-1][..], false, Kind::Float).sqrt();
    let nearest = distances.amin(&[-1][..], false); // B x K
    nearest.le(radius).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
}

/// An Adam over the trainable variables whose names start with `prefix` (`inside`) or do not.
/// PermaKey's gradient scopes are disjoint (spec 5) and Adam is per-parameter, so two scoped
/// optimisers with the same settings apply exactly the updates of the reference's single shared one;
/// splitting them only lets the PointNet's learning rate differ from the VAE's and LSP's.
fn scoped_adam(vs: &nn::VarStore, prefix: &str, inside: bool, config: AdamConfig) -> Adam {
    let excluded: Vec<Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(name, t)| t.requires_grad() && name.starts_with(prefix) != inside)
        .map(|(_, t)| t)
        .collect();
    for t in &excluded {
        let _ = t.set_requires_grad(false);
    }
    let adam = Adam::new(vs, config);
    for t in &excluded {
        let _ = t.set_requires_grad(true);
    }
    adam
}

/// Three sprites (red, green, yellow; 7 px) on the textured background plus a smoothly moving
/// vertical distractor bar; 800 batches of 8 frames; one keypoint; evaluated in inference mode on
/// 64 held-out frames. About 200 s in `cargo test --release` on 2 otherwise idle cores.
///
/// Choices, each measured (notes in the PR/issue report):
/// - `error_map_normaliser: none`. The reference's per-window relative error (RMSE divided by the
///   window's mean target activation) makes the bright sprites the *most* predictable windows:
///   mean normalised error-map value near the sprites 0.11 vs 0.25 elsewhere after 300 steps, so
///   the keypoints have nothing to find. The absolute error gives 0.54 vs 0.05.
/// - One keypoint. With K = 2 or 3 every keypoint goes for the most salient sprite (yellow) and the
///   unnormalised Gaussians push each other ~3.5 px apart (separation ~1.7 sigma), so they sit on
///   the sprite's edge, beyond 4 px of its centre, or hide at the frame border; K = 3 reached 0.34-0.67.
/// - Learning rate 1e-2 (2e-3 leaves the soft-argmax logits too small: keypoints stay at the frame
///   centre after 300 steps) and batch 8 (Adam's step count, not the batch, limits how fast the
///   logits grow).
/// - In the last quarter only the PointNet's learning rate drops to 1e-3: at 1e-2 its weights move
///   faster than its batch-norm running statistics (Keras momentum 0.99, a ~100-step average)
///   follow, and the inference-mode keypoints collapsed now and then (e.g. 0.05 of keypoints near
///   a sprite where batch statistics gave 0.94). Dropping every module's rate instead changes the
///   error maps under the PointNet and cost ~8 points.
#[test]
fn permakey_puts_keypoints_on_moving_sprites() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::set_num_threads(env_or("PERMAKEY_TEST_THREADS", 2));
    let scenes = SyntheticConfig {
        num_sprites: 3,
        background_contrast: env_or("PERMAKEY_TEST_CONTRAST", 10),
        bar: if env_or("PERMAKEY_TEST_BAR", 1) == 1 { NoiseType::Vertical } else { NoiseType::None },
        bar_motion: BarMotion::Smooth,
        ..SyntheticConfig::default()
    };
    let config = PermaKeyConfig {
        num_keypoints: 1,
        encoder_filters: [16, 32, 32, 32],
        decoder_filters: [32, 16, 16, 16, 8],
        lsp_hidden: [128, 64, 64],
        pnet_filters: [16, 32, 32, 32],
        error_map_normaliser: ErrorMapNormaliser::None,
        ..PermaKeyConfig::default()
    };
    let steps: u64 = env_or("PERMAKEY_TEST_STEPS", 800).max(20);
    let cool_from = steps - steps / 4;
    let (vs, model) = build(&config, Device::Cpu, env_or("PERMAKEY_TEST_SEED", 0)).unwrap();
    let adam = AdamConfig { learning_rate: 1e-2, ..AdamConfig::default() };
    let mut features_adam = scoped_adam(&vs, "pnet", false, adam.clone());
    let mut pnet_adam = scoped_adam(&vs, "pnet", true, adam);
    let eval = synthetic_batch(&scenes, 10_000, 64, Device::Cpu).unwrap();
    let near = |model: &permakey::PermaKey| share_near_sprites(&model.analyse(&eval.frames).centres, &eval.centres, 84, 4.0);
    let before = near(&model);
    let started = std::time::Instant::now();
    let (mut first_lsp, mut first_pnet, mut last_lsp, mut last_pnet) = (0.0, 0.0, 0.0, 0.0);
    let hold: u64 = env_or("PERMAKEY_TEST_PNET_HOLD", 0);
    if hold > 0 {
        pnet_adam.config.learning_rate = 0.0;
    }
    for step in 0..steps {
        if hold > 0 && step == hold {
            pnet_adam.config.learning_rate = 1e-2;
        }
        if step == cool_from {
            pnet_adam.config.learning_rate /= 10.0;
        }
        let batch = synthetic_batch(&scenes, step, 8, Device::Cpu).unwrap();
        let losses = model.losses(&batch.frames, true);
        let (lsp, pnet) = (losses.lsp.double_value(&[]), losses.pnet.double_value(&[]));
        if step < 10 {
            first_lsp += lsp / 10.0;
            first_pnet += pnet / 10.0;
        }
        if step >= steps - 10 {
            last_lsp += lsp / 10.0;
            last_pnet += pnet / 10.0;
        }
        features_adam.zero_grad();
        pnet_adam.zero_grad();
        losses.total.backward();
        features_adam.apply();
        pnet_adam.apply();
        if step % 100 == 0 {
            eprintln!("step {step}: lsp {lsp:.4} pnet {pnet:.4} near {:.3} ({:.0} s)", near(&model), started.elapsed().as_secs_f64());
        }
    }
    if let Ok(path) = std::env::var("PERMAKEY_TEST_PREVIEW") {
        permakey::train::write_preview(&model, &eval.frames.narrow(0, 0, 4), std::path::Path::new(&path)).unwrap();
    }
    let after = near(&model);
    eprintln!("keypoints within 4 px of a sprite: {before:.3} -> {after:.3}; lsp {first_lsp:.4} -> {last_lsp:.4}; pnet {first_pnet:.4} -> {last_pnet:.4}; {:.0} s", started.elapsed().as_secs_f64());
    assert!(last_lsp < first_lsp, "LSP loss falls");
    assert!(last_pnet < first_pnet, "PointNet loss falls");
    assert!(after >= 0.9, "only {after:.3} of keypoints within 4 px of a sprite centre (before training {before:.3})");
}

#[test]
fn short_training_lowers_the_vae_and_lsp_losses() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::set_num_threads(2);
    let scenes = SyntheticConfig::default();
    let config = PermaKeyConfig {
        num_keypoints: 3,
        encoder_filters: [8, 16, 16, 16],
        decoder_filters: [16, 8, 8, 8, 8],
        lsp_hidden: [64, 32, 32],
        pnet_filters: [8, 16, 16, 16],
        ..PermaKeyConfig::default()
    };
    let (vs, model) = build(&config, Device::Cpu, 0).unwrap();
    let mut adam = Adam::new(&vs, AdamConfig { learning_rate: 2e-3, ..AdamConfig::default() });
    let mut history = Vec::new();
    for step in 0..40 {
        let batch = synthetic_batch(&scenes, step, 8, Device::Cpu).unwrap();
        let losses = model.losses(&batch.frames, true);
        history.push((losses.nll.double_value(&[]), losses.lsp.double_value(&[])));
        adam.backward_step(&losses.total);
    }
    let mean = |range: std::ops::Range<usize>, pick: fn(&(f64, f64)) -> f64| history[range.clone()].iter().map(pick).sum::<f64>() / range.len() as f64;
    let (nll0, nll1) = (mean(0..5, |h| h.0), mean(35..40, |h| h.0));
    let (lsp0, lsp1) = (mean(0..5, |h| h.1), mean(35..40, |h| h.1));
    assert!(nll1 < 0.9 * nll0, "reconstruction loss {nll0:.4} -> {nll1:.4}");
    assert!(lsp1 < 0.5 * lsp0, "LSP loss {lsp0:.4} -> {lsp1:.4}");
}
