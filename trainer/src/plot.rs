//! The learning-curve PNG: evaluation means (blue, with dots) and the running mean of the last
//! 10 training games (orange) against agent steps, with numbered axes. Drawn on the project's own
//! canvas with a 3x5 pixel digit font, so it needs no font files on the machine.

use std::path::Path;

use permakey::viz::Canvas;

const WIDTH: usize = 720;
const HEIGHT: usize = 420;
const LEFT: usize = 70;
const RIGHT: usize = 20;
const TOP: usize = 20;
const BOTTOM: usize = 40;
const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];
const AXIS: [u8; 3] = [40, 40, 40];
const GRIDLINE: [u8; 3] = [225, 225, 225];

/// 3x5 glyphs of `0-9 . - k`, one row per u8 (3 low bits, MSB left).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'k' => [4, 5, 6, 5, 5],
        _ => return None,
    })
}

/// Writes `text` with its top-left corner at `(y, x)`, each font pixel `scale` px wide.
fn text(canvas: &mut Canvas, y: i64, x: i64, text: &str, scale: i64) {
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            canvas.set(y + r as i64 * scale + dy, x + (i as i64 * 4 + col) * scale + dx, AXIS);
                        }
                    }
                }
            }
        }
    }
}

fn line(canvas: &mut Canvas, (y0, x0): (f64, f64), (y1, x1): (f64, f64), colour: [u8; 3]) {
    let steps = ((y1 - y0).abs().max((x1 - x0).abs()).ceil() as i64).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (y, x) = (y0 + (y1 - y0) * t, x0 + (x1 - x0) * t);
        for d in [0, 1] {
            canvas.set(y.round() as i64 + d, x.round() as i64, colour);
        }
    }
}

/// A tick label: integers with a `k` for thousands, one decimal below 10.
pub fn tick_label(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{}k", (v / 1000.0 * 10.0).round() / 10.0)
    } else if v.abs() >= 10.0 || v == v.round() {
        format!("{}", v.round())
    } else {
        format!("{v:.1}")
    }
}

/// Draws the curves (`(agent_steps, value)` points) on axes from 0 to `max_steps`.
pub fn learning_curve(path: &Path, train: &[(f64, f64)], eval: &[(f64, f64)], max_steps: f64) -> anyhow::Result<()> {
    let mut canvas = Canvas::new(HEIGHT, WIDTH, 255);
    let values = train.iter().chain(eval).map(|p| p.1).filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    lo = lo.min(0.0);
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let (pw, ph) = ((WIDTH - LEFT - RIGHT) as f64, (HEIGHT - TOP - BOTTOM) as f64);
    let to_px = |(s, v): (f64, f64)| (TOP as f64 + ph * (1.0 - (v - lo) / (hi - lo)), LEFT as f64 + pw * s / max_steps.max(1.0));
    for i in 0..=5 {
        let v = lo + (hi - lo) * i as f64 / 5.0;
        let (y, _) = to_px((0.0, v));
        line(&mut canvas, (y, LEFT as f64), (y, (WIDTH - RIGHT) as f64), GRIDLINE);
        text(&mut canvas, y as i64 - 5, 4, &tick_label(v), 2);
        let s = max_steps * i as f64 / 5.0;
        let (_, x) = to_px((s, lo));
        text(&mut canvas, (HEIGHT - BOTTOM + 8) as i64, x as i64 - 10, &tick_label(s), 2);
    }
    line(&mut canvas, (TOP as f64, LEFT as f64), ((HEIGHT - BOTTOM) as f64, LEFT as f64), AXIS);
    line(&mut canvas, ((HEIGHT - BOTTOM) as f64, LEFT as f64), ((HEIGHT - BOTTOM) as f64, (WIDTH - RIGHT) as f64), AXIS);
    for (points, colour) in [(train, ORANGE), (eval, BLUE)] {
        for pair in points.windows(2) {
            line(&mut canvas, to_px(pair[0]), to_px(pair[1]), colour);
        }
    }
    for &p in eval {
        let (y, x) = to_px(p);
        canvas.marker(y, x, 3, BLUE);
    }
    atari::record::write_png(path, &canvas.rgb, canvas.height, canvas.width)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(25000.0), "25k");
        assert_eq!(tick_label(2500.0), "2.5k");
        assert_eq!(tick_label(420.0), "420");
        assert_eq!(tick_label(0.26), "0.3");
        assert_eq!(tick_label(-1.0), "-1");
    }

    #[test]
    fn writes_a_png_even_without_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        learning_curve(&path, &[], &[], 100.0).unwrap();
        learning_curve(&path, &[(10.0, 1.0), (50.0, 3.0)], &[(20.0, 2.0), (80.0, 5.0)], 100.0).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
