//! The `replay-server` binary as its own process on 127.0.0.1: health check, SIGTERM writes the
//! final snapshot, a restart restores it, a bad config is one line and exit code 1, and with
//! `security.token_file` it refuses clients without the token.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use replay::testing::SequenceBuilder;
use replay_service::RemoteReplay;

fn sequence(tag: u8) -> replay::Sequence {
    SequenceBuilder::new(12).obs_shape([6, 6, 3]).env_id(u32::from(tag)).keypoints(4).recurrent_state(vec![0.5; 8]).tag(tag).build()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_binary(port: u16, snapshot: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_replay-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--set", &format!("replay_server.snapshot_path=\"{}\"", snapshot.display())])
        .args(["--set", "replay.capacity_sequences=10", "--set", "replay_server.rate_limiter.min_size_to_sample=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < limit, "replay-server did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_binary_serves_health_snapshots_on_sigterm_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("replay.snapshot");
    let port = free_port();
    let mut child = spawn_binary(port, &snapshot);
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = RemoteReplay::connect(&endpoint, Duration::from_secs(20)).unwrap();
    client.insert(&(0..4).map(sequence).collect::<Vec<_>>()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let health = runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(endpoint.clone()).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = tonic_health::pb::HealthCheckRequest { service: "permakey.v1.ReplayService".into() };
        health.check(request).await.unwrap().into_inner().status
    });
    assert_eq!(health, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    drop(runtime);
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = wait_for_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(snapshot.exists(), "SIGTERM writes the final snapshot");

    let mut child = spawn_binary(port, &snapshot);
    let client = RemoteReplay::connect(&endpoint, Duration::from_secs(20)).unwrap();
    assert_eq!(client.stats().unwrap().size, 4, "restored from the snapshot");
    child.kill().unwrap();
    let _ = child.wait();

    // A user error is one line on stderr and exit code 1, not a panic.
    let output = Command::new(env!("CARGO_BIN_EXE_replay-server")).args(["--set", "replay_server.sample_timeout_ms=0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("sample_timeout_ms"), "{stderr}");
}

#[test]
fn the_binary_requires_its_token_and_bad_security_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "binary-token-42\n").unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_replay-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--set", &format!("security.token_file={}", token_file.display())])
        .env_remove("PERMAKEY_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    // Waits for the server, then is refused for good.
    let error = RemoteReplay::connect(&endpoint, Duration::from_secs(20)).err().expect("no token is refused").to_string();
    assert!(error.contains("Unauthenticated"), "{error}");
    let security = pkrl_proto::security::ClientSecurity::default().with_token(Some(pkrl_proto::security::Token::new("binary-token-42", "test").unwrap()));
    let client = RemoteReplay::connect_secured(&endpoint, Duration::from_secs(5), &security).unwrap();
    client.insert(&[sequence(1)]).unwrap();
    assert_eq!(client.stats().unwrap().size, 1);
    child.kill().unwrap();
    let _ = child.wait();

    // Bad security settings: one line on stderr, exit code 1, before anything listens.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let cases: [(Vec<String>, Option<&str>, &str); 4] = [
        (vec!["security.token_file=/no/such/token".into()], None, "cannot read the token file /no/such/token"),
        (vec![format!("security.token_file={}", empty.display())], None, "is empty"),
        (Vec::new(), Some(" "), "the token from PERMAKEY_TOKEN is empty"),
        (vec!["security.tls_cert=/no/cert.pem".into(), "security.tls_key=/no/key.pem".into()], None, "cannot read the TLS certificate /no/cert.pem"),
    ];
    for (sets, env_token, needle) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_replay-server"));
        command.args(["--listen", "127.0.0.1:0"]).env_remove("PERMAKEY_TOKEN");
        for set in &sets {
            command.args(["--set", set]);
        }
        if let Some(token) = env_token {
            command.env("PERMAKEY_TOKEN", token);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{sets:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{sets:?}: {stderr}");
    }
}
