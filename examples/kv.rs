//! A replicated key-value map embedded in a small program: the `KvStore` state machine
//! (a `BTreeMap<String, String>` replicated by one Paxos group), a client that follows
//! `NotLeader` hints, and two ways to run it.
//!
//! ```sh
//! cargo run --release --example kv -- demo
//! cargo run --release --example kv -- node --id 1 --nodes 1=127.0.0.1:7000,2=127.0.0.1:7100,3=127.0.0.1:7200 --dir /tmp/kv1
//! ```
//!
//! `demo` runs three nodes in this process; `node` runs one, and reads `set k v`,
//! `get k`, `del k`, `cas k expected new` and `status` lines on stdin (start three, in
//! three terminals, and type into any of them).
//!
//! Invariants: every replica applies the same commands in the same order, so `apply`
//! must be deterministic (no clock, no randomness, no I/O); a malformed command changes
//! nothing and says why in its output.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use synod::api::{CheckpointImage, Config, Error, Node, NodeHandle, StateMachine};
use synod::paxos::{GroupId, Instance, NodeId};

/// The one group this example uses (a node may run many: one replicated log each).
pub const GROUP: GroupId = GroupId(0);

// ---------------------------------------------------------------------------------------
// The encoding: each field is a u32 (little-endian) length and its bytes.

fn put(out: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).expect("a field fits in u32 (value_size_max)");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(field);
}

/// Reads length-prefixed fields from the front of a byte slice.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let (len, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or("truncated field length")?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!("field of {len} bytes, {} left", rest.len()));
        }
        let (field, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(field)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|e| format!("not UTF-8: {e}"))
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes after the last field", self.0.len()))
        }
    }
}

/// A command: what a client proposes and every replica applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Sets `key` to `value`; the output is the previous value.
    Set {
        /// The key to set.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Removes `key`; the output is the previous value.
    Delete {
        /// The key to remove.
        key: String,
    },
    /// Sets `key` to `new` only if it holds `expected` now; the output says whether.
    Cas {
        /// The key to compare and set.
        key: String,
        /// The value it must hold for the swap.
        expected: String,
        /// The value it then holds.
        new: String,
    },
}

impl Command {
    /// One tag byte (`s`, `d`, `c`), then the fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Command::Set { key, value } => {
                out.push(b's');
                put(&mut out, key.as_bytes());
                put(&mut out, value.as_bytes());
            }
            Command::Delete { key } => {
                out.push(b'd');
                put(&mut out, key.as_bytes());
            }
            Command::Cas { key, expected, new } => {
                out.push(b'c');
                put(&mut out, key.as_bytes());
                put(&mut out, expected.as_bytes());
                put(&mut out, new.as_bytes());
            }
        }
        out
    }

    /// The inverse of `encode`.
    ///
    /// # Errors
    ///
    /// What is wrong with `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        let (tag, rest) = bytes.split_first().ok_or("empty command")?;
        let mut fields = Fields(rest);
        let command = match tag {
            b's' => Command::Set {
                key: fields.string()?,
                value: fields.string()?,
            },
            b'd' => Command::Delete {
                key: fields.string()?,
            },
            b'c' => Command::Cas {
                key: fields.string()?,
                expected: fields.string()?,
                new: fields.string()?,
            },
            other => return Err(format!("unknown command tag {other:#04x}")),
        };
        fields.end()?;
        Ok(command)
    }
}

/// What `apply` returns to the proposer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `Set` and `Delete`: the value before the command.
    Previous(Option<String>),
    /// `Cas`: whether it swapped, and the value the key held when it was applied.
    Cas {
        /// Whether the key held `expected`, and now holds `new`.
        swapped: bool,
        /// The value the key held when the command was applied (before any swap).
        current: Option<String>,
    },
    /// The command could not be decoded; nothing changed.
    Invalid(String),
}

fn put_option(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put(out, value.as_bytes());
        }
    }
}

