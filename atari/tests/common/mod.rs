#![allow(dead_code)]
use atari::RomCatalog;

pub fn roms() -> RomCatalog {
    RomCatalog::discover().expect("ROMs installed by `make setup`")
}

/// A tiny deterministic generator for action sequences shared with the Python side.
pub fn actions(seed: u64, n: usize, num_actions: usize) -> Vec<usize> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % num_actions as u64) as usize
        })
        .collect()
}
