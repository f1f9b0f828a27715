//! The same trait-level code against the in-process transports and the gRPC ones on 127.0.0.1:
//! replay calls give the same answers, and parameters published on the learner's board and
//! fetched by a remote actor give the same Q-values.

use std::{sync::Arc, time::Duration};

use agent::{AgentConfig, FrontEndShape, KeypointAgent, LstmState};
use learner_service::{ParameterBoard, RemoteParameters};
use replay::{RateLimiterConfig, ReplayConfig, ReplayServerConfig, testing::SequenceBuilder};
use replay_service::RemoteReplay;
use tch::{Device, Kind, Tensor, nn};
use trainer::{LocalParameters, LocalReplay, ParameterSink, ParameterSource, Parameters, ReplayClient};

/// Starts `serve` on a runtime thread with a listener on a free port; returns its address.
fn spawn_server<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async move { serve(tokio::net::TcpListener::from_std(listener).unwrap()).await.unwrap() });
    });
    address
}

/// Written once against the trait: insert, count, sample one batch, report priorities.
fn exercise(replay: &mut dyn ReplayClient) -> (usize, Vec<replay::Sequence>) {
    let sequences: Vec<_> = (0..5u8).map(|tag| SequenceBuilder::new(12).obs_shape([4, 4, 3]).keypoints(2).tag(tag).build()).collect();
    replay.insert(sequences).unwrap();
    let len = replay.len();
    let batch = replay.sample(8).unwrap();
    replay.update_priorities(&batch.keys, &vec![0.5; batch.len()]).unwrap();
    let mut drawn: Vec<_> = batch.items.iter().map(|item| (**item).clone()).collect();
    drawn.sort_by_key(|s| s.observations[0]);
    drawn.dedup();
    (len, drawn)
}

#[test]
fn replay_calls_answer_alike_in_process_and_over_grpc() {
    let table = ReplayConfig { capacity_sequences: 16, ..ReplayConfig::default() };
    let server = ReplayServerConfig {
        rate_limiter: RateLimiterConfig { min_size_to_sample: 1, samples_per_insert: 2.0, error_buffer: 100.0 },
        ..ReplayServerConfig::default()
    };
    let served_table = table.clone();
    let address = spawn_server(move |listener| async move {
        replay_service::serve(served_table, server, Default::default(), listener, std::future::pending()).await.map(|_| ())
    });
    let mut remote = RemoteReplay::connect(&format!("http://{address}"), Duration::from_secs(10)).unwrap();
    let mut local = LocalReplay::new(table, 0).unwrap();
    let (local_len, local_drawn) = exercise(&mut local);
    let (remote_len, remote_drawn) = exercise(&mut remote);
    assert_eq!((local_len, remote_len), (5, 5));
    // Each side draws its own random sequences, but every draw is one of the inserted ones,
    // bit for bit, after the trip over the wire.
    for drawn in local_drawn.iter().chain(&remote_drawn) {
        let tag = drawn.observations[0];
        let inserted = SequenceBuilder::new(12).obs_shape([4, 4, 3]).keypoints(2).tag(tag).build();
        assert_eq!(*drawn, inserted);
    }
}

fn q_values(agent: &KeypointAgent) -> Tensor {
    tch::manual_seed(11);
    let centres = Tensor::rand([2, 3, 2], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let features = Tensor::rand([2, 4, 10, 10], (Kind::Float, Device::Cpu));
    agent.step(&centres, &features, &LstmState::zeros(2, Device::Cpu)).0
}

#[test]
fn parameters_published_by_the_learner_reach_a_remote_actor_exactly() {
    let front = FrontEndShape { num_keypoints: 3, feature_channels: 4, feature_size: 10, gauss_std: 0.15 };
    let config = AgentConfig { cnn_channels: 8, ..AgentConfig::default() };
    let learner_vs = nn::VarStore::new(Device::Cpu);
    let learner_agent = KeypointAgent::new(&learner_vs.root(), &config, front, 5);
    let mut actor_vs = nn::VarStore::new(Device::Cpu);
    let actor_agent = KeypointAgent::new(&actor_vs.root(), &config, front, 5);

    let board = Arc::new(ParameterBoard::default());
    let served = board.clone();
    let address = spawn_server(move |listener| learner_service::serve(served, None, Default::default(), listener, std::future::pending()));
    let remote = RemoteParameters::new(&format!("http://{address}"), Duration::from_secs(10)).unwrap();
    let local = LocalParameters::default();
    let sinks: [&dyn ParameterSink; 2] = [&board, &local];
    let sources: [&dyn ParameterSource; 2] = [&remote, &local];

    assert!(remote.fetch_newer(None).unwrap().is_none() && local.fetch_newer(None).unwrap().is_none());
    for version in [0, 3] {
        let parameters = Parameters::from_var_store(version, &learner_vs).unwrap();
        for sink in sinks {
            sink.publish(parameters.clone()).unwrap();
        }
    }
    for source in sources {
        let fetched = source.fetch_newer(Some(0)).unwrap().expect("version 3 is newer than 0");
        assert_eq!(fetched.version, 3);
        assert!(source.fetch_newer(Some(3)).unwrap().is_none());
        fetched.load_into(&mut actor_vs).unwrap();
        assert!(q_values(&actor_agent).equal(&q_values(&learner_agent)), "the actor acts exactly as the learner's network");
    }
}
