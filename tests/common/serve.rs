//! `synod serve --client` children for the client protocol's tests: spawned with the
//! test's flags plus the credentials ([`ClientKey::args`], the one place that adds
//! them), their stdout lines and their log (stderr) lines collected; killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use synod::transport::auth::AuthKey;

use super::cluster::{line_reader, write_key, TempDir};

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

/// One `synod serve` child: its stdout lines and its stderr (log) lines.
pub struct Serve {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Spawns `synod serve ARGS` (logging at info) and waits until it is ready.
    pub fn spawn(label: &str, args: &[String]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_synod"))
            .arg("serve")
            .args(args)
            .env("SYNOD_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn synod serve");
        let stdout = child.stdout.take().expect("stdout");
        let lines = line_reader(stdout);
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        let serve = Serve { child, lines, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match serve.lines.recv_timeout(left) {
                Ok(line) if line == "ready" => return serve,
                Ok(_) => {}
                Err(_) => panic!("synod serve {label}: not ready: {:?}", serve.log_lines()),
            }
        }
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until a log line contains every one of `words`.
    pub fn expect_log(&self, words: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .log_lines()
                .iter()
                .any(|line| words.iter().all(|w| line.contains(w)))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no log line with {words:?}: {:#?}", self.log_lines());
    }

    /// Sends `signal` (`STOP`, `CONT`) to the child.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Ends the node gracefully (end of stdin) and waits for it.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "synod serve exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("synod serve did not stop within 20 s of the end of its input");
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
