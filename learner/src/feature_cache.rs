//! [`FeatureCache`]: the frozen front end's features of replayed frames, kept between updates.
//!
//! The learner feeds its encoders the front end's feature maps of every valid frame of every
//! sampled sequence ([`crate::Learner::update`]). The front end is frozen during RL, so a frame's
//! features never change, yet each stored frame is sampled many times: in the CPU profile of
//! RESULTS.md (4000 agent steps, 750 updates of 8 x 12 steps, sequences overlapping by 4 steps)
//! the learner computed the same ~4000 frames' features 72k times, and that recomputation was
//! 35% of the runs' wall time. The cache computes each distinct frame once while it stays cached.
//!
//! Decisions:
//! - **Keyed by the frame's bytes**, compared in full: a hit is an exact byte match, so a cached
//!   feature map is the one the front end computes for that frame (no hash collisions, no replay
//!   keys, which differ between the in-process replay and the gRPC one). The key costs the frame's
//!   bytes again (21 KB for 84x84x3), about a tenth of a feature map (PermaKey h2: 64 x 42 x 42
//!   floats, 452 KB; 226 KB at the CPU profile's 32 channels); both count against the capacity.
//! - **Bounded in bytes, first in first out**: when full, the oldest entries leave first, as
//!   they leave the replay's ring buffer. A map larger than the whole capacity is not cached.
//! - **One front end at a time**: the cache belongs to one front end, named by the caller
//!   ([`FeatureCache::features`]'s `owner`); another owner empties it first.
//! - **Same values**: cached maps are detached copies of the computed rows. Only the batch size of
//!   the front end's forward changes (the missing frames instead of all), which on some backends
//!   moves results in the last bits; nothing else does.
//! - Capacity 0 turns the cache off: every call computes all rows, as before the cache.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use tch::Tensor;

/// Features of a batch of frames, and where they came from.
#[derive(Debug)]
pub struct CachedFeatures {
    /// `N x ...`: row `i` is the features of frame `i`.
    pub features: Tensor,
    /// Rows the front end did not compute: taken from the cache, or repeats of a frame computed
    /// once in this call.
    pub cached: usize,
    /// Rows the front end computed; `cached + computed` is the number of rows.
    pub computed: usize,
}

/// The front end's features of recently seen frames, keyed by the frame bytes (module docs).
#[derive(Debug)]
pub struct FeatureCache {
    capacity_bytes: usize,
    bytes: usize,
    entries: HashMap<Arc<[u8]>, Tensor>,
    /// Insertion order, oldest first: the eviction order.
    order: VecDeque<Arc<[u8]>>,
    owner: Option<usize>,
}

