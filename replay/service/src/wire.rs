//! Conversions between the replay library's [`Sequence`] and the wire's [`v1::Sequence`].
//!
//! Mapping (the wire is documented in `proto/permakey/v1/replay_service.proto`):
//! - observations: `T x h x w x c` bytes <-> a `U8` tensor of shape `[T, h, w, c]`;
//! - actions: `u16` <-> `int32` (values outside `0..=65535` are refused);
//! - dones <-> discounts: `done` is discount 0, otherwise discount 1; a discount strictly between
//!   0 and 1 is refused (the actor stores episode ends, the learner applies gamma);
//! - recurrent state: the library's one vector (LSTM `h` then `c`) <-> `initial_lstm_hidden` and
//!   `initial_lstm_cell`, each half of it;
//! - the sample key: [`SampleKey::generation`] (the slot is `generation % capacity`).
//!
//! Incoming messages are checked twice: [`pkrl_proto::validate::validate_sequence`] (wire
//! limits and shapes), then [`Sequence::validate`] (the library's invariants, e.g. padding
//! steps have zero frames). Either failure is one line naming the field.

use bytes::Bytes;
use pkrl_proto::{v1, validate::validate_sequence};
use replay::{SampleKey, Sequence};

/// Why a wire sequence could not become a library sequence (or the reverse).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Invalid(#[from] pkrl_proto::validate::ValidationError),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
}

impl From<WireError> for tonic::Status {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Invalid(error) => error.into(),
            other => tonic::Status::invalid_argument(other.to_string()),
        }
    }
}

fn field_error(field: impl Into<String>, reason: impl Into<String>) -> WireError {
    WireError::Field { field: field.into(), reason: reason.into() }
}

/// The wire form of `sequence`, with `priority` as its initial priority (0: the replay's
/// default).
pub fn sequence_to_wire(sequence: &Sequence, priority: f32) -> Result<v1::Sequence, WireError> {
    let state = &sequence.initial_recurrent_state;
    if state.len() % 2 != 0 {
        return Err(field_error("initial_recurrent_state", format!("has {} floats; LSTM h and c need an even count", state.len())));
    }
    let (hidden, cell) = state.split_at(state.len() / 2);
    let steps = sequence.len();
    let [h, w, c] = sequence.obs_shape;
    Ok(v1::Sequence {
        env_id: sequence.env_id,
        run_id: sequence.run_id,
        first_step: 0,
        length: u32::try_from(steps).map_err(|_| field_error("length", format!("{steps} steps do not fit u32")))?,
        observations: Some(v1::Tensor {
            name: "observations".to_owned(),
            shape: [steps, h, w, c].iter().map(|&d| d as u64).collect(),
            dtype: v1::DType::U8 as i32,
            data: Bytes::copy_from_slice(&sequence.observations),
        }),
        actions: sequence.actions.iter().map(|&a| i32::from(a)).collect(),
        rewards: sequence.rewards.clone(),
        discounts: sequence.dones.iter().map(|&done| if done { 0.0 } else { 1.0 }).collect(),
        initial_lstm_hidden: hidden.to_vec(),
        initial_lstm_cell: cell.to_vec(),
        priority,
        parameter_version: sequence.parameter_version,
        keypoints: sequence.keypoints.clone(),
        keypoint_dims: u32::from(sequence.keypoint_dims),
        burn_in: u32::from(sequence.burn_in),
        padded_steps: u32::from(sequence.padded_steps),
        truncated: sequence.truncated,
    })
}

/// The library form of a wire sequence and its initial priority, after both validations.
pub fn sequence_from_wire(message: v1::Sequence) -> Result<(Sequence, f32), WireError> {
    validate_sequence(&message)?;
    sequence_from_validated_wire(message)
}

