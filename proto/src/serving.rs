//! What every PermaKey-RL gRPC server and client shares: reflection over the `permakey.v1` and
//! health descriptors, a bounded graceful shutdown, SIGTERM handling, client channels (with the
//! optional token and TLS of [`crate::security`]), and client retries with exponential backoff.

use std::{future::Future, sync::Arc, time::Duration};

use tonic::{Code, Status};

use crate::security::{ClientSecurity, SecuredChannel};

/// Longest the graceful drain at shutdown waits for connected clients: a graceful HTTP/2 drain
/// waits for every client to acknowledge, and one that has stopped reading must not keep a
/// server from writing its final snapshot or checkpoint.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// gRPC server reflection (v1) for the `permakey.v1` services and `grpc.health.v1`, so that
/// `grpcurl -plaintext HOST:PORT list` works without .proto files.
pub fn reflection_service()
-> Result<tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>, tonic_reflection::server::Error> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}

/// A shutdown signal that can be fired once and awaited by any number of tasks.
#[derive(Clone, Default)]
pub struct Stopping {
    notify: Arc<tokio::sync::Notify>,
    fired: Arc<std::sync::atomic::AtomicBool>,
}

impl Stopping {
    /// Fires the signal (idempotent).
    pub fn fire(&self) {
        self.fired.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether [`Stopping::fire`] was called.
    pub fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once the signal has fired.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.fired() {
                return;
            }
            notified.await;
        }
    }
}

/// Runs `serving` (a tonic server future whose own shutdown future fires `stopping`) and returns
/// when it finishes, or [`SHUTDOWN_DRAIN`] after `stopping` fired, whichever is first.
pub async fn bounded_drain<E>(serving: impl Future<Output = Result<(), E>>, stopping: Stopping) -> Result<(), E> {
    let limit = async move {
        stopping.wait().await;
        tokio::time::sleep(SHUTDOWN_DRAIN).await;
    };
    tokio::select! {
        served = serving => served,
        () = limit => {
            tracing::warn!(seconds = SHUTDOWN_DRAIN.as_secs(), "clients still connected after the drain; closing");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return ctrl_c.await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// HTTP/2 flow-control windows of every server and client: one Atari sequence is ~255 KB, and
/// with h2's default 64 KiB stream window each one would wait for several window updates.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// Connection-level window (all streams of one connection together).
pub const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

/// What [`server_builder`] returns: a tonic server with the [`oversize_layer`].
pub type ServerBuilder = tonic::transport::Server<tower::layer::util::Stack<OversizeLayer, tower::layer::util::Identity>>;

/// A tonic server builder with this project's transport settings (windows above, TCP_NODELAY)
/// and the [`oversize_layer`].
pub fn server_builder() -> ServerBuilder {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .layer(oversize_layer())
}

type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

/// The layer of [`oversize_layer`].
pub type OversizeLayer = tower::util::MapResponseLayer<fn(HttpResponse) -> HttpResponse>;

/// A layer in front of every server: tonic refuses a request message over the decoding limit
/// ([`crate::validate::MAX_MESSAGE_BYTES`]) with `OUT_OF_RANGE` before any handler runs; this
/// answers `RESOURCE_EXHAUSTED` instead (what gRPC's other implementations send, and what this
/// project answers for every other size limit), with tonic's message. Streams whose handler sees
/// the error map it with [`oversize_as_resource_exhausted`].
pub fn oversize_layer() -> OversizeLayer {
    tower::util::MapResponseLayer::new(map_oversize_response as fn(HttpResponse) -> HttpResponse)
}

fn is_oversize_message(message: &[u8]) -> bool {
    // grpc-message is percent-encoded: spaces arrive as %20
    let needle = b"message%20length%20too%20large";
    let plain = b"message length too large";
    message.windows(needle.len()).any(|w| w == needle) || message.windows(plain.len()).any(|w| w == plain)
}

fn map_oversize_response(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    let out_of_range = headers.get("grpc-status").is_some_and(|code| code.as_bytes() == b"11");
    if out_of_range && headers.get("grpc-message").is_some_and(|message| is_oversize_message(message.as_bytes())) {
        headers.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static("8"));
    }
    response
}

/// `status` with `RESOURCE_EXHAUSTED` instead of `OUT_OF_RANGE` when it is tonic's refusal of an
/// over-limit message (see [`oversize_layer`]); any other status as it is.
pub fn oversize_as_resource_exhausted(status: Status) -> Status {
    if status.code() == Code::OutOfRange && is_oversize_message(status.message().as_bytes()) {
        Status::resource_exhausted(status.message().to_owned())
    } else {
        status
    }
}

/// The accepted connections of `listener`, with TCP_NODELAY set (tonic sets it only on
/// listeners it binds itself; without it small replies wait for delayed ACKs, ~40 ms each).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A client's own tokio runtime (one worker, so the connection's background task keeps answering
/// the server's HTTP/2 pings and shutdown handshakes between calls) and a lazily connecting
/// channel to `endpoint` (`http://host:port`, or `https://` with TLS) that carries `security`'s
/// token; `what` names the service in the error.
pub fn blocking_channel(endpoint: &str, what: &str, security: &ClientSecurity) -> Result<(tokio::runtime::Runtime, SecuredChannel), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the {what} client's runtime: {e}"))?;
    let _context = runtime.enter();
    let endpoint = tonic::transport::Channel::from_shared(endpoint.to_owned())
        .map_err(|e| format!("bad {what} endpoint '{endpoint}': {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
    let channel = security.endpoint(endpoint).map_err(|e| format!("{what} client: {e}"))?.connect_lazy();
    Ok((runtime, security.wrap(channel)))
}

/// Exponential backoff: attempt `n` (from 0) waits `min(initial * factor^n, max)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(50), factor: 2.0, max: Duration::from_secs(2) }
    }
}

impl Backoff {
    /// The wait before retry `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let scaled = self.initial.as_secs_f64() * self.factor.powi(attempt.min(64) as i32);
        Duration::from_secs_f64(scaled.min(self.max.as_secs_f64()))
    }
}

