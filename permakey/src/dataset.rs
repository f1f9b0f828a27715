//! Keypoint pre-training data: collection from the emulator onto disk, and shuffled loaders.
//!
//! Spec sections 1.1 (pre-training data), 1.3 (distractors) and 9b (a uniformly random policy,
//! 100k frames per game by default) of `../shared/spec/permakey-reference.md`.
//!
//! # Collection ([`collect`])
//! An [`atari::EnvPool`] of `num_envs` environments (environment `e` seeded `seed + e`, as the pool
//! does) plays uniformly random actions; environment `e` draws its actions from its own generator
//! ([`action_rng`]), so one environment alone replays its frames exactly, whatever the pool size or
//! thread count. The frames stored are the observations the agent would see, distractor bars
//! included when the [`EnvConfig`] asks for them (the noise is baked in at collection, drawn anew
//! for every frame as in spec 1.3; a noisy dataset is a separate collection). An environment's
//! "tick" 0 is its first reset observation, tick `k` the observation after its `k`-th step; a
//! finished episode is reset in the same step (the pool's auto-reset), so the terminal observation
//! itself is not stored and the next frame starts a new episode. Episodes are the agent's episodes
//! of the config (with `terminal_on_life_loss` a lost life ends one).
//!
//! # On disk
//! `out_dir/manifest.json` ([`Manifest`]) plus shards `shard-00000.npy`, ... Each shard is a NumPy
//! `.npy` v1.0 file of `N x H x W x C` uint8 (`numpy.load` reads it) holding `frames_per_shard / num_envs`
//! consecutive ticks of every environment, environment-major: all of env 0's frames in time
//! order, then env 1's, ... (the last shard may be shorter and cut inside an environment's block).
//! The manifest lists per shard its frame count, byte size, CRC-32 (zlib's, over the whole file,
//! so `zlib.crc32(open(path, 'rb').read())` matches) and its [`Run`]s: maximal blocks of
//! consecutive frames of one episode of one environment (the "episode starts").
//! Memory stays bounded: one shard buffer (`frames_per_shard x 21168` bytes, 43 MB at the
//! default 2048) plus the pool; shards are written as they fill. Every file is written to a
//! hidden temporary name, synced, then renamed, and the manifest is rewritten the same way after
//! every shard with `complete: false` until the last one: a crash leaves only complete shards and
//! a manifest naming them, which [`Dataset::open`] refuses as incomplete (there is no resume).
//!
//! # Split
//! The last `round(validation_fraction x shards)` shards (at least one and at most all but one when
//! there are two or more shards and the fraction is positive) are the validation split, the rest
//! train; recorded per shard in the manifest. Shards are consecutive in time, so this is a
//! temporal split of the same environments: an episode running across the boundary can have
//! frames in both splits (never the same frame).
//!
//! # Loading
//! [`Dataset::open`] checks the manifest and the shards' presence and sizes; every shard read
//! checks its CRC-32 and `.npy` header. Loaders read whole shards on a background thread one shard
//! ahead, so memory is about three shards plus the shuffle buffer.
//! - [`FrameLoader`]: spec 1.1's PermaKey loader: every frame of the split once per epoch; shard
//!   order and the frames inside each shard are permuted, then a `shuffle_buffer`-sized buffer
//!   (tf.data style, 1000 by default) mixes across shard boundaries; batches drop the remainder.
//! - [`PairLoader`]: spec 1.1's Transporter loader: `floor(pairs_per_epoch / shards)` pairs per
//!   shard, each from a random 100-frame window inside one [`Run`] (window start uniform over all
//!   starts `0..=len-100` of all runs, so long runs weigh more; the spec's exclusive upper bound
//!   `[0, N-100)` drops one start, kept here), source at window offset `U{0..48}`, target at
//!   `U{50..98}`. A shard with no run of 100 frames (games whose episodes are shorter) falls
//!   back, if `cross_episode_windows` is set (the default), to windows inside one environment's
//!   contiguous block of the shard, which may then cross an episode reset; a shard with neither
//!   gives no pairs.
//!
//! Everything is seeded: an epoch's order depends only on the loader seed and the epoch number.
//! Batches are CPU tensors (`B x C x H x W` float in `[0, 1]`, [`crate::model::frames_to_tensor`]);
//! move them to the training device.

use std::{
    collections::VecDeque,
    fs::{self, File},
    io::{self, BufWriter, Read, Write},
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use atari::{EnvConfig, EnvPool, NoiseType, Preset, RomCatalog};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;
use tracing::info;

use crate::model::frames_to_tensor;

/// Version of the on-disk layout written into every manifest.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the manifest inside a dataset folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Frames of one Transporter window (spec 1.1).
pub const PAIR_WINDOW: usize = 100;
/// Largest source offset inside a window (`t1 ~ U{0..48}`).
pub const PAIR_SOURCE_MAX_OFFSET: usize = 48;
/// Target offsets inside a window (`t2 ~ U{50..98}`).
pub const PAIR_TARGET_OFFSETS: std::ops::RangeInclusive<usize> = 50..=98;
/// Salt of the action generators, so actions never share a stream with the environments' own.
const ACTION_SEED_SALT: u64 = 0x5241_4E44_4F4D_5F41;

/// What can go wrong collecting or loading a dataset; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("invalid dataset config: {0}")]
    Config(String),
    #[error(transparent)]
    Atari(#[from] atari::AtariError),
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} already holds a dataset; choose an empty folder or delete it")]
    AlreadyExists { path: PathBuf },
    #[error("no dataset manifest at {path}; run the collection first")]
    ManifestMissing { path: PathBuf },
    #[error("dataset manifest {path} is invalid: {reason}")]
    ManifestInvalid { path: PathBuf, reason: String },
    #[error(
        "dataset {path} is incomplete ({frames} of {planned} frames written; the collection stopped early): \
         collect it again"
    )]
    Incomplete { path: PathBuf, frames: u64, planned: u64 },
    #[error("shard {path} is missing; collect the dataset again")]
    ShardMissing { path: PathBuf },
    #[error("shard {path} is corrupted: {reason}; collect the dataset again")]
    ShardCorrupt { path: PathBuf, reason: String },
    #[error("shard {path} has CRC-32 {actual:#010x}, the manifest says {expected:#010x}; collect the dataset again")]
    ChecksumMismatch { path: PathBuf, expected: u32, actual: u32 },
    #[error("the {split} split of {path} is empty{hint}")]
    EmptySplit { split: Split, path: PathBuf, hint: String },
    #[error("batch size {batch_size} is larger than the {available} {what} of the {split} split per epoch")]
    BatchTooLarge { batch_size: usize, available: usize, what: &'static str, split: Split },
    #[error("the shard reader thread stopped unexpectedly")]
    ReaderStopped,
}

pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_owned(), source }
}

/// The two splits of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::Validation => "validation",
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Collection

/// Settings of one dataset collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectDatasetConfig {
    /// The environment (game, wrappers, `noise`); the Atari-100k training env by default, whose
    /// area resize is the one RL frames get (spec 9b: one resize method for both).
    pub env: EnvConfig,
    /// Frames (observations) to store; spec 9b: 100k per game.
    pub frames: u64,
    /// Seeds the environments (`seed + e`) and the random policy ([`action_rng`]).
    pub seed: u64,
    /// Environments stepped together; more give more episodes per shard.
    pub num_envs: usize,
    /// Emulator threads; 0 = the machine's cores, at most `num_envs`.
    pub num_threads: usize,
    /// Frames per shard file (a multiple of `num_envs`); the collection holds one shard in memory.
    pub frames_per_shard: usize,
    /// Share of shards (the last ones) that form the validation split.
    pub validation_fraction: f64,
}

impl Default for CollectDatasetConfig {
    fn default() -> Self {
        Self {
            env: Preset::Atari100k.train_env("MsPacman"),
            frames: 100_000,
            seed: 0,
            num_envs: 8,
            num_threads: 0,
            frames_per_shard: 2048,
            validation_fraction: 0.1,
        }
    }
}

impl CollectDatasetConfig {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.env.validate()?;
        let bad = |msg: String| Err(DatasetError::Config(msg));
        if self.frames == 0 {
            return bad("frames must be at least 1".into());
        }
        if self.num_envs == 0 || self.num_envs > 1024 {
            return bad(format!("num_envs must be in 1..=1024, got {}", self.num_envs));
        }
        if self.frames_per_shard == 0 || !self.frames_per_shard.is_multiple_of(self.num_envs) {
            return bad(format!(
                "frames_per_shard must be a positive multiple of num_envs ({}), got {}",
                self.num_envs, self.frames_per_shard
            ));
        }
        if self.frames_per_shard > u32::MAX as usize {
            return bad(format!("frames_per_shard must fit in 32 bits, got {}", self.frames_per_shard));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return bad(format!("validation_fraction must be in [0, 1), got {}", self.validation_fraction));
        }
        Ok(())
    }

    /// Number of shards the collection writes.
    pub fn num_shards(&self) -> usize {
        self.frames.div_ceil(self.frames_per_shard as u64) as usize
    }

    /// Number of (final) shards that form the validation split.
    pub fn num_validation_shards(&self) -> usize {
        let shards = self.num_shards();
        if shards < 2 || self.validation_fraction <= 0.0 {
            return 0;
        }
        ((self.validation_fraction * shards as f64).round() as usize).clamp(1, shards - 1)
    }
}

