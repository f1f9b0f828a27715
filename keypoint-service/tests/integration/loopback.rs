//! The keypoint service over gRPC on loopback, with a small deterministic stand-in model:
//! answers equal a direct forward, frames of concurrent actors share batches, bad requests get a
//! one-line per-request error while the stream stays usable, a full queue pushes back, queued
//! frames past their deadline are not run, clients wait for a server that is not up yet and
//! reconnect to a restarted one, and shutdown answers what it has taken.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use keypoint_service::{DynamicBatcherConfig, KeypointServerConfig, RemoteKeypoints, ServeReport};
use permakey::model::{KeypointModel, KeypointOutput, frames_to_tensor};
use pkrl_proto::v1::{self, ErrorCode, keypoint_service_client::KeypointServiceClient};
use pkrl_test_support::ServerThread;
use tch::{Device, Kind, Tensor};

const SIZE: i64 = 16;
const K: i64 = 2;

/// Keypoint k = (mean of channel k, mean of channel k+1) mapped to [-1, 1]; features = 4x4
/// average pool (3 channels); every forward sleeps `delay_ms` and counts its frames.
#[derive(Clone, Default)]
struct StandIn {
    delay_ms: Arc<AtomicU64>,
    frames_seen: Arc<AtomicU64>,
    forwards: Arc<AtomicU64>,
}

impl KeypointModel for StandIn {
    fn num_keypoints(&self) -> i64 {
        K
    }
    fn image_size(&self) -> i64 {
        SIZE
    }
    fn keypoints(&self, frames: &Tensor) -> KeypointOutput {
        std::thread::sleep(Duration::from_millis(self.delay_ms.load(Ordering::Relaxed)));
        let b = frames.size()[0];
        self.frames_seen.fetch_add(b as u64, Ordering::Relaxed);
        self.forwards.fetch_add(1, Ordering::Relaxed);
        let means = frames.mean_dim(&[2i64, 3][..], false, Kind::Float) * 2.0 - 1.0; // B x 3
        let centres = Tensor::stack(&[means.narrow(1, 0, 2), means.narrow(1, 1, 2)], 1); // B x 2 x 2
        let features = frames.avg_pool2d([4, 4], [4, 4], [0, 0], false, true, None::<i64>); // B x 3 x 4 x 4
        KeypointOutput { centres, heatmaps: Tensor::zeros([b, K, 4, 4], (Kind::Float, Device::Cpu)), features }
    }
    fn gauss_std(&self) -> f64 {
        0.15
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
}

/// The keypoint server (model version 7) on its own runtime thread; `stop` returns its report.
type Running = ServerThread<ServeReport>;

fn start(model: StandIn, config: KeypointServerConfig) -> Running {
    start_on(model, config, std::net::TcpListener::bind("127.0.0.1:0").unwrap())
}

fn start_on(model: StandIn, config: KeypointServerConfig, listener: std::net::TcpListener) -> Running {
    ServerThread::on(listener, move |listener, shutdown| keypoint_service::serve(Box::new(model), 7, config, Default::default(), listener, shutdown))
}

fn config(max_batch_size: usize, wait_us: u64, queue: usize) -> KeypointServerConfig {
    KeypointServerConfig {
        batching: DynamicBatcherConfig { max_batch_size, max_batch_wait_micros: wait_us, queue_capacity: queue },
        ..KeypointServerConfig::default()
    }
}

/// `n` frames whose bytes depend on `seed`.
fn frames(n: usize, seed: u64) -> Vec<u8> {
    (0..n * (SIZE * SIZE * 3) as usize).map(|i| ((i as u64 * 31 + seed * 17) % 251) as u8).collect()
}

#[test]
fn answers_equal_a_direct_forward_and_actors_share_batches() {
    let model = StandIn::default();
    model.delay_ms.store(5, Ordering::Relaxed);
    let server = start(model.clone(), config(64, 20_000, 1024));
    let endpoint = server.endpoint();
    let actors: Vec<_> = (0..6u64)
        .map(|actor| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                let mut client = RemoteKeypoints::connect(&endpoint, Duration::from_secs(10)).unwrap();
                let direct = StandIn::default();
                for step in 0..10 {
                    let n = 1 + (actor as usize + step) % 4;
                    let bytes = frames(n, actor * 100 + step as u64);
                    let out = client.infer(&bytes, n, [SIZE as usize, SIZE as usize, 3], true).unwrap();
                    let expected = direct.keypoints(&frames_to_tensor(&bytes, n as i64, SIZE, SIZE, 3, Device::Cpu));
                    let centres = Vec::<f32>::try_from(expected.centres.flatten(0, -1)).unwrap();
                    let features = Vec::<f32>::try_from(expected.features.permute([0, 2, 3, 1]).contiguous().flatten(0, -1)).unwrap();
                    assert_eq!(out.centres, centres, "centres of actor {actor} step {step}");
                    assert_eq!(out.features_hwc, features, "features of actor {actor} step {step}");
                    assert_eq!((out.num_keypoints, out.feature_shape, out.model_version), (2, [3, 4, 4], 7));
                    assert!((out.gauss_std - 0.15).abs() < 1e-6);
                }
            })
        })
        .collect();
    for actor in actors {
        actor.join().unwrap();
    }
    let report = server.stop();
    let frames_total: u64 = (0..6u64).flat_map(|a| (0..10).map(move |s| 1 + (a + s) % 4)).sum();
    assert_eq!(report.stats.completed_requests, frames_total, "every frame ran once");
    assert_eq!(model.frames_seen.load(Ordering::Relaxed), frames_total);
    let forwards = model.forwards.load(Ordering::Relaxed);
    assert!(forwards < 60, "6 concurrent actors x 10 requests should share forwards, got {forwards} forwards");
    assert!(report.stats.mean_batch_size() > 1.5, "mean batch {}", report.stats.mean_batch_size());
}

