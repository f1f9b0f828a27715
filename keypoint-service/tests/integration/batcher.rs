//! Behaviour of `DynamicBatcher` through its public API.
//!
//! Tests that need the worker to be busy use a gate: the batch function blocks on request
//! [`GATE`] until the test releases it, which makes queue states deterministic without
//! relying on sleeps for ordering.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use keypoint_service::{
    BatchSubmitter, BatcherError, DynamicBatcher, DynamicBatcherConfig, ShutdownMode,
};

/// Request value on which the batch function blocks until the gate is released.
const GATE: u64 = 0;
const LONG: Duration = Duration::from_secs(60);

fn config(
    max_batch_size: usize,
    max_batch_wait: Duration,
    queue_capacity: usize,
) -> DynamicBatcherConfig {
    DynamicBatcherConfig {
        max_batch_size,
        max_batch_wait_micros: max_batch_wait.as_micros() as u64,
        queue_capacity,
    }
}

/// A batcher whose batch function records every batch, answers `request * 10`, and blocks on
/// [`GATE`] until [`GatedBatcher::release`].
struct GatedBatcher {
    batcher: DynamicBatcher<u64, u64>,
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
    gate_started: Receiver<()>,
    gate_release: Sender<()>,
}

impl GatedBatcher {
    fn start(config: DynamicBatcherConfig) -> Self {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (started_sender, gate_started) = crossbeam_channel::unbounded();
        let (gate_release, release_receiver) = crossbeam_channel::unbounded::<()>();
        let recorded = Arc::clone(&batches);
        let batcher = DynamicBatcher::start(config, move |requests: &[u64]| {
            recorded.lock().unwrap().push(requests.to_vec());
            if requests.contains(&GATE) {
                started_sender.send(()).unwrap();
                release_receiver
                    .recv_timeout(LONG)
                    .expect("test never released the gate");
            }
            Ok::<_, String>(requests.iter().map(|request| request * 10).collect())
        })
        .unwrap();
        GatedBatcher {
            batcher,
            batches,
            gate_started,
            gate_release,
        }
    }

    /// Submits [`GATE`] and returns once the worker is blocked inside the batch function.
    fn block_worker(&self) -> keypoint_service::ResponseHandle<u64> {
        let handle = self.batcher.submit_with_timeout(GATE, LONG).unwrap();
        self.gate_started
            .recv_timeout(LONG)
            .expect("worker never started the gate batch");
        handle
    }

    fn release(&self) {
        self.gate_release.send(()).unwrap();
    }

    fn batches(&self) -> Vec<Vec<u64>> {
        self.batches.lock().unwrap().clone()
    }
}

