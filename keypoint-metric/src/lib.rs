//! A quantitative keypoint metric grounded in emulator RAM (project issue 6).
//!
//! - [`ram`]: object positions from RAM (AtariARI addresses, our verified pixel maps) on the
//!   210x160 screen and the 84x84 observation;
//! - [`metric`]: precision@r, recall@r and Hungarian-matched temporal jitter, with a JSON report;
//! - [`recording`], [`verify`]: recorded random play and the pixel checks behind the maps;
//! - [`sampling`]: seeded evaluation clips taken at random points of random-play episodes;
//! - [`baselines`]: random, fixed-grid and frame-difference keypoints that know nothing of objects.
//!
//! ```no_run
//! use keypoint_metric::{metric, ram};
//! # fn keypoints_of(_: &[u8]) -> Vec<[f32; 2]> { vec![] }
//! let roms = atari::RomCatalog::discover()?;
//! let mut env = atari::AtariEnv::new(&atari::Preset::Atari100k.eval_env("MsPacman"), &roms, 0)?;
//! let mut obs = vec![0u8; env.obs_len()];
//! env.reset(&mut obs)?;
//! let (mut keypoints, mut objects) = (vec![], vec![]);
//! for _ in 0..100 {
//!     let info = env.step(0, &mut obs)?;
//!     keypoints.push(keypoints_of(&obs)); // K x (y, x) on the 84x84 frame
//!     objects.push(ram::object_positions_frame84(ram::Game::MsPacman, &info.ram));
//! }
//! let report = metric::evaluate(&keypoints, &objects, &metric::DEFAULT_RADII)?;
//! println!("{}", report.to_json()?);
//! # Ok::<(), keypoint_metric::KeypointMetricError>(())
//! ```

pub mod baselines;
mod error;
pub mod metric;
pub mod ram;
pub mod recording;
pub mod sampling;
pub mod verify;

pub use error::{KeypointMetricError, Result};
