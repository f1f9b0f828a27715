//! Every `permakey.v1` message survives an encode/decode round trip with all fields set.

use std::fmt::Debug;

use bytes::Bytes;
use pkrl_proto::v1::*;
use prost::Message;

/// Encodes `message`, decodes it back and checks that nothing was lost; also checks that every
/// field was set (the encoding differs from the default message's).
fn assert_round_trip<M: Message + Default + PartialEq + Debug>(message: M) {
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len());
    let decoded = M::decode(encoded.as_slice()).expect("decode");
    assert_eq!(decoded, message);
    if message != M::default() {
        assert_ne!(encoded, M::default().encode_to_vec());
    }
    // A length-delimited encoding (as on a stream) round trips too.
    let delimited = message.encode_length_delimited_to_vec();
    assert_eq!(
        M::decode_length_delimited(delimited.as_slice()).expect("decode delimited"),
        message
    );
}

fn tensor() -> Tensor {
    Tensor {
        name: "lstm.weight_hh".to_string(),
        shape: vec![2, 2],
        dtype: DType::F32 as i32,
        data: [1.0f32, -2.0, 0.5, 3.25]
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect(),
    }
}

fn frame() -> Frame {
    Frame {
        env_id: 12,
        run_id: u64::MAX - 5,
        step: 1_000_001,
        height: 2,
        width: 3,
        channels: 3,
        pixels: Bytes::from((0..18u8).collect::<Vec<_>>()),
    }
}

fn keypoints() -> Keypoints {
    Keypoints {
        num_keypoints: 2,
        centers: vec![-0.75, 0.25, 0.5, -1.0],
        heatmaps: Some(Tensor {
            name: String::new(),
            shape: vec![1, 1, 2],
            dtype: DType::F32 as i32,
            data: Bytes::from_static(&[0, 0, 128, 63, 0, 0, 0, 0]),
        }),
        features: Some(tensor()),
    }
}

fn item_error() -> ItemError {
    ItemError {
        code: ErrorCode::DeadlineExceeded as i32,
        message: "deadline exceeded".to_string(),
    }
}

fn sequence() -> Sequence {
    Sequence {
        env_id: 4,
        run_id: 77,
        first_step: 120,
        length: 2,
        observations: Some(Tensor {
            name: "frames".to_string(),
            shape: vec![2, 1, 1, 3],
            dtype: DType::U8 as i32,
            data: Bytes::from_static(&[1, 2, 3, 4, 5, 6]),
        }),
        actions: vec![3, 0],
        rewards: vec![1.0, 0.0],
        discounts: vec![1.0, 0.0],
        initial_lstm_hidden: vec![0.25, -0.25],
        initial_lstm_cell: vec![0.125, -0.125],
        priority: 2.5,
        parameter_version: 33,
        // Two steps of two (y, x) keypoint centres.
        keypoints: vec![-0.75, 0.25, 0.5, -1.0, 0.0, 1.0, -0.0, 0.125],
        keypoint_dims: 4,
        burn_in: 1,
        padded_steps: 0,
        truncated: true,
    }
}

fn parameters() -> Parameters {
    Parameters {
        version: 8,
        tensors: vec![
            tensor(),
            Tensor {
                name: "bias".into(),
                ..tensor()
            },
        ],
    }
}

#[test]
fn common_messages_round_trip() {
    assert_round_trip(tensor());
    assert_round_trip(frame());
    assert_round_trip(FrameBatch {
        frames: vec![
            frame(),
            Frame {
                env_id: 13,
                ..frame()
            },
        ],
    });
    assert_round_trip(keypoints());
    assert_round_trip(item_error());
}

#[test]
fn keypoint_service_messages_round_trip() {
    assert_round_trip(InferRequest {
        request_id: 42,
        frames: Some(FrameBatch {
            frames: vec![frame()],
        }),
        include_heatmaps: true,
        include_features: true,
        timeout_ms: 250,
    });
    assert_round_trip(InferResponse {
        request_id: 42,
        keypoints: vec![keypoints(), keypoints()],
        model_version: 3,
        error: None,
        gauss_std: 0.15,
    });
    assert_round_trip(InferResponse {
        request_id: 43,
        keypoints: vec![],
        model_version: 3,
        error: Some(item_error()),
        gauss_std: 0.0,
    });
}

