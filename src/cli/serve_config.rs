//! `synod serve --config FILE`: a node's settings in a TOML file, one section per
//! concern (`[node]`, `[cluster]`, `[runtime]`, `[auth]`, `[client]`, `[metrics]`,
//! `[checkpoint]`, `[wal]`, `[group]`); `tools/synod.example.toml` lists every key with
//! its default.
//!
//! Precedence, highest first: a flag given on the command line, the file,
//! `--test-timeouts`, the library's defaults (`Config::new`, `GroupConfig::new`,
//! `ServerConfig::new`). A flag replaces the file's value of the same concern:
//! `--key-file` or `--no-auth` replace `[auth]`'s choice, `--new` or `--existing`
//! replace `node.initial_state`, `--no-truncation` sets `wal.truncation = false`.
//!
//! Invariants: an unknown section or key is refused (a misspelt key never falls back
//! to a default unnoticed); every error names the key (`section.key`), and the file and
//! line when the TOML parser reports one; what the flags check at parse time (a
//! client bound above zero, a frame size of at least 64) is checked here too for the
//! file's values; `Config::validate` runs on the merged result. Nothing here reads the
//! filesystem but [`ServeFile::load`]: key files and the data directory are the
//! caller's.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use synod::api::{Config, InitialState};
use synod::paxos::NodeId;
use synod::runtime::truncation::TruncationPolicy;
use synod::server::ServerConfig;

use super::serve::ServeArgs;
use super::Bounded;

/// Smallest client frame size (`client.frame_size_max`, `--client-frame-size-max`): a
/// handshake frame must fit.
pub const CLIENT_FRAME_SIZE_MIN: usize = 64;

/// Largest configuration file read: far above any real one, so that a wrong path (a
/// device, a WAL segment) is refused instead of read whole.
const FILE_SIZE_MAX: u64 = 1 << 20;

/// The whole file. Every section and key is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeFile {
    /// `[node]`: this node.
    pub node: NodeSection,
    /// `[cluster]`: what every node of the cluster must agree on.
    pub cluster: ClusterSection,
    /// `[runtime]`: this node's threads.
    pub runtime: RuntimeSection,
    /// `[auth]`: the peer and client keys.
    pub auth: AuthSection,
    /// `[client]`: the client listener.
    pub client: ClientSection,
    /// `[metrics]`: the metrics endpoint.
    pub metrics: MetricsSection,
    /// `[checkpoint]`: when groups checkpoint their state machines.
    pub checkpoint: CheckpointSection,
    /// `[wal]`: the write-ahead log.
    pub wal: WalSection,
    /// `[group]`: the protocol settings of every group.
    pub group: GroupSection,
}

/// `[node]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's id, one of `cluster.nodes` (`--node`). Required.
    pub id: Option<u32>,
    /// The data directory (`--dir`). Required.
    pub dir: Option<PathBuf>,
    /// What an empty data directory means (`--new`, `--existing`).
    pub initial_state: Option<StartAs>,
    /// The state machine of every group (`--state-machine`).
    pub state_machine: Option<StateMachine>,
}

/// `node.initial_state`: `"new"` or `"existing"` (`InitialState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAs {
    /// `InitialState::New`.
    New,
    /// `InitialState::Existing`.
    Existing,
}

/// `node.state_machine`: `"kv"` or `"null"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateMachine {
    /// The built-in key-value store (`synod::kv`).
    #[default]
    Kv,
    /// Applies nothing, answers every read with empty bytes.
    Null,
}

/// `[cluster]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The cluster's id (`--cluster`, default 1).
    pub id: Option<u64>,
    /// Every node's base peer address, keyed by node id (`--nodes`). Required.
    pub nodes: Option<BTreeMap<String, SocketAddr>>,
    /// The initial voters of every group (`--voters`, default every node of
    /// `nodes`): the memberships chosen since are in the log.
    pub voters: Option<Vec<u32>>,
    /// Shards per node (`--shards`, default 1).
    pub shards: Option<u16>,
    /// Groups `0..groups` (`--groups`, default 1).
    pub groups: Option<u32>,
}

/// `[runtime]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Core of each shard's thread (`--cores`; default: not pinned).
    pub cores: Option<Vec<usize>>,
    /// Timer granularity in milliseconds (`--tick-ms`).
    pub tick_ms: Option<u64>,
}

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// The cluster's shared peer key (`--key-file`).
    pub peer_key_file: Option<PathBuf>,
    /// The client key (`--client-key-file`).
    pub client_key_file: Option<PathBuf>,
    /// Run without authentication (`--no-auth`).
    pub no_auth: Option<bool>,
}

