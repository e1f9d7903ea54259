//! libFuzzer target `peer_frame`: see `synod_fuzz::peer_frame` (tests/fuzz_targets/mod.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = synod_fuzz::peer_frame(data);
});
