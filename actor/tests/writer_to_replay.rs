//! The writer's output goes into the replay unchanged and comes back out of sampling.

use actor::{SequenceWriter, SequenceWriterConfig, Step};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use replay::{ReplayConfig, SamplingMode, SequenceReplay};

#[test]
fn reference_shaped_episodes_flow_into_the_replay() {
    // Reference shapes: 84x84x3 frames, L 12, P 8, no burn-in; an LSTM(128) state and 7
    // keypoint centres (y, x) per step stored.
    let config = SequenceWriterConfig {
        recurrent_state_len: 256,
        keypoint_dims: 14,
        ..SequenceWriterConfig::default()
    };
    let frame_len = 84 * 84 * 3;
    let mut writer = SequenceWriter::new(config, 2, 0xfeed).unwrap();
    let mut table = SequenceReplay::new(ReplayConfig {
        capacity_sequences: 16,
        sampling: SamplingMode::Prioritized,
        ..ReplayConfig::default()
    })
    .unwrap();
    let mut inserted = 0;
    for (episode, len) in [(0u8, 37usize), (1, 5), (2, 64)] {
        for t in 0..len {
            let observation = vec![episode.wrapping_mul(50).wrapping_add(t as u8); frame_len];
            let state = vec![t as f32 * 0.01; 256];
            let keypoints = [t as f32 / 100.0; 14];
            let sequences = writer
                .add(Step {
                    observation: &observation,
                    action: (t % 18) as u16,
                    reward: if t % 7 == 0 { 1.0 } else { 0.0 },
                    terminal: t + 1 == len,
                    truncated: false,
                    recurrent_state: &state,
                    keypoints: &keypoints,
                    parameter_version: u64::from(episode),
                })
                .unwrap();
            for sequence in sequences {
                table.insert(sequence).unwrap();
                inserted += 1;
            }
        }
    }
    // ceil(37 / 8) + ceil(5 / 8) + ceil(64 / 8) = 5 + 1 + 8.
    assert_eq!(inserted, 14);
    assert_eq!(table.len(), 14);
    let expected_bytes = 14 * replay::sequence_memory_bytes(12, [84, 84, 3], 256, 14);
    assert_eq!(table.memory_bytes(), expected_bytes);

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let batch = table.sample(16, &mut rng).unwrap();
    for item in &batch.items {
        assert_eq!(item.len(), 12);
        assert_eq!(item.observations.len(), 12 * frame_len);
        assert_eq!(item.initial_recurrent_state.len(), 256);
        assert_eq!(item.keypoint_dims, 14);
        assert_eq!(item.keypoints.len(), 12 * 14);
        // Step i's keypoints are those handed over with its frame: episode step t0 + i.
        let t0 = (item.step_keypoints(0)[0] * 100.0).round() as usize;
        for i in 0..item.valid_len() {
            assert_eq!(item.step_keypoints(i), &[(t0 + i) as f32 / 100.0; 14]);
            assert_eq!(
                item.observation(i)[0].wrapping_sub(item.observation(0)[0]),
                i as u8
            );
        }
        assert!(
            item.keypoints[item.valid_len() * 14..]
                .iter()
                .all(|&k| k == 0.0)
        );
        assert_eq!((item.env_id, item.run_id), (2, 0xfeed));
    }
    let outcome = table
        .update_priorities(&batch.keys, &vec![0.3; batch.len()])
        .unwrap();
    assert_eq!(outcome.applied, 16);
}