#[test]
fn full_batches_form_and_run_without_waiting() {
    let gated = GatedBatcher::start(config(4, LONG, 64));
    let started = Instant::now();
    let handles: Vec<_> = (1..=8)
        .map(|request| gated.batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    let responses: Vec<u64> = handles
        .into_iter()
        .map(|handle| handle.wait().unwrap())
        .collect();
    assert!(
        started.elapsed() < LONG / 4,
        "full batches waited for the batch timeout"
    );
    assert_eq!(responses, [10, 20, 30, 40, 50, 60, 70, 80]);
    assert_eq!(gated.batches(), [vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
    let stats = gated.batcher.stats();
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.batch_size_counts, [0, 0, 0, 0, 2]);
    assert_eq!(stats.completed_requests, 8);
    assert_eq!(stats.mean_batch_size(), 4.0);
}

#[test]
fn partial_batch_flushes_after_max_batch_wait() {
    let max_batch_wait = Duration::from_millis(100);
    let gated = GatedBatcher::start(config(8, max_batch_wait, 64));
    let started = Instant::now();
    let handles: Vec<_> = (1..=3)
        .map(|request| gated.batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    let responses: Vec<u64> = handles
        .into_iter()
        .map(|handle| handle.wait().unwrap())
        .collect();
    let elapsed = started.elapsed();
    assert_eq!(responses, [10, 20, 30]);
    assert!(
        elapsed >= max_batch_wait,
        "partial batch ran after {elapsed:?}, before the wait"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "partial batch waited {elapsed:?}"
    );
    assert_eq!(gated.batches(), [vec![1, 2, 3]]);
    let stats = gated.batcher.stats();
    assert_eq!(stats.batch_size_counts[3], 1);
    assert!(stats.batch_fill_wait_total >= max_batch_wait, "{stats:?}");
    assert!(stats.queue_wait_total >= max_batch_wait, "{stats:?}");
}

#[test]
fn zero_wait_runs_whatever_is_queued() {
    let gated = GatedBatcher::start(config(8, Duration::ZERO, 64));
    let gate = gated.block_worker();
    let handles: Vec<_> = (1..=3)
        .map(|request| gated.batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    gated.release();
    gate.wait().unwrap();
    for handle in handles {
        handle.wait().unwrap();
    }
    // The three requests queued behind the gate form one batch, even with no waiting.
    assert_eq!(gated.batches(), [vec![GATE], vec![1, 2, 3]]);
}

#[test]
fn requests_whose_deadline_passes_in_the_queue_are_dropped() {
    let gated = GatedBatcher::start(config(1, Duration::ZERO, 8));
    let gate = gated.block_worker();
    let short = gated
        .batcher
        .submit_with_timeout(7, Duration::from_millis(30))
        .unwrap();
    let long = gated.batcher.submit_with_timeout(8, LONG).unwrap();
    thread::sleep(Duration::from_millis(120));
    gated.release();
    assert_eq!(gate.wait().unwrap(), 0);
    assert!(matches!(short.wait(), Err(BatcherError::DeadlineExceeded)));
    assert_eq!(long.wait().unwrap(), 80);
    assert_eq!(
        gated.batches(),
        [vec![GATE], vec![8]],
        "the expired request must not run"
    );
    let stats = gated.batcher.stats();
    assert_eq!(stats.expired_requests, 1);
    assert_eq!(stats.completed_requests, 2);
}

#[test]
fn deadline_that_passes_while_a_batch_fills_is_checked_before_running() {
    // The batch waits 200 ms for more requests; the request's 50 ms deadline passes meanwhile.
    let gated = GatedBatcher::start(config(4, Duration::from_millis(200), 8));
    let short = gated
        .batcher
        .submit_with_timeout(5, Duration::from_millis(50))
        .unwrap();
    assert!(matches!(short.wait(), Err(BatcherError::DeadlineExceeded)));
    assert!(
        gated.batches().is_empty(),
        "no batch may run for expired requests only"
    );
    assert_eq!(gated.batcher.stats().batches, 0);
}

#[test]
fn past_deadline_fails_at_submission() {
    let gated = GatedBatcher::start(config(1, Duration::ZERO, 8));
    let result = gated.batcher.submit(3, Instant::now());
    assert!(matches!(result, Err(BatcherError::DeadlineExceeded)));
    let stats = gated.batcher.stats();
    assert_eq!((stats.expired_requests, stats.submitted_requests), (1, 0));
}

#[test]
fn full_queue_fails_submission_at_once() {
    let gated = GatedBatcher::start(config(1, Duration::ZERO, 2));
    let gate = gated.block_worker();
    let queued: Vec<_> = (1..=2)
        .map(|request| gated.batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    let started = Instant::now();
    let overloaded = gated.batcher.submit_with_timeout(3, LONG);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "submit blocked on a full queue"
    );
    match overloaded {
        Err(error @ BatcherError::Overloaded { queue_capacity: 2 }) => {
            assert!(error.is_retryable())
        }
        Err(other) => panic!("expected Overloaded, got {other:?}"),
        Ok(_) => panic!("expected Overloaded, got a handle"),
    }
    assert_eq!(gated.batcher.stats().queue_len, 2);
    gated.release();
    gate.wait().unwrap();
    let responses: Vec<u64> = queued
        .into_iter()
        .map(|handle| handle.wait().unwrap())
        .collect();
    assert_eq!(responses, [10, 20]);
    let stats = gated.batcher.stats();
    assert_eq!(
        (stats.rejected_overloaded, stats.submitted_requests),
        (1, 3)
    );
    // Once the queue drained, submissions are accepted again.
    assert_eq!(
        gated
            .batcher
            .submit_with_timeout(4, LONG)
            .unwrap()
            .wait()
            .unwrap(),
        40
    );
}

#[test]
fn dropped_submitter_is_skipped() {
    let gated = GatedBatcher::start(config(4, Duration::ZERO, 8));
    let gate = gated.block_worker();
    let kept = gated.batcher.submit_with_timeout(1, LONG).unwrap();
    drop(gated.batcher.submit_with_timeout(2, LONG).unwrap());
    let kept_too = gated.batcher.submit_with_timeout(3, LONG).unwrap();
    gated.release();
    gate.wait().unwrap();
    assert_eq!(kept.wait().unwrap(), 10);
    assert_eq!(kept_too.wait().unwrap(), 30);
    assert_eq!(gated.batches(), [vec![GATE], vec![1, 3]]);
    assert_eq!(gated.batcher.stats().abandoned_requests, 1);
}

#[test]
fn submitter_thread_that_exits_before_its_answer_is_skipped() {
    let gated = GatedBatcher::start(config(4, Duration::ZERO, 8));
    let gate = gated.block_worker();
    let submitter = gated.batcher.submitter();
    thread::spawn(move || {
        let _handle = submitter.submit_with_timeout(9, LONG).unwrap();
        // The thread (and its handle) goes away without waiting.
    })
    .join()
    .unwrap();
    gated.release();
    gate.wait().unwrap();
    assert_eq!(
        gated
            .batcher
            .submit_with_timeout(1, LONG)
            .unwrap()
            .wait()
            .unwrap(),
        10
    );
    assert_eq!(gated.batches(), [vec![GATE], vec![1]]);
}

#[test]
fn wrong_response_count_fails_every_request_of_the_batch() {
    let batcher = DynamicBatcher::start(config(3, LONG, 8), |requests: &[u64]| {
        Ok::<_, String>(requests.iter().skip(1).copied().collect())
    })
    .unwrap();
    let handles: Vec<_> = (1..=3)
        .map(|request| batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    for handle in handles {
        match handle.wait() {
            Err(BatcherError::OutputLengthMismatch {
                expected: 3,
                actual: 2,
            }) => {}
            other => panic!("expected OutputLengthMismatch, got {other:?}"),
        }
    }
    let stats = batcher.shutdown(ShutdownMode::Drain);
    assert_eq!(
        (
            stats.failed_batches,
            stats.failed_requests,
            stats.completed_requests
        ),
        (1, 3, 0)
    );
}

#[test]
fn batch_function_error_reaches_every_request_of_the_batch() {
    let batcher = DynamicBatcher::start(config(2, LONG, 8), |requests: &[u64]| {
        if requests.contains(&13) {
            return Err(format!("model failed on a batch of {}", requests.len()));
        }
        Ok(requests.to_vec())
    })
    .unwrap();
    let failing: Vec<_> = [12, 13]
        .into_iter()
        .map(|request| batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    for handle in failing {
        let error = handle.wait().unwrap_err();
        assert_eq!(
            error.to_string(),
            "batch function failed: model failed on a batch of 2"
        );
        assert!(!error.is_retryable());
    }
    let succeeding: Vec<_> = [14, 15]
        .into_iter()
        .map(|request| batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    let responses: Vec<u64> = succeeding
        .into_iter()
        .map(|handle| handle.wait().unwrap())
        .collect();
    assert_eq!(responses, [14, 15]);
}

#[test]
fn panicking_batch_function_fails_its_batch_and_the_worker_goes_on() {
    let batcher = DynamicBatcher::start(config(1, Duration::ZERO, 8), |requests: &[u64]| {
        assert!(requests[0] != 666, "boom on request {}", requests[0]);
        Ok::<_, String>(requests.to_vec())
    })
    .unwrap();
    match batcher.submit_with_timeout(666, LONG).unwrap().wait() {
        Err(BatcherError::BatchPanicked { message }) => {
            assert_eq!(&*message, "boom on request 666");
        }
        other => panic!("expected BatchPanicked, got {other:?}"),
    }
    assert_eq!(
        batcher
            .submit_with_timeout(5, LONG)
            .unwrap()
            .wait()
            .unwrap(),
        5
    );
    let stats = batcher.shutdown(ShutdownMode::Drain);
    assert_eq!((stats.failed_batches, stats.completed_requests), (1, 1));
}

#[test]
fn concurrent_submitters_get_exactly_their_own_responses() {
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 20;
    const IN_FLIGHT: u64 = 16;
    let max_batch_size = 16;
    let batcher = DynamicBatcher::start(
        config(max_batch_size, Duration::from_micros(500), 256),
        |requests: &[(u64, u64)]| {
            Ok::<_, String>(
                requests
                    .iter()
                    .map(|&(thread_id, index)| (thread_id, index, thread_id * 1_000_003 + index))
                    .collect(),
            )
        },
    )
    .unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|thread_id| {
            let submitter: BatchSubmitter<(u64, u64), (u64, u64, u64)> = batcher.submitter();
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    // Several requests in flight per thread, answered out of submission order
                    // across threads.
                    let handles: Vec<_> = (0..IN_FLIGHT)
                        .map(|offset| {
                            let index = round * IN_FLIGHT + offset;
                            (
                                index,
                                submitter
                                    .submit_with_timeout((thread_id, index), LONG)
                                    .unwrap(),
                            )
                        })
                        .collect();
                    for (index, handle) in handles.into_iter().rev() {
                        let response = handle.wait().unwrap();
                        assert_eq!(response, (thread_id, index, thread_id * 1_000_003 + index));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a submitter got a wrong response");
    }
    let total = THREADS * ROUNDS * IN_FLIGHT;
    let stats = batcher.shutdown(ShutdownMode::Drain);
    assert_eq!(stats.completed_requests, total);
    assert_eq!(stats.batched_requests(), total);
    assert_eq!(stats.batch_size_counts.len(), max_batch_size + 1);
    assert_eq!(stats.batch_size_counts.iter().sum::<u64>(), stats.batches);
    assert_eq!(
        stats.failed_requests + stats.expired_requests + stats.rejected_overloaded,
        0
    );
}

#[test]
fn drain_shutdown_runs_queued_requests_then_refuses_new_ones() {
    let gated = GatedBatcher::start(config(1, Duration::ZERO, 8));
    let gate = gated.block_worker();
    let queued: Vec<_> = (1..=3)
        .map(|request| gated.batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    let submitter = gated.batcher.submitter();
    let GatedBatcher {
        batcher,
        batches,
        gate_release,
        ..
    } = gated;
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        gate_release.send(()).unwrap();
    });
    let stats = batcher.shutdown(ShutdownMode::Drain);
    releaser.join().unwrap();
    assert_eq!(gate.wait().unwrap(), 0);
    let responses: Vec<u64> = queued
        .into_iter()
        .map(|handle| handle.wait().unwrap())
        .collect();
    assert_eq!(responses, [10, 20, 30]);
    assert_eq!(stats.completed_requests, 4);
    assert_eq!(batches.lock().unwrap().len(), 4);
    assert!(matches!(
        submitter.submit_with_timeout(4, LONG),
        Err(BatcherError::ShuttingDown)
    ));
    assert_eq!(submitter.stats().rejected_shutting_down, 1);
}

#[test]
fn fail_pending_shutdown_answers_queued_requests_without_running_them() {
    let gated = GatedBatcher::start(config(1, Duration::ZERO, 8));
    let gate = gated.block_worker();
    let queued: Vec<_> = (1..=3)
        .map(|request| gated.batcher.submit_with_timeout(request, LONG).unwrap())
        .collect();
    let GatedBatcher {
        batcher,
        batches,
        gate_release,
        ..
    } = gated;
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        gate_release.send(()).unwrap();
    });
    let stats = batcher.shutdown(ShutdownMode::FailPending);
    releaser.join().unwrap();
    assert_eq!(gate.wait().unwrap(), 0, "the running batch completes");
    for handle in queued {
        assert!(matches!(handle.wait(), Err(BatcherError::ShuttingDown)));
    }
    assert_eq!(*batches.lock().unwrap(), [vec![GATE]]);
    assert_eq!(
        (stats.cancelled_on_shutdown, stats.completed_requests),
        (3, 1)
    );
}

#[test]
fn dropping_the_batcher_drains_it() {
    let batcher = DynamicBatcher::start(config(4, LONG, 8), |requests: &[u64]| {
        Ok::<_, String>(requests.iter().map(|request| request + 1).collect())
    })
    .unwrap();
    // With a 60 s batch wait, only the shutdown's disconnect lets this partial batch run soon.
    let handle = batcher.submit_with_timeout(1, LONG).unwrap();
    let started = Instant::now();
    drop(batcher);
    assert_eq!(handle.wait().unwrap(), 2);
    assert!(
        started.elapsed() < LONG / 4,
        "drop waited for the batch timeout"
    );
}

#[test]
fn callback_submissions_are_answered_on_the_worker() {
    let batcher = DynamicBatcher::start(
        config(4, Duration::from_millis(1), 8),
        |requests: &[u64]| Ok::<_, String>(requests.iter().map(|request| request * 3).collect()),
    )
    .unwrap();
    let (result_sender, result_receiver) = crossbeam_channel::unbounded();
    for request in [1, 2] {
        let result_sender = result_sender.clone();
        batcher
            .submitter()
            .submit_with_callback(request, Instant::now() + LONG, move |result| {
                result_sender.send((request, result.unwrap())).unwrap();
            })
            .unwrap();
    }
    let mut results: Vec<(u64, u64)> = (0..2)
        .map(|_| result_receiver.recv_timeout(LONG).unwrap())
        .collect();
    results.sort_unstable();
    assert_eq!(results, [(1, 3), (2, 6)]);
    // A callback with a past deadline is refused at once and never called.
    let refused = batcher
        .submitter()
        .submit_with_callback(9, Instant::now(), move |_| {
            panic!("must not be called");
        });
    assert!(matches!(refused, Err(BatcherError::DeadlineExceeded)));
}

#[test]
fn panicking_callback_does_not_stop_the_worker() {
    let batcher = DynamicBatcher::start(config(1, Duration::ZERO, 8), |requests: &[u64]| {
        Ok::<_, String>(requests.to_vec())
    })
    .unwrap();
    batcher
        .submitter()
        .submit_with_callback(1, Instant::now() + LONG, |_| panic!("callback bug"))
        .unwrap();
    assert_eq!(
        batcher
            .submit_with_timeout(2, LONG)
            .unwrap()
            .wait()
            .unwrap(),
        2
    );
}

#[test]
fn wait_timeout_and_try_wait_do_not_block_past_their_limit() {
    let gated = GatedBatcher::start(config(1, Duration::ZERO, 8));
    let gate = gated.block_worker();
    let handle = gated.batcher.submit_with_timeout(4, LONG).unwrap();
    assert!(handle.try_wait().is_none());
    let started = Instant::now();
    assert!(handle.wait_timeout(Duration::from_millis(30)).is_none());
    assert!(started.elapsed() >= Duration::from_millis(30));
    gated.release();
    gate.wait().unwrap();
    assert_eq!(handle.wait_timeout(LONG).unwrap().unwrap(), 40);
}

#[test]
fn invalid_config_is_rejected_at_start() {
    let result = DynamicBatcher::start(config(8, Duration::ZERO, 4), |requests: &[u64]| {
        Ok::<_, String>(requests.to_vec())
    });
    match result {
        Err(BatcherError::InvalidConfig { reason }) => {
            assert!(reason.contains("queue_capacity (4)"), "{reason}");
        }
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("expected InvalidConfig, got a batcher"),
    }
}
