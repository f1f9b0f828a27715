//! Synthetic scenes with known object positions, for the keypoint models' learning tests:
//! a few moving coloured sprites on a fixed, mildly textured background, plus an optional moving
//! distractor bar like "Noisy Atari"'s (spec section 1.3).
//!
//! Decisions:
//! - Frames are `size x size x 3` uint8 HWC (84 by default), like the Atari observations, so the
//!   same [`crate::model::frames_to_tensor`] path feeds them to a model.
//! - Sprites are solid squares or discs (`sprite_size` px, 7 by default) in fixed, saturated
//!   colours ([`SPRITE_COLOURS`]: sprite `k` always has colour `k`, like an Atari object class).
//!   Each moves with a constant velocity (random direction, speed uniform in
//!   `[min_speed, max_speed]` px per frame) and bounces off the frame's edges, so it never leaves
//!   the frame. They start apart but may overlap later; later sprites are drawn on top.
//! - Positions are kept as floats and drawn at the rounded top-left pixel. A sprite's centre is
//!   `top_left + (sprite_size - 1) / 2` in pixel coordinates **`(y, x)`**, the order of
//!   [`crate::keypoints`]; [`pixels_to_unit`] maps them to the `[-1, 1]` keypoint range.
//!   For odd sizes the centre is a pixel; for even sizes it is a pixel corner and the pixel at
//!   its floor belongs to the sprite.
//! - The background is the same for every frame and every scene of a config (it depends only on
//!   `background_seed`): dark blue-grey, diagonal stripes 3 px wide plus a fixed random offset per
//!   4x4 cell, both within `background_contrast` (10 by default, at most 40). It is regular enough
//!   for local spatial prediction, and it never takes a sprite's or the bar's colour.
//! - The distractor is off by default. `bar` picks vertical, horizontal or both bars, 5 px wide, in
//!   the violet of [`atari::noise::BAR_RGB`], painted over everything; with [`BarMotion::Smooth`]
//!   they slide at `bar_speed` px per frame and bounce, with [`BarMotion::Jump`] they are drawn
//!   anew every frame exactly as Noisy Atari does ([`atari::noise::draw_bars`]). Bar positions
//!   range over `0..=size - 6`, as there.
//! - Everything is seeded: a scene is a function of `(config, seed, stream)`.
//!
//! ```no_run
//! use permakey::synthetic::{SyntheticConfig, SyntheticScene};
//! let config = SyntheticConfig::default();
//! let mut scene = SyntheticScene::new(&config, 7)?;
//! let mut frame = vec![0u8; config.frame_len()];
//! let truth = scene.next_frame(&mut frame);
//! assert_eq!(truth.sprite_centres.len(), 3);
//! # Ok::<(), permakey::dataset::DatasetError>(())
//! ```

use atari::{
    NoiseType,
    noise::{BAR_WIDTH, Bars, draw_bars, paint_bars},
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::{dataset::DatasetError, model::frames_to_tensor};

pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

/// Sprite colours, by sprite index: each has a red or green channel of at least 200, which the
/// background (channels at most 136) and the violet bar never have.
pub const SPRITE_COLOURS: [[u8; 3]; 8] = [
    [230, 50, 50],   // red
    [60, 210, 70],   // green
    [240, 220, 50],  // yellow
    [50, 210, 230],  // cyan
    [250, 140, 30],  // orange
    [240, 240, 240], // white
    [230, 80, 200],  // pink
    [150, 255, 150], // light green
];

/// Mean background colour; the texture adds the same offset in `[-contrast, contrast]` to every channel.
const BACKGROUND_RGB: [u8; 3] = [70, 72, 96];

/// Sprite outline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpriteShape {
    #[default]
    Square,
    Disc,
}

/// How the distractor bars move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BarMotion {
    /// Slides `bar_speed` px per frame and bounces off the edges.
    #[default]
    Smooth,
    /// A new uniform position every frame (spec 1.3).
    Jump,
}

