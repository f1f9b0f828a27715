//! Keypoint baselines that know nothing about objects, so the metric can be shown not to be
//! gameable (issue 6 item 4): uniformly random keypoints, a fixed grid, and the peaks of the
//! frame-difference salience map; plus one that knows where objects start
//! ([`parked_keypoints`]), the best a model can do by never moving its keypoints. All work on
//! 84x84 HWC RGB observations and return `(y, x)` pixel coordinates, `K` per frame.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `K` keypoints drawn uniformly over the `size x size` frame for each of `frames` frames (seeded).
pub fn random_keypoints(frames: usize, k: usize, size: usize, seed: u64) -> Vec<Vec<[f32; 2]>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..frames)
        .map(|_| (0..k).map(|_| [rng.random_range(0.0..(size - 1) as f32), rng.random_range(0.0..(size - 1) as f32)]).collect())
        .collect()
}

/// `K` keypoints at fixed positions: the centres of a `ceil(sqrt K)`-wide grid of cells, row by row.
pub fn grid_keypoints(k: usize, size: usize) -> Vec<[f32; 2]> {
    let side = (k as f64).sqrt().ceil() as usize;
    let cell = size as f32 / side as f32;
    (0..k).map(|i| [(i / side) as f32 * cell + cell / 2.0 - 0.5, (i % side) as f32 * cell + cell / 2.0 - 0.5]).collect()
}

/// `K` keypoints frozen on the objects' start positions (at most `K` of them, the rest on the
/// grid): what a model scores if it learns where objects usually are but never tracks them. High
/// precision with low recall@4 and zero jitter is this baseline's signature.
pub fn parked_keypoints(start_objects: &[[f32; 2]], k: usize, size: usize) -> Vec<[f32; 2]> {
    let mut keypoints: Vec<[f32; 2]> = start_objects.iter().take(k).copied().collect();
    keypoints.extend(grid_keypoints(k, size).into_iter().skip(keypoints.len()));
    keypoints
}

/// Per-pixel salience `|frame_t - frame_{t-1}|` summed over channels (`size x size`).
pub fn frame_difference(previous: &[u8], current: &[u8], channels: usize) -> Vec<f32> {
    previous
        .chunks_exact(channels)
        .zip(current.chunks_exact(channels))
        .map(|(a, b)| a.iter().zip(b).map(|(&x, &y)| (x as f32 - y as f32).abs()).sum())
        .collect()
}

/// The `k` highest peaks of a salience map: repeatedly take the maximum and suppress a
/// `(2 r + 1)^2` window around it (non-maximum suppression). Ties go to the first pixel in
/// row-major order; an all-zero map gives the grid keypoints (nothing moved).
pub fn salience_peaks(salience: &[f32], size: usize, k: usize, suppress_radius: usize) -> Vec<[f32; 2]> {
    let mut map = salience.to_vec();
    let mut peaks = Vec::with_capacity(k);
    for _ in 0..k {
        let (index, &value) = map.iter().enumerate().fold((0, &f32::MIN), |best, (i, v)| if *v > *best.1 { (i, v) } else { best });
        if value <= 0.0 {
            break;
        }
        let (y, x) = (index / size, index % size);
        peaks.push([y as f32, x as f32]);
        for yy in y.saturating_sub(suppress_radius)..(y + suppress_radius + 1).min(size) {
            for xx in x.saturating_sub(suppress_radius)..(x + suppress_radius + 1).min(size) {
                map[yy * size + xx] = f32::MIN;
            }
        }
    }
    let grid = grid_keypoints(k, size);
    peaks.extend(grid.into_iter().skip(peaks.len()));
    peaks
}

/// Frame-difference keypoints for a sequence of observations (the first frame has no previous
/// one and gets the grid).
pub fn frame_difference_keypoints(frames: &[Vec<u8>], size: usize, channels: usize, k: usize) -> Vec<Vec<[f32; 2]>> {
    let mut out = vec![grid_keypoints(k, size)];
    for pair in frames.windows(2) {
        out.push(salience_peaks(&frame_difference(&pair[0], &pair[1], channels), size, k, 4));
    }
    out.truncate(frames.len());
    out
}

