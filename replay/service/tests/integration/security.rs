//! The replay service with `[security]` on, over 127.0.0.1: with a token, every
//! `ReplayService` RPC without it or with a wrong one is refused with `UNAUTHENTICATED` and
//! changes nothing, the right token works, and health needs none; with TLS (a self-signed
//! certificate made here), a client trusting the certificate works and a plaintext client or
//! one trusting another certificate does not.

use crate::support;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use pkrl_proto::{
    security::{ClientSecurity, ServerSecurity, Token},
    v1::{self, replay_service_client::ReplayServiceClient},
};
use replay::{RateLimiterConfig, ReplayServerConfig, testing::SequenceBuilder};
use replay_service::RemoteReplay;
use support::Running;
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const TOKEN: &str = "correct-horse-battery-staple-0123456789";

fn running(security: ServerSecurity) -> Running {
    let config = ReplayServerConfig {
        snapshot_every_s: 0,
        rate_limiter: RateLimiterConfig { min_size_to_sample: 1, samples_per_insert: 2.0, error_buffer: 100.0 },
        sample_timeout_ms: 200,
        insert_timeout_ms: 200,
        ..ReplayServerConfig::default()
    };
    support::start(16, config, security)
}

fn token(text: &str) -> Option<Token> {
    Some(Token::new(text, "test").unwrap())
}