/// Settings of a synthetic scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Frame height and width in pixels.
    pub frame_size: usize,
    /// Moving sprites (at most 8, one per colour).
    pub num_sprites: usize,
    /// Sprite height and width in pixels.
    pub sprite_size: usize,
    pub sprite_shape: SpriteShape,
    /// Sprite speed range in pixels per frame.
    pub min_speed: f32,
    pub max_speed: f32,
    /// Amplitude of the background texture (0 = flat).
    pub background_contrast: u8,
    /// Seeds the background texture (shared by every scene of the config).
    pub background_seed: u64,
    /// Which distractor bars to draw (`none` by default).
    pub bar: NoiseType,
    pub bar_motion: BarMotion,
    /// Bar speed in pixels per frame for [`BarMotion::Smooth`].
    pub bar_speed: f32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            frame_size: 84,
            num_sprites: 3,
            sprite_size: 7,
            sprite_shape: SpriteShape::Square,
            min_speed: 1.0,
            max_speed: 2.5,
            background_contrast: 10,
            background_seed: 0,
            bar: NoiseType::None,
            bar_motion: BarMotion::Smooth,
            bar_speed: 1.5,
        }
    }
}

impl SyntheticConfig {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(DatasetError::Config(msg));
        if !(16..=512).contains(&self.frame_size) {
            return bad(format!("frame_size must be in 16..=512, got {}", self.frame_size));
        }
        if !(1..=SPRITE_COLOURS.len()).contains(&self.num_sprites) {
            return bad(format!("num_sprites must be in 1..={}, got {}", SPRITE_COLOURS.len(), self.num_sprites));
        }
        if !(2..=self.frame_size / 4).contains(&self.sprite_size) {
            return bad(format!(
                "sprite_size must be in 2..={} (a quarter of the frame), got {}",
                self.frame_size / 4,
                self.sprite_size
            ));
        }
        let limit = (self.frame_size - self.sprite_size) as f32;
        if !(self.min_speed >= 0.0 && self.min_speed <= self.max_speed && self.max_speed < limit) {
            return bad(format!(
                "min_speed and max_speed must satisfy 0 <= min_speed <= max_speed < {limit}, got {} and {}",
                self.min_speed, self.max_speed
            ));
        }
        if self.background_contrast > 40 {
            return bad(format!("background_contrast must be at most 40, got {}", self.background_contrast));
        }
        let bar_limit = (self.frame_size - BAR_WIDTH - 1) as f32;
        if !(self.bar_speed >= 0.0 && self.bar_speed < bar_limit) {
            return bad(format!("bar_speed must be in [0, {bar_limit}), got {}", self.bar_speed));
        }
        Ok(())
    }

    /// Bytes of one frame (`size x size x 3`).
    pub fn frame_len(&self) -> usize {
        self.frame_size * self.frame_size * 3
    }

    /// The fixed background image (HWC).
    pub fn background(&self) -> Vec<u8> {
        let size = self.frame_size;
        let contrast = self.background_contrast as i32;
        let cells = size.div_ceil(4);
        let mut rng = ChaCha8Rng::seed_from_u64(self.background_seed ^ 0x4241_434B_4752_4F55);
        let cell_offsets: Vec<i32> = (0..cells * cells)
            .map(|_| if contrast > 0 { rng.random_range(-contrast / 2..=contrast / 2) } else { 0 })
            .collect();
        let mut image = vec![0u8; self.frame_len()];
        for y in 0..size {
            for x in 0..size {
                let stripe = if (x + y) / 3 % 2 == 0 { contrast - contrast / 2 } else { -(contrast / 2) };
                let offset = stripe + cell_offsets[(y / 4) * cells + x / 4];
                let at = (y * size + x) * 3;
                for (channel, base) in BACKGROUND_RGB.iter().enumerate() {
                    image[at + channel] = (*base as i32 + offset).clamp(0, 255) as u8;
                }
            }
        }
        image
    }
}

