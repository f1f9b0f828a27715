//! The replay service of the distributed mode (issue 8): the `replay` library's
//! [`replay::SequenceReplay`] behind `permakey.v1.ReplayService`, with Reverb's samples-per-insert
//! rate limiter, periodic atomic snapshots restored at start, gRPC health checking and reflection
//! (so `grpcurl` and Kubernetes probes work), and graceful shutdown (limiter closed, final
//! snapshot written).
//!
//! - [`server`]: the service ([`ReplayServer`]);
//! - [`wire`]: library <-> wire conversions of sequences and keys;
//! - [`client`]: [`RemoteReplay`], a blocking client the learner and actors use (the same calls
//!   as the embedded replay, with retries and backoff);
//! - [`serve`]: everything a process needs, used by the `replay-server` binary (in the `cli`
//!   package, beside the config schema, which depends on this crate's neighbours) and the tests.
//!
//! ```text
//! replay-server --config run.toml --set replay_server.listen=127.0.0.1:50051
//! grpcurl -plaintext 127.0.0.1:50051 permakey.v1.ReplayService/Stats
//! grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//! ```
//!
//! Security ([`pkrl_proto::security`]): with a token configured every `ReplayService` RPC needs
//! it (`InsertSequences` and `UpdatePriorities` write, `Sample` advances the rate limiter,
//! `Stats` describes the run); health and reflection stay open.

pub mod client;
pub mod fuzzing;
pub mod server;
pub mod wire;

use std::{future::Future, time::Duration};

use pkrl_proto::{
    security::ServerSecurity,
    serving::{Stopping, bounded_drain, incoming, reflection_service},
    v1::replay_service_server::ReplayServiceServer,
    validate::MAX_MESSAGE_BYTES,
};
use replay::{ReplayConfig, ReplayServerConfig};
use tokio::net::TcpListener;

pub use client::RemoteReplay;
pub use pkrl_proto::serving::terminated;
pub use server::{ReplayServer, StartedFrom};

/// What a finished server reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeReport {
    pub started_from: StartedFrom,
    /// Sequences in the final snapshot, when a snapshot path is configured.
    pub final_snapshot: Option<usize>,
    pub stats: replay::ReplayStats,
}

/// Serves on `listener` until `shutdown` resolves, then stops taking requests, closes the rate
/// limiter (waiting clients get `UNAVAILABLE`) and writes a final snapshot. With a token in
/// `security`, every `ReplayService` RPC needs it (health and reflection stay open); with a
/// certificate, the server speaks TLS only.
pub async fn serve(
    table: ReplayConfig,
    config: ReplayServerConfig,
    security: ServerSecurity,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ServeReport> {
    let snapshot_every = config.snapshot_every_s;
    let (server, started_from) = ReplayServer::open(table, config)?;
    match &started_from {
        StartedFrom::Empty => tracing::info!("replay starts empty"),
        StartedFrom::Snapshot { path, sequences } => {
            tracing::info!(path = %path.display(), sequences, "replay restored from its snapshot")
        }
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ReplayServiceServer<ReplayServer>>().await;
    let reflection = reflection_service()?;
    let periodic = (snapshot_every > 0).then(|| {
        let server = server.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(snapshot_every));
            ticks.tick().await; // the first tick is immediate
            loop {
                ticks.tick().await;
                let server = server.clone();
                match tokio::task::spawn_blocking(move || server.snapshot()).await {
                    Ok(Ok(Some(sequences))) => tracing::info!(sequences, "replay snapshot written"),
                    Ok(Ok(None)) => {}
                    Ok(Err(error)) => tracing::error!(%error, "replay snapshot failed; the previous one is kept"),
                    Err(error) => tracing::error!(%error, "replay snapshot task failed"),
                }
            }
        })
    });
    let address = listener.local_addr()?;
    tracing::info!(%address, "replay service listening");
    security.log("replay");
    let service = security.guard(
        ReplayServiceServer::new(server.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES),
    );
    let closer = server.clone();
    let stopping = Stopping::default();
    let stopped = stopping.clone();
    let serving = security
        .server_builder()?
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), async move {
            shutdown.await;
            // Release RPCs parked in the rate limiter so the graceful drain can finish.
            closer.close();
            stopped.fire();
            tracing::info!("replay service shutting down");
        });
    bounded_drain(serving, stopping).await?;
    if let Some(task) = periodic {
        task.abort();
    }
    let final_server = server.clone();
    let final_snapshot = tokio::task::spawn_blocking(move || final_server.snapshot()).await??;
    if let Some(sequences) = final_snapshot {
        tracing::info!(sequences, "final replay snapshot written");
    }
    Ok(ServeReport { started_from, final_snapshot, stats: server.stats() })
}
