//! Atari 2600 environments for PermaKey-RL, on ALE 0.12.1 compiled from source (`atari-sys`).
//!
//! - [`RomCatalog`]: ROM lookup by game id against ale-py 0.12.1's `md5.json` (never an
//!   unchecked ROM into ALE, which exits the process on one it does not support);
//! - [`Emulator`]: one safe ALE handle (screens as palette indices or RGB, RAM, lives);
//! - [`AtariEnv`]: the DQN wrappers of the reference (see [`env`] for order and edge cases),
//!   configured by a serde [`EnvConfig`]; [`Preset::Atari100k`] is the paper's protocol;
//! - [`noise`]: the "Noisy Atari" distractor bars, on observations only;
//! - [`EnvPool`]: a vectorised pool on a thread pool over one preallocated batch buffer;
//! - [`record`]: GIFs and PNG strips of what the agent sees.
//!
//! ```no_run
//! use atari::{AtariEnv, Preset, RomCatalog};
//! let roms = RomCatalog::discover()?;
//! let mut env = AtariEnv::new(&Preset::Atari100k.train_env("MsPacman"), &roms, 0)?;
//! let mut obs = vec![0u8; env.obs_len()]; // 84 x 84 x 3
//! env.reset(&mut obs)?;
//! let info = env.step(0, &mut obs)?;
//! println!("reward {} lives {} ram[0] {}", info.reward, info.lives, info.ram[0]);
//! # Ok::<(), atari::AtariError>(())
//! ```

pub mod config;
pub mod emulator;
pub mod env;
mod error;
pub mod noise;
pub mod pool;
pub mod preprocess;
pub mod record;
pub mod roms;

pub use config::{clip_reward, EnvConfig, NoiseType, Preset, ProtocolBudget};
pub use emulator::{Emulator, EmulatorSettings, RAM_SIZE, SCREEN_HEIGHT, SCREEN_WIDTH};
pub use env::{AtariEnv, StepInfo};
pub use error::{AtariError, Result};
pub use pool::{EnvPool, PoolView};
pub use roms::{Rom, RomCatalog};
