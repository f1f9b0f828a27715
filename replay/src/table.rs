//! The sequence table: FIFO storage, uniform or prioritised sampling, priority updates.

use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{
    ReplayError, Sequence, SumTree,
    priority::{importance_weights, priority_mass},
};

/// How [`SequenceReplay::sample`] picks sequences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingMode {
    /// Every stored sequence equally likely; importance weights are all 1. Paper-faithful: the
    /// reference samples without prioritisation (spec 7.4).
    #[default]
    Uniform,
    /// Proportional prioritisation, `P(i) = p_i^alpha / sum_j p_j^alpha`, with importance
    /// weights (R2D2 / Ape-X style). An option beyond the reference.
    Prioritized,
}

/// Configuration of a [`SequenceReplay`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Maximum number of stored sequences; the oldest is evicted first (FIFO). Default 12,500:
    /// the 100k-step preset (spec 9b) at one sequence per 8 steps, i.e. the whole run, about
    /// 3 GiB of 84x84x3 frames (see the crate docs). The reference counts capacity in episodes
    /// (350 by default, spec 7.4); in sequences that is episodes x mean length / period.
    pub capacity_sequences: usize,
    /// Uniform (paper-faithful default) or prioritised sampling.
    pub sampling: SamplingMode,
    /// Priority exponent alpha of prioritised sampling. Default 0.9 (R2D2, Kapturowski et al.
    /// 2019; seed_rl `priority_exponent`).
    pub priority_exponent: f64,
    /// Importance-sampling exponent beta of prioritised sampling. Default 0.6 (R2D2; seed_rl
    /// `importance_sampling_exponent`).
    pub importance_sampling_exponent: f64,
    /// Priority of new sequences before any priority has been reported (Schaul et al. 2016
    /// give new transitions the maximum priority seen so far, starting at 1).
    pub initial_max_priority: f64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            capacity_sequences: 12_500,
            sampling: SamplingMode::Uniform,
            priority_exponent: 0.9,
            importance_sampling_exponent: 0.6,
            initial_max_priority: 1.0,
        }
    }
}

/// Largest `capacity_sequences`: 2^24 sequences (R2D2 keeps 10^5; one Atari sequence is ~255 KB).
/// The sum tree is allocated up front (16 bytes per slot), so a capacity read from a corrupt
/// snapshot or a typo in a config must not ask for tens of gigabytes.
pub const MAX_CAPACITY_SEQUENCES: usize = 1 << 24;

impl ReplayConfig {
    /// Checks ranges: capacity in `1..=`[`MAX_CAPACITY_SEQUENCES`], alpha and beta finite and non-negative,
    /// initial priority finite and positive.
    pub fn validate(&self) -> Result<(), ReplayError> {
        if self.capacity_sequences == 0 || self.capacity_sequences > MAX_CAPACITY_SEQUENCES {
            return Err(ReplayError::InvalidConfig(format!(
                "capacity_sequences must be in 1..={MAX_CAPACITY_SEQUENCES}, got {}",
                self.capacity_sequences
            )));
        }
        for (name, value) in [
            ("priority_exponent", self.priority_exponent),
            (
                "importance_sampling_exponent",
                self.importance_sampling_exponent,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ReplayError::InvalidConfig(format!(
                    "{name} must be finite and non-negative, got {value}"
                )));
            }
        }
        if !self.initial_max_priority.is_finite() || self.initial_max_priority <= 0.0 {
            return Err(ReplayError::InvalidConfig(format!(
                "initial_max_priority must be finite and positive, got {}",
                self.initial_max_priority
            )));
        }
        Ok(())
    }
}

/// Identifies one stored sequence: the slot it lives in and the generation (global insert
/// number) it was written with. Once the slot is overwritten the key goes stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SampleKey {
    /// Table slot, `generation % capacity`.
    pub slot: u32,
    /// Insert number of the item (0 for the first insert ever).
    pub generation: u64,
}

