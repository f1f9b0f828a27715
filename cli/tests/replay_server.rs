//! The `replay-server` binary as its own process on 127.0.0.1: health check, SIGTERM writes the
//! final snapshot, a restart restores it, and a bad config is one line and exit code 1.

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