/// [`sequence_from_wire`] for a message that already passed
/// [`pkrl_proto::validate::validate_sequence`] (e.g. inside a checked `InsertRequest`): only the
/// conversion and the library's own [`Sequence::validate`].
pub fn sequence_from_validated_wire(message: v1::Sequence) -> Result<(Sequence, f32), WireError> {
    let observations = message.observations.ok_or_else(|| field_error("observations", "missing"))?;
    if observations.dtype != v1::DType::U8 as i32 {
        return Err(field_error("observations.dtype", "must be U8 (frame bytes)"));
    }
    let shape = &observations.shape;
    if shape.len() != 4 {
        return Err(field_error("observations.shape", format!("must be [T, height, width, channels], got {shape:?}")));
    }
    let dim = |i: usize, name: &str| {
        u16::try_from(shape[i]).map(usize::from).map_err(|_| field_error("observations.shape", format!("{name} {} is too large", shape[i])))
    };
    let obs_shape = [dim(1, "height")?, dim(2, "width")?, dim(3, "channels")?];
    let actions = message
        .actions
        .iter()
        .enumerate()
        .map(|(t, &a)| u16::try_from(a).map_err(|_| field_error(format!("actions[{t}]"), format!("{a} is not an action index (0..=65535)"))))
        .collect::<Result<Vec<_>, _>>()?;
    let dones = message
        .discounts
        .iter()
        .enumerate()
        .map(|(t, &d)| match d {
            0.0 => Ok(true),
            1.0 => Ok(false),
            _ => Err(field_error(format!("discounts[{t}]"), format!("{d} must be 0 (episode end) or 1"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let narrow = |value: u32, name: &str| u16::try_from(value).map_err(|_| field_error(name, format!("{value} is too large")));
    let mut initial_recurrent_state = message.initial_lstm_hidden;
    initial_recurrent_state.extend_from_slice(&message.initial_lstm_cell);
    let sequence = Sequence {
        env_id: message.env_id,
        run_id: message.run_id,
        observations: observations.data.to_vec(),
        obs_shape,
        keypoints: message.keypoints,
        keypoint_dims: narrow(message.keypoint_dims, "keypoint_dims")?,
        actions,
        rewards: message.rewards,
        dones,
        truncated: message.truncated,
        burn_in: narrow(message.burn_in, "burn_in")?,
        padded_steps: narrow(message.padded_steps, "padded_steps")?,
        initial_recurrent_state,
        parameter_version: message.parameter_version,
    };
    sequence.validate()?;
    Ok((sequence, message.priority))
}

/// The wire key of a sampled item.
pub fn key_to_wire(key: SampleKey) -> u64 {
    key.generation
}

/// The library key of a wire key, for a replay of `capacity` slots.
pub fn key_from_wire(key: u64, capacity: usize) -> SampleKey {
    SampleKey { slot: (key % capacity as u64) as u32, generation: key }
}

#[cfg(test)]
mod tests {
    use replay::testing::SequenceBuilder;

    use super::*;

    #[test]
    fn sequences_round_trip_exactly() {
        let original = SequenceBuilder::new(12)
            .obs_shape([4, 5, 3])
            .env_id(3)
            .run_id(99)
            .burn_in(2)
            .padded_steps(3)
            .recurrent_state(vec![0.5, -0.25, 1.0, 2.0])
            .parameter_version(7)
            .keypoints(4)
            .tag(9)
            .build();
        let wire = sequence_to_wire(&original, 0.75).unwrap();
        assert_eq!(wire.initial_lstm_hidden, [0.5, -0.25]);
        assert_eq!(wire.initial_lstm_cell, [1.0, 2.0]);
        assert_eq!(wire.observations.as_ref().unwrap().shape, [12, 4, 5, 3]);
        assert_eq!(&wire.discounts[9..], [0.0, 0.0, 0.0], "padding steps are episode ends");
        let (back, priority) = sequence_from_wire(wire).unwrap();
        assert_eq!(back, original);
        assert_eq!(priority, 0.75);
    }

    #[test]
    fn bad_wire_sequences_name_the_field() {
        let good = sequence_to_wire(&SequenceBuilder::new(4).obs_shape([2, 2, 3]).build(), 0.0).unwrap();
        let cases: Vec<(v1::Sequence, &str)> = vec![
            (v1::Sequence { actions: vec![0, -1, 0, 0], ..good.clone() }, "actions[1]: -1 is not an action index"),
            (v1::Sequence { discounts: vec![1.0, 0.5, 1.0, 1.0], ..good.clone() }, "discounts[1]: 0.5 must be 0"),
            (v1::Sequence { rewards: vec![0.0; 3], ..good.clone() }, "rewards"),
            (v1::Sequence { observations: None, ..good.clone() }, "observations"),
            (
                v1::Sequence {
                    observations: Some(v1::Tensor { shape: vec![4, 12], ..good.observations.clone().unwrap() }),
                    ..good.clone()
                },
                "observations.shape",
            ),
            (v1::Sequence { priority: f32::NAN, ..good.clone() }, "priority"),
        ];
        for (message, expected) in cases {
            let error = sequence_from_wire(message).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
            assert!(!error.contains('\n'), "{error:?} is one line");
        }
    }

    #[test]
    fn keys_map_to_their_slot() {
        let key = key_from_wire(23, 10);
        assert_eq!((key.slot, key.generation), (3, 23));
        assert_eq!(key_to_wire(key), 23);
    }
}