/// A sampled batch; entry `i` of every vector belongs to the same draw.
#[derive(Debug, Clone)]
pub struct SampledBatch {
    /// Keys to report new priorities with.
    pub keys: Vec<SampleKey>,
    /// The sequences, shared with the table.
    pub items: Vec<Arc<Sequence>>,
    /// Probability each item had of being drawn.
    pub probabilities: Vec<f64>,
    /// Importance weights `(N P(i))^-beta / max`, all 1 with uniform sampling.
    pub weights: Vec<f32>,
}

impl SampledBatch {
    /// Returns the number of draws.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns true when the batch has no draw.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What [`SequenceReplay::update_priorities`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriorityUpdateOutcome {
    /// Priorities written.
    pub applied: usize,
    /// Keys ignored because their slot was overwritten after sampling.
    pub stale: usize,
}

/// Counters and gauges of a replay, cumulative since creation (kept across snapshots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayStats {
    /// Sequences stored now.
    pub len: usize,
    /// Maximum number of stored sequences.
    pub capacity: usize,
    /// Sequences ever inserted.
    pub inserts_total: u64,
    /// Sequences evicted to make room.
    pub evictions_total: u64,
    /// Sequences ever drawn (a batch of 16 counts 16).
    pub samples_total: u64,
    /// Priorities written by `update_priorities`.
    pub priority_updates_total: u64,
    /// Priority updates ignored because their key was stale.
    pub stale_priority_updates_total: u64,
    /// Largest priority seen so far (the priority new sequences get).
    pub max_priority: f64,
    /// Sum of `p^alpha` over stored sequences.
    pub total_priority_mass: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) item: Arc<Sequence>,
    pub(crate) generation: u64,
    pub(crate) priority: f64,
}

/// Cumulative counters, saved in snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counters {
    pub(crate) inserts_total: u64,
    pub(crate) evictions_total: u64,
    pub(crate) samples_total: u64,
    pub(crate) priority_updates_total: u64,
    pub(crate) stale_priority_updates_total: u64,
}

/// A FIFO table of [`Sequence`]s with uniform or prioritised sampling.
///
/// Not synchronised: a service wraps it in a `Mutex`. Items are `Arc`s, so a sampled batch
/// shares memory with the table and stays valid after the items are evicted.
#[derive(Debug, Clone)]
pub struct SequenceReplay {
    pub(crate) config: ReplayConfig,
    /// Slot `g % capacity` holds the item of generation `g`; grows to `capacity`, then wraps.
    pub(crate) slots: Vec<Slot>,
    /// Sampling mass `p^alpha` per slot.
    pub(crate) tree: SumTree,
    pub(crate) max_priority: f64,
    pub(crate) counters: Counters,
}

impl SequenceReplay {
    /// Creates an empty replay.
    pub fn new(config: ReplayConfig) -> Result<Self, ReplayError> {
        config.validate()?;
        let tree = SumTree::new(config.capacity_sequences);
        let max_priority = config.initial_max_priority;
        Ok(Self {
            config,
            slots: Vec::new(),
            tree,
            max_priority,
            counters: Counters::default(),
        })
    }

    /// Returns the configuration.
    pub fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// Returns the number of stored sequences.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Returns true when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Returns the maximum number of stored sequences.
    pub fn capacity(&self) -> usize {
        self.config.capacity_sequences
    }

    /// Sets beta, e.g. to anneal it towards 1 over training.
    pub fn set_importance_sampling_exponent(&mut self, beta: f64) -> Result<(), ReplayError> {
        if !beta.is_finite() || beta < 0.0 {
            return Err(ReplayError::InvalidConfig(format!(
                "importance_sampling_exponent must be finite and non-negative, got {beta}"
            )));
        }
        self.config.importance_sampling_exponent = beta;
        Ok(())
    }

    /// Validates and stores a sequence with the largest priority seen so far, evicting the
    /// oldest sequence when full. Returns its key.
    pub fn insert(&mut self, sequence: Sequence) -> Result<SampleKey, ReplayError> {
        sequence.validate()?;
        self.insert_validated(Arc::new(sequence))
    }