fn option(fields: &mut Fields<'_>) -> Result<Option<String>, String> {
    let (flag, rest) = fields.0.split_first().ok_or("truncated option")?;
    fields.0 = rest;
    match flag {
        0 => Ok(None),
        1 => fields.string().map(Some),
        other => Err(format!("option flag {other}")),
    }
}

impl Output {
    /// One tag byte (`p`, `c`, `!`), then the fields.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            Output::Previous(previous) => {
                out.push(b'p');
                put_option(&mut out, previous.as_deref());
            }
            Output::Cas { swapped, current } => {
                out.push(b'c');
                out.push(u8::from(*swapped));
                put_option(&mut out, current.as_deref());
            }
            Output::Invalid(reason) => {
                out.push(b'!');
                put(&mut out, reason.as_bytes());
            }
        }
        Bytes::from(out)
    }

    /// The inverse of `encode`.
    ///
    /// # Errors
    ///
    /// What is wrong with `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Output, String> {
        let (tag, rest) = bytes.split_first().ok_or("empty output")?;
        let mut fields = Fields(rest);
        let output = match tag {
            b'p' => Output::Previous(option(&mut fields)?),
            b'c' => {
                let (swapped, rest) = fields.0.split_first().ok_or("truncated cas output")?;
                fields.0 = rest;
                Output::Cas {
                    swapped: *swapped == 1,
                    current: option(&mut fields)?,
                }
            }
            b'!' => Output::Invalid(fields.string()?),
            other => return Err(format!("unknown output tag {other:#04x}")),
        };
        fields.end()?;
        Ok(output)
    }
}

/// The answer of a `get` (the query is the key itself): the value, if any.
///
/// # Errors
///
/// What is wrong with `bytes`.
pub fn decode_get(bytes: &[u8]) -> Result<Option<String>, String> {
    let mut fields = Fields(bytes);
    let value = option(&mut fields)?;
    fields.end()?;
    Ok(value)
}

// ---------------------------------------------------------------------------------------
// The state machine.

/// A replicated `BTreeMap<String, String>`: one per group, on the group's shard thread.
///
/// The map is shared copy-on-write (`Arc`): a checkpoint hands a clone of the `Arc`
/// to a deferred export, which serializes it on the runtime's I/O thread while the
/// shard goes on applying; the first write after that copies the map once
/// (`Arc::make_mut`). A store too large to copy would use a persistent map instead.
#[derive(Debug, Default)]
pub struct KvStore {
    map: Arc<BTreeMap<String, String>>,
    /// The last instance applied (0: none): what a checkpoint covers.
    applied: Instance,
}

impl KvStore {
    /// The map as applied so far.
    pub fn map(&self) -> &BTreeMap<String, String> {
        &self.map
    }
}

impl StateMachine for KvStore {
    fn apply(&mut self, instance: Instance, value: &[u8]) -> Bytes {
        assert!(
            instance >= self.applied,
            "instances applied in order: {instance:?} after {:?}",
            self.applied
        );
        self.applied = instance;
        let output = match Command::decode(value) {
            Err(reason) => Output::Invalid(reason),
            Ok(Command::Set { key, value }) => {
                Output::Previous(Arc::make_mut(&mut self.map).insert(key, value))
            }
            Ok(Command::Delete { key }) => {
                Output::Previous(Arc::make_mut(&mut self.map).remove(&key))
            }
            Ok(Command::Cas { key, expected, new }) => {
                let current = self.map.get(&key).cloned();
                let swapped = current.as_deref() == Some(expected.as_str());
                if swapped {
                    Arc::make_mut(&mut self.map).insert(key, new);
                }
                Output::Cas { swapped, current }
            }
        };
        output.encode()
    }

    fn query(&self, key: &[u8]) -> Bytes {
        let value = std::str::from_utf8(key)
            .ok()
            .and_then(|key| self.map.get(key));
        let mut out = Vec::new();
        put_option(&mut out, value.map(String::as_str));
        Bytes::from(out)
    }

