//! The command line of the `synod` binary, run as a user runs it: every subcommand's
//! `--help` lists every flag of the clap command it is built from (the same source,
//! compiled into this test), and a bad command line gets one line and status 2.

// The binary's command-line modules, for their clap definition (most of their code is
// the subcommands themselves, unused here).
#[expect(dead_code, reason = "only the clap definitions are used here")]
#[path = "../src/cli/mod.rs"]
mod cli;

mod common;

use clap::CommandFactory;
use common::serve::{one_node_serve, synod};

/// Every subcommand path (`["wal", "verify"]`) of `command`, hidden ones included,
/// with its clap command.
fn subcommands(
    command: &clap::Command,
    path: &[String],
    out: &mut Vec<(Vec<String>, clap::Command)>,
) {
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut at = path.to_vec();
        at.push(sub.get_name().to_string());
        out.push((at.clone(), sub.clone()));
        subcommands(sub, &at, out);
    }
}

// Goal: `synod --help` and `synod <every subcommand> --help` exit 0 and show every flag
// (and positional) that clap knows for that command.
// Method: walk the built clap command; run each `--help`; look for `--long` or `<NAME>`.
#[test]
fn every_help_lists_every_flag() {
    let mut root = cli::Synod::command();
    root.build();
    let mut all = vec![(Vec::new(), root.clone())];
    subcommands(&root, &[], &mut all);
    // Not vacuous: the subcommands and the flag counts of the big ones.
    let names: Vec<String> = all.iter().map(|(p, _)| p.join(" ")).collect();
    for expected in [
        "bench",
        "serve",
        "dev",
        "keygen",
        "sim",
        "wal",
        "wal verify",
        "wal dump",
        "wal bench",
        "put",
        "get",
        "del",
        "cas",
        "scan",
        "status",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    let mut checked = 0;
    for (path, command) in &all {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = synod(&args);
        let help = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
            let shown = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => format!("<{}>", arg.get_value_names().expect("positional")[0]),
            };
            assert!(
                help.contains(&shown),
                "{args:?} does not list {shown}:\n{help}"
            );
            checked += 1;
        }
        if path.is_empty() {
            for (sub, _) in all.iter().filter(|(p, _)| p.len() == 1 && p[0] != "wal") {
                assert!(help.contains(&sub[0]), "synod --help lacks {}", sub[0]);
            }
        }
    }
    let bench = all.iter().find(|(p, _)| p == &["bench"]).expect("bench");
    assert!(bench.1.get_arguments().count() > 15);
    assert!(checked > 60, "only {checked} flags checked");
}

/// Asserts that `args` exit 2 with one line on stderr holding `words`.
fn refused(args: &[&str], words: &str) {
    let output = synod(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(words),
        "{args:?}: {stderr}"
    );
    assert!(output.stdout.is_empty(), "{args:?}");
}

// Goal: a bad flag, a missing value, a missing required flag and excluded combinations
// exit 2 with one line naming the problem and the help to read.
// Method: run the binary with bad command lines (none starts anything).
#[test]
fn bad_command_lines_exit_2_with_one_line() {
    refused(&["serve", "--bogus"], "unexpected argument '--bogus'");
    refused(&["sim", "--seeds"], "a value is required for '--seeds <N>'");
    refused(&["serve", "--node"], "see 'synod serve --help'");
    refused(&["wal", "verify"], "<DIR>");
    refused(&["wal", "bench", "--rounds", "0"], "must be above zero");
    refused(&["bench", "--groups", "0"], "see 'synod bench --help'");
    refused(&["bench", "--cluster", "2"], "--target");
    refused(
        &["sim", "--seed", "1", "--seeds", "3"],
        "cannot be used with",
    );
    refused(&["keygen", "extra"], "unexpected argument 'extra'");
    refused(&["get", "k", "--no-auth"], "--target");
    refused(
        &["put", "k", "--target", "127.0.0.1:1", "--no-auth"],
        "<VALUE>",
    );
    refused(
        &["get", "k", "--target", "127.0.0.1:1"],
        "--client-key-file",
    );
    refused(
        &["cas", "k", "--target", "127.0.0.1:1", "--no-auth"],
        "--expected",
    );
    refused(
        &[
            "scan",
            "--target",
            "127.0.0.1:1",
            "--no-auth",
            "--limit",
            "0",
        ],
        "must be above zero",
    );
    let mut both = one_node_serve("x");
    both.extend(["--existing", "--no-auth"]);
    refused(&both, "'--new' cannot be used with '--existing'");
    refused(
        &[
            "bench",
            "--value-size",
            "100..5000",
            "--batch-bytes",
            "4096",
        ],
        "must hold the largest value",
    );
    refused(
        &["bench", "--catch-up", "4", "--restart", "1k"],
        "cannot be used with",
    );
    refused(&["bench", "--restart", "2k,1k"], "the counts must ascend");
    refused(&["bench", "--restart", "0"], "must be above zero");
    refused(&["bench", "--restart", "1x"], "is not an instance count");
    refused(&["bench", "--catch-up", "0"], "must be above zero");
    let bare = synod(&[]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("Usage: synod"));
}

