//! libFuzzer target: every `permakey.v1` message a server (or client) receives, decoded,
//! validated and, for the replay service's messages, applied to a small replay table.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = replay_service::fuzzing::wire_message(data);
});
