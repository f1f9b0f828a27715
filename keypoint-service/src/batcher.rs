//! [`DynamicBatcher`]: many submitting threads, one worker thread that groups their requests
//! into batches for a user-supplied batch function.
//!
//! Life of a request:
//! 1. `submit` checks that the batcher accepts requests and that the deadline has not passed,
//!    then `try_send`s the request into a bounded queue; a full queue fails at once with
//!    [`BatcherError::Overloaded`].
//! 2. The worker blocks for the first request of a batch, then takes more until the batch
//!    holds `max_batch_size` requests or `max_batch_wait` has passed since the first one.
//! 3. Right before the call, requests whose deadline has passed get
//!    [`BatcherError::DeadlineExceeded`] and requests whose [`ResponseHandle`] was dropped are
//!    skipped; the rest go to the batch function in submission order.
//! 4. Response `i` goes to request `i`. A wrong response count, an error or a panic of the
//!    batch function fails every request of that batch with the same error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tracing::{debug, warn};

use crate::{BatcherError, DynamicBatcherConfig};

/// Result delivered for one request.
pub type BatchResult<Resp> = Result<Resp, BatcherError>;

type Callback<Resp> = Box<dyn FnOnce(BatchResult<Resp>) + Send>;

/// What [`DynamicBatcher::shutdown`] does with requests still queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Runs every queued request (deadlines still apply), then stops.
    Drain,
    /// Answers every queued request with [`BatcherError::ShuttingDown`] without running it;
    /// the batch already running completes normally.
    FailPending,
}

/// Runs a batch function over requests submitted from many threads.
///
/// ```
/// use std::time::Duration;
/// use keypoint_service::{DynamicBatcher, DynamicBatcherConfig};
///
/// // The batch function sees up to `max_batch_size` requests and returns one response each.
/// let batcher = DynamicBatcher::start(DynamicBatcherConfig::default(), |frames: &[u32]| {
///     Ok::<_, String>(frames.iter().map(|frame| frame * 2).collect::<Vec<_>>())
/// })?;
/// let submitter = batcher.submitter(); // Clone one per thread.
/// let handle = submitter.submit_with_timeout(21, Duration::from_secs(1))?;
/// assert_eq!(handle.wait()?, 42);
/// let stats = batcher.shutdown(keypoint_service::ShutdownMode::Drain);
/// assert_eq!(stats.completed_requests, 1);
/// # Ok::<(), keypoint_service::BatcherError>(())
/// ```
///
/// Dropping the batcher without calling [`shutdown`](Self::shutdown) drains it.
pub struct DynamicBatcher<Req, Resp> {
    submitter: BatchSubmitter<Req, Resp>,
    worker: Option<JoinHandle<()>>,
}

/// A cloneable, thread-safe handle that submits requests to a [`DynamicBatcher`].
///
/// It may outlive the batcher: after shutdown every submission fails with
/// [`BatcherError::ShuttingDown`].
pub struct BatchSubmitter<Req, Resp> {
    shared: Arc<Shared<Req, Resp>>,
}