/// The action generator of environment `env_index` in a collection seeded `seed`: its `k`-th
/// draw `random_range(0..num_actions)` is the action of the environment's `k`-th step.
pub fn action_rng(seed: u64, env_index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ACTION_SEED_SALT);
    rng.set_stream(env_index as u64);
    rng
}

/// Everything about a dataset folder (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    /// Canonical game id (as the ROM catalogue names it).
    pub game: String,
    /// The environment config the frames came from (`noise` included).
    pub env: EnvConfig,
    /// The distractor bars baked into the frames (copied from `env.noise` for quick reading).
    pub noise: NoiseType,
    /// Always `"uniform_random"` (spec 9b).
    pub policy: String,
    pub seed: u64,
    pub num_envs: usize,
    pub num_actions: usize,
    /// `[height, width, channels]` of one frame (HWC, uint8).
    pub frame_shape: [usize; 3],
    pub frames_per_shard: usize,
    pub validation_fraction: f64,
    /// Frames the collection was asked for.
    pub frames_planned: u64,
    /// Frames in the shards listed below.
    pub frames: u64,
    /// False until the last shard is written.
    pub complete: bool,
    pub created_unix_seconds: u64,
    /// The same instant as `YYYY-MM-DDTHH:MM:SSZ`.
    pub created_utc: String,
    pub shards: Vec<ShardInfo>,
}

/// One shard file as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// File name inside the dataset folder.
    pub file: String,
    pub split: Split,
    pub frames: usize,
    /// File size, header included.
    pub bytes: u64,
    /// CRC-32 (IEEE, zlib's) of the whole file.
    pub crc32: u32,
    /// The shard's frames cut into episode runs, in file order, covering every frame once.
    pub runs: Vec<Run>,
}

/// A maximal block of consecutive frames of a shard from one episode of one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Index of the run's first frame in the shard.
    pub start: u32,
    pub len: u32,
    /// Environment index in the pool (seeded `seed + env`).
    pub env: u32,
    /// Dataset-wide episode id (the same id in two shards = the same episode continued).
    pub episode: u64,
    /// The environment's tick of the first frame (0 = its first reset observation).
    pub first_tick: u64,
}

impl Manifest {
    /// Shard indices of a split, in file order.
    pub fn shard_indices(&self, split: Split) -> Vec<usize> {
        (0..self.shards.len()).filter(|&i| self.shards[i].split == split).collect()
    }

    /// Frames in a split.
    pub fn split_frames(&self, split: Split) -> usize {
        self.shards.iter().filter(|s| s.split == split).map(|s| s.frames).sum()
    }

    /// Bytes of one frame.
    pub fn frame_len(&self) -> usize {
        self.frame_shape.iter().product()
    }

    fn check(&self, path: &Path) -> Result<()> {
        let invalid = |reason: String| Err(DatasetError::ManifestInvalid { path: path.to_owned(), reason });
        if self.format_version != FORMAT_VERSION {
            return invalid(format!("format version {} is not the supported {FORMAT_VERSION}", self.format_version));
        }
        if self.frame_len() == 0 {
            return invalid(format!("frame shape {:?} is empty", self.frame_shape));
        }
        let frames: u64 = self.shards.iter().map(|s| s.frames as u64).sum();
        if frames != self.frames {
            return invalid(format!("shards hold {frames} frames but the manifest says {}", self.frames));
        }
        for (index, shard) in self.shards.iter().enumerate() {
            let expected_bytes = npy_header(&shard_shape(shard.frames, self.frame_shape)).len() as u64
                + (shard.frames * self.frame_len()) as u64;
            if shard.bytes != expected_bytes {
                return invalid(format!(
                    "shard {index} ({}) is listed with {} bytes, but {} frames take {expected_bytes}",
                    shard.file, shard.bytes, shard.frames
                ));
            }
            if shard.file.contains(['/', '\\']) || shard.file.starts_with('.') {
                return invalid(format!("shard file name '{}' must be a plain file name", shard.file));
            }
            let mut next = 0u64;
            for run in &shard.runs {
                if run.start as u64 != next || run.len == 0 || run.env as usize >= self.num_envs {
                    return invalid(format!("shard {index} ({}) has a bad run list at frame {next}", shard.file));
                }
                next += run.len as u64;
            }
            if next != shard.frames as u64 {
                return invalid(format!(
                    "the runs of shard {index} ({}) cover {next} of its {} frames",
                    shard.file, shard.frames
                ));
            }
        }
        Ok(())
    }
}

fn shard_file_name(index: usize) -> String {
    format!("shard-{index:05}.npy")
}

fn shard_shape(frames: usize, frame_shape: [usize; 3]) -> [usize; 4] {
    [frames, frame_shape[0], frame_shape[1], frame_shape[2]]
}

/// Collects `config.frames` frames of `config.env` under a uniformly random policy into `out_dir`
/// (created if needed, must not hold a manifest yet) and returns the final manifest.
pub fn collect(config: &CollectDatasetConfig, roms: &RomCatalog, out_dir: &Path) -> Result<Manifest> {
    config.validate()?;
    let manifest_path = out_dir.join(MANIFEST_FILE);
    if manifest_path.exists() {
        return Err(DatasetError::AlreadyExists { path: out_dir.to_owned() });
    }
    fs::create_dir_all(out_dir).map_err(io_error(out_dir))?;

    let num_envs = config.num_envs;
    let threads = match config.num_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(num_envs),
        n => n,
    };
    let mut pool = EnvPool::new(&config.env, roms, num_envs, threads, config.seed)?;
    let num_actions = pool.num_actions();
    let [h, w, c] = pool.obs_shape();
    let frame_len = pool.obs_len();
    let game = roms.canonical_id(&config.env.game)?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        game: game.clone(),
        env: config.env.clone(),
        noise: config.env.noise,
        policy: "uniform_random".into(),
        seed: config.seed,
        num_envs,
        num_actions,
        frame_shape: [h, w, c],
        frames_per_shard: config.frames_per_shard,
        validation_fraction: config.validation_fraction,
        frames_planned: config.frames,
        frames: 0,
        complete: false,
        created_unix_seconds: created,
        created_utc: format_utc(created),
        shards: Vec::new(),
    };
    let num_shards = config.num_shards();
    let first_validation_shard = num_shards - config.num_validation_shards();
    info!(
        %game,
        frames = config.frames,
        num_envs,
        threads,
        num_shards,
        out_dir = %out_dir.display(),
        "collecting keypoint pre-training frames"
    );

    let mut action_rngs: Vec<ChaCha8Rng> = (0..num_envs).map(|e| action_rng(config.seed, e)).collect();
    let mut actions = vec![0usize; num_envs];
    let mut episode_of_env: Vec<u64> = (0..num_envs as u64).collect();
    let mut next_episode = num_envs as u64;
    let mut episodes_finished = 0u64;
    let mut tick = 0u64; // the next tick every environment records
    let ticks_per_full_shard = config.frames_per_shard / num_envs;
    let mut buffer = vec![0u8; config.frames_per_shard * frame_len];
    let started = Instant::now();
    pool.reset()?;

    for shard_index in 0..num_shards {
        let shard_frames = (config.frames - manifest.frames).min(config.frames_per_shard as u64) as usize;
        let ticks = shard_frames.div_ceil(num_envs);
        debug_assert!(ticks <= ticks_per_full_shard);
        // per environment: (tick offset in this shard, episode) where each run starts
        let mut run_starts: Vec<Vec<(usize, u64)>> = vec![Vec::new(); num_envs];
        for t in 0..ticks {
            let view = if tick == 0 {
                pool.view()
            } else {
                for (action, rng) in actions.iter_mut().zip(&mut action_rngs) {
                    *action = rng.random_range(0..num_actions);
                }
                pool.step(&actions)?
            };
            for (env, (obs, info)) in view.obs.chunks_exact(frame_len).zip(view.infos).enumerate() {
                if tick > 0 && (info.terminated || info.truncated) {
                    episode_of_env[env] = next_episode;
                    next_episode += 1;
                    episodes_finished += 1;
                    run_starts[env].push((t, episode_of_env[env]));
                } else if t == 0 {
                    run_starts[env].push((0, episode_of_env[env]));
                }
                let at = (env * ticks + t) * frame_len;
                buffer[at..at + frame_len].copy_from_slice(obs);
            }
            tick += 1;
        }
        let first_tick = tick - ticks as u64;
        let mut runs = Vec::new();
        for (env, starts) in run_starts.iter().enumerate() {
            for (k, &(t_start, episode)) in starts.iter().enumerate() {
                let t_end = starts.get(k + 1).map_or(ticks, |next| next.0);
                let start = env * ticks + t_start;
                let end = (env * ticks + t_end).min(shard_frames);
                if start >= end {
                    break;
                }
                runs.push(Run {
                    start: start as u32,
                    len: (end - start) as u32,
                    env: env as u32,
                    episode,
                    first_tick: first_tick + t_start as u64,
                });
            }
        }
        let file = shard_file_name(shard_index);
        let path = out_dir.join(&file);
        let (bytes, crc32) =
            write_npy_shard(&path, &buffer[..shard_frames * frame_len], shard_shape(shard_frames, [h, w, c]))?;
        let split = if shard_index >= first_validation_shard { Split::Validation } else { Split::Train };
        manifest.shards.push(ShardInfo { file, split, frames: shard_frames, bytes, crc32, runs });
        manifest.frames += shard_frames as u64;
        manifest.complete = manifest.frames == config.frames;
        write_manifest(&manifest_path, &manifest)?;
        info!(
            shard = shard_index,
            frames = manifest.frames,
            episodes_finished,
            frames_per_second = manifest.frames as f64 / started.elapsed().as_secs_f64().max(1e-9),
            "shard written"
        );
    }
    debug_assert!(manifest.complete);
    Ok(manifest)
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    let text = serde_json::to_vec_pretty(manifest).expect("a manifest always serialises");
    write_atomically(path, |out| out.write_all(&text))
}

