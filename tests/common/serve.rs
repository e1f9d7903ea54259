//! `synod serve` children for the tests that run the binary: spawned with the test's
//! flags, their stdout lines and their log (stderr) lines collected, driven through
//! `--control`; killed on drop. Also one-shot runs of the binary ([`synod`]) and the
//! smallest `serve` command line ([`one_node_serve`]). The client protocol's tests add the credentials with
//! [`ClientKey::args`], the one place that adds them.

#![allow(dead_code, reason = "shared by several test crates, each using a part")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use synod::transport::auth::AuthKey;

use super::cluster::{free_ports, line_reader, write_key, TempDir};

/// Runs the `synod` binary with `args` to its end.
pub fn synod(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(args)
        .output()
        .expect("run synod")
}

/// `synod serve` of node 1, alone in its cluster, on the data directory `dir`, new,
/// without key flags: every check passes but the keys'. Tests of the key and
/// exclusion flags add theirs to it.
pub fn one_node_serve(dir: &str) -> Vec<&str> {
    vec![
        "serve",
        "--node",
        "1",
        "--nodes",
        "1=127.0.0.1:1",
        "--dir",
        dir,
        "--new",
    ]
}

/// A test cluster's credentials: a client key and a peer key, each in a key file of
/// their own directory (not a node's data directory). Every node of one cluster is
/// given the same `ClientKey`, so the nodes share both keys.
pub struct ClientKey {
    pub key: AuthKey,
    pub path: PathBuf,
    pub peer_path: PathBuf,
    _dir: TempDir,
}

impl ClientKey {
    pub fn new(name: &str) -> ClientKey {
        let dir = TempDir::new(&format!("{name}-key"));
        let path = dir.path().join("client.key");
        let key = write_key(&path);
        let peer_path = dir.path().join("peer.key");
        write_key(&peer_path);
        ClientKey {
            key,
            path,
            peer_path,
            _dir: dir,
        }
    }

    /// The flags that give a node these keys.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--client-key-file".to_string(),
            self.path.display().to_string(),
            "--key-file".to_string(),
            self.peer_path.display().to_string(),
        ]
    }

    /// A client configuration holding this key.
    pub fn config(&self) -> synod::client::ClientConfig {
        synod::client::ClientConfig {
            key: Some(self.key.clone()),
            ..synod::client::ClientConfig::default()
        }
    }
}

/// One `synod serve` child: its stdout lines and its stderr (log) lines, collected on
/// threads of their own; killed on drop.
pub struct Serve {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    label: String,
}

/// One group's line of a `--control` node's `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLine {
    pub role: String,
    pub applied_through: u64,
    pub checksum: u32,
    /// The group's durable checkpoint (0: none).
    pub checkpoint_through: u64,
}

impl Serve {
    /// Spawns `synod serve ARGS` with stdin, stdout and stderr piped and `SYNOD_LOG` at
    /// `log_level` (None: inherited); returns at once (see [`Serve::ready`]). `label`
    /// names the child in failure messages.
    pub fn start(label: &str, args: &[String], log_level: Option<&str>) -> Serve {
        Serve::start_with_env(label, args, log_level, &[])
    }