impl<Req, Resp> Clone for BatchSubmitter<Req, Resp> {
    fn clone(&self) -> Self {
        BatchSubmitter {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Receives the response to one submitted request.
///
/// Dropping it before the request runs tells the worker to skip the request.
pub struct ResponseHandle<Resp> {
    receiver: Receiver<BatchResult<Resp>>,
    abandoned: Arc<AtomicBool>,
}

/// A snapshot of the batcher's counters since it started.
///
/// Counters are read one by one, so a snapshot taken while requests flow may be off by the
/// requests in flight between two reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatcherStats {
    /// Requests accepted into the queue.
    pub submitted_requests: u64,
    /// Submissions refused because the queue was full.
    pub rejected_overloaded: u64,
    /// Submissions refused because the batcher was shutting down.
    pub rejected_shutting_down: u64,
    /// Requests whose deadline passed, at submission or in the queue.
    pub expired_requests: u64,
    /// Requests skipped because their [`ResponseHandle`] was dropped before they ran.
    pub abandoned_requests: u64,
    /// Queued requests failed by [`ShutdownMode::FailPending`].
    pub cancelled_on_shutdown: u64,
    /// Requests that received a response.
    pub completed_requests: u64,
    /// Requests failed by a batch function error, panic or wrong response count.
    pub failed_requests: u64,
    /// Calls of the batch function.
    pub batches: u64,
    /// Calls of the batch function that failed (error, panic or wrong response count).
    pub failed_batches: u64,
    /// `batch_size_counts[n]` is the number of batches that ran with `n` requests; it has
    /// `max_batch_size + 1` entries and entry 0 is always 0 (ready for a histogram).
    pub batch_size_counts: Vec<u64>,
    /// Sum over run requests of the time from submission to the start of their batch.
    pub queue_wait_total: Duration,
    /// Sum over batches of the time from taking the first request to starting the batch.
    pub batch_fill_wait_total: Duration,
    /// Sum over batches of the time spent in the batch function.
    pub batch_function_total: Duration,
    /// Requests in the queue when the snapshot was taken.
    pub queue_len: usize,
}

impl BatcherStats {
    /// Returns the number of requests passed to the batch function.
    pub fn batched_requests(&self) -> u64 {
        self.batch_size_counts
            .iter()
            .enumerate()
            .map(|(size, &count)| size as u64 * count)
            .sum()
    }

    /// Returns the mean number of requests per batch, or 0 before the first batch.
    pub fn mean_batch_size(&self) -> f64 {
        if self.batches == 0 {
            return 0.0;
        }
        self.batched_requests() as f64 / self.batches as f64
    }
}

struct Job<Req, Resp> {
    request: Req,
    deadline: Instant,
    submitted_at: Instant,
    responder: Responder<Resp>,
}

enum Responder<Resp> {
    Channel {
        sender: Sender<BatchResult<Resp>>,
        abandoned: Arc<AtomicBool>,
    },
    Callback(Callback<Resp>),
}

impl<Resp> Responder<Resp> {
    fn is_abandoned(&self) -> bool {
        match self {
            Responder::Channel { abandoned, .. } => abandoned.load(Ordering::Acquire),
            Responder::Callback(_) => false,
        }
    }

    fn respond(self, result: BatchResult<Resp>) {
        match self {
            // The receiver may be gone by now; nobody is left to tell.
            Responder::Channel { sender, .. } => drop(sender.try_send(result)),
            Responder::Callback(callback) => {
                if catch_unwind(AssertUnwindSafe(|| callback(result))).is_err() {
                    warn!("batcher response callback panicked");
                }
            }
        }
    }
}

struct Shared<Req, Resp> {
    /// The only sender of the request queue. `None` once shutdown began: taking it under the
    /// write lock guarantees that no submission lands after the worker's final drain, and
    /// dropping it disconnects the queue so the worker stops once the queue is empty.
    sender: RwLock<Option<Sender<Job<Req, Resp>>>>,
    /// Set (before `sender` is taken) by [`ShutdownMode::FailPending`].
    fail_pending: AtomicBool,
    config: DynamicBatcherConfig,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    submitted_requests: AtomicU64,
    rejected_overloaded: AtomicU64,
    rejected_shutting_down: AtomicU64,
    expired_requests: AtomicU64,
    abandoned_requests: AtomicU64,
    cancelled_on_shutdown: AtomicU64,
    completed_requests: AtomicU64,
    failed_requests: AtomicU64,
    batches: AtomicU64,
    failed_batches: AtomicU64,
    batch_size_counts: Box<[AtomicU64]>,
    queue_wait_nanos: AtomicU64,
    batch_fill_wait_nanos: AtomicU64,
    batch_function_nanos: AtomicU64,
}

impl Counters {
    fn new(max_batch_size: usize) -> Self {
        Counters {
            batch_size_counts: (0..=max_batch_size).map(|_| AtomicU64::new(0)).collect(),
            ..Counters::default()
        }
    }

    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    fn add_duration(counter: &AtomicU64, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl<Req, Resp> DynamicBatcher<Req, Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    /// Validates `config` and starts the worker thread that calls `batch_function`.
    ///
    /// `batch_function` receives between 1 and `max_batch_size` requests in submission order
    /// and must return exactly one response per request, in the same order. Its error is
    /// delivered to every request of the batch; so is a panic, after which the worker carries
    /// on with the next batch.
    pub fn start<F, E>(
        config: DynamicBatcherConfig,
        batch_function: F,
    ) -> Result<Self, BatcherError>
    where
        F: FnMut(&[Req]) -> Result<Vec<Resp>, E> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        config.validate()?;
        let (sender, receiver) = crossbeam_channel::bounded(config.queue_capacity);
        let shared = Arc::new(Shared {
            sender: RwLock::new(Some(sender)),
            fail_pending: AtomicBool::new(false),
            counters: Counters::new(config.max_batch_size),
            config,
        });
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("pkrl-batcher".to_string())
            .spawn(move || run_worker(&worker_shared, &receiver, batch_function))
            .map_err(|error| BatcherError::SpawnWorker(Arc::new(error)))?;
        Ok(DynamicBatcher {
            submitter: BatchSubmitter { shared },
            worker: Some(worker),
        })
    }

    /// Returns a cloneable handle for submitting from other threads.
    pub fn submitter(&self) -> BatchSubmitter<Req, Resp> {
        self.submitter.clone()
    }

    /// Submits one request; see [`BatchSubmitter::submit`].
    pub fn submit(
        &self,
        request: Req,
        deadline: Instant,
    ) -> Result<ResponseHandle<Resp>, BatcherError> {
        self.submitter.submit(request, deadline)
    }

    /// Submits one request due within `timeout`; see [`BatchSubmitter::submit_with_timeout`].
    pub fn submit_with_timeout(
        &self,
        request: Req,
        timeout: Duration,
    ) -> Result<ResponseHandle<Resp>, BatcherError> {
        self.submitter.submit_with_timeout(request, timeout)
    }

    /// Returns the configuration the batcher runs with.
    pub fn config(&self) -> &DynamicBatcherConfig {
        &self.submitter.shared.config
    }

    /// Returns a snapshot of the counters.
    pub fn stats(&self) -> BatcherStats {
        self.submitter.stats()
    }

    /// Stops accepting requests, handles the queued ones as `mode` says, waits for the worker
    /// to finish and returns the final counters.
    pub fn shutdown(mut self, mode: ShutdownMode) -> BatcherStats {
        self.stop(mode);
        self.stats()
    }
}

impl<Req, Resp> DynamicBatcher<Req, Resp> {
    fn stop(&mut self, mode: ShutdownMode) {
        let shared = &self.submitter.shared;
        if mode == ShutdownMode::FailPending {
            shared.fail_pending.store(true, Ordering::Release);
        }
        drop(
            shared
                .sender
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            warn!("batcher worker thread panicked");
        }
    }
}

impl<Req, Resp> Drop for DynamicBatcher<Req, Resp> {
    fn drop(&mut self) {
        self.stop(ShutdownMode::Drain);
    }
}

impl<Req, Resp> BatchSubmitter<Req, Resp> {
    /// Queues `request` and returns the handle its response will arrive on.
    ///
    /// `deadline` is the latest time the request may be taken into a batch; a request that is
    /// already running when it passes still gets its response. Never blocks: fails at once
    /// with [`BatcherError::Overloaded`] when the queue is full,
    /// [`BatcherError::ShuttingDown`] after shutdown began, and
    /// [`BatcherError::DeadlineExceeded`] when `deadline` has already passed.
    pub fn submit(
        &self,
        request: Req,
        deadline: Instant,
    ) -> Result<ResponseHandle<Resp>, BatcherError> {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let abandoned = Arc::new(AtomicBool::new(false));
        let responder = Responder::Channel {
            sender,
            abandoned: Arc::clone(&abandoned),
        };
        self.enqueue(request, deadline, responder)?;
        Ok(ResponseHandle {
            receiver,
            abandoned,
        })
    }

    /// Like [`submit`](Self::submit) with a deadline `timeout` from now.
    pub fn submit_with_timeout(
        &self,
        request: Req,
        timeout: Duration,
    ) -> Result<ResponseHandle<Resp>, BatcherError> {
        self.submit(request, deadline_after(timeout))
    }

    /// Queues `request`; the worker thread calls `on_response` with its result exactly once.
    ///
    /// Suits async callers: `on_response` can forward the result into an async channel
    /// instead of a thread blocking on a [`ResponseHandle`]. It runs on the worker thread, so it
    /// must return quickly; a panic in it is caught and logged. When this function returns an
    /// error, `on_response` is dropped without being called. Callback requests are never
    /// considered abandoned.
    pub fn submit_with_callback(
        &self,
        request: Req,
        deadline: Instant,
        on_response: impl FnOnce(BatchResult<Resp>) + Send + 'static,
    ) -> Result<(), BatcherError> {
        self.enqueue(
            request,
            deadline,
            Responder::Callback(Box::new(on_response)),
        )
    }

    /// Returns a snapshot of the batcher's counters.
    pub fn stats(&self) -> BatcherStats {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let queue_len = shared
            .sender
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, Sender::len);
        BatcherStats {
            submitted_requests: load(&counters.submitted_requests),
            rejected_overloaded: load(&counters.rejected_overloaded),
            rejected_shutting_down: load(&counters.rejected_shutting_down),
            expired_requests: load(&counters.expired_requests),
            abandoned_requests: load(&counters.abandoned_requests),
            cancelled_on_shutdown: load(&counters.cancelled_on_shutdown),
            completed_requests: load(&counters.completed_requests),
            failed_requests: load(&counters.failed_requests),
            batches: load(&counters.batches),
            failed_batches: load(&counters.failed_batches),
            batch_size_counts: counters.batch_size_counts.iter().map(load).collect(),
            queue_wait_total: Duration::from_nanos(load(&counters.queue_wait_nanos)),
            batch_fill_wait_total: Duration::from_nanos(load(&counters.batch_fill_wait_nanos)),
            batch_function_total: Duration::from_nanos(load(&counters.batch_function_nanos)),
            queue_len,
        }
    }

    fn enqueue(
        &self,
        request: Req,
        deadline: Instant,
        responder: Responder<Resp>,
    ) -> Result<(), BatcherError> {
        let counters = &self.shared.counters;
        // Held across `try_send` so that shutdown (the write lock) cannot slip in between.
        let sender_guard = self
            .shared
            .sender
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(sender) = sender_guard.as_ref() else {
            Counters::add(&counters.rejected_shutting_down, 1);
            return Err(BatcherError::ShuttingDown);
        };
        let submitted_at = Instant::now();
        if submitted_at >= deadline {
            Counters::add(&counters.expired_requests, 1);
            return Err(BatcherError::DeadlineExceeded);
        }
        match sender.try_send(Job {
            request,
            deadline,
            submitted_at,
            responder,
        }) {
            Ok(()) => {
                Counters::add(&counters.submitted_requests, 1);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                Counters::add(&counters.rejected_overloaded, 1);
                Err(BatcherError::Overloaded {
                    queue_capacity: self.shared.config.queue_capacity,
                })
            }
            Err(TrySendError::Disconnected(_)) => Err(BatcherError::WorkerStopped),
        }
    }
}

impl<Resp> ResponseHandle<Resp> {
    /// Blocks until the response arrives.
    ///
    /// Always returns: the worker answers every request it dequeues, and a request that can no
    /// longer be answered yields [`BatcherError::WorkerStopped`].
    pub fn wait(self) -> BatchResult<Resp> {
        self.receiver
            .recv()
            .unwrap_or(Err(BatcherError::WorkerStopped))
    }

