//! Statistical checks of the sampling distribution: empirical frequencies against
//! `p_i^alpha / sum_j p_j^alpha` (prioritised) and `1/N` (uniform) with a chi-square
//! goodness-of-fit test at a fixed seed.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use replay::{
    ReplayConfig, SampleKey, SamplingMode, SequenceReplay, priority_mass, testing::SequenceBuilder,
};
use statrs::distribution::{ChiSquared, ContinuousCDF};

const DRAWS: usize = 200_000;
const BATCH: usize = 1_000;

fn filled(
    sampling: SamplingMode,
    priorities: &[f64],
    alpha: f64,
) -> (SequenceReplay, Vec<SampleKey>) {
    let mut replay = SequenceReplay::new(ReplayConfig {
        capacity_sequences: priorities.len(),
        sampling,
        priority_exponent: alpha,
        importance_sampling_exponent: 0.6,
        initial_max_priority: 1.0,
    })
    .unwrap();
    let keys: Vec<SampleKey> = (0..priorities.len())
        .map(|tag| {
            replay
                .insert(SequenceBuilder::new(2).tag(tag as u8).build())
                .unwrap()
        })
        .collect();
    replay.update_priorities(&keys, priorities).unwrap();
    (replay, keys)
}

/// Draws `DRAWS` samples and returns the count per slot.
fn counts(replay: &mut SequenceReplay, seed: u64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = vec![0u64; replay.len()];
    for _ in 0..DRAWS / BATCH {
        let batch = replay.sample(BATCH, &mut rng).unwrap();
        for key in batch.keys {
            counts[key.slot as usize] += 1;
        }
    }
    counts
}

/// Pearson's statistic over the cells with positive expected probability.
fn chi_square(counts: &[u64], expected_probabilities: &[f64]) -> (f64, usize) {
    let total = counts.iter().sum::<u64>() as f64;
    let mut statistic = 0.0;
    let mut cells = 0;
    for (&observed, &probability) in counts.iter().zip(expected_probabilities) {
        if probability > 0.0 {
            let expected = total * probability;
            statistic += (observed as f64 - expected).powi(2) / expected;
            cells += 1;
        }
    }
    (statistic, cells - 1)
}

fn critical_value(degrees_of_freedom: usize, confidence: f64) -> f64 {
    ChiSquared::new(degrees_of_freedom as f64)
        .unwrap()
        .inverse_cdf(confidence)
}

#[test]
fn prioritised_frequencies_match_p_to_the_alpha() {
    let priorities = [0.5, 1.0, 2.0, 3.0, 0.0, 4.0, 0.25, 8.0, 1.5, 6.0];
    let alpha = 0.6;
    let (mut replay, _) = filled(SamplingMode::Prioritized, &priorities, alpha);
    let masses: Vec<f64> = priorities
        .iter()
        .map(|&p| priority_mass(p, alpha))
        .collect();
    let total: f64 = masses.iter().sum();
    let expected: Vec<f64> = masses.iter().map(|m| m / total).collect();

    let counts = counts(&mut replay, 2024);
    assert_eq!(counts[4], 0, "the zero-priority sequence was drawn");
    let (statistic, degrees_of_freedom) = chi_square(&counts, &expected);
    assert_eq!(degrees_of_freedom, 8);
    let critical = critical_value(degrees_of_freedom, 0.999);
    assert!(
        statistic < critical,
        "chi-square {statistic:.2} >= {critical:.2}; counts {counts:?}, expected {expected:?}"
    );
}

#[test]
fn the_test_detects_the_wrong_exponent() {
    // Same draws, checked against alpha = 1 instead of the 0.6 used: must be rejected, so the
    // test above has the power to fail.
    let priorities = [0.5, 1.0, 2.0, 3.0, 0.0, 4.0, 0.25, 8.0, 1.5, 6.0];
    let (mut replay, _) = filled(SamplingMode::Prioritized, &priorities, 0.6);
    let total: f64 = priorities.iter().sum();
    let wrong: Vec<f64> = priorities.iter().map(|p| p / total).collect();
    let counts = counts(&mut replay, 2024);
    let (statistic, degrees_of_freedom) = chi_square(&counts, &wrong);
    assert!(statistic > critical_value(degrees_of_freedom, 0.999));
}

#[test]
fn uniform_frequencies_are_flat_whatever_the_priorities() {
    let priorities = [0.5, 1.0, 2.0, 3.0, 0.0, 4.0, 0.25, 8.0];
    let (mut replay, _) = filled(SamplingMode::Uniform, &priorities, 0.6);
    let expected = vec![1.0 / priorities.len() as f64; priorities.len()];
    let counts = counts(&mut replay, 7);
    let (statistic, degrees_of_freedom) = chi_square(&counts, &expected);
    let critical = critical_value(degrees_of_freedom, 0.999);
    assert!(
        statistic < critical,
        "chi-square {statistic:.2} >= {critical:.2}; {counts:?}"
    );
}

#[test]
fn reported_probabilities_and_weights_match_the_formula() {
    let priorities = [1.0, 2.0, 4.0, 8.0];
    let alpha = 0.5;
    let beta = 0.6;
    let (mut replay, _) = filled(SamplingMode::Prioritized, &priorities, alpha);
    let masses: Vec<f64> = priorities.iter().map(|p: &f64| p.powf(alpha)).collect();
    let total: f64 = masses.iter().sum();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let batch = replay.sample(64, &mut rng).unwrap();
    let raw: Vec<f64> = batch
        .keys
        .iter()
        .map(|key| (4.0 * masses[key.slot as usize] / total).powf(-beta))
        .collect();
    let max = raw.iter().copied().fold(0.0, f64::max);
    for (i, key) in batch.keys.iter().enumerate() {
        let probability = masses[key.slot as usize] / total;
        assert!((batch.probabilities[i] - probability).abs() < 1e-12);
        assert!((f64::from(batch.weights[i]) - raw[i] / max).abs() < 1e-6);
    }
}