/// Whether a failed call may succeed when repeated: the server is down or restarting
/// (`UNAVAILABLE`, transport errors), or a rate-limiter wait ran out (`DEADLINE_EXCEEDED`, or
/// `RESOURCE_EXHAUSTED` whose message starts with "rate limiter"). A bad message is never retried,
/// nor a refused token (`UNAUTHENTICATED`) or a server certificate the client's TLS rejects
/// (rustls' "invalid peer certificate": a set-up error, not an outage).
pub fn retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable if status.message().contains("invalid peer certificate") => false,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => true,
        Code::ResourceExhausted => status.message().starts_with("rate limiter"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff::default();
        let millis: Vec<u128> = (0..8).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(millis, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(2), "no overflow");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(retryable(&Status::unavailable("down")));
        assert!(retryable(&Status::deadline_exceeded("rate limiter timed out")));
        assert!(retryable(&Status::resource_exhausted("rate limiter timed out after 1s waiting to insert")));
        assert!(!retryable(&Status::resource_exhausted("sequences has 300 items, limit is 256")));
        assert!(!retryable(&Status::invalid_argument("sequence.rewards has 3 entries, expected 4")));
        assert!(!retryable(&Status::unauthenticated("invalid token")), "a wrong token stays wrong");
        assert!(!retryable(&Status::unavailable("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))")));
    }

    #[test]
    fn stopping_wakes_waiters_fired_before_or_after() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let stopping = Stopping::default();
            let waiter = tokio::spawn({
                let stopping = stopping.clone();
                async move { stopping.wait().await }
            });
            tokio::task::yield_now().await;
            stopping.fire();
            tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
            tokio::time::timeout(Duration::from_secs(1), stopping.wait()).await.unwrap();
        });
    }
}