/// `[client]`: the listener's bounds default to `ServerConfig::new`'s.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// Serve clients at this address (`--client`).
    pub address: Option<SocketAddr>,
    /// Every node's client address, keyed by node id (`--client-nodes`).
    pub nodes: Option<BTreeMap<String, SocketAddr>>,
    /// `--client-in-flight-max`.
    pub in_flight_max: Option<usize>,
    /// `--client-connections-max`.
    pub connections_max: Option<usize>,
    /// `--client-frame-size-max`.
    pub frame_size_max: Option<usize>,
    /// `--client-connections-per-source-max`.
    pub connections_per_source_max: Option<usize>,
    /// `--client-unauthenticated-max`.
    pub unauthenticated_max: Option<usize>,
    /// `--client-idle-timeout-s`.
    pub idle_timeout_s: Option<u64>,
}

/// `[metrics]`: the Prometheus endpoint (`server::metrics`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `GET /metrics` at this address: `IP:PORT`, or a port alone for
    /// 127.0.0.1 (`--metrics-listen`). No default: no endpoint.
    pub listen: Option<String>,
}

/// The address of `--metrics-listen` / `metrics.listen`: `IP:PORT`, or a bare port on
/// 127.0.0.1 (the endpoint is unauthenticated: loopback unless an address is given).
///
/// # Errors
///
/// Neither a port nor an `IP:PORT`.
pub fn metrics_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is neither a port nor IP:PORT"))
}

/// `[checkpoint]`: the policy of `CheckpointPolicy`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Every N instances applied (`--checkpoint-instances`; 0: not by instances).
    pub instances: Option<u64>,
    /// Every B bytes of values applied (`--checkpoint-bytes`; 0: not by bytes).
    pub bytes: Option<u64>,
    /// Every S seconds if anything was applied (`--checkpoint-interval-s`; 0: not by
    /// time).
    pub interval_s: Option<u64>,
}

/// `[wal]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalSection {
    /// Truncate the WAL below the groups' checkpoints (`--no-truncation` sets false).
    pub truncation: Option<bool>,
    /// WAL writes (each with its fdatasync) a shard runs at once, 1..=8
    /// (`Config::wal_writes_in_flight_max`).
    pub writes_in_flight_max: Option<usize>,
}

/// `[group]`: `GroupConfig`'s fields of the same names (durations in milliseconds).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    /// W: instances in flight per group.
    pub window_instances_max: Option<u64>,
    /// How far above its chosen watermark a follower accepts.
    pub accept_window_instances_max: Option<u64>,
    /// Client values coalesced into one instance.
    pub batch_values_max: Option<usize>,
    /// Bytes of client values coalesced into one instance.
    pub batch_size_max: Option<usize>,
    /// Largest single value accepted.
    pub value_size_max: Option<usize>,
    /// Most bytes one peer message may take.
    pub message_size_max: Option<usize>,
    /// Proposals waiting for a window slot before `Overloaded`.
    pub proposal_queue_count_max: Option<usize>,
    /// Bytes of proposals waiting before `Overloaded`.
    pub proposal_queue_size_max: Option<usize>,
    /// Base election timeout.
    pub election_timeout_ms: Option<u64>,
    /// Interval between leader heartbeats.
    pub heartbeat_interval_ms: Option<u64>,
    /// Lease a follower grants on each heartbeat.
    pub lease_ms: Option<u64>,
    /// Resend unanswered messages after this long.
    pub retransmit_ms: Option<u64>,
    /// Applied instances kept in memory (`--retention-instances-max`), or
    /// `"unbounded"`.
    pub retention_instances_max: Option<Retention<u64>>,
    /// Bytes of applied entries kept in memory (`--retention-size-max`), or
    /// `"unbounded"`.
    pub retention_size_max: Option<Retention<usize>>,
    /// Where each group's leader should sit: `"balanced"` (the default) or `"off"`.
    pub leader_placement: Option<Placement>,
}

/// `group.leader_placement`: `"balanced"` or `"off"` (`LeaderPlacement`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// `LeaderPlacement::Balanced`.
    Balanced,
    /// `LeaderPlacement::Off`.
    Off,
}

