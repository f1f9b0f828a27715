//! Prometheus metrics of every PermaKey-RL process.
//!
//! - [`names`]: the catalogue — every metric's name, in one place, named by Prometheus
//!   conventions (`pkrl_` prefix, base units in the name: `_seconds`, `_bytes`, `_ratio`;
//!   counters end in `_total`). Libraries record with the `metrics` facade macros and these names;
//!   with no exporter installed the macros cost next to nothing.
//! - [`describe`]: help texts and units, sent with every scrape.
//! - [`install`]: the exporter a binary starts at `[metrics] listen` (an HTTP `/metrics`
//!   endpoint), with a global `component` label (and any extra ones, e.g. the actor's id), bucket
//!   layouts for the histograms, and a background thread that samples process CPU and memory
//!   (`process_*`, from `metrics-process`) and, where NVML finds an NVIDIA GPU, its utilisation
//!   and memory.
//!
//! Decisions:
//! - Latencies and batch sizes are histograms with fixed buckets ([`LATENCY_BUCKETS`],
//!   [`BATCH_BUCKETS`]) so quantiles aggregate across replicas (`histogram_quantile`); episode
//!   returns and lengths, whose range depends on the game, are summaries (the exporter's quantiles,
//!   plus `_sum` and `_count` for means).
//! - Per-update learner figures (loss, mean Q, gradient norm) are gauges holding the last value;
//!   dashboards smooth them with `avg_over_time`.
//! - The exporter runs on its own thread (the crate starts a small runtime when the process has
//!   none), so a process stuck in training still answers scrapes.

use std::{net::SocketAddr, time::Duration};

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Metric names (see the crate docs for the conventions).
pub mod names {
    // ---- actors (and the embedded trainer's actor) ----
    /// Counter: agent steps taken (one action of one environment).
    pub const AGENT_STEPS: &str = "pkrl_agent_steps_total";
    /// Counter: emulator frames (agent steps x frame skip).
    pub const ENV_FRAMES: &str = "pkrl_env_frames_total";
    /// Counter: games (all lives) finished.
    pub const EPISODES: &str = "pkrl_episodes_total";
    /// Summary: raw return of each finished game.
    pub const EPISODE_RETURN: &str = "pkrl_episode_return";
    /// Summary: agent steps of each finished game.
    pub const EPISODE_LENGTH: &str = "pkrl_episode_length_steps";
    /// Gauge: exploration epsilon the actor acts with.
    pub const ACTOR_EPSILON: &str = "pkrl_actor_epsilon";
    /// Gauge: learner updates the actor's parameters are behind the learner's newest.
    pub const ACTOR_PARAMETER_LAG: &str = "pkrl_actor_parameter_version_lag";
    /// Histogram: each wait of an actor for the learner's schedule (`_sum`: seconds held).
    pub const ACTOR_HELD_SECONDS: &str = "pkrl_actor_held_seconds";
    /// Histogram: an actor's round trip for the keypoints of one vector step.
    pub const KEYPOINT_CLIENT_SECONDS: &str = "pkrl_keypoint_client_request_seconds";

    // ---- keypoint service ----
    /// Counter: frames run through the keypoint model.
    pub const KEYPOINT_FRAMES: &str = "pkrl_keypoint_frames_total";
    /// Histogram: frames per model forward.
    pub const KEYPOINT_BATCH_SIZE: &str = "pkrl_keypoint_batch_size_frames";
    /// Histogram: duration of one model forward (batch function).
    pub const KEYPOINT_BATCH_SECONDS: &str = "pkrl_keypoint_batch_seconds";
    /// Histogram: a request's time in the service, from receipt to answer.
    pub const KEYPOINT_REQUEST_SECONDS: &str = "pkrl_keypoint_request_seconds";
    /// Gauge: frames waiting in the batcher's queue.
    pub const KEYPOINT_QUEUE_DEPTH: &str = "pkrl_keypoint_queue_depth_frames";
    /// Counter: requests answered with an error, by `reason` (invalid, overloaded, deadline,
    /// unavailable, internal).
    pub const KEYPOINT_REQUEST_ERRORS: &str = "pkrl_keypoint_request_errors_total";
    /// Gauge: actor streams open.
    pub const KEYPOINT_STREAMS: &str = "pkrl_keypoint_open_streams";

