//! Transcript tests of the protocol core: each file in `tests/transcripts/` is a script
//! of inputs to a few `paxos::Group` replicas and the outputs every step printed, in a
//! stable text form. The runner replays each script and compares what it prints now
//! with what the file says; `SYNOD_REWRITE=1 cargo test --release --test transcripts`
//! rewrites the expected output after a deliberate change (review the diff).
//!
//! # File format
//!
//! A file is a sequence of blocks. A block is one command line, a line `----`, then the
//! expected output up to the next blank line (output never contains a blank line).
//! Lines starting with `#` between blocks are comments and are kept on rewrite.
//!
//! # Commands
//!
//! - `group nodes=3 [window=8] [lost=3]`: replicas 1..=nodes of one group, all voters;
//!   fresh, except those listed in `lost`, which start from a log that lost state (an
//!   emptied disk: they must re-learn before they vote again).
//! - `tick nodes=1,2 [ms=N]`: advance the shared clock by N ms (default 0), tick each.
//! - `advance ms=N`: advance the shared clock by N ms without stepping anyone.
//! - `propose node=1 value=x`, `flush node=1`: a client value; the end of a loop turn.
//! - `deliver [from=1] [to=2] [kind=prepare]`: deliver every pooled message that
//!   matches, in pool order (messages they cause wait for the next `deliver`).
//! - `deliver-all [...]`: like `deliver`, repeated until no pooled message matches.
//! - `drop [...]`: remove the matching pooled messages (a lossy network).
//! - `inject from=1 to=2 prepare round=R [instance=I]` or
//!   `inject from=1 to=2 heartbeat round=R chosen=I`: a message as a peer (or a forger)
//!   would send it.
//! - `read node=1`: the leader's lease read (`read_index`, `lease_until`) at the clock.
//! - `status [nodes=1,2]`: role, ballots, watermarks and drop counters of each replica.
//! - `pool`: the pooled messages.
//!
//! Any command takes `quiet=true`: it runs as usual but prints only how many top-level
//! lines it hid (for set-up steps another transcript already shows in full).
//!
//! The harness: records are durable as soon as a step emits them (so `send_after_persist`
//! messages join the pool with the others), the clock starts at 0 and moves only on
//! `tick`, and every step is followed by `Group::invariants`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use synod::paxos::{
    Apply, Ballot, Body, Completion, Entry, Group, GroupConfig, GroupId, Input, Instance,
    Membership, Message, MessageBody, Nanos, NodeId, Output, ProposalId, Record, Refused, Restore,
};

const GROUP: GroupId = GroupId(1);
/// Most deliveries one `deliver-all` makes before it declares a livelock.
const DELIVER_ALL_STEPS_MAX: usize = 10_000;

// ---------------------------------------------------------------------------------------
// The script.

struct Block {
    /// Comment lines before the command, kept verbatim on rewrite.
    comments: Vec<String>,
    /// The command line.
    command: String,
    /// 1-based line number of the command, for messages.
    line: usize,
    /// The expected output as written in the file.
    expected: String,
}

fn parse(path: &Path, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut comments = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('#') {
            comments.push(trimmed.to_string());
            continue;
        }
        let separator = lines.next().map(|(_, l)| l.trim_end());
        assert_eq!(
            separator,
            Some("----"),
            "{}:{}: command `{trimmed}` must be followed by a line `----`",
            path.display(),
            n + 1
        );
        let mut expected = String::new();
        while let Some((_, out)) = lines.peek() {
            if out.trim_end().is_empty() {
                break;
            }
            expected.push_str(out.trim_end());
            expected.push('\n');
            lines.next();
        }
        blocks.push(Block {
            comments: std::mem::take(&mut comments),
            command: trimmed.to_string(),
            line: n + 1,
            expected,
        });
    }
    assert!(
        comments.is_empty(),
        "{}: comment lines after the last command",
        path.display()
    );
    blocks
}

/// `key=value` arguments of a command, plus the bare words in order.
struct Args {
    words: Vec<String>,
    keys: BTreeMap<String, String>,
}

