//! cargo-fuzz target `manifest`: the body lives in `fuzz/src/targets.rs`, shared
//! with the corpus replay test (`tests/e2e/fuzz_corpus.rs`).
#![no_main]

#[path = "../src/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::manifest(data));
