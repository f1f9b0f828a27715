//! The wrapped environment and the pool: determinism, protocol edges, noise, bad input.

mod common;

use atari::{AtariEnv, EnvConfig, EnvPool, NoiseType, Preset, StepInfo};

fn run(config: &EnvConfig, seed: u64, steps: usize) -> (Vec<Vec<u8>>, Vec<StepInfo>) {
    let roms = common::roms();
    let mut env = AtariEnv::new(config, &roms, seed).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs).unwrap();
    let actions = common::actions(seed, steps, env.num_actions());
    let mut frames = vec![obs.clone()];
    let mut infos = Vec::new();
    for a in actions {
        let info = env.step(a, &mut obs).unwrap();
        if info.terminated || info.truncated {
            env.reset(&mut obs).unwrap();
        }
        frames.push(obs.clone());
        infos.push(info);
    }
    (frames, infos)
}

#[test]
fn same_seed_gives_the_same_trajectory() {
    let config = Preset::Atari100k.train_env("Seaquest");
    let a = run(&config, 3, 400);
    let b = run(&config, 3, 400);
    assert!(a.0 == b.0, "observations differ for the same seed");
    assert_eq!(a.1, b.1);
    let c = run(&config, 4, 400);
    assert!(a.0 != c.0, "different seeds give different no-op starts and actions");
    assert_eq!(a.0[0].len(), 84 * 84 * 3);
}

#[test]
fn noise_changes_observations_only() {
    let clean = Preset::Atari100k.train_env("MsPacman");
    let noisy = EnvConfig { noise: NoiseType::Both, ..clean.clone() };
    let (clean_frames, clean_infos) = run(&clean, 9, 300);
    let (noisy_frames, noisy_infos) = run(&noisy, 9, 300);
    assert_eq!(clean_infos, noisy_infos, "rewards, terminals and RAM do not see the bars");
    let violet = [128u8, 0, 255];
    for (c, n) in clean_frames.iter().zip(&noisy_frames) {
        assert!(c != n);
        let differing = c.chunks_exact(3).zip(n.chunks_exact(3)).filter(|(a, b)| a != b).count();
        let violet_pixels = n.chunks_exact(3).filter(|p| *p == violet).count();
        assert!(differing <= violet_pixels, "only bar pixels change");
        assert!(violet_pixels >= 5 * 84 * 2 - 25, "two full bars drawn: {violet_pixels}");
    }
    // the bars are reproducible per seed and move between frames
    let (again, _) = run(&noisy, 9, 300);
    assert!(again == noisy_frames);
}

#[test]
fn life_loss_ends_the_agent_episode_but_not_the_game() {
    let roms = common::roms();
    let config = Preset::Atari100k.train_env("MsPacman");
    let mut env = AtariEnv::new(&config, &roms, 0).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    let start = env.reset(&mut obs).unwrap();
    assert_eq!(start.lives, 3);
    let actions = common::actions(5, 4000, env.num_actions());
    let mut life_losses = 0;
    for a in actions {
        let info = env.step(a, &mut obs).unwrap();
        if info.terminated {
            if info.game_over {
                assert_eq!(info.lives, 0);
                assert!(life_losses >= 2, "the game ended after {life_losses} life losses");
                return;
            }
            life_losses += 1;
            let frames_before = info.episode_frame_number;
            let next = env.reset(&mut obs).unwrap();
            assert!(next.episode_frame_number > frames_before, "the game went on after a life loss");
            assert_eq!(next.episode_length, info.episode_length, "game length carries across lives");
        }
    }
    panic!("random MsPacman play should lose all lives within 4000 steps");
}

#[test]
fn eval_env_plays_whole_games_and_truncates_at_the_limit() {
    let roms = common::roms();
    let config = EnvConfig { max_episode_steps: 50, ..Preset::Atari100k.eval_env("MsPacman") };
    let mut env = AtariEnv::new(&config, &roms, 1).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs).unwrap();
    for t in 1..=50 {
        let info = env.step(t % env.num_actions(), &mut obs).unwrap();
        assert!(!info.terminated, "no life-loss terminal in eval at step {t}");
        assert_eq!(info.truncated, t == 50);
        assert_eq!(info.game_over, t == 50);
        assert_eq!(info.episode_length, t as u32);
    }
    let info = env.reset(&mut obs).unwrap();
    assert_eq!(info.episode_length, 0, "truncation restarts the game");
}

#[test]
fn pool_matches_single_environments_and_auto_resets() {
    let roms = common::roms();
    let config = EnvConfig { max_episode_steps: 60, ..Preset::Atari100k.train_env("Breakout") };
    let mut pool = EnvPool::new(&config, &roms, 3, 2, 100).unwrap();
    let mut singles: Vec<AtariEnv> = (0..3).map(|i| AtariEnv::new(&config, &roms, 100 + i).unwrap()).collect();
    let len = pool.obs_len();
    let mut single_obs = vec![vec![0u8; len]; 3];
    pool.reset().unwrap();
    for (env, obs) in singles.iter_mut().zip(&mut single_obs) {
        env.reset(obs).unwrap();
    }
    let mut resets = 0;
    for t in 0..150 {
        let actions: Vec<usize> = (0..3).map(|i| (t + i) % pool.num_actions()).collect();
        let view = pool.step(&actions).unwrap();
        for i in 0..3 {
            let info = singles[i].step(actions[i], &mut single_obs[i]).unwrap();
            if info.terminated || info.truncated {
                singles[i].reset(&mut single_obs[i]).unwrap();
                resets += 1;
            }
            assert_eq!(view.infos[i], info, "env {i} step {t}");
            assert!(view.obs[i * len..(i + 1) * len] == single_obs[i][..], "env {i} step {t}");
        }
    }
    assert!(resets >= 3, "episodes ended and were reset: {resets}");
}

#[test]
fn bad_input_is_rejected_without_moving_anything() {
    let roms = common::roms();
    let config = Preset::Atari100k.train_env("Pong");
    let mut env = AtariEnv::new(&config, &roms, 0).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs).unwrap();
    let err = env.step(99, &mut obs).unwrap_err().to_string();
    assert_eq!(err, "action 99 is out of range: 'pong' has 6 actions (0..6)");
    let err = env.step(0, &mut [0u8; 10]).unwrap_err().to_string();
    assert_eq!(err, "buffer of 10 bytes given where 21168 are needed");
    let mut pool = EnvPool::new(&config, &roms, 2, 1, 0).unwrap();
    pool.reset().unwrap();
    let before = pool.view().infos.to_vec();
    assert!(pool.step(&[0, 7]).is_err());
    assert!(pool.step(&[0]).is_err());
    assert_eq!(pool.view().infos, &before[..], "a rejected batch moves no environment");
    let err = AtariEnv::new(&EnvConfig { game: "Zork".into(), ..config.clone() }, &roms, 0).unwrap_err().to_string();
    assert!(err.starts_with("unknown game 'Zork'; known ids:"), "{err}");
    let err = AtariEnv::new(&EnvConfig { frame_skip: 0, ..config }, &roms, 0).unwrap_err().to_string();
    assert!(err.contains("frame_skip"), "{err}");
}

#[test]
fn grayscale_and_raw_observations_have_their_shapes() {
    let base = Preset::Atari100k.train_env("Frostbite");
    let gray = EnvConfig { grayscale: true, ..base.clone() };
    assert_eq!(run(&gray, 0, 5).0[0].len(), 84 * 84);
    let raw = EnvConfig { obs_height: 210, obs_width: 160, ..base };
    assert_eq!(run(&raw, 0, 5).0[0].len(), 210 * 160 * 3);
}
