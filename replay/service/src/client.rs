//! [`RemoteReplay`]: a blocking client of the replay service with the embedded replay's calls.
//!
//! The learner and the actors are plain threads, so the client owns a small tokio runtime (one
//! worker) and blocks on it; it must not be called from inside another tokio runtime.
//!
//! Retries: `UNAVAILABLE` (server down or restarting), a rate-limiter wait that ran out
//! (`DEADLINE_EXCEEDED` on sample, `RESOURCE_EXHAUSTED` from the limiter on insert) and transport
//! errors are retried with exponential [`Backoff`] until `retry_for` has passed; anything else
//! (a bad message) fails at once with the server's one-line reason. The channel reconnects by
//! itself, so a restarted server is picked up without a new client.
//!
//! Inserts travel one sequence per stream, so a retried insert never duplicates a sequence the
//! limiter refused; a connection lost after the server stored a sequence but before it answered
//! can still duplicate that one sequence (at-least-once).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pkrl_proto::{
    security::{ClientSecurity, SecuredChannel},
    serving::{Backoff, blocking_channel, retryable},
    v1::{self, replay_service_client::ReplayServiceClient},
    validate::{MAX_MESSAGE_BYTES, MAX_SEQUENCES_PER_INSERT},
};
use replay::{SampleKey, SampledBatch, Sequence};
use tonic::Status;

use crate::wire::{key_from_wire, key_to_wire, sequence_from_wire, sequence_to_wire};

/// A blocking replay-service client.
pub struct RemoteReplay {
    runtime: Arc<tokio::runtime::Runtime>,
    client: ReplayServiceClient<SecuredChannel>,
    endpoint: String,
    capacity: usize,
    backoff: Backoff,
    retry_for: Duration,
}

impl RemoteReplay {
    /// Connects to `endpoint` (`http://host:port`) without a token or TLS, retrying for up to
    /// `retry_for` while the server is not up yet.
    pub fn connect(endpoint: &str, retry_for: Duration) -> anyhow::Result<Self> {
        Self::connect_secured(endpoint, retry_for, &ClientSecurity::default())
    }

    /// [`RemoteReplay::connect`] with `security`'s token on every call and TLS to an `https://`
    /// endpoint. A refused token fails at once (`UNAUTHENTICATED` is never retried).
    pub fn connect_secured(endpoint: &str, retry_for: Duration, security: &ClientSecurity) -> anyhow::Result<Self> {
        let (runtime, channel) = blocking_channel(endpoint, "replay", security).map_err(anyhow::Error::msg)?;
        let client = ReplayServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut remote = Self {
            runtime: Arc::new(runtime),
            client,
            endpoint: endpoint.to_owned(),
            capacity: 1,
            backoff: Backoff::default(),
            retry_for,
        };
        remote.capacity = remote.stats()?.capacity.max(1) as usize;
        Ok(remote)
    }

    /// Sets how long failed calls are retried.
    pub fn with_retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    fn call<T, F, Fut>(&self, what: &str, mut attempt: F) -> anyhow::Result<T>
    where
        F: FnMut(ReplayServiceClient<SecuredChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        let mut tries = 0;
        loop {
            match self.runtime.block_on(attempt(self.client.clone())) {
                Ok(value) => return Ok(value),
                Err(status) if retryable(&status) && started.elapsed() < self.retry_for => {
                    tracing::debug!(endpoint = %self.endpoint, what, code = ?status.code(), message = status.message(), "replay call failed; retrying");
                    std::thread::sleep(self.backoff.delay(tries));
                    tries += 1;
                }
                Err(status) => {
                    anyhow::bail!("replay {what} at {} failed ({:?}): {}", self.endpoint, status.code(), status.message())
                }
            }
        }
    }

    /// Inserts sequences in order (one stream per sequence, see the module docs); returns the
    /// number of evictions they caused.
    pub fn insert(&self, sequences: &[Sequence]) -> anyhow::Result<u64> {
        let mut evicted = 0;
        for sequence in sequences {
            let message = v1::InsertRequest { sequences: vec![sequence_to_wire(sequence, 0.0)?] };
            let response = self.call("insert", |mut client| {
                let message = message.clone();
                async move { client.insert_sequences(tokio_stream::iter([message])).await.map(tonic::Response::into_inner) }
            })?;
            evicted += response.evicted;
        }
        Ok(evicted)
    }

