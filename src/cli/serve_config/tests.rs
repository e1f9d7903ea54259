//! Tests of the configuration file: the shipped example, the errors, the precedence of
//! flags.

use super::*;
use crate::cli::{Command, Synod};
use clap::Parser;
use synod::paxos::LeaderPlacement;

const EXAMPLE: &str = include_str!("../../../tools/synod.example.toml");

/// The file's minimal valid content: the required keys.
const MINIMAL: &str = r#"
[node]
id = 2
dir = "/tmp/synod-config-test"
[cluster]
nodes = { 1 = "127.0.0.1:7000", 2 = "127.0.0.1:7010", 3 = "127.0.0.1:7020" }
[auth]
no_auth = true
"#;

/// `text` with every line `# PREFIXkey = value` uncommented.
fn uncomment(text: &str, prefix: &str) -> (String, usize) {
    let mut count = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("# ").and_then(|l| l.strip_prefix(prefix)) else {
                return line.to_string();
            };
            let key = rest.split(" = ").next().unwrap_or("");
            if rest.contains(" = ")
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                count += 1;
                rest.to_string()
            } else {
                line.to_string()
            }
        })
        .collect();
    (lines.join("\n"), count)
}

/// The error of planning `text`, parsed as the file `t.toml`.
fn refusal(text: &str) -> String {
    match ServeFile::parse(text, "t.toml").and_then(|file| file.plan(false)) {
        Ok(plan) => panic!("accepted: {plan:?}"),
        Err(error) => error,
    }
}

// Goal: the shipped example never rots: it parses and validates as it stands, every
// default it shows in a comment is the real default, and every key it shows as an
// example is a valid key.
// Method: plan the file as shipped; uncomment the `# key = value` lines and compare
// the configurations; uncomment the `# e.g. key = value` lines and plan again.
#[test]
fn example_file_parses_validates_and_shows_the_defaults() {
    let shipped = ServeFile::parse(EXAMPLE, "synod.example.toml")
        .and_then(|file| file.plan(false))
        .expect("the example as shipped");
    assert_eq!(shipped.config.node, NodeId(1));
    assert_eq!(shipped.config.nodes.len(), 3);
    assert_eq!(
        shipped.peer_key_file.as_deref(),
        Some(Path::new("/etc/synod/peer.key"))
    );
    assert!(
        shipped.client.is_none() && shipped.initial_state.is_none() && shipped.metrics.is_none()
    );

    let (defaults, count) = uncomment(EXAMPLE, "");
    assert_eq!(count, 33, "keys with a default shown in the example");
    let spelled = ServeFile::parse(&defaults, "defaults")
        .and_then(|file| file.plan(false))
        .unwrap_or_else(|e| panic!("the defaults shown: {e}"));
    assert_eq!(
        format!("{:?}", spelled.config),
        format!("{:?}", shipped.config),
        "a default shown in the example is not the real one"
    );
    assert_eq!(spelled.state_machine, StateMachine::Kv);

    let (examples, count) = uncomment(&defaults, "e.g. ");
    assert_eq!(count, 6, "keys without a default shown in the example");
    let plan = ServeFile::parse(&examples, "examples")
        .and_then(|file| file.plan(false))
        .unwrap_or_else(|e| panic!("the examples shown: {e}"));
    let client = plan.client.expect("client.address is shown");
    assert_eq!(client.addresses.len(), 3);
    assert_eq!(plan.initial_state, Some(InitialState::Existing));
    assert_eq!(plan.config.cores, vec![0, 1]);
    assert!(plan.client_key_file.is_some());
    assert_eq!(
        plan.metrics,
        Some("127.0.0.1:9100".parse().expect("address"))
    );
}

