//! One `synod serve` process of the chaos run: its configuration file, its data
//! directory (on a tmpfs of its own where mounting works, so that the disk can be
//! filled), its log file, and the signals the nemesis sends it.
//!
//! Invariants: at most one process per node at a time; drop continues a stopped
//! process, kills it, reaps it and unmounts the data directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::net::Net;

/// Bytes written per step while filling the disk.
const FILL_CHUNK_SIZE: usize = 1 << 20;

/// What a node is started with.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The `synod` binary.
    pub synod: PathBuf,
    /// Size of each node's tmpfs, in MiB.
    pub disk_mib: u64,
    /// Shards per node.
    pub shards: u16,
    /// Groups of the cluster.
    pub groups: u32,
    /// The cluster id.
    pub cluster: u64,
}

/// One node.
#[derive(Debug)]
pub struct Node {
    /// Index (node id - 1).
    pub index: usize,
    data: PathBuf,
    config: PathBuf,
    log: PathBuf,
    prefix: Vec<String>,
    synod: PathBuf,
    mounted: bool,
    child: Option<Child>,
    started_once: bool,
    stopped: bool,
}

impl Node {
    /// Writes node `index`'s configuration under `root` and mounts its tmpfs (when it
    /// can; `mounted()` says). Does not start it.
    pub fn new(index: usize, root: &Path, net: &Net, setup: &Setup) -> Result<Node, String> {
        let dir = root.join(format!("n{}", index + 1));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={}m", setup.disk_mib)])
            .arg("tmpfs")
            .arg(&data)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let list = |client: bool| {
            net.places
                .iter()
                .enumerate()
                .map(|(i, p)| format!("{} = \"{}\"", i + 1, if client { p.client } else { p.peer }))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = format!(
            "[node]\nid = {}\ndir = \"{}\"\nstate_machine = \"kv\"\n\
             [cluster]\nid = {}\nnodes = {{ {} }}\nshards = {}\ngroups = {}\n\
             [checkpoint]\ninstances = 2000\ninterval_s = 5\n\
             [auth]\nno_auth = true\n\
             [client]\naddress = \"{}\"\nnodes = {{ {} }}\n",
            index + 1,
            data.display(),
            setup.cluster,
            list(false),
            setup.shards,
            setup.groups,
            net.places[index].client,
            list(true),
        );
        let config = dir.join("synod.toml");
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        Ok(Node {
            index,
            log: dir.join("node.log"),
            data,
            config,
            prefix: net.exec_prefix(index),
            synod: setup.synod.clone(),
            mounted,
            child: None,
            started_once: false,
            stopped: false,
        })
    }

    /// Whether the data directory is a tmpfs of its own (the disk can be filled).
    pub fn mounted(&self) -> bool {
        self.mounted
    }

    /// The node's log file (stdout and stderr of every start).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts the process (`--new` the first time); a running one is left alone.
    pub fn start(&mut self) -> Result<(), String> {
        if self.running() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let mut command = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.synod);
                c
            }
            None => Command::new(&self.synod),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--test-timeouts")
            .env("SYNOD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            // A process group of its own: a Ctrl-C at the terminal reaches the run,
            // which then ends its nodes itself, not the nodes behind its back.
            .process_group(0);
        if !self.started_once {
            command.arg("--new");
        }
        let child = command
            .spawn()
            .map_err(|e| format!("start node {}: {e}", self.index + 1))?;
        self.child = Some(child);
        self.started_once = true;
        self.stopped = false;
        Ok(())
    }

    /// Whether a process runs (stopped included).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The exit status of a process that ended by itself since the last start
    /// (`None` while it runs, or when none was started); forgets the process.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    fn signal(&self, signal: &str) -> Result<(), String> {
        let Some(child) = &self.child else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("kill -{signal}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} node {}: {status}", self.index + 1))
        }
    }

    /// SIGKILL, reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.stopped {
                let _continued = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
            let _killed = child.kill();
            let _reaped = child.wait();
        }
        self.stopped = false;
    }

    /// SIGSTOP (`pause`) or SIGCONT.
    pub fn pause(&mut self, pause: bool) -> Result<(), String> {
        self.signal(if pause { "STOP" } else { "CONT" })?;
        self.stopped = pause && self.child.is_some();
        Ok(())
    }

    /// SIGTERM, then waits up to `limit` for the exit (SIGKILL after it): the exit
    /// status, `None` when it had to be killed.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.stopped {
            let _continued = self.pause(false);
        }
        if self.signal("TERM").is_err() {
            self.kill();
            return None;
        }
        let clock = synod::runtime::clock::MonotonicClock::start();
        while clock.elapsed_s() < limit.as_secs_f64() {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    fn filler(&self) -> PathBuf {
        self.data.join("chaos-filler")
    }

    /// Fills the tmpfs with one file until it is full: the bytes written.
    pub fn fill_disk(&self, max_size: u64) -> Result<u64, String> {
        let path = self.filler();
        let mut file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let chunk = vec![0u8; FILL_CHUNK_SIZE];
        let mut written = 0u64;
        while written < max_size {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        Ok(written)
    }

    /// Removes the filler file (no-op when absent).
    pub fn free_disk(&self) -> Result<(), String> {
        match std::fs::remove_file(self.filler()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.filler().display())),
        }
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| (*l).to_string())
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if self.mounted {
            let unmounted = Command::new("umount")
                .arg(&self.data)
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                let _lazy = Command::new("umount").arg("-l").arg(&self.data).status();
            }
        }
    }
}
