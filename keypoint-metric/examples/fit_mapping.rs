//! Fits `screen = slope * ram + intercept` for one object: on recorded random play, takes the
//! frames where the object's colour forms one small box, and regresses the box centre on RAM.
//!
//! `cargo run -p keypoint-metric --example fit_mapping -- GAME RAM_X RAM_Y R,G,B[;R,G,B] ROW_MIN ROW_MAX MAX_SIZE`
use atari::RomCatalog;
use keypoint_metric::{recording::record_random_play, verify};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let game = &args[1];
    let ram_x: usize = args[2].parse()?;
    let ram_y: usize = args[3].parse()?;
    let colours: Vec<[u8; 3]> = args[4]
        .split(';')
        .map(|c| {
            let v: Vec<u8> = c.split(',').map(|s| s.parse().unwrap()).collect();
            [v[0], v[1], v[2]]
        })
        .collect();
    let rows: std::ops::Range<usize> = args[5].parse()?..args[6].parse()?;
    let max_size: usize = args[7].parse()?;
    let frames = record_random_play(game, &RomCatalog::discover()?, 3, 1500)?;
    let (mut rx, mut ry, mut sx, mut sy) = (vec![], vec![], vec![], vec![]);
    for (t, frame) in frames.iter().enumerate() {
        if let Some(b) = verify::colour_box(frame, &colours, rows.clone())
            && b.y_max - b.y_min < max_size
            && b.x_max - b.x_min < max_size
        {
            let (cy, cx) = b.centre();
            rx.push(frame.ram[ram_x] as f32);
            ry.push(frame.ram[ram_y] as f32);
            sx.push(cx);
            sy.push(cy);
            if t % 100 == 0 {
                println!("t={t} ram x={} y={} box y={}..{} x={}..{}", frame.ram[ram_x], frame.ram[ram_y], b.y_min, b.y_max, b.x_min, b.x_max);
            }
        }
    }
    println!("{} usable frames of {}", rx.len(), frames.len());
    for (label, input, target) in [("x", &rx, &sx), ("y", &ry, &sy)] {
        if let Some((slope, intercept)) = verify::fit_line(input, target) {
            let residuals: Vec<f32> = input.iter().zip(target.iter()).map(|(i, t)| t - (slope * i + intercept)).collect();
            let max_abs = residuals.iter().fold(0f32, |m, r| m.max(r.abs()));
            let within2 = residuals.iter().filter(|r| r.abs() <= 2.0).count() as f32 / residuals.len() as f32;
            println!("{label}: screen = {slope:.4} * ram + {intercept:.3}; max |residual| {max_abs:.2}; share within 2 px {within2:.3}");
        } else {
            println!("{label}: no fit");
        }
    }
    // per RAM value: the mean box centre, to spot non-linear mappings
    let mut by_value: std::collections::BTreeMap<u8, (f32, f32, usize)> = Default::default();
    for (&r, &s) in ry.iter().zip(&sy) {
        let e = by_value.entry(r as u8).or_insert((0.0, f32::MAX, 0));
        e.0 += s;
        e.1 = e.1.min(s);
        e.2 += 1;
    }
    let table: Vec<String> = by_value.iter().map(|(r, (sum, min, n))| format!("{r}:{:.1}(min {min:.1},n {n})", sum / *n as f32)).collect();
    println!("ram y -> mean centre y: {}", table.join(" "));
    Ok(())
}
