//! Dumps recorded random play for offline analysis: `OUT/screens.bin` (N x 210 x 160 x 3 RGB),
//! `OUT/ram.bin` (N x 128) and PNGs of every `EVERY`-th screen.
//!
//! `cargo run --release -p keypoint-metric --example dump_frames -- GAME SEED STEPS EVERY OUT`
use std::io::Write;

use atari::{RomCatalog, SCREEN_HEIGHT, SCREEN_WIDTH};
use keypoint_metric::recording::record_random_play;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (game, seed, steps, every) = (&args[1], args[2].parse()?, args[3].parse()?, args[4].parse::<usize>()?);
    let out = std::path::PathBuf::from(&args[5]);
    std::fs::create_dir_all(&out)?;
    let frames = record_random_play(game, &RomCatalog::discover()?, seed, steps)?;
    let mut screens = std::fs::File::create(out.join("screens.bin"))?;
    let mut ram = std::fs::File::create(out.join("ram.bin"))?;
    for (t, frame) in frames.iter().enumerate() {
        screens.write_all(&frame.screen_rgb)?;
        ram.write_all(&frame.ram)?;
        if every > 0 && t % every == 0 {
            atari::record::write_png(&out.join(format!("{t:05}.png")), &frame.screen_rgb, SCREEN_HEIGHT, SCREEN_WIDTH)?;
        }
    }
    println!("{} frames", frames.len());
    Ok(())
}