    /// Like [`SequenceReplay::insert`] for a sequence already shared elsewhere.
    pub fn insert_shared(&mut self, sequence: Arc<Sequence>) -> Result<SampleKey, ReplayError> {
        sequence.validate()?;
        self.insert_validated(sequence)
    }

    fn insert_validated(&mut self, item: Arc<Sequence>) -> Result<SampleKey, ReplayError> {
        let generation = self.counters.inserts_total;
        let slot_index = (generation % self.capacity() as u64) as usize;
        let priority = self.max_priority;
        self.tree.set(
            slot_index,
            priority_mass(priority, self.config.priority_exponent),
        )?;
        let slot = Slot {
            item,
            generation,
            priority,
        };
        if slot_index < self.slots.len() {
            self.slots[slot_index] = slot;
            self.counters.evictions_total += 1;
        } else {
            debug_assert_eq!(slot_index, self.slots.len());
            self.slots.push(slot);
        }
        self.counters.inserts_total += 1;
        Ok(SampleKey {
            slot: slot_index as u32,
            generation,
        })
    }

    /// Draws `batch_size` sequences independently, with replacement.
    ///
    /// Uniform mode: each stored sequence with probability `1/N`, weights 1. Prioritised mode:
    /// proportional to `p^alpha` through the sum tree (zero priorities are never drawn),
    /// weights `(N P(i))^-beta` normalised by the batch maximum.
    pub fn sample<R: Rng + ?Sized>(
        &mut self,
        batch_size: usize,
        rng: &mut R,
    ) -> Result<SampledBatch, ReplayError> {
        if batch_size == 0 {
            return Err(ReplayError::ZeroBatchSize);
        }
        let len = self.len();
        if len == 0 {
            return Err(ReplayError::EmptyReplay);
        }
        let mut slots = Vec::with_capacity(batch_size);
        let mut probabilities = Vec::with_capacity(batch_size);
        match self.config.sampling {
            SamplingMode::Uniform => {
                for _ in 0..batch_size {
                    slots.push(rng.random_range(0..len));
                    probabilities.push(1.0 / len as f64);
                }
            }
            SamplingMode::Prioritized => {
                let total = self.tree.total();
                if total <= 0.0 {
                    return Err(ReplayError::ZeroPriorityMass);
                }
                for _ in 0..batch_size {
                    let mass = rng.random::<f64>() * total;
                    let slot = self.tree.find(mass).ok_or(ReplayError::ZeroPriorityMass)?;
                    debug_assert!(slot < len);
                    slots.push(slot);
                    probabilities.push(self.tree.get(slot) / total);
                }
            }
        }
        let weights = match self.config.sampling {
            SamplingMode::Uniform => vec![1.0; batch_size],
            SamplingMode::Prioritized => importance_weights(
                &probabilities,
                len,
                self.config.importance_sampling_exponent,
            ),
        };
        let keys = slots
            .iter()
            .map(|&slot| SampleKey {
                slot: slot as u32,
                generation: self.slots[slot].generation,
            })
            .collect();
        let items = slots
            .iter()
            .map(|&slot| Arc::clone(&self.slots[slot].item))
            .collect();
        self.counters.samples_total += batch_size as u64;
        Ok(SampledBatch {
            keys,
            items,
            probabilities,
            weights,
        })
    }

