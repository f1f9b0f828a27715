//! Evaluation clips are a pure function of their seeds, have the requested shape, and do not
//! reward keypoints parked where objects start (MsPacman's ghost house).

use atari::{AtariEnv, Preset, RomCatalog};
use keypoint_metric::{
    metric, ram,
    sampling::{ClipSampling, EvalFrames, sample_clips},
};

fn clips(seed: u64, sampling: &ClipSampling) -> EvalFrames {
    let roms = RomCatalog::discover().expect("ROMs from `make setup`");
    let mut env = AtariEnv::new(&Preset::Atari100k.eval_env("MsPacman"), &roms, seed).unwrap();
    sample_clips(&mut env, ram::Game::MsPacman, sampling).unwrap()
}

#[test]
fn clips_are_deterministic_per_seed_and_shaped_as_asked() {
    let sampling = ClipSampling { frames: 100, clip_len: 16, max_warmup: 50, seed: 5 };
    let a = clips(5, &sampling);
    let b = clips(5, &sampling);
    assert_eq!(a.observations, b.observations);
    assert_eq!(a.objects, b.objects);
    assert_eq!(a.clip_starts, b.clip_starts);
    let c = clips(5, &ClipSampling { seed: 6, ..sampling });
    assert_ne!(a.observations, c.observations, "another seed plays other frames");
    assert_eq!(a.observations.len(), 100);
    assert_eq!(a.objects.len(), 100);
    assert_eq!(a.before_clip.len(), a.clip_starts.len());
    assert_eq!(a.clip_starts[0], 0);
    assert!(a.clip_ranges().all(|r| !r.is_empty() && r.len() <= 16), "{:?}", a.clip_starts);
    assert!(a.clip_starts.len() >= 100 / 16 + 1);
    // zero frames is a clear error, not an empty report
    let roms = RomCatalog::discover().unwrap();
    let mut env = AtariEnv::new(&Preset::Atari100k.eval_env("MsPacman"), &roms, 0).unwrap();
    let err = sample_clips(&mut env, ram::Game::MsPacman, &ClipSampling { frames: 0, ..sampling }).unwrap_err();
    assert!(err.to_string().contains("at least one frame"), "{err}");
}

#[test]
fn keypoints_parked_on_the_start_positions_gain_less_from_clips() {
    // keypoints fixed where MsPacman's player and ghosts are right after a reset
    let start = clips(0, &ClipSampling { frames: 1, clip_len: 1, max_warmup: 0, seed: 0 });
    let parked = start.objects[0].clone();
    assert!(parked.len() >= 4, "{parked:?}");
    let precision_at_8 = |frames: &EvalFrames| {
        let keypoints = vec![parked.clone(); frames.observations.len()];
        let report = metric::evaluate_clips(&keypoints, &frames.objects, &frames.clip_starts, &metric::DEFAULT_RADII).unwrap();
        report.scores[1].precision.unwrap()
    };
    // the first 400 frames of play (one clip, no warm-up) against 400 frames in clips of 32
    let opening = precision_at_8(&clips(1, &ClipSampling { frames: 400, clip_len: 400, max_warmup: 0, seed: 1 }));
    let spread = precision_at_8(&clips(1, &ClipSampling::new(400, 1)));
    eprintln!("parked keypoints precision@8: opening frames {opening:.3}, clips {spread:.3}");
    assert!(spread < opening, "clips should not reward parked keypoints: {spread} vs {opening}");
}