/// What one frame shows.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameTruth {
    /// Sprite centres `(y, x)` in pixels, by sprite index (sprite `k` has `SPRITE_COLOURS[k]`).
    pub sprite_centres: Vec<[f32; 2]>,
    /// Whether the pixel under each centre shows its sprite (not covered by a later sprite or a bar).
    pub centre_visible: Vec<bool>,
    /// Where the distractor bars are (left column / top row), if drawn.
    pub bars: Bars,
}

#[derive(Debug, Clone, Copy)]
struct Sprite {
    /// Top-left corner `(y, x)`, continuous.
    position: [f32; 2],
    velocity: [f32; 2],
}

/// One evolving scene; see the module docs.
#[derive(Debug, Clone)]
pub struct SyntheticScene {
    config: SyntheticConfig,
    background: Vec<u8>,
    sprites: Vec<Sprite>,
    /// Smooth bars: `(x of the vertical bar, y of the horizontal bar)` and their velocities.
    bar_position: [f32; 2],
    bar_velocity: [f32; 2],
    /// The bars of the current frame.
    bars: Bars,
    rng: ChaCha8Rng,
}

/// Moves `position` by `velocity` inside `[0, limit]`, reflecting off either end.
fn bounce(position: &mut f32, velocity: &mut f32, limit: f32) {
    *position += *velocity;
    if *position < 0.0 {
        *position = -*position;
        *velocity = -*velocity;
    }
    if *position > limit {
        *position = 2.0 * limit - *position;
        *velocity = -*velocity;
    }
    *position = position.clamp(0.0, limit);
}

impl SyntheticScene {
    /// The scene of `(config, seed)`: stream 0 of [`SyntheticScene::with_stream`].
    pub fn new(config: &SyntheticConfig, seed: u64) -> Result<Self> {
        Self::with_stream(config, seed, 0)
    }

    /// A scene seeded by `seed` and an independent `stream` (e.g. the index inside a batch).
    pub fn with_stream(config: &SyntheticConfig, seed: u64, stream: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        let size = config.frame_size;
        let limit = (size - config.sprite_size) as f32;
        let mut sprites: Vec<Sprite> = Vec::with_capacity(config.num_sprites);
        let apart = config.sprite_size as f32 + 2.0;
        for _ in 0..config.num_sprites {
            // start apart where there is room (up to 100 tries), else anywhere
            let mut position = [0.0; 2];
            for _ in 0..100 {
                position = [rng.random_range(0.0..=limit), rng.random_range(0.0..=limit)];
                let clear = sprites.iter().all(|s| {
                    (s.position[0] - position[0]).abs() >= apart || (s.position[1] - position[1]).abs() >= apart
                });
                if clear {
                    break;
                }
            }
            let angle = rng.random_range(0.0..std::f32::consts::TAU);
            let speed = if config.max_speed > config.min_speed {
                rng.random_range(config.min_speed..=config.max_speed)
            } else {
                config.min_speed
            };
            sprites.push(Sprite { position, velocity: [speed * angle.sin(), speed * angle.cos()] });
        }
        let bar_limit = (size - BAR_WIDTH - 1) as f32;
        let bar_position = [rng.random_range(0.0..=bar_limit), rng.random_range(0.0..=bar_limit)];
        let sign = |rng: &mut ChaCha8Rng| if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let bar_velocity = [sign(&mut rng) * config.bar_speed, sign(&mut rng) * config.bar_speed];
        let mut scene = Self {
            config: config.clone(),
            background: config.background(),
            sprites,
            bar_position,
            bar_velocity,
            bars: Bars::default(),
            rng,
        };
        scene.bars = scene.current_bars(true);
        Ok(scene)
    }

    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    fn current_bars(&mut self, draw_jump: bool) -> Bars {
        let noise = self.config.bar;
        let size = self.config.frame_size;
        match self.config.bar_motion {
            BarMotion::Jump if draw_jump => draw_bars(noise, size, size, &mut self.rng),
            BarMotion::Jump => self.bars,
            BarMotion::Smooth => Bars {
                vertical_x: matches!(noise, NoiseType::Vertical | NoiseType::Both)
                    .then(|| self.bar_position[0].round() as usize),
                horizontal_y: matches!(noise, NoiseType::Horizontal | NoiseType::Both)
                    .then(|| self.bar_position[1].round() as usize),
            },
        }
    }

