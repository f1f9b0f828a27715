//! Trains on the sprite corridor with progress logs (RUST_LOG=info) and prints the greedy
//! Q-values of both start states: `cargo run --release -p trainer --example toy_debug -- [steps] [encoder]`.
use agent::{AgentConfig, EncoderKind};
use learner::{LearnerConfig, TargetUpdateRule};
use tch::Device;
use trainer::{toy::{OracleKeypoints, ToyConfig, ToyVecEnv}, EnvFactory, EnvRole, TrainConfig, Trainer, TrainerSettings};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args: Vec<String> = std::env::args().collect();
    let steps: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let encoder = if args.get(2).map(String::as_str) == Some("gnn") { EncoderKind::Gnn } else { EncoderKind::Cnn };
    let lr: f64 = std::env::var("LR").ok().and_then(|s| s.parse().ok()).unwrap_or(1e-3);
    tch::set_num_threads(2);
    let envs: EnvFactory = Box::new(|role, seed| {
        let n = match role { EnvRole::Train { num_envs } | EnvRole::Eval { num_envs } => num_envs };
        Ok(Box::new(ToyVecEnv::new(&ToyConfig::default(), n, seed)?))
    });
    let settings = TrainerSettings {
        train: TrainConfig { agent_steps: steps, num_envs: 4, learning_starts: 200, train_every: 2, epsilon_fraction: 0.6, epsilon_end: 0.05, eval_every: 500, eval_episodes: 8, final_eval_episodes: 40, eval_envs: 4, checkpoint_every: 0, ..TrainConfig::default() },
        agent: AgentConfig { encoder, cnn_channels: 8, ..AgentConfig::default() },
        learner: LearnerConfig { learning_rate: lr, discount: std::env::var("DISCOUNT").ok().and_then(|s| s.parse().ok()).unwrap_or(0.99), target_update: TargetUpdateRule::Polyak { tau: 0.02 }, ..LearnerConfig::default() },
        ..TrainerSettings::default()
    };
    let dir = tempfile::tempdir()?;
    let mut trainer = Trainer::new(settings, 1, dir.path(), Box::new(OracleKeypoints::new(Device::Cpu)), envs, false)?;
    let scores = trainer.run()?.expect("budget");
    for m in trainer.metrics() { eprintln!("{m:?}"); }
    for e in trainer.evals() { eprintln!("eval {} {:.3} {:?}", e.agent_steps, e.mean, e.lengths); }
    eprintln!("final {:.3} {:?}", scores.final_eval.mean, scores.final_eval.lengths);
    Ok(())
}
