//! Reverb-style samples-per-insert rate limiting (deepmind/reverb `rate_limiter.h`,
//! `SampleToInsertRatio`).
//!
//! The limiter keeps `inserts * samples_per_insert - samples` inside
//! `[min_diff, max_diff] = min_size_to_sample * samples_per_insert -/+ error_buffer`, so the
//! learner replays each inserted sequence about `samples_per_insert` times on average, however
//! fast actors and learner run. Until `min_size_to_sample` sequences are in, inserts are free and
//! sampling is refused.
//!
//! [`RateLimiter`] holds the pure decisions; [`BlockingRateLimiter`] wraps them with a mutex and a
//! condition variable for the replay service: inserters and samplers block (with a timeout)
//! until the ratio lets them through.
//!
//! Reverb also counts deletions in the size check. This table only evicts when full, so with
//! `capacity >= min_size_to_sample` the size is at least the minimum exactly when the insert
//! count is, and the insert count alone is used.

use std::{
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::ReplayError;

/// Configuration of a samples-per-insert rate limiter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimiterConfig {
    /// Inserts needed before the first sample. Default 1,250: the reference's
    /// `learning_starts` of 10,000 env steps (spec 7.4) at one sequence per 8 steps.
    pub min_size_to_sample: u64,
    /// Target samples per insert. Default 32: the reference samples 16 sequences every 4 env
    /// steps (4 per step) and an actor inserts one sequence per 8 steps, 4 / (1/8) = 32.
    pub samples_per_insert: f64,
    /// Allowed deviation of `inserts * samples_per_insert - samples` from its target, in
    /// samples. Must be at least `max(1, samples_per_insert)`. Default 3,200: 100 inserts (800
    /// env steps, 200 learner updates) of slack.
    pub error_buffer: f64,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self {
            min_size_to_sample: 1_250,
            samples_per_insert: 32.0,
            error_buffer: 3_200.0,
        }
    }
}

impl RateLimiterConfig {
    /// Checks ranges: `min_size_to_sample >= 1`, `samples_per_insert` finite and positive,
    /// `error_buffer` finite and at least `max(1, samples_per_insert)` (Reverb's rule: a smaller
    /// buffer can block inserts and samples at once).
    pub fn validate(&self) -> Result<(), ReplayError> {
        if self.min_size_to_sample == 0 {
            return Err(ReplayError::InvalidConfig(
                "min_size_to_sample must be at least 1".to_owned(),
            ));
        }
        if !self.samples_per_insert.is_finite() || self.samples_per_insert <= 0.0 {
            return Err(ReplayError::InvalidConfig(format!(
                "samples_per_insert must be finite and positive, got {}",
                self.samples_per_insert
            )));
        }
        let min_buffer = self.samples_per_insert.max(1.0);
        if !self.error_buffer.is_finite() || self.error_buffer < min_buffer {
            return Err(ReplayError::InvalidConfig(format!(
                "error_buffer must be finite and at least max(1, samples_per_insert) = {min_buffer}, got {}",
                self.error_buffer
            )));
        }
        Ok(())
    }
}

/// Pure rate-limiting decisions over insert and sample counts.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimiter {
    config: RateLimiterConfig,
    min_diff: f64,
    max_diff: f64,
}

impl RateLimiter {
    /// Creates a limiter from a validated config.
    pub fn new(config: RateLimiterConfig) -> Result<Self, ReplayError> {
        config.validate()?;
        let target = config.min_size_to_sample as f64 * config.samples_per_insert;
        Ok(Self {
            min_diff: target - config.error_buffer,
            max_diff: target + config.error_buffer,
            config,
        })
    }

    /// Returns the configuration.
    pub fn config(&self) -> &RateLimiterConfig {
        &self.config
    }