    /// Sets new priorities for sampled keys (e.g. R2D2's `eta max|delta| + (1-eta) mean|delta|`).
    ///
    /// All priorities are checked first: a NaN, infinite or negative one rejects the whole call
    /// and changes nothing. Keys whose slot has been overwritten since sampling (another
    /// generation lives there now) are skipped and counted as stale. Also raises the maximum
    /// priority that new sequences receive. In uniform mode priorities are recorded but do not
    /// affect sampling.
    pub fn update_priorities(
        &mut self,
        keys: &[SampleKey],
        priorities: &[f64],
    ) -> Result<PriorityUpdateOutcome, ReplayError> {
        if keys.len() != priorities.len() {
            return Err(ReplayError::KeyPriorityCountMismatch {
                keys: keys.len(),
                priorities: priorities.len(),
            });
        }
        if let Some(&value) = priorities.iter().find(|p| !p.is_finite() || **p < 0.0) {
            return Err(ReplayError::InvalidPriority { value });
        }
        let mut outcome = PriorityUpdateOutcome::default();
        for (key, &priority) in keys.iter().zip(priorities) {
            let slot_index = key.slot as usize;
            let current = self
                .slots
                .get_mut(slot_index)
                .filter(|slot| slot.generation == key.generation);
            let Some(slot) = current else {
                outcome.stale += 1;
                continue;
            };
            slot.priority = priority;
            self.tree.set(
                slot_index,
                priority_mass(priority, self.config.priority_exponent),
            )?;
            self.max_priority = self.max_priority.max(priority);
            outcome.applied += 1;
        }
        self.counters.priority_updates_total += outcome.applied as u64;
        self.counters.stale_priority_updates_total += outcome.stale as u64;
        Ok(outcome)
    }

    /// Returns the current priority of a key, or `None` if it is stale or unknown.
    pub fn priority(&self, key: SampleKey) -> Option<f64> {
        self.slots
            .get(key.slot as usize)
            .filter(|slot| slot.generation == key.generation)
            .map(|slot| slot.priority)
    }

    /// Returns the stored sequence of a key, or `None` if it is stale or unknown.
    pub fn get(&self, key: SampleKey) -> Option<&Arc<Sequence>> {
        self.slots
            .get(key.slot as usize)
            .filter(|slot| slot.generation == key.generation)
            .map(|slot| &slot.item)
    }

    /// Returns counters and gauges.
    pub fn stats(&self) -> ReplayStats {
        ReplayStats {
            len: self.len(),
            capacity: self.capacity(),
            inserts_total: self.counters.inserts_total,
            evictions_total: self.counters.evictions_total,
            samples_total: self.counters.samples_total,
            priority_updates_total: self.counters.priority_updates_total,
            stale_priority_updates_total: self.counters.stale_priority_updates_total,
            max_priority: self.max_priority,
            total_priority_mass: self.tree.total(),
        }
    }

