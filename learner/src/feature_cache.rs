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
//! - **Bounded in bytes, first in first out**: the maps live in one slab of
//!   `capacity / (map + key bytes)` slots, allocated at the first insert and filled as a ring: when
//!   full, the oldest entries leave first, as they leave the replay's ring buffer. A map larger
//!   than the whole capacity is not cached. One slab rather than a tensor per frame (the first
//!   version, `stack`ed per batch): a batch is one gather, and the cache is one allocation
//!   instead of thousands of 226 KB ones among the update's short-lived tensors.
//! - **Memory layouts are kept**: the learner's frames tensor is channels-last (a view of the
//!   stored HWC bytes, strides `[C*H*W, 1, W*C, C]`); on the CPU libtorch's convolutions keep that
//!   layout in their output, and the agent's CNN encoder runs ~30% faster on channels-last maps than
//!   on contiguous NCHW ones. So the frames to compute are selected in their own layout, the slab
//!   stores channels-last maps as `N x H x W x C` rows, and every answer has the computed maps'
//!   strides; other tensors (plain NCHW, any other rank) are kept as they come. (The first two
//!   versions lost the layout in `index_select`, and the CNN agent's encoder phases grew by about
//!   what the cache saved: BENCHMARKS.md.)
//! - **Measured** (BENCHMARKS.md, `cargo bench -p trainer --bench feature_cache`, side by side):
//!   on the CPU the whole update is faster warm than uncached by 1.7x for the CNN agent and 2.7x
//!   for the GNN agent with glibc's default malloc, 1.2x and 1.9x with [`permakey::malloc`]'s
//!   default (which speeds up the uncached features most).
//! - **One front end at a time**: the cache belongs to one front end, named by the caller
//!   ([`FeatureCache::features`]'s `owner`); another owner empties it first.
//! - **Same values**: cached maps are copies of the computed rows. Only the batch size of
//!   the front end's forward changes (the missing frames instead of all), which on some backends
//!   moves results in the last bits; nothing else does.
//! - Capacity 0 turns the cache off: every call computes all rows, as before the cache.

use std::{collections::HashMap, sync::Arc};

use tch::Tensor;

/// The key maps' hasher: foldhash, ~5x faster than std's SipHash over 21 KB frames (a lookup of
/// an update's 192 frames: ~0.2 ms instead of ~1 ms on this project's CPU); equality is still
/// the full byte comparison.
type KeyHasher = foldhash::quality::RandomState;

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
    /// `slots x ...` feature maps, allocated at the first insert (on the features' device; pages
    /// are only touched as slots fill); slot `s` holds the map of `slot_keys[s]`.
    slab: Option<Tensor>,
    /// Bytes one entry costs: its feature map and its key.
    entry_bytes: usize,
    slot_keys: Vec<Option<Arc<[u8]>>>,
    index: HashMap<Arc<[u8]>, i64, KeyHasher>,
    /// The slot the next insert overwrites (a ring: the oldest entry leaves first).
    next: usize,
    owner: Option<usize>,
    /// The slab holds channels-last maps as `slots x H x W x C` (module docs).
    channels_last: bool,
}

/// A 4-D `N x C x H x W` tensor laid out channels-last (and not also plain contiguous).
fn is_channels_last(t: &Tensor) -> bool {
    t.dim() == 4 && !t.is_contiguous() && t.permute([0, 2, 3, 1]).is_contiguous()
}

/// `maps` with rows stored in the given layout's order (a view: `N x H x W x C` for channels-last).
fn to_rows(maps: &Tensor, channels_last: bool) -> Tensor {
    if channels_last { maps.permute([0, 2, 3, 1]) } else { maps.shallow_clone() }
}

/// Rows of [`to_rows`] as `N x C x H x W` again (a view with channels-last strides if they were).
fn from_rows(rows: Tensor, channels_last: bool) -> Tensor {
    if channels_last { rows.permute([0, 3, 1, 2]) } else { rows }
}

