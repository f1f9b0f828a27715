//! The parameter service with a token, over 127.0.0.1: every `LearnerService` RPC without the
//! token or with a wrong one is refused with `UNAUTHENTICATED` (a refused `ReportProgress`
//! counts no steps), the right token works, and health needs none.

use crate::support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use learner_service::{NamedArray, ParameterBoard, ProgressBoard, ProgressState, RemoteParameters};
use pkrl_proto::{
    security::{ClientSecurity, ServerSecurity, Token},
    v1::{self, learner_service_client::LearnerServiceClient},
};
use tokio_stream::StreamExt;
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const TOKEN: &str = "learner-token-5f1c9a";

fn token(text: &str) -> Option<Token> {
    Some(Token::new(text, "test").unwrap())
}

fn arrays(value: f32) -> Vec<NamedArray> {
    vec![("q.weight".into(), vec![2, 2], vec![value; 4])]
}

/// Every `LearnerService` RPC once through a raw client sending `security`'s token (if any), in
/// the order GetParameters, StreamParameters (its first message), ReportProgress.
async fn every_rpc(channel: Channel, security: &ClientSecurity) -> Vec<(&'static str, Result<(), Status>)> {
    let mut client = LearnerServiceClient::new(security.wrap(channel));
    let get = client.get_parameters(v1::GetParametersRequest { min_version: 0 }).await.map(drop);
    let stream = match client.stream_parameters(v1::StreamParametersRequest { min_version: 0 }).await {
        Ok(response) => match response.into_inner().next().await {
            Some(first) => first.map(drop),
            None => Err(Status::internal("the stream ended without a message")),
        },
        Err(status) => Err(status),
    };
    let report = v1::ReportProgressRequest { actor_id: 3, run_id: 77, agent_steps: 500, finished: Vec::new(), parameter_version: 0 };
    let report = client.report_progress(report).await.map(drop);
    vec![("GetParameters", get), ("StreamParameters", stream), ("ReportProgress", report)]
}

#[test]
fn every_learner_rpc_needs_the_token_and_health_does_not() {
    let board = Arc::new(ParameterBoard::default());
    board.publish_arrays(2, &arrays(2.0)).unwrap();
    let progress = Arc::new(ProgressBoard::new(10_000, Arc::new(|steps: u64| steps / 4), ProgressState::default(), 0));
    let server = support::start(board, Some(progress.clone()), ServerSecurity::default().with_token(token(TOKEN)), "127.0.0.1:0");
    let endpoint = format!("http://{}", server.address);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let channel = runtime.block_on(Channel::from_shared(endpoint.clone()).unwrap().connect()).unwrap();

    for (what, client) in [("no token", ClientSecurity::default()), ("a wrong token", ClientSecurity::default().with_token(token("learner-token-5f1c9b")))] {
        let results = runtime.block_on(every_rpc(channel.clone(), &client));
        assert_eq!(results.len(), 3, "the three RPCs of LearnerService");
        for (rpc, result) in results {
            let status = result.expect_err(&format!("{rpc} with {what} must be refused"));
            assert_eq!(status.code(), Code::Unauthenticated, "{rpc} with {what}: {status:?}");
        }
    }
    assert_eq!(progress.total_agent_steps(), 0, "refused progress reports counted no steps");
    let health = runtime.block_on(HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }));
    assert_eq!(health.expect("health needs no token").into_inner().status(), ServingStatus::Serving);

    let authorised = ClientSecurity::default().with_token(token(TOKEN));
    for (rpc, result) in runtime.block_on(every_rpc(channel, &authorised)) {
        result.unwrap_or_else(|status| panic!("{rpc} with the right token: {status:?}"));
    }
    assert_eq!(progress.total_agent_steps(), 500, "the authorised report counted");

    let client = RemoteParameters::new_secured(&endpoint, Duration::from_secs(5), &authorised).unwrap();
    assert_eq!(client.fetch_newer(None).unwrap(), Some((2, arrays(2.0))));
    let started = Instant::now();
    let error = RemoteParameters::new(&endpoint, Duration::from_secs(30)).unwrap().fetch_newer(None).unwrap_err().to_string();
    assert!(error.contains("Unauthenticated") && error.contains("requires a token"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "UNAUTHENTICATED is not retried: {:?}", started.elapsed());
}