/// `synod bench ARGS --json --dir DIR`: the JSON object it printed (the run must
/// succeed) and its human lines (stderr).
fn bench_json(args: &[&str], dir: &std::path::Path) -> (serde_json::Value, String) {
    let dir = dir.display().to_string();
    let mut all = vec![
        "bench",
        "--json",
        "--dir",
        &dir,
        "--groups",
        "2",
        "--clients",
        "8",
    ];
    all.extend(args);
    let output = synod(&all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{args:?} failed: {stdout}\n{stderr}"
    );
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (json, stderr)
}

/// `json[path]` as a number (the field must exist).
fn number(json: &serde_json::Value, path: &str) -> f64 {
    json.pointer(path)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {path}: {json}"))
}

// Goal: the two modes of `synod bench` that measure what follows a load run end to end
// and report every field they promise (so they cannot rot).
// Method: `--catch-up 4` with 256 KiB values (16 values while node 3 is down) and
// `--restart 200,400` on a two-group cluster; read the JSON and the human lines.
#[test]
fn bench_catch_up_and_restart_modes_report_their_fields() {
    let dir = common::cluster::TempDir::new("bench-modes");
    let (json, stderr) = bench_json(&["--catch-up", "4", "--value-size", "262144"], dir.path());
    assert_eq!(json["mode"], "catch_up");
    assert_eq!(json["complete"], true, "{json}");
    assert!(
        number(&json, "/catch_up/bytes") >= f64::from(4u32 << 20),
        "{json}"
    );
    assert!(number(&json, "/catch_up/instances") >= 16.0, "{json}");
    for field in ["seconds", "start_seconds", "mb_per_s", "streaming_mb_per_s"] {
        assert!(
            number(&json, &format!("/catch_up/{field}")) > 0.0,
            "{field}: {json}"
        );
    }
    number(&json, "/catch_up/wal_chunks");
    number(&json, "/catch_up/checkpoint_installs");
    number(&json, "/catch_up/share_of_slower_disk_limit");
    for limit in ["disk_sequential_mb_per_s", "disk_sequential_read_mb_per_s"] {
        assert!(
            number(&json, &format!("/limits/{limit}")) > 0.0,
            "{limit}: {json}"
        );
    }
    for words in ["catch-up: node", "served:", "of the slower"] {
        assert!(stderr.contains(words), "{words}: {stderr}");
    }

    let (json, stderr) = bench_json(&["--restart", "200,400"], dir.path());
    assert_eq!(json["mode"], "restart");
    let restarts = json["restarts"].as_array().expect("restarts");
    assert_eq!(restarts.len(), 2, "{json}");
    for (restart, wanted) in restarts.iter().zip([200.0, 400.0]) {
        assert!(number(restart, "/instances") >= wanted, "{restart}");
        assert!(number(restart, "/recovery_seconds") > 0.0, "{restart}");
        assert!(number(restart, "/wal_bytes") > 0.0, "{restart}");
        for field in [
            "stop_seconds",
            "catch_up_seconds",
            "load_seconds",
            "suffix_instances",
        ] {
            number(restart, &format!("/{field}"));
        }
    }
    assert!(
        number(&json, "/recovery_ratio_last_to_first") > 0.0,
        "{json}"
    );
    assert!(stderr.contains("recovery:"), "{stderr}");
    assert!(stderr.contains("stopping node"), "{stderr}");
}

// Goal: the key-value commands against a cluster that cannot be reached exit 4
// (unavailable: nothing written) with one line saying why, and a key out of bounds
// exits 6 (refused) before anything is sent.
// Method: run them against a port nothing listens on, with a 1 s timeout.
#[test]
fn kv_commands_without_a_cluster_exit_unavailable() {
    let target = ["--target", "127.0.0.1:1", "--no-auth", "--timeout-s", "1"];
    for command in [&["get", "k"][..], &["put", "k", "v"], &["status"]] {
        let mut args = command.to_vec();
        args.extend(target);
        let output = synod(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(stderr.starts_with("synod: unavailable: "), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let long_key = "k".repeat(1025);
    let mut args = vec!["get", long_key.as_str()];
    args.extend(target);
    let output = synod(&args);
    assert_eq!(output.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 to 1024 bytes"));
}