    // ---- replay ----
    /// Gauge: sequences held.
    pub const REPLAY_SIZE: &str = "pkrl_replay_size_sequences";
    /// Gauge: the replay's capacity.
    pub const REPLAY_CAPACITY: &str = "pkrl_replay_capacity_sequences";
    /// Counter: sequences inserted.
    pub const REPLAY_INSERTS: &str = "pkrl_replay_inserts_total";
    /// Counter: sequences sampled (items, not batches).
    pub const REPLAY_SAMPLES: &str = "pkrl_replay_sampled_items_total";
    /// Counter: sequences evicted by newer ones.
    pub const REPLAY_EVICTIONS: &str = "pkrl_replay_evictions_total";
    /// Histogram: time an insert or a sample (`op`) waited in the rate limiter.
    pub const REPLAY_LIMITER_WAIT_SECONDS: &str = "pkrl_replay_rate_limiter_wait_seconds";
    /// Counter: rate-limiter waits that ran out (`op` = insert | sample).
    pub const REPLAY_LIMITER_TIMEOUTS: &str = "pkrl_replay_rate_limiter_timeouts_total";
    /// Counter: snapshots written.
    pub const REPLAY_SNAPSHOTS: &str = "pkrl_replay_snapshots_total";
    /// Histogram: time to write one snapshot.
    pub const REPLAY_SNAPSHOT_SECONDS: &str = "pkrl_replay_snapshot_seconds";
    /// Counter: requests refused as malformed (any gRPC service), by `service`.
    pub const INVALID_REQUESTS: &str = "pkrl_invalid_requests_total";

    // ---- learner ----
    /// Counter: gradient updates.
    pub const LEARNER_UPDATES: &str = "pkrl_learner_updates_total";
    /// Histogram: one update (forward, backward, optimiser step).
    pub const LEARNER_UPDATE_SECONDS: &str = "pkrl_learner_update_seconds";
    /// Gauge: TD loss of the last update.
    pub const LEARNER_LOSS: &str = "pkrl_learner_loss";
    /// Gauge: mean Q-value of the last update's batch.
    pub const LEARNER_Q_MEAN: &str = "pkrl_learner_q_mean";
    /// Gauge: gradient norm (before clipping) of the last update.
    pub const LEARNER_GRAD_NORM: &str = "pkrl_learner_grad_norm";
    /// Counter: sampled frames whose front-end features the learner took from its feature cache.
    pub const LEARNER_FEATURES_CACHED: &str = "pkrl_learner_features_cached_total";
    /// Counter: sampled frames whose front-end features the learner computed.
    pub const LEARNER_FEATURES_COMPUTED: &str = "pkrl_learner_features_computed_total";
    /// Gauge: the parameter version the learner has published (its update count).
    pub const LEARNER_PARAMETER_VERSION: &str = "pkrl_learner_parameter_version";
    /// Gauge: agent steps of the whole run (all actors).
    pub const LEARNER_RUN_AGENT_STEPS: &str = "pkrl_learner_run_agent_steps";
    /// Gauge: the run's budget of agent steps.
    pub const LEARNER_BUDGET_AGENT_STEPS: &str = "pkrl_learner_budget_agent_steps";
    /// Histogram: each wait of the learner for a sampled batch (`_sum`: seconds waited).
    pub const LEARNER_BATCH_WAIT_SECONDS: &str = "pkrl_learner_batch_wait_seconds";
    /// Gauge: mean greedy return of the last evaluation.
    pub const EVAL_RETURN: &str = "pkrl_eval_return";
    /// Counter: parameter snapshots served to actors.
    pub const PARAMETER_FETCHES: &str = "pkrl_parameter_fetches_total";
    /// Gauge: actors that reported progress within the last 30 s.
    pub const LEARNER_ACTORS: &str = "pkrl_learner_connected_actors";

    // ---- GPU (where NVML finds one) ----
    /// Gauge: GPU busy share over the last sample period, 0..1, by `gpu`.
    pub const GPU_UTILIZATION: &str = "pkrl_gpu_utilization_ratio";
    /// Gauge: GPU memory in use, by `gpu`.
    pub const GPU_MEMORY_USED: &str = "pkrl_gpu_memory_used_bytes";
}

