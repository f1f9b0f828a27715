//! Writes `docs/keypoint-metric/<game>.png`: four recorded raw screens (2x) side by side, the
//! RAM-mapped centre of each object listed as visible marked by a white cross with a black
//! outline.
//!
//! `cargo run -p keypoint-metric --example overlays`
use std::path::Path;

use atari::{RomCatalog, SCREEN_HEIGHT, SCREEN_WIDTH};
use keypoint_metric::ram::{Game, object_positions};
use keypoint_metric::recording::record_random_play;

const SCALE: usize = 2;

fn put(image: &mut [u8], width: usize, y: isize, x: isize, rgb: [u8; 3]) {
    if y >= 0 && x >= 0 && (y as usize) < SCREEN_HEIGHT * SCALE && (x as usize) < width {
        let offset = (y as usize * width + x as usize) * 3;
        image[offset..offset + 3].copy_from_slice(&rgb);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let roms = RomCatalog::discover()?;
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/keypoint-metric");
    std::fs::create_dir_all(&out_dir)?;
    for game in Game::ALL {
        // (seed, frames shown, ascending): BattleZone's show a mirrored tank (40) and both tanks
        // (400); Frostbite's a jump (16) and a sinking player, left out of ground truth (50)
        let (seed, picks) = match game {
            Game::BattleZone => (3, [40, 150, 330, 400]),
            Game::Frostbite => (7, [16, 50, 100, 170]),
            _ => (7, [60, 150, 240, 330]),
        };
        let frames = record_random_play(game.id(), &roms, seed, picks[picks.len() - 1] + 1)?;
        let (tile_w, tile_h) = (SCREEN_WIDTH * SCALE, SCREEN_HEIGHT * SCALE);
        let width = tile_w * picks.len();
        let mut image = vec![0u8; width * tile_h * 3];
        for (tile, &pick) in picks.iter().enumerate() {
            let frame = &frames[pick];
            for y in 0..tile_h {
                for x in 0..tile_w {
                    let rgb = frame.pixel(y / SCALE, x / SCALE);
                    put(&mut image, width, y as isize, (tile * tile_w + x) as isize, rgb);
                }
            }
            for position in object_positions(game, &frame.ram) {
                let cy = (position.y * SCALE as f32).round() as isize;
                let cx = (position.x * SCALE as f32).round() as isize + (tile * tile_w) as isize;
                for (colour, half_width) in [([0, 0, 0], 1isize), ([255, 255, 255], 0)] {
                    for d in -6isize..=6 {
                        for w in -half_width..=half_width {
                            put(&mut image, width, cy + d, cx + w, colour);
                            put(&mut image, width, cy + w, cx + d, colour);
                        }
                    }
                }
            }
        }
        let path = out_dir.join(format!("{}.png", game.id()));
        atari::record::write_png(&path, &image, tile_h, width)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