impl Args {
    fn parse(text: &str) -> Args {
        let mut words = Vec::new();
        let mut keys = BTreeMap::new();
        for token in text.split_whitespace() {
            match token.split_once('=') {
                Some((key, value)) => {
                    keys.insert(key.to_string(), value.to_string());
                }
                None => words.push(token.to_string()),
            }
        }
        Args { words, keys }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.get(key).map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{key}={v}: not a number"))
        })
    }

    fn need_u64(&self, key: &str) -> u64 {
        self.u64(key)
            .unwrap_or_else(|| panic!("missing argument {key}="))
    }

    fn nodes(&self, key: &str) -> Option<Vec<u32>> {
        self.get(key).map(|v| {
            v.split(',')
                .map(|n| {
                    n.parse()
                        .unwrap_or_else(|_| panic!("{key}={v}: not a node list"))
                })
                .collect()
        })
    }
}

/// A filter over pooled messages: every given key must match.
fn matches(args: &Args, message: &Message) -> bool {
    args.u64("from")
        .is_none_or(|n| u64::from(message.from.0) == n)
        && args.u64("to").is_none_or(|n| u64::from(message.to.0) == n)
        && args.get("kind").is_none_or(|k| message.body.kind() == k)
}

// ---------------------------------------------------------------------------------------
// The replicas.

struct World {
    groups: BTreeMap<NodeId, Group>,
    pool: Vec<Message>,
    now: Nanos,
    next_proposal: u64,
}

impl World {
    fn new() -> World {
        World {
            groups: BTreeMap::new(),
            pool: Vec::new(),
            now: Nanos(0),
            next_proposal: 1,
        }
    }

    fn group(&self, node: u32) -> &Group {
        self.groups
            .get(&NodeId(node))
            .unwrap_or_else(|| panic!("no node {node}: start with `group nodes=N`"))
    }

    /// Steps `node` with `input` and prints what it produced under a header line.
    fn step(&mut self, node: u32, header: &str, input: Input, out: &mut String) {
        let now = self.now;
        let group = self
            .groups
            .get_mut(&NodeId(node))
            .unwrap_or_else(|| panic!("no node {node}"));
        let mut output = Output::default();
        group.step(now, input, &mut output);
        group.invariants();
        if output.is_empty() {
            writeln!(out, "{header}: (nothing)").expect("write to a String");
            return;
        }
        writeln!(out, "{header}:").expect("write to a String");
        print_output(&output, out);
        self.pool.append(&mut output.send);
        self.pool.append(&mut output.send_after_persist);
    }

    fn run(&mut self, command: &str) -> String {
        let mut out = String::new();
        let args = Args::parse(command);
        let verb = args.words.first().map(String::as_str).unwrap_or_default();
        match verb {
            "group" => self.create_groups(&args, &mut out),
            "tick" => {
                let nodes = args.nodes("nodes").expect("tick needs nodes=");
                self.now = self.now.plus(args.u64("ms").unwrap_or(0) * 1_000_000);
                for node in nodes {
                    let header = format!("n{node} tick @{}", ms(self.now));
                    self.step(node, &header, Input::Tick, &mut out);
                }
            }
            "advance" => {
                self.now = self.now.plus(args.need_u64("ms") * 1_000_000);
                writeln!(out, "@{}", ms(self.now)).expect("write to a String");
            }
            "propose" => {
                let node = args.need_u64("node") as u32;
                let value = args.get("value").expect("propose needs value=");
                let id = ProposalId(self.next_proposal);
                self.next_proposal += 1;
                let input = Input::Propose {
                    id,
                    value: Bytes::copy_from_slice(value.as_bytes()),
                };
                let header = format!("n{node} propose p{} {value}", id.0);
                self.step(node, &header, input, &mut out);
            }
            "flush" => {
                let node = args.need_u64("node") as u32;
                self.step(node, &format!("n{node} flush"), Input::Flush, &mut out);
            }
            "deliver" => {
                if self.deliver_pass(&args, &mut out) == 0 {
                    writeln!(out, "(no message matches)").expect("write to a String");
                }
            }
            "deliver-all" => self.deliver_all(&args, &mut out),
            "drop" => {
                let before = self.pool.len();
                self.pool.retain(|m| !matches(&args, m));
                writeln!(out, "dropped {}", before - self.pool.len()).expect("write to a String");
            }
            "inject" => {
                let message = inject(&args);
                let node = message.to.0;
                let header = format!("n{node} receive {}", fmt_message(&message));
                self.step(node, &header, Input::Message(message), &mut out);
            }
            "read" => self.read(&args, &mut out),
            "status" => {
                let nodes = args
                    .nodes("nodes")
                    .unwrap_or_else(|| self.groups.keys().map(|n| n.0).collect());
                for node in nodes {
                    print_status(node, self.group(node), &mut out);
                }
            }
            "pool" => {
                if self.pool.is_empty() {
                    writeln!(out, "(empty)").expect("write to a String");
                }
                for message in &self.pool {
                    writeln!(out, "{}", fmt_message(message)).expect("write to a String");
                }
            }
            other => panic!("unknown command `{other}`"),
        }
        if args.get("quiet") == Some("true") {
            let steps = out.lines().filter(|l| !l.starts_with(' ')).count();
            return format!("ok ({steps} lines of output hidden)\n");
        }
        out
    }