#[test]
fn replay_service_messages_round_trip() {
    assert_round_trip(sequence());
    assert_round_trip(InsertRequest {
        sequences: vec![sequence(), sequence()],
    });
    assert_round_trip(InsertResponse {
        inserted: 10,
        evicted: 2,
    });
    assert_round_trip(SampleRequest { batch_size: 64 });
    let sampled = SampledSequence {
        key: 991,
        priority: 0.75,
        probability: 1.0e-5,
        sequence: Some(sequence()),
        weight: 0.5,
    };
    assert_round_trip(sampled.clone());
    assert_round_trip(SampleResponse {
        samples: vec![sampled],
        replay_size: 100_000,
    });
    assert_round_trip(UpdatePrioritiesRequest {
        keys: vec![1, 991],
        priorities: vec![0.5, 4.0],
    });
    assert_round_trip(UpdatePrioritiesResponse {
        updated: 1,
        missing: 1,
    });
    assert_round_trip(StatsRequest {});
    assert_round_trip(StatsResponse {
        size: 10,
        capacity: 100,
        inserted_total: 12,
        sampled_total: 640,
        evicted_total: 2,
        max_priority: 7.5,
    });
}

#[test]
fn sequence_keypoints_round_trip_bit_exact_and_validate() {
    let message = sequence();
    pkrl_proto::validate::validate_sequence(&message).unwrap();
    let decoded = Sequence::decode(message.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded.keypoint_dims, 4);
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&decoded.keypoints), bits(&message.keypoints));
    pkrl_proto::validate::validate_sequence(&decoded).unwrap();
    // `repeated float` is packed in proto3: field 13, one length-delimited record of 8 floats.
    let keypoints_only = Sequence {
        keypoints: message.keypoints.clone(),
        ..Sequence::default()
    };
    let encoded = keypoints_only.encode_to_vec();
    assert_eq!(encoded[..2], [(13 << 3) | 2, 8 * 4]);
    assert_eq!(encoded.len(), 2 + 8 * 4);
}

/// The `Sequence` of peers built before fields 13 and 14 existed (only some of its fields are
/// declared: prost skips the rest like any unknown field).
#[derive(Clone, PartialEq, prost::Message)]
struct SequenceBeforeKeypoints {
    #[prost(uint32, tag = "1")]
    env_id: u32,
    #[prost(uint32, tag = "4")]
    length: u32,
    #[prost(float, repeated, tag = "7")]
    rewards: Vec<f32>,
    #[prost(uint64, tag = "12")]
    parameter_version: u64,
}

#[test]
fn sequence_keypoints_are_wire_compatible_with_older_peers() {
    // An old peer decodes a new message and ignores the keypoints.
    let new = sequence();
    let old = SequenceBeforeKeypoints::decode(new.encode_to_vec().as_slice()).unwrap();
    assert_eq!(
        old,
        SequenceBeforeKeypoints {
            env_id: new.env_id,
            length: new.length,
            rewards: new.rewards.clone(),
            parameter_version: new.parameter_version,
        }
    );
    // A new peer decodes an old message as one without keypoints.
    let decoded = Sequence::decode(old.encode_to_vec().as_slice()).unwrap();
    assert!(decoded.keypoints.is_empty());
    assert_eq!(decoded.keypoint_dims, 0);
    assert_eq!(decoded.rewards, new.rewards);
}

#[test]
fn learner_service_messages_round_trip() {
    assert_round_trip(parameters());
    assert_round_trip(GetParametersRequest { min_version: 9 });
    assert_round_trip(GetParametersResponse {
        parameters: Some(parameters()),
        latest_version: 8,
    });
    assert_round_trip(GetParametersResponse {
        parameters: None,
        latest_version: 8,
    });
    assert_round_trip(StreamParametersRequest { min_version: 1 });
    assert_round_trip(StreamParametersResponse {
        parameters: Some(parameters()),
    });
}

#[test]
fn truncated_messages_fail_to_decode() {
    let encoded = InsertRequest {
        sequences: vec![sequence()],
    }
    .encode_to_vec();
    let truncated = &encoded[..encoded.len() - 3];
    assert!(InsertRequest::decode(truncated).is_err());
}

#[test]
fn unknown_enum_values_survive_as_integers() {
    // A newer peer may send a dtype this version does not know; it must decode (and then fail
    // validation) rather than fail to parse.
    let future = Tensor {
        dtype: 42,
        ..tensor()
    };
    let decoded = Tensor::decode(future.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded.dtype, 42);
    assert!(DType::try_from(decoded.dtype).is_err());
    assert!(pkrl_proto::validate::validate_tensor(&decoded).is_err());
}
