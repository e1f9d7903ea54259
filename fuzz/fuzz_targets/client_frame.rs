//! libFuzzer target `client_frame`: see `synod_fuzz::client_frame` (tests/fuzz_targets/mod.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = synod_fuzz::client_frame(data);
});
