//! The keypoint service with a token, over 127.0.0.1: `Infer` without the token or with a
//! wrong one is refused with `UNAUTHENTICATED` before a frame reaches the model, the right token
//! works, health needs none, and the blocking client gives up at once on a refused token.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use keypoint_service::{KeypointServerConfig, RemoteKeypoints};
use permakey::model::{KeypointModel, KeypointOutput};
use pkrl_proto::{
    security::{ClientSecurity, ServerSecurity, Token},
    v1::{self, keypoint_service_client::KeypointServiceClient},
};
use pkrl_test_support::ServerThread;
use tch::{Device, Kind, Tensor};
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const TOKEN: &str = "keypoint-token-8d2e";
const SIZE: i64 = 8;

/// Two keypoints at the origin; counts the frames it is given.
#[derive(Clone, Default)]
struct Counting {
    frames_seen: Arc<AtomicU64>,
}

impl KeypointModel for Counting {
    fn num_keypoints(&self) -> i64 {
        2
    }
    fn image_size(&self) -> i64 {
        SIZE
    }
    fn keypoints(&self, frames: &Tensor) -> KeypointOutput {
        let b = frames.size()[0];
        self.frames_seen.fetch_add(b as u64, Ordering::Relaxed);
        KeypointOutput {
            centres: Tensor::zeros([b, 2, 2], (Kind::Float, Device::Cpu)),
            heatmaps: Tensor::zeros([b, 2, 2, 2], (Kind::Float, Device::Cpu)),
            features: Tensor::zeros([b, 3, 2, 2], (Kind::Float, Device::Cpu)),
        }
    }
    fn gauss_std(&self) -> f64 {
        0.1
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
}

fn token(text: &str) -> Option<Token> {
    Some(Token::new(text, "test").unwrap())
}

fn request() -> v1::InferRequest {
    let frame = v1::Frame { env_id: 0, run_id: 1, step: 0, height: SIZE as u32, width: SIZE as u32, channels: 3, pixels: Bytes::from(vec![7u8; (SIZE * SIZE * 3) as usize]) };
    v1::InferRequest { request_id: 1, frames: Some(v1::FrameBatch { frames: vec![frame] }), include_heatmaps: false, include_features: false, timeout_ms: 0 }
}

/// `Infer` (the service's one RPC) with `security`'s token: the first answer or the status.
async fn infer(channel: Channel, security: &ClientSecurity) -> Result<v1::InferResponse, Status> {
    let mut client = KeypointServiceClient::new(security.wrap(channel));
    let mut stream = client.infer(tokio_stream::iter([request()])).await?.into_inner();
    stream.message().await?.ok_or_else(|| Status::internal("no answer"))
}

#[test]
fn infer_needs_the_token_and_health_does_not() {
    let model = Counting::default();
    let served = model.clone();
    let server = ServerThread::on_any_port(move |listener, shutdown| {
        let security = ServerSecurity::default().with_token(token(TOKEN));
        keypoint_service::serve(Box::new(served), 1, KeypointServerConfig::default(), security, listener, shutdown)
    });
    let endpoint = server.endpoint();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let channel = runtime.block_on(async {
        let endpoint = Channel::from_shared(endpoint.clone()).unwrap();
        for _ in 0..100 {
            if let Ok(channel) = endpoint.connect().await {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the keypoint service did not start")
    });
    for (what, client) in [("no token", ClientSecurity::default()), ("a wrong token", ClientSecurity::default().with_token(token("keypoint-token-8d2f")))] {
        let status = runtime.block_on(infer(channel.clone(), &client)).expect_err(&format!("Infer with {what} must be refused"));
        assert_eq!(status.code(), Code::Unauthenticated, "Infer with {what}: {status:?}");
    }
    assert_eq!(model.frames_seen.load(Ordering::Relaxed), 0, "refused frames never reach the model");
    let health = runtime.block_on(HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }));
    assert_eq!(health.expect("health needs no token").into_inner().status(), ServingStatus::Serving);

    let authorised = ClientSecurity::default().with_token(token(TOKEN));
    let answer = runtime.block_on(infer(channel, &authorised)).expect("Infer with the right token");
    assert!(answer.error.is_none(), "{:?}", answer.error);
    let mut client = RemoteKeypoints::connect_secured(&endpoint, Duration::from_secs(5), &authorised).unwrap();
    let out = client.infer(&[7u8; (SIZE * SIZE * 3) as usize], 1, [SIZE as usize, SIZE as usize, 3], false).unwrap();
    assert_eq!(out.num_keypoints, 2);
    assert_eq!(model.frames_seen.load(Ordering::Relaxed), 2);

    let started = Instant::now();
    let mut anonymous = RemoteKeypoints::connect(&endpoint, Duration::from_secs(30)).unwrap();
    let error = anonymous.infer(&[7u8; (SIZE * SIZE * 3) as usize], 1, [SIZE as usize, SIZE as usize, 3], false).unwrap_err().to_string();
    assert!(error.contains("Unauthenticated") && error.contains("requires a token"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "UNAUTHENTICATED is not retried: {:?}", started.elapsed());

    drop((client, anonymous, runtime)); // idle connections would hold up the graceful drain
    let report = server.stop();
    assert_eq!(report.stats.completed_requests, 2, "the two authorised frames, nothing else");
}