    /// Returns the bytes the stored sequences occupy, summed with
    /// [`Sequence::memory_bytes`](crate::Sequence::memory_bytes).
    pub fn memory_bytes(&self) -> usize {
        self.slots.iter().map(|slot| slot.item.memory_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::testing::SequenceBuilder;

    fn replay(capacity: usize, sampling: SamplingMode) -> SequenceReplay {
        SequenceReplay::new(ReplayConfig {
            capacity_sequences: capacity,
            sampling,
            priority_exponent: 1.0,
            importance_sampling_exponent: 1.0,
            initial_max_priority: 1.0,
        })
        .unwrap()
    }

    fn tagged(tag: u8) -> Sequence {
        SequenceBuilder::new(3).tag(tag).build()
    }

    #[test]
    fn default_config_is_valid_and_uniform() {
        let config = ReplayConfig::default();
        config.validate().unwrap();
        assert_eq!(config.sampling, SamplingMode::Uniform);
    }

    #[test]
    fn config_rejects_out_of_range_values() {
        let bad = [
            ReplayConfig {
                capacity_sequences: 0,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                priority_exponent: -0.1,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                importance_sampling_exponent: f64::NAN,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                initial_max_priority: 0.0,
                ..ReplayConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(ReplayError::InvalidConfig(_))),
                "{config:?}"
            );
            assert!(SequenceReplay::new(config).is_err());
        }
    }

    #[test]
    fn config_reads_from_json_and_rejects_unknown_fields() {
        let config: ReplayConfig =
            serde_json::from_str(r#"{"capacity_sequences": 10, "sampling": "prioritized"}"#)
                .unwrap();
        assert_eq!(config.capacity_sequences, 10);
        assert_eq!(config.sampling, SamplingMode::Prioritized);
        assert_eq!(config.priority_exponent, 0.9);
        assert!(serde_json::from_str::<ReplayConfig>(r#"{"capacity": 10}"#).is_err());
    }

    #[test]
    fn insert_rejects_invalid_sequences() {
        let mut replay = replay(4, SamplingMode::Uniform);
        let mut sequence = tagged(0);
        sequence.rewards[0] = f32::NAN;
        assert!(matches!(
            replay.insert(sequence),
            Err(ReplayError::NonFiniteReward { .. })
        ));
        assert!(replay.is_empty());
        assert_eq!(replay.stats().inserts_total, 0);
    }

    #[test]
    fn fifo_eviction_replaces_the_oldest() {
        let mut replay = replay(3, SamplingMode::Uniform);
        let keys: Vec<SampleKey> = (0..5)
            .map(|tag| replay.insert(tagged(tag)).unwrap())
            .collect();
        assert_eq!(replay.len(), 3);
        assert_eq!(
            keys.iter().map(|key| key.slot).collect::<Vec<_>>(),
            vec![0, 1, 2, 0, 1]
        );
        assert!(replay.get(keys[0]).is_none(), "generation 0 was evicted");
        assert!(replay.get(keys[1]).is_none(), "generation 1 was evicted");
        for &key in &keys[2..] {
            let tag = key.generation as u8;
            assert_eq!(replay.get(key).unwrap().observations[0], tag);
        }
        let stats = replay.stats();
        assert_eq!(stats.inserts_total, 5);
        assert_eq!(stats.evictions_total, 2);
    }

    #[test]
    fn sampling_an_empty_replay_or_a_zero_batch_fails() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut replay = replay(3, SamplingMode::Uniform);
        assert!(matches!(
            replay.sample(1, &mut rng),
            Err(ReplayError::EmptyReplay)
        ));
        replay.insert(tagged(0)).unwrap();
        assert!(matches!(
            replay.sample(0, &mut rng),
            Err(ReplayError::ZeroBatchSize)
        ));
    }

    #[test]
    fn uniform_batches_have_unit_weights_and_one_over_n_probabilities() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut replay = replay(8, SamplingMode::Uniform);
        for tag in 0..4 {
            replay.insert(tagged(tag)).unwrap();
        }
        let batch = replay.sample(16, &mut rng).unwrap();
        assert_eq!(batch.len(), 16);
        assert!(batch.probabilities.iter().all(|&p| p == 0.25));
        assert!(batch.weights.iter().all(|&w| w == 1.0));
        for (key, item) in batch.keys.iter().zip(&batch.items) {
            assert_eq!(item.observations[0], key.generation as u8);
        }
        assert_eq!(replay.stats().samples_total, 16);
    }

    #[test]
    fn new_items_get_the_max_priority_seen_so_far() {
        let mut replay = replay(8, SamplingMode::Prioritized);
        let first = replay.insert(tagged(0)).unwrap();
        assert_eq!(replay.priority(first), Some(1.0));
        replay.update_priorities(&[first], &[5.0]).unwrap();
        let second = replay.insert(tagged(1)).unwrap();
        assert_eq!(replay.priority(second), Some(5.0));
        // Lowering a priority does not lower the maximum.
        replay
            .update_priorities(&[first, second], &[0.5, 0.5])
            .unwrap();
        let third = replay.insert(tagged(2)).unwrap();
        assert_eq!(replay.priority(third), Some(5.0));
        assert_eq!(replay.stats().max_priority, 5.0);
    }

    #[test]
    fn prioritised_batches_carry_probabilities_and_normalised_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut replay = replay(4, SamplingMode::Prioritized);
        let keys: Vec<SampleKey> = (0..4)
            .map(|tag| replay.insert(tagged(tag)).unwrap())
            .collect();
        // alpha = 1: P = 0.1, 0.2, 0.3, 0.4; beta = 1: w = 1 / (4 P), normalised.
        replay
            .update_priorities(&keys, &[1.0, 2.0, 3.0, 4.0])
            .unwrap();
        let batch = replay.sample(256, &mut rng).unwrap();
        let max_raw = batch
            .probabilities
            .iter()
            .map(|p| 1.0 / (4.0 * p))
            .fold(0.0, f64::max);
        for ((key, &probability), &weight) in batch
            .keys
            .iter()
            .zip(&batch.probabilities)
            .zip(&batch.weights)
        {
            let expected = (key.generation + 1) as f64 / 10.0;
            assert!((probability - expected).abs() < 1e-12);
            let expected_weight = (1.0 / (4.0 * probability)) / max_raw;
            assert!((f64::from(weight) - expected_weight).abs() < 1e-6);
        }
        // With 256 draws all four items appear, so the max weight is the smallest-P item's.
        assert!(batch.weights.contains(&1.0));
        assert!(batch.probabilities.iter().any(|&p| (p - 0.1).abs() < 1e-12));
    }

    #[test]
    fn zero_priority_items_are_never_drawn_and_all_zero_is_an_error() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut replay = replay(4, SamplingMode::Prioritized);
        let keys: Vec<SampleKey> = (0..3)
            .map(|tag| replay.insert(tagged(tag)).unwrap())
            .collect();
        replay.update_priorities(&keys, &[0.0, 1.0, 0.0]).unwrap();
        let batch = replay.sample(200, &mut rng).unwrap();
        assert!(batch.keys.iter().all(|&key| key == keys[1]));
        replay.update_priorities(&keys[1..2], &[0.0]).unwrap();
        assert!(matches!(
            replay.sample(1, &mut rng),
            Err(ReplayError::ZeroPriorityMass)
        ));
    }

