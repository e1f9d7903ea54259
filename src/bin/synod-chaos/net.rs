//! The chaos run's network: one network namespace per node, each joined by a veth pair
//! to a bridge in the host namespace (where the run's clients live), or plain loopback
//! where namespaces cannot be made. Partitions are routes inside a node's namespace
//! (`prohibit`: refused at once; `blackhole`: dropped silently), link faults take the
//! node's end of its veth down.
//!
//! Invariants: every route, link and namespace this module adds is recorded and
//! removed by [`Net::heal_all`] or by drop (the namespaces, and with them the veth
//! pairs, and the bridge); nothing outside names carrying the run's tag is touched.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;

/// Peer port of every node in its own namespace (shard s listens on PORT + s).
const PEER_PORT: u16 = 7000;
/// Client port of every node in its own namespace.
const CLIENT_PORT: u16 = 7100;

/// How one node is reached and where it runs.
#[derive(Clone, Debug)]
pub struct Place {
    /// The peer address other nodes use (`cluster.nodes`).
    pub peer: SocketAddr,
    /// The client address (`client.address`).
    pub client: SocketAddr,
    /// The namespace it runs in (`None`: the host's, on loopback).
    pub namespace: Option<String>,
}

/// A route that cuts traffic from one node to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cut {
    /// The node (index) whose namespace holds the route.
    pub from: usize,
    /// The node (index) it can no longer send to.
    pub to: usize,
    /// `blackhole` (silent) rather than `prohibit` (refused at once).
    pub silent: bool,
}

/// The run's network.
#[derive(Debug)]
pub struct Net {
    /// Each node's place, by index.
    pub places: Vec<Place>,
    /// Why the network is loopback (`None`: namespaces).
    pub loopback_reason: Option<String>,
    /// Whether `tc netem` works here (delay and loss faults).
    pub netem: bool,
    bridge: Option<String>,
    links: Vec<String>,
    cuts: BTreeSet<Cut>,
    down: BTreeSet<usize>,
}