    /// Top-left pixel `(y, x)` of sprite `k` as drawn.
    fn sprite_pixel(&self, k: usize) -> [usize; 2] {
        let limit = self.config.frame_size - self.config.sprite_size;
        self.sprites[k].position.map(|p| (p.round() as usize).min(limit))
    }

    /// Whether offset `(dy, dx)` inside a sprite's box is part of the sprite.
    fn covers(&self, dy: usize, dx: usize) -> bool {
        match self.config.sprite_shape {
            SpriteShape::Square => true,
            SpriteShape::Disc => {
                let c = (self.config.sprite_size as f32 - 1.0) / 2.0;
                let r = self.config.sprite_size as f32 / 2.0;
                (dy as f32 - c).powi(2) + (dx as f32 - c).powi(2) <= r * r
            }
        }
    }

    /// Draws the current state into `out` (`frame_len()` bytes) and says what it shows.
    pub fn render(&self, out: &mut [u8]) -> FrameTruth {
        assert_eq!(out.len(), self.config.frame_len(), "frame buffer size");
        let size = self.config.frame_size;
        let s = self.config.sprite_size;
        out.copy_from_slice(&self.background);
        let mut sprite_centres = Vec::with_capacity(self.sprites.len());
        for (k, colour) in SPRITE_COLOURS.iter().enumerate().take(self.sprites.len()) {
            let [top, left] = self.sprite_pixel(k);
            for dy in 0..s {
                for dx in 0..s {
                    if self.covers(dy, dx) {
                        let at = ((top + dy) * size + left + dx) * 3;
                        out[at..at + 3].copy_from_slice(colour);
                    }
                }
            }
            let half = (s as f32 - 1.0) / 2.0;
            sprite_centres.push([top as f32 + half, left as f32 + half]);
        }
        paint_bars(self.bars, out, size, size, 3);
        let centre_visible = sprite_centres
            .iter()
            .enumerate()
            .map(|(k, [y, x])| {
                let at = (*y as usize * size + *x as usize) * 3;
                out[at..at + 3] == SPRITE_COLOURS[k]
            })
            .collect();
        FrameTruth { sprite_centres, centre_visible, bars: self.bars }
    }

    /// Advances sprites and bars by one frame.
    pub fn step(&mut self) {
        let limit = (self.config.frame_size - self.config.sprite_size) as f32;
        for sprite in &mut self.sprites {
            for axis in 0..2 {
                bounce(&mut sprite.position[axis], &mut sprite.velocity[axis], limit);
            }
        }
        let bar_limit = (self.config.frame_size - BAR_WIDTH - 1) as f32;
        for axis in 0..2 {
            bounce(&mut self.bar_position[axis], &mut self.bar_velocity[axis], bar_limit);
        }
        self.bars = self.current_bars(true);
    }

    /// Renders the current frame into `out`, then steps.
    pub fn next_frame(&mut self, out: &mut [u8]) -> FrameTruth {
        let truth = self.render(out);
        self.step();
        truth
    }
}

/// Consecutive frames of one scene.
#[derive(Debug, Clone)]
pub struct SyntheticSequence {
    /// `N x size x size x 3` bytes.
    pub frames: Vec<u8>,
    pub truths: Vec<FrameTruth>,
}

/// The first `num_frames` frames of the scene `(config, seed)`.
pub fn generate_sequence(config: &SyntheticConfig, seed: u64, num_frames: usize) -> Result<SyntheticSequence> {
    let mut scene = SyntheticScene::new(config, seed)?;
    let len = config.frame_len();
    let mut frames = vec![0u8; num_frames * len];
    let truths = frames.chunks_exact_mut(len).map(|frame| scene.next_frame(frame)).collect();
    Ok(SyntheticSequence { frames, truths })
}