fn sequence(tag: u8) -> replay::Sequence {
    SequenceBuilder::new(12).obs_shape([6, 6, 3]).env_id(u32::from(tag)).keypoints(4).recurrent_state(vec![0.5; 8]).tag(tag).build()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Every `ReplayService` RPC once, through a raw client that sends `security`'s token (if any);
/// the statuses in the order InsertSequences, Sample, UpdatePriorities, Stats.
async fn every_rpc(channel: Channel, security: &ClientSecurity) -> Vec<(&'static str, Result<(), Status>)> {
    let mut client = ReplayServiceClient::new(security.wrap(channel));
    let insert = v1::InsertRequest { sequences: vec![replay_service::wire::sequence_to_wire(&sequence(9), 0.0).unwrap()] };
    let update = v1::UpdatePrioritiesRequest { keys: vec![0], priorities: vec![7.0] };
    vec![
        ("InsertSequences", client.insert_sequences(tokio_stream::iter([insert])).await.map(drop)),
        ("Sample", client.sample(v1::SampleRequest { batch_size: 1 }).await.map(drop)),
        ("UpdatePriorities", client.update_priorities(update).await.map(drop)),
        ("Stats", client.stats(v1::StatsRequest {}).await.map(drop)),
    ]
}

async fn health(channel: Channel) -> ServingStatus {
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.expect("health needs no token");
    response.into_inner().status()
}

#[test]
fn every_replay_rpc_needs_the_token_and_health_does_not() {
    let server = running(ServerSecurity::default().with_token(token(TOKEN)));
    let endpoint = format!("http://{}", server.address);
    let authorised = ClientSecurity::default().with_token(token(TOKEN));
    let replay = RemoteReplay::connect_secured(&endpoint, Duration::from_secs(5), &authorised).unwrap();
    assert_eq!(replay.insert(&[sequence(0), sequence(1)]).unwrap(), 0);

    let runtime = runtime();
    let channel = runtime.block_on(Channel::from_shared(endpoint.clone()).unwrap().connect()).unwrap();
    for (what, client) in [
        ("no token", ClientSecurity::default()),
        ("a wrong token", ClientSecurity::default().with_token(token("correct-horse-battery-staple-0123456788"))),
        ("a prefix of the token", ClientSecurity::default().with_token(token(&TOKEN[..TOKEN.len() - 1]))),
    ] {
        let results = runtime.block_on(every_rpc(channel.clone(), &client));
        assert_eq!(results.len(), 4, "the four RPCs of ReplayService");
        for (rpc, result) in results {
            let status = result.expect_err(&format!("{rpc} with {what} must be refused"));
            assert_eq!(status.code(), Code::Unauthenticated, "{rpc} with {what}: {status:?}");
            let expected = if what == "no token" { "this server requires a token" } else { "invalid token" };
            assert!(status.message().starts_with(expected), "{rpc} with {what}: {}", status.message());
        }
    }
    assert_eq!(runtime.block_on(health(channel.clone())), ServingStatus::Serving);

    // The refused calls changed nothing: two inserts, no samples, the default priority.
    let stats = replay.stats().unwrap();
    assert_eq!((stats.size, stats.inserted_total), (2, 2), "refused inserts stored nothing");
    assert_ne!(stats.max_priority, 7.0, "the refused priority update was not applied");

    // The same raw calls with the right token go through.
    for (rpc, result) in runtime.block_on(every_rpc(channel, &authorised)) {
        result.unwrap_or_else(|status| panic!("{rpc} with the right token: {status:?}"));
    }
    let batch = replay.sample(2).unwrap();
    assert_eq!(replay.update_priorities(&batch.keys, &[3.0, 3.0]).unwrap(), 2);

    // The blocking client fails at once on a wrong token, with the server's reason.
    let started = Instant::now();
    let wrong = ClientSecurity::default().with_token(token("not-the-token"));
    let error = RemoteReplay::connect_secured(&endpoint, Duration::from_secs(30), &wrong).err().expect("a wrong token is refused").to_string();
    assert!(error.contains("Unauthenticated") && error.contains("invalid token"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "UNAUTHENTICATED is not retried: {:?}", started.elapsed());
    let error = RemoteReplay::connect(&endpoint, Duration::from_secs(30)).err().expect("no token is refused").to_string();
    assert!(error.contains("requires a token"), "{error}");

    drop((replay, runtime)); // idle connections would hold up the graceful drain
    let report = server.stop();
    assert_eq!(report.stats.inserts_total, 3, "two inserts by the blocking client, one raw with the token");
    assert_eq!(report.stats.samples_total, 3, "one raw sample and a batch of two, none of the refused ones");
}

/// A self-signed certificate for `localhost`, as (cert.pem, key.pem) in `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.crt.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[test]
fn tls_clients_connect_and_plaintext_clients_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "server");
    let (other_ca, _) = self_signed(dir.path(), "other");
    let security = ServerSecurity::default().with_token(token(TOKEN)).with_tls(&cert, &key).unwrap();
    let server = running(security);
    let port = server.address.port();

    let tls = ClientSecurity::default().with_token(token(TOKEN)).with_tls(&cert, None).unwrap();
    let replay = RemoteReplay::connect_secured(&format!("https://localhost:{port}"), Duration::from_secs(5), &tls).unwrap();
    replay.insert(&[sequence(3)]).unwrap();
    assert_eq!(replay.stats().unwrap().inserted_total, 1);
    // An address that is not the certificate's name, with the name given instead.
    let by_address = ClientSecurity::default().with_token(token(TOKEN)).with_tls(&cert, Some("localhost")).unwrap();
    let by_address = RemoteReplay::connect_secured(&format!("https://127.0.0.1:{port}"), Duration::from_secs(5), &by_address).unwrap();
    assert_eq!(by_address.stats().unwrap().inserted_total, 1);

    // Health over TLS, without the token.
    let runtime = runtime();
    let channel = runtime.block_on(async {
        let endpoint = tls.endpoint(Channel::from_shared(format!("https://localhost:{port}")).unwrap()).unwrap();
        endpoint.connect().await.unwrap()
    });
    assert_eq!(runtime.block_on(health(channel)), ServingStatus::Serving);

    // Plaintext with the right token: refused at the transport (retried briefly, then given up).
    let plain = ClientSecurity::default().with_token(token(TOKEN));
    let error = RemoteReplay::connect_secured(&format!("http://127.0.0.1:{port}"), Duration::from_millis(500), &plain).err().expect("plaintext to a TLS server fails").to_string();
    assert!(error.contains("replay stats at http://127.0.0.1"), "{error}");
    // TLS trusting another certificate: the handshake fails, and for good (not retried).
    let stranger = ClientSecurity::default().with_token(token(TOKEN)).with_tls(&other_ca, None).unwrap();
    let started = Instant::now();
    let error = RemoteReplay::connect_secured(&format!("https://localhost:{port}"), Duration::from_secs(30), &stranger).err().expect("an untrusted certificate fails").to_string();
    assert!(error.contains("replay stats at https://localhost") && error.contains("invalid peer certificate"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "a rejected certificate is not retried: {:?}", started.elapsed());
    // TLS without the token: refused by the token check, not the transport.
    let anonymous = ClientSecurity::default().with_tls(&cert, None).unwrap();
    let error = RemoteReplay::connect_secured(&format!("https://localhost:{port}"), Duration::from_secs(5), &anonymous).err().expect("no token is refused").to_string();
    assert!(error.contains("Unauthenticated"), "{error}");

    drop((replay, by_address, runtime)); // idle connections would hold up the graceful drain
    assert_eq!(server.stop().stats.inserts_total, 1, "only the TLS client with the token inserted");
}
