//! What an operator runs: `synod serve` under a service manager (the readiness
//! protocol of `Type=notify`: `READY=1` once it serves, `STOPPING=1` when SIGTERM
//! begins the graceful stop), the shipped systemd unit (checked by `systemd-analyze
//! verify` where it exists), and `synod dev`, the one-command local cluster whose
//! printed command lines must work as printed.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::cluster::{free_ports, line_reader, TempDir};
use common::serve::{ClientKey, Serve};
use synod::client::Client;

/// Receives datagrams on `socket` until one contains `wanted` (a `KEY=VALUE` line),
/// at most `limit`; returns every datagram seen, the last one holding it.
fn notices_until(socket: &UnixDatagram, wanted: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {wanted} within {limit:?}: {seen:?}");
        socket.set_read_timeout(Some(left)).expect("timeout");
        match socket.recv(&mut buffer) {
            Ok(n) => {
                let notice = String::from_utf8_lossy(&buffer[..n]).into_owned();
                let found = notice.lines().any(|line| line == wanted);
                seen.push(notice);
                if found {
                    return seen;
                }
            }
            Err(error) => panic!("no {wanted} within {limit:?} ({error}): {seen:?}"),
        }
    }
}

// Goal: under a service manager, `synod serve` says READY=1 only once it serves (its
// client port answers a status at once) and STOPPING=1 when SIGTERM begins its stop,
// then exits 0; both for a socket path and for an abstract socket (systemd uses
// either).
// Method: one node with a client listener; NOTIFY_SOCKET names a datagram socket the
// test bound; wait for READY=1, ask the node's status, SIGTERM, wait for STOPPING=1
// and the exit. Then restart it on its data with an abstract `@name` socket.
#[test]
fn serve_notifies_readiness_and_stopping() {
    let dir = TempDir::new("notify");
    let sockets = TempDir::new("notify-socket");
    let key = ClientKey::new("notify");
    let (peer, client_port) = (free_ports(1), free_ports(1));
    let address = format!("127.0.0.1:{client_port}");
    let mut args: Vec<String> = [
        "--node",
        "1",
        "--nodes",
        &format!("1=127.0.0.1:{peer}"),
        "--dir",
        &dir.path().display().to_string(),
        "--new",
        "--test-timeouts",
        "--client",
        &address,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(key.args());

    let path = sockets.path().join("notify.sock");
    let abstract_name = format!("synod-deploy-test-{}", std::process::id());
    let runs = [
        (
            UnixDatagram::bind(&path).expect("bind a socket path"),
            path.display().to_string(),
        ),
        (
            UnixDatagram::bind_addr(
                &SocketAddr::from_abstract_name(abstract_name.as_bytes()).expect("name"),
            )
            .expect("bind an abstract socket"),
            format!("@{abstract_name}"),
        ),
    ];
    for (socket, variable) in runs {
        let mut node = Serve::start_with_env(
            "notify",
            &args,
            Some("info"),
            &[("NOTIFY_SOCKET", &variable)],
        );
        let ready = notices_until(&socket, "READY=1", Duration::from_secs(30));
        // READY=1 is sent after the node printed `ready`, its listener up.
        let client =
            Client::connect_with(&[address.as_str()], 1, key.config()).expect("connect at once");
        let status = client.status_blocking().expect("status at once");
        assert_eq!(status.len(), 1, "{status:?}");
        assert!(
            ready.iter().any(|n| n.contains("STATUS=node 1 serving")),
            "{ready:?}"
        );
        drop(client);
        node.signal("TERM");
        let stopping = notices_until(&socket, "STOPPING=1", Duration::from_secs(20));
        assert!(
            stopping.iter().any(|n| n.contains("SIGTERM")),
            "{stopping:?}"
        );
        let exit = node.exit(Duration::from_secs(20));
        assert_eq!(exit.code(), Some(0), "{exit}: {:?}", node.final_log());
        assert!(
            node.log_lines()
                .iter()
                .any(|line| line.contains(&format!("NOTIFY_SOCKET={variable}"))),
            "{:?}",
            node.log_lines()
        );
    }

    // An address the protocol cannot use is refused before the node starts.
    let mut refused = Serve::start_with_env(
        "notify-refused",
        &args,
        None,
        &[("NOTIFY_SOCKET", "relative/notify.sock")],
    );
    let exit = refused.exit(Duration::from_secs(20));
    assert_eq!(exit.code(), Some(1), "{exit}");
    let log = refused.final_log();
    assert!(
        log.iter()
            .any(|l| l.contains("NOTIFY_SOCKET=relative/notify.sock")),
        "{log:?}"
    );
}

// Goal: the shipped unit file is one systemd accepts (known keys, valid values, an
// executable ExecStart), and keeps the settings the README relies on.
// Method: the unit with ExecStart pointed at the test's binary, through
// `systemd-analyze verify` when the machine has it; the settings by text always.
#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tools/systemd/synod.service"
    ))
    .expect("tools/systemd/synod.service");
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/synod serve --config /etc/synod/synod.toml",
        "Restart=on-failure",
        "StateDirectory=synod",
        "LimitMEMLOCK=",
        "TimeoutStopSec=",
        "User=synod",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "no line {line:?}"
        );
    }
    let dir = TempDir::new("unit");
    let path = dir.path().join("synod.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/synod", env!("CARGO_BIN_EXE_synod")),
    )
    .expect("write the unit");
    match Command::new("systemd-analyze")
        .args(["verify", &path.display().to_string()])
        .output()
    {
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "systemd-analyze verify: {stderr}");
            // Warnings about this unit's own lines (not the host's other units).
            let ours: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("synod.service"))
                .collect();
            assert!(ours.is_empty(), "{ours:?}");
        }
        Err(error) => eprintln!("systemd-analyze not run ({error}): unit checked by text only"),
    }
}

