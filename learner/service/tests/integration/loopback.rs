//! The parameter service on 127.0.0.1: fetch, follow, version order, restarts and shutdown.

use crate::support;

use std::{sync::Arc, time::Duration};

use learner_service::{NamedArray, ParameterBoard, RemoteParameters};
use pkrl_proto::v1::{self, learner_service_client::LearnerServiceClient};
use tokio_stream::StreamExt;

fn arrays(value: f32) -> Vec<NamedArray> {
    vec![("q.weight".into(), vec![2, 3], vec![value; 6]), ("q.bias".into(), vec![3], vec![-value; 3])]
}

#[test]
fn actors_fetch_only_newer_versions() {
    let board = Arc::new(ParameterBoard::default());
    let server = support::start(board.clone(), None, Default::default(), "127.0.0.1:0");
    let client = RemoteParameters::new(&format!("http://{}", server.address), Duration::from_secs(5)).unwrap();
    assert_eq!(client.fetch_newer(None).unwrap(), None, "nothing published yet");
    assert_eq!(client.latest_version().unwrap(), 0);
    board.publish_arrays(1, &arrays(1.0)).unwrap();
    board.publish_arrays(4, &arrays(4.0)).unwrap();
    assert_eq!(client.fetch_newer(None).unwrap(), Some((4, arrays(4.0))));
    assert_eq!(client.fetch_newer(Some(4)).unwrap(), None);
    assert_eq!(client.fetch_newer(Some(3)).unwrap(), Some((4, arrays(4.0))));
    assert_eq!(client.latest_version().unwrap(), 4);
    assert!(server.stop_timed().1 < Duration::from_secs(4), "idle clients do not hold up shutdown");
}

#[test]
fn followers_see_strictly_increasing_versions_and_streams_end_at_shutdown() {
    let board = Arc::new(ParameterBoard::default());
    board.publish_arrays(1, &arrays(1.0)).unwrap();
    let server = support::start(board.clone(), None, Default::default(), "127.0.0.1:0");
    let endpoint = format!("http://{}", server.address);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let versions = runtime.block_on(async {
        let mut client = LearnerServiceClient::connect(endpoint).await.unwrap();
        let mut stream = client.stream_parameters(v1::StreamParametersRequest { min_version: 0 }).await.unwrap().into_inner();
        let first = stream.next().await.unwrap().unwrap().parameters.unwrap().version;
        let publisher = board.clone();
        std::thread::spawn(move || {
            for version in 2..=30 {
                publisher.publish_arrays(version, &arrays(version as f32)).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut versions = vec![first];
        while *versions.last().unwrap() < 30 {
            let message = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
            versions.push(message.parameters.unwrap().version);
        }
        versions
    });
    assert_eq!(versions[0], 1);
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(*versions.last().unwrap(), 30);
    assert!(server.stop_timed().1 < Duration::from_secs(4), "open streams end at shutdown");
}

#[test]
fn a_restarted_learner_is_picked_up_by_the_same_client() {
    let board = Arc::new(ParameterBoard::default());
    board.publish_arrays(7, &arrays(7.0)).unwrap();
    let server = support::start(board.clone(), None, Default::default(), "127.0.0.1:0");
    let address = server.address;
    let client = RemoteParameters::new(&format!("http://{address}"), Duration::from_secs(10)).unwrap();
    assert_eq!(client.fetch_newer(None).unwrap().unwrap().0, 7);
    server.stop();
    // A new learner process on the same port, resumed from a checkpoint with version 9.
    let resumed = Arc::new(ParameterBoard::default());
    resumed.publish_arrays(9, &arrays(9.0)).unwrap();
    let again = support::start(resumed, None, Default::default(), &address.to_string());
    assert_eq!(client.fetch_newer(Some(7)).unwrap(), Some((9, arrays(9.0))));
    again.stop();
    // With the learner gone the call gives up after its retry budget, with a clear message.
    let impatient = RemoteParameters::new(&format!("http://{address}"), Duration::from_millis(300)).unwrap();
    let error = impatient.fetch_newer(None).unwrap_err().to_string();
    assert!(error.contains("Unavailable") && error.contains(&address.to_string()), "{error}");
}