/// A batch of frames with their ground truth.
#[derive(Debug)]
pub struct SyntheticBatch {
    /// `B x 3 x size x size` float in `[0, 1]`.
    pub frames: Tensor,
    /// `B x num_sprites x 2` sprite centres `(y, x)` in pixels, float.
    pub centres: Tensor,
    pub truths: Vec<FrameTruth>,
}

/// A batch of (source, target) frame pairs of the same scenes, for the Transporter.
#[derive(Debug)]
pub struct SyntheticPairBatch {
    pub source: SyntheticBatch,
    pub target: SyntheticBatch,
}

fn to_batch(frames: &[u8], truths: Vec<FrameTruth>, config: &SyntheticConfig, device: Device) -> SyntheticBatch {
    let b = truths.len() as i64;
    let size = config.frame_size as i64;
    let centres: Vec<f32> = truths.iter().flat_map(|t| t.sprite_centres.iter().flatten().copied()).collect();
    SyntheticBatch {
        frames: frames_to_tensor(frames, b, size, size, 3, device),
        centres: Tensor::from_slice(&centres).view([b, config.num_sprites as i64, 2]).to_device(device),
        truths,
    }
}

/// `batch_size` independent scenes (`(seed, i)` for item `i`), each at its first frame.
pub fn synthetic_batch(
    config: &SyntheticConfig,
    seed: u64,
    batch_size: usize,
    device: Device,
) -> Result<SyntheticBatch> {
    let len = config.frame_len();
    let mut frames = vec![0u8; batch_size * len];
    let mut truths = Vec::with_capacity(batch_size);
    for (i, frame) in frames.chunks_exact_mut(len).enumerate() {
        truths.push(SyntheticScene::with_stream(config, seed, i as u64)?.render(frame));
    }
    Ok(to_batch(&frames, truths, config, device))
}

/// `batch_size` independent scenes, each giving a source frame at time `t1 ~ U{0..48}` and a target
/// at `t2 ~ U{50..98}` (the Transporter's pair sampling, spec 1.1).
pub fn synthetic_pair_batch(
    config: &SyntheticConfig,
    seed: u64,
    batch_size: usize,
    device: Device,
) -> Result<SyntheticPairBatch> {
    let len = config.frame_len();
    let mut times = ChaCha8Rng::seed_from_u64(seed ^ 0x5041_4952);
    let (mut source, mut target) = (vec![0u8; batch_size * len], vec![0u8; batch_size * len]);
    let (mut source_truths, mut target_truths) = (Vec::with_capacity(batch_size), Vec::with_capacity(batch_size));
    for i in 0..batch_size {
        let mut scene = SyntheticScene::with_stream(config, seed, i as u64)?;
        let t1 = times.random_range(0..=48);
        let t2 = times.random_range(50..=98);
        for t in 0..=t2 {
            if t == t1 {
                source_truths.push(scene.render(&mut source[i * len..(i + 1) * len]));
            }
            if t == t2 {
                target_truths.push(scene.render(&mut target[i * len..(i + 1) * len]));
            }
            scene.step();
        }
    }
    Ok(SyntheticPairBatch {
        source: to_batch(&source, source_truths, config, device),
        target: to_batch(&target, target_truths, config, device),
    })
}

/// Pixel coordinates on a `size x size` frame to the `[-1, 1]` keypoint range of
/// [`crate::keypoints`] (the inverse of [`crate::keypoints::to_pixels`]).
pub fn pixels_to_unit(centres: &Tensor, size: i64) -> Tensor {
    centres / ((size - 1) as f64 / 2.0) - 1.0
}

#[cfg(test)]
mod tests {
    use atari::noise::BAR_RGB;
    use tch::Kind;

    use super::*;

    fn pixel(frame: &[u8], size: usize, y: usize, x: usize) -> [u8; 3] {
        let at = (y * size + x) * 3;
        [frame[at], frame[at + 1], frame[at + 2]]
    }