    /// `group`: fresh replicas 1..=nodes of one group (see the file's doc).
    fn create_groups(&mut self, args: &Args, out: &mut String) {
        let nodes = args.need_u64("nodes") as u32;
        let window = args.u64("window").unwrap_or(8);
        let lost = args.nodes("lost").unwrap_or_default();
        let membership = Membership::new((1..=nodes).map(NodeId).collect());
        for node in 1..=nodes {
            let mut config = GroupConfig::new(NodeId(node), GROUP, membership.clone());
            config.window_instances_max = window;
            config.accept_window_instances_max = window * 4;
            config.promise_entries_max = (window * 4) as usize;
            config.batch_values_max = 1;
            config.validate().expect("transcript config is valid");
            let restore = Restore {
                lost_state: lost.contains(&node),
                ..Restore::default()
            };
            let group = Group::new(config, restore, self.now);
            self.groups.insert(NodeId(node), group);
        }
        writeln!(out, "{nodes} replicas, window {window}").expect("write to a String");
        if !lost.is_empty() {
            writeln!(out, "lost state: {lost:?}").expect("write to a String");
        }
    }

    /// `deliver-all`: `deliver`, repeated until no pooled message matches.
    fn deliver_all(&mut self, args: &Args, out: &mut String) {
        let mut delivered = 0;
        loop {
            let n = self.deliver_pass(args, out);
            if n == 0 {
                break;
            }
            delivered += n;
            assert!(
                delivered <= DELIVER_ALL_STEPS_MAX,
                "deliver-all: still busy after {delivered} deliveries"
            );
        }
        if delivered == 0 {
            writeln!(out, "(no message matches)").expect("write to a String");
        }
    }

    /// `read`: the replica's lease read (`read_index`, `lease_until`) at the clock.
    fn read(&mut self, args: &Args, out: &mut String) {
        let node = args.need_u64("node") as u32;
        let group = self.group(node);
        let index = group
            .read_index(self.now)
            .map_or("refused".to_string(), |i| format!("read_index={}", i.0));
        let until = group.lease_until().map_or("none".to_string(), ms);
        writeln!(
            out,
            "n{node} @{}: {index} lease_until={until}",
            ms(self.now)
        )
        .expect("write to a String");
    }

    /// Delivers the pooled messages matching `args` as of now; returns how many.
    fn deliver_pass(&mut self, args: &Args, out: &mut String) -> usize {
        let (now, later): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.pool)
            .into_iter()
            .partition(|m| matches(args, m));
        self.pool = later;
        let count = now.len();
        for message in now {
            let node = message.to.0;
            let header = format!("n{node} receive {}", fmt_message(&message));
            self.step(node, &header, Input::Message(message), out);
        }
        count
    }
}

