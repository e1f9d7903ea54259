//! Subcommands of the `synod` binary beyond the simulator and the WAL tools: `serve`
//! (a node) and `bench` (a local cluster under load), plus the content checks of
//! `synod wal verify|dump` (`wal_verify`). Shared helpers: flag parsing and the stderr
//! logger.

pub mod bench;
pub mod serve;
pub mod wal_verify;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use synod::paxos::NodeId;

/// The value after `name`, if present.
pub fn value<'a>(args: &'a [String], name: &str) -> Result<Option<&'a str>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .ok_or_else(|| format!("{name} needs a value")),
    }
}

/// The value after `name` parsed as `T`.
pub fn parsed<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>, String> {
    value(args, name)?
        .map(|v| {
            v.parse()
                .map_err(|_| format!("{name} {v}: not a valid value"))
        })
        .transpose()
}

/// Refuses flags not in `known` (flags that take a value are followed by one).
pub fn check_flags(args: &[String], with_value: &[&str], switches: &[&str]) -> Result<(), String> {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if with_value.contains(&arg) {
            i += 2;
        } else if switches.contains(&arg) {
            i += 1;
        } else {
            return Err(format!("unknown argument {arg:?}"));
        }
    }
    Ok(())
}

/// `1=127.0.0.1:7000,2=...` into node addresses.
pub fn parse_nodes(text: &str) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut nodes = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| format!("--nodes {item:?}: expected ID=HOST:PORT"))?;
        let id: u32 = id
            .parse()
            .map_err(|_| format!("--nodes {item:?}: node id is not a number"))?;
        let address: SocketAddr = address
            .parse()
            .map_err(|_| format!("--nodes {item:?}: not an IP:PORT address"))?;
        if nodes.insert(NodeId(id), address).is_some() {
            return Err(format!("--nodes: node {id} given twice"));
        }
    }
    Ok(nodes)
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // glommio reports at error level that it could not probe polled I/O on a
        // write-only file (harmless: polled I/O stays off), so its lines show only
        // when debugging.
        let glommio = metadata.target().starts_with("glommio");
        metadata.level() <= log::max_level()
            && (!glommio || log::max_level() >= log::LevelFilter::Debug)
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("synod {}: {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Sends log lines to stderr at the level of `SYNOD_LOG` (error, warn, info, debug;
/// default warn).
pub fn init_logging() {
    let level = match std::env::var("SYNOD_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("info") => log::LevelFilter::Info,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
