//! The one configuration schema every PermaKey-RL binary reads.
//!
//! Precedence, lowest to highest (as quickwit's config does):
//! 1. defaults ([`Config::default`], the paper's values where the spec gives them);
//! 2. a TOML file (`--config run.toml`; `config/example.toml` documents every field);
//! 3. environment variables `PERMAKEY__SECTION__KEY=value` (double underscores separate the path,
//!    e.g. `PERMAKEY__ENV__GAME=Seaquest`);
//! 4. command-line overrides `--set section.key=value` (repeatable) and dedicated flags such as
//!    `--device`.
//!
//! Values in overrides are read as TOML literals (`4`, `true`, `"x"`, `[1, 2]`); anything that
//! does not parse as one is taken as a string, so `--set env.game=Seaquest` works unquoted.
//! Unknown keys anywhere are errors (`deny_unknown_fields`), and [`Config::validate`] checks
//! ranges after the merge. A run saves the resolved config next to its outputs.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use atari::{EnvConfig, NoiseType, Preset};
pub use permakey::{
    dataset::CollectDatasetConfig, train::PretrainConfig, transporter::TransporterConfig, DeviceChoice, MatmulPrecision, PermaKeyConfig,
};

pub use actor::SequenceWriterConfig;
pub use agent::AgentConfig;
pub use learner::LearnerConfig;
pub use keypoint_service::{DynamicBatcherConfig, KeypointServerConfig};
pub use replay::{ReplayConfig, ReplayServerConfig};
pub use trainer::TrainConfig;

use pkrl_proto::security::{ClientSecurity, SecurityError, ServerSecurity, TOKEN_ENV, Token};

mod tracing_init;
pub use tracing_init::init_tracing;

/// Prefix of environment-variable overrides.
pub const ENV_PREFIX: &str = "PERMAKEY__";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad override '{text}': {reason}")]
    Override { text: String, reason: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Where a run writes and how it is seeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Parent folder of run folders.
    pub out_dir: PathBuf,
    /// Run folder name; empty = `<game>-<seed>-<unix time>`.
    pub name: String,
    /// Master seed: environments, networks and sampling derive theirs from it.
    pub seed: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self { out_dir: PathBuf::from("runs"), name: String::new(), seed: 0 }
    }
}

/// Data collection with the emulator pool (`permakey-rl run` until the agent exists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// Agent steps to take across all environments.
    pub agent_steps: u64,
    /// Environments in the pool.
    pub num_envs: usize,
    /// Worker threads stepping them (0 = one per core).
    pub num_threads: usize,
    /// Agent steps recorded as a GIF/PNG strip from environment 0 (0 = none).
    pub record_steps: usize,
    /// Frames collected for keypoint pre-training after the episodes (0 = stop after them); the
    /// run then pre-trains PermaKey for `pretrain.steps` batches and visualises it.
    pub keypoint_frames: u64,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self { agent_steps: 20_000, num_envs: 8, num_threads: 0, record_steps: 200, keypoint_frames: 0 }
    }
}

/// Which frozen keypoint model the agent sees the game through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeypointModelKind {
    #[default]
    Permakey,
    Transporter,
    /// The sprite corridor's colour-centroid oracle (`env.game = "toy"` only): tests the agent
    /// and the distributed system apart from keypoint learning.
    Oracle,
}

/// `env.game` that selects the project's sprite corridor ([`trainer::toy`]) instead of a ROM.
pub const TOY_GAME: &str = "toy";

/// The learner's parameter and progress service (`learner` binary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerServerConfig {
    /// gRPC address to listen on. Default `127.0.0.1:50053`.
    pub listen: SocketAddr,
}

impl Default for LearnerServerConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 50053)) }
    }
}

