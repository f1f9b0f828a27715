//! `keypoint-server`: the keypoint service of the distributed mode (see `permakey_rl::cluster`).

use clap::Parser;
use pkrl_config::{init_tracing, CommonArgs};

/// Serves the frozen keypoint model (keypoints.checkpoint, or the toy world's oracle) over gRPC
/// with dynamic batching across actors (permakey.v1.KeypointService, health, reflection).
#[derive(Parser)]
#[command(name = "keypoint-server", version = trainer::VERSION)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on (overrides keypoint_server.listen).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(args) {
        eprintln!("keypoint-server: {}", format!("{error:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // First, before tensors are allocated (permakey::malloc: why and how to opt out).
    let malloc = permakey::malloc::configure_from_env().map_err(anyhow::Error::msg)?;
    let config = args.common.load()?;
    let _span = init_tracing("keypoint-service", &config.logging);
    tracing::info!("{malloc}");
    permakey_rl::apply_torch_settings(&config)?;
    let _metrics = pkrl_telemetry::install(config.metrics.listen, "keypoint-service", &[])?;
    let report = permakey_rl::cluster::run_keypoint_server(&config, args.listen)?;
    tracing::info!(stats = ?report, "keypoint service stopped");
    Ok(())
}
