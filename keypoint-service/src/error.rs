//! The crate's error type.

use std::sync::Arc;

/// Why a request got no response, or why the batcher did not start.
///
/// Cheap to clone: one batch-wide failure is cloned into the result of every request of the
/// batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatcherError {
    /// The queue held `queue_capacity` requests; returned by `submit` at once.
    #[error("batcher queue is full ({queue_capacity} requests waiting)")]
    Overloaded { queue_capacity: usize },
    /// The batcher is shutting down or stopped; returned by `submit`, or to queued requests
    /// when shutting down with [`ShutdownMode::FailPending`](crate::ShutdownMode::FailPending).
    #[error("batcher is shutting down")]
    ShuttingDown,
    /// The request's deadline passed before it was taken into a batch.
    #[error("deadline exceeded before the request was run")]
    DeadlineExceeded,
    /// The batch function returned an error for the batch holding the request.
    #[error("batch function failed: {0}")]
    BatchFailed(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The batch function returned a number of responses different from the number of requests.
    #[error("batch function returned {actual} responses for {expected} requests")]
    OutputLengthMismatch { expected: usize, actual: usize },
    /// The batch function panicked on the batch holding the request; the worker goes on.
    #[error("batch function panicked: {message}")]
    BatchPanicked { message: Arc<str> },
    /// The worker thread ended without answering (it can only happen if the worker itself
    /// panicked outside the batch function).
    #[error("batcher worker stopped without answering")]
    WorkerStopped,
    /// The configuration is invalid; returned by `DynamicBatcher::start`.
    #[error("invalid batcher config: {reason}")]
    InvalidConfig { reason: String },
    /// The worker thread could not be spawned; returned by `DynamicBatcher::start`.
    #[error("failed to spawn the batcher worker thread")]
    SpawnWorker(#[source] Arc<std::io::Error>),
}

impl BatcherError {
    /// Returns true when the same request may succeed if submitted again later (possibly to
    /// another replica): overload, shutdown and a stopped worker are transient; a deadline,
    /// a model failure or an invalid configuration are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BatcherError::Overloaded { .. }
                | BatcherError::ShuttingDown
                | BatcherError::WorkerStopped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_single_lines() {
        let source: Box<dyn std::error::Error + Send + Sync> = "cuda out of memory".into();
        let errors = [
            BatcherError::Overloaded { queue_capacity: 4 },
            BatcherError::ShuttingDown,
            BatcherError::DeadlineExceeded,
            BatcherError::BatchFailed(Arc::from(source)),
            BatcherError::OutputLengthMismatch {
                expected: 3,
                actual: 2,
            },
            BatcherError::BatchPanicked {
                message: Arc::from("index out of bounds"),
            },
            BatcherError::WorkerStopped,
            BatcherError::InvalidConfig {
                reason: "max_batch_size is 0".to_string(),
            },
        ];
        for error in &errors {
            let message = error.to_string();
            assert!(
                !message.contains('\n') && !message.ends_with('.'),
                "{message}"
            );
            assert!(
                message.chars().next().is_some_and(char::is_lowercase),
                "{message}"
            );
        }
        assert_eq!(
            errors[3].to_string(),
            "batch function failed: cuda out of memory"
        );
        assert_eq!(
            errors[0].to_string(),
            "batcher queue is full (4 requests waiting)"
        );
    }

    #[test]
    fn batch_failure_keeps_its_source() {
        let source: Box<dyn std::error::Error + Send + Sync> = "shape mismatch".into();
        let error = BatcherError::BatchFailed(Arc::from(source));
        let chained = std::error::Error::source(&error).expect("source");
        assert_eq!(chained.to_string(), "shape mismatch");
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(BatcherError::Overloaded { queue_capacity: 1 }.is_retryable());
        assert!(BatcherError::ShuttingDown.is_retryable());
        assert!(BatcherError::WorkerStopped.is_retryable());
        assert!(!BatcherError::DeadlineExceeded.is_retryable());
        assert!(
            !BatcherError::OutputLengthMismatch {
                expected: 1,
                actual: 0
            }
            .is_retryable()
        );
        assert!(
            !BatcherError::BatchPanicked {
                message: Arc::from("x")
            }
            .is_retryable()
        );
    }
}
