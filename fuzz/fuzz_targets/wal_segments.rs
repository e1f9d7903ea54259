//! libFuzzer target `wal_segments`: see `synod_fuzz::wal_segments` (tests/fuzz_targets/mod.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = synod_fuzz::wal_segments(data);
});
