//! `permakey-rl`: parses the command line and hands over to the library.

use std::{path::PathBuf, process::ExitCode};

use atari::{record::ActionSource, EnvConfig, RomCatalog};
use clap::{Parser, Subcommand};
use pkrl_config::{init_tracing, CommonArgs, NoiseType};

#[derive(Parser)]
#[command(name = "permakey-rl", version = trainer::VERSION, about = "PermaKey keypoints and keypoint-based recurrent Q-learning on Atari")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job, embedded in one process: pre-train keypoints (unless keypoints.checkpoint is
    /// set), train the keypoint agent on env.game, evaluate; writes a run folder.
    Run {
        /// Continue the run in <run.out_dir>/<run.name> from its latest checkpoint.
        #[arg(long)]
        resume: bool,
    },
    /// Step the Atari env pool with a random policy: episode statistics, throughput, recordings.
    Collect,
    /// Atari tools.
    Atari {
        #[command(subcommand)]
        command: AtariCommand,
    },
    /// Keypoint models: collect frames, pre-train, visualise, benchmark.
    Keypoints {
        #[command(subcommand)]
        command: KeypointsCommand,
    },
    /// Score a keypoint checkpoint against RAM-decoded object positions, next to baselines.
    EvalKeypoints {
        /// Checkpoint folder (or a run's checkpoints/ folder).
        #[arg(long)]
        checkpoint: PathBuf,
        /// MsPacman, Seaquest, Frostbite or BattleZone (defaults to env.game).
        #[arg(long)]
        game: Option<String>,
        /// Distractor bars: none, vertical, horizontal, both.
        #[arg(long)]
        noise: Option<NoiseType>,
        /// Evaluation frames (seeded by run.seed), in clips taken at random points of episodes.
        #[arg(long, default_value_t = 500)]
        frames: usize,
        /// Consecutive frames per clip (temporal jitter is measured inside clips).
        #[arg(long, default_value_t = 32)]
        clip_len: usize,
        /// Each clip starts after 0..=N random agent steps.
        #[arg(long, default_value_t = 400)]
        max_warmup: usize,
        #[arg(long, default_value = "keypoint-eval")]
        out: PathBuf,
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
enum KeypointsCommand {
    /// Collect random-policy frames of env.game (with env.noise) into a dataset folder.
    Collect {
        /// Frames to collect.
        #[arg(long, default_value_t = 100_000)]
        frames: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Pre-train PermaKey or the Transporter on a dataset (settings: [permakey], [transporter], [pretrain]).
    Train {
        #[arg(long, value_enum, default_value = "permakey")]
        model: permakey_rl::keypoints::ModelKind,
        /// Dataset folder made by `keypoints collect`.
        #[arg(long)]
        data: PathBuf,
        /// Run folder for checkpoints, metrics.csv and previews.
        #[arg(long)]
        out: PathBuf,
        /// Continue from <out>/checkpoints/latest.
        #[arg(long)]
        resume: bool,
    },
    /// PNG grid and keypoint-tracking GIF of a checkpoint on a game, clean and noisy.
    Viz {
        /// Checkpoint folder (or a run's checkpoints/ folder).
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        game: Option<String>,
        /// Agent steps to play.
        #[arg(long, default_value_t = 200)]
        steps: usize,
        #[arg(long, default_value = "viz")]
        out: PathBuf,
    },
    /// Time PermaKey training steps and inference at several batch sizes (markdown table).
    Bench {
        #[arg(long, value_delimiter = ',', default_value = "1,32,256")]
        batches: Vec<i64>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
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
    // First, before tensors are allocated (permakey::malloc: why and how to opt out).
    let malloc = permakey::malloc::configure_from_env().map_err(anyhow::Error::msg)?;
    let config = cli.common.load()?;
    let _span = init_tracing("permakey-rl", &config.logging);
    tracing::info!("{malloc}");
    permakey_rl::apply_torch_settings(&config)?;
    match cli.command {
        Command::Run { resume } => {
            let _metrics = pkrl_telemetry::install(config.metrics.listen, "permakey-rl", &[])?;
            let dir = if resume {
                anyhow::ensure!(!config.run.name.is_empty(), "--resume needs the run's name: --set run.name=<folder under {}>", config.run.out_dir.display());
                let dir = config.run.out_dir.join(&config.run.name);
                anyhow::ensure!(dir.is_dir(), "no run folder {} to resume", dir.display());
                dir
            } else {
                permakey_rl::create_run_dir(&config)?
            };
            println!("run folder: {}", dir.display());
            match permakey_rl::train::train_agent(&config, &dir, resume)? {
                Some(scores) => {
                    let e = &scores.final_eval;
                    println!(
                        "final evaluation on {} after {} agent steps ({} frames), {} updates: score {:.1} (std {:.1}; median over {} evaluation seeds of the mean of {} greedy games; that seed's min {}, max {})",
                        config.env.game,
                        scores.agent_steps,
                        scores.frames,
                        scores.updates,
                        scores.score,
                        scores.score_std,
                        scores.final_eval_per_seed.len(),
                        e.returns.len(),
                        e.min,
                        e.max
                    );
                    println!(
                        "plots and logs: {0}/learning_curve.png, {0}/metrics.csv, {0}/eval.csv, {0}/final_scores.json; checkpoints in {0}/checkpoints",
                        dir.display()
                    );
                }
                None => println!("stopped before the budget; continue with --resume --set run.name={}", dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
            }
        }
        Command::Collect => {
            let dir = permakey_rl::create_run_dir(&config)?;
            let summary = permakey_rl::collect::run_collect(&config, &dir)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            println!("run folder: {} (config.toml, episodes.csv, summary.json, episode-clean/noisy .gif/.png)", dir.display());
            if config.collect.keypoint_frames > 0 {
                use permakey_rl::keypoints;
                let data = dir.join("keypoint-data");
                keypoints::collect(&config, config.collect.keypoint_frames, &data)?;
                let trained = dir.join("permakey");
                keypoints::train(&config, keypoints::ModelKind::Permakey, &data, &trained, false)?;
                let env = config.eval_env();
                keypoints::visualise(&config, &trained.join("checkpoints"), &env, 120, &dir, "keypoints")?;
                println!("keypoints: {}/permakey (metrics.csv, previews/, checkpoints/) and {}/permakey-keypoints-*.png/.gif", dir.display(), dir.display());
            }
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
        Command::Keypoints { command } => run_keypoints(&config, command)?,
        Command::EvalKeypoints { checkpoint, game, noise, frames, clip_len, max_warmup, out } => {
            let env = EnvConfig {
                game: game.unwrap_or(config.env.game.clone()),
                noise: noise.unwrap_or(config.env.noise),
                ..config.eval_env()
            };
            let sampling = keypoint_metric::sampling::ClipSampling { frames, clip_len, max_warmup, seed: config.run.seed };
            let evaluation = permakey_rl::eval_keypoints::evaluate(&config, &checkpoint, &env, &sampling, &out)?;
            print!("{}", permakey_rl::eval_keypoints::markdown(&evaluation));
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

fn run_keypoints(config: &pkrl_config::Config, command: KeypointsCommand) -> anyhow::Result<()> {
    use permakey_rl::keypoints;
    match command {
        KeypointsCommand::Collect { frames, out } => keypoints::collect(config, frames, &out),
        KeypointsCommand::Train { model, data, out, resume } => keypoints::train(config, model, &data, &out, resume),
        KeypointsCommand::Viz { checkpoint, game, steps, out } => {
            let env = EnvConfig { game: game.unwrap_or(config.env.game.clone()), ..config.eval_env() };
            for noise in [NoiseType::None, NoiseType::Both] {
                let env = EnvConfig { noise, ..env.clone() };
                let stem = format!("{}-{}", atari::roms::normalise_game_name(&env.game), format!("{noise:?}").to_lowercase());
                keypoints::visualise(config, &checkpoint, &env, steps, &out, &stem)?;
            }
            Ok(())
        }
        KeypointsCommand::Bench { batches, seconds } => {
            let device = permakey::resolve_device(config.device)?;
            let rows = keypoints::bench(config, &batches, seconds)?;
            println!("PermaKey ({:?}, {} threads, float32 matmul precision {})\n", device, tch::get_num_threads(), config.matmul_precision);
            println!("| batch | train steps/s | train frames/s | inference frames/s | encoder-only frames/s |");
            println!("|---:|---:|---:|---:|---:|");
            for r in rows {
                println!(
                    "| {} | {:.2} | {:.1} | {:.1} | {:.1} |",
                    r.batch, r.train_steps_per_second, r.train_steps_per_second * r.batch as f64, r.inference_frames_per_second, r.encoder_only_frames_per_second
                );
            }
            Ok(())
        }
    }
}
