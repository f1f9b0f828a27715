//! The keypoint service's integration tests (batcher, loopback, security)
//! in one test binary, so the gRPC stack they share is compiled and linked once rather than
//! once per file (`cargo test --release -p <crate> --test integration <module>` runs one file).

mod batcher;
mod loopback;
mod security;
