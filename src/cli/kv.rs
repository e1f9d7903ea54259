//! `synod put|get|del|cas|scan|status`: the client command line of a running cluster
//! whose groups run the built-in key-value store (`synod serve`, `synod::kv`), over
//! `synod::client::Client`.
//!
//! Each key lives in the group `synod::kv::group_of(key, G)`, where G is the
//! cluster's group count (`--groups`, or asked of the first node that answers a
//! status request). Writes are exactly-once: the command opens a session in the
//! key's group, sends its mutation with sequence 1, and retries it with the same
//! sequence after any outcome it cannot know (a leader change, a lost connection, a
//! timeout) until `--timeout-s`: the store applies it at most once whatever the
//! retries. Reads go to the group's leader (linearizable).
//!
//! Exit statuses: 0 done (`get`/`del` found the key, `cas` swapped); 1
//! ([`EXIT_NOT_FOUND`]) no such key; 2 a bad command line; 3 ([`EXIT_MISMATCH`]) the
//! compare-and-set did not match (nothing changed); 4 ([`EXIT_UNAVAILABLE`]) the
//! cluster could not be reached or did not serve in time, and nothing was written; 5
//! ([`EXIT_INDETERMINATE`]) a write's outcome is unknown (it may have been applied,
//! at most once); 6 ([`EXIT_REFUSED`]) the store or the node refused the request
//! (too large, a full group, a wrong key or cluster). One line on stderr says why.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgGroup, Args};
use synod::client::{Client, ClientConfig, Error, NodeStatus, ServerError};
use synod::kv::{
    group_of, Answer, Command, ErrorCode, Query, Session, WriteOp, KEY_SIZE_MAX, SCAN_KEYS_MAX,
    SCAN_SIZE_MAX, VALUE_SIZE_MAX,
};
use synod::paxos::{GroupId, Instance, NodeId};
use synod::runtime::clock::MonotonicClock;

use super::{positive, read_key};

/// No such key (`get`, `del`).
pub const EXIT_NOT_FOUND: u8 = 1;
/// The compare-and-set did not match.
pub const EXIT_MISMATCH: u8 = 3;
/// Nothing was done: no node served in time.
pub const EXIT_UNAVAILABLE: u8 = 4;
/// A write's outcome is unknown.
pub const EXIT_INDETERMINATE: u8 = 5;
/// The store or the node refused the request.
pub const EXIT_REFUSED: u8 = 6;

/// How a running cluster is reached (the flags every client subcommand takes).
#[derive(Clone, Debug, Args)]
#[command(group(ArgGroup::new("auth").args(["client_key_file", "no_auth"]).required(true)))]
pub struct TargetArgs {
    /// The nodes' client addresses (`synod serve --client`); one that answers is
    /// enough, the others are learned from it.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',', required = true,
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub target: Vec<String>,
    /// The cluster's id (its `synod serve --cluster`).
    #[arg(long, value_name = "C", default_value_t = 1)]
    pub cluster: u64,
    /// The cluster's client key (hex, as `synod keygen` writes).
    #[arg(long, value_name = "FILE", conflicts_with = "no_auth")]
    pub client_key_file: Option<PathBuf>,
    /// The cluster's nodes hold no client key.
    #[arg(long)]
    pub no_auth: bool,
    /// The cluster's group count (`synod serve --groups`) [default: asked of the
    /// cluster].
    #[arg(long, value_name = "G", value_parser = positive::<u32>)]
    pub groups: Option<u32>,
    /// Give up after this many seconds, retrying meanwhile (leader changes, a node
    /// down).
    #[arg(long, value_name = "S", default_value_t = 30, value_parser = positive::<u64>)]
    pub timeout_s: u64,
}

/// `synod put KEY VALUE`.
#[derive(Clone, Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The key (1 to 1024 bytes).
    key: String,
    /// The value (at most 256 KiB).
    value: String,
}

/// `synod get KEY` and `synod del KEY`.
#[derive(Clone, Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The key.
    key: String,
}

/// `synod cas KEY [--expected OLD] [--new NEW]`.
#[derive(Clone, Debug, Args)]
#[command(group(ArgGroup::new("change").args(["expected", "new"]).multiple(true).required(true)))]
pub struct CasArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The key.
    key: String,
    /// The value the key must hold [default: the key must be absent].
    #[arg(long, value_name = "OLD")]
    expected: Option<String>,
    /// The value it then holds [default: the key is removed].
    #[arg(long, value_name = "NEW")]
    new: Option<String>,
}