/// Where the distributed mode's processes find each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Replay service endpoint the learner and the actors use.
    pub replay: String,
    /// Keypoint service endpoint of the actors.
    pub keypoints: String,
    /// Learner (parameters, progress) endpoint of the actors.
    pub learner: String,
    /// How long a client retries an unreachable or overloaded service (exponential backoff)
    /// before its process gives up, in seconds.
    pub retry_for_s: u64,
    /// libtorch intra-op threads of each actor process (its forward is one small batch per vector
    /// step; several actors share the cores, and multi-threaded libtorch in every process
    /// oversubscribes them). Default 1; 0 = libtorch's default (all cores).
    pub actor_torch_threads: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            replay: "http://127.0.0.1:50051".into(),
            keypoints: "http://127.0.0.1:50052".into(),
            learner: "http://127.0.0.1:50053".into(),
            retry_for_s: 300,
            actor_torch_threads: 1,
        }
    }
}

/// The agent's keypoint front end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeypointsConfig {
    /// `permakey` (default) or `transporter`.
    pub model: KeypointModelKind,
    /// Checkpoint folder of a pre-trained model; empty = `run` collects `pretrain_frames`
    /// random-policy frames and pre-trains one for `pretrain.steps` (or
    /// `pretrain_transporter.steps`) batches first.
    pub checkpoint: Option<PathBuf>,
    /// Random-policy frames `run` collects for pre-training when no checkpoint is given (spec 9b:
    /// 100k per game, counted apart from the RL budget).
    pub pretrain_frames: u64,
}

impl Default for KeypointsConfig {
    fn default() -> Self {
        Self { model: KeypointModelKind::default(), checkpoint: None, pretrain_frames: 100_000 }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Default filter when RUST_LOG is unset (`info`, `debug`, `atari=debug,info`, ...).
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: "text".into() }
    }
}

/// Optional authentication and TLS of the distributed mode's gRPC services (all off by default;
/// see [`pkrl_proto::security`] for what is protected). The token itself is never part of the
/// config (which runs save beside their outputs): it comes from `token_file` or, when that is
/// unset, the `PERMAKEY_TOKEN` environment variable; with neither, no token is required or sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// File holding the shared token (a Docker or Kubernetes secret); surrounding whitespace is
    /// ignored. Servers then require `authorization: Bearer <token>` on every `permakey.v1` RPC
    /// and clients send it. Unset: the `PERMAKEY_TOKEN` variable, if set.
    pub token_file: Option<PathBuf>,
    /// Servers: PEM certificate chain to serve TLS with (needs `tls_key`). Unset = plaintext.
    pub tls_cert: Option<PathBuf>,
    /// Servers: PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Clients: PEM CA certificate(s) to trust; `https://` endpoints in `[cluster]` need it, and
    /// with it set every `[cluster]` endpoint must be `https://`.
    pub tls_ca: Option<PathBuf>,
    /// Clients: the name the servers' certificates must carry, when it is not the endpoint's
    /// host (one certificate for every service).
    pub tls_domain: Option<String>,
}

impl SecurityConfig {
    /// The shared token: from `token_file`, else from `env_token` (the value of
    /// `PERMAKEY_TOKEN`), else none. Setting both is refused as ambiguous.
    pub fn token(&self, env_token: Option<&str>) -> Result<Option<Token>, ConfigError> {
        let invalid = |e: SecurityError| ConfigError::Invalid(format!("security: {e}"));
        match (&self.token_file, env_token) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
                "security: both security.token_file and {TOKEN_ENV} are set; keep one"
            ))),
            (Some(path), None) => Token::from_file(path).map(Some).map_err(invalid),
            (None, Some(text)) => Token::new(text, TOKEN_ENV).map(Some).map_err(invalid),
            (None, None) => Ok(None),
        }
    }

    /// What a server enforces, with its files read and checked.
    pub fn server(&self, env_token: Option<&str>) -> Result<ServerSecurity, ConfigError> {
        let security = ServerSecurity::default().with_token(self.token(env_token)?);
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => security.with_tls(cert, key).map_err(|e| ConfigError::Invalid(format!("security: {e}"))),
            (None, None) => Ok(security),
            _ => Err(ConfigError::Invalid("security.tls_cert and security.tls_key go together".into())),
        }
    }

    /// What a client sends, with its files read and checked.
    pub fn client(&self, env_token: Option<&str>) -> Result<ClientSecurity, ConfigError> {
        let security = ClientSecurity::default().with_token(self.token(env_token)?);
        match &self.tls_ca {
            Some(ca) => security.with_tls(ca, self.tls_domain.as_deref()).map_err(|e| ConfigError::Invalid(format!("security: {e}"))),
            None => Ok(security),
        }
    }
}

