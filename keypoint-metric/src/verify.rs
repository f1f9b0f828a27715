//! Pixel checks for RAM -> screen mappings on recorded frames: does a mapped point lie on
//! (or near) sprite pixels of the object's colour?

use atari::{SCREEN_HEIGHT, SCREEN_WIDTH};

use crate::recording::RamFrame;

/// Bounding box and pixel count of a set of colours on a screen (inclusive bounds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourBox {
    pub y_min: usize,
    pub y_max: usize,
    pub x_min: usize,
    pub x_max: usize,
    pub pixel_count: usize,
}

impl ColourBox {
    /// The centre of the box, (y, x) in screen pixels.
    pub fn centre(&self) -> (f32, f32) {
        ((self.y_min + self.y_max) as f32 / 2.0, (self.x_min + self.x_max) as f32 / 2.0)
    }
}

/// The box of all pixels whose RGB is one of `colours`, restricted to screen rows `rows`.
pub fn colour_box(frame: &RamFrame, colours: &[[u8; 3]], rows: std::ops::Range<usize>) -> Option<ColourBox> {
    let mut found: Option<ColourBox> = None;
    for y in rows.start..rows.end.min(SCREEN_HEIGHT) {
        for x in 0..SCREEN_WIDTH {
            if !colours.contains(&frame.pixel(y, x)) {
                continue;
            }
            let b = found.get_or_insert(ColourBox { y_min: y, y_max: y, x_min: x, x_max: x, pixel_count: 0 });
            b.y_min = b.y_min.min(y);
            b.y_max = b.y_max.max(y);
            b.x_min = b.x_min.min(x);
            b.x_max = b.x_max.max(x);
            b.pixel_count += 1;
        }
    }
    found
}

/// Chebyshev distance (pixels) from the screen point (`y`, `x`), rounded to the nearest pixel,
/// to the nearest pixel whose RGB is one of `colours`; `None` when none lies within `radius`
/// or the point is off screen.
pub fn distance_to_colour(frame: &RamFrame, y: f32, x: f32, colours: &[[u8; 3]], radius: usize) -> Option<usize> {
    let (cy, cx) = (y.round(), x.round());
    if cy < 0.0 || cx < 0.0 || cy >= SCREEN_HEIGHT as f32 || cx >= SCREEN_WIDTH as f32 {
        return None;
    }
    let (cy, cx) = (cy as isize, cx as isize);
    for ring in 0..=radius as isize {
        for dy in -ring..=ring {
            for dx in -ring..=ring {
                if dy.abs() != ring && dx.abs() != ring {
                    continue;
                }
                let (py, px) = (cy + dy, cx + dx);
                if py < 0 || px < 0 || py >= SCREEN_HEIGHT as isize || px >= SCREEN_WIDTH as isize {
                    continue;
                }
                if colours.contains(&frame.pixel(py as usize, px as usize)) {
                    return Some(ring as usize);
                }
            }
        }
    }
    None
}

/// Least-squares line `target = slope * input + intercept`; `None` for fewer than two
/// distinct inputs.
pub fn fit_line(inputs: &[f32], targets: &[f32]) -> Option<(f32, f32)> {
    debug_assert_eq!(inputs.len(), targets.len());
    let n = inputs.len() as f64;
    if inputs.len() < 2 {
        return None;
    }
    let mean_in = inputs.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mean_out = targets.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mut covariance = 0.0;
    let mut variance = 0.0;
    for (&i, &t) in inputs.iter().zip(targets) {
        covariance += (i as f64 - mean_in) * (t as f64 - mean_out);
        variance += (i as f64 - mean_in).powi(2);
    }
    if variance == 0.0 {
        return None;
    }
    let slope = covariance / variance;
    Some((slope as f32, (mean_out - slope * mean_in) as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_with(points: &[(usize, usize)], colour: [u8; 3]) -> RamFrame {
        let mut frame = RamFrame { ram: [0; 128], screen_rgb: vec![0; SCREEN_HEIGHT * SCREEN_WIDTH * 3] };
        for &(y, x) in points {
            let o = (y * SCREEN_WIDTH + x) * 3;
            frame.screen_rgb[o..o + 3].copy_from_slice(&colour);
        }
        frame
    }

    #[test]
    fn distance_to_colour_is_chebyshev_and_bounded_by_radius() {
        let red = [200, 0, 0];
        let frame = frame_with(&[(10, 20)], red);
        assert_eq!(distance_to_colour(&frame, 10.0, 20.0, &[red], 2), Some(0));
        assert_eq!(distance_to_colour(&frame, 12.0, 21.0, &[red], 2), Some(2));
        assert_eq!(distance_to_colour(&frame, 13.0, 20.0, &[red], 2), None);
        assert_eq!(distance_to_colour(&frame, 10.0, 20.0, &[[1, 2, 3]], 5), None);
        assert_eq!(distance_to_colour(&frame, -1.0, 20.0, &[red], 5), None);
    }

    #[test]
    fn colour_box_spans_matching_pixels_in_rows() {
        let c = [1, 2, 3];
        let frame = frame_with(&[(5, 7), (9, 3), (100, 100)], c);
        let b = colour_box(&frame, &[c], 0..50).unwrap();
        assert_eq!((b.y_min, b.y_max, b.x_min, b.x_max, b.pixel_count), (5, 9, 3, 7, 2));
        assert_eq!(b.centre(), (7.0, 5.0));
    }

    #[test]
    fn fit_line_recovers_exact_line() {
        let (slope, intercept) = fit_line(&[0.0, 1.0, 2.0, 4.0], &[3.0, 5.0, 7.0, 11.0]).unwrap();
        assert!((slope - 2.0).abs() < 1e-6 && (intercept - 3.0).abs() < 1e-6);
        assert!(fit_line(&[1.0, 1.0], &[2.0, 3.0]).is_none());
    }
}