impl FeatureCache {
    /// A cache holding at most `capacity_bytes` of keys and feature maps (0: off).
    pub fn new(capacity_bytes: usize) -> Self {
        Self { capacity_bytes, bytes: 0, entries: HashMap::new(), order: VecDeque::new(), owner: None }
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// Bytes held now (keys and feature maps).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames cached now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// The features of `frames` (`N x ...`, row `i` holding the frame whose bytes are `keys[i]`):
    /// cached rows are reused, the others computed in one call of `compute` on just those rows
    /// (in order of first appearance; a frame repeated in the batch is computed once), then
    /// cached. `owner` names the front end behind `compute`; a new owner empties the cache first.
    ///
    /// # Panics
    /// If `keys.len()` differs from the rows of `frames`, or `compute` returns another number of
    /// rows than it was given (both are bugs of the caller, not input).
    pub fn features(&mut self, owner: usize, keys: &[&[u8]], frames: &Tensor, compute: impl FnOnce(&Tensor) -> Tensor) -> CachedFeatures {
        let n = keys.len();
        assert_eq!(frames.size().first().copied(), Some(n as i64), "one key per frame");
        if self.owner != Some(owner) {
            self.clear();
            self.owner = Some(owner);
        }
        if self.capacity_bytes == 0 {
            return CachedFeatures { features: compute(frames), cached: 0, computed: n };
        }
        // Per row: the cached map, or the index of its frame among the rows to compute.
        let mut rows: Vec<Result<Tensor, usize>> = Vec::with_capacity(n);
        let mut missing: Vec<i64> = Vec::new();
        let mut first_seen: HashMap<&[u8], usize> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(features) = self.entries.get(*key) {
                rows.push(Ok(features.shallow_clone()));
            } else {
                let slot = *first_seen.entry(*key).or_insert_with(|| {
                    missing.push(i as i64);
                    missing.len() - 1
                });
                rows.push(Err(slot));
            }
        }
        if missing.len() == n {
            // Nothing cached and no repeats: the computed batch is the answer as it is.
            let features = compute(frames);
            assert_eq!(features.size().first().copied(), Some(n as i64), "one feature map per frame");
            for (i, key) in keys.iter().enumerate() {
                self.insert(key, &features.get(i as i64));
            }
            return CachedFeatures { features, cached: 0, computed: n };
        }
        let computed = if missing.is_empty() {
            None
        } else {
            let index = Tensor::from_slice(&missing).to_device(frames.device());
            let features = compute(&frames.index_select(0, &index));
            assert_eq!(features.size().first().copied(), Some(missing.len() as i64), "one feature map per frame");
            Some(features)
        };
        let stacked: Vec<Tensor> = rows
            .iter()
            .map(|row| match row {
                Ok(features) => features.shallow_clone(),
                Err(slot) => computed.as_ref().expect("rows to compute were computed").get(*slot as i64),
            })
            .collect();
        let features = Tensor::stack(&stacked, 0);
        if let Some(computed) = &computed {
            for (slot, &row) in missing.iter().enumerate() {
                self.insert(keys[row as usize], &computed.get(slot as i64));
            }
        }
        CachedFeatures { features, cached: n - missing.len(), computed: missing.len() }
    }

    /// Caches a detached copy of `features` under `key`, evicting the oldest entries to fit.
    fn insert(&mut self, key: &[u8], features: &Tensor) {
        let size = features.numel() * features.kind().elt_size_in_bytes() + key.len();
        if size > self.capacity_bytes || self.entries.contains_key(key) {
            return;
        }
        while self.bytes + size > self.capacity_bytes {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes -= old.numel() * old.kind().elt_size_in_bytes() + oldest.len();
            }
        }
        let key: Arc<[u8]> = Arc::from(key);
        self.entries.insert(key.clone(), features.detach().copy());
        self.order.push_back(key);
        self.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use tch::{Device, Kind};

    use super::*;

    /// Frames of 2 bytes each whose "features" are 3 floats: `[a, b, a + b]` for bytes `a`, `b`.
    fn frames(bytes: &[[u8; 2]]) -> Tensor {
        let flat: Vec<f32> = bytes.iter().flat_map(|f| f.iter().map(|&b| f32::from(b))).collect();
        Tensor::from_slice(&flat).view([bytes.len() as i64, 2])
    }

    fn features_of(frames: &Tensor) -> Tensor {
        Tensor::cat(&[frames.shallow_clone(), frames.sum_dim_intlist([1i64].as_slice(), true, Kind::Float)], 1)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        (0..t.size()[0]).map(|i| Vec::<f32>::try_from(t.get(i)).unwrap()).collect()
    }

    /// Runs one lookup, recording the rows each `compute` call saw.
    fn lookup(cache: &mut FeatureCache, owner: usize, bytes: &[[u8; 2]], seen: &RefCell<Vec<Vec<Vec<f32>>>>) -> CachedFeatures {
        let keys: Vec<&[u8]> = bytes.iter().map(|f| f.as_slice()).collect();
        cache.features(owner, &keys, &frames(bytes), |f| {
            seen.borrow_mut().push(rows(f));
            features_of(f)
        })
    }

    /// Bytes one entry of this test costs: 3 floats and a 2-byte key.
    const ENTRY: usize = 3 * 4 + 2;