/// Writes one `.npy` shard atomically; returns its size and CRC-32.
fn write_npy_shard(path: &Path, data: &[u8], shape: [usize; 4]) -> Result<(u64, u32)> {
    debug_assert_eq!(data.len(), shape.iter().product::<usize>());
    let header = npy_header(&shape);
    let mut crc = Crc32::new();
    crc.update(&header);
    crc.update(data);
    write_atomically(path, |out| {
        out.write_all(&header)?;
        out.write_all(data)
    })?;
    Ok(((header.len() + data.len()) as u64, crc.finish()))
}

/// Writes `path` through a hidden temporary file in the same folder: synced, then renamed over
/// `path`, then the folder synced. On any error the temporary file is removed and `path` is
/// untouched.
fn write_atomically(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&temp)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        // make the rename itself durable
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io_error(path))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (proleptic Gregorian calendar).
fn format_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let seconds_of_day = unix_seconds % 86_400;
    // days since 1970-01-01 to a civil date (H. Hinnant's `civil_from_days`)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

// ------------------------------------------------------------------------------------------------
// NPY and CRC-32

const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The `.npy` v1.0 header of a C-order uint8 array: magic, version, little-endian header length,
/// then the dict padded with spaces and a newline so the data starts at a multiple of 64 bytes.
fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape_text}, }}").into_bytes();
    let total = (NPY_MAGIC.len() + 4 + dict.len() + 1).div_ceil(64) * 64;
    dict.resize(total - NPY_MAGIC.len() - 4 - 1, b' ');
    dict.push(b'\n');
    let mut header = Vec::with_capacity(total);
    header.extend_from_slice(NPY_MAGIC);
    header.extend_from_slice(&[1, 0]);
    header.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    header.extend_from_slice(&dict);
    debug_assert_eq!(header.len(), total);
    header
}

/// Parses a `.npy` header (versions 1 to 3) of a C-order uint8 array: `(data offset, shape)`.
fn parse_npy_header(bytes: &[u8]) -> Result<(usize, Vec<usize>), String> {
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let (dict_start, dict_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize),
        major => return Err(format!("unsupported .npy version {major}")),
    };
    let dict = bytes
        .get(dict_start..dict_start + dict_len)
        .ok_or_else(|| format!("the .npy header says {dict_len} header bytes, the file is shorter"))?;
    let dict = std::str::from_utf8(dict).map_err(|_| "the .npy header is not text".to_string())?;
    let value_after =
        |key: &str| dict.find(key).map(|at| dict[at + key.len()..].trim_start().trim_start_matches(':').trim_start());
    let descr = value_after("'descr'").ok_or("the .npy header has no 'descr'")?;
    if !(descr.starts_with("'|u1'") || descr.starts_with("'u1'") || descr.starts_with("'<u1'")) {
        return Err(format!("dtype is {} but uint8 ('|u1') is expected", descr.split(',').next().unwrap_or("")));
    }
    let fortran = value_after("'fortran_order'").ok_or("the .npy header has no 'fortran_order'")?;
    if !fortran.starts_with("False") {
        return Err("the array is in Fortran order; C order is expected".into());
    }
    let shape = value_after("'shape'").ok_or("the .npy header has no 'shape'")?;
    let shape = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("the .npy shape is not a tuple")?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad .npy shape entry '{s}'")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((dict_start + dict_len, shape))
}

const fn crc32_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut slice = 1;
        while slice < 8 {
            let previous = tables[slice - 1][i];
            tables[slice][i] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            slice += 1;
        }
        i += 1;
    }
    tables
}

static CRC32_TABLES: [[u32; 256]; 8] = crc32_tables();

/// CRC-32 (IEEE 802.3, reflected, as zlib and PNG), slicing-by-8.
#[derive(Debug, Clone, Copy)]
struct Crc32(u32);

impl Crc32 {
    fn new() -> Self {
        Self(0xFFFF_FFFF)
    }

    fn update(&mut self, bytes: &[u8]) {
        let t = &CRC32_TABLES;
        let mut crc = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let lo = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ crc;
            let hi = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &byte in chunks.remainder() {
            crc = t[0][((crc ^ byte as u32) & 0xff) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
    }

    fn finish(self) -> u32 {
        !self.0
    }
}

// ------------------------------------------------------------------------------------------------
// Reading

/// An opened dataset folder: the checked manifest; shards are read on demand.
#[derive(Debug, Clone)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

/// One shard in memory (the whole file; frames start after the header).
#[derive(Debug)]
pub struct ShardData {
    pub index: usize,
    bytes: Vec<u8>,
    data_offset: usize,
    frames: usize,
    frame_len: usize,
}

impl ShardData {
    pub fn num_frames(&self) -> usize {
        self.frames
    }

    /// The HWC bytes of frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        let at = self.data_offset + i * self.frame_len;
        &self.bytes[at..at + self.frame_len]
    }

    /// All frames back to back (`N x H x W x C`).
    pub fn frames(&self) -> &[u8] {
        &self.bytes[self.data_offset..]
    }
}

impl Dataset {
    /// Opens the dataset in `dir`: reads and checks the manifest (version, completeness, run
    /// lists) and that every shard file exists with the listed size. Checksums are checked when a
    /// shard is read ([`Dataset::read_shard`], [`Dataset::verify`]).
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(DatasetError::ManifestMissing { path }),
            Err(e) => return Err(DatasetError::Io { path, source: e }),
        };
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| DatasetError::ManifestInvalid { path: path.clone(), reason: e.to_string() })?;
        manifest.check(&path)?;
        if !manifest.complete {
            return Err(DatasetError::Incomplete {
                path: dir.to_owned(),
                frames: manifest.frames,
                planned: manifest.frames_planned,
            });
        }
        for shard in &manifest.shards {
            let shard_path = dir.join(&shard.file);
            let size = match fs::metadata(&shard_path) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(DatasetError::ShardMissing { path: shard_path });
                }
                Err(e) => return Err(DatasetError::Io { path: shard_path, source: e }),
            };
            if size != shard.bytes {
                return Err(DatasetError::ShardCorrupt {
                    path: shard_path,
                    reason: format!("it has {size} bytes, the manifest says {}", shard.bytes),
                });
            }
        }
        Ok(Self { dir: dir.to_owned(), manifest })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reads shard `index` whole and checks its size, CRC-32 and `.npy` header.
    pub fn read_shard(&self, index: usize) -> Result<ShardData> {
        let info = &self.manifest.shards[index];
        let path = self.dir.join(&info.file);
        let corrupt = |reason: String| DatasetError::ShardCorrupt { path: path.clone(), reason };
        let mut bytes = Vec::with_capacity(info.bytes as usize);
        match File::open(&path) {
            Ok(file) => file.take(info.bytes + 1).read_to_end(&mut bytes).map_err(io_error(&path))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(DatasetError::ShardMissing { path }),
            Err(e) => return Err(DatasetError::Io { path, source: e }),
        };
        if bytes.len() as u64 != info.bytes {
            let size = if bytes.len() as u64 > info.bytes { "more".to_string() } else { bytes.len().to_string() };
            return Err(corrupt(format!("it has {size} bytes, the manifest says {}", info.bytes)));
        }
        let mut crc = Crc32::new();
        crc.update(&bytes);
        let actual = crc.finish();
        if actual != info.crc32 {
            return Err(DatasetError::ChecksumMismatch { path, expected: info.crc32, actual });
        }
        let (data_offset, shape) = parse_npy_header(&bytes).map_err(corrupt)?;
        let expected = shard_shape(info.frames, self.manifest.frame_shape);
        if shape != expected {
            return Err(corrupt(format!("its array has shape {shape:?}, the manifest says {expected:?}")));
        }
        if bytes.len() - data_offset != info.frames * self.manifest.frame_len() {
            return Err(corrupt("its data size does not match its header".into()));
        }
        Ok(ShardData { index, bytes, data_offset, frames: info.frames, frame_len: self.manifest.frame_len() })
    }

    /// Reads every shard once, checking sizes, checksums and headers.
    pub fn verify(&self) -> Result<()> {
        for index in 0..self.manifest.shards.len() {
            self.read_shard(index)?;
        }
        Ok(())
    }

    fn empty_split(&self, split: Split, hint: &str) -> DatasetError {
        DatasetError::EmptySplit { split, path: self.dir.clone(), hint: hint.to_owned() }
    }
}

