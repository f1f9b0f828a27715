//! The in-process replay server the loopback and security tests share.

use std::{net::SocketAddr, time::Duration};

use pkrl_proto::security::ServerSecurity;
use replay::{ReplayConfig, ReplayServerConfig};
use replay_service::ServeReport;

/// A server on its own runtime thread; `stop` (or dropping it) shuts it down.
pub struct Running {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<ServeReport>>>,
}

impl Running {
    /// Serves a table of `capacity` sequences with `config` and `security` on 127.0.0.1.
    pub fn start(capacity: usize, config: ReplayServerConfig, security: ServerSecurity) -> Self {
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                address_sender.send(listener.local_addr()?).unwrap();
                let table = ReplayConfig { capacity_sequences: capacity, ..ReplayConfig::default() };
                replay_service::serve(table, config, security, listener, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let address = address_receiver.recv_timeout(Duration::from_secs(10)).expect("server binds");
        Self { address, stop: Some(stop), thread: Some(thread) }
    }

    #[allow(dead_code)] // not every test file uses it
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn stop(mut self) -> ServeReport {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
