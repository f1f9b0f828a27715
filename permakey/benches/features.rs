//! The learner's front-end cost per update (issue 11, item 4): the agent's feature maps of one
//! sampled batch (8 or 16 sequences x 12 frames), from the whole VAE encoder (how
//! `PermaKey::features` computed them until 2026-12-03: four convs and the latent head, then the
//! layer the LSP reads) against the encoder run only up to that layer (`Encoder::features_through`,
//! what it does now). Both in one process, rounds interleaved, median per case; read the ratio.
//!
//!   cargo bench -p permakey --bench features   (PERMAKEY_BENCH_ROUNDS, default 7)

use std::{fmt::Write as _, time::Instant};

use permakey::{PermaKey, PermaKeyConfig};
use tch::{nn, Device, Kind, Tensor};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    tch::manual_seed(0);
    let rounds: usize = std::env::var("PERMAKEY_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let quick = PermaKeyConfig::narrow();
    let cases = [("quick (config/quick.toml)", quick, 96), ("reference (config/example.toml)", PermaKeyConfig::default(), 192)];
    let mut table = String::from(
        "| model widths | frames per update | whole encoder ms | encoder to the LSP layer ms | whole / to the layer |\n|---|---:|---:|---:|---:|\n",
    );
    for (name, config, frames) in cases {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = PermaKey::new(&vs.root(), &config).expect("valid config");
        let layer = *config.lsp_layers.last().expect("non-empty");
        let x = Tensor::rand([frames, 3, 84, 84], (Kind::Float, Device::Cpu));
        let (mut whole, mut cut) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            let a = tch::no_grad(|| model.vae.encoder.forward_t(&x, false).features[layer].shallow_clone());
            whole.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let b = tch::no_grad(|| model.vae.encoder.features_through(&x, layer, false));
            cut.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(a.equal(&b), "the two paths must give the same features");
        }
        let (w, c) = (median(whole), median(cut));
        writeln!(table, "| {name} | {frames} | {w:.1} | {c:.1} | {:.2}x |", w / c).unwrap();
    }
    print!("{table}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench");
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(format!("{dir}/features.md"), &table);
}
