//! Generates the `permakey.v1` prost messages and tonic clients/servers.
//!
//! Uses the protoc binary shipped by `protoc-bin-vendored`, so no system protoc is needed, and
//! writes a file descriptor set that servers register with `tonic-reflection`.

use std::path::PathBuf;

const PROTO_FILES: &[&str] = &[
    "permakey/v1/common.proto",
    "permakey/v1/keypoint_service.proto",
    "permakey/v1/replay_service.proto",
    "permakey/v1/learner_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known_includes = protoc_bin_vendored::include_path()?;

    let mut prost_config = prost_build::Config::new();
    prost_config.protoc_executable(protoc);

    for proto_file in PROTO_FILES {
        println!("cargo:rerun-if-changed={proto_file}");
    }

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Frame pixels and tensor data decode as `bytes::Bytes`: zero-copy slices of the
        // received buffer instead of a fresh `Vec<u8>` per field.
        .bytes(".permakey.v1")
        .file_descriptor_set_path(out_dir.join("permakey_v1_descriptor.bin"))
        .compile_with_config(
            prost_config,
            PROTO_FILES,
            &[
                ".",
                well_known_includes
                    .to_str()
                    .ok_or("non-utf8 protoc include path")?,
            ],
        )?;
    Ok(())
}
