//! Recording what the agent sees: animated GIFs and PNG strips of observations.
//! Files are written to a temporary name and renamed, so a crash never leaves half a file.

use std::{
    fs,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{config::EnvConfig, env::AtariEnv, roms::RomCatalog, AtariError, Result};

/// Frames of one recorded episode plus what happened in it.
#[derive(Debug, Clone)]
pub struct Recording {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// Observations, the reset's first.
    pub frames: Vec<Vec<u8>>,
    pub actions: Vec<usize>,
    pub rewards: Vec<f32>,
    pub episode_return: f32,
}

/// Where a recorded episode's actions come from.
#[derive(Debug, Clone)]
pub enum ActionSource {
    /// Uniformly random actions from a seeded generator.
    Random { seed: u64 },
    /// The given action indices, in order (the episode stops when they run out).
    Given(Vec<usize>),
}

/// Plays one agent episode (until terminated/truncated or `max_steps`) and keeps every observation.
pub fn record_episode(config: &EnvConfig, roms: &RomCatalog, seed: u64, source: &ActionSource, max_steps: usize) -> Result<Recording> {
    let mut env = AtariEnv::new(config, roms, seed)?;
    let [height, width, channels] = env.obs_shape();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs)?;
    let mut recording = Recording {
        height,
        width,
        channels,
        frames: vec![obs.clone()],
        actions: Vec::new(),
        rewards: Vec::new(),
        episode_return: 0.0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(match source {
        ActionSource::Random { seed } => *seed,
        ActionSource::Given(_) => 0,
    });
    for t in 0..max_steps {
        let action = match source {
            ActionSource::Random { .. } => rng.random_range(0..env.num_actions()),
            ActionSource::Given(actions) => match actions.get(t) {
                Some(&a) => a,
                None => break,
            },
        };
        let info = env.step(action, &mut obs)?;
        recording.frames.push(obs.clone());
        recording.actions.push(action);
        recording.rewards.push(info.reward);
        recording.episode_return += info.reward;
        if info.terminated || info.truncated {
            break;
        }
    }
    Ok(recording)
}

fn to_rgb(frame: &[u8], channels: usize) -> Vec<u8> {
    if channels == 3 { frame.to_vec() } else { frame.iter().flat_map(|&g| [g, g, g]).collect() }
}

/// Nearest-neighbour upscaling of an RGB image by an integer factor.
fn upscale(rgb: &[u8], height: usize, width: usize, scale: usize) -> Vec<u8> {
    if scale == 1 {
        return rgb.to_vec();
    }
    let mut out = Vec::with_capacity(rgb.len() * scale * scale);
    for y in 0..height * scale {
        for x in 0..width * scale {
            let at = ((y / scale) * width + x / scale) * 3;
            out.extend_from_slice(&rgb[at..at + 3]);
        }
    }
    out
}

fn atomic_write(path: &Path, write: impl FnOnce(&mut BufWriter<fs::File>) -> Result<()>) -> Result<()> {
    let io_err = |source| AtariError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err)?;
    }
    let tmp = PathBuf::from(format!("{}.tmp{}", path.display(), std::process::id()));
    let file = fs::File::create(&tmp).map_err(io_err)?;
    let mut writer = BufWriter::new(file);
    let result = write(&mut writer).and_then(|()| writer.flush().map_err(io_err));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    drop(writer);
    fs::rename(&tmp, path).map_err(io_err)
}

/// Writes the frames as an animated GIF (`delay_cs` hundredths of a second per frame).
pub fn write_gif(path: &Path, recording: &Recording, scale: usize, delay_cs: u16) -> Result<()> {
    let (h, w) = (recording.height * scale, recording.width * scale);
    let encode = |e: gif::EncodingError| AtariError::Encode { what: "gif", reason: e.to_string() };
    atomic_write(path, |out| {
        let mut encoder = gif::Encoder::new(out, w as u16, h as u16, &[]).map_err(encode)?;
        encoder.set_repeat(gif::Repeat::Infinite).map_err(encode)?;
        for frame in &recording.frames {
            let rgb = upscale(&to_rgb(frame, recording.channels), recording.height, recording.width, scale);
            let mut gif_frame = gif::Frame::from_rgb_speed(w as u16, h as u16, &rgb, 10);
            gif_frame.delay = delay_cs;
            encoder.write_frame(&gif_frame).map_err(encode)?;
        }
        Ok(())
    })
}

/// Writes every `every`-th frame side by side as one PNG strip (at most `max_frames` of them).
pub fn write_png_strip(path: &Path, recording: &Recording, scale: usize, every: usize, max_frames: usize) -> Result<()> {
    let picked: Vec<&Vec<u8>> = recording.frames.iter().step_by(every.max(1)).take(max_frames.max(1)).collect();
    let (fh, fw) = (recording.height * scale, recording.width * scale);
    let gap = 2;
    let width = picked.len() * (fw + gap) - gap;
    let mut image = vec![255u8; fh * width * 3];
    for (i, frame) in picked.iter().enumerate() {
        let rgb = upscale(&to_rgb(frame, recording.channels), recording.height, recording.width, scale);
        for y in 0..fh {
            let dst = (y * width + i * (fw + gap)) * 3;
            image[dst..dst + fw * 3].copy_from_slice(&rgb[y * fw * 3..(y + 1) * fw * 3]);
        }
    }
    write_png(path, &image, fh, width)
}

/// Writes one RGB image as PNG.
pub fn write_png(path: &Path, rgb: &[u8], height: usize, width: usize) -> Result<()> {
    let encode = |e: png::EncodingError| AtariError::Encode { what: "png", reason: e.to_string() };
    atomic_write(path, |out| {
        let mut encoder = png::Encoder::new(out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(encode)?;
        writer.write_image_data(rgb).map_err(encode)?;
        writer.finish().map_err(encode)
    })
}