    /// Returns whether one more insert may happen after `inserts` inserts and `samples`
    /// samples: always while the table is below `min_size_to_sample`, otherwise when
    /// `(inserts + 1) * spi - samples <= max_diff`.
    pub fn can_insert(&self, inserts: u64, samples: u64) -> bool {
        let inserts_after = inserts.saturating_add(1);
        if inserts_after <= self.config.min_size_to_sample {
            return true;
        }
        inserts_after as f64 * self.config.samples_per_insert - samples as f64 <= self.max_diff
    }

    /// Returns whether `num_samples` more samples may happen after `inserts` inserts and
    /// `samples` samples: never below `min_size_to_sample` inserts, otherwise when
    /// `inserts * spi - samples - num_samples >= min_diff`.
    pub fn can_sample(&self, inserts: u64, samples: u64, num_samples: u64) -> bool {
        if inserts < self.config.min_size_to_sample {
            return false;
        }
        inserts as f64 * self.config.samples_per_insert - samples as f64 - num_samples as f64
            >= self.min_diff
    }

    /// Returns the largest sample request that cannot deadlock against single inserts:
    /// `2 * error_buffer - samples_per_insert` (when inserts are blocked the surplus exceeds
    /// `max_diff - spi`, and a request of `k` must then fit above `min_diff`).
    pub fn max_samples_per_request(&self) -> u64 {
        (2.0 * self.config.error_buffer - self.config.samples_per_insert).floor() as u64
    }
}

/// Insert and sample counts of a [`BlockingRateLimiter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimiterCounts {
    /// Inserts granted.
    pub inserts: u64,
    /// Samples granted.
    pub samples: u64,
}

#[derive(Debug, Default)]
struct BlockingState {
    counts: RateLimiterCounts,
    closed: bool,
}

/// A thread-safe [`RateLimiter`]: `acquire_*` block until the ratio allows the operation, then
/// count it. Every wait has a timeout and returns an error instead of hanging; [`close`]
/// releases all waiters with [`ReplayError::RateLimiterClosed`] for shutdown.
///
/// Usage in the replay service: `limiter.acquire_insert(t)?; table.insert(seq)?;` and
/// `limiter.acquire_sample(batch, t)?; table.sample(batch, rng)?`.
///
/// [`close`]: BlockingRateLimiter::close
#[derive(Debug)]
pub struct BlockingRateLimiter {
    limiter: RateLimiter,
    state: Mutex<BlockingState>,
    changed: Condvar,
}

impl BlockingRateLimiter {
    /// Creates a limiter with zero counts.
    pub fn new(config: RateLimiterConfig) -> Result<Self, ReplayError> {
        Self::with_counts(config, RateLimiterCounts::default())
    }

    /// Creates a limiter resuming from saved counts (e.g. after loading a replay snapshot).
    pub fn with_counts(
        config: RateLimiterConfig,
        counts: RateLimiterCounts,
    ) -> Result<Self, ReplayError> {
        Ok(Self {
            limiter: RateLimiter::new(config)?,
            state: Mutex::new(BlockingState {
                counts,
                closed: false,
            }),
            changed: Condvar::new(),
        })
    }

    /// Returns the pure decision rules.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Returns the counts granted so far.
    pub fn counts(&self) -> RateLimiterCounts {
        self.lock().counts
    }

    /// Blocks until one insert is allowed, then counts it.
    pub fn acquire_insert(&self, timeout: Duration) -> Result<(), ReplayError> {
        self.acquire(
            "insert",
            timeout,
            |limiter, counts| limiter.can_insert(counts.inserts, counts.samples),
            |counts| counts.inserts += 1,
        )
    }

    /// Blocks until `num_samples` samples are allowed, then counts them. Rejects requests
    /// larger than [`RateLimiter::max_samples_per_request`], which could deadlock.
    pub fn acquire_sample(&self, num_samples: u64, timeout: Duration) -> Result<(), ReplayError> {
        let max_samples = self.limiter.max_samples_per_request();
        if num_samples > max_samples {
            return Err(ReplayError::SampleRequestTooLarge {
                num_samples,
                max_samples,
            });
        }
        self.acquire(
            "sample",
            timeout,
            |limiter, counts| limiter.can_sample(counts.inserts, counts.samples, num_samples),
            |counts| counts.samples += num_samples,
        )
    }

