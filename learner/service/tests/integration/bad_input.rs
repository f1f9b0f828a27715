//! Bad input on the learner service's one mutating RPC, `ReportProgress` (issue 10, item 2):
//! non-finite or out-of-range fields get `INVALID_ARGUMENT`, too many games `RESOURCE_EXHAUSTED`,
//! a message over the 64 MiB limit `RESOURCE_EXHAUSTED` before it is decoded (tonic's
//! `OUT_OF_RANGE` rewritten by `pkrl_proto::serving::oversize_layer`), each with a one-line message;
//! the server goes on answering good reports, and a refused report changes nothing.

use std::sync::Arc;

use learner_service::{ParameterBoard, ProgressBoard, ProgressState};
use pkrl_proto::v1::{self, learner_service_client::LearnerServiceClient};
use tonic::Code;

fn report(finished: Vec<v1::FinishedGame>) -> v1::ReportProgressRequest {
    v1::ReportProgressRequest { actor_id: 0, run_id: 1, agent_steps: 10, finished, parameter_version: 0 }
}

#[test]
fn bad_progress_reports_are_refused_with_one_line_and_change_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let progress = Arc::new(ProgressBoard::new(1000, Arc::new(|steps| steps / 4), ProgressState::default(), 0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(learner_service::serve(Arc::new(ParameterBoard::default()), Some(progress.clone()), Default::default(), listener, async {
            let _ = stopped.await;
        }));
        let endpoint = format!("http://{address}");
        let mut client = loop {
            if let Ok(client) = LearnerServiceClient::connect(endpoint.clone()).await {
                break client.max_encoding_message_size(usize::MAX);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let game = |game_return: f32| v1::FinishedGame { env_id: 0, game_return, game_length: 5 };
        for (request, code, needle) in [
            (report(vec![game(f32::NAN)]), Code::InvalidArgument, "finished[0].game_return"),
            (report(vec![game(f32::INFINITY)]), Code::InvalidArgument, "not finite"),
            (report(vec![game(1.0); 5000]), Code::ResourceExhausted, "finished"),
        ] {
            let status = client.report_progress(request).await.unwrap_err();
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(needle) && !status.message().contains('\n'), "{needle}: {}", status.message());
        }
        // over the message limit: 65 MiB in an unknown field, refused before decoding
        let mut big = report(vec![]);
        let padding = vec![7u8; 65 << 20];
        let status = raw_report(&endpoint, &big, &padding).await.unwrap_err();
        eprintln!("65 MiB report: {:?}: {}", status.code(), status.message());
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("too large") && !status.message().contains('\n'), "{}", status.message());
        // nothing was recorded, and a good report still works
        big.finished = vec![game(3.0)];
        let answer = client.report_progress(big).await.unwrap().into_inner();
        assert_eq!(answer.total_agent_steps, 10, "{answer:?}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    });
}

/// `ReportProgress` with `request` followed by an unknown length-delimited field holding
/// `padding` (field number 1000, which the server ignores once decoded).
async fn raw_report(endpoint: &str, request: &v1::ReportProgressRequest, padding: &[u8]) -> Result<v1::ReportProgressResponse, tonic::Status> {
    use prost::Message;
    #[derive(Clone, PartialEq, prost::Message)]
    struct Padded {
        #[prost(bytes = "vec", tag = "1000")]
        padding: Vec<u8>,
    }
    let mut bytes = request.encode_to_vec();
    bytes.extend(Padded { padding: padding.to_vec() }.encode_to_vec());
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<RawBytes, v1::ReportProgressResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/permakey.v1.LearnerService/ReportProgress");
    grpc.unary(tonic::Request::new(RawBytes(bytes)), path, codec).await.map(tonic::Response::into_inner)
}

/// A message whose encoding is the given bytes.
#[derive(Debug, Clone, Default, PartialEq)]
struct RawBytes(Vec<u8>);

impl prost::Message for RawBytes {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(&mut self, _: u32, _: prost::encoding::WireType, _: &mut impl bytes::Buf, _: prost::encoding::DecodeContext) -> Result<(), prost::DecodeError> {
        Ok(())
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}
