//! Test-only helpers shared by the integration tests of `replay-service`, `learner-service` and
//! `keypoint-service`, and by the benches of `learner` and `trainer` (a dev-dependency only;
//! nothing in a release binary links it).
//!
//! [`ServerThread`] runs one server future on its own multi-threaded tokio runtime, on a listener
//! bound before the thread starts (so the address is known and a restarted server can take the
//! same port), and stops it through the shutdown future every `serve` of this workspace takes.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Resolves when the test asks the server to stop (what `serve(.., shutdown)` takes).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A server running on its own runtime thread; [`ServerThread::stop`] shuts it down and joins
/// it, dropping it only signals the shutdown (a failed test must not hang on a join).
pub struct ServerThread<T> {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<T>>>,
}

impl<T: Send + 'static> ServerThread<T> {
    /// Binds 127.0.0.1 on any free port and serves there.
    pub fn on_any_port<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        Self::on(
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"),
            serve,
        )
    }

    /// Serves `serve(listener, shutdown)` on `listener` on a 2-worker runtime in a new thread.
    pub fn on<F, Fut>(listener: std::net::TcpListener, serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let shutdown: Shutdown = Box::pin(async move {
                    let _ = stopped.await;
                });
                serve(listener, shutdown).await
            })
        });
        Self {
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://<address>`, what the clients connect to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Signals the shutdown, joins the thread and returns what the server returned (a server
    /// error or a panic in its thread fails the test here).
    pub fn stop(self) -> T {
        self.stop_timed().0
    }

    /// [`ServerThread::stop`], also returning how long the shutdown took.
    pub fn stop_timed(mut self) -> (T, Duration) {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self.thread.take().expect("a running server");
        let served = thread
            .join()
            .expect("the server thread panicked")
            .expect("the server failed");
        (served, started.elapsed())
    }
}

impl<T> Drop for ServerThread<T> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_the_server_future_and_returns_its_value() {
        let server = ServerThread::on_any_port(|listener, shutdown| async move {
            let address = listener.local_addr()?;
            shutdown.await;
            Ok(address)
        });
        let address = server.address;
        assert!(server.endpoint().starts_with("http://127.0.0.1:"));
        let (served, took) = server.stop_timed();
        assert_eq!(
            served, address,
            "the future ran on the listener bound before the thread"
        );
        assert!(took < Duration::from_secs(5));
    }

    #[test]
    #[should_panic(expected = "the server failed")]
    fn a_failing_server_fails_the_test_at_stop() {
        let server: ServerThread<()> =
            ServerThread::on_any_port(|_, _| async { anyhow::bail!("no") });
        server.stop();
    }
}

/// A bench's knob from the environment: `name` parsed as a count, `default` when unset or not a
/// number, at least 1.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default).max(1)
}