/// Buckets of every `_seconds` histogram: 100 us to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of the keypoint batch-size histogram (frames).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Help texts and units of the catalogue.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use names::*;
    describe_counter!(AGENT_STEPS, Unit::Count, "Agent steps taken (one action of one environment).");
    describe_counter!(ENV_FRAMES, Unit::Count, "Emulator frames (agent steps x frame skip).");
    describe_counter!(EPISODES, Unit::Count, "Games (all lives) finished.");
    describe_histogram!(EPISODE_RETURN, "Raw return of each finished game.");
    describe_histogram!(EPISODE_LENGTH, Unit::Count, "Agent steps of each finished game.");
    describe_gauge!(ACTOR_EPSILON, "Exploration epsilon the actor acts with.");
    describe_gauge!(ACTOR_PARAMETER_LAG, Unit::Count, "Learner updates the actor's parameters are behind the learner's newest.");
    describe_histogram!(ACTOR_HELD_SECONDS, Unit::Seconds, "Each wait of an actor for the learner's schedule.");
    describe_histogram!(KEYPOINT_CLIENT_SECONDS, Unit::Seconds, "An actor's round trip for the keypoints of one vector step.");
    describe_counter!(KEYPOINT_FRAMES, Unit::Count, "Frames run through the keypoint model.");
    describe_histogram!(KEYPOINT_BATCH_SIZE, Unit::Count, "Frames per keypoint model forward.");
    describe_histogram!(KEYPOINT_BATCH_SECONDS, Unit::Seconds, "Duration of one keypoint model forward.");
    describe_histogram!(KEYPOINT_REQUEST_SECONDS, Unit::Seconds, "A keypoint request's time in the service, from receipt to answer.");
    describe_gauge!(KEYPOINT_QUEUE_DEPTH, Unit::Count, "Frames waiting in the keypoint batcher's queue.");
    describe_counter!(KEYPOINT_REQUEST_ERRORS, Unit::Count, "Keypoint requests answered with an error, by reason.");
    describe_gauge!(KEYPOINT_STREAMS, Unit::Count, "Keypoint streams open.");
    describe_gauge!(REPLAY_SIZE, Unit::Count, "Sequences held by the replay.");
    describe_gauge!(REPLAY_CAPACITY, Unit::Count, "Capacity of the replay in sequences.");
    describe_counter!(REPLAY_INSERTS, Unit::Count, "Sequences inserted into the replay.");
    describe_counter!(REPLAY_SAMPLES, Unit::Count, "Sequences sampled from the replay.");
    describe_counter!(REPLAY_EVICTIONS, Unit::Count, "Sequences evicted by newer ones.");
    describe_histogram!(REPLAY_LIMITER_WAIT_SECONDS, Unit::Seconds, "Time an insert or a sample waited in the rate limiter.");
    describe_counter!(REPLAY_LIMITER_TIMEOUTS, Unit::Count, "Rate-limiter waits that ran out.");
    describe_counter!(REPLAY_SNAPSHOTS, Unit::Count, "Replay snapshots written.");
    describe_histogram!(REPLAY_SNAPSHOT_SECONDS, Unit::Seconds, "Time to write one replay snapshot.");
    describe_counter!(INVALID_REQUESTS, Unit::Count, "Requests refused as malformed, by service.");
    describe_counter!(LEARNER_UPDATES, Unit::Count, "Gradient updates of the learner.");
    describe_histogram!(LEARNER_UPDATE_SECONDS, Unit::Seconds, "One learner update (forward, backward, optimiser step).");
    describe_gauge!(LEARNER_LOSS, "TD loss of the last update.");
    describe_gauge!(LEARNER_Q_MEAN, "Mean Q-value of the last update's batch.");
    describe_gauge!(LEARNER_GRAD_NORM, "Gradient norm of the last update, before clipping.");
    describe_counter!(LEARNER_FEATURES_CACHED, Unit::Count, "Sampled frames whose front-end features came from the learner's feature cache.");
    describe_counter!(LEARNER_FEATURES_COMPUTED, Unit::Count, "Sampled frames whose front-end features the learner computed.");
    describe_gauge!(LEARNER_PARAMETER_VERSION, Unit::Count, "Parameter version the learner has published.");
    describe_gauge!(LEARNER_RUN_AGENT_STEPS, Unit::Count, "Agent steps of the whole run, all actors.");
    describe_gauge!(LEARNER_BUDGET_AGENT_STEPS, Unit::Count, "The run's budget of agent steps.");
    describe_histogram!(LEARNER_BATCH_WAIT_SECONDS, Unit::Seconds, "Each wait of the learner for a sampled batch.");
    describe_gauge!(EVAL_RETURN, "Mean greedy return of the last evaluation.");
    describe_counter!(PARAMETER_FETCHES, Unit::Count, "Parameter snapshots served to actors.");
    describe_gauge!(LEARNER_ACTORS, Unit::Count, "Actors that reported progress within the last 30 s.");
    describe_gauge!(GPU_UTILIZATION, Unit::Percent, "GPU busy share over the last sample period (0..1).");
    describe_gauge!(GPU_MEMORY_USED, Unit::Bytes, "GPU memory in use.");
}

/// How often process and GPU gauges are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The running exporter.
pub struct Telemetry {
    /// Where `/metrics` is served.
    pub address: SocketAddr,
}