    /// Blocks for at most `timeout`; returns `None` if the response has not arrived by then.
    /// The response is delivered once: after a `Some`, later calls return `WorkerStopped`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<BatchResult<Resp>> {
        match self.receiver.recv_timeout(timeout) {
            Ok(result) => Some(result),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(BatcherError::WorkerStopped)),
        }
    }

    /// Returns the response if it has arrived, without blocking.
    pub fn try_wait(&self) -> Option<BatchResult<Resp>> {
        self.wait_timeout(Duration::ZERO)
    }
}

impl<Resp> Drop for ResponseHandle<Resp> {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Release);
    }
}

/// Returns `now + timeout`, saturating at a far-future instant.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Decides whether a dequeued job may still run; answers it when it may not.
fn admit<Req, Resp>(
    job: Job<Req, Resp>,
    now: Instant,
    counters: &Counters,
) -> Option<Job<Req, Resp>> {
    if job.responder.is_abandoned() {
        Counters::add(&counters.abandoned_requests, 1);
        return None;
    }
    if now >= job.deadline {
        Counters::add(&counters.expired_requests, 1);
        job.responder.respond(Err(BatcherError::DeadlineExceeded));
        return None;
    }
    Some(job)
}

fn cancel<Req, Resp>(job: Job<Req, Resp>, counters: &Counters) {
    Counters::add(&counters.cancelled_on_shutdown, 1);
    job.responder.respond(Err(BatcherError::ShuttingDown));
}

