//! `learner`: the distributed mode's learner process (see `permakey_rl::cluster`).

use clap::Parser;
use pkrl_config::{init_tracing, CommonArgs};

/// Trains the recurrent Q-network from the replay service and serves its parameters and the
/// run's progress (permakey.v1.LearnerService, health, reflection); writes the run folder.
#[derive(Parser)]
#[command(name = "learner", version = trainer::VERSION)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on (overrides learner_server.listen).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Continue the run in <run.out_dir>/<run.name> from its latest learner checkpoint.
    #[arg(long, conflicts_with = "resume_or_start")]
    resume: bool,
    /// Continue the run in <run.out_dir>/<run.name> when it has a learner checkpoint, else start
    /// it there (for restarts under a supervisor: Docker, Kubernetes). Needs run.name.
    #[arg(long)]
    resume_or_start: bool,
    /// After the budget is spent and evaluated, keep serving (actors are told the run is done)
    /// until SIGTERM instead of exiting: for supervisors that restart exited processes.
    #[arg(long)]
    idle_when_done: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(args) {
        eprintln!("learner: {}", format!("{error:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // First, before tensors are allocated (permakey::malloc: why and how to opt out).
    let malloc = permakey::malloc::configure_from_env().map_err(anyhow::Error::msg)?;
    let config = args.common.load()?;
    let _span = init_tracing("learner", &config.logging);
    tracing::info!("{malloc}");
    permakey_rl::apply_torch_settings(&config)?;
    let _metrics = pkrl_telemetry::install(config.metrics.listen, "learner", &[])?;
    let resume = if args.resume_or_start {
        anyhow::ensure!(!config.run.name.is_empty(), "--resume-or-start needs the run's name: --set run.name=<folder under {}>", config.run.out_dir.display());
        config.run.out_dir.join(&config.run.name).join("checkpoints").join("latest").exists()
    } else {
        args.resume
    };
    let dir = if resume {
        anyhow::ensure!(!config.run.name.is_empty(), "--resume needs the run's name: --set run.name=<folder under {}>", config.run.out_dir.display());
        config.run.out_dir.join(&config.run.name)
    } else {
        permakey_rl::create_run_dir(&config)?
    };
    tracing::info!(dir = %dir.display(), resume, "run folder");
    match permakey_rl::cluster::run_learner(&config, &dir, resume, args.listen, args.idle_when_done)? {
        Some(scores) => println!(
            "final evaluation after {} agent steps, {} updates: score {:.1} (std {:.1}); run folder {}",
            scores.agent_steps,
            scores.updates,
            scores.score,
            scores.score_std,
            dir.display()
        ),
        None => println!("stopped before the budget; checkpoint in {}/checkpoints (continue with --resume)", dir.display()),
    }
    Ok(())
}
