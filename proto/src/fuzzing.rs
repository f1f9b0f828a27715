//! Entry point for fuzzing message validation (`fuzz/fuzz_targets/wire_messages.rs` with
//! cargo-fuzz; the short proptest run in `replay/service/tests/integration/fuzz_wire.rs`).
//!
//! [`decode_and_validate`] treats the first byte as a selector of the message a server receives
//! (every request type of `permakey.v1`, plus the [`Parameters`] and [`InferResponse`] a client
//! receives) and the rest as its protobuf encoding. Decoding may fail; validation may reject;
//! neither may panic. A message that passes is returned, so callers can push it further (the
//! replay service's conversion into library sequences, for instance).

use prost::Message;

use crate::{
    v1::{InferRequest, InferResponse, InsertRequest, Parameters, ReportProgressRequest, SampleRequest, UpdatePrioritiesRequest},
    validate::{self, ValidationError},
};

/// A decoded message that passed its validation.
#[derive(Debug, Clone)]
pub enum Validated {
    Infer(InferRequest),
    InferResponse(InferResponse),
    Insert(InsertRequest),
    Sample(SampleRequest),
    UpdatePriorities(UpdatePrioritiesRequest),
    ReportProgress(ReportProgressRequest),
    Parameters(Parameters),
}

/// Why [`decode_and_validate`] turned the bytes down.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("empty input")]
    Empty,
    #[error("does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("{0}")]
    Invalid(#[from] ValidationError),
}

/// Decodes `data[1..]` as the message `data[0] % 7` selects and validates it (module docs).
pub fn decode_and_validate(data: &[u8]) -> Result<Validated, Rejected> {
    let (&selector, bytes) = data.split_first().ok_or(Rejected::Empty)?;
    Ok(match selector % 7 {
        0 => {
            let request = InferRequest::decode(bytes)?;
            validate::validate_infer_request(&request)?;
            Validated::Infer(request)
        }
        1 => {
            let request = InsertRequest::decode(bytes)?;
            validate::validate_message_size(&request, "insert request")?;
            validate::validate_insert_request(&request)?;
            Validated::Insert(request)
        }
        2 => {
            let request = SampleRequest::decode(bytes)?;
            validate::validate_sample_request(&request)?;
            Validated::Sample(request)
        }
        3 => {
            let request = UpdatePrioritiesRequest::decode(bytes)?;
            validate::validate_update_priorities_request(&request)?;
            Validated::UpdatePriorities(request)
        }
        4 => {
            let request = ReportProgressRequest::decode(bytes)?;
            validate::validate_report_progress(&request)?;
            Validated::ReportProgress(request)
        }
        5 => {
            let parameters = Parameters::decode(bytes)?;
            validate::validate_parameters(&parameters)?;
            Validated::Parameters(parameters)
        }
        _ => {
            let response = InferResponse::decode(bytes)?;
            // the client checks a response against the frames it sent; the fuzzer has none, so
            // it checks the keypoints alone
            for keypoints in &response.keypoints {
                validate::validate_keypoints(keypoints)?;
            }
            Validated::InferResponse(response)
        }
    })
}
