//! The replay service's integration tests (wire fuzzing, loopback, security)
//! in one test binary, so the gRPC stack they share is compiled and linked once rather than
//! once per file (`cargo test --release -p <crate> --test integration <module>` runs one file).

mod support;
mod fuzz_wire;
mod loopback;
mod security;
