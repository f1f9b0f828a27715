//! [`KeypointServer`]: a frozen keypoint model behind `permakey.v1.KeypointService`, with the
//! [`DynamicBatcher`] forming model batches from the frames of every connected actor.
//!
//! Decisions:
//! - **The batcher's unit is one frame.** A request's frames are submitted one by one and the
//!   answer is assembled when the last of them is back, so `max_batch_size` is the forward
//!   batch in frames whatever the actors' vector sizes, and the frames of one request may ride
//!   in two consecutive batches.
//! - **Per-request failures stay on the stream** (protocol rule 3): a malformed request, a frame
//!   shape the model does not take, a full queue (`RESOURCE_EXHAUSTED`, backpressure), a deadline
//!   passed while queued (`DEADLINE_EXCEEDED`) or shutdown (`UNAVAILABLE`) come back as an
//!   [`v1::ItemError`] with the request's id. The first failure of a request answers it; the
//!   results of its other frames are dropped.
//! - **Frame checks before the queue.** Only frames of the model's shape (`S x S x 3`) enter the
//!   batcher, so one bad actor cannot fail a batch that holds other actors' frames.
//! - **Shutdown.** When the server stops, streams stop reading new requests, every request
//!   already taken is answered (the batcher drains), then the streams end.
//! - **Wire layout.** Centres are `(y, x)` pairs in `[-1, 1]`; features travel as f32 `[H, W, C]`
//!   and heatmaps as f32 `[H, W, K]` (the proto's layout), converted once per batch on the model's
//!   device and sliced per frame without copying.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use permakey::model::{KeypointModel, frames_to_tensor};
use pkrl_proto::{
    serving::Stopping,
    v1::{self, ErrorCode, ItemError, keypoint_service_server::KeypointService},
    validate::validate_infer_request,
};
use pkrl_telemetry::names;
use tch::{Device, Kind, Tensor};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::{BatchSubmitter, BatcherError, BatcherStats, DynamicBatcher, KeypointServerConfig, ShutdownMode};

/// One frame on its way through the batcher.
pub struct FrameJob {
    /// `S x S x 3` HWC bytes.
    pub pixels: Bytes,
    pub features: bool,
    pub heatmaps: bool,
}

/// One frame's answer.
#[derive(Debug, Clone)]
pub struct FrameResult {
    /// `2K` values: `(y, x)` per keypoint.
    pub centres: Vec<f32>,
    pub features: Option<v1::Tensor>,
    pub heatmaps: Option<v1::Tensor>,
}

/// What the model is, as the service reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInfo {
    pub num_keypoints: usize,
    /// Side `S` of the square RGB frames the model takes.
    pub image_size: usize,
    pub gauss_std: f64,
    /// Sent with every answer (e.g. the checkpoint's training step).
    pub version: u64,
}

/// The batch function: frames in, one [`FrameResult`] each out, in order.
pub fn run_batch(model: &dyn KeypointModel, jobs: &[FrameJob]) -> anyhow::Result<Vec<FrameResult>> {
    let n = jobs.len();
    let size = model.image_size();
    let frame_bytes = (size * size * 3) as usize;
    let mut bytes = Vec::with_capacity(n * frame_bytes);
    for job in jobs {
        anyhow::ensure!(job.pixels.len() == frame_bytes, "a frame of {} bytes reached the model (expected {frame_bytes})", job.pixels.len());
        bytes.extend_from_slice(&job.pixels);
    }
    let frames = frames_to_tensor(&bytes, n as i64, size, size, 3, model.device());
    let out = tch::no_grad(|| model.keypoints(&frames));
    let centres = Vec::<f32>::try_from(out.centres.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().flatten(0, -1))?;
    let k2 = centres.len() / n;
    let features = jobs.iter().any(|j| j.features).then(|| per_frame_hwc(&out.features, n)).transpose()?;
    let heatmaps = jobs.iter().any(|j| j.heatmaps).then(|| per_frame_hwc(&out.heatmaps, n)).transpose()?;
    Ok(jobs
        .iter()
        .enumerate()
        .map(|(i, job)| FrameResult {
            centres: centres[i * k2..(i + 1) * k2].to_vec(),
            features: features.as_ref().filter(|_| job.features).map(|f| f.frame(i)),
            heatmaps: heatmaps.as_ref().filter(|_| job.heatmaps).map(|f| f.frame(i)),
        })
        .collect())
}

/// A batch's `B x C x H x W` tensor as little-endian f32 bytes in `B x H x W x C` order.
struct HwcBatch {
    bytes: Bytes,
    shape: [u64; 3],
}