/// Frame-difference keypoints for a clip whose first frame follows `previous` (so every frame of
/// the clip has a real difference).
pub fn frame_difference_keypoints_after(previous: &[u8], frames: &[Vec<u8>], size: usize, channels: usize, k: usize) -> Vec<Vec<[f32; 2]>> {
    let mut last = previous;
    frames
        .iter()
        .map(|frame| {
            let peaks = salience_peaks(&frame_difference(last, frame, channels), size, k, 4);
            last = frame;
            peaks
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_positions_are_cell_centres() {
        // K = 4 on 84: 2 x 2 cells of 42 px, centres at 20.5 and 62.5
        assert_eq!(grid_keypoints(4, 84), vec![[20.5, 20.5], [20.5, 62.5], [62.5, 20.5], [62.5, 62.5]]);
        assert_eq!(grid_keypoints(7, 84).len(), 7);
    }

    #[test]
    fn parked_keypoints_take_the_start_objects_then_the_grid() {
        let grid = grid_keypoints(4, 84);
        assert_eq!(parked_keypoints(&[[1.0, 2.0]], 4, 84), vec![[1.0, 2.0], grid[1], grid[2], grid[3]]);
        assert_eq!(parked_keypoints(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], 2, 84), vec![[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(parked_keypoints(&[], 4, 84), grid);
    }

    #[test]
    fn random_keypoints_are_seeded_and_inside() {
        let a = random_keypoints(10, 7, 84, 3);
        assert_eq!(a, random_keypoints(10, 7, 84, 3));
        assert_ne!(a, random_keypoints(10, 7, 84, 4));
        assert!(a.iter().flatten().all(|p| (0.0..=83.0).contains(&p[0]) && (0.0..=83.0).contains(&p[1])));
    }

    #[test]
    fn salience_peaks_find_the_moving_pixels() {
        let size = 10;
        let mut previous = vec![0u8; size * size * 3];
        let mut current = previous.clone();
        current[(2 * size + 3) * 3] = 200; // pixel (2, 3) changes by 200
        current[(7 * size + 8) * 3 + 1] = 100; // pixel (7, 8) by 100
        previous[(7 * size + 8) * 3 + 1] = 0;
        let salience = frame_difference(&previous, &current, 3);
        assert_eq!(salience[2 * size + 3], 200.0);
        let peaks = salience_peaks(&salience, size, 3, 1);
        assert_eq!(peaks[0], [2.0, 3.0]);
        assert_eq!(peaks[1], [7.0, 8.0]);
        assert_eq!(peaks[2], grid_keypoints(3, size)[2], "nothing else moved: the rest come from the grid");
        // suppression: a neighbour of the first peak is not picked
        let mut map = vec![0.0f32; 100];
        map[0] = 5.0;
        map[1] = 4.0;
        map[50] = 3.0;
        assert_eq!(salience_peaks(&map, 10, 2, 1), vec![[0.0, 0.0], [5.0, 0.0]]);
    }

    #[test]
    fn clip_frame_differences_use_the_frame_before_the_clip() {
        let size = 6;
        let blank = vec![0u8; size * size * 3];
        let mut first = blank.clone();
        first[(size + 4) * 3] = 90; // (1, 4) lights up in the first frame of the clip
        let mut second = first.clone();
        second[(3 * size + 2) * 3 + 2] = 50; // (3, 2) lights up in the second
        let peaks = frame_difference_keypoints_after(&blank, &[first.clone(), second.clone()], size, 3, 1);
        assert_eq!(peaks, vec![vec![[1.0, 4.0]], vec![[3.0, 2.0]]]);
        // the sequence version has no previous frame for the first one and falls back to the grid
        assert_eq!(frame_difference_keypoints(&[first, second], size, 3, 1)[0], grid_keypoints(1, size));
    }
}
