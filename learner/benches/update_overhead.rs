//! The host-side cost of one learner update with next to no arithmetic: a proxy for a GPU, where
//! the learner update of the reference agent is bound by issuing kernels, not by computing them
//! (BENCHMARKS.md, "The single-seed Atari-100k run on an H200": 31 ms an update there).
//!
//! `cargo bench -p learner --bench update_overhead` (part of `make bench`). The reference agent's
//! shapes where they set the number of ops (CNN encoder of 4 convs x 32 channels, LSTM(128), Q
//! head, Adam and Polyak over every parameter, batch 16 x 12 steps, 84x84x3 frames as the cache's
//! keys) but a front end whose features are 3 x 6 x 6 (a pooled frame), so the convolutions cost
//! almost nothing and what is left is op dispatch, autograd book-keeping, read-backs and the cache
//! look-ups. 64 distinct stored sequences, 16 drawn per update; 20 warm-up updates fill the
//! feature cache, then `PERMAKEY_BENCH_UPDATES` (default 300) are timed, in
//! `PERMAKEY_BENCH_ROUNDS` (default 3) rounds; the table gives each round's mean milliseconds per
//! update and phase ([`learner::UpdatePhases`]). Writes `target/bench/update_overhead.md`.
//! Compare commits by running both binaries in turn on the same machine.

use std::{fmt::Write as _, sync::Arc, time::Instant};

use agent::{AgentConfig, EncoderKind, FrontEndShape};
use learner::{Learner, LearnerConfig};
use permakey::model::{KeypointModel, KeypointOutput};
use replay::{testing::SequenceBuilder, Sequence};
use tch::{Device, Kind, Tensor};
use pkrl_test_support::env_number;

/// Features: the frame average-pooled to 6 x 6 (3 channels).
struct PooledFront;

impl KeypointModel for PooledFront {
    fn num_keypoints(&self) -> i64 {
        2
    }
    fn image_size(&self) -> i64 {
        84
    }
    fn keypoints(&self, frames: &Tensor) -> KeypointOutput {
        let b = frames.size()[0];
        let centres = Tensor::zeros([b, 2, 2], (Kind::Float, Device::Cpu));
        let heatmaps = permakey::keypoints::gaussian_maps(&centres, 6, 6, 0.15);
        KeypointOutput { centres, heatmaps, features: self.features(frames) }
    }
    fn features(&self, frames: &Tensor) -> Tensor {
        frames.adaptive_avg_pool2d([6, 6])
    }
    fn gauss_std(&self) -> f64 {
        0.15
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
}

fn main() -> anyhow::Result<()> {
    let updates = env_number("PERMAKEY_BENCH_UPDATES", 300);
    let rounds = env_number("PERMAKEY_BENCH_ROUNDS", 3);
    tch::manual_seed(0);
    let pool: Vec<Arc<Sequence>> = (0..64u8)
        .map(|i| {
            // keypoints in [-1, 1]: 0.1 x step
            let values = (0..12).flat_map(|t| std::iter::repeat_n(0.1 * t as f32 - 0.5, 4)).collect();
            Arc::new(SequenceBuilder::new(12).obs_shape([84, 84, 3]).keypoint_values(4, values).tag(i.wrapping_mul(13)).build())
        })
        .collect();
    let front = PooledFront;
    let shape = FrontEndShape { num_keypoints: 2, feature_channels: 3, feature_size: 6, gauss_std: 0.15 };
    let agent = AgentConfig { encoder: EncoderKind::Cnn, cnn_channels: 32, ..AgentConfig::default() };
    let mut learner = Learner::new(LearnerConfig::default(), &agent, shape, 18, Device::Cpu)?;
    let weights = vec![1.0f32; 16];
    let mut draw = 0usize;
    let mut batch = || -> Vec<Arc<Sequence>> {
        (0..16)
            .map(|_| {
                draw = (draw * 1103515245 + 12345) % 2147483648;
                pool[draw % pool.len()].clone()
            })
            .collect()
    };
    for _ in 0..20 {
        learner.update(&front, &batch(), &weights)?;
    }
    let mut table = String::from(
        "| round | updates | ms per update | batch | features | online | target | backward (incl. read-backs) |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for round in 1..=rounds {
        let mut sums = [0.0f64; 5];
        let start = Instant::now();
        for _ in 0..updates {
            let p = learner.update(&front, &batch(), &weights)?.phases;
            for (sum, x) in sums.iter_mut().zip([p.batch_s, p.features_s, p.online_s, p.target_s, p.backward_s]) {
                *sum += x;
            }
        }
        let whole = start.elapsed().as_secs_f64() * 1e3 / updates as f64;
        let ms = sums.map(|s| s * 1e3 / updates as f64);
        writeln!(table, "| {round} | {updates} | {whole:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |", ms[0], ms[1], ms[2], ms[3], ms[4])?;
    }
    println!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("update_overhead.md"), &table)?;
    Ok(())
}
