//! The learning-curve PNG: evaluation means (blue, with dots) and the running mean of the last
//! 10 training games (orange) against agent steps, with numbered axes. Drawn on the project's own
//! canvas with a 3x5 pixel digit font, so it needs no font files on the machine.
//!
//! [`series_plot`]: the same axes for any named `(x, y)` series, with a title and a legend in the
//! font's capital letters (`cli/examples/render_panels.rs` draws the Grafana dashboard's panels
//! with it from Prometheus).

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
        _ => return letter(c),
    })
}

/// 3x5 glyphs of the capital letters (lower case draws as upper case, except `k` above) and a few
/// signs, for titles and legends.
fn letter(c: char) -> Option<[u8; 5]> {
    Some(match c.to_ascii_uppercase() {
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        '/' => [1, 1, 2, 4, 4],
        '(' => [2, 4, 4, 4, 2],
        ')' => [2, 1, 1, 1, 2],
        '%' => [5, 1, 2, 4, 5],
        ':' => [0, 2, 0, 2, 0],
        '_' => [0, 0, 0, 0, 7],
        '=' => [0, 7, 0, 7, 0],
        '+' => [0, 2, 7, 2, 0],
        ',' => [0, 0, 0, 2, 4],
        '\'' => [2, 2, 0, 0, 0],
        '>' => [4, 2, 1, 2, 4],
        '<' => [1, 2, 4, 2, 1],
        '#' => [5, 7, 5, 7, 5],
        _ => return None,
    })
}

/// Writes `text` with its top-left corner at `(y, x)`, each font pixel `scale` px wide.
fn text(canvas: &mut Canvas, y: i64, x: i64, text: &str, scale: i64) {
    coloured_text(canvas, y, x, text, scale, AXIS);
}