/// `synod scan`.
#[derive(Clone, Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The first key (inclusive) [default: the first key].
    #[arg(long, value_name = "KEY", default_value = "")]
    start: String,
    /// The first key not wanted [default: to the last key].
    #[arg(long, value_name = "KEY")]
    end: Option<String>,
    /// Entries printed at most (1 to 10000); when more remain, `next <KEY>` goes to
    /// stderr (continue with --start KEY).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = positive::<u32>)]
    limit: u32,
}

/// `synod status`.
#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
}

/// Why a command ended without its answer.
enum Failure {
    /// Nothing was done (or nothing that matters: a spare session).
    Unavailable(String),
    /// A write may have been applied (at most once).
    Indeterminate(String),
    /// Refused for good.
    Refused(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        let (code, line) = match self {
            Failure::Unavailable(why) => (EXIT_UNAVAILABLE, format!("unavailable: {why}")),
            Failure::Indeterminate(why) => (
                EXIT_INDETERMINATE,
                format!("outcome unknown (applied at most once): {why}"),
            ),
            Failure::Refused(why) => (EXIT_REFUSED, format!("refused: {why}")),
        };
        eprintln!("synod: {line}");
        ExitCode::from(code)
    }
}

/// A connected client, the group count and the deadline of the whole command.
struct Target {
    client: Client,
    groups: u32,
    clock: MonotonicClock,
    timeout_s: f64,
}

impl Target {
    fn connect(args: &TargetArgs) -> Result<Target, Failure> {
        let key = read_key("--client-key-file", args.client_key_file.as_deref())
            .map_err(Failure::Refused)?;
        let timeout = Duration::from_secs(args.timeout_s);
        let config = ClientConfig {
            key,
            request_timeout: timeout.min(Duration::from_secs(3)),
            ..ClientConfig::default()
        };
        let clock = MonotonicClock::start();
        let client = Client::connect_with(&args.target, args.cluster, config)
            .map_err(|e| Failure::Unavailable(format!("--target: {e}")))?;
        let mut target = Target {
            client,
            groups: 0,
            clock,
            timeout_s: args.timeout_s as f64,
        };
        target.groups = match args.groups {
            Some(groups) => groups,
            None => target.retry(false, |client| {
                let mut last = Error::NoReachableNode { tried: Vec::new() };
                for node in client.nodes() {
                    match client.node_status_blocking(node) {
                        Ok(status) => return Ok(group_count(&status)),
                        Err(error) => last = error,
                    }
                }
                Err(last)
            })?,
        };
        if target.groups == 0 {
            return Err(Failure::Refused("the node reports no group".to_string()));
        }
        Ok(target)
    }

    fn expired(&self) -> bool {
        self.clock.elapsed_s() >= self.timeout_s
    }

