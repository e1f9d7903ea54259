//! `synod dev`: a three-node cluster on 127.0.0.1 for a first try, in one command.
//! Three `synod serve` processes (real WALs with fdatasync, real TCP between them),
//! each started from a configuration file this command writes, with a peer key and a
//! client key it generates; then it prints the command lines that reach the cluster,
//! and stops every node gracefully on SIGINT (Ctrl-C) or SIGTERM.
//!
//! Layout, under `--dir` (default `$TMPDIR/synod-dev`): `peer.key`, `client.key`
//! (mode 600, made once and kept), `node-<i>.toml` (rewritten at each start) and
//! `node-<i>/` (node i's data). Ports: six consecutive ones from `--port`, the three
//! nodes' peer ports first, then their client ports. A second run on the same
//! directory restarts the same cluster with its data; a node whose data directory is
//! missing while another's holds data starts as a member that lost its data (it
//! rejoins as a learner), as `--existing` would have it.
//!
//! Invariants: the nodes run `--test-timeouts` (300 ms elections, 8 MiB WAL segments:
//! quick on loopback, small on disk; `synod serve --help`) and `--control`, whose end
//! of input stops a node gracefully: this process holds each node's stdin, so the
//! nodes stop when it ends, however it ends, and never outlive it. A node that exits
//! by itself stops the others and makes this command fail (exit status 1) with that
//! node's last log lines.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use synod::runtime::clock::MonotonicClock;
use synod::transport::auth::AuthKey;

use super::notify::NOTIFY_SOCKET;
use super::positive;

/// Nodes of the dev cluster.
const NODE_COUNT: u16 = 3;

/// The cluster id of the dev cluster (the client commands' default `--cluster`).
const CLUSTER: u64 = 1;

/// How long a node may take to print `ready` (WAL recovery, zero-filled segments).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node may take to stop after its input closed (the drain, the last WAL
/// write); then it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Log lines of each node kept for the message of a failure.
const LOG_LINES_KEPT: usize = 20;

/// How often the supervisor looks at signals and at its nodes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The flags of `synod dev`.
#[derive(Clone, Debug, Args)]
pub struct DevArgs {
    /// The cluster's directory: its keys, the nodes' configuration files and data. An
    /// existing one restarts the same cluster [default: $TMPDIR/synod-dev].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The first of six consecutive ports on 127.0.0.1: the nodes' peer ports PORT,
    /// PORT+1, PORT+2, then their client ports PORT+3, PORT+4, PORT+5.
    #[arg(long, value_name = "PORT", default_value_t = 7000,
          value_parser = clap::value_parser!(u16).range(1..=65530))]
    pub port: u16,
    /// Groups of the cluster (keys are spread over them).
    #[arg(long, value_name = "G", default_value_t = 8, value_parser = positive::<u32>)]
    pub groups: u32,
}

