//! The distributed mode's processes (issue 8), each a thin binary over a function here:
//!
//! - `keypoint-server` ([`run_keypoint_server`]): the frozen keypoint model behind
//!   `permakey.v1.KeypointService` with dynamic batching across all actors (`[keypoint_server]`);
//! - `learner` ([`run_learner`]): the [`trainer::DistributedLearner`] on the replay service, with
//!   the parameter and progress service (`[learner_server]`) and the run folder;
//! - `actor --id N` ([`run_actor_process`]): `train.num_envs` environments acting through the
//!   keypoint service, the replay service and the learner (`[cluster]` endpoints);
//! - `replay-server` (in `src/bin/replay-server.rs`, over the `replay-service` crate).
//!
//! All read the one TOML config (`--config`, `--set`), log with their component's name and stop
//! gracefully on SIGTERM or Ctrl-C: the learner checkpoints, the replay writes its snapshot, the
//! keypoint service answers what it has queued, an actor cuts its episodes into replay.
//! `scripts/cluster.sh` (`make cluster`) starts them all on 127.0.0.1.
//!
//! `[security]` applies to every one: servers require the shared token and serve TLS when
//! configured, clients send the token and use TLS to `https://` endpoints; its files are read
//! before anything else starts, so a bad set-up stops the process at once with one line.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use agent::FrontEndShape;
use keypoint_service::RemoteKeypoints;
use learner_service::RemoteParameters;
use pkrl_config::Config;
use replay_service::RemoteReplay;
use trainer::{
    distributed::{actor_seed, Reporter},
    DistributedLearner, EnvRole, FinalScores, KeypointSource,
};

use crate::train::{env_factory, frozen_front_end};

/// Sets the returned flag on SIGTERM or Ctrl-C (watched by a small runtime on its own thread);
/// a second signal exits at once (status 130), for a process stuck retrying a service that is
/// gone.
pub fn stop_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        runtime.block_on(pkrl_proto::serving::terminated());
        tracing::info!("stop signal received; finishing gracefully (a second signal exits at once)");
        set.store(true, Ordering::Release);
        runtime.block_on(pkrl_proto::serving::terminated());
        tracing::warn!("second stop signal; exiting without finishing");
        std::process::exit(130);
    })?;
    Ok(flag)
}

/// Ids given as `auto` are below this, so `id * train.num_envs` environment numbers stay in u32.
pub const AUTO_ID_RANGE: u32 = 100_000;

/// An actor's id from its `--id` argument: a number, or `auto` (a hash of the host name, below
/// [`AUTO_ID_RANGE`]; two replicas collide with probability ~n^2 / 200,000).
pub fn actor_id(arg: &str) -> anyhow::Result<u32> {
    if arg == "auto" {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .or_else(|_| std::env::var("HOSTNAME"))
            .map_err(|_| anyhow::anyhow!("--id auto: cannot read the host name; pass --id N"))?;
        // FNV-1a, stable across builds and platforms (unlike std's hasher).
        let hash = host.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let id = (hash % u64::from(AUTO_ID_RANGE)) as u32;
        tracing::info!(host, id, "actor id from the host name");
        return Ok(id);
    }
    arg.parse().map_err(|_| anyhow::anyhow!("--id must be a number or auto, got '{arg}'"))
}

fn retry_for(config: &Config) -> Duration {
    Duration::from_secs(config.cluster.retry_for_s)
}

