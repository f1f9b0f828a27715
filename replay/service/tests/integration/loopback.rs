//! The replay service on 127.0.0.1, in process: the calls, bad input, the rate limiter and
//! snapshots. The `replay-server` binary's own test is `cli/tests/replay_server.rs`.

use crate::support;

use std::{path::Path, time::Duration};

use pkrl_proto::v1::{self, replay_service_client::ReplayServiceClient};
use replay::{RateLimiterConfig, ReplayConfig, ReplayServerConfig, testing::SequenceBuilder};
use replay_service::{RemoteReplay, StartedFrom};
use tonic::Code;

fn config(snapshot: Option<&Path>, min_size_to_sample: u64) -> ReplayServerConfig {
    ReplayServerConfig {
        snapshot_path: snapshot.map(Path::to_path_buf),
        snapshot_every_s: 0,
        rate_limiter: RateLimiterConfig { min_size_to_sample, samples_per_insert: 2.0, error_buffer: 100.0 },
        sample_timeout_ms: 200,
        insert_timeout_ms: 200,
        ..ReplayServerConfig::default()
    }
}

fn sequence(tag: u8) -> replay::Sequence {
    SequenceBuilder::new(12).obs_shape([6, 6, 3]).env_id(u32::from(tag)).keypoints(4).recurrent_state(vec![0.5; 8]).tag(tag).build()
}

#[test]
fn insert_sample_update_and_stats_over_grpc() {
    let server = support::start(6, config(None, 3), Default::default());
    let client = RemoteReplay::connect(&server.endpoint(), Duration::from_secs(5)).unwrap();
    // Before 3 inserts the limiter refuses to sample: the learner's call gives up after its
    // retry budget with the limiter's reason.
    let early = RemoteReplay::connect(&server.endpoint(), Duration::from_secs(5)).unwrap().with_retry_for(Duration::from_millis(300));
    let error = early.sample(2).unwrap_err().to_string();
    assert!(error.contains("DeadlineExceeded") && error.contains("rate limiter"), "{error}");

    let inserted: Vec<_> = (0..8).map(sequence).collect();
    let evicted = client.insert(&inserted).unwrap();
    assert_eq!(evicted, 2, "capacity 6: the two oldest go");
    let stats = client.stats().unwrap();
    assert_eq!((stats.size, stats.capacity, stats.inserted_total, stats.evicted_total), (6, 6, 8, 2));

    let batch = client.sample(4).unwrap();
    assert_eq!(batch.len(), 4);
    for (key, item) in batch.keys.iter().zip(&batch.items) {
        let original = &inserted[key.generation as usize];
        assert_eq!(**item, *original, "a sampled sequence is the inserted one, bit for bit");
        assert!(key.generation >= 2, "evicted sequences are never drawn");
    }
    assert!(batch.probabilities.iter().all(|&p| (p - 1.0 / 6.0).abs() < 1e-12));
    assert_eq!(batch.weights, vec![1.0; 4]);
    let updated = client.update_priorities(&batch.keys, &vec![2.0; 4]).unwrap();
    assert_eq!(updated, 4);
    let stale = replay::SampleKey { slot: 0, generation: 0 };
    assert_eq!(client.update_priorities(&[stale], &[1.0]).unwrap(), 0, "evicted keys are skipped");
    assert_eq!(client.stats().unwrap().max_priority, 2.0);
    let report = server.stop();
    assert_eq!(report.stats.samples_total, 4);
    assert_eq!(report.final_snapshot, None, "no snapshot path, no snapshot");
}

#[test]
fn bad_messages_get_one_line_invalid_argument_and_the_server_goes_on() {
    let server = support::start(6, config(None, 1), Default::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let endpoint = server.endpoint();
    runtime.block_on(async {
        let mut raw = ReplayServiceClient::connect(endpoint.clone()).await.unwrap();
        let good = replay_service::wire::sequence_to_wire(&sequence(1), 0.0).unwrap();
        let cases = [
            (v1::Sequence { rewards: vec![0.0; 3], ..good.clone() }, "rewards"),
            (v1::Sequence { discounts: vec![0.5; 12], ..good.clone() }, "discounts"),
            (v1::Sequence { actions: vec![-4; 12], ..good.clone() }, "actions[0]"),
            (v1::Sequence { priority: f32::INFINITY, ..good.clone() }, "priority"),
            (v1::Sequence { keypoints: vec![f32::NAN; 48], ..good.clone() }, "keypoints"),
            (v1::Sequence { length: 0, ..good.clone() }, "length"),
        ];
        for (sequence, field) in cases {
            let request = v1::InsertRequest { sequences: vec![sequence] };
            let status = raw.insert_sequences(tokio_stream::iter([request])).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert!(status.message().contains(field) && !status.message().contains('\n'), "{field}: {}", status.message());
        }
        let status = raw.sample(v1::SampleRequest { batch_size: 0 }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let nan = v1::UpdatePrioritiesRequest { keys: vec![0], priorities: vec![f32::NAN] };
        assert_eq!(raw.update_priorities(nan).await.unwrap_err().code(), Code::InvalidArgument);
        let mismatch = v1::UpdatePrioritiesRequest { keys: vec![0, 1], priorities: vec![1.0] };
        assert_eq!(raw.update_priorities(mismatch).await.unwrap_err().code(), Code::InvalidArgument);
        let too_many = v1::InsertRequest { sequences: vec![good.clone(); 300] };
        let status = raw.insert_sequences(tokio_stream::iter([too_many])).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        // Nothing bad was stored, and good requests still work.
        assert_eq!(raw.stats(v1::StatsRequest {}).await.unwrap().into_inner().size, 0);
        let ok = raw.insert_sequences(tokio_stream::iter([v1::InsertRequest { sequences: vec![good] }])).await.unwrap();
        assert_eq!(ok.into_inner().inserted, 1);
    });
    drop(runtime);
    assert_eq!(server.stop().stats.len, 1);
}

#[test]
fn the_final_snapshot_is_restored_with_the_rate_limiter_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.snapshot");
    let server = support::start(6, config(Some(&path), 2), Default::default());
    let client = RemoteReplay::connect(&server.endpoint(), Duration::from_secs(5)).unwrap();
    client.insert(&(0..5).map(sequence).collect::<Vec<_>>()).unwrap();
    client.sample(3).unwrap();
    let report = server.stop();
    assert_eq!(report.started_from, StartedFrom::Empty);
    assert_eq!(report.final_snapshot, Some(5));

    let again = support::start(6, config(Some(&path), 2), Default::default());
    let client = RemoteReplay::connect(&again.endpoint(), Duration::from_secs(5)).unwrap();
    let stats = client.stats().unwrap();
    assert_eq!((stats.size, stats.inserted_total, stats.sampled_total), (5, 5, 3));
    // The limiter resumed from 5 inserts and 3 samples (ratio 2, buffer 100): sampling goes on at
    // once, without waiting for min_size_to_sample new inserts.
    let batch = client.sample(2).unwrap();
    assert!(batch.keys.iter().all(|k| k.generation < 5));
    assert_eq!(*batch.items[0], sequence(batch.keys[0].generation as u8));
    let report = again.stop();
    assert_eq!(report.started_from, StartedFrom::Snapshot { path: path.clone(), sequences: 5 });

    // A corrupted snapshot is a clear start-up error, and the file is left for inspection.
    std::fs::write(&path, b"not a snapshot").unwrap();
    let error = replay_service::ReplayServer::open(ReplayConfig::default(), config(Some(&path), 2)).err().unwrap().to_string();
    assert!(error.contains("replay.snapshot") && !error.contains('\n'), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a snapshot");
}