/// Starts the `/metrics` endpoint on `listen` for `component` (a global label, with `labels`);
/// `None` = no exporter (the metric macros then record nothing). Call once per process, before
/// the work starts. A port already in use is an error naming the address.
pub fn install(listen: Option<SocketAddr>, component: &str, labels: &[(&str, String)]) -> anyhow::Result<Option<Telemetry>> {
    let Some(address) = listen else { return Ok(None) };
    // Bind first so a taken port is a clear error here, not a log line from the exporter's thread.
    drop(std::net::TcpListener::bind(address).map_err(|e| anyhow::anyhow!("metrics.listen {address}: {e}"))?);
    let mut builder = PrometheusBuilder::new()
        .with_http_listener(address)
        .add_global_label("component", component)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(names::KEYPOINT_BATCH_SIZE.into()), BATCH_BUCKETS)?;
    for (key, value) in labels {
        builder = builder.add_global_label(*key, value.clone());
    }
    builder.install().map_err(|e| anyhow::anyhow!("cannot start the metrics exporter on {address}: {e}"))?;
    describe();
    metrics_process::Collector::default().describe();
    std::thread::Builder::new().name("metrics-sampler".into()).spawn(sample_forever)?;
    tracing::info!(%address, "Prometheus metrics at http://{address}/metrics");
    Ok(Some(Telemetry { address }))
}

/// Samples process (CPU seconds, resident memory, threads, open files) and GPU gauges every
/// [`SAMPLE_EVERY`].
fn sample_forever() {
    let process = metrics_process::Collector::default();
    let gpu = nvml_wrapper::Nvml::init().ok();
    match &gpu {
        Some(nvml) => tracing::info!(devices = nvml.device_count().unwrap_or(0), "GPU metrics from NVML"),
        None => tracing::debug!("no NVML (no NVIDIA driver): no GPU metrics"),
    }
    loop {
        process.collect();
        if let Some(nvml) = &gpu {
            sample_gpus(nvml);
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

fn sample_gpus(nvml: &nvml_wrapper::Nvml) {
    let count = nvml.device_count().unwrap_or(0);
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else { continue };
        let label = [("gpu", index.to_string())];
        if let Ok(rates) = device.utilization_rates() {
            metrics::gauge!(names::GPU_UTILIZATION, &label).set(f64::from(rates.gpu) / 100.0);
        }
        if let Ok(memory) = device.memory_info() {
            metrics::gauge!(names::GPU_MEMORY_USED, &label).set(memory.used as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let all = [
            names::AGENT_STEPS,
            names::ENV_FRAMES,
            names::EPISODES,
            names::KEYPOINT_FRAMES,
            names::KEYPOINT_REQUEST_ERRORS,
            names::REPLAY_INSERTS,
            names::REPLAY_SAMPLES,
            names::REPLAY_EVICTIONS,
            names::REPLAY_LIMITER_TIMEOUTS,
            names::REPLAY_SNAPSHOTS,
            names::INVALID_REQUESTS,
            names::LEARNER_UPDATES,
            names::PARAMETER_FETCHES,
        ];
        for counter in all {
            assert!(counter.starts_with("pkrl_") && counter.ends_with("_total"), "{counter}");
        }
        for name in [names::ACTOR_HELD_SECONDS, names::LEARNER_BATCH_WAIT_SECONDS, names::KEYPOINT_BATCH_SECONDS, names::KEYPOINT_REQUEST_SECONDS, names::KEYPOINT_CLIENT_SECONDS, names::REPLAY_LIMITER_WAIT_SECONDS, names::LEARNER_UPDATE_SECONDS] {
            assert!(name.ends_with("_seconds"), "{name}: histograms of time are in seconds");
        }
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]) && BATCH_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_exporter_serves_recorded_metrics_with_the_component_label() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        install(Some(address), "test", &[("actor_id", "3".into())]).unwrap();
        metrics::counter!(names::AGENT_STEPS).increment(5);
        metrics::histogram!(names::LEARNER_UPDATE_SECONDS).record(0.003);
        metrics::histogram!(names::EPISODE_RETURN).record(120.0);
        let body = (0..50)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(100));
                let mut stream = std::net::TcpStream::connect(address).ok()?;
                use std::io::{Read, Write};
                stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
                let mut text = String::new();
                stream.read_to_string(&mut text).ok()?;
                text.contains("pkrl_agent_steps_total").then_some(text)
            })
            .expect("the exporter answered");
        assert!(body.contains(r#"pkrl_agent_steps_total{component="test",actor_id="3"} 5"#) || body.contains(r#"pkrl_agent_steps_total{actor_id="3",component="test"} 5"#), "{body}");
        assert!(body.contains("# HELP pkrl_agent_steps_total Agent steps taken"), "{body}");
        assert!(body.contains("pkrl_learner_update_seconds_bucket"), "histograms with buckets: {body}");
        assert!(body.contains(r#"pkrl_episode_return{"#) && body.contains("quantile="), "returns as a summary: {body}");
        // A second exporter on the same port is a clear error.
        let error = install(Some(address), "again", &[]).err().unwrap().to_string();
        assert!(error.contains(&address.to_string()), "{error}");
    }
}