/// A raw stream, to see per-request errors exactly as the server sends them.
fn raw_stream(endpoint: &str, requests: Vec<v1::InferRequest>) -> Vec<v1::InferResponse> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = KeypointServiceClient::connect(endpoint.to_owned()).await.unwrap();
        let mut stream = client.infer(tokio_stream::iter(requests)).await.unwrap().into_inner();
        let mut out = Vec::new();
        while let Some(response) = stream.message().await.unwrap() {
            out.push(response);
        }
        out.sort_by_key(|r| r.request_id);
        out
    })
}

fn request(id: u64, n: usize, side: u32, channels: u32) -> v1::InferRequest {
    let frame = |i: usize| v1::Frame {
        env_id: i as u32,
        run_id: 1,
        step: id,
        height: side,
        width: side,
        channels,
        pixels: Bytes::from(vec![9u8; (side * side * channels) as usize]),
    };
    v1::InferRequest { request_id: id, frames: Some(v1::FrameBatch { frames: (0..n).map(frame).collect() }), include_heatmaps: false, include_features: false, timeout_ms: 0 }
}

#[test]
fn bad_requests_get_one_line_errors_and_the_stream_goes_on() {
    let server = start(StandIn::default(), config(8, 1000, 64));
    let mut no_frames = request(2, 1, 16, 3);
    no_frames.frames = None;
    let mut short_pixels = request(4, 2, 16, 3);
    short_pixels.frames.as_mut().unwrap().frames[1].pixels = Bytes::from(vec![0u8; 10]);
    let mut long_timeout = request(6, 1, 16, 3);
    long_timeout.timeout_ms = 10_000_000;
    let mut with_heatmaps = request(7, 2, 16, 3);
    with_heatmaps.include_heatmaps = true;
    let responses = raw_stream(
        &server.endpoint(),
        vec![request(1, 2, 16, 3), no_frames, request(3, 1, 84, 3), short_pixels, request(5, 1, 16, 1), long_timeout, with_heatmaps, request(8, 300, 16, 3)],
    );
    assert_eq!(responses.len(), 8, "one answer per request");
    let error = |i: usize| responses[i].error.clone().map(|e| (e.code(), e.message));
    assert_eq!(error(0), None);
    assert_eq!(responses[0].keypoints.len(), 2);
    assert_eq!(error(1), Some((ErrorCode::InvalidArgument, "frames is missing".into())));
    assert_eq!(error(2), Some((ErrorCode::InvalidArgument, "frames are 84x84x3 but the keypoint model takes 16x16x3 (height x width x channels)".into())));
    let (code, message) = error(3).unwrap();
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("frames[1].pixels") && message.contains("768"), "{message}");
    assert!(error(4).unwrap().1.contains("16x16x1"));
    assert!(error(5).unwrap().1.contains("timeout_ms"), "{:?}", error(5));
    assert_eq!(error(6), None);
    let heatmaps = responses[6].keypoints[0].heatmaps.as_ref().unwrap();
    assert_eq!((heatmaps.shape.clone(), heatmaps.data.len()), (vec![4, 4, 2], 4 * 4 * 2 * 4));
    assert!(responses[6].keypoints[0].features.is_none(), "features only when asked for");
    assert_eq!(error(7).unwrap().0, ErrorCode::ResourceExhausted, "300 frames > the per-request limit");
    for (_, message) in (0..8).filter_map(error) {
        assert!(!message.contains('\n'), "one line: {message}");
    }
    // The server is fine afterwards.
    let mut client = RemoteKeypoints::connect(&server.endpoint(), Duration::from_secs(5)).unwrap();
    client.infer(&frames(1, 0), 1, [16, 16, 3], false).unwrap();
    // A client-side bad call is refused before it is sent.
    let error = client.infer(&frames(1, 0)[..100], 1, [16, 16, 3], false).unwrap_err().to_string();
    assert!(error.contains("100 frame bytes"), "{error}");
    server.stop();
}

