//! `replay-server`: the replay service as its own process (the `replay-service` crate docs).

use clap::Parser;
use pkrl_config::{CommonArgs, init_tracing};

/// Serves the sequence replay over gRPC (permakey.v1.ReplayService, health, reflection).
#[derive(Parser)]
#[command(name = "replay-server", version = trainer::VERSION)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on (overrides replay_server.listen).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(args) {
        eprintln!("replay-server: {}", format!("{error:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = args.common.load()?;
    let security = config.server_security()?;
    let _span = init_tracing("replay", &config.logging);
    let _metrics = pkrl_telemetry::install(config.metrics.listen, "replay", &[])?;
    let mut server_config = config.replay_server.clone();
    if let Some(listen) = args.listen {
        server_config.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(server_config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", server_config.listen))?;
        let report = replay_service::serve(config.replay.clone(), server_config, security, listener, replay_service::terminated()).await?;
        tracing::info!(size = report.stats.len, inserted = report.stats.inserts_total, sampled = report.stats.samples_total, "replay server stopped");
        Ok(())
    })
}