/// A running `synod dev`: its process and its stdout lines.
struct Dev {
    child: Child,
    lines: Receiver<String>,
}

impl Dev {
    /// Starts `synod dev --dir DIR --port PORT --groups 4` and waits for `ready`;
    /// returns it with the command lines it printed (`  $ ...`), as words.
    fn start(dir: &TempDir, port: u16) -> (Dev, Vec<Vec<String>>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_synod"))
            .args([
                "dev",
                "--dir",
                &dir.path().display().to_string(),
                "--port",
                &port.to_string(),
                "--groups",
                "4",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn synod dev");
        let lines = line_reader(child.stdout.take().expect("stdout"));
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("dev: {line}");
            }
        });
        let mut dev = Dev { child, lines };
        let mut commands = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = dev
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("synod dev not ready: {:?}", dev.child.try_wait()));
            println!("{line}");
            if line == "ready" {
                return (dev, commands);
            }
            if let Some(command) = line.strip_prefix("  $ ") {
                // The test's paths hold no character the shell would need quoted.
                assert!(!command.contains('\''), "{command}");
                commands.push(command.split_whitespace().map(String::from).collect());
            }
        }
    }

    /// Sends `signal` and checks that every node stopped and the command exited 0.
    fn stop(mut self, signal: &str, client_ports: &[u16]) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(40);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                break exit;
            }
            assert!(Instant::now() < deadline, "synod dev still runs");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(exit.code(), Some(0), "{signal}: {exit}");
        assert!(self.lines.try_iter().any(|l| l == "stopped"));
        for port in client_ports {
            assert!(
                TcpStream::connect(("127.0.0.1", *port)).is_err(),
                "a node still listens on {port} after synod dev ended"
            );
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // A failed test must not leave the supervisor behind (its nodes end with it).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a printed command line with `extra` words appended; returns (status, stdout,
/// stderr).
fn run(words: &[String], extra: &[&str]) -> (i32, String, String) {
    let output = Command::new(&words[0])
        .args(&words[1..])
        .args(extra)
        .output()
        .expect("run a printed command");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// Goal: `synod dev` starts a working three-node cluster whose printed command lines
// run as printed (put, get, scan, status with the client key), stops every node on
// SIGTERM, and restarts the same cluster with its data from the same directory,
// stopping on SIGINT (Ctrl-C) too.
// Method: `synod dev` on six free ports; run each printed line; SIGTERM; check the
// exit, `stopped` and the closed client ports; start again, read the key back, write
// one more, SIGINT.
#[test]
fn dev_cluster_runs_its_printed_commands() {
    let dir = TempDir::new("dev");
    let port = free_ports(6);
    let client_ports: Vec<u16> = (3..6).map(|i| port + i).collect();
    let (dev, commands) = Dev::start(&dir, port);
    let find = |name: &str| -> Vec<String> {
        commands
            .iter()
            .find(|words| words.get(1).map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no printed `{name}` line: {commands:?}"))
            .clone()
    };
    let (put, get, scan, status) = (find("put"), find("get"), find("scan"), find("status"));
    assert_eq!(put[0], env!("CARGO_BIN_EXE_synod"));
    let (code, _, err) = run(&put, &[]);
    assert_eq!(code, 0, "{put:?}: {err}");
    let (code, out, err) = run(&get, &[]);
    assert_eq!((code, out.as_str()), (0, "world\n"), "{get:?}: {err}");
    let (code, out, err) = run(&scan, &[]);
    assert_eq!(
        (code, out.as_str()),
        (0, "hello\tworld\n"),
        "{scan:?}: {err}"
    );
    let (code, out, err) = run(&status, &[]);
    assert_eq!(code, 0, "{status:?}: {err}");
    for node in 1..=3 {
        assert!(out.contains(&format!("node {node} ")), "{out}");
    }
    assert!(out.contains("role Leader"), "{out}");
    assert!(!out.contains("unreachable"), "{out}");
    dev.stop("TERM", &client_ports);
    for file in ["peer.key", "client.key", "node-1.toml", "node-1/synod.id"] {
        assert!(dir.path().join(file).exists(), "{file}");
    }

    // The same directory: the same cluster, its data and keys kept.
    let (dev, again) = Dev::start(&dir, port);
    assert_eq!(again, commands, "the same command lines");
    let (code, out, err) = run(&get, &[]);
    assert_eq!(
        (code, out.as_str()),
        (0, "world\n"),
        "after the restart: {err}"
    );
    let mut put_again = put.clone();
    put_again.truncate(put.len() - 2);
    let (code, _, err) = run(&put_again, &["after", "restart"]);
    assert_eq!(code, 0, "{err}");
    let mut get_again = get.clone();
    get_again.truncate(get.len() - 1);
    let (code, out, err) = run(&get_again, &["after"]);
    assert_eq!((code, out.as_str()), (0, "restart\n"), "{err}");
    dev.stop("INT", &client_ports);
}