// Goal: a faulty file is refused with the key named, and the line where the parser
// locates it: an unknown key or section, a value of the wrong type or range, a
// missing required key, a value `Config::validate` refuses, conflicting keys.
// Method: plan small files and look for the key and the line in the message.
#[test]
fn faults_are_refused_naming_the_key() {
    let with = |extra: &str| format!("{MINIMAL}{extra}");
    let cases: Vec<(String, &[&str])> = vec![
        (
            with("[group]\nwindow = 8\n"),
            &["t.toml:10:", "[group] window = 8", "unknown field `window`"],
        ),
        (
            with("[grup]\n"),
            &["t.toml:9:", "[grup]", "unknown field `grup`"],
        ),
        (
            with("[group]\nwindow_instances_max = -1\n"),
            &[
                "t.toml:10:",
                "[group] window_instances_max = -1",
                "invalid value",
            ],
        ),
        (
            with("[group]\nlease_ms = \"soon\"\n"),
            &["t.toml:10:", "lease_ms", "invalid type"],
        ),
        (
            with("[group]\nleader_placement = \"elsewhere\"\n"),
            &["t.toml:10:", "leader_placement", "`balanced`"],
        ),
        (
            with("[group]\nretention_size_max = \"unbound\"\n"),
            &["t.toml:10:", "retention_size_max", "\"unbounded\""],
        ),
        (
            MINIMAL.replace("id = 2\n", ""),
            &["node.id is missing", "--node"],
        ),
        (
            MINIMAL.replace("nodes = {", "peers = {"),
            &["[cluster] peers", "unknown field `peers`"],
        ),
        (
            with("[group]\nwindow_instances_max = 0\n"),
            &["invalid configuration", "window_instances_max = 0"],
        ),
        (
            with("[client]\naddress = \"127.0.0.1:7100\"\nin_flight_max = 0\n"),
            &["client.in_flight_max = 0: must be above zero"],
        ),
        (
            MINIMAL.replace("no_auth = true", "no_auth = true\npeer_key_file = \"k\""),
            &["auth.no_auth = true conflicts with auth.peer_key_file"],
        ),
        (
            MINIMAL.replace("no_auth = true", ""),
            &["auth.peer_key_file is missing"],
        ),
        (
            MINIMAL.replace("1 = \"127.0.0.1:7000\"", "one = \"127.0.0.1:7000\""),
            &["cluster.nodes: key \"one\" is not a node id"],
        ),
    ];
    for (text, expected) in &cases {
        let error = refusal(text);
        for part in *expected {
            assert!(
                error.contains(part),
                "expected {part:?} in: {error}\n--- file:\n{text}"
            );
        }
        assert!(!error.contains('\n'), "one line: {error}");
    }
    assert!(refusal(&with("[group]\nwindow_instances_max = 0\n")).contains("window_instances_max"));
}

// Goal: the flags given override the file's keys, and only those (module docs,
// "Precedence"); `--test-timeouts` sits below the file.
// Method: a file setting several keys; parse a command line with some flags; plan.
#[test]
fn flags_override_the_file() {
    let text = format!("{MINIMAL}[cluster.extra]\n");
    // Sub-tables of a section are unknown keys too.
    assert!(ServeFile::parse(&text, "t.toml").is_err());
    let text = MINIMAL.replace(
        "[auth]",
        "groups = 4\nshards = 2\n[group]\nwindow_instances_max = 32\nlease_ms = 250\n\
         leader_placement = \"off\"\n\
         [wal]\ntruncation = true\n[auth]",
    );
    let mut file = ServeFile::parse(&text, "t.toml").expect("valid");
    let line = "synod serve --config t.toml --groups 8 --key-file k --no-truncation \
                --test-timeouts --retention-instances-max unbounded --leader-placement balanced";
    let Command::Serve(args) = Synod::try_parse_from(line.split_whitespace())
        .expect("flags")
        .command
    else {
        panic!("not serve");
    };
    file.overlay(&args);
    let plan = file.plan(args.test_timeouts).expect("valid");
    assert_eq!(plan.config.group_count, 8, "--groups over cluster.groups");
    assert_eq!(plan.config.shards, 2, "cluster.shards kept");
    assert_eq!(plan.config.node, NodeId(2), "node.id kept");
    assert_eq!(plan.config.group.window_instances_max, 32);
    assert_eq!(
        plan.config.group.leader_placement,
        LeaderPlacement::Balanced,
        "--leader-placement over group.leader_placement"
    );
    assert_eq!(
        plan.config.group.lease_ns, 250_000_000,
        "the file over --test-timeouts"
    );
    assert_eq!(
        plan.config.group.election_timeout_ns, 300_000_000,
        "--test-timeouts over the default"
    );
    assert_eq!(
        plan.config.truncation,
        TruncationPolicy::OFF,
        "--no-truncation"
    );
    assert_eq!(plan.config.group.retention_instances_max, u64::MAX);
    assert_eq!(
        plan.peer_key_file.as_deref(),
        Some(Path::new("k")),
        "--key-file over auth.no_auth"
    );
}
