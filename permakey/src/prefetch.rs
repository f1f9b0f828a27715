//! Pre-training batches made ahead of the training loop, on a thread of their own.
//!
//! The loops used to ask their batch source for batch `k + 1` and copy it to the device after
//! queuing batch `k`'s update. On a CUDA device such a copy (from pageable host memory, as
//! libtorch's `to_device` makes it) waits for all work queued before it, so the training thread
//! sat idle until the GPU had finished batch `k`, and the GPU sat idle while the host then read,
//! converted and uploaded batch `k + 1` and began to queue its update. [`prefetched`] runs the
//! source and the upload on a scoped helper thread, up to `depth` batches ahead, so the training
//! thread only takes batches that are on the device already and goes on queuing work.
//!
//! The batches and their order are the source's, asked for in step order from one thread as
//! before: a run trains on the same data, and a resumed run continues at the same batch. What
//! changes is when the source is asked: up to `depth` batches before they are trained, so a loop
//! that stops early (an error, a non-finite loss) has asked for up to `depth` batches it never
//! trained on. Decision: `depth` 2 on a CUDA device ([`DEPTH`]), one batch being made while one
//! waits; a deeper queue only holds more device memory, since the loop takes one per update.
//!
//! On the CPU the loops make their batches inline (`depth` 0, [`depth_for`]): there is no copy to
//! wait for, and the helper only competes with the training step for the cores. Measured on a
//! 2-core VM (the quick profile's pre-training, 200 batches of 8, binaries alternated, 3 rounds
//! each): with the helper 43.5 / 44.7 / 48.8 s against 42.0 / 42.6 / 43.7 s inline, for 0.29 s of
//! batch making taken off the training thread, no gain within a run-to-run spread of 38.6-49.6 s
//! (inline against inline); the losses and the weights were the same either way.

use std::{ops::Range, sync::mpsc, time::Instant};

/// Batches the pre-training loops make ahead of the one they train on, on a CUDA device.
pub const DEPTH: usize = 2;

/// How many batches the pre-training loops make ahead on `device`: [`DEPTH`] on a CUDA device,
/// none (inline, on the training thread) elsewhere (see the module docs).
pub fn depth_for(device: tch::Device) -> usize {
    if device.is_cuda() {
        DEPTH
    } else {
        0
    }
}

/// Where a prefetched stream's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PrefetchStats {
    /// Batches made (with a helper, up to `depth` more than were handed out).
    pub made: u64,
    /// Seconds spent in the source (making and uploading the batches).
    pub making_s: f64,
    /// Seconds the consumer waited for a batch: what is left of `making_s` on its thread (all of
    /// it when the batches are made inline).
    pub waiting_s: f64,
}

/// Calls `consume` with a getter that hands out `produce(step)` for the steps of `steps`, in order,
/// each made on a helper thread up to `depth` steps before it is asked for, or, with `depth` 0,
/// made inline when it is asked for.
///
/// The getter must be asked for the steps in order; asking for another step, or for a step after
/// `produce` failed, returns an error naming both steps instead of a batch. The helper stops after
/// the first error of `produce` (the getter hands that error out at its step) and, at the latest,
/// when `consume` returns, after the call to `produce` under way; it is joined before this returns.
/// A panic in `produce` reaches the caller after `consume` returns (the getter meanwhile reports
/// that the helper stopped). Returns `consume`'s result and where the time went.
pub fn prefetched<T: Send, R>(
    steps: Range<u64>,
    depth: usize,
    produce: &mut (dyn FnMut(u64) -> Result<T, String> + Send),
    consume: impl FnOnce(&mut dyn FnMut(u64) -> Result<T, String>) -> R,
) -> (R, PrefetchStats) {
    if depth == 0 {
        return inline(steps, produce, consume);
    }
    std::thread::scope(|scope| {
        // One batch waits in the channel per slot, and one more in the helper's `send`.
        let (sender, receiver) = mpsc::sync_channel::<(u64, Result<T, String>)>(depth - 1);
        let helper = std::thread::Builder::new()
            .name("batch-prefetch".into())
            .spawn_scoped(scope, move || {
                let (mut made, mut making_s) = (0, 0.0);
                for step in steps {
                    let started = Instant::now();
                    let batch = produce(step);
                    making_s += started.elapsed().as_secs_f64();
                    made += 1;
                    let failed = batch.is_err();
                    if sender.send((step, batch)).is_err() || failed {
                        break;
                    }
                }
                (made, making_s)
            })
            .expect("cannot start the batch prefetch thread");
        let mut waiting_s = 0.0;
        let mut next = |step: u64| {
            let started = Instant::now();
            let received = receiver.recv();
            waiting_s += started.elapsed().as_secs_f64();
            match received {
                Ok((made, batch)) if made == step => batch,
                Ok((made, _)) => Err(out_of_order(step, made)),
                Err(_) => Err(stopped(step)),
            }
        };
        let result = consume(&mut next);
        // Dropping the receiver ends a helper blocked in `send`; a panic of the helper goes on.
        drop(receiver);
        let (made, making_s) = helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (result, PrefetchStats { made, making_s, waiting_s })
    })
}

/// [`prefetched`] with `depth` 0: each batch made on the consumer's thread when asked for.
fn inline<T, R>(
    steps: Range<u64>,
    produce: &mut (dyn FnMut(u64) -> Result<T, String> + Send),
    consume: impl FnOnce(&mut dyn FnMut(u64) -> Result<T, String>) -> R,
) -> (R, PrefetchStats) {
    let (mut expected, mut failed) = (steps.start, false);
    let mut stats = PrefetchStats::default();
    let mut next = |step: u64| {
        if failed || expected >= steps.end {
            return Err(stopped(step));
        }
        if step != expected {
            return Err(out_of_order(step, expected));
        }
        expected += 1;
        let started = Instant::now();
        let batch = produce(step);
        stats.making_s += started.elapsed().as_secs_f64();
        stats.made += 1;
        failed = batch.is_err();
        batch
    };
    let result = consume(&mut next);
    stats.waiting_s = stats.making_s;
    (result, stats)
}