    /// [`Serve::start`] with the variables `env` set in the child's environment.
    pub fn start_with_env(
        label: &str,
        args: &[String],
        log_level: Option<&str>,
        env: &[(&str, &str)],
    ) -> Serve {
        let mut command = Command::new(env!("CARGO_BIN_EXE_synod"));
        command
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(level) = log_level {
            command.env("SYNOD_LOG", level);
        }
        let mut child = command.spawn().expect("spawn synod serve");
        let lines = line_reader(child.stdout.take().expect("stdout"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        Serve {
            child,
            lines,
            log,
            label: label.to_string(),
        }
    }

    /// Spawns `synod serve ARGS` (logging at info) and waits until it is ready.
    pub fn spawn(label: &str, args: &[String]) -> Serve {
        Serve::start(label, args, Some("info")).ready(Duration::from_secs(20))
    }

    /// Waits up to `limit` for `ready`; fails with the child's log if it does not come.
    pub fn ready(self, limit: Duration) -> Serve {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == "ready" => return self,
                Ok(_) => {}
                Err(_) => panic!(
                    "synod serve {}: not ready: {:?}",
                    self.label,
                    self.log_lines()
                ),
            }
        }
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Whether a log line contains every one of `words` (waiting up to 10 s).
    pub fn has_log(&self, words: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .log_lines()
                .iter()
                .any(|line| words.iter().all(|w| line.contains(w)))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until a log line contains every one of `words`.
    pub fn expect_log(&self, words: &[&str]) {
        if !self.has_log(words) {
            panic!("no log line with {words:?}: {:#?}", self.log_lines());
        }
    }

    /// Waits for the stderr reader to see the child's last line (`synod: ...`).
    pub fn final_log(&self) -> Vec<String> {
        for _ in 0..200 {
            if self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .any(|l| l.starts_with("synod: "))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.log_lines()
    }

    /// Sends `signal` (`STOP`, `CONT`) to the child.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits (bounded) for the child to exit by itself.
    pub fn exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "synod serve {} still runs after {limit:?}: {:?}",
                self.label,
                self.log_lines()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Ends the node gracefully (end of stdin) and checks that it exits 0 within 20 s.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = self.exit(Duration::from_secs(20));
        assert!(
            status.success(),
            "synod serve {} exited with {status}",
            self.label
        );
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Writes `command` as one line to the child's `--control` input.
    pub fn command(&mut self, command: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{command}").expect("write command");
        stdin.flush().expect("flush");
    }

    /// Proposes `word` to `group` through the child's `--control` input: `Ok(instance)`
    /// once chosen, `Err(line)` with its error line, None without an answer within
    /// `timeout`.
    pub fn propose(
        &mut self,
        group: u32,
        word: &str,
        timeout: Duration,
    ) -> Option<Result<u64, String>> {
        self.command(&format!("propose {group} {word}"));
        let deadline = Instant::now() + timeout;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Some(instance) = line.strip_prefix(&format!("proposed {group} ")) {
                return Some(Ok(instance.parse().expect("instance")));
            }
            if line.starts_with(&format!("error {group} ")) {
                return Some(Err(line));
            }
        }
        None
    }

    /// Every group's line of the child's `--control` `status`, by group.
    pub fn status(&mut self) -> BTreeMap<u32, GroupLine> {
        self.command("status");
        let mut groups = BTreeMap::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .expect("status answers");
            if line == "end" {
                return groups;
            }
            // group <g> role <role> applied <i> checksum <c> checkpoint <k>
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["group", group, "role", role, "applied", applied, "checksum", checksum, "checkpoint", checkpoint] =
                words[..]
            {
                groups.insert(
                    group.parse().expect("group"),
                    GroupLine {
                        role: role.to_string(),
                        applied_through: applied.parse().expect("applied"),
                        checksum: checksum.parse().expect("checksum"),
                        checkpoint_through: checkpoint.parse().expect("checkpoint"),
                    },
                );
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // A failed test must not leave children behind (nor a stopped one).
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-CONT", &self.child.id().to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three `synod serve` nodes on loopback, before they start: free peer and client
/// ports, their lists, and a data directory each.
pub struct ThreeNodes {
    /// The peers, `1=127.0.0.1:P,2=...,3=...` (`--nodes`).
    pub peers: String,
    /// The client listeners, `1=127.0.0.1:C,...` (`--client-nodes`).
    pub clients: String,
    /// Each node's client address, node 1 first.
    pub addresses: Vec<String>,
    /// Each node's data directory, node 1 first (`<label>-<id>`).
    pub dirs: Vec<TempDir>,
}

impl ThreeNodes {
    /// Picks the ports and makes the directories.
    pub fn new(label: &str) -> ThreeNodes {
        let (peer_base, client_base) = (free_ports(3), free_ports(3));
        let list = |base: u16| {
            (0..3)
                .map(|i| format!("{}=127.0.0.1:{}", i + 1, base + i))
                .collect::<Vec<_>>()
                .join(",")
        };
        ThreeNodes {
            peers: list(peer_base),
            clients: list(client_base),
            addresses: (0..3)
                .map(|i| format!("127.0.0.1:{}", client_base + i))
                .collect(),
            dirs: (1..=3)
                .map(|i| TempDir::new(&format!("{label}-{i}")))
                .collect(),
        }
    }
}

/// The flags of a test node with a client listener: node `id` of cluster `cluster`
/// among `peers` (`ID=IP:PORT,...`), a new data directory `dir`, test timeouts,
/// commands on stdin, clients at `client`. Credentials are added by
/// [`ClientKey::args`].
pub fn client_node_args(
    id: u32,
    cluster: u64,
    peers: &str,
    dir: &TempDir,
    client: &str,
) -> Vec<String> {
    [
        "--node",
        &id.to_string(),
        "--cluster",
        &cluster.to_string(),
        "--nodes",
        peers,
        "--dir",
        &dir.path().display().to_string(),
        "--new",
        "--test-timeouts",
        "--control",
        "--client",
        client,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}
