//! `permakey-rl doctor`: what this binary can use, and a forward+backward timing on the device.

use std::time::Instant;

use anyhow::Context;
use pkrl_config::DeviceChoice;
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};

/// Forward+backward timing of a conv net shaped like PermaKey's encoder on 84x84x3 frames.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainTiming {
    pub device: String,
    pub batch: i64,
    pub iterations: usize,
    pub ms_per_iteration: f64,
    pub frames_per_second: f64,
    pub first_loss: f64,
    pub last_loss: f64,
}

/// Reports the libtorch runtime, ROMs and the resolved device, then times `iterations` Adam steps.
pub fn run_doctor(choice: DeviceChoice, iterations: usize, batch: i64) -> anyhow::Result<TrainTiming> {
    println!("permakey-rl {}", env!("CARGO_PKG_VERSION"));
    println!("{}", permakey::describe_runtime());
    match atari::RomCatalog::discover() {
        Ok(roms) => println!("roms: {} games in {}", roms.game_ids().count(), roms.dir().display()),
        Err(e) => println!("roms: unavailable ({e})"),
    }
    let device = permakey::resolve_device(choice)?;
    println!("device: --device {choice} -> {device:?}");
    let timing = time_train_steps(device, iterations, batch).context("forward/backward check failed")?;
    println!(
        "train step (conv encoder, batch {}): {:.2} ms/iter, {:.0} frames/s, loss {:.4} -> {:.4}",
        timing.batch, timing.ms_per_iteration, timing.frames_per_second, timing.first_loss, timing.last_loss
    );
    Ok(timing)
}

/// Adam steps of a 4-layer conv encoder + decoder head (autoencoding random frames).
pub fn time_train_steps(device: Device, iterations: usize, batch: i64) -> anyhow::Result<TrainTiming> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let p = vs.root();
    let conv = |k: i64, s: i64| nn::ConvConfig { stride: s, padding: k / 2, ..Default::default() };
    let net = nn::seq()
        .add(nn::conv2d(&p / "c1", 3, 32, 3, conv(3, 1)))
        .add_fn(|x| x.relu())
        .add(nn::conv2d(&p / "c2", 32, 64, 3, conv(3, 2)))
        .add_fn(|x| x.relu())
        .add(nn::conv2d(&p / "c3", 64, 64, 3, conv(3, 2)))
        .add_fn(|x| x.relu())
        .add(nn::conv2d(&p / "c4", 64, 3, 3, conv(3, 1)))
        .add_fn(|x| x.upsample_nearest2d([84, 84], None, None).sigmoid());
    let frames = Tensor::rand([batch, 3, 84, 84], (Kind::Float, device));
    let mut opt = nn::Adam::default().build(&vs, 1e-3)?;
    let loss_value = |net: &nn::Sequential, opt: &mut nn::Optimizer| {
        let loss = net.forward(&frames).mse_loss(&frames, tch::Reduction::Mean);
        opt.backward_step(&loss);
        loss.double_value(&[])
    };
    let first_loss = loss_value(&net, &mut opt); // warm-up (cuDNN autotuning, allocator)
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let started = Instant::now();
    let mut last_loss = first_loss;
    for _ in 0..iterations {
        last_loss = loss_value(&net, &mut opt);
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(TrainTiming {
        device: format!("{device:?}"),
        batch,
        iterations,
        ms_per_iteration: seconds * 1e3 / iterations.max(1) as f64,
        frames_per_second: (batch as f64 * iterations as f64) / seconds,
        first_loss,
        last_loss,
    })
}
