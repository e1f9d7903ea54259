//! synod's fuzz targets: the checks live in `tests/fuzz_targets/mod.rs` (one file,
//! compiled here and into `tests/fuzz_corpus.rs`, which replays the corpus and the
//! regression inputs in every `cargo test`); each binary of `fuzz_targets/` hands
//! libFuzzer's input to one of them. Build and run with `tools/fuzz.sh`.

#[path = "../../tests/fuzz_targets/mod.rs"]
mod targets;

pub use targets::{client_frame, handshake, peer_frame, run, wal_segments, TARGETS};
