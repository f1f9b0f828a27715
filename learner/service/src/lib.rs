//! Versioned parameter serving of the distributed mode (issue 8): the learner publishes its
//! online Q-network on a [`ParameterBoard`] after updates, and actors fetch
//! (`GetParameters`) or follow (`StreamParameters`) it over `permakey.v1.LearnerService`, with
//! gRPC health checking and reflection. [`RemoteParameters`] is the actors' blocking client.
//!
//! Decisions:
//! - **Plain arrays.** Parameters cross this crate as [`NamedArray`]s, `(name, shape, f32
//!   values)`, the form the trainer's `Parameters` already has, so the crate needs no tch; on
//!   the wire each is an `F32` tensor, little-endian.
//! - **Versions.** A publication must carry a version above the last one ([`PublishError`]);
//!   readers therefore see versions strictly increase, across reconnects too.
//! - **Streams skip.** The board is a `tokio::sync::watch` channel: a slow follower receives
//!   the newest version, never a backlog.
//! - **Shutdown.** Open streams end when the server stops, so the graceful drain finishes.
//! - **Run progress.** `ReportProgress` feeds a [`ProgressBoard`]: the agent steps of all actors,
//!   their finished games and the learner's update count, so the distributed learner keeps the
//!   embedded schedule (see [`progress`]).
//! - **Security** ([`pkrl_proto::security`]): with a token configured every `LearnerService`
//!   RPC needs it: `ReportProgress` writes the run's progress (and can hold actors back),
//!   `GetParameters`/`StreamParameters` hand out the model. Health and reflection stay open.

pub mod client;
pub mod progress;

use std::{future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;
use pkrl_proto::{
    security::ServerSecurity,
    serving::{Stopping, bounded_drain, incoming, reflection_service},
    v1::{
        self,
        learner_service_server::{LearnerService, LearnerServiceServer},
    },
    validate::{MAX_MESSAGE_BYTES, validate_parameters, validate_report_progress},
};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub use client::RemoteParameters;
pub use progress::{ProgressBoard, ProgressState, ReportedGame};

/// One named `f32` array: `(name, shape, values)`, `values.len()` the product of `shape`.
pub type NamedArray = (String, Vec<i64>, Vec<f32>);

/// Why parameters could not be converted or published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Invalid(#[from] pkrl_proto::validate::ValidationError),
    #[error("{0}")]
    Shape(String),
    #[error("version {version} is not above the published version {latest}")]
    StaleVersion { version: u64, latest: u64 },
}

