//! Configuration of the [`DynamicBatcher`](crate::DynamicBatcher).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BatcherError;

/// Largest accepted `max_batch_size` (the batch-size histogram holds one counter per size).
pub const MAX_MAX_BATCH_SIZE: usize = 65_536;
/// Largest accepted `max_batch_wait_micros` (one minute): longer waits are a misconfiguration.
pub const MAX_MAX_BATCH_WAIT_MICROS: u64 = 60_000_000;

/// How the batcher groups requests into batches and how much it queues.
///
/// Defaults are engineering choices, not paper values: the PermaKey reference runs its
/// keypoint model inside each actor (batch 1); batching across actors is this project's
/// addition (see `DESIGN.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicBatcherConfig {
    /// Largest number of requests passed to one call of the batch function (one model forward
    /// pass). A batch runs as soon as it is full. Default 64.
    pub max_batch_size: usize,
    /// Longest time, in microseconds, the worker waits after taking the first request of a
    /// batch for more requests before running a partial batch. It bounds the latency that
    /// batching adds; 0 runs whatever is queued at once. Default 2000 (2 ms).
    pub max_batch_wait_micros: u64,
    /// Largest number of requests waiting in the queue, not counting the batch being formed or
    /// run. A submission beyond it fails at once with `Overloaded` (backpressure). Must be at
    /// least `max_batch_size`. Default 1024.
    pub queue_capacity: usize,
}

impl Default for DynamicBatcherConfig {
    fn default() -> Self {
        DynamicBatcherConfig {
            max_batch_size: 64,
            max_batch_wait_micros: 2_000,
            queue_capacity: 1024,
        }
    }
}

impl DynamicBatcherConfig {
    /// Returns `max_batch_wait_micros` as a [`Duration`].
    pub fn max_batch_wait(&self) -> Duration {
        Duration::from_micros(self.max_batch_wait_micros)
    }

    /// Checks the options and their combination; [`DynamicBatcher::start`] calls it.
    ///
    /// [`DynamicBatcher::start`]: crate::DynamicBatcher::start
    pub fn validate(&self) -> Result<(), BatcherError> {
        let invalid = |reason: String| Err(BatcherError::InvalidConfig { reason });
        if self.max_batch_size == 0 || self.max_batch_size > MAX_MAX_BATCH_SIZE {
            return invalid(format!(
                "max_batch_size is {}, expected 1..={MAX_MAX_BATCH_SIZE}",
                self.max_batch_size
            ));
        }
        if self.max_batch_wait_micros > MAX_MAX_BATCH_WAIT_MICROS {
            return invalid(format!(
                "max_batch_wait_micros is {}, expected 0..={MAX_MAX_BATCH_WAIT_MICROS}",
                self.max_batch_wait_micros
            ));
        }
        if self.queue_capacity < self.max_batch_size {
            return invalid(format!(
                "queue_capacity ({}) must be at least max_batch_size ({}), or full batches could \
                 never queue up",
                self.queue_capacity, self.max_batch_size
            ));
        }
        Ok(())
    }
}

/// The keypoint service process (`keypoint-server`, `[keypoint_server]` in the shared config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeypointServerConfig {
    /// gRPC address to listen on. Default `127.0.0.1:50052`.
    pub listen: std::net::SocketAddr,
    /// Time budget of a request whose `timeout_ms` is 0, in milliseconds: a frame still queued
    /// after it is answered with `DEADLINE_EXCEEDED` instead of being run. Default 5000.
    pub default_timeout_ms: u32,
    /// libtorch intra-op threads of the service's process (0 = libtorch's default: all cores).
    /// On a CPU shared with the learner and actors, fewer threads avoid oversubscribing the cores
    /// with spinning thread pools; on a GPU it hardly matters. Default 0.
    pub torch_threads: u32,
    /// How frames from all connected actors are grouped into model forwards. Here a "request"
    /// of the batcher is one frame: `max_batch_size` is the largest forward batch in frames and
    /// `queue_capacity` the frames waiting before new ones are refused (`RESOURCE_EXHAUSTED`).
    pub batching: DynamicBatcherConfig,
}

impl Default for KeypointServerConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 50052)),
            default_timeout_ms: 5_000,
            torch_threads: 0,
            batching: DynamicBatcherConfig::default(),
        }
    }
}

impl KeypointServerConfig {
    /// Checks the options (the batcher's and the default timeout).
    pub fn validate(&self) -> Result<(), BatcherError> {
        self.batching.validate()?;
        if self.default_timeout_ms == 0 || self.default_timeout_ms > 60_000 {
            return Err(BatcherError::InvalidConfig {
                reason: format!("default_timeout_ms is {}, expected 1..=60000", self.default_timeout_ms),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fill_missing_fields() {
        DynamicBatcherConfig::default().validate().unwrap();
        let config: DynamicBatcherConfig = toml::from_str("max_batch_size = 8").unwrap();
        assert_eq!(config.max_batch_size, 8);
        assert_eq!(config.max_batch_wait_micros, 2_000);
        assert_eq!(config.queue_capacity, 1024);
        assert_eq!(config.max_batch_wait(), Duration::from_millis(2));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = toml::from_str::<DynamicBatcherConfig>("max_batch_wait_ms = 3").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unknown field `max_batch_wait_ms`"),
            "{error}"
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let config = DynamicBatcherConfig {
            max_batch_size: 3,
            max_batch_wait_micros: 7,
            queue_capacity: 9,
        };
        let text = toml::to_string(&config).unwrap();
        assert_eq!(
            toml::from_str::<DynamicBatcherConfig>(&text).unwrap(),
            config
        );
    }

    #[test]
    fn invalid_options_are_rejected_with_a_reason() {
        let reason = |config: DynamicBatcherConfig| match config.validate() {
            Err(BatcherError::InvalidConfig { reason }) => reason,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        let base = DynamicBatcherConfig::default();
        assert_eq!(
            reason(DynamicBatcherConfig {
                max_batch_size: 0,
                ..base.clone()
            }),
            "max_batch_size is 0, expected 1..=65536"
        );
        assert!(
            reason(DynamicBatcherConfig {
                max_batch_size: MAX_MAX_BATCH_SIZE + 1,
                queue_capacity: usize::MAX,
                ..base.clone()
            })
            .starts_with("max_batch_size is 65537")
        );
        assert!(
            reason(DynamicBatcherConfig {
                max_batch_wait_micros: u64::MAX,
                ..base.clone()
            })
            .starts_with("max_batch_wait_micros is")
        );
        assert!(
            reason(DynamicBatcherConfig {
                max_batch_size: 8,
                queue_capacity: 7,
                ..base
            })
            .starts_with("queue_capacity (7) must be at least max_batch_size (8)")
        );
    }
}
