//! Pure checks of incoming `permakey.v1` messages, run once at a server's boundary.
//!
//! Each `validate_*` function returns the first rule a message breaks as a
//! [`ValidationError`] with a one-line message that names the offending field by path
//! (`frames[3].pixels has 100 bytes, expected 21168`). Errors convert to [`tonic::Status`]:
//! limits on counts and sizes give `RESOURCE_EXHAUSTED`, everything else `INVALID_ARGUMENT`.
//!
//! Rules:
//! - frames: height, width in `1..=MAX_FRAME_SIDE`, channels in `1..=MAX_FRAME_CHANNELS`,
//!   `len(pixels) == height * width * channels`; a batch is non-empty, holds at most
//!   [`MAX_FRAMES_PER_BATCH`] frames, all of one shape;
//! - tensors: a known dtype, rank at most [`MAX_TENSOR_RANK`],
//!   `len(data) == product(shape) * dtype size` (overflow-checked); float tensors of
//!   parameters hold no NaN or infinity;
//! - float fields (priorities, rewards, discounts, recurrent state, keypoint centres, a
//!   sequence's per-step keypoints): finite, plus each field's range;
//! - a sequence's per-step keypoints: `keypoint_dims` at most [`MAX_KEYPOINT_DIMS`] and
//!   `len(keypoints) == length * keypoint_dims` (so no keypoints when `keypoint_dims` is 0);
//! - counts: the `MAX_*` constants below; whole messages: [`MAX_MESSAGE_BYTES`].

use std::collections::HashSet;

use crate::v1::{
    DType, ErrorCode, Frame, FrameBatch, InferRequest, InferResponse, InsertRequest, ItemError,
    Keypoints, Parameters, ReportProgressRequest, SampleRequest, Sequence, Tensor,
    UpdatePrioritiesRequest,
};

/// Largest encoded message, in bytes, that servers and clients accept or send.
///
/// Pass it to `max_decoding_message_size` and `max_encoding_message_size` of every
/// generated server and client: tonic's 4 MiB default is too small for parameter snapshots
/// and for feature maps of a large frame batch.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Largest frame height or width in pixels (raw Atari frames are 210 x 160, pre-processed 84 x 84).
pub const MAX_FRAME_SIDE: u32 = 512;
/// Largest number of colour channels per frame (1 grey, 3 RGB, 4 RGBA).
pub const MAX_FRAME_CHANNELS: u32 = 4;
/// Largest number of frames in one [`FrameBatch`].
pub const MAX_FRAMES_PER_BATCH: usize = 256;
/// Largest `timeout_ms` of an [`InferRequest`] (one minute).
pub const MAX_INFER_TIMEOUT_MS: u32 = 60_000;
/// Largest number of keypoints K per frame (the reference configs use 7 to 25).
pub const MAX_KEYPOINTS: u32 = 64;
/// Largest `keypoint_dims` of a [`Sequence`]: `(y, x)` for [`MAX_KEYPOINTS`] keypoints.
pub const MAX_KEYPOINT_DIMS: u32 = 2 * MAX_KEYPOINTS;
/// Largest tensor rank.
pub const MAX_TENSOR_RANK: usize = 8;
/// Largest number of sequences in one [`InsertRequest`].
pub const MAX_SEQUENCES_PER_INSERT: usize = 256;
/// Largest sequence length T, burn-in included (R2D2 uses 80 + 40).
pub const MAX_SEQUENCE_LENGTH: u32 = 1024;
/// Largest size of the stored LSTM hidden or cell state.
pub const MAX_RECURRENT_STATE_SIZE: usize = 8192;
/// Largest `batch_size` of a [`SampleRequest`].
pub const MAX_SAMPLE_BATCH_SIZE: u32 = 1024;
/// Largest number of keys in one [`UpdatePrioritiesRequest`].
pub const MAX_PRIORITY_UPDATES: usize = 65_536;
/// Largest number of finished games in one [`ReportProgressRequest`].
pub const MAX_FINISHED_GAMES_PER_REPORT: usize = 4096;
/// Largest number of tensors in one [`Parameters`] snapshot.
pub const MAX_PARAMETER_TENSORS: usize = 4096;

/// The first rule an incoming message breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// A required sub-message is absent.
    #[error("{field} is missing")]
    MissingField { field: String },
    /// A list that must hold at least one item is empty.
    #[error("{field} is empty")]
    Empty { field: String },
    /// An integer field is outside its allowed range.
    #[error("{field} is {value}, expected {min}..={max}")]
    OutOfRange {
        field: String,
        value: u64,
        min: u64,
        max: u64,
    },
    /// A list holds more items than its limit (maps to `RESOURCE_EXHAUSTED`).
    #[error("{field} has {count} items, limit is {max}")]
    TooMany {
        field: String,
        count: usize,
        max: usize,
    },
    /// A byte buffer's length disagrees with the shape that describes it.
    #[error("{field} has {actual} bytes, expected {expected}")]
    ByteLength {
        field: String,
        expected: u64,
        actual: u64,
    },
    /// A list's length disagrees with another field.
    #[error("{field} has {actual} entries, expected {expected}")]
    LengthMismatch {
        field: String,
        expected: usize,
        actual: usize,
    },
    /// A frame's shape differs from the first frame of its batch.
    #[error(
        "{field} is {actual:?} (height, width, channels), but the batch's first frame is {expected:?}"
    )]
    MixedFrameShapes {
        field: String,
        expected: (u32, u32, u32),
        actual: (u32, u32, u32),
    },
    /// A float is NaN or infinite.
    #[error("{field} is not finite ({value})")]
    NonFinite { field: String, value: f64 },
    /// A float is finite but outside its allowed range.
    #[error("{field} is {value}, expected {min}..={max}")]
    FloatOutOfRange {
        field: String,
        value: f64,
        min: f64,
        max: f64,
    },
    /// A tensor's dtype is unspecified or unknown to this version.
    #[error("{field} has dtype {dtype}, expected a known dtype other than D_TYPE_UNSPECIFIED")]
    InvalidDtype { field: String, dtype: i32 },
    /// A tensor has the wrong dtype for its role.
    #[error("{field} has dtype {actual}, expected {expected}")]
    WrongDtype {
        field: String,
        expected: &'static str,
        actual: &'static str,
    },
    /// A tensor has the wrong rank or dimensions for its role.
    #[error("{field} has shape {actual:?}, expected {expected}")]
    WrongShape {
        field: String,
        expected: String,
        actual: Vec<u64>,
    },
    /// A tensor's byte size does not fit in 64 bits.
    #[error("{field} has shape {shape:?} whose byte size overflows u64")]
    ShapeOverflow { field: String, shape: Vec<u64> },
    /// A parameter tensor has an empty name.
    #[error("{field} has an empty name")]
    EmptyName { field: String },
    /// Two parameter tensors share a name.
    #[error("{field} repeats tensor name {name:?}")]
    DuplicateName { field: String, name: String },
    /// An item error is set while results are present, or the reverse.
    #[error("{field}: {reason}")]
    Inconsistent { field: String, reason: &'static str },
    /// A whole message is larger than [`MAX_MESSAGE_BYTES`] (maps to `RESOURCE_EXHAUSTED`).
    #[error("{what} encodes to {size} bytes, limit is {max}")]
    MessageTooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
}

