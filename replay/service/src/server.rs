//! [`ReplayServer`]: the replay library's [`SequenceReplay`] behind `permakey.v1.ReplayService`.
//!
//! Every handler validates its message first (one-line `INVALID_ARGUMENT` or
//! `RESOURCE_EXHAUSTED` naming the field), then runs the blocking part (rate-limiter waits, table
//! work) on tokio's blocking pool, so a waiting learner never stalls the server's reactor.
//!
//! Decisions:
//! - **Rate limiter.** Each insert and each sample passes the [`BlockingRateLimiter`] first.
//!   An insert that waits longer than `insert_timeout_ms` fails with `RESOURCE_EXHAUSTED` (the
//!   learner is behind: actors back off), a sample that waits longer than `sample_timeout_ms`
//!   with `DEADLINE_EXCEEDED` (too few inserts yet: the learner retries). Sequences of a stream
//!   inserted before such a failure stay inserted.
//! - **Initial priority.** A sequence's `priority` > 0 is set right after its insert; 0 leaves
//!   the table's default, the largest priority seen so far.
//! - **Snapshots.** The table is cloned under its lock (items are shared `Arc`s, so this copies
//!   only bookkeeping) and written without it, atomically, by [`SequenceReplay::save_snapshot`].
//!   A restored table resumes the limiter from its insert and sample totals, so the replay
//!   ratio holds across restarts. The sampling generator restarts from `seed` (its state is not
//!   part of the snapshot format).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use pkrl_telemetry::names;

