//! Pictures of what the keypoint model does: frames with keypoints overlaid, error maps as heat
//! images, grids of them as PNG and keypoint tracks over an episode as GIF. Plain RGB buffers;
//! encoding goes through `atari::record` (atomic PNG/GIF writers).

use tch::{Kind, Tensor};

/// Distinct marker colours for up to 10 keypoints (then they repeat).
pub const PALETTE: [[u8; 3]; 10] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 190],
];

/// An RGB image.
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    pub height: usize,
    pub width: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(height: usize, width: usize, fill: u8) -> Self {
        Self { height, width, rgb: vec![fill; height * width * 3] }
    }

    /// Copies `tile` with its top-left corner at `(y, x)` (clipped to the canvas).
    pub fn blit(&mut self, tile: &Canvas, y: usize, x: usize) {
        for ty in 0..tile.height.min(self.height.saturating_sub(y)) {
            let n = tile.width.min(self.width.saturating_sub(x)) * 3;
            let dst = ((y + ty) * self.width + x) * 3;
            self.rgb[dst..dst + n].copy_from_slice(&tile.rgb[ty * tile.width * 3..ty * tile.width * 3 + n]);
        }
    }

    pub fn set(&mut self, y: i64, x: i64, colour: [u8; 3]) {
        if y >= 0 && x >= 0 && (y as usize) < self.height && (x as usize) < self.width {
            let at = (y as usize * self.width + x as usize) * 3;
            self.rgb[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// A plus-shaped marker of arm length `arm` with a dark outline, centred at `(y, x)`.
    pub fn marker(&mut self, y: f64, x: f64, arm: i64, colour: [u8; 3]) {
        let (cy, cx) = (y.round() as i64, x.round() as i64);
        for d in -arm - 1..=arm + 1 {
            for o in [-1, 1] {
                self.set(cy + d, cx + o, [0, 0, 0]);
                self.set(cy + o, cx + d, [0, 0, 0]);
            }
        }
        for d in -arm..=arm {
            self.set(cy + d, cx, colour);
            self.set(cy, cx + d, colour);
        }
    }

    /// Nearest-neighbour upscaling by an integer factor.
    pub fn upscale(&self, scale: usize) -> Canvas {
        let mut out = Canvas::new(self.height * scale, self.width * scale, 0);
        for y in 0..out.height {
            for x in 0..out.width {
                let src = ((y / scale) * self.width + x / scale) * 3;
                let dst = (y * out.width + x) * 3;
                out.rgb[dst..dst + 3].copy_from_slice(&self.rgb[src..src + 3]);
            }
        }
        out
    }
}

/// A `3 x H x W` float frame in `[0, 1]` (one item of a batch) as a canvas.
pub fn frame_canvas(frame: &Tensor) -> Canvas {
    let size = frame.size();
    let (h, w) = (size[1] as usize, size[2] as usize);
    let bytes = (frame.clamp(0.0, 1.0) * 255.0).round().to_kind(Kind::Uint8).permute([1, 2, 0]).contiguous();
    Canvas { height: h, width: w, rgb: Vec::<u8>::try_from(bytes.flatten(0, -1)).expect("u8 frame") }
}

/// A `H x W` map as a heat image (black -> red -> yellow -> white), scaled by its own range.
pub fn heat_canvas(map: &Tensor) -> Canvas {
    let size = map.size();
    let (h, w) = (size[0] as usize, size[1] as usize);
    let map = map.to_kind(Kind::Float);
    let (low, high) = (map.min().double_value(&[]), map.max().double_value(&[]));
    let values = Vec::<f32>::try_from(map.flatten(0, -1)).expect("float map");
    let range = if high > low { high - low } else { 1.0 };
    let mut canvas = Canvas::new(h, w, 0);
    for (i, v) in values.iter().enumerate() {
        canvas.rgb[i * 3..i * 3 + 3].copy_from_slice(&heat_colour(((*v as f64 - low) / range) as f32));
    }
    canvas
}

/// The heat colour of `t` in `[0, 1]`.
pub fn heat_colour(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0) * 3.0;
    let r = (t.min(1.0) * 255.0) as u8;
    let g = ((t - 1.0).clamp(0.0, 1.0) * 255.0) as u8;
    let b = ((t - 2.0).clamp(0.0, 1.0) * 255.0) as u8;
    [r, g, b]
}

/// Draws `centres` (`K x 2`, `(y, x)` in `[-1, 1]`) on `canvas`, whose side spans the grid.
pub fn draw_keypoints(canvas: &mut Canvas, centres: &Tensor) {
    let values = Vec::<f32>::try_from(centres.to_kind(Kind::Float).flatten(0, -1)).expect("float centres");
    let arm = (canvas.height / 60).max(1) as i64;
    for (k, pair) in values.chunks_exact(2).enumerate() {
        let y = (pair[0] as f64 + 1.0) * (canvas.height as f64 - 1.0) / 2.0;
        let x = (pair[1] as f64 + 1.0) * (canvas.width as f64 - 1.0) / 2.0;
        canvas.marker(y, x, arm, PALETTE[k % PALETTE.len()]);
    }
}

/// Lays out rows of equally sized tiles with a 2-px white gap.
pub fn grid(rows: &[Vec<Canvas>]) -> Canvas {
    let gap = 2;
    let (th, tw) = (rows[0][0].height, rows[0][0].width);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1);
    let mut out = Canvas::new(rows.len() * (th + gap) - gap, cols * (tw + gap) - gap, 255);
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            out.blit(tile, r * (th + gap), c * (tw + gap));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn frames_and_keypoints_land_where_expected() {
        let frame = Tensor::zeros([3, 9, 9], (Kind::Float, Device::Cpu));
        let mut canvas = frame_canvas(&frame);
        assert_eq!((canvas.height, canvas.width, canvas.rgb.len()), (9, 9, 243));
        // (0, 0) in grid units is the centre pixel (4, 4)
        draw_keypoints(&mut canvas, &Tensor::from_slice(&[0.0f32, 0.0]).view([1, 2]));
        assert_eq!(&canvas.rgb[(4 * 9 + 4) * 3..(4 * 9 + 4) * 3 + 3], &PALETTE[0]);
        // (-1, 1) is the top-right corner
        let mut canvas = frame_canvas(&frame);
        draw_keypoints(&mut canvas, &Tensor::from_slice(&[-1.0f32, 1.0]).view([1, 2]));
        assert_eq!(&canvas.rgb[(0 * 9 + 8) * 3..(0 * 9 + 8) * 3 + 3], &PALETTE[0]);
    }

    #[test]
    fn heat_colours_span_black_to_white() {
        assert_eq!(heat_colour(0.0), [0, 0, 0]);
        assert_eq!(heat_colour(1.0), [255, 255, 255]);
        let map = Tensor::from_slice(&[0.0f32, 2.0]).view([1, 2]);
        let canvas = heat_canvas(&map);
        assert_eq!(&canvas.rgb[..3], &[0, 0, 0]);
        assert_eq!(&canvas.rgb[3..], &[255, 255, 255]);
    }

    #[test]
    fn grid_places_tiles_with_gaps() {
        let a = Canvas::new(2, 2, 10);
        let g = grid(&[vec![a.clone(), a.clone()], vec![a]]);
        assert_eq!((g.height, g.width), (6, 6));
        assert_eq!(g.rgb[0], 10);
        assert_eq!(g.rgb[(0 * 6 + 2) * 3], 255, "gap column");
        assert_eq!(g.rgb[(4 * 6 + 4) * 3], 255, "missing tile stays white");
    }
}