impl ValidationError {
    /// Returns the gRPC code this error maps to: `ResourceExhausted` for broken count and size
    /// limits, `InvalidArgument` for every other rule.
    pub fn code(&self) -> tonic::Code {
        match self {
            ValidationError::TooMany { .. } | ValidationError::MessageTooLarge { .. } => {
                tonic::Code::ResourceExhausted
            }
            _ => tonic::Code::InvalidArgument,
        }
    }
}

impl From<ValidationError> for tonic::Status {
    fn from(error: ValidationError) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}

impl From<ValidationError> for ItemError {
    fn from(error: ValidationError) -> Self {
        let code = match error.code() {
            tonic::Code::ResourceExhausted => ErrorCode::ResourceExhausted,
            _ => ErrorCode::InvalidArgument,
        };
        ItemError {
            code: code as i32,
            message: error.to_string(),
        }
    }
}

/// Checks that `message` encodes to at most [`MAX_MESSAGE_BYTES`]; `what` names it in the error.
pub fn validate_message_size(
    message: &impl prost::Message,
    what: &'static str,
) -> Result<(), ValidationError> {
    let size = message.encoded_len();
    if size > MAX_MESSAGE_BYTES {
        return Err(ValidationError::MessageTooLarge {
            what,
            size,
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

/// Checks one frame: dimensions within limits and `len(pixels) == height * width * channels`.
pub fn validate_frame(frame: &Frame) -> Result<(), ValidationError> {
    check_frame(frame, &|| "frame".to_string())
}

/// Checks a frame batch: 1 to [`MAX_FRAMES_PER_BATCH`] valid frames of one shape.
pub fn validate_frame_batch(batch: &FrameBatch) -> Result<(), ValidationError> {
    check_frame_batch(batch, &|| "frames".to_string())
}

/// Checks an [`InferRequest`]: its frame batch and its timeout.
pub fn validate_infer_request(request: &InferRequest) -> Result<(), ValidationError> {
    let Some(frames) = &request.frames else {
        return Err(ValidationError::MissingField {
            field: "frames".to_string(),
        });
    };
    check_frame_batch(frames, &|| "frames".to_string())?;
    check_u64_range(
        &|| "timeout_ms".to_string(),
        request.timeout_ms.into(),
        0,
        MAX_INFER_TIMEOUT_MS.into(),
    )
}

/// Checks an [`InferResponse`]: either an error and no keypoints, or `expected_frames` valid
/// [`Keypoints`] (one per frame of the matching request).
pub fn validate_infer_response(
    response: &InferResponse,
    expected_frames: usize,
) -> Result<(), ValidationError> {
    if response.error.is_some() {
        if !response.keypoints.is_empty() {
            return Err(ValidationError::Inconsistent {
                field: "keypoints".to_string(),
                reason: "keypoints are present although error is set",
            });
        }
        return Ok(());
    }
    if response.keypoints.len() != expected_frames {
        return Err(ValidationError::LengthMismatch {
            field: "keypoints".to_string(),
            expected: expected_frames,
            actual: response.keypoints.len(),
        });
    }
    for (index, keypoints) in response.keypoints.iter().enumerate() {
        check_keypoints(keypoints, &|| format!("keypoints[{index}]"))?;
    }
    Ok(())
}

/// Checks the keypoints of one frame: 1 to [`MAX_KEYPOINTS`] finite (y, x) centres in
/// [-1, 1], and f32 heatmaps `[H, W, K]` / features `[H, W, C]` where present.
pub fn validate_keypoints(keypoints: &Keypoints) -> Result<(), ValidationError> {
    check_keypoints(keypoints, &|| "keypoints".to_string())
}

/// Checks a tensor: known dtype, rank at most [`MAX_TENSOR_RANK`], and
/// `len(data) == product(shape) * dtype size`.
pub fn validate_tensor(tensor: &Tensor) -> Result<(), ValidationError> {
    check_tensor(tensor, &|| "tensor".to_string()).map(|_| ())
}

/// Returns `product(shape) * dtype size` in bytes, or `None` when the dtype has no size or the
/// product overflows.
pub fn expected_tensor_bytes(shape: &[u64], dtype: DType) -> Option<u64> {
    let element_size = u64::try_from(dtype.size_bytes()?).ok()?;
    shape.iter().try_fold(element_size, |bytes, &dimension| {
        bytes.checked_mul(dimension)
    })
}

/// Checks that a float tensor (f16, bf16, f32, f64) holds no NaN or infinity; integer tensors
/// pass. Expects a tensor that already passed [`validate_tensor`].
pub fn validate_tensor_finite(tensor: &Tensor) -> Result<(), ValidationError> {
    check_tensor_finite(tensor, &|| "tensor".to_string())
}

/// Checks a sequence: length within limits, observations with leading dimension T, T actions,
/// rewards and discounts, finite rewards, discounts in [0, 1], equal-sized finite recurrent
/// state, and a finite priority >= 0.
pub fn validate_sequence(sequence: &Sequence) -> Result<(), ValidationError> {
    check_sequence(sequence, &|| "sequence".to_string())
}

/// Checks an [`InsertRequest`]: 1 to [`MAX_SEQUENCES_PER_INSERT`] valid sequences.
pub fn validate_insert_request(request: &InsertRequest) -> Result<(), ValidationError> {
    check_count(
        &|| "sequences".to_string(),
        request.sequences.len(),
        MAX_SEQUENCES_PER_INSERT,
    )?;
    for (index, sequence) in request.sequences.iter().enumerate() {
        check_sequence(sequence, &|| format!("sequences[{index}]"))?;
    }
    Ok(())
}

/// Checks a [`SampleRequest`]: `batch_size` in 1..=[`MAX_SAMPLE_BATCH_SIZE`].
pub fn validate_sample_request(request: &SampleRequest) -> Result<(), ValidationError> {
    if request.batch_size == 0 {
        return Err(ValidationError::OutOfRange {
            field: "batch_size".to_string(),
            value: 0,
            min: 1,
            max: MAX_SAMPLE_BATCH_SIZE.into(),
        });
    }
    if request.batch_size > MAX_SAMPLE_BATCH_SIZE {
        return Err(ValidationError::TooMany {
            field: "batch_size".to_string(),
            count: request.batch_size as usize,
            max: MAX_SAMPLE_BATCH_SIZE as usize,
        });
    }
    Ok(())
}

/// Checks an [`UpdatePrioritiesRequest`]: 1 to [`MAX_PRIORITY_UPDATES`] keys, one priority per
/// key, every priority finite and >= 0.
pub fn validate_update_priorities_request(
    request: &UpdatePrioritiesRequest,
) -> Result<(), ValidationError> {
    check_count(
        &|| "keys".to_string(),
        request.keys.len(),
        MAX_PRIORITY_UPDATES,
    )?;
    if request.priorities.len() != request.keys.len() {
        return Err(ValidationError::LengthMismatch {
            field: "priorities".to_string(),
            expected: request.keys.len(),
            actual: request.priorities.len(),
        });
    }
    check_f32s_in_range(
        &|| "priorities".to_string(),
        &request.priorities,
        0.0,
        f32::MAX,
    )
}

/// Checks a [`Parameters`] snapshot: version >= 1, 1 to [`MAX_PARAMETER_TENSORS`] valid,
/// uniquely and non-emptily named tensors, float tensors free of NaN and infinity.
pub fn validate_parameters(parameters: &Parameters) -> Result<(), ValidationError> {
    check_u64_range(&|| "version".to_string(), parameters.version, 1, u64::MAX)?;
    check_count(
        &|| "tensors".to_string(),
        parameters.tensors.len(),
        MAX_PARAMETER_TENSORS,
    )?;
    let mut names = HashSet::with_capacity(parameters.tensors.len());
    for (index, tensor) in parameters.tensors.iter().enumerate() {
        let field = || format!("tensors[{index}]");
        if tensor.name.is_empty() {
            return Err(ValidationError::EmptyName { field: field() });
        }
        if !names.insert(tensor.name.as_str()) {
            return Err(ValidationError::DuplicateName {
                field: field(),
                name: tensor.name.clone(),
            });
        }
        check_tensor(tensor, &field)?;
        check_tensor_finite(tensor, &field)?;
    }
    Ok(())
}

/// Checks an actor's [`ReportProgressRequest`]: at most [`MAX_FINISHED_GAMES_PER_REPORT`]
/// finished games, each with a finite return and a length of at least one step.
pub fn validate_report_progress(request: &ReportProgressRequest) -> Result<(), ValidationError> {
    if request.finished.len() > MAX_FINISHED_GAMES_PER_REPORT {
        return Err(ValidationError::TooMany {
            field: "finished".to_string(),
            count: request.finished.len(),
            max: MAX_FINISHED_GAMES_PER_REPORT,
        });
    }
    for (index, game) in request.finished.iter().enumerate() {
        check_f32_in_range(&|| format!("finished[{index}].game_return"), game.game_return, f32::MIN, f32::MAX)?;
        check_u64_range(&|| format!("finished[{index}].game_length"), game.game_length.into(), 1, u32::MAX.into())?;
    }
    Ok(())
}

/// Builds the path of the field being checked; called only when a check fails, so the
/// happy path allocates nothing.
type FieldPath<'a> = &'a dyn Fn() -> String;

fn check_u64_range(
    field: FieldPath,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), ValidationError> {
    if value < min || value > max {
        return Err(ValidationError::OutOfRange {
            field: field(),
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// Checks `1 <= count <= max`.
fn check_count(field: FieldPath, count: usize, max: usize) -> Result<(), ValidationError> {
    if count == 0 {
        return Err(ValidationError::Empty { field: field() });
    }
    if count > max {
        return Err(ValidationError::TooMany {
            field: field(),
            count,
            max,
        });
    }
    Ok(())
}

fn check_frame(frame: &Frame, field: FieldPath) -> Result<(), ValidationError> {
    let side_max = u64::from(MAX_FRAME_SIDE);
    check_u64_range(
        &|| format!("{}.height", field()),
        frame.height.into(),
        1,
        side_max,
    )?;
    check_u64_range(
        &|| format!("{}.width", field()),
        frame.width.into(),
        1,
        side_max,
    )?;
    check_u64_range(
        &|| format!("{}.channels", field()),
        frame.channels.into(),
        1,
        MAX_FRAME_CHANNELS.into(),
    )?;
    let expected = u64::from(frame.height) * u64::from(frame.width) * u64::from(frame.channels);
    let actual = frame.pixels.len() as u64;
    if actual != expected {
        return Err(ValidationError::ByteLength {
            field: format!("{}.pixels", field()),
            expected,
            actual,
        });
    }
    Ok(())
}

fn check_frame_batch(batch: &FrameBatch, field: FieldPath) -> Result<(), ValidationError> {
    check_count(field, batch.frames.len(), MAX_FRAMES_PER_BATCH)?;
    let shape_of = |frame: &Frame| (frame.height, frame.width, frame.channels);
    let first_shape = shape_of(&batch.frames[0]);
    for (index, frame) in batch.frames.iter().enumerate() {
        let frame_field = || format!("{}[{index}]", field());
        check_frame(frame, &frame_field)?;
        if shape_of(frame) != first_shape {
            return Err(ValidationError::MixedFrameShapes {
                field: frame_field(),
                expected: first_shape,
                actual: shape_of(frame),
            });
        }
    }
    Ok(())
}

/// Checks a tensor and returns its dtype.
fn check_tensor(tensor: &Tensor, field: FieldPath) -> Result<DType, ValidationError> {
    let dtype = match DType::try_from(tensor.dtype) {
        Ok(DType::Unspecified) | Err(_) => {
            return Err(ValidationError::InvalidDtype {
                field: field(),
                dtype: tensor.dtype,
            });
        }
        Ok(dtype) => dtype,
    };
    if tensor.shape.len() > MAX_TENSOR_RANK {
        return Err(ValidationError::TooMany {
            field: format!("{}.shape", field()),
            count: tensor.shape.len(),
            max: MAX_TENSOR_RANK,
        });
    }
    let Some(expected) = expected_tensor_bytes(&tensor.shape, dtype) else {
        return Err(ValidationError::ShapeOverflow {
            field: field(),
            shape: tensor.shape.clone(),
        });
    };
    let actual = tensor.data.len() as u64;
    if actual != expected {
        return Err(ValidationError::ByteLength {
            field: format!("{}.data", field()),
            expected,
            actual,
        });
    }
    Ok(dtype)
}

fn check_tensor_finite(tensor: &Tensor, field: FieldPath) -> Result<(), ValidationError> {
    let Ok(dtype) = DType::try_from(tensor.dtype) else {
        return Ok(());
    };
    // Position and value of the first non-finite element.
    let first_non_finite: Option<(usize, f64)> = match dtype {
        DType::F32 => tensor
            .data
            .chunks_exact(4)
            .enumerate()
            .find_map(|(index, bytes)| {
                let value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                (!value.is_finite()).then_some((index, f64::from(value)))
            }),
        DType::F64 => tensor
            .data
            .chunks_exact(8)
            .enumerate()
            .find_map(|(index, bytes)| {
                let value = f64::from_le_bytes([
                    bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                ]);
                (!value.is_finite()).then_some((index, value))
            }),
        // Half floats: NaN or infinity iff every exponent bit is set.
        DType::F16 => find_half_non_finite(&tensor.data, 0x7C00),
        DType::Bf16 => find_half_non_finite(&tensor.data, 0x7F80),
        DType::Unspecified | DType::U8 | DType::I32 | DType::I64 => None,
    };
    match first_non_finite {
        Some((index, value)) => Err(ValidationError::NonFinite {
            field: format!("{}.data[{index}]", field()),
            value,
        }),
        None => Ok(()),
    }
}

/// Finds the first 16-bit float whose exponent bits (`exponent_mask`) are all set; its value is
/// reported as NaN, which is enough for an error message.
fn find_half_non_finite(data: &[u8], exponent_mask: u16) -> Option<(usize, f64)> {
    data.chunks_exact(2).enumerate().find_map(|(index, bytes)| {
        let bits = u16::from_le_bytes([bytes[0], bytes[1]]);
        (bits & exponent_mask == exponent_mask).then_some((index, f64::NAN))
    })
}

/// Checks that every value is finite and within `min..=max`; errors name `field[index]`.
fn check_f32s_in_range(
    field: FieldPath,
    values: &[f32],
    min: f32,
    max: f32,
) -> Result<(), ValidationError> {
    for (index, &value) in values.iter().enumerate() {
        check_f32_in_range(&|| format!("{}[{index}]", field()), value, min, max)?;
    }
    Ok(())
}

fn check_f32_in_range(
    field: FieldPath,
    value: f32,
    min: f32,
    max: f32,
) -> Result<(), ValidationError> {
    if !value.is_finite() {
        return Err(ValidationError::NonFinite {
            field: field(),
            value: f64::from(value),
        });
    }
    if value < min || value > max {
        return Err(ValidationError::FloatOutOfRange {
            field: field(),
            value: f64::from(value),
            min: f64::from(min),
            max: f64::from(max),
        });
    }
    Ok(())
}

fn check_keypoints(keypoints: &Keypoints, field: FieldPath) -> Result<(), ValidationError> {
    let num_keypoints = keypoints.num_keypoints;
    check_u64_range(
        &|| format!("{}.num_keypoints", field()),
        num_keypoints.into(),
        1,
        MAX_KEYPOINTS.into(),
    )?;
    let centers_field = || format!("{}.centers", field());
    let expected_centers = 2 * num_keypoints as usize;
    if keypoints.centers.len() != expected_centers {
        return Err(ValidationError::LengthMismatch {
            field: centers_field(),
            expected: expected_centers,
            actual: keypoints.centers.len(),
        });
    }
    check_f32s_in_range(&centers_field, &keypoints.centers, -1.0, 1.0)?;
    if let Some(heatmaps) = &keypoints.heatmaps {
        let heatmaps_field = || format!("{}.heatmaps", field());
        check_f32_rank3(heatmaps, &heatmaps_field)?;
        if heatmaps.shape[2] != u64::from(num_keypoints) {
            return Err(ValidationError::WrongShape {
                field: heatmaps_field(),
                expected: format!("[H, W, {num_keypoints}]"),
                actual: heatmaps.shape.clone(),
            });
        }
    }
    if let Some(features) = &keypoints.features {
        check_f32_rank3(features, &|| format!("{}.features", field()))?;
    }
    Ok(())
}

fn check_f32_rank3(tensor: &Tensor, field: FieldPath) -> Result<(), ValidationError> {
    let dtype = check_tensor(tensor, field)?;
    if dtype != DType::F32 {
        return Err(ValidationError::WrongDtype {
            field: field(),
            expected: DType::F32.as_str_name(),
            actual: dtype.as_str_name(),
        });
    }
    if tensor.shape.len() != 3 {
        return Err(ValidationError::WrongShape {
            field: field(),
            expected: "rank 3 [H, W, C]".to_string(),
            actual: tensor.shape.clone(),
        });
    }
    Ok(())
}

fn check_sequence(sequence: &Sequence, field: FieldPath) -> Result<(), ValidationError> {
    check_u64_range(
        &|| format!("{}.length", field()),
        sequence.length.into(),
        1,
        MAX_SEQUENCE_LENGTH.into(),
    )?;
    let length = sequence.length as usize;
    let observations_field = || format!("{}.observations", field());
    let Some(observations) = &sequence.observations else {
        return Err(ValidationError::MissingField {
            field: observations_field(),
        });
    };
    check_tensor(observations, &observations_field)?;
    if observations.shape.first() != Some(&u64::from(sequence.length)) {
        return Err(ValidationError::WrongShape {
            field: observations_field(),
            expected: format!("[{length}, ...]"),
            actual: observations.shape.clone(),
        });
    }
    for (name, actual) in [
        ("actions", sequence.actions.len()),
        ("rewards", sequence.rewards.len()),
        ("discounts", sequence.discounts.len()),
    ] {
        if actual != length {
            return Err(ValidationError::LengthMismatch {
                field: format!("{}.{name}", field()),
                expected: length,
                actual,
            });
        }
    }
    check_f32s_in_range(
        &|| format!("{}.rewards", field()),
        &sequence.rewards,
        f32::MIN,
        f32::MAX,
    )?;
    check_f32s_in_range(
        &|| format!("{}.discounts", field()),
        &sequence.discounts,
        0.0,
        1.0,
    )?;
    let hidden_size = sequence.initial_lstm_hidden.len();
    if hidden_size > MAX_RECURRENT_STATE_SIZE {
        return Err(ValidationError::TooMany {
            field: format!("{}.initial_lstm_hidden", field()),
            count: hidden_size,
            max: MAX_RECURRENT_STATE_SIZE,
        });
    }
    if sequence.initial_lstm_cell.len() != hidden_size {
        return Err(ValidationError::LengthMismatch {
            field: format!("{}.initial_lstm_cell", field()),
            expected: hidden_size,
            actual: sequence.initial_lstm_cell.len(),
        });
    }
    check_f32s_in_range(
        &|| format!("{}.initial_lstm_hidden", field()),
        &sequence.initial_lstm_hidden,
        f32::MIN,
        f32::MAX,
    )?;
    check_f32s_in_range(
        &|| format!("{}.initial_lstm_cell", field()),
        &sequence.initial_lstm_cell,
        f32::MIN,
        f32::MAX,
    )?;
    check_f32_in_range(
        &|| format!("{}.priority", field()),
        sequence.priority,
        0.0,
        f32::MAX,
    )?;
    check_u64_range(
        &|| format!("{}.keypoint_dims", field()),
        sequence.keypoint_dims.into(),
        0,
        MAX_KEYPOINT_DIMS.into(),
    )?;
    // Both factors are bounded above (1024 x 128), so the product cannot overflow.
    let expected_keypoints = length * sequence.keypoint_dims as usize;
    if sequence.keypoints.len() != expected_keypoints {
        return Err(ValidationError::LengthMismatch {
            field: format!("{}.keypoints", field()),
            expected: expected_keypoints,
            actual: sequence.keypoints.len(),
        });
    }
    check_f32s_in_range(
        &|| format!("{}.keypoints", field()),
        &sequence.keypoints,
        f32::MIN,
        f32::MAX,
    )?;
    // At least one step is neither burn-in nor padding. Both fields are u32, so the sum is
    // formed in u64.
    let overhead = u64::from(sequence.burn_in) + u64::from(sequence.padded_steps);
    if overhead >= u64::from(sequence.length) {
        return Err(ValidationError::OutOfRange {
            field: format!("{}.burn_in + padded_steps", field()),
            value: overhead,
            min: 0,
            max: u64::from(sequence.length) - 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::v1::ErrorCode;

    fn frame(height: u32, width: u32, channels: u32) -> Frame {
        Frame {
            env_id: 3,
            run_id: 0xDEAD_BEEF,
            step: 17,
            height,
            width,
            channels,
            pixels: Bytes::from(vec![7u8; (height * width * channels) as usize]),
        }
    }

    fn atari_batch(frames: usize) -> FrameBatch {
        FrameBatch {
            frames: (0..frames).map(|_| frame(84, 84, 3)).collect(),
        }
    }

    fn f32_tensor(name: &str, shape: &[u64], values: &[f32]) -> Tensor {
        Tensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype: DType::F32 as i32,
            data: values
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect(),
        }
    }

    fn keypoints(num_keypoints: u32) -> Keypoints {
        Keypoints {
            num_keypoints,
            centers: (0..2 * num_keypoints)
                .map(|index| index as f32 / 100.0 - 0.5)
                .collect(),
            heatmaps: None,
            features: None,
        }
    }

    fn sequence(length: u32) -> Sequence {
        let steps = length as usize;
        Sequence {
            env_id: 1,
            run_id: 2,
            first_step: 40,
            length,
            observations: Some(Tensor {
                name: String::new(),
                shape: vec![length.into(), 2, 2, 3],
                dtype: DType::U8 as i32,
                data: Bytes::from(vec![0u8; steps * 12]),
            }),
            actions: vec![1; steps],
            rewards: vec![0.5; steps],
            discounts: vec![1.0; steps],
            initial_lstm_hidden: vec![0.1; 4],
            initial_lstm_cell: vec![-0.1; 4],
            priority: 1.5,
            parameter_version: 9,
            keypoints: (0..steps * 4).map(|index| index as f32 / 1000.0).collect(),
            keypoint_dims: 4,
            burn_in: 0,
            padded_steps: 0,
            truncated: false,
        }
    }

    fn parameters() -> Parameters {
        Parameters {
            version: 4,
            tensors: vec![
                f32_tensor("dense.weight", &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
                f32_tensor("dense.bias", &[2], &[0.5, -0.5]),
            ],
        }
    }

    fn assert_invalid_argument(result: Result<(), ValidationError>) -> ValidationError {
        let error = result.expect_err("message must be rejected");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error}");
        error
    }

    fn assert_resource_exhausted(result: Result<(), ValidationError>) -> ValidationError {
        let error = result.expect_err("message must be rejected");
        assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error}");
        error
    }

    #[test]
    fn valid_messages_pass() {
        validate_frame(&frame(84, 84, 3)).unwrap();
        validate_frame(&frame(210, 160, 3)).unwrap();
        validate_frame_batch(&atari_batch(MAX_FRAMES_PER_BATCH)).unwrap();
        validate_infer_request(&InferRequest {
            request_id: 1,
            frames: Some(atari_batch(2)),
            include_heatmaps: true,
            include_features: false,
            timeout_ms: MAX_INFER_TIMEOUT_MS,
        })
        .unwrap();
        validate_keypoints(&keypoints(MAX_KEYPOINTS)).unwrap();
        validate_sequence(&sequence(MAX_SEQUENCE_LENGTH)).unwrap();
        validate_insert_request(&InsertRequest {
            sequences: vec![sequence(3), sequence(5)],
        })
        .unwrap();
        validate_sample_request(&SampleRequest {
            batch_size: MAX_SAMPLE_BATCH_SIZE,
        })
        .unwrap();
        validate_update_priorities_request(&UpdatePrioritiesRequest {
            keys: vec![1, 2],
            priorities: vec![0.0, 3.5],
        })
        .unwrap();
        validate_parameters(&parameters()).unwrap();
        validate_message_size(&parameters(), "parameters").unwrap();
    }

    #[test]
    fn frame_dimensions_must_be_within_limits() {
        let error = assert_invalid_argument(validate_frame(&frame(0, 84, 3)));
        assert_eq!(error.to_string(), "frame.height is 0, expected 1..=512");
        let error = assert_invalid_argument(validate_frame(&frame(84, MAX_FRAME_SIDE + 1, 1)));
        assert_eq!(error.to_string(), "frame.width is 513, expected 1..=512");
        let error = assert_invalid_argument(validate_frame(&frame(8, 8, 5)));
        assert_eq!(error.to_string(), "frame.channels is 5, expected 1..=4");
        let error = assert_invalid_argument(validate_frame(&frame(8, 8, 0)));
        assert!(
            matches!(error, ValidationError::OutOfRange { value: 0, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn frame_bytes_must_equal_height_width_channels() {
        let mut short = frame(84, 84, 3);
        short.pixels = short.pixels.slice(1..);
        let error = assert_invalid_argument(validate_frame(&short));
        assert_eq!(
            error.to_string(),
            "frame.pixels has 21167 bytes, expected 21168"
        );
        let mut long = frame(2, 2, 1);
        long.pixels = Bytes::from(vec![0u8; 5]);
        assert_invalid_argument(validate_frame(&long));
    }

    #[test]
    fn frame_batch_size_is_limited() {
        let error = assert_invalid_argument(validate_frame_batch(&atari_batch(0)));
        assert_eq!(error.to_string(), "frames is empty");
        let error =
            assert_resource_exhausted(validate_frame_batch(&atari_batch(MAX_FRAMES_PER_BATCH + 1)));
        assert_eq!(error.to_string(), "frames has 257 items, limit is 256");
    }

    #[test]
    fn frame_batch_errors_name_the_frame() {
        let mut batch = atari_batch(4);
        batch.frames[2].pixels = Bytes::new();
        let error = assert_invalid_argument(validate_frame_batch(&batch));
        assert_eq!(
            error.to_string(),
            "frames[2].pixels has 0 bytes, expected 21168"
        );
    }

    #[test]
    fn frame_batch_frames_share_one_shape() {
        let mut batch = atari_batch(3);
        batch.frames[1] = frame(84, 84, 1);
        let error = assert_invalid_argument(validate_frame_batch(&batch));
        assert_eq!(
            error,
            ValidationError::MixedFrameShapes {
                field: "frames[1]".to_string(),
                expected: (84, 84, 3),
                actual: (84, 84, 1),
            }
        );
    }

    #[test]
    fn infer_request_needs_frames_and_a_bounded_timeout() {
        let mut request = InferRequest {
            request_id: 5,
            frames: None,
            timeout_ms: 10,
            ..Default::default()
        };
        let error = assert_invalid_argument(validate_infer_request(&request));
        assert_eq!(error.to_string(), "frames is missing");
        request.frames = Some(atari_batch(1));
        validate_infer_request(&request).unwrap();
        request.timeout_ms = MAX_INFER_TIMEOUT_MS + 1;
        let error = assert_invalid_argument(validate_infer_request(&request));
        assert_eq!(error.to_string(), "timeout_ms is 60001, expected 0..=60000");
        request.timeout_ms = 0;
        request.frames = Some(atari_batch(MAX_FRAMES_PER_BATCH + 1));
        assert_resource_exhausted(validate_infer_request(&request));
    }

    #[test]
    fn tensor_bytes_must_equal_shape_product_times_dtype_size() {
        let mut tensor = f32_tensor("w", &[2, 3], &[0.0; 6]);
        validate_tensor(&tensor).unwrap();
        tensor.shape = vec![3, 3];
        let error = assert_invalid_argument(validate_tensor(&tensor));
        assert_eq!(error.to_string(), "tensor.data has 24 bytes, expected 36");
        tensor.dtype = DType::F64 as i32;
        tensor.shape = vec![3];
        validate_tensor(&tensor).unwrap();
        tensor.dtype = DType::Bf16 as i32;
        let error = assert_invalid_argument(validate_tensor(&tensor));
        assert_eq!(error.to_string(), "tensor.data has 24 bytes, expected 6");
        // A scalar holds one element; a zero dimension holds none.
        let scalar = f32_tensor("s", &[], &[1.0]);
        validate_tensor(&scalar).unwrap();
        let empty = f32_tensor("e", &[4, 0], &[]);
        validate_tensor(&empty).unwrap();
    }

    #[test]
    fn tensor_dtype_must_be_known() {
        let mut tensor = f32_tensor("w", &[1], &[0.0]);
        tensor.dtype = DType::Unspecified as i32;
        let error = assert_invalid_argument(validate_tensor(&tensor));
        assert!(
            matches!(error, ValidationError::InvalidDtype { dtype: 0, .. }),
            "{error:?}"
        );
        tensor.dtype = 99;
        let error = assert_invalid_argument(validate_tensor(&tensor));
        assert!(error.to_string().contains("dtype 99"), "{error}");
    }

    #[test]
    fn tensor_rank_and_size_overflow_are_rejected() {
        let deep = f32_tensor("deep", &[1; MAX_TENSOR_RANK + 1], &[0.0]);
        let error = assert_resource_exhausted(validate_tensor(&deep));
        assert_eq!(error.to_string(), "tensor.shape has 9 items, limit is 8");
        let huge = Tensor {
            shape: vec![u64::MAX / 2, 3],
            ..f32_tensor("huge", &[], &[])
        };
        let error = assert_invalid_argument(validate_tensor(&huge));
        assert!(
            matches!(error, ValidationError::ShapeOverflow { .. }),
            "{error:?}"
        );
        assert_eq!(expected_tensor_bytes(&[u64::MAX / 2, 3], DType::F32), None);
        assert_eq!(expected_tensor_bytes(&[2, 3], DType::I64), Some(48));
        assert_eq!(expected_tensor_bytes(&[2], DType::Unspecified), None);
    }

    #[test]
    fn float_tensors_must_be_finite() {
        let mut tensor = f32_tensor("w", &[3], &[0.0, f32::NAN, 1.0]);
        let error = assert_invalid_argument(validate_tensor_finite(&tensor));
        assert!(
            error
                .to_string()
                .starts_with("tensor.data[1] is not finite"),
            "{error}"
        );
        tensor = f32_tensor("w", &[2], &[f32::INFINITY, 0.0]);
        assert_invalid_argument(validate_tensor_finite(&tensor));
        let f64_tensor = Tensor {
            name: "d".to_string(),
            shape: vec![2],
            dtype: DType::F64 as i32,
            data: [1.0f64, f64::NEG_INFINITY]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        };
        let error = assert_invalid_argument(validate_tensor_finite(&f64_tensor));
        assert!(error.to_string().starts_with("tensor.data[1]"), "{error}");
        // f16: 0x3C00 = 1.0, 0x7C00 = +inf; bf16: 0x3F80 = 1.0, 0x7FC0 = NaN.
        let half = |dtype: DType, bits: [u16; 2]| Tensor {
            name: "h".to_string(),
            shape: vec![2],
            dtype: dtype as i32,
            data: bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
        };
        validate_tensor_finite(&half(DType::F16, [0x3C00, 0x3C00])).unwrap();
        assert_invalid_argument(validate_tensor_finite(&half(DType::F16, [0x3C00, 0x7C00])));
        validate_tensor_finite(&half(DType::Bf16, [0x3F80, 0xBF80])).unwrap();
        assert_invalid_argument(validate_tensor_finite(&half(DType::Bf16, [0x7FC0, 0x3F80])));
        // Integer tensors have no NaN: all bit patterns pass.
        let integers = Tensor {
            dtype: DType::I32 as i32,
            ..f32_tensor("i", &[1], &[f32::NAN])
        };
        validate_tensor_finite(&integers).unwrap();
    }

    #[test]
    fn keypoints_need_two_finite_centres_in_range_per_keypoint() {
        let error = assert_invalid_argument(validate_keypoints(&keypoints(0)));
        assert_eq!(
            error.to_string(),
            "keypoints.num_keypoints is 0, expected 1..=64"
        );
        assert_invalid_argument(validate_keypoints(&keypoints(MAX_KEYPOINTS + 1)));
        let mut odd = keypoints(3);
        odd.centers.pop();
        let error = assert_invalid_argument(validate_keypoints(&odd));
        assert_eq!(
            error.to_string(),
            "keypoints.centers has 5 entries, expected 6"
        );
        let mut nan = keypoints(3);
        nan.centers[4] = f32::NAN;
        let error = assert_invalid_argument(validate_keypoints(&nan));
        assert_eq!(
            error.to_string(),
            "keypoints.centers[4] is not finite (NaN)"
        );
        let mut outside = keypoints(3);
        outside.centers[1] = 1.25;
        let error = assert_invalid_argument(validate_keypoints(&outside));
        assert_eq!(
            error.to_string(),
            "keypoints.centers[1] is 1.25, expected -1..=1"
        );
    }

    #[test]
    fn keypoint_heatmaps_and_features_are_f32_rank_3() {
        let mut with_maps = keypoints(2);
        with_maps.heatmaps = Some(f32_tensor("", &[2, 2, 2], &[0.0; 8]));
        with_maps.features = Some(f32_tensor("", &[1, 1, 4], &[0.0; 4]));
        validate_keypoints(&with_maps).unwrap();

        let mut wrong_k = with_maps.clone();
        wrong_k.heatmaps = Some(f32_tensor("", &[2, 4, 1], &[0.0; 8]));
        let error = assert_invalid_argument(validate_keypoints(&wrong_k));
        assert_eq!(
            error.to_string(),
            "keypoints.heatmaps has shape [2, 4, 1], expected [H, W, 2]"
        );

        let mut rank_2 = with_maps.clone();
        rank_2.features = Some(f32_tensor("", &[2, 2], &[0.0; 4]));
        assert!(matches!(
            assert_invalid_argument(validate_keypoints(&rank_2)),
            ValidationError::WrongShape { .. }
        ));

        let mut bytes = with_maps.clone();
        bytes.features = Some(Tensor {
            name: String::new(),
            shape: vec![1, 1, 4],
            dtype: DType::U8 as i32,
            data: Bytes::from_static(&[0, 0, 0, 0]),
        });
        let error = assert_invalid_argument(validate_keypoints(&bytes));
        assert_eq!(
            error.to_string(),
            "keypoints.features has dtype D_TYPE_U8, expected D_TYPE_F32"
        );
    }

    #[test]
    fn infer_response_has_error_or_one_keypoints_per_frame() {
        let ok = InferResponse {
            request_id: 1,
            keypoints: vec![keypoints(2), keypoints(2)],
            model_version: 1,
            error: None,
            gauss_std: 0.15,
        };
        validate_infer_response(&ok, 2).unwrap();
        let error = assert_invalid_argument(validate_infer_response(&ok, 3));
        assert_eq!(error.to_string(), "keypoints has 2 entries, expected 3");
        let mut both = ok.clone();
        both.error = Some(ItemError {
            code: ErrorCode::Internal as i32,
            message: "x".into(),
        });
        assert!(matches!(
            assert_invalid_argument(validate_infer_response(&both, 2)),
            ValidationError::Inconsistent { .. }
        ));
        both.keypoints.clear();
        validate_infer_response(&both, 2).unwrap();
        let mut bad_item = ok.clone();
        bad_item.keypoints[1].centers[0] = f32::INFINITY;
        let error = assert_invalid_argument(validate_infer_response(&bad_item, 2));
        assert!(
            error.to_string().starts_with("keypoints[1].centers[0]"),
            "{error}"
        );
    }

    #[test]
    fn sequence_length_and_per_step_fields_agree() {
        assert_invalid_argument(validate_sequence(&sequence(0)));
        assert_invalid_argument(validate_sequence(&sequence(MAX_SEQUENCE_LENGTH + 1)));
        let mut short_actions = sequence(4);
        short_actions.actions.pop();
        let error = assert_invalid_argument(validate_sequence(&short_actions));
        assert_eq!(
            error.to_string(),
            "sequence.actions has 3 entries, expected 4"
        );
        let mut short_discounts = sequence(4);
        short_discounts.discounts.push(1.0);
        let error = assert_invalid_argument(validate_sequence(&short_discounts));
        assert_eq!(
            error.to_string(),
            "sequence.discounts has 5 entries, expected 4"
        );
        let mut no_observations = sequence(4);
        no_observations.observations = None;
        let error = assert_invalid_argument(validate_sequence(&no_observations));
        assert_eq!(error.to_string(), "sequence.observations is missing");
        let mut wrong_leading_dim = sequence(4);
        wrong_leading_dim.length = 2;
        wrong_leading_dim.actions.truncate(2);
        wrong_leading_dim.rewards.truncate(2);
        wrong_leading_dim.discounts.truncate(2);
        let error = assert_invalid_argument(validate_sequence(&wrong_leading_dim));
        assert_eq!(
            error.to_string(),
            "sequence.observations has shape [4, 2, 2, 3], expected [2, ...]"
        );
        let mut bad_observation_bytes = sequence(4);
        if let Some(observations) = &mut bad_observation_bytes.observations {
            observations.data = observations.data.slice(..10);
        }
        assert!(matches!(
            assert_invalid_argument(validate_sequence(&bad_observation_bytes)),
            ValidationError::ByteLength { .. }
        ));
    }

    #[test]
    fn sequence_floats_must_be_finite_and_in_range() {
        let mut nan_reward = sequence(3);
        nan_reward.rewards[2] = f32::NAN;
        let error = assert_invalid_argument(validate_sequence(&nan_reward));
        assert_eq!(error.to_string(), "sequence.rewards[2] is not finite (NaN)");
        let mut big_discount = sequence(3);
        big_discount.discounts[0] = 1.5;
        assert!(matches!(
            assert_invalid_argument(validate_sequence(&big_discount)),
            ValidationError::FloatOutOfRange { .. }
        ));
        let mut inf_state = sequence(3);
        inf_state.initial_lstm_cell[3] = f32::NEG_INFINITY;
        let error = assert_invalid_argument(validate_sequence(&inf_state));
        assert_eq!(
            error.to_string(),
            "sequence.initial_lstm_cell[3] is not finite (-inf)"
        );
        let mut uneven_state = sequence(3);
        uneven_state.initial_lstm_cell.pop();
        assert_invalid_argument(validate_sequence(&uneven_state));
        let mut huge_state = sequence(3);
        huge_state.initial_lstm_hidden = vec![0.0; MAX_RECURRENT_STATE_SIZE + 1];
        huge_state.initial_lstm_cell = vec![0.0; MAX_RECURRENT_STATE_SIZE + 1];
        assert_resource_exhausted(validate_sequence(&huge_state));
        let mut nan_priority = sequence(3);
        nan_priority.priority = f32::NAN;
        let error = assert_invalid_argument(validate_sequence(&nan_priority));
        assert_eq!(error.to_string(), "sequence.priority is not finite (NaN)");
        let mut negative_priority = sequence(3);
        negative_priority.priority = -0.5;
        assert_invalid_argument(validate_sequence(&negative_priority));
    }

    #[test]
    fn burn_in_and_padding_leave_at_least_one_learning_step() {
        validate_sequence(&Sequence {
            burn_in: 2,
            padded_steps: 2,
            truncated: true,
            ..sequence(5)
        })
        .unwrap();
        let error = assert_invalid_argument(validate_sequence(&Sequence {
            burn_in: 3,
            padded_steps: 2,
            ..sequence(5)
        }));
        assert_eq!(
            error.to_string(),
            "sequence.burn_in + padded_steps is 5, expected 0..=4"
        );
        let error = assert_invalid_argument(validate_sequence(&Sequence {
            burn_in: u32::MAX,
            padded_steps: u32::MAX,
            ..sequence(5)
        }));
        assert_eq!(
            error.to_string(),
            "sequence.burn_in + padded_steps is 8589934590, expected 0..=4"
        );
    }

    #[test]
    fn sequence_keypoints_match_length_times_dims_and_are_finite() {
        // No keypoints at all (what peers that predate the fields send) is valid.
        validate_sequence(&Sequence {
            keypoints: vec![],
            keypoint_dims: 0,
            ..sequence(3)
        })
        .unwrap();
        validate_sequence(&Sequence {
            keypoints: vec![0.25; 3 * MAX_KEYPOINT_DIMS as usize],
            keypoint_dims: MAX_KEYPOINT_DIMS,
            ..sequence(3)
        })
        .unwrap();
        let mut short = sequence(3);
        short.keypoints.pop();
        let error = assert_invalid_argument(validate_sequence(&short));
        assert_eq!(
            error.to_string(),
            "sequence.keypoints has 11 entries, expected 12"
        );
        let without_dims = Sequence {
            keypoint_dims: 0,
            ..sequence(3)
        };
        let error = assert_invalid_argument(validate_sequence(&without_dims));
        assert_eq!(
            error.to_string(),
            "sequence.keypoints has 12 entries, expected 0"
        );
        let without_keypoints = Sequence {
            keypoints: vec![],
            ..sequence(3)
        };
        let error = assert_invalid_argument(validate_sequence(&without_keypoints));
        assert_eq!(
            error.to_string(),
            "sequence.keypoints has 0 entries, expected 12"
        );
        let too_wide = Sequence {
            keypoints: vec![0.0; 3 * (MAX_KEYPOINT_DIMS as usize + 1)],
            keypoint_dims: MAX_KEYPOINT_DIMS + 1,
            ..sequence(3)
        };
        let error = assert_invalid_argument(validate_sequence(&too_wide));
        assert_eq!(
            error.to_string(),
            "sequence.keypoint_dims is 129, expected 0..=128"
        );
        let mut nan = sequence(3);
        nan.keypoints[9] = f32::NAN;
        let error = assert_invalid_argument(validate_sequence(&nan));
        assert_eq!(
            error.to_string(),
            "sequence.keypoints[9] is not finite (NaN)"
        );
        let mut inf = InsertRequest {
            sequences: vec![sequence(2), sequence(2)],
        };
        inf.sequences[1].keypoints[0] = f32::INFINITY;
        let error = assert_invalid_argument(validate_insert_request(&inf));
        assert_eq!(
            error.to_string(),
            "sequences[1].keypoints[0] is not finite (inf)"
        );
    }

    #[test]
    fn insert_request_counts_are_limited_and_errors_name_the_sequence() {
        let error = assert_invalid_argument(validate_insert_request(&InsertRequest::default()));
        assert_eq!(error.to_string(), "sequences is empty");
        let too_many = InsertRequest {
            sequences: vec![sequence(1); MAX_SEQUENCES_PER_INSERT + 1],
        };
        assert_resource_exhausted(validate_insert_request(&too_many));
        let mut one_bad = InsertRequest {
            sequences: vec![sequence(2), sequence(2)],
        };
        one_bad.sequences[1].priority = f32::INFINITY;
        let error = assert_invalid_argument(validate_insert_request(&one_bad));
        assert_eq!(
            error.to_string(),
            "sequences[1].priority is not finite (inf)"
        );
    }

    #[test]
    fn sample_batch_size_is_bounded() {
        let error =
            assert_invalid_argument(validate_sample_request(&SampleRequest { batch_size: 0 }));
        assert_eq!(error.to_string(), "batch_size is 0, expected 1..=1024");
        let error = assert_resource_exhausted(validate_sample_request(&SampleRequest {
            batch_size: MAX_SAMPLE_BATCH_SIZE + 1,
        }));
        assert_eq!(
            error.to_string(),
            "batch_size has 1025 items, limit is 1024"
        );
    }

    #[test]
    fn priority_updates_must_match_keys_and_be_finite_non_negative() {
        let request =
            |keys: Vec<u64>, priorities: Vec<f32>| UpdatePrioritiesRequest { keys, priorities };
        assert_invalid_argument(validate_update_priorities_request(&request(vec![], vec![])));
        let error = assert_invalid_argument(validate_update_priorities_request(&request(
            vec![1, 2],
            vec![1.0],
        )));
        assert_eq!(error.to_string(), "priorities has 1 entries, expected 2");
        let error = assert_invalid_argument(validate_update_priorities_request(&request(
            vec![1, 2],
            vec![1.0, f32::NAN],
        )));
        assert_eq!(error.to_string(), "priorities[1] is not finite (NaN)");
        assert_invalid_argument(validate_update_priorities_request(&request(
            vec![1],
            vec![f32::INFINITY],
        )));
        let error = assert_invalid_argument(validate_update_priorities_request(&request(
            vec![1],
            vec![-1.0],
        )));
        assert!(
            matches!(error, ValidationError::FloatOutOfRange { .. }),
            "{error:?}"
        );
        let keys = vec![0; MAX_PRIORITY_UPDATES + 1];
        let priorities = vec![1.0; MAX_PRIORITY_UPDATES + 1];
        assert_resource_exhausted(validate_update_priorities_request(&request(
            keys, priorities,
        )));
    }

    #[test]
    fn parameters_need_version_unique_names_valid_finite_tensors() {
        let mut unversioned = parameters();
        unversioned.version = 0;
        let error = assert_invalid_argument(validate_parameters(&unversioned));
        assert!(
            error.to_string().starts_with("version is 0, expected 1..="),
            "{error}"
        );
        let mut duplicate = parameters();
        duplicate.tensors[1].name = "dense.weight".to_string();
        let error = assert_invalid_argument(validate_parameters(&duplicate));
        assert_eq!(
            error.to_string(),
            "tensors[1] repeats tensor name \"dense.weight\""
        );
        let mut unnamed = parameters();
        unnamed.tensors[0].name.clear();
        assert!(matches!(
            assert_invalid_argument(validate_parameters(&unnamed)),
            ValidationError::EmptyName { .. }
        ));
        let mut wrong_bytes = parameters();
        wrong_bytes.tensors[1].shape = vec![3];
        let error = assert_invalid_argument(validate_parameters(&wrong_bytes));
        assert_eq!(
            error.to_string(),
            "tensors[1].data has 8 bytes, expected 12"
        );
        let mut nan = parameters();
        nan.tensors[0] = f32_tensor("dense.weight", &[2], &[0.0, f32::NAN]);
        let error = assert_invalid_argument(validate_parameters(&nan));
        assert_eq!(error.to_string(), "tensors[0].data[1] is not finite (NaN)");
        let empty = Parameters {
            version: 1,
            tensors: vec![],
        };
        assert_invalid_argument(validate_parameters(&empty));
    }

    #[test]
    fn oversized_messages_are_resource_exhausted() {
        let big = Tensor {
            name: "big".to_string(),
            shape: vec![MAX_MESSAGE_BYTES as u64 + 1],
            dtype: DType::U8 as i32,
            data: Bytes::from(vec![0u8; MAX_MESSAGE_BYTES + 1]),
        };
        let error = assert_resource_exhausted(validate_message_size(&big, "tensor"));
        assert!(
            error.to_string().starts_with("tensor encodes to "),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .ends_with(&format!("limit is {MAX_MESSAGE_BYTES}")),
            "{error}"
        );
    }

    #[test]
    fn errors_convert_to_status_and_item_error() {
        let invalid = ValidationError::Empty {
            field: "frames".to_string(),
        };
        let status = tonic::Status::from(invalid.clone());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "frames is empty");
        let item = ItemError::from(invalid);
        assert_eq!(item.code(), ErrorCode::InvalidArgument);
        assert_eq!(item.message, "frames is empty");

        let exhausted = ValidationError::TooMany {
            field: "keys".to_string(),
            count: 9,
            max: 8,
        };
        assert_eq!(
            tonic::Status::from(exhausted.clone()).code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            ItemError::from(exhausted).code(),
            ErrorCode::ResourceExhausted
        );
    }

    #[test]
    fn error_messages_are_one_lowercase_line_without_trailing_period() {
        let errors = [
            validate_frame(&frame(0, 1, 1)).unwrap_err(),
            validate_frame_batch(&atari_batch(0)).unwrap_err(),
            validate_sequence(&Sequence {
                observations: None,
                ..sequence(2)
            })
            .unwrap_err(),
            validate_parameters(&Parameters {
                version: 0,
                tensors: vec![],
            })
            .unwrap_err(),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(!message.contains('\n'), "{message}");
            assert!(!message.ends_with('.'), "{message}");
            assert!(
                message.chars().next().is_some_and(|c| !c.is_uppercase()),
                "{message}"
            );
        }
    }

    #[test]
    fn progress_reports_need_finite_returns_and_real_games() {
        use crate::v1::FinishedGame;
        let game = |game_return: f32, game_length: u32| FinishedGame { env_id: 0, game_return, game_length };
        let mut report = ReportProgressRequest { actor_id: 1, run_id: 9, agent_steps: 40, finished: vec![game(-3.0, 12)], parameter_version: 2 };
        validate_report_progress(&report).unwrap();
        report.finished.push(game(f32::NAN, 3));
        assert_eq!(assert_invalid_argument(validate_report_progress(&report)).to_string(), "finished[1].game_return is not finite (NaN)");
        report.finished[1] = game(1.0, 0);
        assert_eq!(assert_invalid_argument(validate_report_progress(&report)).to_string(), "finished[1].game_length is 0, expected 1..=4294967295");
        report.finished = vec![game(0.0, 1); MAX_FINISHED_GAMES_PER_REPORT + 1];
        assert_resource_exhausted(validate_report_progress(&report));
    }
}