    #[test]
    fn each_distinct_frame_is_computed_once_and_rows_keep_their_order() {
        let seen = RefCell::new(Vec::new());
        let mut cache = FeatureCache::new(100 * ENTRY);
        let first = lookup(&mut cache, 1, &[[1, 2], [3, 4], [1, 2]], &seen);
        assert_eq!(rows(&first.features), vec![vec![1., 2., 3.], vec![3., 4., 7.], vec![1., 2., 3.]]);
        assert_eq!((first.cached, first.computed), (1, 2), "the repeated frame is computed once");
        assert_eq!(*seen.borrow(), vec![vec![vec![1., 2.], vec![3., 4.]]]);
        assert_eq!((cache.len(), cache.bytes()), (2, 2 * ENTRY));

        let second = lookup(&mut cache, 1, &[[5, 6], [3, 4], [1, 2], [5, 6]], &seen);
        assert_eq!(rows(&second.features), vec![vec![5., 6., 11.], vec![3., 4., 7.], vec![1., 2., 3.], vec![5., 6., 11.]]);
        assert_eq!((second.cached, second.computed), (3, 1));
        assert_eq!(seen.borrow()[1], vec![vec![5., 6.]], "only the new frame reaches the front end");

        let third = lookup(&mut cache, 1, &[[1, 2], [5, 6]], &seen);
        assert_eq!((third.cached, third.computed), (2, 0));
        assert_eq!(seen.borrow().len(), 2, "a fully cached batch computes nothing");
        assert_eq!(rows(&third.features), vec![vec![1., 2., 3.], vec![5., 6., 11.]]);
    }

    #[test]
    fn the_capacity_bounds_the_bytes_and_the_oldest_leave_first() {
        let seen = RefCell::new(Vec::new());
        let mut cache = FeatureCache::new(2 * ENTRY);
        lookup(&mut cache, 1, &[[1, 1], [2, 2]], &seen);
        lookup(&mut cache, 1, &[[3, 3]], &seen);
        assert_eq!((cache.len(), cache.bytes()), (2, 2 * ENTRY));
        // [1, 1] was the oldest: it is computed again, [2, 2] and [3, 3] are not.
        let again = lookup(&mut cache, 1, &[[2, 2], [3, 3], [1, 1]], &seen);
        assert_eq!((again.cached, again.computed), (2, 1));
        assert_eq!(seen.borrow().last().unwrap(), &vec![vec![1., 1.]]);
        assert!(cache.bytes() <= 2 * ENTRY);
        assert_eq!(rows(&again.features)[2], vec![1., 1., 2.]);

        // An entry larger than the whole capacity is served but never cached.
        let mut tiny = FeatureCache::new(ENTRY - 1);
        let out = lookup(&mut tiny, 1, &[[7, 7]], &seen);
        assert_eq!((out.computed, tiny.len(), tiny.bytes()), (1, 0, 0));
        assert_eq!(rows(&out.features), vec![vec![7., 7., 14.]]);
    }

    #[test]
    fn capacity_zero_is_off_and_a_new_owner_empties_the_cache() {
        let seen = RefCell::new(Vec::new());
        let mut off = FeatureCache::new(0);
        for _ in 0..2 {
            let out = lookup(&mut off, 1, &[[1, 2], [1, 2]], &seen);
            assert_eq!((out.cached, out.computed), (0, 2));
        }
        assert_eq!(seen.borrow().len(), 2);
        assert!(off.is_empty());

        let mut cache = FeatureCache::new(100 * ENTRY);
        lookup(&mut cache, 1, &[[1, 2]], &seen);
        let same = lookup(&mut cache, 1, &[[1, 2]], &seen);
        assert_eq!(same.cached, 1);
        let other = lookup(&mut cache, 2, &[[1, 2]], &seen);
        assert_eq!((other.cached, other.computed), (0, 1), "another front end's features are never reused");
    }

    #[test]
    fn cached_maps_are_copies_that_outlive_the_batch() {
        let mut cache = FeatureCache::new(1 << 20);
        let key = [9u8, 9];
        let first = cache.features(1, &[key.as_slice()], &frames(&[key]), features_of);
        // Writing into the returned batch must not change what is cached.
        let _ = first.features.shallow_clone().fill_(-1.0);
        let again = cache.features(1, &[key.as_slice()], &frames(&[key]), |_| panic!("cached"));
        assert_eq!(rows(&again.features), vec![vec![9., 9., 18.]]);
        assert_eq!(again.features.device(), Device::Cpu);
    }
}