use pkrl_proto::{
    v1::{self, replay_service_server::ReplayService},
    validate::{validate_insert_request, validate_sample_request, validate_update_priorities_request},
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use replay::{
    BlockingRateLimiter, RateLimiterCounts, ReplayConfig, ReplayError, ReplayServerConfig, SequenceReplay,
};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::wire::{key_from_wire, key_to_wire, sequence_from_validated_wire, sequence_to_wire};

struct Table {
    replay: SequenceReplay,
    rng: ChaCha8Rng,
}

struct Shared {
    table: Mutex<Table>,
    limiter: BlockingRateLimiter,
    config: ReplayServerConfig,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Every table operation either completes or returns an error before changing anything,
        // so a panic elsewhere cannot leave it half-updated: poisoning is ignored.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The replay service. Cheap to clone: clones share one table.
#[derive(Clone)]
pub struct ReplayServer {
    shared: Arc<Shared>,
}

/// Where the replay's starting contents came from.
#[derive(Debug, Clone, PartialEq)]
pub enum StartedFrom {
    /// A new, empty table.
    Empty,
    /// The snapshot at this path, with this many sequences.
    Snapshot { path: PathBuf, sequences: usize },
}

impl ReplayServer {
    /// A server over a new table with `table_config`, or over the snapshot at
    /// `config.snapshot_path` when that file exists. A snapshot that exists but cannot be read is
    /// an error naming the file (it is left in place: nothing is overwritten).
    pub fn open(table_config: ReplayConfig, config: ReplayServerConfig) -> Result<(Self, StartedFrom), ReplayError> {
        config.validate()?;
        let (replay, started) = match &config.snapshot_path {
            Some(path) if path.exists() => {
                let replay = SequenceReplay::load_snapshot(path)?;
                let sequences = replay.len();
                (replay, StartedFrom::Snapshot { path: path.clone(), sequences })
            }
            _ => (SequenceReplay::new(table_config)?, StartedFrom::Empty),
        };
        let stats = replay.stats();
        let counts = RateLimiterCounts { inserts: stats.inserts_total, samples: stats.samples_total };
        let limiter = BlockingRateLimiter::with_counts(config.rate_limiter.clone(), counts)?;
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let shared = Shared { table: Mutex::new(Table { replay, rng }), limiter, config };
        metrics::gauge!(names::REPLAY_CAPACITY).set(shared.table().replay.capacity() as f64);
        metrics::gauge!(names::REPLAY_SIZE).set(shared.table().replay.len() as f64);
        Ok((Self { shared: Arc::new(shared) }, started))
    }

    /// Writes a snapshot to the configured path (no-op without one); returns the sequences saved.
    pub fn snapshot(&self) -> Result<Option<usize>, ReplayError> {
        let Some(path) = &self.shared.config.snapshot_path else {
            return Ok(None);
        };
        let started = Instant::now();
        let copy = self.shared.table().replay.clone();
        copy.save_snapshot(path)?;
        metrics::histogram!(names::REPLAY_SNAPSHOT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(names::REPLAY_SNAPSHOTS).increment(1);
        Ok(Some(copy.len()))
    }

    /// Releases every rate-limiter waiter with an error; later inserts and samples fail at once
    /// with `UNAVAILABLE` (used at shutdown).
    pub fn close(&self) {
        self.shared.limiter.close();
    }

    /// Counters and gauges of the table.
    pub fn stats(&self) -> replay::ReplayStats {
        self.shared.table().replay.stats()
    }

    fn insert_batch(&self, sequences: Vec<(replay::Sequence, f32)>) -> Result<(u64, u64), Status> {
        let timeout = Duration::from_millis(self.shared.config.insert_timeout_ms);
        let (mut inserted, mut evicted) = (0, 0);
        for (sequence, priority) in sequences {
            let waited = Instant::now();
            let acquired = self.shared.limiter.acquire_insert(timeout);
            metrics::histogram!(names::REPLAY_LIMITER_WAIT_SECONDS, "op" => "insert").record(waited.elapsed().as_secs_f64());
            acquired.map_err(limiter_status)?;
            let mut table = self.shared.table();
            let was_full = table.replay.len() == table.replay.capacity();
            let key = table.replay.insert(sequence).map_err(|e| Status::invalid_argument(e.to_string()))?;
            if priority > 0.0 {
                table.replay.update_priorities(&[key], &[f64::from(priority)]).map_err(|e| Status::internal(e.to_string()))?;
            }
            inserted += 1;
            evicted += u64::from(was_full);
            metrics::gauge!(names::REPLAY_SIZE).set(table.replay.len() as f64);
        }
        metrics::counter!(names::REPLAY_INSERTS).increment(inserted);
        metrics::counter!(names::REPLAY_EVICTIONS).increment(evicted);
        Ok((inserted, evicted))
    }

    fn sample_batch(&self, batch_size: usize) -> Result<v1::SampleResponse, Status> {
        let timeout = Duration::from_millis(self.shared.config.sample_timeout_ms);
        let waited = Instant::now();
        let acquired = self.shared.limiter.acquire_sample(batch_size as u64, timeout);
        metrics::histogram!(names::REPLAY_LIMITER_WAIT_SECONDS, "op" => "sample").record(waited.elapsed().as_secs_f64());
        acquired.map_err(limiter_status)?;
        let mut guard = self.shared.table();
        let table = &mut *guard;
        let batch = table.replay.sample(batch_size, &mut table.rng).map_err(|e| match e {
            ReplayError::EmptyReplay | ReplayError::ZeroPriorityMass => Status::failed_precondition(e.to_string()),
            other => Status::internal(other.to_string()),
        })?;
        let replay_size = table.replay.len() as u64;
        let mut samples = Vec::with_capacity(batch.len());
        for (i, key) in batch.keys.iter().enumerate() {
            let priority = table.replay.priority(*key).unwrap_or(0.0) as f32;
            samples.push(v1::SampledSequence {
                key: key_to_wire(*key),
                priority,
                probability: batch.probabilities[i],
                sequence: Some(sequence_to_wire(&batch.items[i], priority).map_err(|e| Status::internal(e.to_string()))?),
                weight: batch.weights[i],
            });
        }
        metrics::counter!(names::REPLAY_SAMPLES).increment(samples.len() as u64);
        Ok(v1::SampleResponse { samples, replay_size })
    }
}

/// Rate-limiter failures as statuses the clients know how to retry.
fn limiter_status(error: ReplayError) -> Status {
    if let ReplayError::RateLimiterTimeout { operation, .. } = &error {
        metrics::counter!(names::REPLAY_LIMITER_TIMEOUTS, "op" => *operation).increment(1);
    }
    match &error {
        ReplayError::RateLimiterTimeout { operation: "insert", .. } => Status::resource_exhausted(error.to_string()),
        ReplayError::RateLimiterTimeout { .. } => Status::deadline_exceeded(error.to_string()),
        ReplayError::RateLimiterClosed => Status::unavailable("replay server is shutting down"),
        ReplayError::SampleRequestTooLarge { .. } => Status::invalid_argument(error.to_string()),
        _ => Status::internal(error.to_string()),
    }
}

fn invalid() {
    metrics::counter!(names::INVALID_REQUESTS, "service" => "replay").increment(1);
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Status::internal(format!("replay worker failed: {e}")))?
}

#[tonic::async_trait]
impl ReplayService for ReplayServer {
    async fn insert_sequences(&self, request: Request<Streaming<v1::InsertRequest>>) -> Result<Response<v1::InsertResponse>, Status> {
        let mut stream = request.into_inner();
        let (mut inserted, mut evicted) = (0, 0);
        while let Some(message) = stream.next().await {
            let message = message.map_err(pkrl_proto::serving::oversize_as_resource_exhausted)?;
            validate_insert_request(&message).inspect_err(|_| invalid())?;
            let mut sequences = Vec::with_capacity(message.sequences.len());
            for (index, sequence) in message.sequences.into_iter().enumerate() {
                let converted = sequence_from_validated_wire(sequence).map_err(|e| Status::invalid_argument(format!("sequences[{index}]: {e}")))?;
                sequences.push(converted);
            }
            let server = self.clone();
            let (i, e) = blocking(move || server.insert_batch(sequences)).await?;
            inserted += i;
            evicted += e;
        }
        Ok(Response::new(v1::InsertResponse { inserted, evicted }))
    }

    async fn sample(&self, request: Request<v1::SampleRequest>) -> Result<Response<v1::SampleResponse>, Status> {
        let request = request.into_inner();
        validate_sample_request(&request).inspect_err(|_| invalid())?;
        let server = self.clone();
        let response = blocking(move || server.sample_batch(request.batch_size as usize)).await?;
        Ok(Response::new(response))
    }

    async fn update_priorities(
        &self,
        request: Request<v1::UpdatePrioritiesRequest>,
    ) -> Result<Response<v1::UpdatePrioritiesResponse>, Status> {
        let request = request.into_inner();
        validate_update_priorities_request(&request).inspect_err(|_| invalid())?;
        let mut table = self.shared.table();
        let capacity = table.replay.capacity();
        let keys: Vec<_> = request.keys.iter().map(|&k| key_from_wire(k, capacity)).collect();
        let priorities: Vec<f64> = request.priorities.iter().map(|&p| f64::from(p)).collect();
        let outcome = table.replay.update_priorities(&keys, &priorities).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(v1::UpdatePrioritiesResponse { updated: outcome.applied as u64, missing: outcome.stale as u64 }))
    }

    async fn stats(&self, _request: Request<v1::StatsRequest>) -> Result<Response<v1::StatsResponse>, Status> {
        let stats = self.stats();
        Ok(Response::new(v1::StatsResponse {
            size: stats.len as u64,
            capacity: stats.capacity as u64,
            inserted_total: stats.inserts_total,
            sampled_total: stats.samples_total,
            evicted_total: stats.evictions_total,
            max_priority: stats.max_priority as f32,
        }))
    }
}
