//! Seeded evaluation frames for the metric: short clips of consecutive observations taken at
//! random points of random-policy episodes.
//!
//! Why clips rather than the first N frames of play: early in a MsPacman episode the ghosts sit in
//! their house, so keypoints parked there score a high precision with no jitter while tracking
//! nothing (measured on a 150-step checkpoint: precision@8 0.69–0.87, recall@4 0.12–0.17). Each
//! clip therefore starts after a random warm-up of `0..=max_warmup` random agent steps, and clips
//! are short, so the frames cover every phase of the episodes. Consecutive frames inside a clip
//! keep temporal jitter meaningful; [`crate::metric::evaluate_clips`] never pairs frames across
//! clips.

use atari::AtariEnv;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{KeypointMetricError, Result, ram};

/// How evaluation frames are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipSampling {
    /// Total evaluation frames.
    pub frames: usize,
    /// Consecutive frames per clip (the last clip may be shorter; so is a clip cut by game over).
    pub clip_len: usize,
    /// Random agent steps before each clip: uniform in `0..=max_warmup`.
    pub max_warmup: usize,
    /// Seeds the action and warm-up choices (the environment has its own seed).
    pub seed: u64,
}

impl ClipSampling {
    /// The protocol of `eval-keypoints`: clips of 32 frames after up to 400 random steps.
    pub fn new(frames: usize, seed: u64) -> Self {
        Self { frames, clip_len: 32, max_warmup: 400, seed }
    }
}

/// Evaluation frames with their ground truth.
#[derive(Debug, Clone, Default)]
pub struct EvalFrames {
    /// Observations as the environment returns them (HWC u8).
    pub observations: Vec<Vec<u8>>,
    /// RAM-decoded object centres on the 84x84 frame, one list per observation.
    pub objects: Vec<Vec<[f32; 2]>>,
    /// Index of the first frame of each clip.
    pub clip_starts: Vec<usize>,
    /// For each clip, the observation just before its first frame (for frame differences).
    pub before_clip: Vec<Vec<u8>>,
}

impl EvalFrames {
    /// The clips as index ranges into `observations`.
    pub fn clip_ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let ends = self.clip_starts.iter().skip(1).copied().chain(std::iter::once(self.observations.len()));
        self.clip_starts.iter().copied().zip(ends).map(|(start, end)| start..end)
    }
}

/// Plays uniformly random actions in `env` and records `sampling.frames` observations in clips
/// (module docs), with the objects of `game` read from RAM at each recorded step.
pub fn sample_clips(env: &mut AtariEnv, game: ram::Game, sampling: &ClipSampling) -> Result<EvalFrames> {
    if sampling.frames == 0 || sampling.clip_len == 0 {
        return Err(KeypointMetricError::Shape(format!(
            "evaluation needs at least one frame per clip and one frame in all (frames {}, clip_len {})",
            sampling.frames, sampling.clip_len
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed ^ 0xE7A1);
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs)?;
    let mut out = EvalFrames::default();
    while out.observations.len() < sampling.frames {
        for _ in 0..rng.random_range(0..=sampling.max_warmup) {
            let info = env.step(rng.random_range(0..env.num_actions()), &mut obs)?;
            if info.terminated || info.truncated {
                env.reset(&mut obs)?;
            }
        }
        out.clip_starts.push(out.observations.len());
        out.before_clip.push(obs.clone());
        let wanted = sampling.clip_len.min(sampling.frames - out.observations.len());
        for _ in 0..wanted {
            let info = env.step(rng.random_range(0..env.num_actions()), &mut obs)?;
            out.observations.push(obs.clone());
            out.objects.push(ram::object_positions_frame84(game, &info.ram));
            if info.terminated || info.truncated {
                env.reset(&mut obs)?;
                break;
            }
        }
    }
    Ok(out)
}