    #[test]
    fn stale_keys_are_ignored_after_their_slot_is_overwritten() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut replay = replay(2, SamplingMode::Prioritized);
        replay.insert(tagged(0)).unwrap();
        replay.insert(tagged(1)).unwrap();
        let batch = replay.sample(8, &mut rng).unwrap();
        // Overwrite both slots with new generations.
        let fresh = [
            replay.insert(tagged(2)).unwrap(),
            replay.insert(tagged(3)).unwrap(),
        ];
        let outcome = replay
            .update_priorities(&batch.keys, &vec![9.0; batch.len()])
            .unwrap();
        assert_eq!(
            outcome,
            PriorityUpdateOutcome {
                applied: 0,
                stale: 8
            }
        );
        for key in fresh {
            assert_eq!(replay.priority(key), Some(1.0));
        }
        assert_eq!(replay.stats().max_priority, 1.0);
        assert_eq!(replay.stats().stale_priority_updates_total, 8);
    }

    #[test]
    fn invalid_priorities_reject_the_whole_update() {
        let mut replay = replay(4, SamplingMode::Prioritized);
        let keys: Vec<SampleKey> = (0..2)
            .map(|tag| replay.insert(tagged(tag)).unwrap())
            .collect();
        for bad in [f64::NAN, f64::INFINITY, -0.5] {
            let error = replay.update_priorities(&keys, &[2.0, bad]).unwrap_err();
            assert!(matches!(error, ReplayError::InvalidPriority { .. }));
            assert_eq!(replay.priority(keys[0]), Some(1.0), "nothing applied");
        }
        assert!(matches!(
            replay.update_priorities(&keys, &[1.0]),
            Err(ReplayError::KeyPriorityCountMismatch {
                keys: 2,
                priorities: 1
            })
        ));
        assert_eq!(
            replay
                .update_priorities(&keys, &[2.0, -1.0])
                .unwrap_err()
                .to_string(),
            "invalid priority -1: priorities must be finite and non-negative"
        );
    }

    #[test]
    fn beta_can_be_annealed_but_not_made_invalid() {
        let mut replay = replay(2, SamplingMode::Prioritized);
        replay.set_importance_sampling_exponent(0.8).unwrap();
        assert_eq!(replay.config().importance_sampling_exponent, 0.8);
        assert!(replay.set_importance_sampling_exponent(-1.0).is_err());
        assert_eq!(replay.config().importance_sampling_exponent, 0.8);
    }

    #[derive(Debug, Clone)]
    enum Operation {
        Insert,
        Sample(usize),
        UpdateSampled(f64),
        UpdateOld(u64, f64),
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            3 => Just(Operation::Insert),
            2 => (1usize..5).prop_map(Operation::Sample),
            2 => (0.0f64..10.0).prop_map(Operation::UpdateSampled),
            1 => (0u64..64, 0.0f64..10.0).prop_map(|(g, p)| Operation::UpdateOld(g, p)),
        ]
    }

    proptest! {
        /// Random interleavings keep: len == min(inserts, capacity); sampled keys are current;
        /// tree total == sum of p^alpha of stored items; stale updates never change anything.
        #[test]
        fn table_invariants_hold_under_random_operations(
            capacity in 1usize..8,
            prioritized in any::<bool>(),
            operations in prop::collection::vec(operation(), 1..80),
            seed in any::<u64>(),
        ) {
            let sampling = if prioritized { SamplingMode::Prioritized } else { SamplingMode::Uniform };
            let mut replay = SequenceReplay::new(ReplayConfig {
                capacity_sequences: capacity,
                sampling,
                priority_exponent: 0.7,
                importance_sampling_exponent: 0.5,
                initial_max_priority: 1.0,
            }).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut last_keys: Vec<SampleKey> = Vec::new();
            let mut inserts = 0u64;
            for operation in operations {
                match operation {
                    Operation::Insert => {
                        let key = replay.insert(tagged(inserts as u8)).unwrap();
                        prop_assert_eq!(key.generation, inserts);
                        prop_assert_eq!(u64::from(key.slot), inserts % capacity as u64);
                        inserts += 1;
                    }
                    Operation::Sample(batch_size) => match replay.sample(batch_size, &mut rng) {
                        Ok(batch) => {
                            for (key, item) in batch.keys.iter().zip(&batch.items) {
                                prop_assert!(Arc::ptr_eq(replay.get(*key).unwrap(), item));
                                prop_assert_eq!(item.observations[0], key.generation as u8);
                            }
                            prop_assert!(batch.weights.iter().all(|&w| w > 0.0 && w <= 1.0));
                            last_keys = batch.keys;
                        }
                        Err(ReplayError::EmptyReplay) => prop_assert_eq!(replay.len(), 0),
                        Err(ReplayError::ZeroPriorityMass) => prop_assert!(prioritized),
                        Err(other) => prop_assert!(false, "unexpected error {}", other),
                    },
                    Operation::UpdateSampled(priority) => {
                        let priorities = vec![priority; last_keys.len()];
                        let outcome = replay.update_priorities(&last_keys, &priorities).unwrap();
                        prop_assert_eq!(outcome.applied + outcome.stale, last_keys.len());
                    }
                    Operation::UpdateOld(generation, priority) => {
                        let key = SampleKey {
                            slot: (generation % capacity as u64) as u32,
                            generation,
                        };
                        let before = replay.stats().total_priority_mass;
                        let current = replay.get(key).is_some();
                        let outcome = replay.update_priorities(&[key], &[priority]).unwrap();
                        prop_assert_eq!(outcome.applied, usize::from(current));
                        if !current {
                            prop_assert_eq!(replay.stats().total_priority_mass, before);
                        }
                    }
                }
                prop_assert_eq!(replay.len() as u64, inserts.min(capacity as u64));
                let expected_mass: f64 = replay
                    .slots
                    .iter()
                    .map(|slot| priority_mass(slot.priority, 0.7))
                    .sum();
                let total = replay.stats().total_priority_mass;
                prop_assert!((total - expected_mass).abs() <= 1e-9 * expected_mass.max(1.0));
            }
        }
    }
}