    /// Runs `call` until it succeeds, a permanent error, or the deadline. `write`:
    /// an outcome `call` cannot know makes the failure at the deadline
    /// `Indeterminate` (the caller must make a retry harmless).
    fn retry<T>(
        &self,
        write: bool,
        mut call: impl FnMut(&Client) -> Result<T, Error>,
    ) -> Result<T, Failure> {
        let mut uncertain = false;
        let mut pause = Duration::from_millis(20);
        loop {
            let error = match call(&self.client) {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            match &error {
                Error::Server(
                    ServerError::TooLarge { .. }
                    | ServerError::NoSuchGroup { .. }
                    | ServerError::Rejected { .. },
                )
                | Error::Refused { .. }
                | Error::Handshake { .. }
                | Error::Codec { .. } => return Err(Failure::Refused(error.to_string())),
                _ if !error.is_retryable() => uncertain = true,
                _ => {}
            }
            if self.expired() {
                let why = format!("{error} (gave up after {} s)", self.timeout_s);
                return Err(if write && uncertain {
                    Failure::Indeterminate(why)
                } else {
                    Failure::Unavailable(why)
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Opens a session in `group` (a retried open may leave a spare session, which
    /// expires unused).
    fn open_session(&self, group: GroupId) -> Result<u64, Failure> {
        let command = Command::OpenSession.encode();
        let output = self.retry(false, |client| {
            client
                .propose_blocking(group, command.clone())
                .map(|p| p.output)
        })?;
        match decode(&output)? {
            Answer::Session { id } => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies `op` exactly once in the key's group and returns the store's answer.
    fn write(&self, op: WriteOp) -> Result<Answer, Failure> {
        let group = group_of(op.key(), self.groups);
        let id = self.open_session(group)?;
        let command = Command::Write {
            session: Session { id, sequence: 1 },
            op,
        }
        .encode();
        let output = self.retry(true, |client| {
            client
                .propose_blocking(group, command.clone())
                .map(|p| p.output)
        })?;
        match decode(&output)? {
            Answer::Error {
                code: ErrorCode::SessionUnknown,
                reason,
            } => Err(Failure::Indeterminate(format!(
                "the session expired while the write was retried: {reason}"
            ))),
            answer => Ok(answer),
        }
    }

    /// Answers `query` in `group` (linearizable, at the leader).
    fn read(&self, group: GroupId, query: &Query) -> Result<Answer, Failure> {
        let query = query.encode();
        let output = self.retry(false, |client| client.read_blocking(group, query.clone()))?;
        decode(&output)
    }
}

/// How many groups a node's status lists.
fn group_count(status: &NodeStatus) -> u32 {
    let count: usize = status.shards.iter().map(|s| s.groups.len()).sum();
    u32::try_from(count).unwrap_or(u32::MAX)
}

fn decode(output: &[u8]) -> Result<Answer, Failure> {
    match Answer::decode(output) {
        Ok(Answer::Error { code, reason }) if code != ErrorCode::SessionUnknown => {
            Err(Failure::Refused(format!("{code:?}: {reason}")))
        }
        Ok(answer) => Ok(answer),
        Err(error) => Err(Failure::Refused(format!(
            "the node's answer is not a key-value answer ({error}); does it run `--state-machine kv`?"
        ))),
    }
}

fn unexpected(answer: &Answer) -> Failure {
    Failure::Refused(format!("unexpected answer {answer:?}"))
}

/// A key given on the command line, checked against the store's bounds.
fn key(text: &str) -> Result<Bytes, Failure> {
    if text.is_empty() || text.len() > KEY_SIZE_MAX {
        return Err(Failure::Refused(format!(
            "a key of {} bytes: keys are 1 to {KEY_SIZE_MAX} bytes",
            text.len()
        )));
    }
    Ok(Bytes::copy_from_slice(text.as_bytes()))
}

fn value(text: &str) -> Result<Bytes, Failure> {
    if text.len() > VALUE_SIZE_MAX {
        return Err(Failure::Refused(format!(
            "a value of {} bytes, above {VALUE_SIZE_MAX}",
            text.len()
        )));
    }
    Ok(Bytes::copy_from_slice(text.as_bytes()))
}

fn print_line(parts: &[&[u8]]) {
    let mut out = std::io::stdout().lock();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            let _ = out.write_all(b"\t");
        }
        let _ = out.write_all(part);
    }
    let _ = out.write_all(b"\n");
}

fn finish(result: Result<ExitCode, Failure>) -> Result<ExitCode, String> {
    Ok(result.unwrap_or_else(Failure::exit))
}

/// Runs `synod put`.
pub fn put(args: PutArgs) -> Result<ExitCode, String> {
    finish((|| {
        let op = WriteOp::Put {
            key: key(&args.key)?,
            value: value(&args.value)?,
        };
        match Target::connect(&args.target)?.write(op)? {
            Answer::Done => Ok(ExitCode::SUCCESS),
            other => Err(unexpected(&other)),
        }
    })())
}

/// Runs `synod get`: the value on stdout.
pub fn get(args: KeyArgs) -> Result<ExitCode, String> {
    finish((|| {
        let key = key(&args.key)?;
        let target = Target::connect(&args.target)?;
        let group = group_of(&key, target.groups);
        match target.read(group, &Query::Get { key })? {
            Answer::Value(Some(value)) => {
                print_line(&[&value]);
                Ok(ExitCode::SUCCESS)
            }
            Answer::Value(None) => {
                eprintln!("synod: not found: {}", args.key);
                Ok(ExitCode::from(EXIT_NOT_FOUND))
            }
            other => Err(unexpected(&other)),
        }
    })())
}

/// Runs `synod del`.
pub fn del(args: KeyArgs) -> Result<ExitCode, String> {
    finish((|| {
        let op = WriteOp::Delete {
            key: key(&args.key)?,
        };
        match Target::connect(&args.target)?.write(op)? {
            Answer::Deleted { existed: true } => Ok(ExitCode::SUCCESS),
            Answer::Deleted { existed: false } => {
                eprintln!("synod: not found: {}", args.key);
                Ok(ExitCode::from(EXIT_NOT_FOUND))
            }
            other => Err(unexpected(&other)),
        }
    })())
}

/// Runs `synod cas`.
pub fn cas(args: CasArgs) -> Result<ExitCode, String> {
    finish((|| {
        let op = WriteOp::Cas {
            key: key(&args.key)?,
            expected: args.expected.as_deref().map(value).transpose()?,
            new: args.new.as_deref().map(value).transpose()?,
        };
        match Target::connect(&args.target)?.write(op)? {
            Answer::Swapped => Ok(ExitCode::SUCCESS),
            Answer::Mismatch => {
                eprintln!(
                    "synod: cas mismatch: {} does not hold the expected value",
                    args.key
                );
                Ok(ExitCode::from(EXIT_MISMATCH))
            }
            other => Err(unexpected(&other)),
        }
    })())
}

/// Runs `synod scan`: `KEY<TAB>VALUE` lines in key order over every group.
pub fn scan(args: ScanArgs) -> Result<ExitCode, String> {
    finish((|| {
        if args.limit > SCAN_KEYS_MAX {
            return Err(Failure::Refused(format!(
                "--limit {}: at most {SCAN_KEYS_MAX}",
                args.limit
            )));
        }
        let start = if args.start.is_empty() {
            Bytes::new()
        } else {
            key(&args.start)?
        };
        let end = args.end.as_deref().map(key).transpose()?;
        let target = Target::connect(&args.target)?;
        let query = Query::Scan {
            start,
            end,
            keys_max: args.limit,
            size_max: SCAN_SIZE_MAX,
        };
        let mut pages = Vec::new();
        for group in 0..target.groups {
            match target.read(GroupId(group), &query)? {
                Answer::Scan { entries, next } => pages.push((entries, next)),
                other => return Err(unexpected(&other)),
            }
        }
        let (entries, next) = merge(pages, args.limit as usize);
        for (key, value) in &entries {
            print_line(&[key, value]);
        }
        if let Some(next) = next {
            eprintln!("next {}", String::from_utf8_lossy(&next));
        }
        Ok(ExitCode::SUCCESS)
    })())
}

/// One group's scan answer: entries in key order, and the first key left out.
type Page = (Vec<(Bytes, Bytes)>, Option<Bytes>);

/// Merges one page per group (each in key order, with the first key it left out)
/// into the first `limit` keys of the union and where to continue. A group that
/// stopped early bounds the union: no key at or past its `next` is known to be
/// complete.
fn merge(pages: Vec<Page>, limit: usize) -> Page {
    let bound = pages.iter().filter_map(|(_, next)| next.clone()).min();
    let mut all: Vec<(Bytes, Bytes)> = pages
        .into_iter()
        .flat_map(|(entries, _)| entries)
        .filter(|(key, _)| bound.as_ref().is_none_or(|bound| key < bound))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    if all.len() > limit {
        let next = all[limit].0.clone();
        all.truncate(limit);
        return (all, Some(next));
    }
    (all, bound)
}

/// Runs `synod status`: the cluster, then one block per node (or why it did not
/// answer): per shard its WAL watermarks and peer links, per group its role, leader,
/// watermarks, lag behind the highest chosen watermark any node reported, checkpoint,
/// checksum, and whether it votes or is fenced.
pub fn status(args: StatusArgs) -> Result<ExitCode, String> {
    finish((|| {
        let target = Target::connect(&args.target)?;
        let answers: Vec<(NodeId, String, Result<NodeStatus, String>)> = target
            .client
            .addresses()
            .into_iter()
            .map(|(node, address)| {
                let status = target
                    .client
                    .node_status_blocking(node)
                    .map_err(|e| e.to_string());
                (node, address, status)
            })
            .collect();
        let mut chosen: BTreeMap<GroupId, Instance> = BTreeMap::new();
        for status in answers.iter().filter_map(|(_, _, s)| s.as_ref().ok()) {
            for g in status.shards.iter().flat_map(|s| &s.groups) {
                let highest = chosen.entry(g.group).or_default();
                *highest = (*highest).max(g.chosen_through);
            }
        }
        let answered = answers.iter().filter(|(_, _, s)| s.is_ok()).count();
        println!(
            "cluster {}: {answered} of {} nodes answered",
            args.target.cluster,
            answers.len()
        );
        for (node, address, status) in &answers {
            match status {
                Err(error) => println!("node {} {address}: unreachable: {error}", node.0),
                Ok(status) => print_node(node.0, address, status, &chosen),
            }
        }
        if answered == 0 {
            return Err(Failure::Unavailable("no node answered".to_string()));
        }
        Ok(ExitCode::SUCCESS)
    })())
}

/// One node's block of `synod status`.
fn print_node(node: u32, address: &str, status: &NodeStatus, chosen: &BTreeMap<GroupId, Instance>) {
    println!("node {node} {address}:");
    for shard in &status.shards {
        let metrics = &shard.metrics;
        println!(
            "  shard {}: wal durable_lsn {} pending {} records; links: refused_connections {} \
             refused_messages {} dropped_messages {}{}",
            shard.shard,
            metrics.durable_lsn,
            metrics.planned_lsn.saturating_sub(metrics.durable_lsn),
            shard.refused_connections,
            shard.refused_messages,
            shard.dropped_messages,
            shard
                .fatal
                .as_ref()
                .map_or(String::new(), |f| format!("; STOPPED: {f}"))
        );
        for peer in &metrics.peers {
            let state = |up: bool| if up { "up" } else { "down" };
            println!(
                "  shard {} peer {}: out {} in {} queued {} B",
                shard.shard,
                peer.node.0,
                state(peer.outbound_connected),
                state(peer.inbound_connected),
                peer.queue_size
            );
        }
        for g in &shard.groups {
            let leader = g
                .leader_hint
                .map_or("none".to_string(), |n| n.0.to_string());
            let highest = chosen.get(&g.group).copied().unwrap_or(g.chosen_through);
            println!(
                "  group {} role {:?} leader {leader} chosen {} applied {} lag {} checkpoint {} \
                 checksum {:#010x}{}{}{}",
                g.group.0,
                g.role,
                g.chosen_through.0,
                g.applied_through.0,
                highest.0.saturating_sub(g.applied_through.0),
                g.checkpoint_through.0,
                g.checksum,
                if g.voting || g.retired {
                    ""
                } else {
                    " (not voting)"
                },
                if g.fenced { " FENCED" } else { "" },
                if g.retired {
                    " RETIRED (lost its state after a membership change: remove it from \
                     the membership, start the node under a new node id)"
                } else {
                    ""
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge;
    use bytes::Bytes;

    fn e(keys: &[&str]) -> Vec<(Bytes, Bytes)> {
        keys.iter()
            .map(|k| (Bytes::copy_from_slice(k.as_bytes()), Bytes::new()))
            .collect()
    }

    fn keys(entries: &[(Bytes, Bytes)]) -> Vec<&[u8]> {
        entries.iter().map(|(k, _)| k.as_ref()).collect()
    }

    // Goal: a scan over groups returns the first keys of the union in order, never
    // past a group that stopped early, and says where to continue.
    // Method: pages where one group was cut by its bound, and where the limit cuts.
    #[test]
    fn merge_respects_each_groups_bound() {
        let next = |s: &str| Some(Bytes::copy_from_slice(s.as_bytes()));
        let (all, more) = merge(
            vec![(e(&["a", "c"]), next("e")), (e(&["b", "f", "g"]), None)],
            10,
        );
        assert_eq!(keys(&all), vec![b"a" as &[u8], b"b", b"c"]);
        assert_eq!(more, next("e"));
        let (all, more) = merge(vec![(e(&["a", "d"]), None), (e(&["b", "c"]), None)], 3);
        assert_eq!(keys(&all), vec![b"a" as &[u8], b"b", b"c"]);
        assert_eq!(more, next("d"));
        let (all, more) = merge(vec![(e(&[]), None), (e(&["b"]), None)], 3);
        assert_eq!(keys(&all), vec![b"b" as &[u8]]);
        assert_eq!(more, None);
    }
}