/// The learner process: trains from the replay service and serves parameters and progress on
/// `learner_server.listen` until the budget is spent (then it evaluates, writes
/// `final_scores.json` and exits) or a stop signal (then it checkpoints and exits).
pub fn run_learner(config: &Config, dir: &std::path::Path, resume: bool, listen: Option<SocketAddr>, idle_when_done: bool) -> anyhow::Result<Option<FinalScores>> {
    check_sampling_can_start(config)?;
    let server_security = config.server_security()?;
    let client_security = config.client_security()?;
    let stop = stop_on_signal()?;
    let front = frozen_front_end(config)?;
    let envs = env_factory(config)?;
    let mut learner = DistributedLearner::new(config.trainer_settings(), config.run.seed, dir, front, envs, resume)?;
    let board = Arc::new(learner_service::ParameterBoard::default());
    let listen = listen.unwrap_or(config.learner_server.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(listen)).map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(learner_service::serve(board.clone(), Some(learner.progress()), server_security, listener, async move {
        let _ = shutdown_rx.await;
    }));
    let sampler = RemoteReplay::connect_secured(&config.cluster.replay, retry_for(config), &client_security)?;
    let mut replay = RemoteReplay::connect_secured(&config.cluster.replay, retry_for(config), &client_security)?;
    let outcome = learner.run(Box::new(sampler), &mut replay, &board, &stop);
    if idle_when_done && matches!(outcome, Ok(Some(_))) {
        // Keep answering actors (`done`) and serving the final parameters until stopped.
        tracing::info!("budget spent and evaluated; serving until stopped (--idle-when-done)");
        wait_for(&stop);
    }
    let _ = shutdown_tx.send(());
    runtime.block_on(serving)??;
    outcome
}

/// Sleeps until `stop` is set.
fn wait_for(stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Refuses a replay rate limiter that cannot let the learner sample within the run's budget:
/// `min_size_to_sample` sequences must fit well inside the about `agent_steps / sequence.period`
/// sequences the actors write (each environment writes one per `period` steps).
pub fn check_sampling_can_start(config: &Config) -> anyhow::Result<()> {
    let t = config.trainer_settings().train;
    let period = config.sequence.period.max(1) as u64;
    let reachable = t.agent_steps / period;
    let min_size = config.replay_server.rate_limiter.min_size_to_sample;
    anyhow::ensure!(
        min_size <= reachable / 2,
        "replay_server.rate_limiter.min_size_to_sample = {min_size} sequences, but the run's {} agent steps write only about {reachable} (one per sequence.period = {period} steps): the learner would start late or never; lower it, e.g. to train.learning_starts / sequence.period = {}",
        t.agent_steps,
        t.learning_starts / period
    );
    Ok(())
}

/// The front end's shape as the keypoint service reports it (one blank frame).
fn probe_shape(front: &mut RemoteKeypoints, obs_shape: [usize; 3]) -> anyhow::Result<FrontEndShape> {
    let blank = vec![0u8; obs_shape.iter().product()];
    let out = front.infer(&blank, 1, obs_shape, true)?;
    let [c, h, w] = out.feature_shape;
    anyhow::ensure!(out.num_keypoints > 0 && c > 0 && h == w, "the keypoint service reported {} keypoints and features {:?}", out.num_keypoints, out.feature_shape);
    Ok(FrontEndShape { num_keypoints: out.num_keypoints as i64, feature_channels: c as i64, feature_size: h as i64, gauss_std: out.gauss_std })
}

/// [`RemoteKeypoints`] as the actor's [`KeypointSource`].
struct ServiceKeypoints(RemoteKeypoints);

impl KeypointSource for ServiceKeypoints {
    fn infer(&mut self, frames: &[u8], n: usize, shape: [usize; 3], device: tch::Device) -> anyhow::Result<(tch::Tensor, tch::Tensor)> {
        let out = self.0.infer(frames, n, shape, true)?;
        let [c, h, w] = out.feature_shape.map(|x| x as i64);
        let centres = tch::Tensor::from_slice(&out.centres).view([n as i64, out.num_keypoints as i64, 2]).to_device(device);
        let features = tch::Tensor::from_slice(&out.features_hwc).view([n as i64, h, w, c]).permute([0, 3, 1, 2]).contiguous().to_device(device);
        Ok((centres, features))
    }
}

/// One actor process: acts until the learner reports the budget spent or a stop signal.
pub fn run_actor_process(config: &Config, actor_id: u32, idle_when_done: bool) -> anyhow::Result<trainer::ActorSummary> {
    let security = config.client_security()?;
    tracing::info!(token = security.sends_token(), tls = security.uses_tls(), "security");
    let stop = stop_on_signal()?;
    if config.cluster.actor_torch_threads > 0 {
        tch::set_num_threads(config.cluster.actor_torch_threads as i32);
    }
    let settings = config.trainer_settings();
    let run_id = rand::random::<u64>();
    let mut envs = env_factory(config)?;
    let mut env = envs(EnvRole::Train { num_envs: settings.train.num_envs }, actor_seed(config.run.seed, 1, actor_id, run_id))?;
    let mut keypoints = RemoteKeypoints::connect_secured(&config.cluster.keypoints, retry_for(config), &security)?;
    let shape = probe_shape(&mut keypoints, env.obs_shape())?;
    let mut replay = RemoteReplay::connect_secured(&config.cluster.replay, retry_for(config), &security)?;
    let learner = Arc::new(RemoteParameters::new_secured(&config.cluster.learner, retry_for(config), &security)?);
    let mut reporter = Reporter { board: learner.clone(), actor_id, run_id, envs_per_actor: settings.train.num_envs };
    tracing::info!(actor = actor_id, run_id, envs = settings.train.num_envs, keypoints = shape.num_keypoints, "actor starting");
    let summary = trainer::run_actor(
        &settings,
        actor_id,
        actor_seed(config.run.seed, 3, actor_id, run_id),
        shape,
        env.as_mut(),
        &mut ServiceKeypoints(keypoints),
        &mut replay,
        learner.as_ref(),
        &mut reporter,
        &stop,
    )?;
    if idle_when_done && summary.finished_budget {
        tracing::info!(actor = actor_id, "budget spent; idle until stopped (--idle-when-done)");
        wait_for(&stop);
    }
    Ok(summary)
}

/// The keypoint service: the frozen model of `keypoints` behind gRPC until a stop signal.
pub fn run_keypoint_server(config: &Config, listen: Option<SocketAddr>) -> anyhow::Result<keypoint_service::ServeReport> {
    let security = config.server_security()?;
    if config.keypoint_server.torch_threads > 0 {
        tch::set_num_threads(config.keypoint_server.torch_threads as i32);
    }
    let front = frozen_front_end(config)?;
    let mut server_config = config.keypoint_server.clone();
    if let Some(listen) = listen {
        server_config.listen = listen;
    }
    let version = model_version(config.keypoints.checkpoint.as_ref());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(server_config.listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", server_config.listen))?;
        keypoint_service::serve(front, version, server_config, security, listener, pkrl_proto::serving::terminated()).await
    })
}

