//! The Docker side of the distributed mode, for real (issue 9, item 5): `deploy/docker/test-compose.sh`
//! builds the images (the base image offline with debootstrap when it is missing, then
//! `permakey-rl:latest` from this build's binaries and `prometheus:latest` from Debian's package),
//! runs `docker compose up` on the sprite corridor with 2 actors, waits until Prometheus shows the
//! learner's update counter rising, `docker kill`s one actor and the keypoint service, starts them
//! again, checks that the updates rise again while the other actor and the learner kept running,
//! and removes everything with `docker compose down -v`.
//!
//! Needs Docker Engine with Compose (`docker compose` or `docker-compose`) and root for
//! debootstrap; `PERMAKEY_SKIP_DOCKER_TESTS=1` skips it on machines without them (CI has them).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

#[test]
fn compose_stack_trains_survives_killed_containers_and_cleans_up() {
    if std::env::var("PERMAKEY_SKIP_DOCKER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: PERMAKEY_SKIP_DOCKER_TESTS=1");
        return;
    }
    let docker = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    assert!(
        docker.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs a running Docker Engine (or set PERMAKEY_SKIP_DOCKER_TESTS=1): {:?}",
        docker.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // The binaries this test run was built with (the script must not call cargo from inside cargo).
    let bin = Path::new(env!("CARGO_BIN_EXE_learner")).parent().unwrap();
    assert_eq!(bin, root.join("target/release"), "the compose test packs target/release: run it with --release");
    let started = Instant::now();
    let output = Command::new(root.join("deploy/docker/test-compose.sh")).arg("--no-cargo").current_dir(root).env("COMPOSE_TEST_LIMIT_S", "1200").output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{}", log.lines().filter(|l| l.starts_with("[compose-test") || l.starts_with("[docker-build]")).collect::<Vec<_>>().join("\n"));
    assert!(output.status.success(), "compose test failed after {:.0} s:\n{log}", started.elapsed().as_secs_f64());
    assert!(log.contains("passed"));
    assert!(started.elapsed() < Duration::from_secs(1500));
}
