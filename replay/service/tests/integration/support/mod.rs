//! The in-process replay server the loopback and security tests share.

use pkrl_proto::security::ServerSecurity;
use pkrl_test_support::ServerThread;
use replay::{ReplayConfig, ReplayServerConfig};
use replay_service::ServeReport;

/// A replay server on its own runtime thread; `stop` returns its report.
pub type Running = ServerThread<ServeReport>;

/// Serves a table of `capacity` sequences with `config` and `security` on 127.0.0.1.
pub fn start(capacity: usize, config: ReplayServerConfig, security: ServerSecurity) -> Running {
    ServerThread::on_any_port(move |listener, shutdown| {
        let table = ReplayConfig {
            capacity_sequences: capacity,
            ..ReplayConfig::default()
        };
        replay_service::serve(table, config, security, listener, shutdown)
    })
}
