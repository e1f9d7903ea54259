//! libFuzzer target `handshake`: see `synod_fuzz::handshake` (tests/fuzz_targets/mod.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = synod_fuzz::handshake(data);
});