    /// Wakes every waiter with [`ReplayError::RateLimiterClosed`]; later calls fail at once.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, BlockingState> {
        // The state is two counters and a flag, always consistent: a panic elsewhere while
        // holding the lock cannot leave it half-updated, so poisoning is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acquire(
        &self,
        operation: &'static str,
        timeout: Duration,
        allowed: impl Fn(&RateLimiter, RateLimiterCounts) -> bool,
        commit: impl FnOnce(&mut RateLimiterCounts),
    ) -> Result<(), ReplayError> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(ReplayError::RateLimiterClosed);
            }
            if allowed(&self.limiter, state.counts) {
                commit(&mut state.counts);
                drop(state);
                self.changed.notify_all();
                return Ok(());
            }
            state = match deadline {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ReplayError::RateLimiterTimeout {
                            operation,
                            waited: now - started,
                        });
                    }
                    self.changed
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, thread};

    use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};

    use super::*;

    fn limiter(min_size_to_sample: u64, samples_per_insert: f64, error_buffer: f64) -> RateLimiter {
        RateLimiter::new(RateLimiterConfig {
            min_size_to_sample,
            samples_per_insert,
            error_buffer,
        })
        .unwrap()
    }

    #[test]
    fn default_config_matches_the_reference_replay_ratio() {
        let config = RateLimiterConfig::default();
        config.validate().unwrap();
        // 16 sequences every 4 steps = 4 samples per step; one insert per 8 steps.
        assert_eq!(config.samples_per_insert, (16.0 / 4.0) / (1.0 / 8.0));
        assert_eq!(config.min_size_to_sample, 10_000 / 8);
        let limiter = RateLimiter::new(config).unwrap();
        assert!(limiter.max_samples_per_request() >= 16);
    }

    #[test]
    fn config_rejects_values_that_can_deadlock_or_make_no_sense() {
        let base = RateLimiterConfig {
            min_size_to_sample: 2,
            samples_per_insert: 4.0,
            error_buffer: 4.0,
        };
        base.validate().unwrap();
        for bad in [
            RateLimiterConfig {
                min_size_to_sample: 0,
                ..base.clone()
            },
            RateLimiterConfig {
                samples_per_insert: 0.0,
                ..base.clone()
            },
            RateLimiterConfig {
                samples_per_insert: f64::NAN,
                ..base.clone()
            },
            RateLimiterConfig {
                error_buffer: 3.9,
                ..base.clone()
            },
            RateLimiterConfig {
                samples_per_insert: 0.5,
                error_buffer: 0.9,
                ..base.clone()
            },
        ] {
            assert!(RateLimiter::new(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hand_computed_insert_decisions() {
        // min size 2, spi 2, buffer 3: target 4, min_diff 1, max_diff 7.
        let limiter = limiter(2, 2.0, 3.0);
        assert!(limiter.can_insert(0, 0), "below min size inserts are free");
        assert!(
            limiter.can_insert(1, 0),
            "the insert reaching min size is free"
        );
        assert!(limiter.can_insert(2, 0), "(2+1)*2 - 0 = 6 <= 7");
        assert!(!limiter.can_insert(3, 0), "(3+1)*2 - 0 = 8 > 7");
        assert!(limiter.can_insert(3, 1), "(3+1)*2 - 1 = 7 <= 7");
        assert!(!limiter.can_insert(10, 12), "11*2 - 12 = 10 > 7");
        assert!(limiter.can_insert(10, 15), "11*2 - 15 = 7 <= 7");
    }

    #[test]
    fn hand_computed_sample_decisions() {
        let limiter = limiter(2, 2.0, 3.0);
        assert!(!limiter.can_sample(0, 0, 1));
        assert!(!limiter.can_sample(1, 0, 1), "below min size");
        assert!(limiter.can_sample(2, 0, 1), "2*2 - 0 - 1 = 3 >= 1");
        assert!(limiter.can_sample(2, 2, 1), "2*2 - 2 - 1 = 1 >= 1");
        assert!(!limiter.can_sample(2, 3, 1), "2*2 - 3 - 1 = 0 < 1");
        assert!(limiter.can_sample(3, 0, 5), "3*2 - 0 - 5 = 1 >= 1");
        assert!(!limiter.can_sample(3, 0, 6), "3*2 - 0 - 6 = 0 < 1");
        // 2 * 3 - 2 = 4 samples per request at most.
        assert_eq!(limiter.max_samples_per_request(), 4);
    }

    #[test]
    fn the_ratio_stays_in_the_band_under_greedy_interleaving() {
        // Insert whenever allowed, otherwise sample one: the difference never leaves the band.
        let limiter = limiter(10, 4.0, 8.0);
        let (mut inserts, mut samples) = (0u64, 0u64);
        for _ in 0..10_000 {
            if limiter.can_insert(inserts, samples) {
                inserts += 1;
            } else {
                assert!(
                    limiter.can_sample(inserts, samples, 1),
                    "deadlock at {inserts}/{samples}"
                );
                samples += 1;
            }
            if inserts > 10 {
                let diff = inserts as f64 * 4.0 - samples as f64;
                assert!((40.0 - 8.0..=40.0 + 8.0).contains(&diff), "diff {diff}");
            }
        }
        let ratio = samples as f64 / inserts as f64;
        assert!((ratio - 4.0).abs() < 0.1, "ratio {ratio}");
    }

    fn blocking(
        min_size_to_sample: u64,
        samples_per_insert: f64,
        error_buffer: f64,
    ) -> Arc<BlockingRateLimiter> {
        Arc::new(
            BlockingRateLimiter::new(RateLimiterConfig {
                min_size_to_sample,
                samples_per_insert,
                error_buffer,
            })
            .unwrap(),
        )
    }

    fn assert_still_blocked(done: &Receiver<Result<(), ReplayError>>) {
        match done.recv_timeout(SHORT) {
            Err(RecvTimeoutError::Timeout) => {}
            other => panic!("the waiter should still be blocked, got {other:?}"),
        }
    }

    const LONG: Duration = Duration::from_secs(10);
    const SHORT: Duration = Duration::from_millis(100);

    #[test]
    fn a_sampler_blocks_until_enough_inserts_arrive() {
        let limiter = blocking(3, 1.0, 2.0);
        let (done_sender, done_receiver) = bounded(1);
        let sampler = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || done_sender.send(limiter.acquire_sample(1, LONG)).unwrap())
        };
        limiter.acquire_insert(SHORT).unwrap();
        limiter.acquire_insert(SHORT).unwrap();
        // Two inserts are below the minimum size.
        assert_still_blocked(&done_receiver);
        limiter.acquire_insert(SHORT).unwrap();
        done_receiver.recv_timeout(LONG).unwrap().unwrap();
        sampler.join().unwrap();
        assert_eq!(
            limiter.counts(),
            RateLimiterCounts {
                inserts: 3,
                samples: 1
            }
        );
    }

    #[test]
    fn an_inserter_blocks_when_too_far_ahead_until_a_sample() {
        // min size 1, spi 1, buffer 1: max_diff 2, so the third insert waits for a sample.
        let limiter = blocking(1, 1.0, 1.0);
        limiter.acquire_insert(SHORT).unwrap();
        limiter.acquire_insert(SHORT).unwrap();
        let (done_sender, done_receiver) = bounded(1);
        let inserter = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || done_sender.send(limiter.acquire_insert(LONG)).unwrap())
        };
        assert_still_blocked(&done_receiver);
        limiter.acquire_sample(1, SHORT).unwrap();
        done_receiver.recv_timeout(LONG).unwrap().unwrap();
        inserter.join().unwrap();
        assert_eq!(
            limiter.counts(),
            RateLimiterCounts {
                inserts: 3,
                samples: 1
            }
        );
    }

    #[test]
    fn timeouts_return_an_error_instead_of_hanging() {
        let limiter = blocking(5, 1.0, 1.0);
        let started = Instant::now();
        let error = limiter
            .acquire_sample(1, Duration::from_millis(50))
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(
            error,
            ReplayError::RateLimiterTimeout {
                operation: "sample",
                ..
            }
        ));
        assert!(
            elapsed >= Duration::from_millis(50),
            "returned early: {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(5), "hung: {elapsed:?}");
        assert!(
            error
                .to_string()
                .starts_with("rate limiter timed out after")
        );
        // A zero timeout on a blocked insert fails at once and counts nothing.
        let full = blocking(1, 1.0, 1.0);
        full.acquire_insert(Duration::ZERO).unwrap();
        full.acquire_insert(Duration::ZERO).unwrap();
        assert!(matches!(
            full.acquire_insert(Duration::ZERO),
            Err(ReplayError::RateLimiterTimeout {
                operation: "insert",
                ..
            })
        ));
        assert_eq!(full.counts().inserts, 2);
    }

    #[test]
    fn close_releases_waiters() {
        let limiter = blocking(5, 1.0, 1.0);
        let (done_sender, done_receiver) = bounded(1);
        let sampler = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || done_sender.send(limiter.acquire_sample(1, LONG)).unwrap())
        };
        assert_still_blocked(&done_receiver);
        limiter.close();
        let result = done_receiver.recv_timeout(LONG).unwrap();
        assert!(matches!(result, Err(ReplayError::RateLimiterClosed)));
        sampler.join().unwrap();
        assert!(matches!(
            limiter.acquire_insert(LONG),
            Err(ReplayError::RateLimiterClosed)
        ));
    }

    #[test]
    fn oversized_sample_requests_are_rejected() {
        let limiter = blocking(1, 1.0, 2.0);
        assert_eq!(limiter.limiter().max_samples_per_request(), 3);
        assert!(matches!(
            limiter.acquire_sample(4, SHORT),
            Err(ReplayError::SampleRequestTooLarge {
                num_samples: 4,
                max_samples: 3
            })
        ));
    }

    #[test]
    fn many_threads_keep_the_ratio_without_deadlock() {
        let limiter = blocking(4, 2.0, 4.0);
        let inserters: Vec<_> = (0..2)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                thread::spawn(move || {
                    for _ in 0..200 {
                        limiter.acquire_insert(LONG).unwrap();
                    }
                })
            })
            .collect();
        let samplers: Vec<_> = (0..2)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                thread::spawn(move || {
                    // The 400th insert needs 400 * 2 - samples <= max_diff 12, so 788 samples:
                    // 2 threads x 197 requests x 2. All fit: 800 - 788 >= min_diff 4.
                    for _ in 0..197 {
                        limiter.acquire_sample(2, LONG).unwrap();
                    }
                })
            })
            .collect();
        for handle in inserters.into_iter().chain(samplers) {
            handle.join().unwrap();
        }
        assert_eq!(
            limiter.counts(),
            RateLimiterCounts {
                inserts: 400,
                samples: 788
            }
        );
    }

    #[test]
    fn counts_resume_from_a_snapshot() {
        let limiter = BlockingRateLimiter::with_counts(
            RateLimiterConfig {
                min_size_to_sample: 2,
                samples_per_insert: 1.0,
                error_buffer: 1.0,
            },
            RateLimiterCounts {
                inserts: 5,
                samples: 5,
            },
        )
        .unwrap();
        // 5*1 - 5 - 1 = -1 < min_diff 1: sampling must wait for inserts.
        assert!(limiter.acquire_sample(1, Duration::ZERO).is_err());
        limiter.acquire_insert(Duration::ZERO).unwrap();
        limiter.acquire_insert(Duration::ZERO).unwrap();
        limiter.acquire_sample(1, Duration::ZERO).unwrap();
    }
}
