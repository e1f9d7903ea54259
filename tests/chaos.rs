//! `synod-chaos` end to end: a short run of a real three-node cluster under the
//! nemesis passes every check, and the same run with one acknowledged write planted
//! out of the final state fails them, so a pass is never vacuous.

use std::process::Command;
use std::sync::Mutex;

/// One chaos run at a time: each starts three nodes and eight clients.
static ONE_RUN: Mutex<()> = Mutex::new(());

fn chaos(args: &[&str]) -> (Option<i32>, String) {
    let _alone = ONE_RUN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let output = Command::new(env!("CARGO_BIN_EXE_synod-chaos"))
        .args([
            "--synod",
            env!("CARGO_BIN_EXE_synod"),
            "--interval-ms",
            "1500",
        ])
        .args(args)
        .output()
        .expect("run synod-chaos");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

// Goal: under kills, pauses, restarts, partitions and a full disk the cluster's
// history is linearizable, no acknowledged write is lost and the replicas' logs agree.
// Method: `synod-chaos --seconds 20` with a fixed seed; exit 0 and its summary.
#[test]
fn a_short_chaos_run_passes_every_check() {
    let (code, text) = chaos(&["--seconds", "20", "--seed", "11"]);
    println!("{text}");
    assert_eq!(code, Some(0), "synod-chaos failed:\n{text}");
    assert!(text.contains("verdict: PASS"), "{text}");
    assert!(
        text.contains("(3) replicas' chosen logs identical: pass"),
        "{text}"
    );
    // The run did something: operations were acknowledged and events happened.
    assert!(text.contains("nemesis events"), "{text}");
}

// Goal: the checks can fail: a final state missing the last acknowledged write of a
// key is caught by the linearizability check and the lost-write check, exit 1.
// Method: `--plant-lost-write` on a short run.
#[test]
fn a_planted_lost_write_fails_the_run() {
    let (code, text) = chaos(&["--seconds", "6", "--seed", "12", "--plant-lost-write"]);
    println!("{text}");
    assert_eq!(
        code,
        Some(1),
        "a planted lost write must fail the run:\n{text}"
    );
    assert!(text.contains("planted: "), "{text}");
    assert!(text.contains("(1) linearizability per key: FAIL"), "{text}");
    assert!(
        text.contains("(2) acknowledged writes in the final state: FAIL"),
        "{text}"
    );
    assert!(text.contains("verdict: FAIL"), "{text}");
}