    /// Inserts `sequences` in order on one stream, up to [`MAX_SEQUENCES_PER_INSERT`] per message
    /// (bulk loads, benchmarks): one round trip for the lot instead of one per sequence. Returns
    /// the number of evictions. Unlike [`RemoteReplay::insert`], a transient failure part-way
    /// (the rate limiter's insert timeout, a lost connection) retries the whole batch, so the
    /// sequences stored before the failure can be stored twice (at-least-once).
    pub fn insert_batch(&self, sequences: &[Sequence]) -> anyhow::Result<u64> {
        let mut messages = Vec::new();
        for chunk in sequences.chunks(MAX_SEQUENCES_PER_INSERT) {
            let wire = chunk.iter().map(|s| sequence_to_wire(s, 0.0)).collect::<Result<Vec<_>, _>>()?;
            messages.push(v1::InsertRequest { sequences: wire });
        }
        let response = self.call("insert", |mut client| {
            let messages = messages.clone();
            async move { client.insert_sequences(tokio_stream::iter(messages)).await.map(tonic::Response::into_inner) }
        })?;
        anyhow::ensure!(response.inserted == sequences.len() as u64, "replay stored {} of {} sequences", response.inserted, sequences.len());
        Ok(response.evicted)
    }

    /// Samples `batch_size` sequences, waiting (with retries) while the rate limiter holds the
    /// learner back.
    pub fn sample(&self, batch_size: usize) -> anyhow::Result<SampledBatch> {
        let request = v1::SampleRequest { batch_size: u32::try_from(batch_size)? };
        let response = self.call("sample", |mut client| {
            let request = request.clone();
            async move { client.sample(request).await.map(tonic::Response::into_inner) }
        })?;
        let mut batch = SampledBatch { keys: vec![], items: vec![], probabilities: vec![], weights: vec![] };
        for sample in response.samples {
            let sequence = sample.sequence.ok_or_else(|| anyhow::anyhow!("replay sample {} came without its sequence", sample.key))?;
            let (sequence, _) = sequence_from_wire(sequence)?;
            batch.keys.push(key_from_wire(sample.key, self.capacity));
            batch.items.push(Arc::new(sequence));
            batch.probabilities.push(sample.probability);
            batch.weights.push(sample.weight);
        }
        Ok(batch)
    }

    /// Reports new priorities; returns how many keys were still in the replay.
    pub fn update_priorities(&self, keys: &[SampleKey], priorities: &[f64]) -> anyhow::Result<u64> {
        let request = v1::UpdatePrioritiesRequest {
            keys: keys.iter().map(|&k| key_to_wire(k)).collect(),
            priorities: priorities.iter().map(|&p| p as f32).collect(),
        };
        let response = self.call("update_priorities", |mut client| {
            let request = request.clone();
            async move { client.update_priorities(request).await.map(tonic::Response::into_inner) }
        })?;
        Ok(response.updated)
    }

    /// The server's counters from one attempt of at most two seconds, no retries (for
    /// informational reads that must not hold a stopping process for `retry_for`).
    pub fn stats_once(&self) -> anyhow::Result<v1::StatsResponse> {
        let mut client = self.client.clone();
        let answer = self.runtime.block_on(async move { tokio::time::timeout(Duration::from_secs(2), client.stats(v1::StatsRequest {})).await });
        match answer {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => anyhow::bail!("replay stats at {} failed ({:?}): {}", self.endpoint, status.code(), status.message()),
            Err(_) => anyhow::bail!("replay stats at {} timed out", self.endpoint),
        }
    }

    /// The server's counters.
    pub fn stats(&self) -> anyhow::Result<v1::StatsResponse> {
        self.call("stats", |mut client| async move { client.stats(v1::StatsRequest {}).await.map(tonic::Response::into_inner) })
    }
}
