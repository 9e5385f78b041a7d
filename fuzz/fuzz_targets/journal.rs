//! Fuzz target `journal`: see `fuzz/harness_store.rs`.
#![no_main]

#[path = "../harness_store.rs"]
mod harness_store;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness_store::journal(data));