    #[test]
    fn scenes_are_deterministic_per_seed() {
        let config = SyntheticConfig { bar: NoiseType::Both, bar_motion: BarMotion::Jump, ..Default::default() };
        let a = generate_sequence(&config, 3, 40).unwrap();
        let b = generate_sequence(&config, 3, 40).unwrap();
        assert_eq!(a.frames, b.frames);
        assert_eq!(a.truths, b.truths);
        let c = generate_sequence(&config, 4, 40).unwrap();
        assert_ne!(a.frames, c.frames);
        assert_ne!(a.truths[0].sprite_centres, c.truths[0].sprite_centres);
    }

    #[test]
    fn centres_lie_on_their_sprites_and_sprites_stay_inside() {
        for shape in [SpriteShape::Square, SpriteShape::Disc] {
            for sprite_size in [6, 7, 8] {
                let config = SyntheticConfig { sprite_shape: shape, sprite_size, max_speed: 4.0, ..Default::default() };
                let size = config.frame_size;
                let half = (sprite_size as f32 - 1.0) / 2.0;
                let sequence = generate_sequence(&config, sprite_size as u64, 300).unwrap();
                let (mut visible, mut total) = (0, 0);
                for (frame, truth) in sequence.frames.chunks_exact(config.frame_len()).zip(&sequence.truths) {
                    for (k, [y, x]) in truth.sprite_centres.iter().enumerate() {
                        assert!(*y >= half && *y <= (size - 1) as f32 - half, "{shape:?} {sprite_size}: y {y}");
                        assert!(*x >= half && *x <= (size - 1) as f32 - half, "{shape:?} {sprite_size}: x {x}");
                        let on_sprite = pixel(frame, size, *y as usize, *x as usize) == SPRITE_COLOURS[k];
                        assert_eq!(on_sprite, truth.centre_visible[k]);
                        visible += on_sprite as usize;
                        total += 1;
                    }
                }
                // only overlaps hide a centre (no bar here)
                assert!(visible * 10 >= total * 9, "{shape:?} {sprite_size}: {visible} of {total} centres visible");
            }
        }
    }

