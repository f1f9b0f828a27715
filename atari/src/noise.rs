//! "Noisy Atari" distractor bars, exactly as the reference's `preprocess.add_noise`
//! (spec section 1.3): bars 5 px wide in violet RGB (128, 0, 255); `vertical` = one full-height
//! bar at x ~ U{0..78}, `horizontal` = one full-width bar at y ~ U{0..78}, `both` = one of each
//! with the horizontal painted last. Positions are drawn anew for every observation from the
//! environment's own seeded generator, so a seed fixes the whole sequence of bars.
//! At sizes other than 84x84 the positions range over `0..=size - 6` (the same rule); a
//! grayscale observation gets the bar colour's ITU-R 601 luma, 67.

use rand::Rng;

use crate::config::NoiseType;

pub const BAR_WIDTH: usize = 5;
pub const BAR_RGB: [u8; 3] = [128, 0, 255];
/// round(0.299 * 128 + 0.587 * 0 + 0.114 * 255)
pub const BAR_GRAY: u8 = 67;

/// Where the bars of one frame go: `(x of the vertical bar, y of the horizontal bar)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bars {
    pub vertical_x: Option<usize>,
    pub horizontal_y: Option<usize>,
}

/// Draws this frame's bar positions (one draw per bar, vertical first).
pub fn draw_bars(noise: NoiseType, height: usize, width: usize, rng: &mut impl Rng) -> Bars {
    let mut bars = Bars::default();
    if matches!(noise, NoiseType::Vertical | NoiseType::Both) {
        bars.vertical_x = Some(rng.random_range(0..=width - BAR_WIDTH - 1));
    }
    if matches!(noise, NoiseType::Horizontal | NoiseType::Both) {
        bars.horizontal_y = Some(rng.random_range(0..=height - BAR_WIDTH - 1));
    }
    bars
}

/// Paints `bars` onto an HWC observation with 1 or 3 channels.
pub fn paint_bars(bars: Bars, obs: &mut [u8], height: usize, width: usize, channels: usize) {
    debug_assert_eq!(obs.len(), height * width * channels);
    let colour: &[u8] = if channels == 3 { &BAR_RGB } else { std::slice::from_ref(&BAR_GRAY) };
    if let Some(x0) = bars.vertical_x {
        for y in 0..height {
            for x in x0..x0 + BAR_WIDTH {
                let at = (y * width + x) * channels;
                obs[at..at + channels].copy_from_slice(colour);
            }
        }
    }
    if let Some(y0) = bars.horizontal_y {
        for y in y0..y0 + BAR_WIDTH {
            for x in 0..width {
                let at = (y * width + x) * channels;
                obs[at..at + channels].copy_from_slice(colour);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn bars_are_deterministic_per_seed_and_in_range() {
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..500).map(|_| draw_bars(NoiseType::Both, 84, 84, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let bars = draw(7);
        let xs: Vec<usize> = bars.iter().map(|b| b.vertical_x.unwrap()).collect();
        assert_eq!(*xs.iter().max().unwrap(), 78, "x reaches 78 = 84 - 5 - 1");
        assert_eq!(*xs.iter().min().unwrap(), 0);
        assert!(bars.iter().all(|b| b.horizontal_y.unwrap() <= 78));
    }

    #[test]
    fn only_the_requested_bars_are_drawn() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let v = draw_bars(NoiseType::Vertical, 84, 84, &mut rng);
        assert!(v.vertical_x.is_some() && v.horizontal_y.is_none());
        let h = draw_bars(NoiseType::Horizontal, 84, 84, &mut rng);
        assert!(h.vertical_x.is_none() && h.horizontal_y.is_some());
        assert_eq!(draw_bars(NoiseType::None, 84, 84, &mut rng), Bars::default());
    }

    #[test]
    fn painting_covers_exactly_the_bars() {
        let (h, w) = (84, 84);
        let mut obs = vec![0u8; h * w * 3];
        paint_bars(Bars { vertical_x: Some(10), horizontal_y: Some(20) }, &mut obs, h, w, 3);
        let painted = obs.chunks_exact(3).filter(|p| *p == BAR_RGB).count();
        assert_eq!(painted, 5 * 84 + 5 * 84 - 25, "two bars minus their 5x5 overlap");
        assert_eq!(&obs[10 * 3..10 * 3 + 3], &BAR_RGB);
        assert_eq!(&obs[(50 * w + 9) * 3..(50 * w + 9) * 3 + 3], &[0, 0, 0]);
        assert_eq!(&obs[(24 * w) * 3..(24 * w) * 3 + 3], &BAR_RGB);
        assert_eq!(&obs[(25 * w) * 3..(25 * w) * 3 + 3], &[0, 0, 0]);
    }
}