/// The wire form of `arrays` at `version`.
pub fn parameters_to_wire(version: u64, arrays: &[NamedArray]) -> Result<v1::Parameters, PublishError> {
    let mut tensors = Vec::with_capacity(arrays.len());
    for (name, shape, values) in arrays {
        let elements: i64 = shape.iter().product();
        if shape.iter().any(|&d| d < 0) || elements as usize != values.len() {
            return Err(PublishError::Shape(format!("{name}: shape {shape:?} does not hold {} values", values.len())));
        }
        let mut data = Vec::with_capacity(values.len() * 4);
        for value in values {
            data.extend_from_slice(&value.to_le_bytes());
        }
        tensors.push(v1::Tensor {
            name: name.clone(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            dtype: v1::DType::F32 as i32,
            data: Bytes::from(data),
        });
    }
    let parameters = v1::Parameters { version, tensors };
    validate_parameters(&parameters)?;
    Ok(parameters)
}

/// The version and arrays of wire parameters, after validation (names unique, floats finite).
pub fn parameters_from_wire(parameters: &v1::Parameters) -> Result<(u64, Vec<NamedArray>), PublishError> {
    validate_parameters(parameters)?;
    let mut arrays = Vec::with_capacity(parameters.tensors.len());
    for tensor in &parameters.tensors {
        if tensor.dtype != v1::DType::F32 as i32 {
            return Err(PublishError::Shape(format!("{}: parameters must be F32 tensors", tensor.name)));
        }
        let shape = tensor
            .shape
            .iter()
            .map(|&d| i64::try_from(d).map_err(|_| PublishError::Shape(format!("{}: dimension {d} is too large", tensor.name))))
            .collect::<Result<Vec<_>, _>>()?;
        let values = tensor.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        arrays.push((tensor.name.clone(), shape, values));
    }
    Ok((parameters.version, arrays))
}

/// The newest published parameters; shared by the learner (writer) and the service (readers).
pub struct ParameterBoard {
    latest: watch::Sender<Option<Arc<v1::Parameters>>>,
}

impl Default for ParameterBoard {
    fn default() -> Self {
        Self { latest: watch::channel(None).0 }
    }
}

impl ParameterBoard {
    /// Publishes `parameters` after validating them; the version must be above the last one.
    pub fn publish(&self, parameters: v1::Parameters) -> Result<(), PublishError> {
        validate_parameters(&parameters)?;
        self.publish_validated(parameters)
    }

    /// Converts and publishes arrays (see [`parameters_to_wire`], which validates them).
    pub fn publish_arrays(&self, version: u64, arrays: &[NamedArray]) -> Result<(), PublishError> {
        self.publish_validated(parameters_to_wire(version, arrays)?)
    }

    /// Publishes parameters that passed [`validate_parameters`]; checks only the version order.
    fn publish_validated(&self, parameters: v1::Parameters) -> Result<(), PublishError> {
        let latest = self.latest_version();
        if parameters.version <= latest {
            return Err(PublishError::StaleVersion { version: parameters.version, latest });
        }
        self.latest.send_replace(Some(Arc::new(parameters)));
        Ok(())
    }

    /// The newest parameters, if any were published.
    pub fn latest(&self) -> Option<Arc<v1::Parameters>> {
        self.latest.borrow().clone()
    }

    /// The newest version, 0 before the first publication.
    pub fn latest_version(&self) -> u64 {
        self.latest.borrow().as_ref().map_or(0, |p| p.version)
    }

    fn subscribe(&self) -> watch::Receiver<Option<Arc<v1::Parameters>>> {
        self.latest.subscribe()
    }
}

/// `permakey.v1.LearnerService` over a board.
#[derive(Clone)]
pub struct LearnerServer {
    board: Arc<ParameterBoard>,
    progress: Option<Arc<ProgressBoard>>,
    stopping: Stopping,
}

impl LearnerServer {
    /// Serves `board`, and `progress` reports when given (`UNIMPLEMENTED` without one).
    pub fn new(board: Arc<ParameterBoard>, progress: Option<Arc<ProgressBoard>>, stopping: Stopping) -> Self {
        Self { board, progress, stopping }
    }
}

type ParameterStream = Pin<Box<dyn Stream<Item = Result<v1::StreamParametersResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LearnerService for LearnerServer {
    async fn get_parameters(&self, request: Request<v1::GetParametersRequest>) -> Result<Response<v1::GetParametersResponse>, Status> {
        let min_version = request.into_inner().min_version;
        let latest = self.board.latest();
        let latest_version = latest.as_ref().map_or(0, |p| p.version);
        let parameters = latest.filter(|p| p.version >= min_version).map(|p| (*p).clone());
        if parameters.is_some() {
            metrics::counter!(pkrl_telemetry::names::PARAMETER_FETCHES).increment(1);
        }
        Ok(Response::new(v1::GetParametersResponse { parameters, latest_version }))
    }

    type StreamParametersStream = ParameterStream;

    async fn stream_parameters(&self, request: Request<v1::StreamParametersRequest>) -> Result<Response<ParameterStream>, Status> {
        let mut next = request.into_inner().min_version;
        let mut updates = self.board.subscribe();
        let stopping = self.stopping.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let current = updates.borrow_and_update().clone();
                if let Some(parameters) = current.filter(|p| p.version >= next) {
                    next = parameters.version + 1;
                    let message = v1::StreamParametersResponse { parameters: Some((*parameters).clone()) };
                    if sender.send(Ok(message)).await.is_err() {
                        return; // the follower went away
                    }
                }
                tokio::select! {
                    changed = updates.changed() => if changed.is_err() { return },
                    () = stopping.wait() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn report_progress(&self, request: Request<v1::ReportProgressRequest>) -> Result<Response<v1::ReportProgressResponse>, Status> {
        let Some(progress) = &self.progress else {
            return Err(Status::unimplemented("this parameter service keeps no run progress"));
        };
        let request = request.into_inner();
        validate_report_progress(&request).inspect_err(|_| metrics::counter!(pkrl_telemetry::names::INVALID_REQUESTS, "service" => "learner").increment(1))?;
        Ok(Response::new(progress.report(&request)))
    }
}

/// Serves `board` (and `progress` reports, when given) on `listener`, with health and
/// reflection, until `shutdown` resolves. With a token in `security`, every `LearnerService`
/// RPC needs it (health and reflection stay open); with a certificate, the server speaks TLS
/// only.
pub async fn serve(
    board: Arc<ParameterBoard>,
    progress: Option<Arc<ProgressBoard>>,
    security: ServerSecurity,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stopping = Stopping::default();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LearnerServiceServer<LearnerServer>>().await;
    security.log("learner");
    let service = security.guard(
        LearnerServiceServer::new(LearnerServer::new(board, progress, stopping.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    );
    tracing::info!(address = %listener.local_addr()?, "learner parameter service listening");
    let fire = stopping.clone();
    let serving = security
        .server_builder()?
        .add_service(health_service)
        .add_service(reflection_service()?)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), async move {
            shutdown.await;
            fire.fire();
            tracing::info!("learner parameter service shutting down");
        });
    bounded_drain(serving, stopping).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrays() -> Vec<NamedArray> {
        vec![("q.weight".into(), vec![2, 2], vec![1.0, -2.5, 0.0, 3.25]), ("q.bias".into(), vec![2], vec![0.5, -0.5])]
    }

    #[test]
    fn arrays_round_trip_bit_exact() {
        let wire = parameters_to_wire(3, &arrays()).unwrap();
        assert_eq!(wire.tensors[0].data.len(), 16);
        assert_eq!(parameters_from_wire(&wire).unwrap(), (3, arrays()));
    }

    #[test]
    fn bad_parameters_are_refused_with_the_tensor_named() {
        let error = parameters_to_wire(1, &[("w".into(), vec![3], vec![0.0; 2])]).unwrap_err().to_string();
        assert!(error.contains("w: shape [3]"), "{error}");
        let error = parameters_to_wire(1, &[("w".into(), vec![1], vec![f32::NAN])]).unwrap_err().to_string();
        assert!(error.contains("NaN"), "{error}");
        let error = parameters_to_wire(0, &arrays()).unwrap_err().to_string();
        assert!(error.contains("version"), "{error}");
        let board = ParameterBoard::default();
        board.publish_arrays(2, &arrays()).unwrap();
        let error = board.publish_arrays(2, &arrays()).unwrap_err().to_string();
        assert_eq!(error, "version 2 is not above the published version 2");
        assert_eq!(board.latest_version(), 2);
    }
}