// ------------------------------------------------------------------------------------------------
// Epoch streams (shared by both loaders)

/// One sample before batching: `N` frames of one shard, their pixels back to back.
struct Sample<const N: usize> {
    shard: u32,
    frames: [u32; N],
    pixels: Box<[u8]>,
}

/// An epoch: shards read ahead on a thread in a planned order, each shard's planned samples
/// copied out in plan order into a shuffle buffer, batches drawn from the buffer.
struct EpochStream<const N: usize> {
    plans: VecDeque<(usize, Vec<[u32; N]>)>,
    receiver: Option<mpsc::Receiver<Result<ShardData>>>,
    reader: Option<JoinHandle<()>>,
    current: Option<(ShardData, Vec<[u32; N]>, usize)>,
    buffer: Vec<Sample<N>>,
    buffer_capacity: usize,
    rng: ChaCha8Rng,
    batch_size: usize,
    drop_remainder: bool,
    batches_left: usize,
    source_done: bool,
    failed: bool,
}

impl<const N: usize> EpochStream<N> {
    fn start(
        dataset: Arc<Dataset>,
        plans: Vec<(usize, Vec<[u32; N]>)>,
        rng: ChaCha8Rng,
        batch_size: usize,
        buffer_capacity: usize,
        drop_remainder: bool,
        max_batches: Option<usize>,
    ) -> Self {
        let order: Vec<usize> = plans.iter().map(|(shard, _)| *shard).collect();
        // one shard waits in the channel while the next is read: at most two ahead of the consumer
        let (sender, receiver) = mpsc::sync_channel(1);
        let reader = std::thread::Builder::new()
            .name("dataset-reader".into())
            .spawn(move || {
                for shard in order {
                    let data = dataset.read_shard(shard);
                    let failed = data.is_err();
                    if sender.send(data).is_err() || failed {
                        break;
                    }
                }
            })
            .expect("cannot start the dataset reader thread");
        Self {
            plans: plans.into(),
            receiver: Some(receiver),
            reader: Some(reader),
            current: None,
            buffer: Vec::with_capacity(buffer_capacity.max(1)),
            buffer_capacity: buffer_capacity.max(1),
            rng,
            batch_size,
            drop_remainder,
            batches_left: max_batches.unwrap_or(usize::MAX),
            source_done: false,
            failed: false,
        }
    }

    /// The next planned sample in shard order, or `None` at the end of the epoch.
    fn next_sample(&mut self) -> Option<Result<Sample<N>>> {
        loop {
            if let Some((data, keys, position)) = &mut self.current {
                if let Some(frames) = keys.get(*position) {
                    *position += 1;
                    let mut pixels = Vec::with_capacity(N * data.frame_len);
                    for &frame in frames {
                        pixels.extend_from_slice(data.frame(frame as usize));
                    }
                    let shard = data.index as u32;
                    return Some(Ok(Sample { shard, frames: *frames, pixels: pixels.into_boxed_slice() }));
                }
                self.current = None;
            }
            let (shard, keys) = self.plans.pop_front()?;
            let received = self.receiver.as_ref().map(|r| r.recv());
            match received {
                Some(Ok(Ok(data))) => {
                    debug_assert_eq!(data.index, shard);
                    self.current = Some((data, keys, 0));
                }
                Some(Ok(Err(e))) => return Some(Err(e)),
                Some(Err(_)) | None => return Some(Err(DatasetError::ReaderStopped)),
            }
        }
    }

    fn next_group(&mut self) -> Option<Result<Vec<Sample<N>>>> {
        if self.failed || self.batches_left == 0 {
            return None;
        }
        let mut group = Vec::with_capacity(self.batch_size);
        while group.len() < self.batch_size {
            while !self.source_done && self.buffer.len() < self.buffer_capacity {
                match self.next_sample() {
                    Some(Ok(sample)) => self.buffer.push(sample),
                    Some(Err(e)) => {
                        self.failed = true;
                        self.stop_reader();
                        return Some(Err(e));
                    }
                    None => self.source_done = true,
                }
            }
            if self.buffer.is_empty() {
                break;
            }
            let pick = self.rng.random_range(0..self.buffer.len());
            group.push(self.buffer.swap_remove(pick));
        }
        if group.is_empty() || (group.len() < self.batch_size && self.drop_remainder) {
            self.batches_left = 0;
            self.stop_reader();
            return None;
        }
        self.batches_left -= 1;
        if self.batches_left == 0 {
            self.stop_reader();
        }
        Some(Ok(group))
    }

    fn stop_reader(&mut self) {
        self.receiver = None; // the reader's next send fails and it returns
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl<const N: usize> Drop for EpochStream<N> {
    fn drop(&mut self) {
        self.stop_reader();
    }
}

fn epoch_rng(seed: u64, salt: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ salt);
    rng.set_stream(epoch);
    rng
}

fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(DatasetError::Config("batch_size must be at least 1".into()));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Frame loader

/// Settings of a [`FrameLoader`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameLoaderConfig {
    /// Frames per batch (spec 2: 32 for PermaKey).
    pub batch_size: usize,
    /// Samples in the cross-shard shuffle buffer (spec 1.1: 1000).
    pub shuffle_buffer: usize,
    /// False reads shards and frames in file order with no buffer (for evaluation).
    pub shuffle: bool,
    /// Drops the last, smaller batch of an epoch (spec 1.1: true).
    pub drop_remainder: bool,
    /// Caps the batches of one epoch (spec 1.1 caps validation at 300).
    pub max_batches_per_epoch: Option<usize>,
    pub seed: u64,
}

impl Default for FrameLoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            shuffle_buffer: 1000,
            shuffle: true,
            drop_remainder: true,
            max_batches_per_epoch: None,
            seed: 0,
        }
    }
}

/// Where a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId {
    pub shard: u32,
    pub frame: u32,
}

/// One batch of frames.
#[derive(Debug)]
pub struct FrameBatch {
    /// `B x C x H x W` float in `[0, 1]`, on the CPU.
    pub frames: Tensor,
    pub ids: Vec<FrameId>,
}

/// Shuffled batches of single frames of one split (see the module docs).
///
/// ```no_run
/// # use permakey::dataset::*;
/// let dataset = Dataset::open(std::path::Path::new("data/mspacman"))?;
/// let loader = FrameLoader::new(&dataset, Split::Train, FrameLoaderConfig::default())?;
/// for epoch in 0..2 {
///     for batch in loader.epoch(epoch) {
///         let batch = batch?; // batch.frames: 32 x 3 x 84 x 84
///     }
/// }
/// # Ok::<(), DatasetError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FrameLoader {
    dataset: Arc<Dataset>,
    split: Split,
    shards: Vec<usize>,
    config: FrameLoaderConfig,
}

impl FrameLoader {
    /// A loader over `split`; fails on an empty split or a batch larger than the split.
    pub fn new(dataset: &Dataset, split: Split, config: FrameLoaderConfig) -> Result<Self> {
        check_batch_size(config.batch_size)?;
        let shards = dataset.manifest.shard_indices(split);
        let frames = dataset.manifest.split_frames(split);
        if frames == 0 {
            let hint = if split == Split::Validation {
                " (collect with validation_fraction > 0 and at least two shards)"
            } else {
                ""
            };
            return Err(dataset.empty_split(split, hint));
        }
        if config.batch_size > frames {
            return Err(DatasetError::BatchTooLarge {
                batch_size: config.batch_size,
                available: frames,
                what: "frames",
                split,
            });
        }
        Ok(Self { dataset: Arc::new(dataset.clone()), split, shards, config })
    }

    pub fn split(&self) -> Split {
        self.split
    }

    /// Frames of the split.
    pub fn num_frames(&self) -> usize {
        self.dataset.manifest.split_frames(self.split)
    }

    /// Batches one epoch yields.
    pub fn batches_per_epoch(&self) -> usize {
        let frames = self.num_frames();
        let batches = if self.config.drop_remainder {
            frames / self.config.batch_size
        } else {
            frames.div_ceil(self.config.batch_size)
        };
        self.config.max_batches_per_epoch.map_or(batches, |cap| batches.min(cap))
    }