    #[test]
    fn sprites_have_the_right_area_and_the_background_is_fixed() {
        let config = SyntheticConfig { num_sprites: 2, ..Default::default() };
        let background = config.background();
        let size = config.frame_size;
        let sequence = generate_sequence(&config, 9, 200).unwrap();
        let mut checked = 0;
        for (frame, truth) in sequence.frames.chunks_exact(config.frame_len()).zip(&sequence.truths) {
            let [a, b] = [truth.sprite_centres[0], truth.sprite_centres[1]];
            let apart = (a[0] - b[0]).abs() >= 7.0 || (a[1] - b[1]).abs() >= 7.0;
            for (k, _) in SPRITE_COLOURS.iter().enumerate().take(2) {
                let count = frame.chunks_exact(3).filter(|p| *p == SPRITE_COLOURS[k]).count();
                if apart {
                    assert_eq!(count, 49, "a 7x7 square");
                }
            }
            // outside the sprites' boxes the frame is the background
            let in_box = |y: usize, x: usize| {
                truth.sprite_centres.iter().any(|[cy, cx]| (y as f32 - cy).abs() <= 3.0 && (x as f32 - cx).abs() <= 3.0)
            };
            for y in 0..size {
                for x in 0..size {
                    if !in_box(y, x) {
                        assert_eq!(pixel(frame, size, y, x), pixel(&background, size, y, x));
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 200 * (84 * 84 - 2 * 49) - 1);
        // textured but mild, and never a sprite or bar colour
        let values: std::collections::HashSet<u8> = background.chunks_exact(3).map(|p| p[0]).collect();
        assert!(values.len() > 4, "{values:?}");
        assert!(background.chunks_exact(3).all(|p| p[0] >= 60 && p[0] <= 80 && p[0] < 200 && p[1] < 200));
        let flat = SyntheticConfig { background_contrast: 0, ..Default::default() }.background();
        assert!(flat.chunks_exact(3).all(|p| p == BACKGROUND_RGB));
    }

    #[test]
    fn disc_sprites_are_round() {
        let config = SyntheticConfig { num_sprites: 1, sprite_shape: SpriteShape::Disc, ..Default::default() };
        let sequence = generate_sequence(&config, 1, 1).unwrap();
        let count = sequence.frames.chunks_exact(3).filter(|p| *p == SPRITE_COLOURS[0]).count();
        assert_eq!(count, 37, "the 7 px disc: 49 minus 3 pixels at each corner");
    }

    #[test]
    fn sprites_move_with_constant_speed_between_bounces() {
        let config = SyntheticConfig { num_sprites: 1, min_speed: 2.0, max_speed: 2.0, ..Default::default() };
        let sequence = generate_sequence(&config, 5, 100).unwrap();
        let centres: Vec<[f32; 2]> = sequence.truths.iter().map(|t| t.sprite_centres[0]).collect();
        for pair in centres.windows(2) {
            let step = ((pair[1][0] - pair[0][0]).powi(2) + (pair[1][1] - pair[0][1]).powi(2)).sqrt();
            assert!(step <= 2.0 * 2.0f32.sqrt() + 1.5, "moved {step} px");
        }
        let distinct: std::collections::HashSet<[u32; 2]> = centres.iter().map(|c| c.map(f32::to_bits)).collect();
        assert!(distinct.len() > 50, "the sprite moves");
    }

    #[test]
    fn bars_are_present_only_as_configured() {
        let size = 84;
        let bar_pixels = |frame: &[u8]| frame.chunks_exact(3).filter(|p| *p == BAR_RGB).count();
        let none = generate_sequence(&SyntheticConfig::default(), 2, 50).unwrap();
        assert!(none.frames.chunks_exact(size * size * 3).all(|f| bar_pixels(f) == 0));
        assert!(none.truths.iter().all(|t| t.bars == Bars::default()));

        for motion in [BarMotion::Smooth, BarMotion::Jump] {
            for noise in [NoiseType::Vertical, NoiseType::Horizontal, NoiseType::Both] {
                let config = SyntheticConfig { bar: noise, bar_motion: motion, ..Default::default() };
                let sequence = generate_sequence(&config, 2, 60).unwrap();
                let mut largest_move = 0usize;
                let mut previous: Option<Bars> = None;
                for (frame, truth) in sequence.frames.chunks_exact(config.frame_len()).zip(&sequence.truths) {
                    let bars = truth.bars;
                    assert_eq!(bars.vertical_x.is_some(), matches!(noise, NoiseType::Vertical | NoiseType::Both));
                    assert_eq!(bars.horizontal_y.is_some(), matches!(noise, NoiseType::Horizontal | NoiseType::Both));
                    if let Some(x0) = bars.vertical_x {
                        assert!(x0 <= 78);
                        assert!((0..size).all(|y| (x0..x0 + 5).all(|x| pixel(frame, size, y, x) == BAR_RGB)));
                    }
                    if let Some(y0) = bars.horizontal_y {
                        assert!(y0 <= 78);
                        assert!((y0..y0 + 5).all(|y| (0..size).all(|x| pixel(frame, size, y, x) == BAR_RGB)));
                    }
                    let expected = match noise {
                        NoiseType::Both => 2 * 5 * 84 - 25,
                        _ => 5 * 84,
                    };
                    assert_eq!(bar_pixels(frame), expected, "{noise:?} {motion:?}");
                    if let Some(p) = previous {
                        let moved = |a: Option<usize>, b: Option<usize>| a.zip(b).map_or(0, |(a, b)| a.abs_diff(b));
                        largest_move = largest_move
                            .max(moved(p.vertical_x, bars.vertical_x))
                            .max(moved(p.horizontal_y, bars.horizontal_y));
                    }
                    previous = Some(bars);
                }
                match motion {
                    BarMotion::Smooth => assert!(
                        (1..=3).contains(&largest_move),
                        "{noise:?}: smooth bars move 1.5 px per frame, saw {largest_move}"
                    ),
                    BarMotion::Jump => assert!(largest_move > 20, "{noise:?}: jumping bars, saw {largest_move}"),
                }
            }
        }
        // the bar covers sprites: a centre under it is reported hidden
        let config =
            SyntheticConfig { bar: NoiseType::Both, bar_motion: BarMotion::Jump, num_sprites: 8, ..Default::default() };
        let sequence = generate_sequence(&config, 8, 100).unwrap();
        assert!(sequence.truths.iter().any(|t| t.centre_visible.contains(&false)));
    }

    #[test]
    fn batches_carry_frames_and_centres() {
        let config = SyntheticConfig { bar: NoiseType::Vertical, ..Default::default() };
        let batch = synthetic_batch(&config, 1, 5, Device::Cpu).unwrap();
        assert_eq!(batch.frames.size(), [5, 3, 84, 84]);
        assert_eq!(batch.centres.size(), [5, 3, 2]);
        assert_eq!(batch.centres.kind(), Kind::Float);
        let (min, max) = (batch.frames.min().double_value(&[]), batch.frames.max().double_value(&[]));
        assert!(min >= 0.0 && max <= 1.0 && max > 0.9);
        // item 0 is the first frame of scene (config, seed); item k has its own stream
        let first = generate_sequence(&config, 1, 1).unwrap();
        assert_eq!(batch.truths[0], first.truths[0]);
        assert_ne!(batch.truths[1].sprite_centres, batch.truths[0].sprite_centres);
        let centres = Vec::<f32>::try_from(batch.centres.flatten(0, -1)).unwrap();
        let expected: Vec<f32> = batch.truths.iter().flat_map(|t| t.sprite_centres.concat()).collect();
        assert_eq!(centres, expected);
        // the red channel under sprite 0's centre of item 0 is the sprite's red, as a float
        let [y, x] = batch.truths[0].sprite_centres[0];
        if batch.truths[0].centre_visible[0] {
            let red = batch.frames.double_value(&[0, 0, y as i64, x as i64]);
            assert!((red - 230.0 / 255.0).abs() < 1e-6);
        }
        let unit = pixels_to_unit(&batch.centres, 84);
        let back = crate::keypoints::to_pixels(&unit, 84);
        assert!(back.allclose(&batch.centres, 1e-4, 1e-4, false));

        let pairs = synthetic_pair_batch(&config, 2, 4, Device::Cpu).unwrap();
        assert_eq!(pairs.source.frames.size(), [4, 3, 84, 84]);
        assert_eq!(pairs.target.centres.size(), [4, 3, 2]);
        assert_ne!(pairs.source.truths, pairs.target.truths, "source and target are different times");
        assert_eq!(synthetic_pair_batch(&config, 2, 4, Device::Cpu).unwrap().target.truths, pairs.target.truths);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let good = SyntheticConfig::default();
        good.validate().unwrap();
        let cases = [
            (SyntheticConfig { num_sprites: 0, ..good.clone() }, "num_sprites"),
            (SyntheticConfig { num_sprites: 9, ..good.clone() }, "num_sprites"),
            (SyntheticConfig { sprite_size: 30, ..good.clone() }, "sprite_size"),
            (SyntheticConfig { min_speed: 3.0, max_speed: 2.0, ..good.clone() }, "min_speed"),
            (SyntheticConfig { max_speed: f32::NAN, ..good.clone() }, "max_speed"),
            (SyntheticConfig { background_contrast: 41, ..good.clone() }, "background_contrast"),
            (SyntheticConfig { frame_size: 8, ..good.clone() }, "frame_size"),
            (SyntheticConfig { bar_speed: -1.0, ..good.clone() }, "bar_speed"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
            assert!(SyntheticScene::new(&config, 0).is_err());
        }
        let text = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<SyntheticConfig>(&text).unwrap(), good);
        assert!(serde_json::from_str::<SyntheticConfig>(r#"{"sprites": 3}"#).is_err());
    }
}