/// Prometheus exporter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `/metrics` endpoint; unset = no exporter.
    pub listen: Option<SocketAddr>,
}

/// Everything a PermaKey-RL binary can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Accelerator: auto, cpu or cuda.
    pub device: DeviceChoice,
    /// Float32 matmul precision on CUDA: highest (full float32, PyTorch's default) or high (TF32
    /// tensor cores on Ampere and later); no effect on the CPU (`permakey::precision`).
    pub matmul_precision: MatmulPrecision,
    /// Named protocol (`atari100k` or `permakeyrepo`); fixes the budget and evaluation.
    pub preset: Preset,
    pub run: RunConfig,
    /// The training environment (the evaluation one is the same without life-loss terminals).
    pub env: EnvConfig,
    pub collect: CollectConfig,
    /// The PermaKey keypoint model (spec sections 2-5).
    pub permakey: PermaKeyConfig,
    /// The Transporter baseline (spec section 6).
    pub transporter: TransporterConfig,
    /// PermaKey pre-training loop.
    pub pretrain: PretrainConfig,
    /// Transporter pre-training loop (its own batch size and schedule, spec 6).
    pub pretrain_transporter: PretrainConfig,
    /// The agent's keypoint front end.
    pub keypoints: KeypointsConfig,
    /// RL schedule of the embedded trainer (spec 7.4, 8).
    pub train: TrainConfig,
    /// Keypoint encoder and recurrent Q-network (spec 7.2-7.3).
    pub agent: AgentConfig,
    /// Double-Q learner (spec 7.4).
    pub learner: LearnerConfig,
    /// Sequence replay (spec 7.4; prioritised sampling optional).
    pub replay: ReplayConfig,
    /// The replay service of the distributed mode: address, snapshots, rate limiter.
    pub replay_server: ReplayServerConfig,
    /// The keypoint service of the distributed mode: address, batching, default deadline.
    pub keypoint_server: KeypointServerConfig,
    /// The learner's parameter and progress service of the distributed mode.
    pub learner_server: LearnerServerConfig,
    /// Endpoints and size of the distributed mode.
    pub cluster: ClusterConfig,
    /// How episodes are cut into replay sequences (length, period, burn-in).
    pub sequence: SequenceWriterConfig,
    pub logging: LoggingConfig,
    pub metrics: MetricsConfig,
    /// Shared token and TLS of the distributed mode's services (off by default).
    pub security: SecurityConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Auto,
            matmul_precision: MatmulPrecision::Highest,
            preset: Preset::Atari100k,
            run: RunConfig::default(),
            env: Preset::Atari100k.train_env("MsPacman"),
            collect: CollectConfig::default(),
            permakey: PermaKeyConfig::default(),
            transporter: TransporterConfig::default(),
            pretrain: PretrainConfig::default(),
            pretrain_transporter: PretrainConfig::transporter(),
            keypoints: KeypointsConfig::default(),
            train: TrainConfig::default(),
            agent: AgentConfig::default(),
            learner: LearnerConfig::default(),
            replay: ReplayConfig::default(),
            replay_server: ReplayServerConfig::default(),
            keypoint_server: KeypointServerConfig::default(),
            learner_server: LearnerServerConfig::default(),
            cluster: ClusterConfig::default(),
            sequence: SequenceWriterConfig::default(),
            logging: LoggingConfig::default(),
            metrics: MetricsConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then `file`, then `PERMAKEY__*` variables from `env_vars`, then `overrides`
    /// (`key.path=value`), then validation.
    pub fn load(
        file: Option<&Path>,
        env_vars: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let mut tree = toml::Value::try_from(Config::default()).expect("defaults serialise");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse { path: path.into(), message: one_line(&e.to_string()) })?;
            merge(&mut tree, toml::Value::Table(table));
        }
        for (name, value) in env_vars {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                let key = path.to_ascii_lowercase().replace("__", ".");
                set_path(&mut tree, &key, &value).map_err(|reason| ConfigError::Override { text: format!("{name}={value}"), reason })?;
            }
        }
        for text in overrides {
            let (key, value) = text
                .split_once('=')
                .ok_or_else(|| ConfigError::Override { text: text.clone(), reason: "expected KEY=VALUE, e.g. env.game=Seaquest".into() })?;
            set_path(&mut tree, key.trim(), value.trim())
                .map_err(|reason| ConfigError::Override { text: text.clone(), reason })?;
        }
        let config: Config = tree.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(one_line(&e.to_string())))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and combinations the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.env.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.permakey.validate().map_err(|e| ConfigError::Invalid(format!("permakey: {e}")))?;
        self.transporter.validate().map_err(|e| ConfigError::Invalid(format!("transporter: {e}")))?;
        if self.collect.num_envs == 0 {
            return Err(ConfigError::Invalid("collect.num_envs must be at least 1".into()));
        }
        self.trainer_settings().validate().map_err(|e| ConfigError::Invalid(one_line(&e.to_string())))?;
        self.replay_server.validate().map_err(|e| ConfigError::Invalid(format!("replay_server: {e}")))?;
        self.keypoint_server.validate().map_err(|e| ConfigError::Invalid(format!("keypoint_server: {e}")))?;
        for (name, endpoint) in [("replay", &self.cluster.replay), ("keypoints", &self.cluster.keypoints), ("learner", &self.cluster.learner)] {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!("cluster.{name} must be an http:// or https:// endpoint, got '{endpoint}'")));
            }
        }
        if (self.security.tls_cert.is_some()) != (self.security.tls_key.is_some()) {
            return Err(ConfigError::Invalid("security.tls_cert and security.tls_key go together".into()));
        }
        if self.security.tls_domain.is_some() && self.security.tls_ca.is_none() {
            return Err(ConfigError::Invalid("security.tls_domain needs security.tls_ca".into()));
        }
        for (name, endpoint) in [("replay", &self.cluster.replay), ("keypoints", &self.cluster.keypoints), ("learner", &self.cluster.learner)] {
            match (self.security.tls_ca.is_some(), endpoint.starts_with("https://")) {
                (true, false) => {
                    return Err(ConfigError::Invalid(format!("security.tls_ca is set, so cluster.{name} must be https://, got '{endpoint}'")));
                }
                (false, true) => {
                    return Err(ConfigError::Invalid(format!("cluster.{name} is https:// ('{endpoint}'), which needs security.tls_ca (the CA to trust)")));
                }
                _ => {}
            }
        }
        if (self.keypoints.model == KeypointModelKind::Oracle) != (self.env.game == TOY_GAME) {
            return Err(ConfigError::Invalid(format!(
                "keypoints.model = \"oracle\" goes with env.game = \"{TOY_GAME}\" and only with it (got model {:?}, game '{}')",
                self.keypoints.model, self.env.game
            )));
        }
        if !matches!(self.logging.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!("logging.format must be text or json, got '{}'", self.logging.format)));
        }
        Ok(())
    }

    /// The resolved configuration as TOML, for the run folder.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Agent steps of RL: `train.agent_steps`, or the preset's budget when that is 0.
    pub fn agent_steps(&self) -> u64 {
        if self.train.agent_steps > 0 { self.train.agent_steps } else { self.preset.budget().agent_steps }
    }

    /// The embedded trainer's settings with the budget resolved.
    pub fn trainer_settings(&self) -> trainer::TrainerSettings {
        trainer::TrainerSettings {
            train: TrainConfig { agent_steps: self.agent_steps(), ..self.train.clone() },
            agent: self.agent.clone(),
            learner: self.learner.clone(),
            replay: self.replay.clone(),
            sequence: self.sequence.clone(),
        }
    }

    /// The server side of `[security]` with the process's `PERMAKEY_TOKEN`; files are read now,
    /// so a bad set-up stops a process at start with one line.
    pub fn server_security(&self) -> Result<ServerSecurity, ConfigError> {
        self.security.server(std::env::var(TOKEN_ENV).ok().as_deref())
    }

    /// The client side of `[security]` with the process's `PERMAKEY_TOKEN` (see
    /// [`Config::server_security`]).
    pub fn client_security(&self) -> Result<ClientSecurity, ConfigError> {
        self.security.client(std::env::var(TOKEN_ENV).ok().as_deref())
    }

    /// The evaluation environment of this run: whole games, same time limit and noise.
    pub fn eval_env(&self) -> EnvConfig {
        EnvConfig { terminal_on_life_loss: false, ..self.env.clone() }
    }
}

