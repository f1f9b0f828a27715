//! A vectorised pool: many [`AtariEnv`]s stepped on a thread pool, each writing straight into its
//! slice of one preallocated batch buffer (`num_envs x H x W x C`, u8). Nothing is allocated per step.
//!
//! Environment `i` is seeded with `base_seed + i`. A finished episode (terminated or truncated) is
//! reset in the same call ("same-step auto-reset", as EnvPool and gymnasium's vector envs do):
//! the buffer then holds the next episode's first observation, while the returned [`StepInfo`]
//! still describes the step that ended the episode (its flags, reward and episode totals).

use rayon::prelude::*;

use crate::{config::EnvConfig, env::AtariEnv, env::StepInfo, roms::RomCatalog, AtariError, Result};

/// The batch after a reset or step.
#[derive(Debug, Clone, Copy)]
pub struct PoolView<'a> {
    /// `num_envs` observations back to back.
    pub obs: &'a [u8],
    pub infos: &'a [StepInfo],
}

pub struct EnvPool {
    envs: Vec<AtariEnv>,
    obs: Vec<u8>,
    infos: Vec<StepInfo>,
    obs_len: usize,
    frame_skip: u32,
    threads: rayon::ThreadPool,
}

impl EnvPool {
    /// `num_envs` environments of `config` on `num_threads` worker threads.
    pub fn new(config: &EnvConfig, roms: &RomCatalog, num_envs: usize, num_threads: usize, base_seed: u64) -> Result<Self> {
        if num_envs == 0 || num_threads == 0 {
            return Err(AtariError::Config(format!(
                "an env pool needs at least one environment and one thread, got {num_envs} envs, {num_threads} threads"
            )));
        }
        let envs = (0..num_envs)
            .map(|i| AtariEnv::new(config, roms, base_seed.wrapping_add(i as u64)))
            .collect::<Result<Vec<_>>>()?;
        let obs_len = envs[0].obs_len();
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads)
            .thread_name(|i| format!("env-pool-{i}"))
            .build()
            .map_err(|e| AtariError::Config(format!("cannot start {num_threads} env threads: {e}")))?;
        let blank = StepInfo {
            reward: 0.0,
            terminated: false,
            truncated: false,
            game_over: false,
            lives: 0,
            frame_number: 0,
            episode_frame_number: 0,
            episode_return: 0.0,
            episode_length: 0,
            ram: [0; crate::emulator::RAM_SIZE],
        };
        Ok(Self { obs: vec![0; obs_len * num_envs], infos: vec![blank; num_envs], envs, obs_len, frame_skip: config.frame_skip, threads })
    }

    /// Emulator frames per agent step.
    pub fn frame_skip(&self) -> u32 {
        self.frame_skip
    }

    pub fn num_envs(&self) -> usize {
        self.envs.len()
    }

    pub fn num_actions(&self) -> usize {
        self.envs[0].num_actions()
    }

    pub fn obs_shape(&self) -> [usize; 3] {
        self.envs[0].obs_shape()
    }

    pub fn obs_len(&self) -> usize {
        self.obs_len
    }

    pub fn view(&self) -> PoolView<'_> {
        PoolView { obs: &self.obs, infos: &self.infos }
    }

    /// Resets every environment.
    pub fn reset(&mut self) -> Result<PoolView<'_>> {
        let (envs, obs, infos, len) = (&mut self.envs, &mut self.obs, &mut self.infos, self.obs_len);
        self.threads.install(|| {
            envs.par_iter_mut().zip(obs.par_chunks_mut(len)).zip(infos.par_iter_mut()).try_for_each(
                |((env, obs), info)| {
                    *info = env.reset(obs)?;
                    Ok::<_, AtariError>(())
                },
            )
        })?;
        Ok(self.view())
    }

    /// Steps environment `i` with `actions[i]`, auto-resetting finished episodes.
    /// Actions are checked before any environment moves, so a bad batch changes nothing.
    pub fn step(&mut self, actions: &[usize]) -> Result<PoolView<'_>> {
        if actions.len() != self.envs.len() {
            return Err(AtariError::Config(format!(
                "{} actions given for {} environments",
                actions.len(),
                self.envs.len()
            )));
        }
        let num_actions = self.num_actions();
        if let Some(&action) = actions.iter().find(|&&a| a >= num_actions) {
            return Err(AtariError::ActionOutOfRange { game: self.envs[0].config().game.clone(), action, num_actions });
        }
        let (envs, obs, infos, len) = (&mut self.envs, &mut self.obs, &mut self.infos, self.obs_len);
        self.threads.install(|| {
            envs.par_iter_mut()
                .zip(obs.par_chunks_mut(len))
                .zip(infos.par_iter_mut())
                .zip(actions.par_iter())
                .try_for_each(|(((env, obs), info), &action)| {
                    *info = env.step(action, obs)?;
                    if info.terminated || info.truncated {
                        env.reset(obs)?;
                    }
                    Ok::<_, AtariError>(())
                })
        })?;
        Ok(self.view())
    }
}