#[test]
fn a_full_queue_pushes_back_and_late_frames_are_not_run() {
    let model = StandIn::default();
    model.delay_ms.store(200, Ordering::Relaxed);
    let server = start(model.clone(), config(2, 0, 4));
    // 1 running + 4 queued frames fit; the rest are refused at once.
    let responses = raw_stream(&server.endpoint(), (1..=5).map(|id| request(id, 2, 16, 3)).collect());
    let codes: Vec<Option<ErrorCode>> = responses.iter().map(|r| r.error.as_ref().map(|e| e.code())).collect();
    assert!(codes.iter().any(|c| *c == Some(ErrorCode::ResourceExhausted)), "{codes:?}");
    assert!(codes.iter().any(Option::is_none), "{codes:?}");
    // Deadlines: 100 ms budgets behind 200 ms forwards expire in the queue.
    model.delay_ms.store(300, Ordering::Relaxed);
    let mut requests: Vec<_> = (10..13).map(|id| request(id, 2, 16, 3)).collect();
    for r in &mut requests {
        r.timeout_ms = 100;
    }
    let before = model.frames_seen.load(Ordering::Relaxed);
    let responses = raw_stream(&server.endpoint(), requests);
    let expired = responses.iter().filter(|r| r.error.as_ref().is_some_and(|e| e.code() == ErrorCode::DeadlineExceeded)).count();
    assert!(expired >= 1, "{responses:?}");
    let ran = model.frames_seen.load(Ordering::Relaxed) - before;
    assert!(ran < 6, "expired frames were not run ({ran} of 6 ran)");
    // The blocking client rides out the backpressure with retries.
    model.delay_ms.store(20, Ordering::Relaxed);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let endpoint = server.endpoint();
            std::thread::spawn(move || {
                let mut client = RemoteKeypoints::connect(&endpoint, Duration::from_secs(30)).unwrap();
                for step in 0..5 {
                    client.infer(&frames(3, i * 10 + step), 3, [16, 16, 3], false).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = server.stop();
    assert!(report.stats.rejected_overloaded > 0 && report.stats.expired_requests > 0, "{:?}", report.stats);
}

#[test]
fn clients_wait_for_the_server_and_follow_a_restart() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let endpoint = format!("http://{address}");
    let client_thread = {
        let endpoint = endpoint.clone();
        std::thread::spawn(move || {
            let mut client = RemoteKeypoints::connect(&endpoint, Duration::from_secs(30)).unwrap();
            let started = Instant::now();
            client.infer(&frames(2, 1), 2, [16, 16, 3], false).unwrap();
            let waited = started.elapsed();
            (client, waited)
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let server = start_on(StandIn::default(), config(8, 1000, 64), std::net::TcpListener::bind(address).unwrap());
    let (mut client, waited) = client_thread.join().unwrap();
    assert!(waited >= Duration::from_millis(500), "the first call waited for the server ({waited:?})");
    // Restart on the same port: the client's next call reconnects.
    server.stop();
    let server = start_on(StandIn::default(), config(8, 1000, 64), std::net::TcpListener::bind(address).unwrap());
    let out = client.infer(&frames(2, 2), 2, [16, 16, 3], false).unwrap();
    assert_eq!(out.centres.len(), 2 * 2 * 2);
    server.stop();
    // With the server gone for good the client gives up after its retry budget, with one line.
    let mut impatient = RemoteKeypoints::connect(&endpoint, Duration::from_millis(300)).unwrap();
    let error = impatient.infer(&frames(1, 3), 1, [16, 16, 3], false).unwrap_err().to_string();
    assert!(error.contains(&endpoint) && error.contains("gave up"), "{error}");
    assert!(!error.contains('\n'));
}

#[test]
fn shutdown_answers_what_it_took_and_health_is_served() {
    let model = StandIn::default();
    model.delay_ms.store(150, Ordering::Relaxed);
    let server = start(model, config(2, 0, 64));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let endpoint = server.endpoint();
    let status = runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(endpoint.clone()).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = tonic_health::pb::HealthCheckRequest { service: "permakey.v1.KeypointService".into() };
        health.check(request).await.unwrap().into_inner().status
    });
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    // Six frames queued behind 150 ms forwards of 2, then the server is told to stop.
    let pending = std::thread::spawn(move || raw_stream(&endpoint, (1..=3).map(|id| request(id, 2, 16, 3)).collect()));
    std::thread::sleep(Duration::from_millis(100));
    let report = server.stop();
    let responses = pending.join().unwrap();
    assert_eq!(responses.len(), 3, "every request taken was answered");
    assert!(responses.iter().all(|r| r.error.is_none()), "{responses:?}");
    assert_eq!(report.stats.completed_requests, 6);
}
