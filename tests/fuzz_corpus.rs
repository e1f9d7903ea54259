//! The fuzz targets' checks (`tests/fuzz_targets/mod.rs`, shared with the libFuzzer
//! binaries of `fuzz/`) over the checked-in inputs: the seed corpus `fuzz/corpus/<target>/`
//! and every input a fuzzer ever failed on, `fuzz/regressions/<target>/`. A crash found
//! by `tools/fuzz.sh` is kept by copying its input into `fuzz/regressions/<target>/`;
//! from then on this test fails if the bug comes back.
//!
//! `cargo test --release -- --ignored write_fuzz_seeds` rewrites the seed corpus (this
//! file writes the WAL and handshake seeds; `tests/codec.rs` and the client codec's unit
//! tests write the frame seeds).

mod fuzz_targets;

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, in name order (none if it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target`'s check on every file of `fuzz/<kind>/<target>/`; returns how many
/// files and the sum of what the check returned (frames decoded, records recovered,
/// peers accepted).
fn replay(kind: &str, target: &str) -> (usize, usize) {
    let files = files_in(&fuzz_dir().join(kind).join(target));
    let mut found = 0;
    for file in &files {
        let data = fs::read(file).expect("a readable input");
        eprintln!("{target}: {}", file.display());
        found += fuzz_targets::run(target, &data);
    }
    (files.len(), found)
}

// Goal: every seed of the corpus passes its target's checks, every target has seeds,
// and the seeds reach past the decoders' first refusals (frames that decode, logs that
// recover records, peers accepted): the checks would pass vacuously otherwise.
// Method: replay fuzz/corpus/<target>/* through the shared checks.
#[test]
fn seed_corpus_passes() {
    for target in fuzz_targets::TARGETS {
        let (files, found) = replay("corpus", target);
        assert!(
            files >= 3,
            "{target}: only {files} seeds in fuzz/corpus/{target}/"
        );
        assert!(
            found >= files / 2,
            "{target}: {files} seeds, only {found} accepted"
        );
    }
}

// Goal: no input that once made a target fail fails again.
// Method: replay fuzz/regressions/<target>/* (inputs kept from fuzzing runs).
#[test]
fn fuzz_regressions_pass() {
    let mut total = 0;
    for target in fuzz_targets::TARGETS {
        total += replay("regressions", target).0;
    }
    eprintln!("{total} regression inputs replayed");
}

// Goal: the generated seeds mean what they say: each WAL seed recovers its whole log,
// an honest keyed proof is accepted and a forged one refused, and the unkeyed hello of
// a configured peer is accepted.
// Method: build the seeds in memory and run each through its check.
#[test]
fn generated_seeds_are_meaningful() {
    for (name, data) in fuzz_targets::wal_seeds() {
        let records = fuzz_targets::wal_segments(&data);
        assert!(records >= 30, "{name}: only {records} records recovered");
    }
    let outcome = |name: &str| {
        let seeds = fuzz_targets::handshake_seeds();
        let (_, data) = seeds
            .iter()
            .find(|(n, _)| n == name)
            .expect("a seed of that name");
        fuzz_targets::handshake(data)
    };
    assert_eq!(
        outcome("hello-keyed-false"),
        1,
        "an unkeyed configured peer"
    );
    assert_eq!(
        outcome("hello-honest-keyed-true"),
        1,
        "an honest keyed proof"
    );
    assert_eq!(
        outcome("hello-keyed-true"),
        0,
        "a proof made without the key"
    );
    assert_eq!(
        outcome("reply-keyed-false"),
        1,
        "the reply of an unkeyed acceptor"
    );
    assert_eq!(
        outcome("reply-keyed-true"),
        1,
        "the reply of a keyed acceptor"
    );
}

/// Writes `seeds` into `fuzz/corpus/<target>/`, one file each.
fn write_seeds(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).expect("create the corpus directory");
    for (name, data) in seeds {
        fs::write(dir.join(format!("seed-{name}")), data).expect("write a seed");
    }
}

// Goal: (re)write the WAL and handshake seed corpus. Not a check: run on demand.
// Method: the generators of tests/fuzz_targets/mod.rs, written as files.
#[test]
#[ignore = "writes fuzz/corpus/: cargo test -- --ignored write_fuzz_seeds"]
fn write_fuzz_seeds() {
    write_seeds("wal_segments", &fuzz_targets::wal_seeds());
    write_seeds("handshake", &fuzz_targets::handshake_seeds());
}