    /// The image: the entry count (u64 LE), then key and value of every entry,
    /// serialized off the shard's thread from a snapshot of the map.
    fn checkpoint(&self) -> Option<CheckpointImage> {
        let snapshot = Arc::clone(&self.map);
        Some(CheckpointImage::deferred(move || {
            let mut image = (snapshot.len() as u64).to_le_bytes().to_vec();
            for (key, value) in snapshot.iter() {
                put(&mut image, key.as_bytes());
                put(&mut image, value.as_bytes());
            }
            Bytes::from(image)
        }))
    }

    fn restore(&mut self, instance: Instance, image: &[u8]) -> Result<(), String> {
        let (count, rest) = image.split_first_chunk::<8>().ok_or("truncated image")?;
        let count = u64::from_le_bytes(*count);
        let mut fields = Fields(rest);
        let mut map = BTreeMap::new();
        for _ in 0..count {
            map.insert(fields.string()?, fields.string()?);
        }
        fields.end()?;
        // Replaced only once the whole image decoded: never a half-installed state.
        self.map = Arc::new(map);
        self.applied = instance;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// A client: the handles of the nodes it can reach, and the one it believes leads.

/// Sends requests to the node it believes leads, following `NotLeader` hints, and
/// retries only the errors that say nothing was done (`NotLeader`, `LeaseNotHeld`,
/// `Overloaded`) until `patience` runs out. Every other error is returned: after
/// `Indeterminate` or `Stopped` a proposal may or may not be chosen, and only the
/// application knows whether doing it twice is harmless.
pub struct Client {
    handles: BTreeMap<NodeId, NodeHandle>,
    target: NodeId,
    patience: Duration,
}

impl Client {
    /// A client of `handles` (at least one).
    pub fn new(handles: BTreeMap<NodeId, NodeHandle>, patience: Duration) -> Client {
        let target = *handles.keys().next().expect("a client needs a node");
        Client {
            handles,
            target,
            patience,
        }
    }

    /// The node the last request went to (the leader, after a success).
    pub fn leader(&self) -> NodeId {
        self.target
    }

    /// Stops using `node` (it was stopped).
    pub fn forget(&mut self, node: NodeId) {
        self.handles.remove(&node);
        if self.target == node {
            self.target = *self.handles.keys().next().expect("a node left");
        }
    }

    /// Proposes `command` and decodes the state machine's output.
    pub fn propose(&mut self, command: &Command) -> Result<Output, Error> {
        let value = Bytes::from(command.encode());
        let proposed = self.call(|handle| block_on(handle.propose(GROUP, value.clone())))?;
        Ok(Output::decode(&proposed.output).expect("KvStore outputs decode"))
    }

    /// A linearizable `get`: served by the leader once it has applied every value
    /// chosen before the read began.
    pub fn get(&mut self, key: &str) -> Result<Option<String>, Error> {
        let answer = self.call(|handle| block_on(handle.read(GROUP, key.as_bytes().to_vec())))?;
        Ok(decode_get(&answer).expect("KvStore answers decode"))
    }

    fn call<T>(&mut self, op: impl Fn(&NodeHandle) -> Result<T, Error>) -> Result<T, Error> {
        let deadline = Instant::now() + self.patience;
        loop {
            let error = match op(&self.handles[&self.target]) {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            match error {
                Error::NotLeader { hint: Some(leader) }
                    if leader != self.target && self.handles.contains_key(&leader) =>
                {
                    self.target = leader;
                }
                // The leader is a node this client cannot reach: say which.
                Error::NotLeader { hint: Some(_) } if self.handles.len() == 1 => return Err(error),
                // An election is under way, or the new leader is not ready yet.
                Error::NotLeader { .. } | Error::LeaseNotHeld | Error::Overloaded
                    if Instant::now() < deadline =>
                {
                    let next = self.handles.range(self.target..).nth(1);
                    self.target = *next.or(self.handles.iter().next()).expect("a node").0;
                    std::thread::sleep(Duration::from_millis(20));
                }
                error => return Err(error),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The program.

fn config(node: NodeId, nodes: BTreeMap<NodeId, SocketAddr>, dir: PathBuf) -> Config {
    let mut config = Config::new(node, 1, nodes, dir);
    // Several nodes may share this machine: do not pin them all to core 0.
    config.cores = Vec::new();
    config
}

fn factory() -> synod::api::StateMachineFactory {
    std::sync::Arc::new(|_group| Box::new(KvStore::default()))
}

fn demo() -> Result<(), String> {
    let root = std::env::temp_dir().join(format!("synod-kv-demo-{}", std::process::id()));
    let mut addresses = BTreeMap::new();
    for id in 1..=3 {
        // A free port: bind port 0, note what the OS chose, let it go.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        addresses.insert(NodeId(id), SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let mut nodes = BTreeMap::new();
    for (&id, address) in &addresses {
        let dir = root.join(format!("node-{}", id.0));
        let node = Node::start(config(id, addresses.clone(), dir), factory())
            .map_err(|e| format!("node {}: {e}", id.0))?;
        println!("node {} listens on {address}", id.0);
        nodes.insert(id, node);
    }
    let handles = nodes.iter().map(|(id, n)| (*id, n.handle())).collect();
    let mut client = Client::new(handles, Duration::from_secs(10));
    let error = |e: Error| e.to_string();

    for (key, value) in [
        ("apple", "red"),
        ("banana", "yellow"),
        ("cherry", "dark red"),
    ] {
        let set = Command::Set {
            key: key.into(),
            value: value.into(),
        };
        let output = client.propose(&set).map_err(error)?;
        println!(
            "set {key} {value:?} -> {output:?} (through node {})",
            client.leader().0
        );
    }
    let cas = |expected: &str| Command::Cas {
        key: "cherry".into(),
        expected: expected.into(),
        new: "black".into(),
    };
    println!(
        "cas cherry red black -> {:?}",
        client.propose(&cas("red")).map_err(error)?
    );
    println!(
        "cas cherry \"dark red\" black -> {:?}",
        client.propose(&cas("dark red")).map_err(error)?
    );
    let delete = Command::Delete {
        key: "banana".into(),
    };
    println!(
        "del banana -> {:?}",
        client.propose(&delete).map_err(error)?
    );
    for key in ["apple", "banana", "cherry"] {
        println!(
            "get {key} -> {:?} (read on node {})",
            client.get(key).map_err(error)?,
            client.leader().0
        );
    }

    let leader = client.leader();
    let follower = *nodes.keys().find(|id| **id != leader).expect("three nodes");
    let answer = block_on(nodes[&follower].handle().read(GROUP, "apple"));
    println!("get apple on follower node {} -> {answer:?}", follower.0);

    println!("killing node {} (the leader) ...", leader.0);
    let killed = nodes.remove(&leader).expect("the leader runs");
    killed.abort();
    client.forget(leader);
    let started = Instant::now();
    let set = Command::Set {
        key: "durian".into(),
        value: "green".into(),
    };
    let output = client.propose(&set).map_err(error)?;
    println!(
        "set durian green -> {output:?} (node {} leads now; {:?} after the kill)",
        client.leader().0,
        started.elapsed()
    );
    for key in ["apple", "cherry", "durian"] {
        println!("get {key} -> {:?}", client.get(key).map_err(error)?);
    }
    for (id, node) in nodes {
        let status = block_on(node.handle().group_status(GROUP)).map_err(error)?;
        println!(
            "node {}: {:?}, applied through {}, checksum {:08x}",
            id.0, status.role, status.applied_through.0, status.checksum
        );
        let errors: Vec<String> = node.shutdown().iter().map(ToString::to_string).collect();
        if !errors.is_empty() {
            return Err(format!("node {}: {}", id.0, errors.join("; ")));
        }
    }
    std::fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    println!("stopped cleanly");
    Ok(())
}

/// `--name value` from `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Result<&'a str, String> {
    let at = args
        .iter()
        .position(|a| a == name)
        .ok_or(format!("{name} is required"))?;
    args.get(at + 1)
        .map(String::as_str)
        .ok_or(format!("{name} needs a value"))
}

/// `1=127.0.0.1:7000,2=127.0.0.1:7100,...`
fn parse_nodes(list: &str) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    list.split(',')
        .map(|item| {
            let (id, address) = item
                .split_once('=')
                .ok_or(format!("{item:?}: want ID=IP:PORT"))?;
            let id = id.parse().map_err(|e| format!("{id:?}: {e}"))?;
            let address = address.parse().map_err(|e| format!("{address:?}: {e}"))?;
            Ok((NodeId(id), address))
        })
        .collect()
}

fn node(args: &[String]) -> Result<(), String> {
    let id = NodeId(
        flag(args, "--id")?
            .parse()
            .map_err(|e| format!("--id: {e}"))?,
    );
    let nodes = parse_nodes(flag(args, "--nodes")?)?;
    let dir = PathBuf::from(flag(args, "--dir")?);
    let node = Node::start(config(id, nodes, dir), factory()).map_err(|e| e.to_string())?;
    // A shard that stops for good (a failed disk, a panic) ends the program rather
    // than leave a node serving part of its groups: the other nodes take them over,
    // and a supervisor restarts this one.
    let watched = node.handle();
    std::thread::spawn(move || {
        if let Some(stopped) = watched.wait_fatal(None) {
            eprintln!("{stopped}; exiting");
            std::process::exit(3);
        }
    });
    println!(
        "node {} ready: set k v | get k | del k | cas k expected new | status",
        id.0
    );
    // A client of this node only: on a follower it says which node leads.
    let mut client = Client::new([(id, node.handle())].into(), Duration::from_secs(3));
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            // The value is the rest of the line (it may hold spaces).
            ["set", key, value @ ..] if !value.is_empty() => {
                let (key, value) = (key.to_string(), value.join(" "));
                client
                    .propose(&Command::Set { key, value })
                    .map(|o| format!("{o:?}"))
            }
            ["del", key] => {
                let key = key.to_string();
                client
                    .propose(&Command::Delete { key })
                    .map(|o| format!("{o:?}"))
            }
            ["cas", key, expected, new @ ..] if !new.is_empty() => {
                let (key, expected, new) = (key.to_string(), expected.to_string(), new.join(" "));
                client
                    .propose(&Command::Cas { key, expected, new })
                    .map(|o| format!("{o:?}"))
            }
            ["get", key] => client.get(key).map(|v| format!("{v:?}")),
            ["status"] => block_on(node.handle().group_status(GROUP)).map(|s| {
                format!(
                    "{:?}, leader {:?}, applied through {}",
                    s.role,
                    s.leader_hint.map(|n| n.0),
                    s.applied_through.0
                )
            }),
            // The commands chosen from instance `from` on, read on this node (a
            // follower serves it too): the replicated log itself.
            ["log", from @ ..] if from.len() <= 1 => {
                let from = from.first().and_then(|f| f.parse().ok()).unwrap_or(1);
                block_on(node.handle().read_log(GROUP, Instance(from), 4 << 10)).map(|read| {
                    let mut lines: Vec<String> = read
                        .entries
                        .iter()
                        .map(|e| match Command::decode(&e.value) {
                            Ok(command) => format!("{}: {command:?}", e.position),
                            Err(error) => format!("{}: undecodable ({error})", e.position),
                        })
                        .collect();
                    lines.push(format!("next {}", read.next));
                    lines.join("\n")
                })
            }
            [] => continue,
            _ => Ok(
                "? set k v | get k | del k | cas k expected new | status | log [from]".to_string(),
            ),
        };
        match answer {
            Ok(answer) => println!("{answer}"),
            Err(error) => println!("error: {error}"),
        }
        std::io::stdout().flush().map_err(|e| e.to_string())?;
    }
    let errors: Vec<String> = node.shutdown().iter().map(ToString::to_string).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("node") => node(&args[1..]),
        _ => Err("usage: kv demo | kv node --id N --nodes 1=IP:PORT,2=... --dir DIR".into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kv: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
