//! [`RemoteKeypoints`]: a blocking client of the keypoint service for actor threads.
//!
//! The client keeps one `Infer` stream open and sends one request at a time (an actor needs the
//! keypoints of its vector step before it can act). It owns a small tokio runtime and blocks on
//! it, so it must not be called from inside another runtime.
//!
//! Retries, with exponential [`Backoff`] for up to `retry_for`: a stream that fails or ends
//! without the answer (server down, restarted, shutting down) is reopened and the request sent
//! again; per-request errors `RESOURCE_EXHAUSTED` (queue full), `UNAVAILABLE` and
//! `DEADLINE_EXCEEDED` are retried; `INVALID_ARGUMENT` and `INTERNAL` fail at once with the
//! server's one-line reason, and so does a stream the server refuses for its token
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`). Every answer is validated before use. Keypoint inference has no
//! side effects, so repeating a request is always safe.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pkrl_proto::{
    security::{ClientSecurity, SecuredChannel, refused},
    serving::{Backoff, blocking_channel},
    v1::{self, ErrorCode, keypoint_service_client::KeypointServiceClient},
    validate::{MAX_FRAMES_PER_BATCH, MAX_MESSAGE_BYTES, validate_infer_response},
};
use tokio::sync::mpsc;
use tonic::Streaming;

/// What the service answered for `n` frames.
#[derive(Debug, Clone, PartialEq)]
pub struct InferOutput {
    /// Keypoints K per frame.
    pub num_keypoints: usize,
    /// `n x K x 2` centres, `(y, x)` in `[-1, 1]`.
    pub centres: Vec<f32>,
    /// `n x H x W x C` features (empty unless requested).
    pub features_hwc: Vec<f32>,
    /// `[C, H, W]` of one frame's features (zeros unless requested).
    pub feature_shape: [usize; 3],
    /// The model's heatmap standard deviation (`[-1, 1]` units).
    pub gauss_std: f64,
    pub model_version: u64,
}

struct OpenStream {
    requests: mpsc::Sender<v1::InferRequest>,
    responses: Streaming<v1::InferResponse>,
}

/// A blocking keypoint-service client (see the module docs).
pub struct RemoteKeypoints {
    runtime: tokio::runtime::Runtime,
    client: KeypointServiceClient<SecuredChannel>,
    endpoint: String,
    stream: Option<OpenStream>,
    next_id: u64,
    run_id: u64,
    backoff: Backoff,
    retry_for: Duration,
    /// Sent as each request's `timeout_ms` (0: the server's default).
    pub timeout_ms: u32,
}

impl RemoteKeypoints {
    /// A client of `endpoint` (`http://host:port`) without a token or TLS; connects lazily, on
    /// the first call.
    pub fn connect(endpoint: &str, retry_for: Duration) -> anyhow::Result<Self> {
        Self::connect_secured(endpoint, retry_for, &ClientSecurity::default())
    }

    /// [`RemoteKeypoints::connect`] with `security`'s token on every stream and TLS to an
    /// `https://` endpoint. A refused token fails at once (`UNAUTHENTICATED` is never retried).
    pub fn connect_secured(endpoint: &str, retry_for: Duration, security: &ClientSecurity) -> anyhow::Result<Self> {
        let (runtime, channel) = blocking_channel(endpoint, "keypoint", security).map_err(anyhow::Error::msg)?;
        let client = KeypointServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { runtime, client, endpoint: endpoint.to_owned(), stream: None, next_id: 0, run_id: rand_id(), backoff: Backoff::default(), retry_for, timeout_ms: 0 })
    }

    /// Keypoints of `n` HWC u8 frames of `shape = [H, W, C]` laid back to back in `frames`
    /// (at most [`MAX_FRAMES_PER_BATCH`]); features too when `include_features`.
    pub fn infer(&mut self, frames: &[u8], n: usize, shape: [usize; 3], include_features: bool) -> anyhow::Result<InferOutput> {
        let frame_len: usize = shape.iter().product();
        anyhow::ensure!(n >= 1 && n <= MAX_FRAMES_PER_BATCH, "{n} frames per keypoint request, expected 1..={MAX_FRAMES_PER_BATCH}");
        anyhow::ensure!(frames.len() == n * frame_len, "{} frame bytes do not make {n} frames of {shape:?}", frames.len());
        let [h, w, c] = shape.map(|x| x as u32);
        let batch = v1::FrameBatch {
            frames: frames
                .chunks_exact(frame_len)
                .enumerate()
                .map(|(i, pixels)| v1::Frame { env_id: i as u32, run_id: self.run_id, step: self.next_id, height: h, width: w, channels: c, pixels: Bytes::copy_from_slice(pixels) })
                .collect(),
        };
        let mut request = v1::InferRequest { request_id: 0, frames: Some(batch), include_heatmaps: false, include_features, timeout_ms: self.timeout_ms };
        let started = Instant::now();
        let mut tries = 0;
        loop {
            self.next_id += 1;
            request.request_id = self.next_id;
            let failure = match self.attempt(&request) {
                Ok(response) => match response.error {
                    None => {
                        metrics::histogram!(pkrl_telemetry::names::KEYPOINT_CLIENT_SECONDS).record(started.elapsed().as_secs_f64());
                        return decode(response, n, include_features);
                    }
                    Some(error) => {
                        let code = error.code();
                        let message = format!("keypoint request to {} failed ({code:?}): {}", self.endpoint, error.message);
                        if !matches!(code, ErrorCode::ResourceExhausted | ErrorCode::Unavailable | ErrorCode::DeadlineExceeded) {
                            anyhow::bail!(message);
                        }
                        message
                    }
                },
                Err(StreamFailure { message, fatal: true }) => anyhow::bail!(message),
                Err(StreamFailure { message, fatal: false }) => {
                    self.stream = None;
                    message
                }
            };
            if started.elapsed() >= self.retry_for {
                anyhow::bail!("{failure} (gave up after {:.0} s of retries)", started.elapsed().as_secs_f64());
            }
            tracing::debug!(endpoint = %self.endpoint, failure, "keypoint request failed; retrying");
            std::thread::sleep(self.backoff.delay(tries));
            tries += 1;
        }
    }

    /// Sends `request` on the open stream (opening one first) and waits for its answer. An
    /// `Err` is a stream-level failure: the stream is to be dropped and the request retried,
    /// unless the server refused the client's token ([`StreamFailure::fatal`]).
    fn attempt(&mut self, request: &v1::InferRequest) -> Result<v1::InferResponse, StreamFailure> {
        let patience = Duration::from_millis(u64::from(if request.timeout_ms == 0 { 5_000 } else { request.timeout_ms })) + Duration::from_secs(10);
        let endpoint = self.endpoint.clone();
        if self.stream.is_none() {
            let (requests, receiver) = mpsc::channel(4);
            let mut client = self.client.clone();
            let opened = self.runtime.block_on(async move {
                tokio::time::timeout(patience, client.infer(tokio_stream::wrappers::ReceiverStream::new(receiver))).await
            });
            let responses = match opened {
                Ok(Ok(response)) => response.into_inner(),
                Ok(Err(status)) => return Err(StreamFailure::from_status(&endpoint, &status)),
                Err(_) => return Err(format!("keypoint service at {endpoint} did not open a stream within {patience:?}").into()),
            };
            self.stream = Some(OpenStream { requests, responses });
        }
        let stream = self.stream.as_mut().expect("opened above");
        let id = request.request_id;
        let request = request.clone();
        self.runtime.block_on(async {
            stream.requests.send(request).await.map_err(|_| StreamFailure::from(format!("keypoint stream to {endpoint} closed")))?;
            loop {
                match tokio::time::timeout(patience, stream.responses.message()).await {
                    Err(_) => return Err(format!("no keypoint answer from {endpoint} within {patience:?}").into()),
                    Ok(Err(status)) => return Err(StreamFailure::from_status(&endpoint, &status)),
                    Ok(Ok(None)) => return Err(format!("keypoint stream to {endpoint} ended (server stopping?)").into()),
                    // An answer to an earlier attempt that timed out on this stream: skip it.
                    Ok(Ok(Some(response))) if response.request_id != id => continue,
                    Ok(Ok(Some(response))) => return Ok(response),
                }
            }
        })
    }
}

