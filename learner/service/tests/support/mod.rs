//! The in-process parameter service the loopback and security tests share.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use learner_service::{ParameterBoard, ProgressBoard};
use pkrl_proto::security::ServerSecurity;

/// A server on its own runtime thread; `stop` (or dropping it) shuts it down and joins it.
pub struct Running {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Serves `board` (and `progress`) with `security` on `address` (`127.0.0.1:0` for any port).
    pub fn start(board: Arc<ParameterBoard>, progress: Option<Arc<ProgressBoard>>, security: ServerSecurity, address: &str) -> Self {
        let std_listener = std::net::TcpListener::bind(address).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let address = std_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                learner_service::serve(board, progress, security, listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Self { address, stop: Some(stop), thread: Some(thread) }
    }

    /// Stops the server and returns how long the shutdown took.
    #[allow(dead_code)] // not every test file uses it
    pub fn stop(mut self) -> Duration {
        let started = std::time::Instant::now();
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
        started.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