fn inject(args: &Args) -> Message {
    let from = NodeId(args.need_u64("from") as u32);
    let to = NodeId(args.need_u64("to") as u32);
    let ballot = Ballot {
        round: args.need_u64("round"),
        node: from,
    };
    let body = match args.words.get(1).map(String::as_str) {
        Some("prepare") => MessageBody::Prepare {
            ballot,
            from: Instance(args.u64("instance").unwrap_or(1)),
        },
        Some("heartbeat") => MessageBody::Heartbeat {
            ballot,
            chosen_through: Instance(args.need_u64("chosen")),
            sent_at: Nanos(0),
            checksum_through: Instance(0),
            checksum: 0,
        },
        other => panic!("inject: unknown message kind {other:?} (prepare, heartbeat)"),
    };
    Message {
        group: GROUP,
        from,
        to,
        body,
    }
}

// ---------------------------------------------------------------------------------------
// The stable text form.

fn ms(t: Nanos) -> String {
    if t.0 % 1_000_000 == 0 {
        format!("{}ms", t.0 / 1_000_000)
    } else {
        format!("{}ns", t.0)
    }
}

fn fmt_entry(entry: &Entry) -> String {
    let body = match &entry.body {
        Body::Values(values) => {
            let values: Vec<String> = values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            format!("values[{}]", values.join(","))
        }
        Body::Noop => "noop".to_string(),
        Body::StartWorking => "start_working".to_string(),
        Body::Config(membership) => {
            let voters: Vec<String> = membership
                .voters()
                .iter()
                .map(|n| n.0.to_string())
                .collect();
            format!("config[{}]", voters.join(","))
        }
    };
    format!("{body}@{}", entry.origin)
}

fn fmt_entries(entries: &[Entry]) -> String {
    let entries: Vec<String> = entries.iter().map(fmt_entry).collect();
    format!("[{}]", entries.join(" "))
}

fn fmt_body(body: &MessageBody) -> String {
    let kind = body.kind();
    match body {
        MessageBody::Prepare { ballot, from } => {
            format!("{kind} {ballot} instances>={}", from.0)
        }
        MessageBody::Promise {
            ballot,
            chosen_through,
            entries,
            truncated,
        } => {
            let entries: Vec<String> = entries
                .iter()
                .map(|e| {
                    let chosen = if e.chosen { " chosen" } else { "" };
                    format!(
                        "{}:{}@{}{chosen}",
                        e.instance.0,
                        fmt_entry(&e.entry),
                        e.ballot
                    )
                })
                .collect();
            format!(
                "{kind} {ballot} chosen={} entries=[{}] truncated={truncated}",
                chosen_through.0,
                entries.join(" ")
            )
        }
        MessageBody::Reject { promised } => format!("{kind} promised={promised}"),
        MessageBody::Accept {
            ballot,
            chosen_through,
            first,
            entries,
        } => format!(
            "{kind} {ballot} chosen={} first={} {}",
            chosen_through.0,
            first.0,
            fmt_entries(entries)
        ),
        MessageBody::Accepted { ballot, ranges } => {
            let ranges: Vec<String> = ranges
                .iter()
                .map(|r| format!("{}..={}", r.first.0, r.last.0))
                .collect();
            format!("{kind} {ballot} [{}]", ranges.join(","))
        }
        MessageBody::Heartbeat {
            ballot,
            chosen_through,
            sent_at,
            checksum_through,
            checksum,
        } => format!(
            "{kind} {ballot} chosen={} sent_at={} checksum={checksum:08x}@{}",
            chosen_through.0,
            ms(*sent_at),
            checksum_through.0
        ),
        MessageBody::HeartbeatAck { ballot, sent_at } => {
            format!("{kind} {ballot} sent_at={}", ms(*sent_at))
        }
        MessageBody::Handover { ballot, target } => {
            format!("{kind} {ballot} target={}", target.0)
        }
        MessageBody::PreVote { ballot } => format!("{kind} {ballot}"),
        MessageBody::PreVoteReply { ballot, granted } => {
            format!("{kind} {ballot} granted={granted}")
        }
        MessageBody::CatchUpRequest { from, credit, .. } => {
            format!("{kind} instances>={} credit={credit}", from.0)
        }
        MessageBody::CatchUpChunk {
            chosen_through,
            promised,
            accepted_max,
            first,
            entries,
            from_voter,
            membership_changed,
        } => format!(
            "{kind} chosen={} promised={promised} accepted_max={} first={} {}{}",
            chosen_through.0,
            accepted_max.0,
            first.0,
            fmt_entries(entries),
            chunk_flags(*from_voter, *membership_changed)
        ),
        MessageBody::CheckpointRequest { through, offset } => {
            format!("{kind} through={} offset={offset}", through.0)
        }
        MessageBody::CheckpointChunk {
            through,
            offset,
            total_size,
            data,
        } => format!(
            "{kind} through={} offset={offset} size={} of {total_size}",
            through.0,
            data.len()
        ),
        MessageBody::CatchUpRaw {
            chosen_through,
            promised,
            accepted_max,
            run,
            from_voter,
            membership_changed,
        } => format!(
            "{kind} chosen={} promised={promised} accepted_max={} instances={}..={} bytes={}{}",
            chosen_through.0,
            accepted_max.0,
            run.first_instance.0,
            run.last_instance.0,
            run.size(),
            chunk_flags(*from_voter, *membership_changed)
        ),
    }
}

