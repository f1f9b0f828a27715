//! [`RemoteParameters`]: the actors' blocking client of the parameter service.
//!
//! Like the replay client it owns a one-worker tokio runtime, retries `UNAVAILABLE` and
//! transport errors with exponential backoff for up to `retry_for`, and picks up a restarted
//! learner through the channel's own reconnects. Versions it returns never go down: a reply
//! older than what the caller has (say, from a learner restarted from an older checkpoint) is
//! reported as "nothing newer".

use std::time::{Duration, Instant};

use pkrl_proto::{
    security::{ClientSecurity, SecuredChannel},
    serving::{Backoff, blocking_channel, retryable},
    v1::{self, learner_service_client::LearnerServiceClient},
    validate::MAX_MESSAGE_BYTES,
};

use crate::{NamedArray, parameters_from_wire};

/// A blocking parameter-service client.
pub struct RemoteParameters {
    runtime: tokio::runtime::Runtime,
    client: LearnerServiceClient<SecuredChannel>,
    endpoint: String,
    backoff: Backoff,
    retry_for: Duration,
}

impl RemoteParameters {
    /// A client of `endpoint` (`http://host:port`) without a token or TLS; connects lazily, on
    /// the first call.
    pub fn new(endpoint: &str, retry_for: Duration) -> anyhow::Result<Self> {
        Self::new_secured(endpoint, retry_for, &ClientSecurity::default())
    }

    /// [`RemoteParameters::new`] with `security`'s token on every call and TLS to an `https://`
    /// endpoint. A refused token fails at once (`UNAUTHENTICATED` is never retried).
    pub fn new_secured(endpoint: &str, retry_for: Duration, security: &ClientSecurity) -> anyhow::Result<Self> {
        let (runtime, channel) = blocking_channel(endpoint, "learner", security).map_err(anyhow::Error::msg)?;
        let client = LearnerServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { runtime, client, endpoint: endpoint.to_owned(), backoff: Backoff::default(), retry_for })
    }

    /// Runs one call, retrying transient failures with backoff for up to `retry_for`.
    fn call<T, F, Fut>(&self, what: &str, mut attempt: F) -> anyhow::Result<T>
    where
        F: FnMut(LearnerServiceClient<SecuredChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let mut tries = 0;
        loop {
            match self.runtime.block_on(attempt(self.client.clone())) {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if retryable(&status) && started.elapsed() < self.retry_for => {
                    tracing::debug!(endpoint = %self.endpoint, what, code = ?status.code(), "learner call failed; retrying");
                    std::thread::sleep(self.backoff.delay(tries));
                    tries += 1;
                }
                Err(status) => anyhow::bail!("{what} at {} failed ({:?}): {}", self.endpoint, status.code(), status.message()),
            }
        }
    }

    /// The newest parameters if their version is above `have` (any version for `None`).
    pub fn fetch_newer(&self, have: Option<u64>) -> anyhow::Result<Option<(u64, Vec<NamedArray>)>> {
        let request = v1::GetParametersRequest { min_version: have.map_or(0, |v| v.saturating_add(1)) };
        let response = self.call("parameter fetch", |mut client| async move { client.get_parameters(request).await })?;
        let Some(parameters) = response.parameters else { return Ok(None) };
        let (version, arrays) = parameters_from_wire(&parameters)?;
        if have.is_some_and(|have| version <= have) {
            return Ok(None);
        }
        Ok(Some((version, arrays)))
    }

    /// Reports an actor's progress (see [`crate::progress`]); returns the run's totals.
    pub fn report_progress(&self, request: &v1::ReportProgressRequest) -> anyhow::Result<v1::ReportProgressResponse> {
        self.call("progress report", |mut client| {
            let request = request.clone();
            async move { client.report_progress(request).await }
        })
    }

    /// The newest version the learner has published (0: none yet).
    pub fn latest_version(&self) -> anyhow::Result<u64> {
        let mut client = self.client.clone();
        let request = v1::GetParametersRequest { min_version: u64::MAX };
        let response = self
            .runtime
            .block_on(client.get_parameters(request))
            .map_err(|s| anyhow::anyhow!("parameter query to {} failed ({:?}): {}", self.endpoint, s.code(), s.message()))?;
        Ok(response.into_inner().latest_version)
    }
}
