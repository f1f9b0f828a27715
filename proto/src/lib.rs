//! Wire contract of PermaKey-RL: the `permakey.v1` protobuf package, its generated prost
//! messages and tonic clients/servers, and pure validation of incoming messages.
//!
//! Three services join the distributed mode's processes (see `DESIGN.md`):
//! - [`v1::keypoint_service_server::KeypointService`]: actors stream frames, the keypoint
//!   service answers with keypoints (and on request heatmaps and features) per frame;
//! - [`v1::replay_service_server::ReplayService`]: actors insert sequences, the learner samples
//!   them and updates their priorities;
//! - [`v1::learner_service_server::LearnerService`]: actors fetch or follow versioned
//!   parameters.
//!
//! A server handler validates each message once, at the boundary, and maps the error to a
//! status:
//!
//! ```
//! use pkrl_proto::v1::SampleRequest;
//! use pkrl_proto::validate::validate_sample_request;
//!
//! fn sample(request: &SampleRequest) -> Result<(), tonic::Status> {
//!     validate_sample_request(request)?; // ValidationError -> InvalidArgument/ResourceExhausted
//!     Ok(())
//! }
//! assert_eq!(sample(&SampleRequest { batch_size: 0 }).unwrap_err().code(), tonic::Code::InvalidArgument);
//! ```
//!
//! Design decisions:
//! - The `.proto` files live in `proto/permakey/v1/`; the package is versioned (`v1`) so a
//!   breaking change becomes `v2` beside it, never an edit in place.
//! - `build.rs` runs the protoc shipped by `protoc-bin-vendored`, so building needs no system
//!   protoc, and writes a file descriptor set exposed as [`FILE_DESCRIPTOR_SET`] for
//!   `tonic-reflection`.
//! - `bytes` fields (frame pixels, tensor data) decode as [`bytes::Bytes`], slices of the
//!   received buffer rather than copies.
//! - Per-request failures inside a stream travel as [`v1::ItemError`] so one bad frame batch
//!   does not end an actor's stream; [`validate::ValidationError`] converts to both
//!   [`tonic::Status`] and [`v1::ItemError`].
//! - Size limits are constants in [`validate`]; servers pass [`validate::MAX_MESSAGE_BYTES`]
//!   to `max_decoding_message_size`/`max_encoding_message_size` of the generated servers and
//!   clients (tonic's default of 4 MiB is too small for parameter snapshots).
//! - [`security`]: an optional shared token required on every `permakey.v1` RPC (health and
//!   reflection stay open) and optional TLS, for every server and client.

pub mod fuzzing;
pub mod security;
pub mod serving;
pub mod validate;

/// Generated messages, clients and servers of the `permakey.v1` protobuf package.
pub mod v1 {
    tonic::include_proto!("permakey.v1");
}

/// Encoded `google.protobuf.FileDescriptorSet` of every `permakey.v1` file, for
/// `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/permakey_v1_descriptor.bin"));

impl v1::DType {
    /// Returns the size of one element in bytes, or `None` for [`v1::DType::Unspecified`].
    pub const fn size_bytes(self) -> Option<usize> {
        match self {
            v1::DType::Unspecified => None,
            v1::DType::U8 => Some(1),
            v1::DType::F16 | v1::DType::Bf16 => Some(2),
            v1::DType::I32 | v1::DType::F32 => Some(4),
            v1::DType::I64 | v1::DType::F64 => Some(8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1::DType;

    #[test]
    fn dtype_sizes_match_their_names() {
        assert_eq!(DType::Unspecified.size_bytes(), None);
        assert_eq!(DType::U8.size_bytes(), Some(1));
        assert_eq!(DType::F16.size_bytes(), Some(2));
        assert_eq!(DType::Bf16.size_bytes(), Some(2));
        assert_eq!(DType::I32.size_bytes(), Some(4));
        assert_eq!(DType::F32.size_bytes(), Some(4));
        assert_eq!(DType::I64.size_bytes(), Some(8));
        assert_eq!(DType::F64.size_bytes(), Some(8));
    }

    #[test]
    fn file_descriptor_set_lists_every_service() {
        use prost::Message;
        let descriptor_set =
            prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let mut service_names: Vec<String> = descriptor_set
            .file
            .iter()
            .filter(|file| file.package() == "permakey.v1")
            .flat_map(|file| {
                file.service
                    .iter()
                    .map(|service| service.name().to_string())
            })
            .collect();
        service_names.sort();
        assert_eq!(
            service_names,
            ["KeypointService", "LearnerService", "ReplayService"]
        );
    }

    #[test]
    fn file_descriptor_set_registers_with_reflection() {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(super::FILE_DESCRIPTOR_SET)
            .build_v1();
        assert!(
            reflection.is_ok(),
            "descriptor set rejected: {:?}",
            reflection.err()
        );
    }
}