fn out_of_order(asked: u64, next: u64) -> String {
    format!("batch {asked} was asked for, but batches come in step order and {next} is next")
}

fn stopped(step: u64) -> String {
    format!("the batch source stopped before batch {step}")
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };

    use super::*;

    #[test]
    fn hands_out_the_sources_batches_in_step_order() {
        for depth in [0, 1, 2] {
            let mut produce = |step: u64| Ok(step * 10);
            let (got, stats): (Vec<u64>, _) = prefetched(5..9, depth, &mut produce, |next| (5..9).map(|s| next(s).unwrap()).collect());
            assert_eq!(got, [50, 60, 70, 80], "depth {depth}");
            assert_eq!(stats.made, 4, "depth {depth}");
        }
    }

    #[test]
    fn inline_batches_are_made_when_asked_for() {
        let made = Arc::new(AtomicU64::new(0));
        let counter = made.clone();
        let mut produce = move |step: u64| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(step)
        };
        let (_, stats) = prefetched(0..1000, 0, &mut produce, |next| {
            for s in 0..3 {
                assert_eq!(next(s).unwrap(), s);
                assert_eq!(made.load(Ordering::SeqCst), s + 1);
            }
        });
        assert_eq!(stats.made, 3);
        assert_eq!(stats.waiting_s, stats.making_s);
    }

    #[test]
    fn makes_at_most_depth_batches_ahead_and_stops_when_the_consumer_does() {
        for depth in [1usize, 2, 4] {
            let made = Arc::new(AtomicU64::new(0));
            let counter = made.clone();
            let mut produce = move |step: u64| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(step)
            };
            let (_, stats) = prefetched(0..1000, depth, &mut produce, |next| {
                for s in 0..3 {
                    assert_eq!(next(s).unwrap(), s);
                }
                // Wait until the helper has run ahead as far as the channel lets it, then a little
                // longer, in which it must not make another batch.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while made.load(Ordering::SeqCst) < 3 + depth as u64 && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                assert_eq!(made.load(Ordering::SeqCst), 3 + depth as u64, "depth {depth}");
            });
            // Joined on return: the helper stopped at its blocked send, nothing more was made.
            assert_eq!(made.load(Ordering::SeqCst), 3 + depth as u64, "depth {depth}");
            assert_eq!(stats.made, 3 + depth as u64, "depth {depth}");
        }
    }

    #[test]
    fn the_stats_split_the_sources_time_from_the_consumers_wait() {
        let pause = std::time::Duration::from_millis(20);
        // A slow source: the consumer waits for about all of its time.
        let mut slow = |step: u64| {
            std::thread::sleep(pause);
            Ok(step)
        };
        let (_, stats) = prefetched(0..5, 2, &mut slow, |next| (0..5).for_each(|s| assert_eq!(next(s), Ok(s))));
        assert!(stats.making_s >= 0.1, "{stats:?}");
        assert!(stats.waiting_s >= 0.08 && stats.waiting_s <= stats.making_s + 0.05, "{stats:?}");
        // A slow consumer: the batches are ready when asked for, so it hardly waits.
        let mut fast = |step: u64| Ok(step);
        let (_, stats) = prefetched(0..5, 2, &mut fast, |next| {
            for s in 0..5 {
                std::thread::sleep(pause);
                assert_eq!(next(s), Ok(s));
            }
        });
        assert!(stats.waiting_s < 0.05, "{stats:?}");
    }

    #[test]
    fn an_error_reaches_its_step_and_ends_the_stream() {
        for depth in [0, 2] {
            let mut produce = |step: u64| if step == 2 { Err("shard 7 is corrupt".to_string()) } else { Ok(step) };
            prefetched(0..10, depth, &mut produce, |next| {
                assert_eq!(next(0), Ok(0));
                assert_eq!(next(1), Ok(1));
                assert_eq!(next(2), Err("shard 7 is corrupt".to_string()));
                assert_eq!(next(3), Err("the batch source stopped before batch 3".to_string()));
            });
            // the range's end is the end of the stream too
            let mut produce = |step: u64| Ok(step);
            prefetched(0..1, depth, &mut produce, |next| {
                assert_eq!(next(0), Ok(0));
                assert_eq!(next(1), Err("the batch source stopped before batch 1".to_string()));
            });
        }
    }

    #[test]
    fn a_step_out_of_order_is_an_error_not_another_batch() {
        for depth in [0, 2] {
            let mut produce = |step: u64| Ok(step);
            prefetched(0..10, depth, &mut produce, |next| {
                let error = next(4).unwrap_err();
                assert!(error.contains("batch 4 was asked for") && error.contains("0 is next"), "depth {depth}: {error}");
            });
        }
    }

    #[test]
    fn a_panicking_source_reaches_the_caller() {
        let result = std::panic::catch_unwind(|| {
            let mut produce = |step: u64| -> Result<u64, String> {
                if step == 1 {
                    panic!("reader bug");
                }
                Ok(step)
            };
            prefetched(0..10, 2, &mut produce, |next| {
                assert_eq!(next(0), Ok(0));
                assert!(next(1).is_err());
            })
        });
        assert!(result.is_err());
    }
}