/// A retention bound: a whole number, or the string `"unbounded"` (the type's
/// maximum), as the flags take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention<T>(pub T);

impl<'de, T> Deserialize<'de> for Retention<T>
where
    T: Bounded + TryFrom<u64> + TryFrom<i64> + fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect<T>(PhantomData<T>);
        impl<T> Visitor<'_> for Expect<T>
        where
            T: Bounded + TryFrom<u64> + TryFrom<i64> + fmt::Display,
        {
            type Value = Retention<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number (at most {}) or \"unbounded\"", T::MAX)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                T::try_from(n)
                    .map(Retention)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                T::try_from(n)
                    .map(Retention)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                if text == "unbounded" {
                    Ok(Retention(T::MAX))
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(text), &self))
                }
            }
        }
        deserializer.deserialize_any(Expect(PhantomData))
    }
}

/// What `synod serve` starts from the merged settings: everything but what needs the
/// filesystem (reading the key files, probing an empty data directory).
#[derive(Debug)]
pub struct Plan {
    /// The node's configuration, validated (`Config::validate`), without keys and
    /// with `InitialState::New` (the caller decides from `initial_state`).
    pub config: Config,
    /// The client listener's, without its key, if clients are served.
    pub client: Option<ServerConfig>,
    /// The peer key's file (`None` with `no_auth`).
    pub peer_key_file: Option<PathBuf>,
    /// The client key's file (`None` with `no_auth` or without a listener).
    pub client_key_file: Option<PathBuf>,
    /// Where to serve the metrics (`None`: nowhere).
    pub metrics: Option<SocketAddr>,
    /// What an empty data directory means, if said.
    pub initial_state: Option<InitialState>,
    /// The state machine of every group.
    pub state_machine: StateMachine,
}