/// toml's errors span several lines (with a source excerpt); keep one.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Deep-merges `overlay` into `base` (tables merge key by key, everything else replaces).
fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(base), toml::Value::Table(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Parses an override value as a TOML literal, falling back to a plain string.
fn parse_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// Sets `a.b.c = value` in `tree`, creating tables for optional sections; the key must name a
/// field (checked later by deserialisation).
fn set_path(tree: &mut toml::Value, key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err("empty key".into());
    }
    let mut node = tree;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let table = node.as_table_mut().ok_or_else(|| format!("'{}' is not a section", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            let mut parsed = parse_value(value);
            // keep strings as strings where the default is a string (e.g. env.game = "1942")
            if let Some(toml::Value::String(_)) = table.get(*part) {
                if !parsed.is_str() {
                    parsed = toml::Value::String(value.trim_matches('"').to_owned());
                }
            }
            table.insert((*part).to_owned(), parsed);
            return Ok(());
        }
        node = table.entry((*part).to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    unreachable!("loop returns at the last part")
}

/// Flags every binary shares.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML config file (see config/example.toml).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Override one config value, e.g. --set env.game=Seaquest (repeatable; highest precedence).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub overrides: Vec<String>,
    /// Accelerator: auto, cpu or cuda.
    #[arg(long, value_name = "auto|cpu|cuda", global = true)]
    pub device: Option<DeviceChoice>,
    /// Named protocol: atari100k (100k agent steps) or permakeyrepo (400k); sets `preset` and
    /// resets `train.agent_steps` to the preset's budget.
    #[arg(long, value_name = "atari100k|permakeyrepo", global = true, value_parser = parse_preset)]
    pub preset: Option<Preset>,
}

fn parse_preset(text: &str) -> Result<Preset, String> {
    toml::Value::String(text.to_owned()).try_into().map_err(|_| format!("unknown preset '{text}' (expected atari100k or permakeyrepo)"))
}

impl CommonArgs {
    /// Loads the config with the process environment and these flags applied.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut overrides = self.overrides.clone();
        if let Some(device) = self.device {
            overrides.push(format!("device={device}"));
        }
        if let Some(preset) = self.preset {
            let name = toml::Value::try_from(preset).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            overrides.push(format!("preset={name}"));
            overrides.push("train.agent_steps=0".to_owned());
        }
        Config::load(self.config.as_deref(), std::env::vars(), &overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn defaults_are_the_atari100k_mspacman_protocol() {
        let config = Config::load(None, no_env(), &[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.env, Preset::Atari100k.train_env("MsPacman"));
    }

    #[test]
    fn file_then_env_then_flags_take_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, "device = \"cpu\"\n[env]\ngame = \"Seaquest\"\nnoop_max = 10\n[run]\nseed = 5\n").unwrap();
        let env = vec![
            ("PERMAKEY__ENV__NOOP_MAX".to_owned(), "20".to_owned()),
            ("PERMAKEY__RUN__SEED".to_owned(), "6".to_owned()),
            ("PERMAKEY_ROM_DIR".to_owned(), "/ignored".to_owned()),
        ];
        let flags = vec!["run.seed=7".to_owned(), "env.noise=both".to_owned(), "metrics.listen=127.0.0.1:9000".to_owned()];
        let config = Config::load(Some(&path), env, &flags).unwrap();
        assert_eq!(config.device, DeviceChoice::Cpu);
        assert_eq!(config.env.game, "Seaquest");
        assert_eq!(config.env.noop_max, 20, "env var beats file");
        assert_eq!(config.run.seed, 7, "flag beats env var");
        assert_eq!(config.env.noise, NoiseType::Both);
        assert_eq!(config.metrics.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(config.env.frame_skip, 4, "untouched values keep their defaults");
    }

    #[test]
    fn bad_input_gives_one_clear_line() {
        let err = Config::load(Some(Path::new("/no/such.toml")), no_env(), &[]).unwrap_err().to_string();
        assert!(err.starts_with("cannot read config file /no/such.toml"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[env\ngame = 1").unwrap();
        let err = Config::load(Some(&path), no_env(), &[]).unwrap_err().to_string();
        assert!(err.contains("is not valid TOML") && !err.contains('\n'), "{err}");
        let cases = [
            ("env.gmae=Pong", "gmae"),
            ("env.frame_skip=0", "frame_skip"),
            ("device=tpu", "tpu"),
            ("nonsense", "KEY=VALUE"),
            ("env.frame_skip=four", "frame_skip"),
            ("logging.format=xml", "logging.format"),
            ("train.eval_episodes=0", "train.eval_episodes must be at least 1"),
            ("matmul_precision=medium", "matmul_precision"),
        ];
        for (flag, needle) in cases {
            let err = Config::load(None, no_env(), &[flag.to_owned()]).unwrap_err().to_string();
            assert!(err.contains(needle) && !err.contains('\n'), "{flag}: {err}");
        }
    }

    #[test]
    fn string_fields_stay_strings() {
        let config = Config::load(None, no_env(), &["env.game=\"Pong\"".to_owned(), "run.name=2024".to_owned()]).unwrap();
        assert_eq!(config.env.game, "Pong");
        assert_eq!(config.run.name, "2024");
    }

    #[test]
    fn quick_profile_loads() {
        let quick = Path::new(env!("CARGO_MANIFEST_DIR")).join("quick.toml");
        let config = Config::load(Some(&quick), no_env(), &[]).unwrap();
        assert!(config.collect.keypoint_frames > 0 && config.pretrain.steps > 0);
        assert_eq!(config.env, Config::default().env, "the quick profile keeps the Atari-100k environment");
    }

    #[test]
    fn resolved_config_round_trips() {
        let config = Config::load(None, no_env(), &["env.game=Frostbite".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolved.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        assert_eq!(Config::load(Some(&path), no_env(), &[]).unwrap(), config);
    }

    #[test]
    fn example_config_documents_every_field_and_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("example.toml");
        let config = Config::load(Some(&example), no_env(), &[]).unwrap();
        assert_eq!(config, Config::default(), "example.toml shows the defaults");
        let text = std::fs::read_to_string(&example).unwrap();
        let written: toml::Table = toml::from_str(&text).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (section, value) in defaults.as_table().unwrap() {
            match value {
                toml::Value::Table(fields) => {
                    for field in fields.keys() {
                        assert!(written.get(section).and_then(|s| s.get(field)).is_some(), "example.toml lacks {section}.{field}");
                    }
                }
                _ => assert!(written.contains_key(section), "example.toml lacks {section}"),
            }
        }
        assert!(text.contains("# listen = "), "optional fields are shown commented out");
    }

    #[test]
    fn the_shipped_profiles_load_and_use_the_narrow_permakey() {
        for name in ["quick.toml", "keypoints-cpu.toml", "results-cpu.toml", "cluster-toy.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
            let config = Config::load(Some(&path), no_env(), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
            if name != "cluster-toy.toml" {
                // PermaKeyConfig::narrow() (the benches' "quick" model) is these files' model.
                assert_eq!(config.permakey, permakey::PermaKeyConfig::narrow(), "{name}");
            }
        }
    }

    #[test]
    fn security_is_off_by_default_and_reads_its_files() {
        let config = Config::load(None, no_env(), &[]).unwrap();
        let server = config.security.server(None).unwrap();
        assert!(!server.requires_token() && !server.serves_tls());
        let client = config.security.client(None).unwrap();
        assert!(!client.sends_token() && !client.uses_tls());

        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "s3cret-token\n").unwrap();
        let set = format!("security.token_file={}", token_file.display());
        let config = Config::load(None, no_env(), &[set]).unwrap();
        assert!(config.security.server(None).unwrap().requires_token());
        assert!(config.security.client(None).unwrap().sends_token());
        let both = config.security.server(Some("other")).unwrap_err().to_string();
        assert_eq!(both, "invalid config: security: both security.token_file and PERMAKEY_TOKEN are set; keep one");
        // PERMAKEY__SECURITY__TOKEN_FILE works like any other override.
        let env = vec![("PERMAKEY__SECURITY__TOKEN_FILE".to_owned(), token_file.display().to_string())];
        assert_eq!(Config::load(None, env, &[]).unwrap().security.token_file.as_deref(), Some(token_file.as_path()));
        let from_env = SecurityConfig::default().client(Some("env-token")).unwrap();
        assert!(from_env.sends_token());
    }

    #[test]
    fn bad_security_gives_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let security = |token_file: &Path| SecurityConfig { token_file: Some(token_file.to_owned()), ..SecurityConfig::default() };
        let cases = [
            (security(&empty).server(None).unwrap_err().to_string(), format!("invalid config: security: the token from file {} is empty", empty.display())),
            (SecurityConfig::default().client(Some("")).unwrap_err().to_string(), "invalid config: security: the token from PERMAKEY_TOKEN is empty".to_owned()),
        ];
        for (error, expected) in cases {
            assert_eq!(error, expected);
        }
        let missing = security(Path::new("/no/such/token")).client(None).unwrap_err().to_string();
        assert!(missing.starts_with("invalid config: security: cannot read the token file /no/such/token: "), "{missing}");
        let cert = SecurityConfig { tls_cert: Some("/no/cert.pem".into()), tls_key: Some("/no/key.pem".into()), ..SecurityConfig::default() };
        let error = cert.server(None).unwrap_err().to_string();
        assert!(error.starts_with("invalid config: security: cannot read the TLS certificate /no/cert.pem"), "{error}");
        let cases = [
            (vec!["security.tls_cert=/x.pem"], "security.tls_cert and security.tls_key go together"),
            (vec!["security.tls_domain=x"], "security.tls_domain needs security.tls_ca"),
            (vec!["security.tls_ca=/ca.pem"], "security.tls_ca is set, so cluster.replay must be https://"),
            (vec!["cluster.learner=https://learner:50053"], "cluster.learner is https://"),
        ];
        for (flags, needle) in cases {
            let flags: Vec<String> = flags.into_iter().map(str::to_owned).collect();
            let error = Config::load(None, no_env(), &flags).unwrap_err().to_string();
            assert!(error.contains(needle) && !error.contains('\n'), "{flags:?}: {error}");
        }
        let https = ["security.tls_ca=/ca.pem", "cluster.replay=https://r:1", "cluster.keypoints=https://k:2", "cluster.learner=https://l:3"];
        let config = Config::load(None, no_env(), &https.map(str::to_owned)).unwrap();
        let error = config.security.client(None).unwrap_err().to_string();
        assert!(error.starts_with("invalid config: security: cannot read the TLS CA certificate /ca.pem"), "{error}");
    }
}