/// Rows `index` of `t`, in `t`'s layout (`index_select` alone returns plain contiguous rows).
fn select_rows(t: &Tensor, index: &Tensor) -> Tensor {
    let channels_last = is_channels_last(t);
    from_rows(to_rows(t, channels_last).index_select(0, index), channels_last)
}

impl FeatureCache {
    /// A cache holding at most `capacity_bytes` of keys and feature maps (0: off).
    pub fn new(capacity_bytes: usize) -> Self {
        Self { capacity_bytes, slab: None, entry_bytes: 0, slot_keys: Vec::new(), index: HashMap::default(), next: 0, owner: None, channels_last: false }
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// Bytes held now (keys and feature maps).
    pub fn bytes(&self) -> usize {
        self.index.len() * self.entry_bytes
    }

    /// Frames cached now.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Forgets every entry and frees the slab.
    pub fn clear(&mut self) {
        self.slab = None;
        self.entry_bytes = 0;
        self.slot_keys.clear();
        self.index.clear();
        self.next = 0;
        self.channels_last = false;
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
        let device = frames.device();
        self.features_of_rows(owner, keys, |missing| {
            // In the frames' layout: libtorch's CPU convolutions keep a channels-last input's
            // layout in their output, and the agent's CNN encoder is faster on that (module docs).
            let rows = if missing.len() == n { frames.shallow_clone() } else { select_rows(frames, &Tensor::from_slice(missing).to_device(device)) };
            compute(&rows)
        })
    }

    /// [`FeatureCache::features`] without the batch's frames: `compute` gets the rows (indices
    /// into `keys`, in order, each distinct uncached frame once) whose maps it must return, and
    /// builds only their frames. The learner passes the stored frame bytes as keys, so on a warm
    /// cache it converts and uploads a few frames instead of all of them.
    pub fn features_of_rows(&mut self, owner: usize, keys: &[&[u8]], compute: impl FnOnce(&[i64]) -> Tensor) -> CachedFeatures {
        let n = keys.len();
        if self.owner != Some(owner) {
            self.clear();
            self.owner = Some(owner);
        }
        if self.capacity_bytes == 0 {
            let all: Vec<i64> = (0..n as i64).collect();
            return CachedFeatures { features: compute(&all), cached: 0, computed: n };
        }
        // Per row: its cached slot, or the index of its frame among the rows to compute.
        let mut rows: Vec<Result<i64, i64>> = Vec::with_capacity(n);
        let mut missing: Vec<i64> = Vec::new();
        let mut first_seen: HashMap<&[u8], i64, KeyHasher> = HashMap::default();
        for (i, key) in keys.iter().enumerate() {
            if let Some(&slot) = self.index.get(*key) {
                rows.push(Ok(slot));
            } else {
                let at = *first_seen.entry(*key).or_insert_with(|| {
                    missing.push(i as i64);
                    missing.len() as i64 - 1
                });
                rows.push(Err(at));
            }
        }
        let computed = (!missing.is_empty()).then(|| {
            let features = compute(&missing);
            assert_eq!(features.size().first().copied(), Some(missing.len() as i64), "one feature map per frame");
            features
        });
        let device = match (&computed, &self.slab) {
            (Some(computed), _) => computed.device(),
            (None, Some(slab)) => slab.device(),
            (None, None) => unreachable!("rows are either cached or computed"),
        };
        // Gather the answer before inserting: an insert may overwrite a slot this batch reads.
        let features = match (&computed, &self.slab) {
            (Some(computed), _) if missing.len() == n => computed.shallow_clone(),
            (None, Some(slab)) => {
                let slots: Vec<i64> = rows.iter().map(|r| *r.as_ref().expect("every row cached")).collect();
                self.slab_rows(slab, &slots)
            }
            (Some(computed), _) => {
                // Rows of `cat([cached maps, computed])`, in batch order.
                let slots: Vec<i64> = rows.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
                let cached_part = match &self.slab {
                    Some(slab) if !slots.is_empty() => Some(self.slab_rows(slab, &slots)),
                    _ => None,
                };
                let base = slots.len() as i64;
                let mut next_hit = 0i64;
                let order: Vec<i64> = rows
                    .iter()
                    .map(|r| match r {
                        Ok(_) => {
                            next_hit += 1;
                            next_hit - 1
                        }
                        Err(at) => base + at,
                    })
                    .collect();
                // In the computed maps' layout, so the answer has their strides.
                let layout = is_channels_last(computed);
                let sources = match cached_part {
                    Some(cached) => Tensor::cat(&[to_rows(&cached, layout), to_rows(computed, layout)], 0),
                    None => to_rows(computed, layout),
                };
                from_rows(sources.index_select(0, &Tensor::from_slice(&order).to_device(device)), layout)
            }
            (None, None) => unreachable!("rows are either cached or computed"),
        };
        if let Some(computed) = &computed {
            self.insert(keys, &missing, computed);
        }
        CachedFeatures { features, cached: n - missing.len(), computed: missing.len() }
    }

    /// The maps in slab rows `slots`, as `N x C x H x W` with the slab's layout.
    fn slab_rows(&self, slab: &Tensor, slots: &[i64]) -> Tensor {
        from_rows(slab.index_select(0, &Tensor::from_slice(slots).to_device(slab.device())), self.channels_last)
    }

    /// Copies `computed` (row `j` the map of `keys[missing[j]]`) into the ring's next slots,
    /// evicting what they held; allocates the slab at the first call.
    fn insert(&mut self, keys: &[&[u8]], missing: &[i64], computed: &Tensor) {
        let shape = computed.size();
        let map_bytes = shape[1..].iter().product::<i64>().max(0) as usize * computed.kind().elt_size_in_bytes();
        let key_bytes = keys.first().map_or(0, |k| k.len());
        if let Some(slab) = &self.slab {
            // (A map in another layout is copied into the slab's: values are what count.)
            if from_rows(slab.shallow_clone(), self.channels_last).size()[1..] != shape[1..] || slab.kind() != computed.kind() || self.entry_bytes != map_bytes + key_bytes {
                self.clear(); // another shape or kind of map, or size of frame: start over
            }
        }
        if self.slab.is_none() {
            self.channels_last = is_channels_last(computed);
            self.entry_bytes = map_bytes + key_bytes;
            let slots = self.capacity_bytes / self.entry_bytes.max(1);
            if slots == 0 {
                return; // one map is larger than the whole capacity
            }
            let mut dims = vec![slots as i64];
            dims.extend_from_slice(&to_rows(computed, self.channels_last).size()[1..]);
            self.slab = Some(Tensor::empty(dims.as_slice(), (computed.kind(), computed.device())));
            self.slot_keys = vec![None; slots];
            self.next = 0;
        }
        let slots = self.slot_keys.len();
        // A batch with more new frames than slots keeps its last `slots` ones.
        let skip = missing.len().saturating_sub(slots);
        let mut targets = Vec::with_capacity(missing.len() - skip);
        for &row in &missing[skip..] {
            let slot = self.next;
            self.next = (self.next + 1) % slots;
            if let Some(old) = self.slot_keys[slot].take() {
                self.index.remove(&old);
            }
            let key: Arc<[u8]> = Arc::from(keys[row as usize]);
            self.index.insert(key.clone(), slot as i64);
            self.slot_keys[slot] = Some(key);
            targets.push(slot as i64);
        }
        let rows = to_rows(computed, self.channels_last);
        let rows = if skip == 0 { rows } else { rows.narrow(0, skip as i64, (missing.len() - skip) as i64) };
        let slab = self.slab.as_mut().expect("allocated above");
        let targets = Tensor::from_slice(&targets).to_device(slab.device());
        tch::no_grad(|| {
            let _ = slab.index_copy_(0, &targets, &rows.detach().to_kind(slab.kind()));
        });
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

    /// `N x 2 x 3 x 4` maps laid out channels-last, as libtorch's CPU convolutions return them;
    /// every value names its frame, channel and position.
    fn channels_last_maps(frames: &Tensor) -> Tensor {
        let first = frames.select(1, 0).view([-1, 1, 1, 1]);
        let positions = Tensor::arange(2 * 3 * 4, (Kind::Float, Device::Cpu)).view([1, 2, 3, 4]);
        let maps = first * 100.0 + positions;
        // N x H x W x C contiguous, viewed as N x C x H x W.
        maps.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    }

    #[test]
    fn channels_last_maps_come_back_with_their_layout_and_values() {
        let mut cache = FeatureCache::new(1 << 20);
        let bytes = [[1u8, 0], [2, 0], [3, 0]];
        let keys: Vec<&[u8]> = bytes.iter().map(|f| f.as_slice()).collect();
        let computed = cache.features(1, &keys[..2], &frames(&bytes[..2]), channels_last_maps);
        assert!(is_channels_last(&computed.features));
        let expected = channels_last_maps(&frames(&bytes));
        // Fully cached, then mixed (one cached row, one computed, one repeat).
        let cached = cache.features(1, &keys[..2], &frames(&bytes[..2]), |_| panic!("cached"));
        let mixed_keys = [keys[2], keys[0], keys[2]];
        let mixed = cache.features(1, &mixed_keys, &frames(&[bytes[2], bytes[0], bytes[2]]), channels_last_maps);
        assert_eq!((mixed.cached, mixed.computed), (2, 1));
        for (out, rows) in [(&cached.features, vec![0i64, 1]), (&mixed.features, vec![2, 0, 2])] {
            assert_eq!(out.stride(), computed.features.stride(), "the computed maps' strides");
            assert!(out.equal(&expected.index_select(0, &Tensor::from_slice(&rows))));
        }
        // A map in the other layout joins the channels-last slab with its values.
        let key: &[u8] = &[4, 0];
        cache.features(1, &[key], &frames(&[[4, 0]]), |f| channels_last_maps(f).contiguous());
        let late = cache.features(1, &[key], &frames(&[[4, 0]]), |_| panic!("cached"));
        assert!(late.features.equal(&channels_last_maps(&frames(&[[4, 0]]))) && is_channels_last(&late.features));
        // Plain contiguous maps are stored as they come.
        let mut plain = FeatureCache::new(1 << 20);
        plain.features(1, &keys[..1], &frames(&bytes[..1]), |f| channels_last_maps(f).contiguous());
        let again = plain.features(1, &keys[..1], &frames(&bytes[..1]), |_| panic!("cached"));
        assert!(again.features.is_contiguous() && again.features.equal(&expected.get(0).unsqueeze(0)));
    }

    #[test]
    fn the_rows_to_compute_keep_the_frames_layout() {
        // 3 frames of 2 x 2 pixels and 2 channels, stored HWC as the replay stores them: the
        // learner's frames tensor is a channels-last view of them. The "features" are the frames.
        let frames = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([3, 2, 2, 2]).permute([0, 3, 1, 2]);
        assert!(is_channels_last(&frames));
        let keys: [&[u8]; 3] = [&[0], &[1], &[2]];
        let identity = |f: &Tensor| {
            assert!(is_channels_last(f), "rows handed to the front end lost the layout: {:?}", f.stride());
            f.shallow_clone()
        };
        let mut cache = FeatureCache::new(1 << 20);
        cache.features(1, &keys[1..2], &frames.narrow(0, 1, 1), identity);
        let out = cache.features(1, &keys, &frames, identity);
        assert_eq!((out.cached, out.computed), (1, 2));
        assert!(out.features.equal(&frames) && out.features.stride() == frames.stride());
    }
}