fn run_worker<Req, Resp, F, E>(
    shared: &Shared<Req, Resp>,
    receiver: &Receiver<Job<Req, Resp>>,
    mut batch_function: F,
) where
    F: FnMut(&[Req]) -> Result<Vec<Resp>, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = &shared.config;
    let counters = &shared.counters;
    let max_batch_size = config.max_batch_size;
    let max_batch_wait = config.max_batch_wait();
    debug!(
        max_batch_size,
        max_batch_wait_micros = config.max_batch_wait_micros,
        "batcher worker started"
    );

    let mut jobs: Vec<Job<Req, Resp>> = Vec::with_capacity(max_batch_size);
    let mut requests: Vec<Req> = Vec::with_capacity(max_batch_size);
    let mut responders: Vec<Responder<Resp>> = Vec::with_capacity(max_batch_size);
    let fail_pending = || shared.fail_pending.load(Ordering::Acquire);

    // `recv` fails only once shutdown dropped the sender and the queue is empty.
    while let Ok(first_job) = receiver.recv() {
        if fail_pending() {
            cancel(first_job, counters);
            continue;
        }
        let Some(first_job) = admit(first_job, Instant::now(), counters) else {
            continue;
        };
        // The wait counts from the first request of the batch, so a partial batch never waits
        // longer than `max_batch_wait` for clients that may never come.
        let fill_started = Instant::now();
        let flush_at = fill_started + max_batch_wait;
        jobs.push(first_job);
        while jobs.len() < max_batch_size {
            match receiver.recv_deadline(flush_at) {
                Ok(job) => {
                    if let Some(job) = admit(job, Instant::now(), counters) {
                        jobs.push(job);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }

        if fail_pending() {
            jobs.drain(..).for_each(|job| cancel(job, counters));
            continue;
        }
        // Deadlines may have passed and submitters may have left while the batch filled.
        let batch_started = Instant::now();
        for job in jobs.drain(..) {
            if let Some(job) = admit(job, batch_started, counters) {
                Counters::add_duration(
                    &counters.queue_wait_nanos,
                    batch_started - job.submitted_at,
                );
                requests.push(job.request);
                responders.push(job.responder);
            }
        }
        Counters::add_duration(
            &counters.batch_fill_wait_nanos,
            batch_started - fill_started,
        );
        if requests.is_empty() {
            continue;
        }
        run_batch(
            &mut batch_function,
            &mut requests,
            &mut responders,
            counters,
        );
    }
    debug!("batcher worker stopped");
}

/// Calls the batch function on `requests` and routes its responses; leaves both vectors empty.
fn run_batch<Req, Resp, F, E>(
    batch_function: &mut F,
    requests: &mut Vec<Req>,
    responders: &mut Vec<Responder<Resp>>,
    counters: &Counters,
) where
    F: FnMut(&[Req]) -> Result<Vec<Resp>, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let batch_size = requests.len();
    debug_assert_eq!(batch_size, responders.len());
    Counters::add(&counters.batches, 1);
    Counters::add(&counters.batch_size_counts[batch_size], 1);

    let call_started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| batch_function(requests.as_slice())));
    Counters::add_duration(&counters.batch_function_nanos, call_started.elapsed());
    requests.clear();

    let batch_error = match outcome {
        Ok(Ok(responses)) if responses.len() == batch_size => {
            Counters::add(&counters.completed_requests, batch_size as u64);
            for (responder, response) in responders.drain(..).zip(responses) {
                responder.respond(Ok(response));
            }
            return;
        }
        Ok(Ok(responses)) => BatcherError::OutputLengthMismatch {
            expected: batch_size,
            actual: responses.len(),
        },
        Ok(Err(error)) => BatcherError::BatchFailed(Arc::from(error.into())),
        Err(panic_payload) => {
            let message: Arc<str> = if let Some(message) = panic_payload.downcast_ref::<&str>() {
                Arc::from(*message)
            } else if let Some(message) = panic_payload.downcast_ref::<String>() {
                Arc::from(message.as_str())
            } else {
                Arc::from("non-string panic payload")
            };
            BatcherError::BatchPanicked { message }
        }
    };
    warn!(batch_size, error = %batch_error, "batch failed");
    Counters::add(&counters.failed_batches, 1);
    Counters::add(&counters.failed_requests, batch_size as u64);
    for responder in responders.drain(..) {
        responder.respond(Err(batch_error.clone()));
    }
}