/// One node of the dev cluster: its process, the stdin that keeps it running, its
/// stdout lines and its last log lines.
struct DevNode {
    id: u16,
    child: Child,
    /// Closing it stops the node (`--control`).
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Runs `synod dev` until SIGINT or SIGTERM (exit 0), or until a node fails (an
/// error naming it).
pub fn main(args: DevArgs) -> Result<ExitCode, String> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("synod-dev"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    let peer_key = key_file(&dir.join("peer.key"))?;
    let client_key = key_file(&dir.join("client.key"))?;
    let layout = Layout {
        dir: dir.clone(),
        port: args.port,
        groups: args.groups,
    };
    let configs = layout.write_configs(&peer_key, &client_key)?;
    // Installed before the nodes start, so that a Ctrl-C during the start stops them.
    let mut signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("installing the SIGTERM and SIGINT handlers: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("the synod binary's path: {e}"))?;
    let mut nodes = Vec::new();
    for (id, config) in (1..=NODE_COUNT).zip(&configs) {
        match DevNode::spawn(&exe, id, config) {
            Ok(node) => nodes.push(node),
            Err(error) => return Err(stop_all(nodes, error)),
        }
    }
    let started = MonotonicClock::start();
    for index in 0..nodes.len() {
        if let Err(error) = nodes[index].wait_ready(&started) {
            return Err(stop_all(nodes, error));
        }
    }
    print_welcome(&layout, &exe, &client_key).map_err(|e| format!("stdout: {e}"))?;
    loop {
        if let Some(signal) = signals.pending().next() {
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            eprintln!("synod dev: {name}: stopping the nodes");
            return finish(nodes);
        }
        for node in &mut nodes {
            if let Some(status) = node.child.try_wait().map_err(|e| e.to_string())? {
                let error = node.failure(&format!("exited by itself ({status})"));
                return Err(stop_all(nodes, error));
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The key file at `path`: read if it exists, else a new key written there (mode
/// 600).
fn key_file(path: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        AuthKey::from_file(path).map_err(|e| e.to_string())?;
        return Ok(path.to_path_buf());
    }
    let key = AuthKey::generate().map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{}", key.to_hex())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Where the dev cluster lives: its directory, ports and groups.
struct Layout {
    dir: PathBuf,
    port: u16,
    groups: u32,
}

impl Layout {
    /// Node `id`'s peer address.
    fn peer(&self, id: u16) -> String {
        format!("127.0.0.1:{}", self.port + id - 1)
    }

    /// Node `id`'s client address.
    fn client(&self, id: u16) -> String {
        format!("127.0.0.1:{}", self.port + NODE_COUNT + id - 1)
    }

    /// Node `id`'s data directory.
    fn data(&self, id: u16) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// `{ 1 = "ADDR", 2 = "ADDR", 3 = "ADDR" }` of `address`.
    fn table(&self, address: impl Fn(u16) -> String) -> String {
        let items: Vec<String> = (1..=NODE_COUNT)
            .map(|id| format!("{id} = \"{}\"", address(id)))
            .collect();
        format!("{{ {} }}", items.join(", "))
    }

    /// Writes every node's configuration file; returns their paths, node 1 first.
    fn write_configs(&self, peer_key: &Path, client_key: &Path) -> Result<Vec<PathBuf>, String> {
        let mut claimed = Vec::new();
        for id in 1..=NODE_COUNT {
            let data = self.data(id);
            claimed.push(
                synod::api::data_dir_claimed(&data)
                    .map_err(|e| format!("{}: {e}", data.display()))?,
            );
        }
        // An empty data directory beside others that hold data lost its data.
        let initial_state = if claimed.contains(&true) {
            "existing"
        } else {
            "new"
        };
        let mut paths = Vec::new();
        for id in 1..=NODE_COUNT {
            let text = format!(
                "# Node {id} of the local cluster of `synod dev`, rewritten at each of its \
                 starts.\n\
                 [node]\nid = {id}\ndir = {data}\ninitial_state = \"{initial_state}\"\n\n\
                 [cluster]\nid = {CLUSTER}\nnodes = {peers}\ngroups = {groups}\n\n\
                 [auth]\npeer_key_file = {peer_key}\nclient_key_file = {client_key}\n\n\
                 [client]\naddress = \"{client}\"\nnodes = {clients}\n",
                data = toml_path(&self.data(id))?,
                peers = self.table(|i| self.peer(i)),
                groups = self.groups,
                peer_key = toml_path(peer_key)?,
                client_key = toml_path(client_key)?,
                client = self.client(id),
                clients = self.table(|i| self.client(i)),
            );
            let path = self.dir.join(format!("node-{id}.toml"));
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            paths.push(path);
        }
        Ok(paths)
    }
}

/// A path as a TOML basic string.
fn toml_path(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{}: not a UTF-8 path", path.display()))?;
    if text.chars().any(char::is_control) {
        return Err(format!("{text:?}: a control character in a path"));
    }
    Ok(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// `word` as one word of a POSIX shell command line.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:=,@+%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Prints where the cluster is and command lines that reach it (each `  $ ` line
/// runs as printed), then `ready`.
fn print_welcome(layout: &Layout, exe: &Path, client_key: &Path) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "synod dev: three nodes of cluster {CLUSTER} on 127.0.0.1, {} groups, in {}",
        layout.groups,
        layout.dir.display()
    )?;
    for id in 1..=NODE_COUNT {
        writeln!(
            out,
            "  node {id}: peers {}, clients {}, data {}",
            layout.peer(id),
            layout.client(id),
            layout.data(id).display()
        )?;
    }
    let targets: Vec<String> = (1..=NODE_COUNT).map(|id| layout.client(id)).collect();
    let exe = exe.to_string_lossy();
    let key = client_key.to_string_lossy();
    let command = |words: &[&str]| {
        let mut line = vec![shell_word(&exe)];
        line.push(words[0].to_string());
        for word in [
            "--target",
            &targets.join(","),
            "--cluster",
            &CLUSTER.to_string(),
            "--client-key-file",
            &key,
        ]
        .iter()
        .chain(&words[1..])
        {
            line.push(shell_word(word));
        }
        line.join(" ")
    };
    writeln!(
        out,
        "Clients prove the client key {key}. Try (synod put|get|del|cas|scan|status):"
    )?;
    for words in [
        &["put", "hello", "world"][..],
        &["get", "hello"],
        &["scan"],
        &["status"],
    ] {
        writeln!(out, "  $ {}", command(words))?;
    }
    writeln!(
        out,
        "Configuration files: {}/node-<i>.toml. Ctrl-C stops the cluster; its data stays \
         in {} (delete it to start afresh).",
        layout.dir.display(),
        layout.dir.display()
    )?;
    writeln!(out, "ready")?;
    out.flush()
}

impl DevNode {
    /// Starts node `id`: `synod serve --config CONFIG --test-timeouts --control`, its
    /// log lines forwarded to stderr with a `[node <id>]` prefix.
    fn spawn(exe: &Path, id: u16, config: &Path) -> Result<DevNode, String> {
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--test-timeouts", "--control"])
            // The service manager (if any) supervises this process, not the nodes.
            .env_remove(NOTIFY_SOCKET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting node {id} ({}): {e}", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[node {id}] {line}");
                let mut kept = kept
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.len() == LOG_LINES_KEPT {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        Ok(DevNode {
            id,
            stdin: child.stdin.take(),
            child,
            lines,
            log,
        })
    }

    /// Waits until the node prints `ready`, at most until `READY_TIMEOUT` after
    /// `started` started.
    fn wait_ready(&mut self, started: &MonotonicClock) -> Result<(), String> {
        loop {
            match self.lines.recv_timeout(left(started, READY_TIMEOUT)) {
                Ok(line) if line == "ready" => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("not ready within {READY_TIMEOUT:?}")))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Its output ended: it exited (a refused start) or is about to.
                    let status = self.child.wait().map_err(|e| e.to_string())?;
                    return Err(self.failure(&format!("exited before it was ready ({status})")));
                }
            }
        }
    }

    /// `node <id> <what>` and its last log lines.
    fn failure(&self, what: &str) -> String {
        // The log reader may still be taking the last lines of a node that just ended.
        std::thread::sleep(Duration::from_millis(100));
        let log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        format!("node {} {what}; its last log lines: {:?}", self.id, *log)
    }

    /// Closes the node's input (a graceful stop) and waits for it, at most
    /// `STOP_TIMEOUT`; kills it after that. Returns its exit status.
    fn stop(&mut self) -> Result<ExitStatus, String> {
        drop(self.stdin.take());
        let started = MonotonicClock::start();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            if left(&started, STOP_TIMEOUT).is_zero() {
                self.child.kill().map_err(|e| e.to_string())?;
                self.child.wait().map_err(|e| e.to_string())?;
                return Err(format!(
                    "node {} did not stop within {STOP_TIMEOUT:?}: killed",
                    self.id
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// What is left of `limit` since `started` started (zero once it passed).
fn left(started: &MonotonicClock, limit: Duration) -> Duration {
    limit.saturating_sub(Duration::from_nanos(started.now().0))
}

/// Closes every node's input at once, so that they stop together (one stopping alone
/// would make the others log its closed links).
fn close_inputs(nodes: &mut [DevNode]) {
    for node in nodes {
        drop(node.stdin.take());
    }
}

/// Stops every node after `error`; returns `error` with what went wrong stopping them.
fn stop_all(mut nodes: Vec<DevNode>, error: String) -> String {
    close_inputs(&mut nodes);
    let mut message = error;
    for mut node in nodes {
        if let Err(more) = node.stop() {
            message = format!("{message}; {more}");
        }
    }
    message
}

/// Stops every node gracefully: exit 0 when each ended with status 0.
fn finish(mut nodes: Vec<DevNode>) -> Result<ExitCode, String> {
    close_inputs(&mut nodes);
    let mut failures = Vec::new();
    for mut node in nodes {
        match node.stop() {
            Ok(status) if status.success() => {}
            Ok(status) => failures.push(node.failure(&format!("stopped with {status}"))),
            Err(error) => failures.push(error),
        }
    }
    if failures.is_empty() {
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the configuration files a dev cluster writes are valid for `synod serve`
    // (the same loader), name distinct ports, and the shell words printed survive a
    // shell. Method: write the files into a temporary directory and load each.
    #[test]
    fn configurations_load_and_words_quote() {
        let dir = std::env::temp_dir().join(format!("synod-dev-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let layout = Layout {
            dir: dir.clone(),
            port: 7000,
            groups: 4,
        };
        let peer = key_file(&dir.join("peer.key")).expect("peer key");
        let client = key_file(&dir.join("client.key")).expect("client key");
        // Made once, then kept.
        let first = std::fs::read_to_string(&peer).expect("read");
        key_file(&peer).expect("existing key");
        assert_eq!(std::fs::read_to_string(&peer).expect("read"), first);
        let configs = layout.write_configs(&peer, &client).expect("configs");
        for (id, path) in (1..=NODE_COUNT).zip(&configs) {
            let file = super::super::serve_config::ServeFile::load(path).expect("loads");
            let plan = file.plan(true).expect("a valid plan");
            assert_eq!(plan.config.node.0, u32::from(id));
            assert_eq!(plan.config.group_count, 4);
            let server = plan.client.expect("a client listener");
            assert_eq!(server.address.to_string(), layout.client(id));
            assert_eq!(server.addresses.len(), 3);
            let text = std::fs::read_to_string(path).expect("read");
            assert!(text.contains("initial_state = \"new\""), "{text}");
        }
        assert_eq!(layout.peer(3), "127.0.0.1:7002");
        assert_eq!(layout.client(1), "127.0.0.1:7003");
        std::fs::create_dir_all(layout.data(2)).expect("data dir");
        // Node 2 holds data (its identity file, as `synod::api::data_dir_claimed` sees).
        std::fs::write(layout.data(2).join("synod.id"), "x").expect("id");
        layout.write_configs(&peer, &client).expect("configs");
        let text = std::fs::read_to_string(&configs[0]).expect("read");
        assert!(text.contains("initial_state = \"existing\""), "{text}");
        assert_eq!(shell_word("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(shell_word("it's here"), "'it'\\''s here'");
        assert_eq!(shell_word(""), "''");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