/// A stream-level failure: retried by reopening the stream unless `fatal` (refused credentials).
struct StreamFailure {
    message: String,
    fatal: bool,
}

impl StreamFailure {
    fn from_status(endpoint: &str, status: &tonic::Status) -> Self {
        Self { message: format!("keypoint stream to {endpoint} failed ({:?}): {}", status.code(), status.message()), fatal: refused(status) }
    }
}

impl From<String> for StreamFailure {
    fn from(message: String) -> Self {
        Self { message, fatal: false }
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

/// Checks a successful answer for `n` frames and unpacks it.
fn decode(response: v1::InferResponse, n: usize, include_features: bool) -> anyhow::Result<InferOutput> {
    validate_infer_response(&response, n).map_err(|e| anyhow::anyhow!("the keypoint service sent a bad answer: {e}"))?;
    anyhow::ensure!(response.gauss_std.is_finite() && response.gauss_std > 0.0, "the keypoint service sent gauss_std {}", response.gauss_std);
    let k = response.keypoints[0].num_keypoints as usize;
    let mut out = InferOutput {
        num_keypoints: k,
        centres: Vec::with_capacity(n * 2 * k),
        features_hwc: Vec::new(),
        feature_shape: [0; 3],
        gauss_std: f64::from(response.gauss_std),
        model_version: response.model_version,
    };
    for (i, keypoints) in response.keypoints.iter().enumerate() {
        anyhow::ensure!(keypoints.num_keypoints as usize == k, "frame {i} came with {} keypoints, frame 0 with {k}", keypoints.num_keypoints);
        out.centres.extend_from_slice(&keypoints.centers);
        if include_features {
            let features = keypoints.features.as_ref().ok_or_else(|| anyhow::anyhow!("frame {i} came without the features asked for"))?;
            anyhow::ensure!(features.dtype() == v1::DType::F32 && features.shape.len() == 3, "frame {i}'s features are not f32 [H, W, C]");
            let shape = [features.shape[2] as usize, features.shape[0] as usize, features.shape[1] as usize];
            anyhow::ensure!(i == 0 || shape == out.feature_shape, "frame {i}'s features are {shape:?}, frame 0's {:?}", out.feature_shape);
            out.feature_shape = shape;
            out.features_hwc.extend(features.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
    }
    Ok(out)
}
