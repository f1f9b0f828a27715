//! Load (issue 10, item 4), short form: 64 simulated actors against keypoint-server and
//! replay-server processes on loopback for 10 s (`tests/support/load.rs`; the long form with its
//! report is `cargo bench -p permakey-rl --bench load`). No call fails, both servers stay up, and
//! their peak resident memory stays below a stated bound: the replay's full arrays (162 MiB at
//! capacity 400) plus 500 MiB, the keypoint server 600 MiB. Measured on 2 cores: replay-server
//! ~525 MiB, keypoint-server ~190 MiB, the same after 60 s (`RELIABILITY.md`);
//! the replay receives ~1.3 GB of sequences in the 10 s, so a leak of them fails the bound.

#[path = "support/load.rs"]
mod load;

#[test]
fn sixty_four_actors_for_ten_seconds_without_errors_in_bounded_memory() {
    let (workspace, bin_dir) = load::paths(env!("CARGO_MANIFEST_DIR"), env!("CARGO_BIN_EXE_replay-server"));
    let seconds = std::env::var("PERMAKEY_LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let settings = load::LoadSettings { seconds, ..load::LoadSettings::default() };
    let started = std::time::Instant::now();
    let report = load::run(&bin_dir, &workspace, &settings);
    eprintln!("{}", report.table(&settings));
    eprintln!("load test: {:.0} s in all", started.elapsed().as_secs_f64());
    assert_eq!(report.errors, 0, "errors under load: {:?}", report.first_errors);
    assert!(!report.keypoints.0.is_empty() && !report.inserts.0.is_empty() && !report.samples.0.is_empty(), "every kind of call was answered in the window");
    let mib = 1u64 << 20;
    let replay_limit = settings.replay_bytes() as u64 + 500 * mib;
    assert!(report.replay_peak_rss > 0 && report.replay_peak_rss < replay_limit, "replay-server peak RSS {} MiB, limit {} MiB", report.replay_peak_rss / mib, replay_limit / mib);
    assert!(report.keypoint_peak_rss > 0 && report.keypoint_peak_rss < 600 * mib, "keypoint-server peak RSS {} MiB, limit 600 MiB", report.keypoint_peak_rss / mib);
}
