//! `actor`: one actor process of the distributed mode (see `permakey_rl::cluster`).

use clap::Parser;
use pkrl_config::{init_tracing, CommonArgs};

/// Steps train.num_envs environments with keypoints from the keypoint service and a local copy
/// of the learner's Q-network; writes sequences to the replay service.
#[derive(Parser)]
#[command(name = "actor", version = trainer::VERSION)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// This actor's index in the fleet (seeds and environment numbers derive from it; unique per
    /// actor), or `auto`: a number derived from the host name, for replicas that share one
    /// command line (`docker compose --scale`, a Kubernetes Deployment).
    #[arg(long, default_value = "0")]
    id: String,
    /// When the learner reports the budget spent, stay up (idle) until SIGTERM instead of
    /// exiting: for supervisors that restart exited processes (a Kubernetes Deployment).
    #[arg(long)]
    idle_when_done: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(args) {
        eprintln!("actor: {}", format!("{error:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // First, before tensors are allocated (permakey::malloc: why and how to opt out).
    let malloc = permakey::malloc::configure_from_env().map_err(anyhow::Error::msg)?;
    let config = args.common.load()?;
    let id = permakey_rl::cluster::actor_id(&args.id)?;
    let _span = init_tracing("actor", &config.logging);
    tracing::info!("{malloc}");
    permakey_rl::apply_torch_settings(&config)?;
    let _metrics = pkrl_telemetry::install(config.metrics.listen, "actor", &[("actor_id", id.to_string())])?;
    let summary = permakey_rl::cluster::run_actor_process(&config, id, args.idle_when_done)?;
    let games = match summary.games.len() {
        0 => "no finished games".to_owned(),
        n => format!("{n} games (mean return {:.2})", summary.games.iter().map(|g| f64::from(g.game_return)).sum::<f64>() / n as f64),
    };
    println!(
        "actor {id}: {} agent steps, {games}, parameter version {}, {}",
        summary.agent_steps,
        summary.parameter_version.map_or("none".to_owned(), |v| v.to_string()),
        if summary.finished_budget { "budget spent" } else { "stopped" }
    );
    Ok(())
}
