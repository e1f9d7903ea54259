//! The nemesis: one fault or heal every few seconds, chosen by a seeded PRNG, on the
//! run's nodes and network. Faults: SIGKILL (healed by a restart), SIGSTOP (SIGCONT),
//! a graceful restart (SIGTERM, then start: no lasting fault), partitions by routes
//! (one node isolated both ways or one way, a minority split from the majority;
//! `prohibit` or `blackhole`), a link down, a full disk (the node's tmpfs filled; its
//! node may stop on ENOSPC, and is restarted when the disk is freed).
//!
//! Invariants: the nodes under a lasting fault are never more than a minority
//! ((n - 1) / 2), so that the cluster stays available for the availability figures;
//! every event is recorded with its time; [`Nemesis::heal_all`] ends every fault.

use std::collections::BTreeSet;
use std::time::Duration;

use synod::prng::Prng;
use synod::runtime::clock::MonotonicClock;

use crate::net::{Cut, Net};
use crate::node::Node;

/// One event of the run.
#[derive(Clone, Debug)]
pub struct Event {
    /// When it happened (the run's clock).
    pub at_ns: u64,
    /// Its kind (`kill`, `restart`, `pause`, ...).
    pub kind: &'static str,
    /// What exactly.
    pub detail: String,
}

/// A lasting fault, until healed.
#[derive(Clone, Debug)]
enum Fault {
    Killed(usize),
    Paused(usize),
    Cuts(Vec<Cut>, Vec<usize>),
    LinkDown(usize),
    DiskFull(usize),
}

impl Fault {
    fn nodes(&self) -> Vec<usize> {
        match self {
            Fault::Killed(i) | Fault::Paused(i) | Fault::LinkDown(i) | Fault::DiskFull(i) => {
                vec![*i]
            }
            Fault::Cuts(_, nodes) => nodes.clone(),
        }
    }
}

/// The nemesis and the cluster it works on.
pub struct Nemesis {
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    /// The network.
    pub net: Net,
    prng: Prng,
    clock: MonotonicClock,
    faults: Vec<Fault>,
    /// Every event so far.
    pub events: Vec<Event>,
    /// Exits no fault explains: (node index, status text).
    pub unexpected_exits: Vec<(usize, String)>,
    disk_max_size: u64,
}

impl Nemesis {
    /// A nemesis on `nodes` and `net`, seeded.
    pub fn new(
        nodes: Vec<Node>,
        net: Net,
        seed: u64,
        clock: MonotonicClock,
        disk_mib: u64,
    ) -> Nemesis {
        Nemesis {
            nodes,
            net,
            prng: Prng::new(seed),
            clock,
            faults: Vec::new(),
            events: Vec::new(),
            unexpected_exits: Vec::new(),
            disk_max_size: disk_mib << 20,
        }
    }

    fn record(&mut self, kind: &'static str, detail: String) {
        let at_ns = self.clock.now().0;
        println!("[{:7.1} s] {kind:<13} {detail}", at_ns as f64 / 1e9);
        self.events.push(Event {
            at_ns,
            kind,
            detail,
        });
    }

    fn faulty(&self) -> BTreeSet<usize> {
        self.faults.iter().flat_map(Fault::nodes).collect()
    }

    /// Notes processes that ended with no fault to explain it (restarted by the next
    /// heal) and disk faults whose node stopped (expected).
    pub fn watch(&mut self) {
        for i in 0..self.nodes.len() {
            let killed = self
                .faults
                .iter()
                .any(|f| matches!(f, Fault::Killed(k) if *k == i));
            if killed {
                continue;
            }
            let full = self
                .faults
                .iter()
                .any(|f| matches!(f, Fault::DiskFull(k) if *k == i));
            if let Some(status) = self.nodes[i].exited() {
                if full {
                    self.record(
                        "disk-stop",
                        format!("node {} exited on its full disk ({status})", i + 1),
                    );
                } else {
                    self.unexpected_exits.push((i, status.to_string()));
                    // A node that cannot start (its disk full of log) must not be
                    // restarted in a tight loop: it stays down for a pause first.
                    std::thread::sleep(Duration::from_millis(500));
                    self.record(
                        "exit",
                        format!("node {} exited by itself ({status}); restarting", i + 1),
                    );
                    if let Err(e) = self.nodes[i].start() {
                        self.record("error", e);
                    }
                }
            }
        }
    }

    /// One step: heals a fault or injects one (a graceful restart at times).
    pub fn step(&mut self) {
        self.watch();
        let n = self.nodes.len();
        let minority = (n - 1) / 2;
        let faulty = self.faulty();
        let heal = !self.faults.is_empty() && (faulty.len() >= minority || self.prng.coin());
        if heal {
            let index = self.prng.index(self.faults.len());
            let fault = self.faults.swap_remove(index);
            self.heal(fault);
            return;
        }
        let healthy: Vec<usize> = (0..n).filter(|i| !faulty.contains(i)).collect();
        let room = minority - faulty.len();
        let target = healthy[self.prng.index(healthy.len())];
        let mut kinds: Vec<&str> = vec!["kill", "pause", "term"];
        if self.net.isolated() {
            kinds.extend(["isolate", "isolate-one-way", "link-down"]);
            if room >= 2 {
                kinds.push("split");
            }
        }
        if self.nodes[target].mounted() {
            kinds.push("disk-full");
        }
        let kind = kinds[self.prng.index(kinds.len())];
        if let Err(e) = self.inject(kind, target, &healthy, room) {
            self.record("error", e);
        }
    }