/// [`text`] in `colour`; each character takes 4 font pixels (3 + a gap) of width.
fn coloured_text(canvas: &mut Canvas, y: i64, x: i64, text: &str, scale: i64, colour: [u8; 3]) {
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            canvas.set(y + r as i64 * scale + dy, x + (i as i64 * 4 + col) * scale + dx, colour);
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

/// Line colours of [`series_plot`], in order (Grafana's classic palette, darkened for white).
const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// A round tick distance (1, 2, 2.5 or 5 x a power of ten) giving about 5 ticks over `range`.
fn nice_step(range: f64) -> f64 {
    let raw = (range / 5.0).max(1e-12);
    let magnitude = 10f64.powf(raw.log10().floor());
    let nice = match raw / magnitude {
        f if f <= 1.0 => 1.0,
        f if f <= 2.0 => 2.0,
        f if f <= 2.5 => 2.5,
        f if f <= 5.0 => 5.0,
        _ => 10.0,
    };
    nice * magnitude
}

/// An axis label for `v` on an axis whose ticks are `span` apart: `k`, `M`, `G` when the ticks
/// are that far apart (so one axis uses one suffix), as many decimals as the ticks need for small
/// ones (latencies in seconds, ratios).
pub fn axis_label(v: f64, span: f64) -> String {
    let a = span.abs();
    let (scale, suffix) = if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let (scaled, step) = (v / scale, span / scale);
    // The fewest decimals that write the tick distance exactly (0.25 -> 2, 0.0005 -> 4).
    let decimals = if step > 0.0 && step.is_finite() {
        (0..=6)
            .find(|&d| {
                let x = step * 10f64.powi(d);
                (x - x.round()).abs() < 1e-6 * x.max(1.0)
            })
            .unwrap_or(6) as usize
    } else {
        1
    };
    let mut label = format!("{scaled:.decimals$}");
    if label.contains('.') {
        label = label.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if label == "0" || label == "-0" {
        return "0".into();
    }
    format!("{label}{suffix}")
}

/// Draws named `(x, y)` series (non-finite points and gaps wider than 2.5 x the smallest x
/// step break the line) on numbered axes fitted to the data, with `title` above and a legend
/// of the names in the line colours; `x_label` names the x axis. An empty plot still gets its
/// axes and title. Text draws in the font's capitals.
pub fn series_plot(path: &Path, series: &[(&str, Vec<(f64, f64)>)], title: &str, x_label: &str) -> anyhow::Result<()> {
    const SERIES_TOP: usize = 34;
    const LEGEND_ROW: usize = 12;
    let legend_rows = series.len().min(8).div_ceil(2);
    let top = SERIES_TOP + LEGEND_ROW * legend_rows;
    let height = HEIGHT + LEGEND_ROW * legend_rows;
    let bottom = BOTTOM + 14;
    let mut canvas = Canvas::new(height, WIDTH, 255);
    let finite = || series.iter().flat_map(|(_, points)| points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x_lo, mut x_hi) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (x, _)| (lo.min(x), hi.max(x)));
    let (mut lo, mut hi) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| (lo.min(y), hi.max(y)));
    if !x_lo.is_finite() {
        (x_lo, x_hi) = (0.0, 1.0);
    }
    // Like the values, x (e.g. seconds since a start) reads best from zero.
    if x_lo > 0.0 && x_lo < (x_hi - x_lo) * 2.0 {
        x_lo = 0.0;
    }
    if x_hi - x_lo < 1e-9 {
        x_hi = x_lo + 1.0;
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    // Counts, rates and durations read best from zero; values that dip below it keep their range.
    if lo > 0.0 && lo < (hi - lo) * 2.0 {
        lo = 0.0;
    }
    if hi - lo < 1e-12 {
        let pad = if hi.abs() > 1e-12 { hi.abs() * 0.1 } else { 1.0 };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let y_step = nice_step(hi - lo);
    (lo, hi) = ((lo / y_step).floor() * y_step, (hi / y_step).ceil() * y_step);
    let x_step = nice_step(x_hi - x_lo);
    let (pw, ph) = ((WIDTH - LEFT - RIGHT) as f64, (height - top - bottom) as f64);
    let to_px = |(x, v): (f64, f64)| (top as f64 + ph * (1.0 - (v - lo) / (hi - lo)), LEFT as f64 + pw * (x - x_lo) / (x_hi - x_lo));
    let ticks = |from: f64, to: f64, step: f64| (0..).map(move |i| from + step * f64::from(i)).take_while(move |v| *v <= to + step * 1e-6).take(20);
    for v in ticks(lo, hi, y_step) {
        let (y, _) = to_px((x_lo, v));
        line(&mut canvas, (y, LEFT as f64), (y, (WIDTH - RIGHT) as f64), GRIDLINE);
        text(&mut canvas, y as i64 - 5, 4, &axis_label(v, y_step), 2);
    }
    for x in ticks((x_lo / x_step).ceil() * x_step, x_hi, x_step) {
        let (_, px) = to_px((x, lo));
        text(&mut canvas, (height - bottom + 8) as i64, px as i64 - 10, &axis_label(x, x_step), 2);
    }
    let caption = x_label.to_uppercase();
    text(&mut canvas, (height - bottom + 26) as i64, (LEFT as f64 + pw / 2.0) as i64 - caption.len() as i64 * 4, &caption, 2);
    line(&mut canvas, (top as f64, LEFT as f64), ((height - bottom) as f64, LEFT as f64), AXIS);
    line(&mut canvas, ((height - bottom) as f64, LEFT as f64), ((height - bottom) as f64, (WIDTH - RIGHT) as f64), AXIS);
    text(&mut canvas, 8, LEFT as i64, &title.to_uppercase(), 3);
    let min_step = series
        .iter()
        .flat_map(|(_, points)| points.windows(2).map(|w| w[1].0 - w[0].0))
        .filter(|d| *d > 0.0)
        .fold(f64::INFINITY, f64::min);
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        for pair in points.windows(2) {
            let ok = |(x, y): (f64, f64)| x.is_finite() && y.is_finite();
            if ok(pair[0]) && ok(pair[1]) && pair[1].0 - pair[0].0 <= 2.5 * min_step {
                line(&mut canvas, to_px(pair[0]), to_px(pair[1]), colour);
            }
        }
        // Lone points (a gap on both sides) still show.
        for (j, &p) in points.iter().enumerate() {
            let near = |k: Option<usize>| k.and_then(|k| points.get(k)).is_some_and(|q| q.1.is_finite() && (q.0 - p.0).abs() <= 2.5 * min_step);
            if p.0.is_finite() && p.1.is_finite() && !near(j.checked_sub(1)) && !near(Some(j + 1)) {
                let (y, x) = to_px(p);
                canvas.marker(y, x, 2, colour);
            }
        }
        if i < 8 {
            let (row, col) = (i / 2, i % 2);
            let (ly, lx) = ((SERIES_TOP + row * LEGEND_ROW) as i64, (LEFT + col * 320) as i64);
            for dy in 0..7 {
                for dx in 0..12 {
                    canvas.set(ly + dy + 1, lx + dx, colour);
                }
            }
            let name: String = name.to_uppercase().chars().take(37).collect();
            coloured_text(&mut canvas, ly, lx + 16, &name, 2, AXIS);
        }
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

    #[test]
    fn axis_labels_fit_their_ticks() {
        assert_eq!(axis_label(0.0025, 0.0005), "0.0025");
        assert_eq!(axis_label(0.5, 0.1), "0.5");
        assert_eq!(axis_label(150_000_000.0, 20_000_000.0), "150M");
        assert_eq!(axis_label(25_000.0, 5_000.0), "25k");
        assert_eq!(axis_label(7_500.0, 2_500.0), "7.5k");
        assert_eq!(axis_label(1_500.0, 100.0), "1500");
        assert_eq!(axis_label(-0.0, 1.0), "0");
        assert_eq!(axis_label(0.0, 2_500.0), "0");
        assert_eq!(axis_label(12.0, 2.0), "12");
        assert_eq!(axis_label(1.25, 0.25), "1.25");
        assert_eq!(axis_label(0.0, 0.25), "0");
        assert_eq!(axis_label(0.1 + 0.2, 0.1), "0.3");
    }

    #[test]
    fn series_plots_draw_with_and_without_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.png");
        series_plot(&path, &[], "Empty", "seconds").unwrap();
        let points: Vec<(f64, f64)> = (0..50).map(|i| (f64::from(i), if i == 20 { f64::NAN } else { f64::from(i).sin() })).collect();
        series_plot(&path, &[("p50", points), ("lone (1)", vec![(3.0, 0.5)])], "Keypoint request p99", "seconds").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