    /// The batches of epoch `epoch` (its order depends only on the seed and `epoch`).
    pub fn epoch(&self, epoch: u64) -> FrameEpoch {
        let mut rng = epoch_rng(self.config.seed, 0x4652_414D_4553, epoch);
        let mut order = self.shards.clone();
        if self.config.shuffle {
            order.shuffle(&mut rng);
        }
        let plans = order
            .into_iter()
            .map(|shard| {
                let mut frames: Vec<[u32; 1]> =
                    (0..self.dataset.manifest.shards[shard].frames as u32).map(|f| [f]).collect();
                if self.config.shuffle {
                    frames.shuffle(&mut rng);
                }
                (shard, frames)
            })
            .collect();
        let buffer = if self.config.shuffle { self.config.shuffle_buffer } else { 1 };
        let [h, w, c] = self.dataset.manifest.frame_shape;
        FrameEpoch {
            stream: EpochStream::start(
                self.dataset.clone(),
                plans,
                rng,
                self.config.batch_size,
                buffer,
                self.config.drop_remainder,
                self.config.max_batches_per_epoch,
            ),
            shape: [h as i64, w as i64, c as i64],
        }
    }
}

/// Iterator over one epoch of a [`FrameLoader`]; stops after the first error.
pub struct FrameEpoch {
    stream: EpochStream<1>,
    shape: [i64; 3],
}

impl Iterator for FrameEpoch {
    type Item = Result<FrameBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let group = match self.stream.next_group()? {
            Ok(group) => group,
            Err(e) => return Some(Err(e)),
        };
        let mut bytes = Vec::with_capacity(group.len() * group[0].pixels.len());
        let mut ids = Vec::with_capacity(group.len());
        for sample in &group {
            bytes.extend_from_slice(&sample.pixels);
            ids.push(FrameId { shard: sample.shard, frame: sample.frames[0] });
        }
        let [h, w, c] = self.shape;
        let frames = frames_to_tensor(&bytes, group.len() as i64, h, w, c, tch::Device::Cpu);
        Some(Ok(FrameBatch { frames, ids }))
    }
}

// ------------------------------------------------------------------------------------------------
// Pair loader

/// Settings of a [`PairLoader`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairLoaderConfig {
    /// Pairs per batch (spec 6: 64 for the Transporter).
    pub batch_size: usize,
    /// Pairs of one epoch, split evenly over the shards with windows (spec 1.1: 100000).
    pub pairs_per_epoch: usize,
    /// Samples in the cross-shard shuffle buffer.
    pub shuffle_buffer: usize,
    /// Caps the batches of one epoch (spec 1.1 caps validation at 300).
    pub max_batches_per_epoch: Option<usize>,
    /// Where a shard has no episode run of 100 frames, takes windows from one environment's
    /// contiguous block instead (which may cross an episode reset).
    pub cross_episode_windows: bool,
    pub seed: u64,
}

impl Default for PairLoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            pairs_per_epoch: 100_000,
            shuffle_buffer: 1000,
            max_batches_per_epoch: None,
            cross_episode_windows: true,
            seed: 0,
        }
    }
}

/// Where a pair came from: two frames of one shard, `target - source` in `2..=98`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairId {
    pub shard: u32,
    pub source: u32,
    pub target: u32,
}

/// One batch of (source, target) pairs.
#[derive(Debug)]
pub struct PairBatch {
    /// `B x C x H x W` float in `[0, 1]`, on the CPU.
    pub source: Tensor,
    pub target: Tensor,
    pub ids: Vec<PairId>,
}

/// A stretch of consecutive frames of one shard that windows may be cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: u32,
    len: u32,
}

/// The segments of a shard that hold a whole window: its episode runs, else (with
/// `cross_episode`) its per-environment contiguous blocks; empty if neither does.
fn window_segments(shard: &ShardInfo, cross_episode: bool) -> Vec<Segment> {
    let long = |segments: Vec<Segment>| -> Vec<Segment> {
        segments.into_iter().filter(|s| s.len as usize >= PAIR_WINDOW).collect()
    };
    let runs = long(shard.runs.iter().map(|r| Segment { start: r.start, len: r.len }).collect());
    if !runs.is_empty() || !cross_episode {
        return runs;
    }
    let mut blocks: Vec<Segment> = Vec::new();
    let mut previous: Option<&Run> = None;
    for run in &shard.runs {
        let continues = previous.is_some_and(|p| {
            p.env == run.env && p.first_tick + p.len as u64 == run.first_tick && p.start + p.len == run.start
        });
        match blocks.last_mut() {
            Some(block) if continues => block.len += run.len,
            _ => blocks.push(Segment { start: run.start, len: run.len }),
        }
        previous = Some(run);
    }
    long(blocks)
}

/// Draws one (source, target) pair from `segments` (each at least one window long).
fn sample_pair(segments: &[Segment], rng: &mut impl Rng) -> [u32; 2] {
    let starts = |s: &Segment| (s.len as usize - PAIR_WINDOW + 1) as u64;
    let total: u64 = segments.iter().map(starts).sum();
    let mut pick = rng.random_range(0..total);
    let segment = segments
        .iter()
        .find(|s| {
            let n = starts(s);
            if pick < n {
                true
            } else {
                pick -= n;
                false
            }
        })
        .expect("pick < total");
    let window = segment.start as usize + pick as usize;
    let source = window + rng.random_range(0..=PAIR_SOURCE_MAX_OFFSET);
    let target = window + rng.random_range(PAIR_TARGET_OFFSETS);
    [source as u32, target as u32]
}

/// Shuffled batches of (source, target) frame pairs for the Transporter (see the module docs).
#[derive(Debug, Clone)]
pub struct PairLoader {
    dataset: Arc<Dataset>,
    split: Split,
    /// Shards with windows and their segments.
    shards: Vec<(usize, Vec<Segment>)>,
    pairs_per_shard: usize,
    config: PairLoaderConfig,
}

impl PairLoader {
    /// A loader over `split`; fails when no shard of the split holds a 100-frame window, or the
    /// batch is larger than an epoch.
    pub fn new(dataset: &Dataset, split: Split, config: PairLoaderConfig) -> Result<Self> {
        check_batch_size(config.batch_size)?;
        let indices = dataset.manifest.shard_indices(split);
        if indices.is_empty() {
            return Err(dataset.empty_split(split, ""));
        }
        let shards: Vec<(usize, Vec<Segment>)> = indices
            .into_iter()
            .map(|i| (i, window_segments(&dataset.manifest.shards[i], config.cross_episode_windows)))
            .filter(|(_, segments)| !segments.is_empty())
            .collect();
        if shards.is_empty() {
            let hint = if config.cross_episode_windows {
                format!(" of {PAIR_WINDOW}-frame windows: no environment block is that long (use larger shards)")
            } else {
                format!(" of {PAIR_WINDOW}-frame windows: no episode is that long (allow cross_episode_windows)")
            };
            return Err(dataset.empty_split(split, &hint));
        }
        let pairs_per_shard = config.pairs_per_epoch / shards.len();
        let pairs = pairs_per_shard * shards.len();
        if config.batch_size > pairs {
            return Err(DatasetError::BatchTooLarge {
                batch_size: config.batch_size,
                available: pairs,
                what: "pairs",
                split,
            });
        }
        Ok(Self { dataset: Arc::new(dataset.clone()), split, shards, pairs_per_shard, config })
    }

    pub fn split(&self) -> Split {
        self.split
    }

    /// Shards that give pairs (those with at least one window).
    pub fn num_shards_with_windows(&self) -> usize {
        self.shards.len()
    }

    /// Pairs one epoch draws (before dropping the remainder).
    pub fn pairs_per_epoch(&self) -> usize {
        self.pairs_per_shard * self.shards.len()
    }

    pub fn batches_per_epoch(&self) -> usize {
        let batches = self.pairs_per_epoch() / self.config.batch_size;
        self.config.max_batches_per_epoch.map_or(batches, |cap| batches.min(cap))
    }

    /// The batches of epoch `epoch` (its order depends only on the seed and `epoch`).
    pub fn epoch(&self, epoch: u64) -> PairEpoch {
        let mut rng = epoch_rng(self.config.seed, 0x5041_4952_5321, epoch);
        let mut order: Vec<&(usize, Vec<Segment>)> = self.shards.iter().collect();
        order.shuffle(&mut rng);
        let plans = order
            .into_iter()
            .map(|(shard, segments)| {
                (*shard, (0..self.pairs_per_shard).map(|_| sample_pair(segments, &mut rng)).collect())
            })
            .collect();
        let [h, w, c] = self.dataset.manifest.frame_shape;
        PairEpoch {
            stream: EpochStream::start(
                self.dataset.clone(),
                plans,
                rng,
                self.config.batch_size,
                self.config.shuffle_buffer,
                true,
                self.config.max_batches_per_epoch,
            ),
            shape: [h as i64, w as i64, c as i64],
        }
    }
}