    fn inject(
        &mut self,
        kind: &str,
        target: usize,
        healthy: &[usize],
        room: usize,
    ) -> Result<(), String> {
        let name = target + 1;
        match kind {
            "kill" => {
                self.nodes[target].kill();
                self.faults.push(Fault::Killed(target));
                self.record("kill", format!("node {name} (SIGKILL)"));
            }
            "pause" => {
                self.nodes[target].pause(true)?;
                self.faults.push(Fault::Paused(target));
                self.record("pause", format!("node {name} (SIGSTOP)"));
            }
            "term" => {
                self.record("term", format!("node {name} (SIGTERM, then start)"));
                let status = self.nodes[target].terminate(Duration::from_secs(10));
                if status.is_none_or(|s| !s.success()) {
                    let said = status.map_or("did not exit in 10 s; killed".to_string(), |s| {
                        s.to_string()
                    });
                    self.unexpected_exits
                        .push((target, format!("after SIGTERM: {said}")));
                    self.record("error", format!("node {name} after SIGTERM: {said}"));
                }
                self.nodes[target].start()?;
            }
            "disk-full" => {
                let size = self.nodes[target].fill_disk(self.disk_max_size)?;
                self.faults.push(Fault::DiskFull(target));
                self.record(
                    "disk-full",
                    format!("node {name} ({} MiB filler)", size >> 20),
                );
            }
            "link-down" => {
                self.net.link(target, false)?;
                self.faults.push(Fault::LinkDown(target));
                self.record("link-down", format!("node {name}"));
            }
            _ => self.partition(kind, target, healthy, room)?,
        }
        Ok(())
    }

    fn partition(
        &mut self,
        kind: &str,
        target: usize,
        healthy: &[usize],
        room: usize,
    ) -> Result<(), String> {
        let n = self.nodes.len();
        let silent = self.prng.coin();
        let mut side = vec![target];
        if kind == "split" {
            let others: Vec<usize> = healthy.iter().copied().filter(|&i| i != target).collect();
            let more = (room - 1).min(others.len());
            for _ in 0..more {
                let pick = others[self.prng.index(others.len())];
                if !side.contains(&pick) {
                    side.push(pick);
                }
            }
            side.sort_unstable();
        }
        let mut cuts = Vec::new();
        for &a in &side {
            for b in (0..n).filter(|b| !side.contains(b)) {
                cuts.push(Cut {
                    from: a,
                    to: b,
                    silent,
                });
                if kind != "isolate-one-way" {
                    cuts.push(Cut {
                        from: b,
                        to: a,
                        silent,
                    });
                }
            }
        }
        for cut in &cuts {
            self.net.cut(*cut)?;
        }
        let names: Vec<String> = side.iter().map(|i| (i + 1).to_string()).collect();
        let how = if silent { "blackhole" } else { "prohibit" };
        let kind = match kind {
            "split" => "split",
            "isolate-one-way" => "isolate-1way",
            _ => "isolate",
        };
        self.record(
            kind,
            format!("nodes {{{}}} from the others ({how})", names.join(",")),
        );
        self.faults.push(Fault::Cuts(cuts, side));
        Ok(())
    }

    fn heal(&mut self, fault: Fault) {
        let result = match fault {
            Fault::Killed(i) => {
                self.record("restart", format!("node {}", i + 1));
                self.nodes[i].start()
            }
            Fault::Paused(i) => {
                self.record("resume", format!("node {} (SIGCONT)", i + 1));
                self.nodes[i].pause(false)
            }
            Fault::LinkDown(i) => {
                self.record("link-up", format!("node {}", i + 1));
                self.net.link(i, true)
            }
            Fault::DiskFull(i) => {
                self.record("disk-free", format!("node {}", i + 1));
                self.nodes[i]
                    .free_disk()
                    .and_then(|()| self.nodes[i].start())
            }
            Fault::Cuts(cuts, side) => {
                let names: Vec<String> = side.iter().map(|i| (i + 1).to_string()).collect();
                self.record("heal", format!("routes of nodes {{{}}}", names.join(",")));
                cuts.iter().try_for_each(|cut| self.net.uncut(*cut))
            }
        };
        if let Err(e) = result {
            self.record("error", e);
        }
    }

    /// Ends every fault (and anything left over: links, routes, a stopped or dead
    /// process) and records it.
    pub fn heal_all(&mut self) {
        self.watch();
        while let Some(fault) = self.faults.pop() {
            self.heal(fault);
        }
        if let Err(e) = self.net.heal_all() {
            self.record("error", e);
        }
        for i in 0..self.nodes.len() {
            if let Err(e) = self.nodes[i].start() {
                self.record("error", e);
            }
        }
        self.record("heal-all", "every fault ended".to_string());
    }

    /// A pause before the next step: `interval` ± half of it.
    pub fn next_pause(&mut self, interval: Duration) -> Duration {
        let ms = interval.as_millis() as u64;
        Duration::from_millis(self.prng.range(ms / 2, ms + ms / 2 + 1))
    }
}