impl HwcBatch {
    fn frame(&self, i: usize) -> v1::Tensor {
        let per = (self.shape.iter().product::<u64>() * 4) as usize;
        v1::Tensor { name: String::new(), shape: self.shape.to_vec(), dtype: v1::DType::F32 as i32, data: self.bytes.slice(i * per..(i + 1) * per) }
    }
}

fn per_frame_hwc(t: &Tensor, n: usize) -> anyhow::Result<HwcBatch> {
    let size = t.size();
    anyhow::ensure!(size.len() == 4 && size[0] == n as i64, "model output of shape {size:?} for {n} frames");
    let hwc = t.to_kind(Kind::Float).permute([0, 2, 3, 1]).contiguous().to_device(Device::Cpu);
    let raw = Vec::<u8>::try_from(hwc.view_dtype(Kind::Uint8).flatten(0, -1))?;
    // tch stores f32 in the machine's order; the wire is little-endian.
    #[cfg(target_endian = "big")]
    let raw: Vec<u8> = raw.chunks_exact(4).flat_map(|c| [c[3], c[2], c[1], c[0]]).collect();
    Ok(HwcBatch { bytes: Bytes::from(raw), shape: [size[2] as u64, size[3] as u64, size[1] as u64] })
}

type Batcher = DynamicBatcher<FrameJob, FrameResult>;

/// The keypoint service. Cheap to clone: clones share one batcher.
#[derive(Clone)]
pub struct KeypointServer {
    submitter: BatchSubmitter<FrameJob, FrameResult>,
    info: ModelInfo,
    default_timeout: Duration,
    stopping: Stopping,
}

/// The batcher behind a [`KeypointServer`]; stop it with [`ServerBatcher::shutdown`] after the
/// server has stopped taking requests.
pub struct ServerBatcher(Batcher);

impl ServerBatcher {
    /// Runs what is queued (every request taken gets its answer) and returns the counters.
    pub fn shutdown(self) -> BatcherStats {
        self.0.shutdown(ShutdownMode::Drain)
    }

    pub fn stats(&self) -> BatcherStats {
        self.0.stats()
    }
}

impl KeypointServer {
    /// Starts the batcher's worker thread with `model` (it moves there) and returns the service.
    pub fn start(model: Box<dyn KeypointModel>, version: u64, config: &KeypointServerConfig, stopping: Stopping) -> anyhow::Result<(Self, ServerBatcher)> {
        config.validate()?;
        let info = ModelInfo { num_keypoints: model.num_keypoints() as usize, image_size: model.image_size() as usize, gauss_std: model.gauss_std(), version };
        let batcher = Batcher::start(config.batching.clone(), move |jobs: &[FrameJob]| -> Result<Vec<FrameResult>, Box<dyn std::error::Error + Send + Sync>> {
            let started = Instant::now();
            let out = run_batch(model.as_ref(), jobs).map_err(|e| e.to_string().into());
            metrics::histogram!(names::KEYPOINT_BATCH_SECONDS).record(started.elapsed().as_secs_f64());
            metrics::histogram!(names::KEYPOINT_BATCH_SIZE).record(jobs.len() as f64);
            metrics::counter!(names::KEYPOINT_FRAMES).increment(jobs.len() as u64);
            out
        })?;
        let server = Self { submitter: batcher.submitter(), info, default_timeout: Duration::from_millis(config.default_timeout_ms.into()), stopping };
        Ok((server, ServerBatcher(batcher)))
    }

    pub fn info(&self) -> ModelInfo {
        self.info
    }

