//! `permakey-rl`: parses the command line and hands over to the library.

use std::{path::PathBuf, process::ExitCode};

use atari::{record::ActionSource, EnvConfig, RomCatalog};
use clap::{Parser, Subcommand};
use pkrl_config::{init_tracing, CommonArgs, NoiseType};

#[derive(Parser)]
#[command(name = "permakey-rl", version, about = "PermaKey keypoints and keypoint-based recurrent Q-learning on Atari")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job, embedded in one process (today: the Atari-100k env pool with a random policy).
    Run,
    /// Atari tools.
    Atari {
        #[command(subcommand)]
        command: AtariCommand,
    },
    /// Check libtorch, the device, the ROMs; time a forward+backward pass.
    Doctor {
        /// Timed Adam steps.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Frames per step.
        #[arg(long, default_value_t = 32)]
        batch: i64,
        /// Also write the timing as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AtariCommand {
    /// List the game ids of the installed ROMs.
    Games,
    /// Record one episode (random or given actions) as an animated GIF and a PNG strip.
    Record {
        /// Game id; defaults to env.game of the config.
        #[arg(long)]
        game: Option<String>,
        /// Distractor bars: none, vertical, horizontal, both (defaults to env.noise).
        #[arg(long)]
        noise: Option<NoiseType>,
        /// Comma-separated action indices instead of random actions.
        #[arg(long, value_delimiter = ',')]
        actions: Option<Vec<usize>>,
        /// Seed of the environment and of the random actions.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Maximum agent steps.
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Output folder.
        #[arg(long, default_value = "recordings")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.common.load()?;
    let _span = init_tracing("permakey-rl", &config.logging);
    match cli.command {
        Command::Run => {
            let dir = permakey_rl::create_run_dir(&config)?;
            let summary = permakey_rl::collect::run_collect(&config, &dir)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            println!("run folder: {} (config.toml, episodes.csv, summary.json, episode-clean/noisy .gif/.png)", dir.display());
        }
        Command::Atari { command: AtariCommand::Games } => {
            let roms = RomCatalog::discover()?;
            for id in roms.game_ids() {
                println!("{id}");
            }
        }
        Command::Atari { command: AtariCommand::Record { game, noise, actions, seed, steps, out } } => {
            let roms = RomCatalog::discover()?;
            let env = EnvConfig {
                game: game.unwrap_or(config.env.game.clone()),
                noise: noise.unwrap_or(config.env.noise),
                ..config.eval_env()
            };
            env.validate()?;
            let source = match actions {
                Some(list) => ActionSource::Given(list),
                None => ActionSource::Random { seed },
            };
            let stem = format!("{}-{}-seed{seed}", atari::roms::normalise_game_name(&env.game), format!("{:?}", env.noise).to_lowercase());
            let score = permakey_rl::record::record_to(&env, &roms, seed, &source, steps, &out, &stem)?;
            println!("wrote {0}/{stem}.gif and {0}/{stem}.png (episode return {score})", out.display());
        }
        Command::Doctor { iterations, batch, json } => {
            let timing = permakey_rl::doctor::run_doctor(config.device, iterations, batch)?;
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&timing)?)?;
            }
        }
    }
    Ok(())
}