/// Iterator over one epoch of a [`PairLoader`]; stops after the first error.
pub struct PairEpoch {
    stream: EpochStream<2>,
    shape: [i64; 3],
}

impl Iterator for PairEpoch {
    type Item = Result<PairBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let group = match self.stream.next_group()? {
            Ok(group) => group,
            Err(e) => return Some(Err(e)),
        };
        let frame_len = group[0].pixels.len() / 2;
        let mut source = Vec::with_capacity(group.len() * frame_len);
        let mut target = Vec::with_capacity(group.len() * frame_len);
        let mut ids = Vec::with_capacity(group.len());
        for sample in &group {
            source.extend_from_slice(&sample.pixels[..frame_len]);
            target.extend_from_slice(&sample.pixels[frame_len..]);
            ids.push(PairId { shard: sample.shard, source: sample.frames[0], target: sample.frames[1] });
        }
        let [h, w, c] = self.shape;
        let b = group.len() as i64;
        Some(Ok(PairBatch {
            source: frames_to_tensor(&source, b, h, w, c, tch::Device::Cpu),
            target: frames_to_tensor(&target, b, h, w, c, tch::Device::Cpu),
            ids,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use atari::AtariEnv;
    use tch::Kind;

    use super::*;

    fn roms() -> RomCatalog {
        RomCatalog::discover().expect("ROMs installed by `make setup`")
    }

    /// 600 MsPacman frames from 2 environments in 2 shards of 300 (150 ticks per env per shard);
    /// shard 0 is train, shard 1 validation.
    fn small_config(seed: u64) -> CollectDatasetConfig {
        CollectDatasetConfig {
            env: Preset::Atari100k.train_env("MsPacman"),
            frames: 600,
            seed,
            num_envs: 2,
            num_threads: 2,
            frames_per_shard: 300,
            validation_fraction: 0.5,
        }
    }

    fn collect_small(seed: u64) -> (tempfile::TempDir, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let manifest = collect(&small_config(seed), &roms(), dir.path()).unwrap();
        (dir, manifest)
    }

    /// Environment `env` of a collection played alone: its frame and "new episode" flag per tick.
    fn replay(config: &CollectDatasetConfig, env_index: usize, ticks: usize) -> (Vec<Vec<u8>>, Vec<bool>) {
        let mut env = AtariEnv::new(&config.env, &roms(), config.seed + env_index as u64).unwrap();
        let mut rng = action_rng(config.seed, env_index);
        let mut obs = vec![0u8; env.obs_len()];
        env.reset(&mut obs).unwrap();
        let (mut frames, mut new_episode) = (vec![obs.clone()], vec![true]);
        for _ in 1..ticks {
            let action = rng.random_range(0..env.num_actions());
            let info = env.step(action, &mut obs).unwrap();
            let done = info.terminated || info.truncated;
            if done {
                env.reset(&mut obs).unwrap();
            }
            frames.push(obs.clone());
            new_episode.push(done);
        }
        (frames, new_episode)
    }

    fn tensor_bytes(frames: &Tensor) -> Vec<u8> {
        let hwc = (frames * 255.0).round().to_kind(Kind::Uint8).permute([0, 2, 3, 1]).contiguous();
        Vec::<u8>::try_from(hwc.flatten(0, -1)).unwrap()
    }

    #[test]
    fn crc32_matches_zlib() {
        let crc = |bytes: &[u8]| {
            let mut crc = Crc32::new();
            crc.update(bytes);
            crc.finish()
        };
        assert_eq!(crc(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc(b""), 0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let data: Vec<u8> = (0..300).map(|_| rng.random()).collect();
        for len in 0..data.len() {
            let mut bytewise = 0xFFFF_FFFFu32;
            for &b in &data[..len] {
                bytewise = CRC32_TABLES[0][((bytewise ^ b as u32) & 0xff) as usize] ^ (bytewise >> 8);
            }
            assert_eq!(crc(&data[..len]), !bytewise, "length {len}");
            // streaming in two parts gives the same value
            let mut split = Crc32::new();
            split.update(&data[..len / 3]);
            split.update(&data[len / 3..len]);
            assert_eq!(split.finish(), !bytewise);
        }
    }

    #[test]
    fn npy_headers_round_trip_and_bad_ones_are_rejected() {
        for shape in [vec![0, 84, 84, 3], vec![300, 84, 84, 3], vec![7], vec![123_456, 210, 160, 1]] {
            let header = npy_header(&shape);
            assert_eq!(header.len() % 64, 0);
            assert_eq!(*header.last().unwrap(), b'\n');
            assert_eq!(&header[6..8], &[1, 0]);
            assert_eq!(parse_npy_header(&header).unwrap(), (header.len(), shape));
        }
        let good = String::from_utf8_lossy(&npy_header(&[2, 3])[10..]).into_owned();
        let with_dict = |dict: &str| {
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            bytes.extend_from_slice(dict.as_bytes());
            parse_npy_header(&bytes)
        };
        assert!(with_dict(&good).is_ok());
        assert!(with_dict(&good.replace("|u1", "<f4")).unwrap_err().contains("uint8"));
        assert!(with_dict(&good.replace("False", "True")).unwrap_err().contains("Fortran"));
        assert!(with_dict(&good.replace("(2, 3)", "(2, x)")).unwrap_err().contains("shape"));
        assert!(parse_npy_header(b"PK\x03\x04 not numpy").unwrap_err().contains("magic"));
        assert!(parse_npy_header(b"\x93NUMPY\x01\x00\xff\x00{'descr'").unwrap_err().contains("shorter"));
    }

    #[test]
    fn utc_timestamps() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn config_validation_and_split_sizes() {
        let good = CollectDatasetConfig::default();
        good.validate().unwrap();
        assert_eq!((good.num_shards(), good.num_validation_shards()), (49, 5));
        let err = CollectDatasetConfig { frames_per_shard: 300, num_envs: 8, ..good.clone() }.validate().unwrap_err();
        assert!(err.to_string().contains("frames_per_shard"), "{err}");
        let err = CollectDatasetConfig { validation_fraction: 1.0, ..good.clone() }.validate().unwrap_err();
        assert!(err.to_string().contains("validation_fraction"), "{err}");
        let err = CollectDatasetConfig { frames: 0, ..good.clone() }.validate().unwrap_err();
        assert!(err.to_string().contains("frames"), "{err}");
        let shards = |frames, fraction| {
            let c = CollectDatasetConfig {
                frames,
                frames_per_shard: 100,
                num_envs: 1,
                validation_fraction: fraction,
                ..good.clone()
            };
            (c.num_shards(), c.num_validation_shards())
        };
        assert_eq!(shards(100, 0.1), (1, 0), "one shard: all train");
        assert_eq!(shards(200, 0.01), (2, 1), "at least one validation shard");
        assert_eq!(shards(200, 0.9), (2, 1), "at least one train shard");
        assert_eq!(shards(250, 0.0), (3, 0));
        let text = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<CollectDatasetConfig>(&text).unwrap(), good);
        assert!(serde_json::from_str::<CollectDatasetConfig>(r#"{"frame": 10}"#).is_err());
    }

    #[test]
    fn atomic_writes_leave_nothing_behind_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-00000.npy");
        let err = write_atomically(&path, |out| {
            out.write_all(&[1; 4096])?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "no shard and no temporary file");
        write_atomically(&path, |out| out.write_all(b"abc")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn collected_frames_are_the_environments_frames() {
        let config = small_config(11);
        let (dir, manifest) = collect_small(11);
        assert!(manifest.complete);
        assert_eq!(manifest.frames, 600);
        assert_eq!(manifest.game, "ms_pacman");
        assert_eq!(manifest.frame_shape, [84, 84, 3]);
        assert_eq!(manifest.shards.len(), 2);
        assert_eq!(manifest.shards.iter().map(|s| s.split).collect::<Vec<_>>(), [Split::Train, Split::Validation]);
        let dataset = Dataset::open(dir.path()).unwrap();
        assert_eq!(dataset.manifest(), &manifest);
        dataset.verify().unwrap();
        let ticks = 300; // 2 shards x 150 ticks per environment
        for env in 0..2 {
            let (frames, new_episode) = replay(&config, env, ticks);
            let mut covered = 0;
            for (index, shard) in manifest.shards.iter().enumerate() {
                let data = dataset.read_shard(index).unwrap();
                for run in shard.runs.iter().filter(|r| r.env == env as u32) {
                    let first = run.first_tick as usize;
                    let shard_first_tick = index * 150;
                    assert!(
                        first == shard_first_tick || new_episode[first],
                        "a run starts at a shard start or an episode start"
                    );
                    for i in 0..run.len as usize {
                        assert_eq!(
                            data.frame(run.start as usize + i),
                            &frames[first + i][..],
                            "env {env} tick {}",
                            first + i
                        );
                        if i > 0 {
                            assert!(!new_episode[first + i], "no episode starts inside a run");
                        }
                    }
                    covered += run.len as usize;
                }
            }
            assert_eq!(covered, ticks, "every tick of env {env} stored once");
            let episodes = new_episode.iter().filter(|&&n| n).count();
            let runs = manifest.shards.iter().flat_map(|s| &s.runs).filter(|r| r.env == env as u32).count();
            assert!(runs >= episodes, "{runs} runs for {episodes} episodes");
        }
    }

    #[test]
    fn collection_is_deterministic_per_seed_and_independent_of_threads() {
        let crcs = |seed: u64, threads: usize| {
            let dir = tempfile::tempdir().unwrap();
            let config =
                CollectDatasetConfig { frames: 120, frames_per_shard: 60, num_threads: threads, ..small_config(seed) };
            let manifest = collect(&config, &roms(), dir.path()).unwrap();
            manifest.shards.iter().map(|s| (s.crc32, s.runs.clone())).collect::<Vec<_>>()
        };
        let first = crcs(5, 2);
        assert_eq!(first, crcs(5, 1));
        assert_ne!(first, crcs(6, 2));
    }

    #[test]
    fn frame_loader_sees_every_frame_once_per_epoch() {
        let (dir, _) = collect_small(12);
        let dataset = Dataset::open(dir.path()).unwrap();
        let config = FrameLoaderConfig { batch_size: 50, shuffle_buffer: 64, seed: 3, ..Default::default() };
        let loader = FrameLoader::new(&dataset, Split::Train, config.clone()).unwrap();
        assert_eq!((loader.num_frames(), loader.batches_per_epoch()), (300, 6));
        let shard0 = dataset.read_shard(0).unwrap();
        let mut orders = Vec::new();
        for epoch in 0..2 {
            let mut seen = Vec::new();
            for batch in loader.epoch(epoch) {
                let batch = batch.unwrap();
                assert_eq!(batch.frames.size(), [50, 3, 84, 84]);
                assert_eq!(batch.frames.kind(), Kind::Float);
                let expected: Vec<u8> =
                    batch.ids.iter().flat_map(|id| shard0.frame(id.frame as usize).to_vec()).collect();
                assert_eq!(tensor_bytes(&batch.frames), expected, "batch pixels are the stored frames");
                seen.extend(batch.ids);
            }
            assert_eq!(seen.len(), 300);
            let distinct: HashSet<FrameId> = seen.iter().copied().collect();
            assert_eq!(distinct.len(), 300, "every train frame exactly once");
            assert!(seen.iter().all(|id| id.shard == 0));
            assert_ne!(seen[..20], (0..20).map(|f| FrameId { shard: 0, frame: f }).collect::<Vec<_>>()[..], "shuffled");
            orders.push(seen);
        }
        assert_ne!(orders[0], orders[1], "epochs differ");
        let again: Vec<FrameId> = loader.epoch(1).flat_map(|b| b.unwrap().ids).collect();
        assert_eq!(again, orders[1], "an epoch is a function of seed and epoch number");

        // drop-remainder, caps, no shuffling, and the validation split
        let loader =
            FrameLoader::new(&dataset, Split::Train, FrameLoaderConfig { batch_size: 64, ..config.clone() }).unwrap();
        let ids: Vec<FrameId> = loader.epoch(0).flat_map(|b| b.unwrap().ids).collect();
        assert_eq!((ids.len(), ids.iter().collect::<HashSet<_>>().len()), (256, 256));
        let capped = FrameLoaderConfig { max_batches_per_epoch: Some(2), ..config.clone() };
        let loader = FrameLoader::new(&dataset, Split::Validation, capped).unwrap();
        assert_eq!(loader.batches_per_epoch(), 2);
        let batches: Vec<FrameBatch> = loader.epoch(0).map(Result::unwrap).collect();
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().flat_map(|b| &b.ids).all(|id| id.shard == 1));
        let ordered = FrameLoaderConfig { shuffle: false, drop_remainder: false, batch_size: 70, ..config };
        let loader = FrameLoader::new(&dataset, Split::Validation, ordered).unwrap();
        let sizes: Vec<i64> = loader.epoch(0).map(|b| b.unwrap().frames.size()[0]).collect();
        assert_eq!(sizes, [70, 70, 70, 70, 20]);
        let ids: Vec<u32> = loader.epoch(0).flat_map(|b| b.unwrap().ids).map(|id| id.frame).collect();
        assert_eq!(ids, (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn pair_loader_draws_pairs_inside_windows() {
        let (dir, manifest) = collect_small(13);
        let dataset = Dataset::open(dir.path()).unwrap();
        let config = PairLoaderConfig {
            batch_size: 16,
            pairs_per_epoch: 200,
            shuffle_buffer: 50,
            seed: 1,
            ..Default::default()
        };
        let loader = PairLoader::new(&dataset, Split::Train, config.clone()).unwrap();
        assert_eq!((loader.pairs_per_epoch(), loader.batches_per_epoch()), (200, 12));
        let data = dataset.read_shard(0).unwrap();
        let segments = window_segments(&manifest.shards[0], true);
        assert!(!segments.is_empty());
        let mut ids = Vec::new();
        for batch in loader.epoch(0) {
            let batch = batch.unwrap();
            assert_eq!(batch.source.size(), [16, 3, 84, 84]);
            assert_eq!(batch.target.size(), [16, 3, 84, 84]);
            let source: Vec<u8> = batch.ids.iter().flat_map(|id| data.frame(id.source as usize).to_vec()).collect();
            let target: Vec<u8> = batch.ids.iter().flat_map(|id| data.frame(id.target as usize).to_vec()).collect();
            assert_eq!(tensor_bytes(&batch.source), source);
            assert_eq!(tensor_bytes(&batch.target), target);
            ids.extend(batch.ids);
        }
        assert_eq!(ids.len(), 192);
        for id in &ids {
            assert!((2..=98).contains(&(id.target - id.source)), "{id:?}");
            assert!(
                segments.iter().any(|s| s.start <= id.source && id.target < s.start + s.len),
                "{id:?} lies inside one segment"
            );
        }
        let again: Vec<PairId> = loader.epoch(0).flat_map(|b| b.unwrap().ids).collect();
        assert_eq!(again, ids);
        let other: Vec<PairId> = loader.epoch(1).flat_map(|b| b.unwrap().ids).collect();
        assert_ne!(other, ids);
        let err = PairLoader::new(&dataset, Split::Train, PairLoaderConfig { batch_size: 201, ..config }).unwrap_err();
        assert!(matches!(err, DatasetError::BatchTooLarge { available: 200, .. }), "{err}");
    }

    #[test]
    fn window_segments_prefer_runs_then_fall_back_to_environment_blocks() {
        let run = |start, len, env, episode, first_tick| Run { start, len, env, episode, first_tick };
        let shard = |runs: Vec<Run>| ShardInfo {
            file: "x.npy".into(),
            split: Split::Train,
            frames: runs.iter().map(|r| r.len as usize).sum(),
            bytes: 0,
            crc32: 0,
            runs,
        };
        // env 0: episodes of 60 and 90 frames back to back; env 1: one of 150
        let long = shard(vec![run(0, 60, 0, 0, 0), run(60, 90, 0, 2, 60), run(150, 150, 1, 1, 0)]);
        assert_eq!(window_segments(&long, true), [Segment { start: 150, len: 150 }]);
        // no run reaches 100 frames: env 0's block (60 + 90) does; env 1's 80 does not
        let short = shard(vec![run(0, 60, 0, 0, 0), run(60, 90, 0, 2, 60), run(150, 80, 1, 1, 0)]);
        assert_eq!(window_segments(&short, true), [Segment { start: 0, len: 150 }]);
        assert!(window_segments(&short, false).is_empty());
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let segments = [Segment { start: 0, len: 100 }, Segment { start: 500, len: 199 }];
        let (mut first, mut second) = (0, 0);
        let (mut min_gap, mut max_gap) = (u32::MAX, 0);
        for _ in 0..20_000 {
            let [source, target] = sample_pair(&segments, &mut rng);
            if source < 100 {
                first += 1;
                assert!(source <= 48 && (50..=98).contains(&target));
            } else {
                second += 1;
                assert!(source >= 500 && target < 699);
            }
            min_gap = min_gap.min(target - source);
            max_gap = max_gap.max(target - source);
        }
        assert_eq!((min_gap, max_gap), (2, 98));
        // 1 window start vs 100: the long segment is drawn ~100 times as often
        assert!(first > 100 && first < 400 && second > 19_000, "{first} {second}");
    }

    #[test]
    fn numpy_reads_a_shard() {
        let Some(venv) = std::env::var_os("PERMAKEY_VENV") else {
            eprintln!("PERMAKEY_VENV is not set (cargo sets it from .cargo/config.toml); skipping the numpy check");
            return;
        };
        let (dir, manifest) = collect_small(14);
        let dataset = Dataset::open(dir.path()).unwrap();
        for (index, shard) in manifest.shards.iter().enumerate() {
            let path = dir.path().join(&shard.file);
            let script = "import sys, zlib, numpy\n\
                          p = sys.argv[1]\n\
                          a = numpy.load(p)\n\
                          crc = zlib.crc32(open(p, 'rb').read())\n\
                          print(a.shape, a.dtype, int(a.sum(dtype=numpy.uint64)), int(a[-1, 83, 0, 2]), crc)";
            let output = std::process::Command::new(PathBuf::from(&venv).join("bin/python"))
                .arg("-c")
                .arg(script)
                .arg(&path)
                .output()
                .expect("the venv's python runs");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let data = dataset.read_shard(index).unwrap();
            let sum: u64 = data.frames().iter().map(|&b| b as u64).sum();
            let last_pixel = data.frame(shard.frames - 1)[(83 * 84) * 3 + 2];
            let expected = format!("({}, 84, 84, 3) uint8 {sum} {last_pixel} {}\n", shard.frames, shard.crc32);
            assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
        }
    }

    #[test]
    fn corrupted_and_missing_files_are_reported() {
        let (dir, manifest) = collect_small(15);
        let path = |name: &str| dir.path().join(name);
        let shard0 = path(&manifest.shards[0].file);
        let original = fs::read(&shard0).unwrap();

        // collecting into a folder that holds a dataset
        let err = collect(&small_config(15), &roms(), dir.path()).unwrap_err();
        assert!(matches!(err, DatasetError::AlreadyExists { .. }), "{err}");

        // one flipped byte: open succeeds (sizes match), reading fails on the checksum
        let mut flipped = original.clone();
        flipped[original.len() / 2] ^= 0x40;
        fs::write(&shard0, &flipped).unwrap();
        let dataset = Dataset::open(dir.path()).unwrap();
        let err = dataset.read_shard(0).unwrap_err();
        assert!(matches!(err, DatasetError::ChecksumMismatch { .. }), "{err}");
        assert!(dataset.verify().is_err());
        let loader = FrameLoader::new(&dataset, Split::Train, FrameLoaderConfig::default()).unwrap();
        let results: Vec<Result<FrameBatch>> = loader.epoch(0).collect();
        assert_eq!(results.len(), 1, "the epoch stops at the error");
        assert!(matches!(results[0], Err(DatasetError::ChecksumMismatch { .. })));

        // wrong size
        fs::write(&shard0, &original[..original.len() - 10]).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err();
        assert!(matches!(err, DatasetError::ShardCorrupt { .. }) && err.to_string().contains("bytes"), "{err}");

        // missing
        fs::remove_file(&shard0).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err();
        assert!(matches!(err, DatasetError::ShardMissing { .. }), "{err}");
        fs::write(&shard0, &original).unwrap();
        Dataset::open(dir.path()).unwrap().verify().unwrap();

        // manifests: invalid JSON, inconsistent, incomplete, from the future, missing
        let manifest_path = path(MANIFEST_FILE);
        let text = fs::read_to_string(&manifest_path).unwrap();
        let with_manifest = |text: &str| {
            fs::write(&manifest_path, text).unwrap();
            Dataset::open(dir.path()).unwrap_err()
        };
        let err = with_manifest(&text[..text.len() / 2]);
        assert!(matches!(err, DatasetError::ManifestInvalid { .. }), "{err}");
        let mut edited = manifest.clone();
        edited.frames += 1;
        let err = with_manifest(&serde_json::to_string(&edited).unwrap());
        assert!(matches!(err, DatasetError::ManifestInvalid { .. }), "{err}");
        let mut edited = manifest.clone();
        edited.shards[1].runs.pop();
        let err = with_manifest(&serde_json::to_string(&edited).unwrap());
        assert!(err.to_string().contains("runs"), "{err}");
        let mut edited = manifest.clone();
        edited.complete = false;
        let err = with_manifest(&serde_json::to_string(&edited).unwrap());
        assert!(matches!(err, DatasetError::Incomplete { frames: 600, .. }), "{err}");
        let mut edited = manifest.clone();
        edited.format_version = 99;
        let err = with_manifest(&serde_json::to_string(&edited).unwrap());
        assert!(err.to_string().contains("format version 99"), "{err}");
        fs::remove_file(&manifest_path).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err();
        assert!(matches!(err, DatasetError::ManifestMissing { .. }), "{err}");
        assert!(err.to_string().contains("manifest.json"));
    }

    #[test]
    fn empty_splits_and_oversized_batches_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let config = CollectDatasetConfig { frames: 100, frames_per_shard: 100, ..small_config(16) };
        collect(&config, &roms(), dir.path()).unwrap();
        let dataset = Dataset::open(dir.path()).unwrap();
        let err = FrameLoader::new(&dataset, Split::Validation, FrameLoaderConfig::default()).unwrap_err();
        assert!(matches!(err, DatasetError::EmptySplit { split: Split::Validation, .. }), "{err}");
        let err = FrameLoader::new(&dataset, Split::Train, FrameLoaderConfig { batch_size: 101, ..Default::default() })
            .unwrap_err();
        assert!(matches!(err, DatasetError::BatchTooLarge { batch_size: 101, available: 100, .. }), "{err}");
        let err = FrameLoader::new(&dataset, Split::Train, FrameLoaderConfig { batch_size: 0, ..Default::default() })
            .unwrap_err();
        assert!(matches!(err, DatasetError::Config(_)), "{err}");
        FrameLoader::new(&dataset, Split::Train, FrameLoaderConfig { batch_size: 100, ..Default::default() }).unwrap();
        // 50 ticks per environment: no 100-frame window anywhere
        let err = PairLoader::new(&dataset, Split::Train, PairLoaderConfig::default()).unwrap_err();
        assert!(matches!(err, DatasetError::EmptySplit { .. }) && err.to_string().contains("window"), "{err}");
    }

    fn vm_status(field: &str) -> Option<u64> {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Peak memory of a default collection (8 envs, 2048-frame shards), on 10k frames: memory does
    /// not grow with the frame count beyond the manifest. Run alone:
    /// `cargo test -p permakey --lib dataset::tests::collection_peak_memory -- --ignored --nocapture`
    #[test]
    #[ignore = "slow: collects 10k frames; run alone to read a meaningful peak"]
    fn collection_peak_memory() {
        let frames =
            std::env::var("PERMAKEY_DATASET_MEMORY_FRAMES").ok().and_then(|f| f.parse().ok()).unwrap_or(10_000);
        let roms = roms();
        let before_kib = vm_status("VmRSS:").unwrap();
        // resets VmHWM to the current RSS (Linux >= 4.0)
        let reset = fs::write("/proc/self/clear_refs", "5").is_ok();
        let dir = tempfile::tempdir().unwrap();
        let config = CollectDatasetConfig { frames, ..Default::default() };
        let started = Instant::now();
        let manifest = collect(&config, &roms, dir.path()).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let peak_kib = vm_status("VmHWM:").unwrap();
        let disk: u64 = manifest.shards.iter().map(|s| s.bytes).sum();
        eprintln!(
            "collected {frames} frames in {seconds:.1} s ({:.0} frames/s), {} shards, {:.1} MB on disk; \
             RSS before {:.1} MB, peak {:.1} MB (peak reset: {reset})",
            frames as f64 / seconds,
            manifest.shards.len(),
            disk as f64 / 1e6,
            before_kib as f64 / 1024.0,
            peak_kib as f64 / 1024.0
        );
        assert!(peak_kib < 400 * 1024, "peak RSS {peak_kib} KiB");

        // one epoch of each loader over the same data
        let dataset = Dataset::open(dir.path()).unwrap();

        fs::write("/proc/self/clear_refs", "5").ok();
        let started = Instant::now();
        let loader = FrameLoader::new(&dataset, Split::Train, FrameLoaderConfig::default()).unwrap();
        let batches = loader.epoch(0).inspect(|b| assert!(b.is_ok())).count();
        let frame_peak_kib = vm_status("VmHWM:").unwrap();
        let frame_seconds = started.elapsed().as_secs_f64();
        fs::write("/proc/self/clear_refs", "5").ok();
        let started = Instant::now();
        let pairs = PairLoader::new(
            &dataset,
            Split::Train,
            PairLoaderConfig { pairs_per_epoch: frames as usize, ..Default::default() },
        )
        .unwrap();
        let pair_batches = pairs.epoch(0).inspect(|b| assert!(b.is_ok())).count();
        let pair_peak_kib = vm_status("VmHWM:").unwrap();
        eprintln!(
            "frame loader: {batches} batches of 32 in {frame_seconds:.1} s, peak RSS {:.1} MB; \
             pair loader: {pair_batches} batches of 64 in {:.1} s, peak RSS {:.1} MB",
            frame_peak_kib as f64 / 1024.0,
            started.elapsed().as_secs_f64(),
            pair_peak_kib as f64 / 1024.0
        );
        assert!(frame_peak_kib.max(pair_peak_kib) < 500 * 1024);
    }
}
