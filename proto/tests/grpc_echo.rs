//! A trivial in-process `KeypointService` over real HTTP/2 on 127.0.0.1, port 0: checks that the
//! generated client and server interoperate on the bidirectional `Infer` stream, that
//! `request_id` correlates out-of-order responses, and that validation errors travel as
//! per-request `ItemError`s without closing the stream.

use std::pin::Pin;

use bytes::Bytes;
use pkrl_proto::v1::keypoint_service_client::KeypointServiceClient;
use pkrl_proto::v1::keypoint_service_server::{KeypointService, KeypointServiceServer};
use pkrl_proto::v1::{
    ErrorCode, Frame, FrameBatch, InferRequest, InferResponse, ItemError, Keypoints,
};
use pkrl_proto::validate::{MAX_MESSAGE_BYTES, validate_infer_request};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Answers each request with one keypoint per frame at (step / 100, -step / 100), in reverse
/// order of arrival within each pair, to exercise correlation by `request_id`.
struct EchoKeypointService;

#[tonic::async_trait]
impl KeypointService for EchoKeypointService {
    type InferStream = Pin<Box<dyn Stream<Item = Result<InferResponse, Status>> + Send>>;

    async fn infer(
        &self,
        request: Request<Streaming<InferRequest>>,
    ) -> Result<Response<Self::InferStream>, Status> {
        let mut requests = request.into_inner();
        let (response_sender, response_receiver) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut held_back: Option<InferResponse> = None;
            while let Some(message) = requests.next().await {
                let response = match message {
                    Ok(request) => answer(&request),
                    Err(status) => {
                        let _ = response_sender.send(Err(status)).await;
                        return;
                    }
                };
                match held_back.take() {
                    None => held_back = Some(response),
                    Some(earlier) => {
                        let _ = response_sender.send(Ok(response)).await;
                        let _ = response_sender.send(Ok(earlier)).await;
                    }
                }
            }
            if let Some(last) = held_back {
                let _ = response_sender.send(Ok(last)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(response_receiver),
        )))
    }
}

fn answer(request: &InferRequest) -> InferResponse {
    if let Err(error) = validate_infer_request(request) {
        return InferResponse {
            request_id: request.request_id,
            keypoints: vec![],
            model_version: 1,
            error: Some(ItemError::from(error)),
            gauss_std: 0.0,
        };
    }
    let frames = request
        .frames
        .as_ref()
        .map(|batch| batch.frames.as_slice())
        .unwrap_or_default();
    let keypoints = frames
        .iter()
        .map(|frame| {
            let coordinate = frame.step as f32 / 100.0;
            Keypoints {
                num_keypoints: 1,
                centers: vec![coordinate, -coordinate],
                ..Default::default()
            }
        })
        .collect();
    InferResponse {
        request_id: request.request_id,
        keypoints,
        model_version: 1,
        error: None,
        gauss_std: 0.15,
    }
}

fn infer_request(request_id: u64, steps: &[u64]) -> InferRequest {
    let frames = steps
        .iter()
        .map(|&step| Frame {
            env_id: 0,
            run_id: 5,
            step,
            height: 84,
            width: 84,
            channels: 3,
            pixels: Bytes::from(vec![0u8; 84 * 84 * 3]),
        })
        .collect();
    InferRequest {
        request_id,
        frames: Some(FrameBatch { frames }),
        ..Default::default()
    }
}

#[tokio::test]
async fn infer_stream_correlates_responses_by_request_id() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown_sender, shutdown_receiver) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                KeypointServiceServer::new(EchoKeypointService)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = shutdown_receiver.await;
                },
            )
            .await
    });

    let mut client = KeypointServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap()
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut invalid = infer_request(3, &[30]);
    if let Some(batch) = &mut invalid.frames {
        batch.frames[0].pixels = Bytes::from_static(&[1, 2, 3]);
    }
    let requests = vec![
        infer_request(1, &[10, 11]),
        infer_request(2, &[20]),
        invalid,
        infer_request(4, &[40]),
    ];
    let mut responses = client
        .infer(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();

    // The echo server swaps each pair, so arrival order is 2, 1, 4, 3.
    let arrival_order: Vec<u64> = responses
        .iter()
        .map(|response| response.request_id)
        .collect();
    assert_eq!(arrival_order, [2, 1, 4, 3]);
    responses.sort_by_key(|response| response.request_id);
    assert_eq!(responses[0].keypoints.len(), 2);
    assert_eq!(responses[0].keypoints[1].centers, [0.11, -0.11]);
    assert_eq!(responses[1].keypoints[0].centers, [0.2, -0.2]);
    let error = responses[2]
        .error
        .as_ref()
        .expect("request 3 has invalid pixels");
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
    assert_eq!(
        error.message,
        "frames[0].pixels has 3 bytes, expected 21168"
    );
    assert!(responses[2].keypoints.is_empty());
    assert_eq!(responses[3].keypoints[0].centers, [0.4, -0.4]);

    shutdown_sender.send(()).unwrap();
    server.await.unwrap().unwrap();
}