    /// Checks `request`, queues its frames and answers on `answers` once they are back (or at
    /// once with an error).
    fn take(&self, request: v1::InferRequest, answers: &mpsc::UnboundedSender<Result<v1::InferResponse, Status>>) {
        let id = request.request_id;
        let received = Instant::now();
        let fail = |code: ErrorCode, message: String| {
            count_error(code);
            let _ = answers.send(Ok(error_response(id, code, message)));
        };
        if let Err(error) = validate_infer_request(&request) {
            let item = ItemError::from(error);
            count_error(item.code());
            let _ = answers.send(Ok(v1::InferResponse { request_id: id, error: Some(item), ..Default::default() }));
            return;
        }
        let frames = request.frames.map(|f| f.frames).unwrap_or_default();
        let s = self.info.image_size as u32;
        let first = &frames[0];
        if (first.height, first.width, first.channels) != (s, s, 3) {
            return fail(
                ErrorCode::InvalidArgument,
                format!("frames are {}x{}x{} but the keypoint model takes {s}x{s}x3 (height x width x channels)", first.height, first.width, first.channels),
            );
        }
        let timeout = if request.timeout_ms == 0 { self.default_timeout } else { Duration::from_millis(request.timeout_ms.into()) };
        let deadline = Instant::now() + timeout;
        let pending = Arc::new(Mutex::new(Pending {
            slots: vec![None; frames.len()],
            remaining: frames.len(),
            answered: false,
            answers: answers.clone(),
            id,
            info: self.info,
            received,
        }));
        for (index, frame) in frames.into_iter().enumerate() {
            let job = FrameJob { pixels: frame.pixels, features: request.include_features, heatmaps: request.include_heatmaps };
            let slot = pending.clone();
            let submitted = self.submitter.submit_with_callback(job, deadline, move |result| lock(&slot).fill(index, result));
            if let Err(error) = submitted {
                lock(&pending).fill(index, Err(error));
                break;
            }
        }
        metrics::gauge!(names::KEYPOINT_QUEUE_DEPTH).set(self.submitter.stats().queue_len as f64);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn error_response(request_id: u64, code: ErrorCode, message: String) -> v1::InferResponse {
    v1::InferResponse { request_id, error: Some(ItemError { code: code as i32, message }), ..Default::default() }
}

/// The wire code of a batcher failure.
pub fn error_code(error: &BatcherError) -> ErrorCode {
    match error {
        BatcherError::Overloaded { .. } => ErrorCode::ResourceExhausted,
        BatcherError::ShuttingDown | BatcherError::WorkerStopped => ErrorCode::Unavailable,
        BatcherError::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        _ => ErrorCode::Internal,
    }
}

/// A request whose frames are in the batcher.
struct Pending {
    slots: Vec<Option<FrameResult>>,
    remaining: usize,
    answered: bool,
    answers: mpsc::UnboundedSender<Result<v1::InferResponse, Status>>,
    id: u64,
    info: ModelInfo,
    received: Instant,
}

/// Counts an answered error by its reason.
fn count_error(code: ErrorCode) {
    let reason = match code {
        ErrorCode::InvalidArgument => "invalid",
        ErrorCode::ResourceExhausted => "overloaded",
        ErrorCode::DeadlineExceeded => "deadline",
        ErrorCode::Unavailable => "unavailable",
        _ => "internal",
    };
    metrics::counter!(names::KEYPOINT_REQUEST_ERRORS, "reason" => reason).increment(1);
}

impl Pending {
    fn fill(&mut self, index: usize, result: Result<FrameResult, BatcherError>) {
        if self.answered {
            return;
        }
        match result {
            Err(error) => {
                self.answered = true;
                count_error(error_code(&error));
                let _ = self.answers.send(Ok(error_response(self.id, error_code(&error), error.to_string())));
            }
            Ok(frame) => {
                self.slots[index] = Some(frame);
                self.remaining -= 1;
                if self.remaining == 0 {
                    self.answered = true;
                    let k = self.info.num_keypoints as u32;
                    let keypoints = self
                        .slots
                        .iter_mut()
                        .map(|slot| {
                            let frame = slot.take().expect("every slot is filled when none remain");
                            v1::Keypoints { num_keypoints: k, centers: frame.centres, heatmaps: frame.heatmaps, features: frame.features }
                        })
                        .collect();
                    let response = v1::InferResponse { request_id: self.id, keypoints, model_version: self.info.version, error: None, gauss_std: self.info.gauss_std as f32 };
                    metrics::histogram!(names::KEYPOINT_REQUEST_SECONDS).record(self.received.elapsed().as_secs_f64());
                    let _ = self.answers.send(Ok(response));
                }
            }
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<v1::InferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl KeypointService for KeypointServer {
    type InferStream = ResponseStream;

    async fn infer(&self, request: Request<Streaming<v1::InferRequest>>) -> Result<Response<Self::InferStream>, Status> {
        let mut inbound = request.into_inner();
        let (answers, receiver) = mpsc::unbounded_channel();
        let server = self.clone();
        tokio::spawn(async move {
            let streams = metrics::gauge!(names::KEYPOINT_STREAMS);
            streams.increment(1.0);
            loop {
                let message = tokio::select! {
                    message = inbound.next() => message,
                    () = server.stopping.wait() => break,
                };
                match message {
                    None => break,
                    Some(Ok(request)) => server.take(request, &answers),
                    Some(Err(status)) => {
                        // A stream-wide failure (oversize message, broken connection): end the
                        // stream with it once the requests taken so far are answered.
                        tracing::debug!(code = ?status.code(), message = status.message(), "keypoint stream failed");
                        let _ = answers.send(Err(pkrl_proto::serving::oversize_as_resource_exhausted(status)));
                        break;
                    }
                }
            }
            // The stream ends when every pending request (each holds a sender) is answered.
            streams.decrement(1.0);
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))))
    }
}