/// The flags of a catch-up chunk that differ from the usual (a voter's, unchanged).
fn chunk_flags(from_voter: bool, membership_changed: bool) -> String {
    let mut flags = String::new();
    if !from_voter {
        flags.push_str(" not_voting");
    }
    if membership_changed {
        flags.push_str(" membership_changed");
    }
    flags
}

fn fmt_message(message: &Message) -> String {
    format!(
        "{}->{} {}",
        message.from.0,
        message.to.0,
        fmt_body(&message.body)
    )
}

fn fmt_record(record: &Record) -> String {
    match record {
        Record::Promise { ballot, .. } => format!("promise {ballot}"),
        Record::Accept {
            instance,
            ballot,
            entry,
            ..
        } => format!("accept {}@{ballot} {}", instance.0, fmt_entry(entry)),
        Record::Chosen { through, .. } => format!("chosen through={}", through.0),
        Record::Learn {
            instance, entry, ..
        } => format!("learn {} {}", instance.0, fmt_entry(entry)),
        Record::Installed { through, .. } => format!("installed through={}", through.0),
    }
}

fn fmt_apply(apply: &Apply) -> String {
    let skip = if apply.skip { " skip" } else { "" };
    let proposals: Vec<String> = apply
        .proposals
        .iter()
        .map(|p| format!("p{}", p.0))
        .collect();
    format!(
        "{} {}{skip} proposals=[{}] checksum={:08x}",
        apply.instance.0,
        fmt_entry(&apply.entry),
        proposals.join(","),
        apply.checksum
    )
}

fn fmt_completion(completion: &Completion) -> String {
    format!("p{} {}", completion.id.0, completion.error)
}

fn fmt_refused(refused: &Refused) -> String {
    format!(
        "from={} reason={} {}",
        refused.from.0, refused.reason, refused.out_of_bounds
    )
}

fn print_output(output: &Output, out: &mut String) {
    let mut line = |label: &str, text: String| {
        writeln!(out, "  {label} {text}").expect("write to a String");
    };
    for record in &output.persist {
        line("persist", fmt_record(record));
    }
    for message in &output.send {
        line("send", fmt_message(message));
    }
    for message in &output.send_after_persist {
        line("send_after_persist", fmt_message(message));
    }
    for apply in &output.apply {
        line("apply", fmt_apply(apply));
    }
    for completion in &output.complete {
        line("complete", fmt_completion(completion));
    }
    for refused in &output.refused {
        line("refused", fmt_refused(refused));
    }
}