/// Runs `ip ARGS`; the error names the command and says what `ip` said.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Net {
    /// Namespaces for `nodes` nodes named after `tag` (unique per run), or loopback
    /// when `loopback` is asked or namespaces cannot be made (the reason is kept).
    /// `shards`: ports each node needs on loopback.
    pub fn new(nodes: usize, tag: u32, shards: u16, loopback: bool) -> Result<Net, String> {
        let reason = if loopback {
            "--loopback".to_string()
        } else {
            let mut net = Net::empty();
            match net.namespaces(nodes, tag) {
                Ok(()) => {
                    net.netem = net.probe_netem();
                    return Ok(net);
                }
                Err(reason) => {
                    drop(net);
                    reason
                }
            }
        };
        let mut net = Net::empty();
        net.loopback_reason = Some(reason);
        for _ in 0..nodes {
            let peer = free_ports(shards)?;
            let client = free_ports(1)?;
            net.places.push(Place {
                peer: SocketAddr::from((Ipv4Addr::LOCALHOST, peer)),
                client: SocketAddr::from((Ipv4Addr::LOCALHOST, client)),
                namespace: None,
            });
        }
        Ok(net)
    }

    fn empty() -> Net {
        Net {
            places: Vec::new(),
            loopback_reason: None,
            netem: false,
            bridge: None,
            links: Vec::new(),
            cuts: BTreeSet::new(),
            down: BTreeSet::new(),
        }
    }

    /// Whether partitions and link faults are possible.
    pub fn isolated(&self) -> bool {
        self.loopback_reason.is_none()
    }

    fn namespaces(&mut self, nodes: usize, tag: u32) -> Result<(), String> {
        let tag = tag % 100_000;
        // 10.X.Y.0/24 from the tag, so that two runs at once use different subnets.
        let (x, y) = (100 + tag % 100, (tag / 100) % 250);
        let bridge = format!("scb{tag}");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.bridge = Some(bridge.clone());
        ip(&["addr", "add", &format!("10.{x}.{y}.254/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..nodes {
            let namespace = format!("synod-chaos-{tag}-{}", i + 1);
            let (host_end, node_end) = (format!("sc{tag}h{}", i + 1), format!("sc{tag}n{}", i + 1));
            ip(&["netns", "add", &namespace])?;
            self.places.push(Place {
                peer: format!("10.{x}.{y}.{}:{PEER_PORT}", i + 1)
                    .parse()
                    .map_err(|e| format!("address: {e}"))?,
                client: format!("10.{x}.{y}.{}:{CLIENT_PORT}", i + 1)
                    .parse()
                    .map_err(|e| format!("address: {e}"))?,
                namespace: Some(namespace.clone()),
            });
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", &node_end,
            ])?;
            self.links.push(node_end.clone());
            ip(&["link", "set", &node_end, "netns", &namespace])?;
            ip(&["link", "set", &host_end, "master", &bridge])?;
            ip(&["link", "set", &host_end, "up"])?;
            let address = format!("10.{x}.{y}.{}/24", i + 1);
            ip(&["-n", &namespace, "addr", "add", &address, "dev", &node_end])?;
            ip(&["-n", &namespace, "link", "set", &node_end, "up"])?;
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Adds a netem qdisc to a namespace's loopback and removes it: whether the kernel
    /// has netem.
    fn probe_netem(&self) -> bool {
        let Some(namespace) = self.places.first().and_then(|p| p.namespace.clone()) else {
            return false;
        };
        let added = ip(&["-n", &namespace, "link", "show", "lo"]).is_ok()
            && Command::new("ip")
                .args([
                    "netns", "exec", &namespace, "tc", "qdisc", "add", "dev", "lo",
                ])
                .args(["root", "netem", "delay", "1ms"])
                .output()
                .is_ok_and(|o| o.status.success());
        if added {
            let _removed = Command::new("ip")
                .args([
                    "netns", "exec", &namespace, "tc", "qdisc", "del", "dev", "lo",
                ])
                .args(["root"])
                .output();
        }
        added
    }

    /// The command prefix that runs a program in node `i`'s namespace (empty on
    /// loopback).
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        match &self.places[i].namespace {
            Some(namespace) => vec![
                "ip".to_string(),
                "netns".to_string(),
                "exec".to_string(),
                namespace.clone(),
            ],
            None => Vec::new(),
        }
    }

    /// Adds `cut` (no-op when present).
    pub fn cut(&mut self, cut: Cut) -> Result<(), String> {
        if !self.isolated() || self.cuts.contains(&cut) {
            return Ok(());
        }
        let namespace = self.places[cut.from].namespace.clone().unwrap_or_default();
        let to = format!("{}/32", self.places[cut.to].peer.ip());
        let kind = if cut.silent { "blackhole" } else { "prohibit" };
        ip(&["-n", &namespace, "route", "add", kind, &to])?;
        self.cuts.insert(cut);
        Ok(())
    }

    /// Removes `cut` (no-op when absent).
    pub fn uncut(&mut self, cut: Cut) -> Result<(), String> {
        if !self.cuts.remove(&cut) {
            return Ok(());
        }
        let namespace = self.places[cut.from].namespace.clone().unwrap_or_default();
        let to = format!("{}/32", self.places[cut.to].peer.ip());
        let kind = if cut.silent { "blackhole" } else { "prohibit" };
        ip(&["-n", &namespace, "route", "del", kind, &to])
    }

    /// Takes node `i`'s link down (`up` false) or up again.
    pub fn link(&mut self, i: usize, up: bool) -> Result<(), String> {
        if !self.isolated() || self.down.contains(&i) != up {
            return Ok(());
        }
        let namespace = self.places[i].namespace.clone().unwrap_or_default();
        let state = if up { "up" } else { "down" };
        ip(&["-n", &namespace, "link", "set", &self.links[i], state])?;
        if up {
            self.down.remove(&i);
        } else {
            self.down.insert(i);
        }
        Ok(())
    }

    /// Removes every cut and brings every link up; the first error, after trying all.
    pub fn heal_all(&mut self) -> Result<(), String> {
        let mut first = Ok(());
        let cuts: Vec<Cut> = self.cuts.iter().copied().collect();
        for cut in cuts {
            if let Err(e) = self.uncut(cut) {
                first = first.and(Err(e));
            }
        }
        let down: Vec<usize> = self.down.iter().copied().collect();
        for i in down {
            if let Err(e) = self.link(i, true) {
                first = first.and(Err(e));
            }
        }
        first
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        for place in &self.places {
            if let Some(namespace) = &place.namespace {
                if let Err(e) = ip(&["netns", "del", namespace]) {
                    eprintln!("synod-chaos: cleanup: {e}");
                }
            }
        }
        if let Some(bridge) = &self.bridge {
            if let Err(e) = ip(&["link", "del", bridge]) {
                eprintln!("synod-chaos: cleanup: {e}");
            }
        }
    }
}

/// A base port with `count` consecutive free ports on loopback (the first found by
/// the OS, checked upward).
fn free_ports(count: u16) -> Result<u16, String> {
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let base = listener
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
        if base.checked_add(count).is_none() {
            continue;
        }
        let rest: Result<Vec<TcpListener>, _> = (1..count)
            .map(|k| TcpListener::bind((Ipv4Addr::LOCALHOST, base + k)))
            .collect();
        if rest.is_ok() {
            return Ok(base);
        }
    }
    Err(format!("no {count} consecutive free ports on 127.0.0.1"))
}