/// The keypoint model's version: the training step of its checkpoint (1 for the oracle).
fn model_version(checkpoint: Option<&PathBuf>) -> u64 {
    checkpoint
        .and_then(|path| permakey::checkpoint::resolve(path).ok())
        .and_then(|dir| std::fs::read_to_string(dir.join("checkpoint.json")).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|meta| meta.get("step").and_then(serde_json::Value::as_u64))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_ids_are_numbers_or_derived_from_the_host_name() {
        assert_eq!(actor_id("17").unwrap(), 17);
        assert_eq!(actor_id("x").unwrap_err().to_string(), "--id must be a number or auto, got 'x'");
        let auto = actor_id("auto").unwrap();
        assert!(auto < AUTO_ID_RANGE);
        assert_eq!(actor_id("auto").unwrap(), auto, "stable for one host");
    }

    #[test]
    fn a_rate_limiter_that_cannot_start_sampling_within_the_budget_is_refused() {
        let mut config = Config::default();
        check_sampling_can_start(&config).unwrap();
        config.train.agent_steps = 8000;
        config.train.learning_starts = 2000;
        let error = check_sampling_can_start(&config).unwrap_err().to_string();
        assert!(error.starts_with("replay_server.rate_limiter.min_size_to_sample = 1250 sequences, but the run's 8000 agent steps write only about 1000"), "{error}");
        assert!(error.contains("= 250"), "suggests learning_starts / period: {error}");
        config.replay_server.rate_limiter.min_size_to_sample = 125;
        check_sampling_can_start(&config).unwrap();
    }
}
