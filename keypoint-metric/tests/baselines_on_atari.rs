//! The metric separates object-aware keypoints from object-blind ones on real MsPacman frames:
//! frame-difference peaks (which find moving sprites) score above random and fixed-grid keypoints.

use atari::{AtariEnv, Preset, RomCatalog};
use keypoint_metric::{baselines, metric, ram};
use rand::{Rng, SeedableRng};

#[test]
fn frame_difference_beats_random_and_grid_keypoints_on_mspacman() {
    let roms = RomCatalog::discover().expect("ROMs from `make setup`");
    let mut env = AtariEnv::new(&Preset::Atari100k.eval_env("MsPacman"), &roms, 11).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset(&mut obs).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (mut frames, mut objects) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        let info = env.step(rng.random_range(0..env.num_actions()), &mut obs).unwrap();
        if info.terminated || info.truncated {
            break;
        }
        frames.push(obs.clone());
        objects.push(ram::object_positions_frame84(ram::Game::MsPacman, &info.ram));
    }
    let k = 7;
    let random = metric::evaluate(&baselines::random_keypoints(frames.len(), k, 84, 0), &objects, &metric::DEFAULT_RADII).unwrap();
    let grid = metric::evaluate(&vec![baselines::grid_keypoints(k, 84); frames.len()], &objects, &metric::DEFAULT_RADII).unwrap();
    let difference = metric::evaluate(&baselines::frame_difference_keypoints(&frames, 84, 3, k), &objects, &metric::DEFAULT_RADII).unwrap();
    let p8 = |r: &metric::KeypointMetricReport| r.scores.iter().find(|s| s.radius == 8.0).and_then(|s| s.precision).unwrap_or(0.0) as f64;
    eprintln!("frames {}: precision@8 random {:.3} grid {:.3} frame-difference {:.3}", frames.len(), p8(&random), p8(&grid), p8(&difference));
    eprintln!("{}", difference.to_json().unwrap());
    assert!(frames.len() > 100);
    assert!(p8(&difference) > 2.0 * p8(&random), "frame difference should find the moving sprites");
    assert!(p8(&difference) > 2.0 * p8(&grid));
}
