//! [`serve`]: everything the `keypoint-server` process runs — the [`KeypointServer`] with gRPC
//! health checking and reflection, bounded graceful shutdown and the final batcher drain.

use std::future::Future;

use permakey::model::KeypointModel;
use pkrl_proto::{
    security::ServerSecurity,
    serving::{Stopping, bounded_drain, incoming, reflection_service},
    v1::keypoint_service_server::KeypointServiceServer,
    validate::MAX_MESSAGE_BYTES,
};
use tokio::net::TcpListener;

use crate::{BatcherStats, KeypointServer, KeypointServerConfig, server::ModelInfo};

/// What a finished keypoint server reports.
#[derive(Debug, Clone)]
pub struct ServeReport {
    pub model: ModelInfo,
    /// The batcher's counters at the end (frames, batches, refusals, waits).
    pub stats: BatcherStats,
}

/// Serves `model` on `listener` until `shutdown` resolves; then stops taking requests, answers
/// the ones taken (the batcher drains) and returns the batcher's counters. With a token in
/// `security`, `Infer` needs it (health and reflection stay open); with a certificate, the server
/// speaks TLS only.
pub async fn serve(
    model: Box<dyn KeypointModel>,
    version: u64,
    config: KeypointServerConfig,
    security: ServerSecurity,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ServeReport> {
    // Built before the batcher starts, so a bad TLS set-up leaves nothing running.
    let mut builder = security.server_builder()?;
    let stopping = Stopping::default();
    let (server, batcher) = KeypointServer::start(model, version, &config, stopping.clone())?;
    let info = server.info();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<KeypointServiceServer<KeypointServer>>().await;
    security.log("keypoint");
    let service = security.guard(KeypointServiceServer::new(server).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES));
    tracing::info!(
        address = %listener.local_addr()?,
        keypoints = info.num_keypoints,
        image_size = info.image_size,
        version,
        max_batch_size = config.batching.max_batch_size,
        max_batch_wait_us = config.batching.max_batch_wait_micros,
        "keypoint service listening"
    );
    let fire = stopping.clone();
    let serving = builder
        .add_service(health_service)
        .add_service(reflection_service()?)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), async move {
            shutdown.await;
            fire.fire();
            tracing::info!("keypoint service shutting down");
        });
    bounded_drain(serving, stopping).await?;
    let stats = tokio::task::spawn_blocking(move || batcher.shutdown()).await?;
    tracing::info!(frames = stats.completed_requests, batches = stats.batches, mean_batch = format!("{:.1}", stats.mean_batch_size()), "keypoint batcher stopped");
    Ok(ServeReport { model: info, stats })
}