impl ServeFile {
    /// Reads and parses the file at `path` (at most 1 MiB).
    ///
    /// # Errors
    ///
    /// The file cannot be read, or does not parse: the message names the file, the
    /// line and the key.
    pub fn load(path: &Path) -> Result<ServeFile, String> {
        let name = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("--config {name}: {e}"))?
            .len();
        if size > FILE_SIZE_MAX {
            return Err(format!(
                "--config {name}: {size} bytes, more than a configuration file's {FILE_SIZE_MAX}"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("--config {name}: {e}"))?;
        ServeFile::parse(&text, &name.to_string())
    }

    /// Parses `text`, the file `name` (for messages).
    ///
    /// # Errors
    ///
    /// `name:LINE: [section] key = value: why` when the parser locates the fault,
    /// else `name: why`.
    pub fn parse(text: &str, name: &str) -> Result<ServeFile, String> {
        toml::from_str(text).map_err(|error: toml::de::Error| {
            let reason = error.message().trim_end();
            match error.span() {
                Some(span) => located(text, name, span.start, reason),
                None => format!("{name}: {reason}"),
            }
        })
    }

    /// Lets the flags given on the command line replace the file's values (module
    /// docs, "Precedence").
    pub fn overlay(&mut self, args: &ServeArgs) {
        fn set<T: Clone>(slot: &mut Option<T>, flag: Option<&T>) {
            if let Some(value) = flag {
                *slot = Some(value.clone());
            }
        }
        let ids = |nodes: &BTreeMap<NodeId, SocketAddr>| {
            nodes
                .iter()
                .map(|(id, address)| (id.0.to_string(), *address))
                .collect::<BTreeMap<_, _>>()
        };
        set(&mut self.node.id, args.node.as_ref());
        set(&mut self.node.dir, args.dir.as_ref());
        if args.new {
            self.node.initial_state = Some(StartAs::New);
        }
        if args.existing {
            self.node.initial_state = Some(StartAs::Existing);
        }
        match args.state_machine.as_deref() {
            Some("null") => self.node.state_machine = Some(StateMachine::Null),
            Some(_) => self.node.state_machine = Some(StateMachine::Kv),
            None => {}
        }
        set(&mut self.cluster.id, args.cluster.as_ref());
        set(
            &mut self.cluster.nodes,
            args.nodes.as_ref().map(ids).as_ref(),
        );
        set(&mut self.cluster.voters, args.voters.as_ref());
        set(&mut self.cluster.shards, args.shards.as_ref());
        set(&mut self.cluster.groups, args.groups.as_ref());
        if !args.cores.is_empty() {
            self.runtime.cores = Some(args.cores.clone());
        }
        set(&mut self.runtime.tick_ms, args.tick_ms.as_ref());
        if args.no_auth {
            self.auth = AuthSection {
                no_auth: Some(true),
                ..AuthSection::default()
            };
        }
        if let Some(path) = &args.key_file {
            self.auth.peer_key_file = Some(path.clone());
            self.auth.no_auth = None;
        }
        set(
            &mut self.auth.client_key_file,
            args.client_key_file.as_ref(),
        );
        if let Some(address) = args.metrics_listen {
            self.metrics.listen = Some(address.to_string());
        }
        let client = &mut self.client;
        set(&mut client.address, args.client.as_ref());
        set(
            &mut client.nodes,
            args.client_nodes.as_ref().map(ids).as_ref(),
        );
        set(
            &mut client.in_flight_max,
            args.client_in_flight_max.as_ref(),
        );
        set(
            &mut client.connections_max,
            args.client_connections_max.as_ref(),
        );
        set(
            &mut client.frame_size_max,
            args.client_frame_size_max.as_ref(),
        );
        set(
            &mut client.connections_per_source_max,
            args.client_connections_per_source_max.as_ref(),
        );
        set(
            &mut client.unauthenticated_max,
            args.client_unauthenticated_max.as_ref(),
        );
        set(
            &mut client.idle_timeout_s,
            args.client_idle_timeout_s.as_ref(),
        );
        set(
            &mut self.checkpoint.instances,
            args.checkpoint_instances.as_ref(),
        );
        set(&mut self.checkpoint.bytes, args.checkpoint_bytes.as_ref());
        set(
            &mut self.checkpoint.interval_s,
            args.checkpoint_interval_s.as_ref(),
        );
        if args.no_truncation {
            self.wal.truncation = Some(false);
        }
        let group = &mut self.group;
        if let Some(n) = args.retention_instances_max {
            group.retention_instances_max = Some(Retention(n));
        }
        if let Some(n) = args.retention_size_max {
            group.retention_size_max = Some(Retention(n));
        }
        match args.leader_placement.as_deref() {
            Some("off") => group.leader_placement = Some(Placement::Off),
            Some(_) => group.leader_placement = Some(Placement::Balanced),
            None => {}
        }
    }

    /// The node's configuration and the rest of what `synod serve` starts, checked
    /// (module docs, "Invariants"). `test_timeouts`: start from the test timeouts
    /// (`--test-timeouts`) instead of the defaults.
    ///
    /// # Errors
    ///
    /// The first missing or invalid key, named `section.key`, with its value and why.
    pub fn plan(&self, test_timeouts: bool) -> Result<Plan, String> {
        let missing = |key: &str, flag: &str| {
            format!("{key} is missing: set it in the configuration file or give {flag}")
        };
        let node = self.node.id.ok_or_else(|| missing("node.id", "--node"))?;
        let dir = self
            .node
            .dir
            .clone()
            .ok_or_else(|| missing("node.dir", "--dir"))?;
        let nodes = node_ids(
            "cluster.nodes",
            self.cluster
                .nodes
                .as_ref()
                .ok_or_else(|| missing("cluster.nodes", "--nodes"))?,
        )?;
        let mut config = Config::new(NodeId(node), self.cluster.id.unwrap_or(1), nodes, dir);
        if let Some(voters) = &self.cluster.voters {
            config.voters = voters.iter().copied().map(NodeId).collect();
        }
        config.shards = self.cluster.shards.unwrap_or(1);
        config.group_count = self.cluster.groups.unwrap_or(1);
        config.cores = self.runtime.cores.clone().unwrap_or_default();
        if test_timeouts {
            set_test_timeouts(&mut config);
        }
        if let Some(ms) = self.runtime.tick_ms {
            config.tick = Duration::from_millis(ms);
        }
        self.apply_policies(&mut config);
        self.group.apply(&mut config);
        config
            .validate()
            .map_err(|e| format!("invalid configuration: {e}"))?;
        let (peer_key_file, client_key_file) = self.keys()?;
        let client = self.client.plan(&config)?;
        let metrics = match &self.metrics.listen {
            Some(text) => Some(metrics_address(text).map_err(|e| format!("metrics.listen: {e}"))?),
            None => None,
        };
        Ok(Plan {
            metrics,
            client_key_file: client.as_ref().and(client_key_file),
            client,
            config,
            peer_key_file,
            initial_state: self.node.initial_state.map(|start| match start {
                StartAs::New => InitialState::New,
                StartAs::Existing => InitialState::Existing,
            }),
            state_machine: self.node.state_machine.unwrap_or_default(),
        })
    }

    /// `[checkpoint]` and `[wal]` into `config`.
    fn apply_policies(&self, config: &mut Config) {
        if let Some(n) = self.checkpoint.instances {
            config.checkpoint.instance_count = n;
        }
        if let Some(b) = self.checkpoint.bytes {
            config.checkpoint.applied_size = b;
        }
        if let Some(s) = self.checkpoint.interval_s {
            config.checkpoint.interval_ns = s.saturating_mul(1_000_000_000);
        }
        if self.wal.truncation == Some(false) {
            config.truncation = TruncationPolicy::OFF;
        }
        if let Some(n) = self.wal.writes_in_flight_max {
            config.wal_writes_in_flight_max = n;
        }
    }

    /// The peer and client key files, as `[auth]` (after the flags) says: a peer key
    /// unless `no_auth`, never both; a client listener needs its key or `no_auth`.
    fn keys(&self) -> Result<(Option<PathBuf>, Option<PathBuf>), String> {
        let auth = &self.auth;
        let no_auth = auth.no_auth.unwrap_or(false);
        let conflict = |key: &str| {
            format!("auth.no_auth = true conflicts with {key} (--no-auth runs without keys)")
        };
        if no_auth {
            if auth.peer_key_file.is_some() {
                return Err(conflict("auth.peer_key_file"));
            }
            if auth.client_key_file.is_some() {
                return Err(conflict("auth.client_key_file"));
            }
            return Ok((None, None));
        }
        if auth.peer_key_file.is_none() {
            return Err(
                "auth.peer_key_file is missing: set it (or auth.no_auth = true) in \
                 the configuration file, or give --key-file (or --no-auth)"
                    .to_string(),
            );
        }
        if self.client.address.is_none() && auth.client_key_file.is_some() {
            return Err(
                "auth.client_key_file is set but no client listener is: set \
                 client.address (or give --client)"
                    .to_string(),
            );
        }
        if self.client.address.is_some() && auth.client_key_file.is_none() {
            return Err(
                "client.address needs auth.client_key_file (or auth.no_auth = \
                 true): set it in the configuration file or give --client-key-file"
                    .to_string(),
            );
        }
        Ok((auth.peer_key_file.clone(), auth.client_key_file.clone()))
    }
}

impl GroupSection {
    /// The keys that are set, into `config.group`.
    fn apply(&self, config: &mut Config) {
        let group = &mut config.group;
        let ms = |ms: u64| ms.saturating_mul(1_000_000);
        macro_rules! copy {
            ($($field:ident),*) => {$(
                if let Some(value) = self.$field {
                    group.$field = value;
                }
            )*};
        }
        copy!(
            window_instances_max,
            accept_window_instances_max,
            batch_values_max,
            batch_size_max,
            value_size_max,
            message_size_max,
            proposal_queue_count_max,
            proposal_queue_size_max
        );
        if let Some(t) = self.election_timeout_ms {
            group.election_timeout_ns = ms(t);
        }
        if let Some(t) = self.heartbeat_interval_ms {
            group.heartbeat_interval_ns = ms(t);
        }
        if let Some(t) = self.lease_ms {
            group.lease_ns = ms(t);
        }
        if let Some(t) = self.retransmit_ms {
            group.retransmit_ns = ms(t);
        }
        if let Some(Retention(n)) = self.retention_instances_max {
            group.retention_instances_max = n;
        }
        if let Some(Retention(n)) = self.retention_size_max {
            group.retention_size_max = n;
        }
        if let Some(placement) = self.leader_placement {
            group.leader_placement = match placement {
                Placement::Balanced => synod::paxos::LeaderPlacement::Balanced,
                Placement::Off => synod::paxos::LeaderPlacement::Off,
            };
        }
    }
}

impl ClientSection {
    /// The client listener's settings (without its key) if `address` is set; the keys
    /// checked as their flags are.
    fn plan(&self, config: &Config) -> Result<Option<ServerConfig>, String> {
        let Some(address) = self.address else {
            return Ok(None);
        };
        check_client_address(address, config)?;
        let ids = config.nodes.keys().copied().collect();
        let mut server = ServerConfig::new(address, config.cluster, config.node, ids);
        let advertised = match &self.nodes {
            Some(table) => node_ids("client.nodes", table)?,
            None => BTreeMap::new(),
        };
        for (node, advertised) in advertised {
            if !config.nodes.contains_key(&node) {
                return Err(format!(
                    "client.nodes: node {} is not in cluster.nodes",
                    node.0
                ));
            }
            server.addresses.insert(node, advertised.to_string());
        }
        let positive = |key: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(format!("{key} = 0: must be above zero")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        server.in_flight_max = positive(
            "client.in_flight_max",
            self.in_flight_max,
            server.in_flight_max,
        )?;
        server.connections_max = positive(
            "client.connections_max",
            self.connections_max,
            server.connections_max,
        )?;
        server.connections_per_source_max = positive(
            "client.connections_per_source_max",
            self.connections_per_source_max,
            server.connections_per_source_max,
        )?;
        server.unauthenticated_max = positive(
            "client.unauthenticated_max",
            self.unauthenticated_max,
            server.unauthenticated_max,
        )?;
        match self.frame_size_max {
            Some(size) if size < CLIENT_FRAME_SIZE_MIN => {
                return Err(format!(
                    "client.frame_size_max = {size}: must be at least {CLIENT_FRAME_SIZE_MIN}"
                ))
            }
            Some(size) => server.frame_size_max = size,
            None => {}
        }
        match self.idle_timeout_s {
            Some(0) => return Err("client.idle_timeout_s = 0: must be above zero".to_string()),
            Some(s) => server.idle_timeout = Duration::from_secs(s),
            None => {}
        }
        Ok(Some(server))
    }
}

/// The timeouts of `--test-timeouts` (its help lists them).
fn set_test_timeouts(config: &mut Config) {
    config.group.election_timeout_ns = 300_000_000;
    config.group.heartbeat_interval_ns = 20_000_000;
    config.group.lease_ns = 150_000_000;
    config.group.retransmit_ns = 50_000_000;
    config.tick = Duration::from_millis(2);
    config.segment_size = 8 << 20;
    config.wal_buffer_size_max = 2 << 20;
    config.drain_timeout = Duration::from_millis(500);
}

/// The client listener's address must be outside every node's shard ports
/// (conservative where an IP is unspecified: 0.0.0.0 takes the port on every IP).
fn check_client_address(address: SocketAddr, config: &Config) -> Result<(), String> {
    for (node, base) in &config.nodes {
        let ports = u32::from(base.port())..u32::from(base.port()) + u32::from(config.shards);
        let same_ip = address.ip() == base.ip()
            || address.ip().is_unspecified()
            || base.ip().is_unspecified();
        if same_ip && ports.contains(&u32::from(address.port())) {
            return Err(format!(
                "client address {address} (--client, client.address) is inside node {}'s \
                 shard ports {}:{}..{} (shard s listens on {base} + s, {} shards)",
                node.0,
                base.ip(),
                ports.start,
                ports.end,
                config.shards
            ));
        }
    }
    Ok(())
}

/// A table keyed by node id (`"1" = "10.0.0.1:7000"`) with its keys parsed.
fn node_ids(
    key: &str,
    table: &BTreeMap<String, SocketAddr>,
) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut nodes = BTreeMap::new();
    for (id, address) in table {
        let id: u32 = id
            .parse()
            .map_err(|_| format!("{key}: key {id:?} is not a node id (a whole number)"))?;
        if nodes.insert(NodeId(id), *address).is_some() {
            return Err(format!("{key}: node {id} given twice"));
        }
    }
    if nodes.is_empty() {
        return Err(format!(
            "{key}: no node (expected \"ID\" = \"IP:PORT\" entries)"
        ));
    }
    Ok(nodes)
}

/// `name:LINE: [section] key = value: reason` for the fault at byte `at` of `text`.
fn located(text: &str, name: &str, at: usize, reason: &str) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line_number = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_number - 1).unwrap_or("").trim();
    let is_header = |l: &str| l.starts_with('[') && !l.contains('=');
    // The section the line belongs to: the last header above it.
    let above = before.rfind('\n').map_or("", |end| &before[..end]);
    let section = above
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| is_header(l))
        .unwrap_or("");
    let context = match (section, line) {
        (_, "") => String::new(),
        (_, line) if is_header(line) => format!("{line}: "),
        ("", line) => format!("{line}: "),
        (section, line) => format!("{section} {line}: "),
    };
    format!("{name}:{line_number}: {context}{reason}")
}

#[cfg(test)]
mod tests;