fn print_status(node: u32, group: &Group, out: &mut String) {
    let ballot = group.ballot().map_or("-".to_string(), |b| b.to_string());
    let hint = group
        .leader_hint()
        .map_or("-".to_string(), |n| n.0.to_string());
    writeln!(
        out,
        "n{node}: {:?} ballot={ballot} promised={} chosen_through={} applied_through={} \
         leader_hint={hint} voting={}",
        group.role(),
        group.promised(),
        group.chosen_through().0,
        group.applied_through().0,
        group.is_voting()
    )
    .expect("write to a String");
    let counters = group.counters();
    if !counters.ignored.is_empty() {
        let ignored: Vec<String> = counters
            .ignored
            .iter()
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        writeln!(out, "  ignored {}", ignored.join(" ")).expect("write to a String");
    }
}

// ---------------------------------------------------------------------------------------
// The runner.

fn render(blocks: &[Block], outputs: &[String]) -> String {
    let mut text = String::new();
    for (i, (block, output)) in blocks.iter().zip(outputs).enumerate() {
        if i > 0 {
            text.push('\n');
        }
        for comment in &block.comments {
            text.push_str(comment);
            text.push('\n');
        }
        text.push_str(&block.command);
        text.push_str("\n----\n");
        text.push_str(output);
    }
    text
}

/// A line diff of `expected` against `actual` (longest common subsequence), with
/// `-`/`+` marks and two lines of context around each change.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut lines: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 2).min(lines.len() - 1);
        lines[lo..=hi].iter().any(|(mark, _)| *mark != ' ')
    };
    let mut text = String::new();
    let mut skipped = false;
    for (k, (mark, line)) in lines.iter().enumerate() {
        if near_change(k) {
            if skipped {
                text.push_str("  ...\n");
                skipped = false;
            }
            let _ = writeln!(text, "{mark} {line}");
        } else {
            skipped = true;
        }
    }
    text
}

fn transcript_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

/// Replays one transcript; returns a readable failure, or `None` when it matches (or
/// was rewritten).
fn replay(path: &Path, rewrite: bool) -> Option<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let blocks = parse(path, &text);
    let mut world = World::new();
    let outputs: Vec<String> = blocks.iter().map(|b| world.run(&b.command)).collect();
    if rewrite {
        let new_text = render(&blocks, &outputs);
        if new_text != text {
            fs::write(path, new_text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        return None;
    }
    let mut failures = String::new();
    for (block, actual) in blocks.iter().zip(&outputs) {
        if &block.expected != actual {
            let _ = writeln!(
                failures,
                "{}:{}: `{}` printed something else (- expected, + actual):\n{}",
                path.display(),
                block.line,
                block.command,
                diff(&block.expected, actual)
            );
        }
    }
    (!failures.is_empty()).then_some(failures)
}

// Goal: every handler transcript still prints what it printed when it was reviewed.
// Method: replay each tests/transcripts/*.txt and diff its output block by block.
#[test]
fn transcripts() {
    let rewrite = std::env::var_os("SYNOD_REWRITE").is_some_and(|v| v == "1");
    let files = transcript_files();
    assert!(
        rewrite || files.len() >= 6,
        "expected at least 6 transcripts, found {}",
        files.len()
    );
    let failures: Vec<String> = files.iter().filter_map(|f| replay(f, rewrite)).collect();
    assert!(
        failures.is_empty(),
        "{} transcript(s) differ; if the change is deliberate, rerun with SYNOD_REWRITE=1 \
         and review the diff of tests/transcripts/\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// Goal: the runner can fail, and its diff points at the changed line.
// Method: diff two synthetic outputs; parse and replay a script whose expectation is wrong.
#[test]
fn self_test_runner_reports_a_diff() {
    let d = diff("a\nb\nc\n", "a\nB\nc\n");
    assert_eq!(d, "  a\n- b\n+ B\n  c\n");
    let path = Path::new("synthetic.txt");
    let blocks = parse(path, "# c\ngroup nodes=1\n----\nwrong\n\nstatus\n----\n");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].comments, vec!["# c".to_string()]);
    let mut world = World::new();
    let actual = world.run(&blocks[0].command);
    assert_ne!(blocks[0].expected, actual);
    assert_eq!(actual, "1 replicas, window 8\n");
    assert_eq!(
        world.run(&blocks[1].command),
        "n1: Follower ballot=- promised=0.0 chosen_through=0 applied_through=0 leader_hint=- voting=true\n"
    );
}
