//! Observation pre-processing as pure functions over caller-owned buffers (no allocation per frame):
//! palette lookup with the max over two frames, and area-interpolation resizing.

/// Converts two palette-index screens to colour through `palette` and keeps the pixel-wise max
/// (baselines `MaxAndSkipEnv` takes the max over RGB values, not over indices).
/// `out` holds `indices.len() * C` bytes.
pub fn palette_max<const C: usize>(first: &[u8], second: &[u8], palette: &[[u8; C]; 256], out: &mut [u8]) {
    debug_assert_eq!(first.len(), second.len());
    debug_assert_eq!(out.len(), first.len() * C);
    for ((pixel, &a), &b) in out.chunks_exact_mut(C).zip(first).zip(second) {
        let (pa, pb) = (&palette[a as usize], &palette[b as usize]);
        for c in 0..C {
            pixel[c] = pa[c].max(pb[c]);
        }
    }
}

/// Converts one palette-index screen to colour.
pub fn palette_apply<const C: usize>(indices: &[u8], palette: &[[u8; C]; 256], out: &mut [u8]) {
    debug_assert_eq!(out.len(), indices.len() * C);
    for (pixel, &a) in out.chunks_exact_mut(C).zip(indices) {
        pixel.copy_from_slice(&palette[a as usize]);
    }
}

/// Source taps of one output index: `(first source index, weights)`.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Area-interpolation weights along one axis, as OpenCV's `INTER_AREA` computes them for a
/// shrink by `src / dst`: output cell `d` covers source span `[d * s, (d + 1) * s)`; each source
/// pixel weighs its overlap with that span divided by the span's width.
fn area_taps(src: usize, dst: usize) -> Vec<Taps> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f1 = d as f64 * scale;
            let f2 = f1 + scale;
            let cell = scale.min(src as f64 - f1);
            let mut s1 = f1.ceil() as usize;
            let s2 = (f2.floor() as usize).min(src - 1);
            s1 = s1.min(s2);
            let mut start = s1;
            let mut weights = Vec::new();
            if s1 as f64 - f1 > 1e-3 {
                start = s1 - 1;
                weights.push(((s1 as f64 - f1) / cell) as f32);
            }
            for _ in s1..s2 {
                weights.push((1.0 / cell) as f32);
            }
            if f2 - s2 as f64 > 1e-3 {
                weights.push(((f2 - s2 as f64).min(1.0).min(cell) / cell) as f32);
            }
            Taps { start, weights }
        })
        .collect()
}

/// Bilinear-free area resizer of `C`-channel u8 images, precomputed for one size pair.
/// Enlarging is not supported (the Atari screen only ever shrinks here).
#[derive(Debug, Clone)]
pub struct AreaResizer {
    src_h: usize,
    src_w: usize,
    dst_h: usize,
    dst_w: usize,
    channels: usize,
    rows: Vec<Taps>,
    cols: Vec<Taps>,
    /// Horizontal pass output: `src_h x dst_w x channels` floats.
    scratch: Vec<f32>,
}

impl AreaResizer {
    pub fn new(src_h: usize, src_w: usize, dst_h: usize, dst_w: usize, channels: usize) -> Self {
        assert!(dst_h <= src_h && dst_w <= src_w && dst_h > 0 && dst_w > 0, "area resize only shrinks");
        Self {
            src_h,
            src_w,
            dst_h,
            dst_w,
            channels,
            rows: area_taps(src_h, dst_h),
            cols: area_taps(src_w, dst_w),
            scratch: vec![0.0; src_h * dst_w * channels],
        }
    }

    pub fn is_identity(&self) -> bool {
        self.src_h == self.dst_h && self.src_w == self.dst_w
    }

    /// Resizes `src` (`src_h x src_w x C`, row-major HWC) into `dst` (`dst_h x dst_w x C`);
    /// values are rounded to nearest, like OpenCV's saturate cast.
    pub fn resize(&mut self, src: &[u8], dst: &mut [u8]) {
        let c = self.channels;
        debug_assert_eq!(src.len(), self.src_h * self.src_w * c);
        debug_assert_eq!(dst.len(), self.dst_h * self.dst_w * c);
        if self.is_identity() {
            dst.copy_from_slice(src);
            return;
        }
        for y in 0..self.src_h {
            let row = &src[y * self.src_w * c..(y + 1) * self.src_w * c];
            let out = &mut self.scratch[y * self.dst_w * c..(y + 1) * self.dst_w * c];
            for (dx, taps) in self.cols.iter().enumerate() {
                for ch in 0..c {
                    let mut acc = 0.0f32;
                    for (k, &w) in taps.weights.iter().enumerate() {
                        acc += w * row[(taps.start + k) * c + ch] as f32;
                    }
                    out[dx * c + ch] = acc;
                }
            }
        }
        let width = self.dst_w * c;
        for (dy, taps) in self.rows.iter().enumerate() {
            let out = &mut dst[dy * width..(dy + 1) * width];
            for (i, value) in out.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for (k, &w) in taps.weights.iter().enumerate() {
                    acc += w * self.scratch[(taps.start + k) * width + i];
                }
                *value = acc.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_of_an_integer_shrink_are_plain_means() {
        let taps = area_taps(4, 2);
        assert_eq!(taps, vec![Taps { start: 0, weights: vec![0.5, 0.5] }, Taps { start: 2, weights: vec![0.5, 0.5] }]);
    }

    #[test]
    fn taps_of_a_fractional_shrink_match_hand_computed_overlaps() {
        // 5 -> 2: scale 2.5. Cell 0 covers [0, 2.5): pixels 0, 1 fully, pixel 2 by half -> 1/2.5 each, 0.5/2.5.
        // Cell 1 covers [2.5, 5): pixel 2 by half, pixels 3, 4 fully.
        let taps = area_taps(5, 2);
        assert_eq!(taps[0].start, 0);
        assert_eq!(taps[0].weights, vec![0.4, 0.4, 0.2]);
        assert_eq!(taps[1].start, 2);
        assert_eq!(taps[1].weights, vec![0.2, 0.4, 0.4]);
        for t in area_taps(210, 84).iter().chain(area_taps(160, 84).iter()) {
            let sum: f32 = t.weights.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "weights sum to {sum}");
        }
    }

    #[test]
    fn resize_averages_areas() {
        // 2x4 single-channel image shrunk to 1x2: means of 2x2 blocks.
        let src = [0u8, 10, 100, 200, 20, 30, 50, 50];
        let mut dst = [0u8; 2];
        AreaResizer::new(2, 4, 1, 2, 1).resize(&src, &mut dst);
        assert_eq!(dst, [15, 100]);
        // a constant image stays constant through a fractional shrink
        let src = vec![77u8; 210 * 160 * 3];
        let mut dst = vec![0u8; 84 * 84 * 3];
        AreaResizer::new(210, 160, 84, 84, 3).resize(&src, &mut dst);
        assert!(dst.iter().all(|&v| v == 77));
    }

    #[test]
    fn palette_max_takes_the_channel_wise_max() {
        let mut palette = [[0u8; 3]; 256];
        palette[1] = [200, 0, 10];
        palette[2] = [100, 50, 20];
        let mut out = [0u8; 6];
        palette_max(&[1, 0], &[2, 2], &palette, &mut out);
        assert_eq!(out, [200, 50, 20, 100, 50, 20]);
    }
}
