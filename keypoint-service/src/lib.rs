//! Keypoint service: runs the frozen keypoint model (PermaKey or Transporter, reference spec
//! sections 4 and 7.1) for many actors at once, batching their frames so that one forward
//! pass serves many environments.
//!
//! - [`DynamicBatcher`]: a generic batcher that knows nothing of tch or gRPC (max batch size,
//!   max wait, bounded queue, deadlines): threads call [`BatchSubmitter::submit`] and block on the
//!   [`ResponseHandle`]; the gRPC handler calls [`BatchSubmitter::submit_with_callback`];
//! - [`server`]: [`KeypointServer`], a frozen [`permakey::KeypointModel`] behind
//!   `permakey.v1.KeypointService`, batching the frames of every connected actor;
//! - [`serve()`]: the `keypoint-server` process (health, reflection, graceful shutdown);
//! - [`client`]: [`RemoteKeypoints`], the actors' blocking client (one stream, retries with
//!   backoff, reconnects).
//!
//! Security ([`pkrl_proto::security`]): with a token configured `Infer` needs it (frames without
//! it never reach the model); health and reflection stay open; TLS when given a certificate.
//!
//! ```text
//! keypoint-server --config run.toml --set keypoints.checkpoint='"runs/pk/checkpoints"'
//! grpcurl -plaintext 127.0.0.1:50052 grpc.health.v1.Health/Check
//! ```
//!
//! The loop, as the keypoint service runs it:
//!
//! ```
//! use std::time::Duration;
//! use keypoint_service::{DynamicBatcher, DynamicBatcherConfig, ShutdownMode};
//!
//! // Stand-in for the model: one "keypoint" per frame, computed for the whole batch at once.
//! let forward = |frames: &[Vec<u8>]| -> Result<Vec<f32>, String> {
//!     Ok(frames.iter().map(|frame| frame.len() as f32).collect())
//! };
//! let config = DynamicBatcherConfig { max_batch_size: 8, ..DynamicBatcherConfig::default() };
//! let batcher = DynamicBatcher::start(config, forward)?;
//! let actors: Vec<_> = (0..4)
//!     .map(|actor_id| {
//!         let submitter = batcher.submitter();
//!         std::thread::spawn(move || {
//!             let frame = vec![0u8; 84 * 84 * 3 + actor_id];
//!             let keypoint = submitter.submit_with_timeout(frame, Duration::from_secs(5))?.wait()?;
//!             assert_eq!(keypoint, (84 * 84 * 3 + actor_id) as f32);
//!             Ok::<_, keypoint_service::BatcherError>(())
//!         })
//!     })
//!     .collect();
//! for actor in actors {
//!     actor.join().unwrap()?;
//! }
//! let stats = batcher.shutdown(ShutdownMode::Drain);
//! assert_eq!(stats.completed_requests, 4);
//! # Ok::<(), keypoint_service::BatcherError>(())
//! ```
//!
//! Design decisions:
//! - One worker thread owns the batch function (`FnMut`, so it may own a model and reuse
//!   buffers); the model runs off any async runtime, as `STYLE.md` asks of tch forwards.
//! - The queue is a bounded crossbeam channel and `submit` uses `try_send`: when the model
//!   falls behind, clients get [`BatcherError::Overloaded`] at once and can back off, instead
//!   of queueing without bound or blocking.
//! - The batch wait counts from the first request of a batch, so a lone request waits at most
//!   `max_batch_wait` however few clients remain; a full batch runs at once.
//! - Deadlines and abandoned handles are checked twice: when a request is dequeued and right
//!   before the batch function runs, so the model never spends work on answers nobody reads.
//!   A deadline bounds queueing only: a request that has started running is always answered.
//! - The batch function's error type is erased into `Arc<dyn Error>`, so the batcher has
//!   only request and response type parameters and one batch-wide failure is shared by all
//!   requests of the batch. A panic in the batch function fails that batch and the worker
//!   carries on.
//! - Shutdown takes the queue's only sender under a write lock, so no submission can race
//!   past the final drain; [`ShutdownMode`] chooses between running and failing what is left.
//! - Counters are atomics read into a [`BatcherStats`] snapshot; the Prometheus export
//!   (`permakey_keypoint_*`) will read it.

mod batcher;
pub mod client;
mod config;
mod error;
mod serve;
pub mod server;

pub use batcher::{
    BatchResult, BatchSubmitter, BatcherStats, DynamicBatcher, ResponseHandle, ShutdownMode,
};
pub use client::{InferOutput, RemoteKeypoints};
pub use config::{DynamicBatcherConfig, KeypointServerConfig, MAX_MAX_BATCH_SIZE, MAX_MAX_BATCH_WAIT_MICROS};
pub use error::BatcherError;
pub use serve::{ServeReport, serve};
pub use server::{KeypointServer, ModelInfo};
