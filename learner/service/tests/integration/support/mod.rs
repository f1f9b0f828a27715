//! The in-process parameter service the loopback and security tests share.

use std::sync::Arc;

use learner_service::{ParameterBoard, ProgressBoard};
use pkrl_proto::security::ServerSecurity;
use pkrl_test_support::ServerThread;

/// A parameter server on its own runtime thread.
pub type Running = ServerThread<()>;

/// Serves `board` (and `progress`) with `security` on `address` (`127.0.0.1:0` for any port).
pub fn start(
    board: Arc<ParameterBoard>,
    progress: Option<Arc<ProgressBoard>>,
    security: ServerSecurity,
    address: &str,
) -> Running {
    let listener = std::net::TcpListener::bind(address).unwrap();
    ServerThread::on(listener, move |listener, shutdown| {
        learner_service::serve(board, progress, security, listener, shutdown)
    })
}
