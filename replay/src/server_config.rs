//! Settings of the replay service (the `replay-service` crate's `replay-server`), kept here with
//! the other replay settings so that the one config schema can hold them without depending on
//! the server.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{RateLimiterConfig, ReplayError};

/// `[replay_server]` of the shared config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayServerConfig {
    /// gRPC address to listen on. Default `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// Snapshot file: restored at start when it exists, written every `snapshot_every_s` and at
    /// shutdown. Unset: no snapshots.
    pub snapshot_path: Option<PathBuf>,
    /// Seconds between periodic snapshots; 0 writes one only at shutdown. Default 300.
    pub snapshot_every_s: u64,
    /// Samples-per-insert rate limiter (Reverb's rule); the defaults reproduce the reference's
    /// replay ratio.
    pub rate_limiter: RateLimiterConfig,
    /// Longest an insert waits for the rate limiter before the RPC fails with
    /// `RESOURCE_EXHAUSTED` (the actor backs off and retries). Default 30,000 ms.
    pub insert_timeout_ms: u64,
    /// Longest a sample waits for the rate limiter before the RPC fails with
    /// `DEADLINE_EXCEEDED` (the learner retries). Default 10,000 ms.
    pub sample_timeout_ms: u64,
    /// Seed of the sampling generator (the restored replay keeps its items, not the generator).
    pub seed: u64,
}

impl Default for ReplayServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            snapshot_path: None,
            snapshot_every_s: 300,
            rate_limiter: RateLimiterConfig::default(),
            insert_timeout_ms: 30_000,
            sample_timeout_ms: 10_000,
            seed: 0,
        }
    }
}

impl ReplayServerConfig {
    /// Checks the rate limiter and that both timeouts are at least 1 ms.
    pub fn validate(&self) -> Result<(), ReplayError> {
        self.rate_limiter.validate()?;
        for (name, value) in [("insert_timeout_ms", self.insert_timeout_ms), ("sample_timeout_ms", self.sample_timeout_ms)] {
            if value == 0 {
                return Err(ReplayError::InvalidConfig(format!("replay_server.{name} must be at least 1")));
            }
        }
        Ok(())
    }
}
