//! A node's configuration: who it is, where its peers listen, where its data lives,
//! and the limits of every queue. Validated once, with messages that name the field,
//! its value and why it is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::paxos::{GroupConfig, GroupId, Membership, NodeId};
use crate::runtime::driver::ShardPlan;
use crate::runtime::net::{NetConfig, PENDING_MAX_DEFAULT, PENDING_PER_SOURCE_MAX_DEFAULT};
use crate::runtime::shard_of;
use crate::runtime::{CheckpointPolicy, ShardConfig, TransferPolicy, TruncationPolicy};
use crate::transport::auth::AuthKey;
use crate::transport::DecodeLimits;
use crate::wal::segment::{SegmentGeometry, SEGMENT_HEADER_SIZE, SEGMENT_SIZE_MIN};
use crate::wal::store::StoreConfig;
use crate::wal::BLOCK_SIZE;

/// What an empty data directory means (one without a node's identity: see
/// [`crate::api::data_dir_claimed`]). A directory that holds state is recovered either
/// way. Choose per start, not once for all: `New` on a member whose disk was wiped
/// would let it vote with forgotten promises; `Existing` on every member of a new
/// cluster would leave no voter to re-learn from. `synod serve` makes the operator say
/// which (`--new`, `--existing`) whenever the directory is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialState {
    /// The node is new in a new cluster: an empty data directory is a fresh start.
    New,
    /// The node is an existing member whose data may have been lost: an empty data
    /// directory means lost state, and the node rejoins as a non-voting learner until
    /// it has re-learned from a quorum (never vote with forgotten promises).
    Existing,
}

/// An invalid configuration: which field, which value, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The field (dotted path for nested fields).
    pub field: &'static str,
    /// Its value, rendered.
    pub value: String,
    /// Why it is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Everything a node needs. Build with [`Config::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub node: NodeId,
    /// The cluster: checked on every peer connection.
    pub cluster: u64,
    /// Every node of the cluster (this one included) and its base address. Shard `s`
    /// of a node listens on the base port + `s` (one listening address per shard, so
    /// a peer's connection lands directly on the core that owns its groups).
    /// The address book: this node links to every node in it from the start, and a
    /// handshake with a peer whose address book differs is refused, so a node to be
    /// added by a membership change must be listed here on every node first.
    pub nodes: BTreeMap<NodeId, SocketAddr>,
    /// The initial voters of every group (a subset of `nodes`; all of them by
    /// default), the same on every node. A node outside them hosts every group as a
    /// non-voter until a membership change adds it (`NodeHandle::change_membership`);
    /// the memberships chosen since are in the log, not here.
    pub voters: BTreeSet<NodeId>,
    /// Where the WAL segments and the node's identity live.
    pub data_dir: PathBuf,
    /// Shards (cores) of this node; every node of the cluster must have the same
    /// number (a group lives on the same shard index everywhere).
    pub shards: u16,
    /// Core of each shard (`cores[s]` for shard `s`); empty: threads are not pinned
    /// (useful when several nodes share a machine in tests).
    pub cores: Vec<usize>,
    /// Groups `0 .. group_count`, each replicated by every node of `nodes`.
    pub group_count: u32,
    /// Protocol settings for every group (`node`, `group`, `membership` and `seed`
    /// are set per group by the node).
    pub group: GroupConfig,
    /// Size of one WAL segment file in bytes (a multiple of 4096).
    pub segment_size: u64,
    /// Bytes one WAL write (one batch) may hold: a multiple of 4096; the largest
    /// record must fit.
    pub wal_buffer_size_max: usize,
    /// Zero-filled segments kept ready ahead of the one being written.
    pub spare_segments: usize,
    /// WAL writes (each with its fdatasync) a shard runs at once, in
    /// `1..=WRITES_IN_FLIGHT_MAX_LIMIT` (8): the next batch is written while the
    /// previous one syncs. A batch is durable once it and every earlier one are.
    pub wal_writes_in_flight_max: usize,
    /// Bytes of records waiting for the WAL beyond which a shard refuses new
    /// proposals (`Overloaded`) and peer messages (dropped, retransmitted later).
    pub wal_pending_size_max: usize,
    /// Messages waiting for durability beyond which peer messages are refused.
    pub held_count_max: usize,
    /// Bytes queued toward one peer beyond which messages to it are dropped.
    pub peer_queue_size_max: usize,
    /// Received messages not yet processed beyond which links stop reading.
    pub inbound_count_max: usize,
    /// Bounds on what a peer's frame may contain.
    pub wire_limits: DecodeLimits,
    /// Requests queued toward one shard beyond which `Overloaded` is returned.
    pub mailbox_capacity: usize,
    /// Timer granularity of a shard: a timer sleep lasts at least this long (I/O still
    /// wakes the loop at once), so heartbeats of groups due within one tick leave in
    /// one frame per peer and timers fire up to one tick late. At most a quarter of
    /// `group.heartbeat_interval_ns`. Idle CPU is set by it: at 1,000 idle groups per
    /// node the loop wakes ~500 times/s at 2 ms and ~120 at 10 ms (`tuning.md`,
    /// "Runtime: idle groups").
    pub tick: Duration,
    /// How long a shutdown waits for proposals in flight.
    pub drain_timeout: Duration,
    /// First and longest wait between connection attempts to a peer.
    pub connect_backoff: (Duration, Duration),
    /// A peer must complete its handshake within this.
    pub handshake_timeout: Duration,
    /// The cluster's shared peer key: every node of the cluster must hold the same
    /// (README, "Security"). `None` runs without peer authentication (a warning is
    /// logged at start); a key on some nodes only is refused by the others.
    pub peer_key: Option<AuthKey>,
    /// What an empty data directory means.
    pub initial_state: InitialState,
    /// When each group takes a local checkpoint of its state machine (in
    /// `<data_dir>/checkpoints/`), so that a restart re-applies only the log after it
    /// (`tuning.md`, "Checkpoints"). `CheckpointPolicy::OFF` takes none.
    pub checkpoint: CheckpointPolicy,
    /// The limits of checkpoint transfers: a group whose log can no longer catch a
    /// peer up streams its durable checkpoint instead, and a group behind installs a
    /// peer's in process (`tuning.md`, "Checkpoint transfer").
    pub transfer: TransferPolicy,
    /// When each shard truncates its WAL below its groups' durable checkpoints
    /// (`tuning.md`, "WAL truncation"). `TruncationPolicy::OFF` keeps every record.
    pub truncation: TruncationPolicy,
    /// UNSAFE, for benchmarks only: write the WAL without fdatasync, so an
    /// acknowledged value can be lost by a power failure (or, with several replicas on
    /// one machine, by any crash of it). Shows the CPU and network limit.
    pub unsafe_skip_fsync: bool,
}

impl Config {
    /// A configuration with the defaults of `tuning.md`: one shard pinned to core 0,
    /// one group, 64 MiB segments, 1 MiB... see each field.
    #[must_use]
    pub fn new(
        node: NodeId,
        cluster: u64,
        nodes: BTreeMap<NodeId, SocketAddr>,
        data_dir: PathBuf,
    ) -> Config {
        let membership = Membership::new(nodes.keys().copied().collect());
        let group = GroupConfig::new(node, GroupId(0), membership);
        let voters = nodes.keys().copied().collect();
        Config {
            node,
            cluster,
            voters,
            nodes,
            data_dir,
            shards: 1,
            cores: vec![0],
            group_count: 1,
            group,
            segment_size: 64 << 20,
            wal_buffer_size_max: 4 << 20,
            spare_segments: 2,
            wal_writes_in_flight_max: 2,
            wal_pending_size_max: 16 << 20,
            held_count_max: 65_536,
            peer_queue_size_max: 64 << 20,
            inbound_count_max: 65_536,
            wire_limits: DecodeLimits::default(),
            mailbox_capacity: 65_536,
            tick: Duration::from_millis(10),
            drain_timeout: Duration::from_secs(2),
            connect_backoff: (Duration::from_millis(20), Duration::from_secs(1)),
            handshake_timeout: Duration::from_secs(5),
            peer_key: None,
            initial_state: InitialState::New,
            checkpoint: CheckpointPolicy::default(),
            transfer: TransferPolicy::default(),
            truncation: TruncationPolicy::default(),
            unsafe_skip_fsync: false,
        }
    }

    /// Checks every field and the relations between them.
    ///
    /// # Errors
    ///
    /// The first invalid field, its value and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_nodes()?;
        check(
            !self.voters.is_empty() && self.voters.iter().all(|v| self.nodes.contains_key(v)),
            "voters",
            format!("{:?}", self.voters.iter().map(|v| v.0).collect::<Vec<_>>()),
            "must be a non-empty subset of `nodes`".into(),
        )?;
        check(
            self.group_count >= 1,
            "group_count",
            self.group_count.to_string(),
            "must be at least 1".into(),
        )?;
        self.group.validate().map_err(|reason| ConfigError {
            field: "group",
            value: "(see reason)".into(),
            reason,
        })?;
        self.validate_wal()?;
        self.validate_limits()
    }

    /// The nodes, their shard ports and the cores (part of `validate`).
    fn validate_nodes(&self) -> Result<(), ConfigError> {
        check(
            self.nodes.contains_key(&self.node),
            "node",
            self.node.0.to_string(),
            "must be one of `nodes`".into(),
        )?;
        check(
            self.nodes.len() <= self.wire_limits.voters_max,
            "nodes",
            format!("{} nodes", self.nodes.len()),
            format!(
                "at most wire_limits.voters_max = {}",
                self.wire_limits.voters_max
            ),
        )?;
        check(
            self.shards >= 1,
            "shards",
            self.shards.to_string(),
            "must be at least 1".into(),
        )?;
        for (node, address) in &self.nodes {
            check(
                u32::from(address.port()) + u32::from(self.shards) - 1 <= 65_535
                    && address.port() != 0,
                "nodes",
                format!("node {} at {address}", node.0),
                format!(
                    "shard s listens on port + s: ports {}..{} must be valid and non-zero",
                    address.port(),
                    u32::from(address.port()) + u32::from(self.shards)
                ),
            )?;
        }
        let shards = u32::from(self.shards);
        let ranges: Vec<(NodeId, SocketAddr, u32)> = self
            .nodes
            .iter()
            .map(|(node, address)| (*node, *address, u32::from(address.port())))
            .collect();
        for (i, (node, address, base)) in ranges.iter().enumerate() {
            for (other, other_address, other_base) in &ranges[i + 1..] {
                check(
                    address.ip() != other_address.ip()
                        || base + shards <= *other_base
                        || other_base + shards <= *base,
                    "nodes",
                    format!(
                        "node {} at {address} (shard ports {base}..{}) and node {} at \
                         {other_address} (shard ports {other_base}..{})",
                        node.0,
                        base + shards,
                        other.0,
                        other_base + shards
                    ),
                    format!(
                        "shard s of a node listens on its port + s ({} shards): the \
                         port ranges of two nodes on one IP must not overlap",
                        self.shards
                    ),
                )?;
            }
        }
        check(
            self.cores.is_empty() || self.cores.len() >= usize::from(self.shards),
            "cores",
            format!("{:?}", self.cores),
            format!(
                "one core per shard ({} shards), or empty to leave threads unpinned",
                self.shards
            ),
        )?;
        Ok(())
    }

    /// The WAL's buffer, record and segment sizes (part of `validate`).
    fn validate_wal(&self) -> Result<(), ConfigError> {
        let block = BLOCK_SIZE as u64;
        check(
            self.wal_buffer_size_max >= BLOCK_SIZE
                && self.wal_buffer_size_max % BLOCK_SIZE == 0
                && self.wal_buffer_size_max <= crate::wal::group_commit::BUFFER_SIZE_MAX_LIMIT,
            "wal_buffer_size_max",
            self.wal_buffer_size_max.to_string(),
            format!(
                "must be a positive multiple of {BLOCK_SIZE} up to {}",
                crate::wal::group_commit::BUFFER_SIZE_MAX_LIMIT
            ),
        )?;
        let record_max = self.group.batch_size_max + self.group.batch_values_max * 16 + 4096;
        check(
            self.wal_buffer_size_max >= record_max,
            "wal_buffer_size_max",
            self.wal_buffer_size_max.to_string(),
            format!(
                "must hold the largest record: group.batch_size_max {} + 16 per value \
                 (group.batch_values_max {}) + 4096 = {record_max}",
                self.group.batch_size_max, self.group.batch_values_max
            ),
        )?;
        check(
            self.segment_size % block == 0
                && self.segment_size >= SEGMENT_SIZE_MIN
                && self.segment_size - SEGMENT_HEADER_SIZE as u64
                    >= self.wal_buffer_size_max as u64,
            "segment_size",
            self.segment_size.to_string(),
            format!(
                "must be a multiple of {BLOCK_SIZE} whose payload holds wal_buffer_size_max {}",
                self.wal_buffer_size_max
            ),
        )?;
        let limit = crate::wal::group_commit::WRITES_IN_FLIGHT_MAX_LIMIT;
        check(
            (1..=limit).contains(&self.wal_writes_in_flight_max),
            "wal_writes_in_flight_max",
            self.wal_writes_in_flight_max.to_string(),
            format!("must be in 1..={limit}"),
        )?;
        check(
            self.wal_pending_size_max >= self.wal_buffer_size_max,
            "wal_pending_size_max",
            self.wal_pending_size_max.to_string(),
            format!(
                "must be >= wal_buffer_size_max {}",
                self.wal_buffer_size_max
            ),
        )?;
        Ok(())
    }

    /// The wire limits against the group's, the queues and the timers (part of
    /// `validate`).
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let t = &self.transfer;
        check(
            t.chunk_size_max >= 1
                && t.sends_max >= 1
                && t.receives_max >= 1
                && t.timeout_ns > 0
                && t.chunk_size_max + crate::paxos::size::MESSAGE_OVERHEAD_SIZE
                    <= self.group.message_size_max,
            "transfer",
            format!("{t:?}"),
            format!(
                "chunk_size_max, sends_max, receives_max and timeout_ns must be at least 1, \
                 and a chunk must fit a message: chunk_size_max + 256 <= \
                 group.message_size_max {}",
                self.group.message_size_max
            ),
        )?;
        check(
            self.wire_limits.value_size_max >= self.group.value_size_max
                && self.wire_limits.values_max >= self.group.batch_values_max
                && self.wire_limits.frame_size_max >= self.group.batch_size_max + (1 << 16)
                && self.wire_limits.frame_size_max >= self.group.message_size_max,
            "wire_limits",
            format!("{:?}", self.wire_limits),
            format!(
                "must admit what the group sends: value_size_max >= {}, values_max >= {}, \
                 frame_size_max >= group.batch_size_max + 64 KiB and >= \
                 group.message_size_max {}",
                self.group.value_size_max, self.group.batch_values_max, self.group.message_size_max
            ),
        )?;
        check(
            self.peer_queue_size_max >= self.wire_limits.frame_size_max,
            "peer_queue_size_max",
            self.peer_queue_size_max.to_string(),
            format!(
                "must hold one maximal frame (wire_limits.frame_size_max {})",
                self.wire_limits.frame_size_max
            ),
        )?;
        check(
            self.mailbox_capacity >= 1 && self.inbound_count_max >= 1 && self.held_count_max >= 1,
            "mailbox_capacity",
            format!(
                "{}, inbound_count_max {}, held_count_max {}",
                self.mailbox_capacity, self.inbound_count_max, self.held_count_max
            ),
            "queue bounds must be at least 1".into(),
        )?;
        check(
            self.checkpoint.in_flight_count_max >= 1,
            "checkpoint.in_flight_count_max",
            self.checkpoint.in_flight_count_max.to_string(),
            "must be at least 1 (a policy with every trigger at 0 takes no checkpoint)".into(),
        )?;
        check(
            self.tick > Duration::ZERO
                && self.tick.as_nanos() * 4 <= u128::from(self.group.heartbeat_interval_ns),
            "tick",
            format!("{:?}", self.tick),
            format!(
                "must be positive and at most a quarter of group.heartbeat_interval_ns {}",
                self.group.heartbeat_interval_ns
            ),
        )?;
        check(
            self.connect_backoff.0 > Duration::ZERO
                && self.connect_backoff.0 <= self.connect_backoff.1,
            "connect_backoff",
            format!("{:?}", self.connect_backoff),
            "must be (min, max) with 0 < min <= max".into(),
        )?;
        Ok(())
    }

    /// The groups of shard `shard`.
    #[must_use]
    pub fn groups_of(&self, shard: u16) -> Vec<GroupId> {
        (0..self.group_count)
            .map(GroupId)
            .filter(|g| shard_of(*g, self.shards) == shard)
            .collect()
    }

    /// The address shard `shard` of `node` listens on.
    #[must_use]
    pub fn shard_address(&self, node: NodeId, shard: u16) -> Option<SocketAddr> {
        self.nodes.get(&node).map(|base| {
            let mut address = *base;
            address.set_port(base.port() + shard);
            address
        })
    }

    /// The WAL of shard `shard`: its directory, segment files and recovery limits.
    #[must_use]
    pub fn store_config(&self, shard: u16) -> StoreConfig {
        let mut limits = crate::wal::DecodeLimits::default();
        limits.record_size_max = limits.record_size_max.max(self.wal_buffer_size_max as u32);
        StoreConfig {
            dir: self.data_dir.clone(),
            shard: u32::from(shard),
            geometry: SegmentGeometry::new(self.segment_size),
            limits,
            spare_count_min: self.spare_segments,
        }
    }

    /// The plan of shard `shard` (after `validate`).
    pub(crate) fn shard_plan(&self, shard: u16, lost_state: bool) -> ShardPlan {
        let membership = Membership::new(self.voters.iter().copied().collect());
        let groups = self
            .groups_of(shard)
            .into_iter()
            .map(|group| {
                let mut config = self.group.clone();
                config.node = self.node;
                config.group = group;
                config.membership = membership.clone();
                config.seed = self.group.seed ^ (u64::from(self.node.0) << 32 | u64::from(group.0));
                config
            })
            .collect();
        let peers = self
            .nodes
            .keys()
            .filter(|n| **n != self.node)
            .filter_map(|n| self.shard_address(*n, shard).map(|a| (*n, a)))
            .collect();
        let listen = self
            .shard_address(self.node, shard)
            .expect("validate checked that node is in nodes");
        ShardPlan {
            shard,
            core: self.cores.get(usize::from(shard)).copied(),
            groups,
            store: self.store_config(shard),
            wal_buffer_size_max: self.wal_buffer_size_max,
            wal_writes_in_flight_max: self.wal_writes_in_flight_max,
            shard_config: ShardConfig {
                node: self.node,
                wal_pending_size_max: self.wal_pending_size_max,
                held_count_max: self.held_count_max,
                reads_pending_count_max: crate::runtime::shard::READS_PENDING_COUNT_MAX,
                log_reads_wal_count_max: crate::runtime::log_reads::LOG_READS_WAL_COUNT_MAX,
                checkpoint: self.checkpoint,
                transfer: self.transfer,
                truncation: self.truncation,
            },
            net: NetConfig {
                node: self.node,
                shard,
                shards: self.shards,
                layout: self.nodes.clone(),
                key: self.peer_key.clone(),
                cluster: self.cluster,
                listen,
                peers,
                limits: self.wire_limits,
                peer_queue_size_max: self.peer_queue_size_max,
                inbound_count_max: self.inbound_count_max,
                connect_backoff_min: self.connect_backoff.0,
                connect_backoff_max: self.connect_backoff.1,
                handshake_timeout: self.handshake_timeout,
                pending_max: PENDING_MAX_DEFAULT,
                pending_per_source_max: PENDING_PER_SOURCE_MAX_DEFAULT,
            },
            tick_ns: self.tick.as_nanos() as u64,
            drain_timeout: self.drain_timeout,
            lost_state,
            fsync: !self.unsafe_skip_fsync,
        }
    }
}

/// `Ok` if `ok`, else the `ConfigError` of `field` with its `value` and `reason`.
fn check(ok: bool, field: &'static str, value: String, reason: String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            value,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let nodes = (1..=3)
            .map(|i| {
                (
                    NodeId(i),
                    format!("127.0.0.1:{}", 7000 + 100 * i)
                        .parse()
                        .expect("address"),
                )
            })
            .collect();
        Config::new(NodeId(1), 7, nodes, "/tmp/x".into())
    }

    // Goal: the defaults are valid, and a bad field is named with its value and why.
    // Method: validate the defaults, then break one field at a time.
    #[test]
    fn validation_names_the_field() {
        assert_eq!(config().validate(), Ok(()));
        let mut bad = config();
        bad.node = NodeId(9);
        assert_eq!(bad.validate().map_err(|e| e.field), Err("node"));
        let mut bad = config();
        bad.wal_buffer_size_max = 5000;
        let error = bad.validate().expect_err("unaligned buffer");
        assert_eq!(error.field, "wal_buffer_size_max");
        assert!(error.to_string().contains("5000"), "{error}");
        for writes in [0, 9] {
            let mut bad = config();
            bad.wal_writes_in_flight_max = writes;
            let error = bad.validate().expect_err("writes in flight out of range");
            assert_eq!(error.field, "wal_writes_in_flight_max");
        }
        let mut bad = config();
        bad.group.lease_ns = bad.group.election_timeout_ns;
        assert_eq!(bad.validate().map_err(|e| e.field), Err("group"));
        let mut bad = config();
        bad.group.window_instances_max = 200;
        let error = bad.validate().expect_err("accept window below 2 W");
        assert_eq!(error.field, "group");
        assert!(
            error.reason.contains("accept_window_instances_max = 256"),
            "{error}"
        );
        let mut bad = config();
        bad.segment_size = 1 << 20;
        assert_eq!(bad.validate().map_err(|e| e.field), Err("segment_size"));
        let mut bad = config();
        bad.shards = 4;
        assert_eq!(bad.validate().map_err(|e| e.field), Err("cores"));
    }

    // Goal: two nodes on one IP whose shard port ranges overlap are refused, naming
    // both nodes and both ranges; adjacent ranges, or the same ports on another IP,
    // are accepted.
    // Method: 2 shards; node 2 at node 1's port + 1, then + 2; node 2 on 127.0.0.2.
    #[test]
    fn overlapping_shard_ports_are_refused() {
        let mut config = config();
        config.shards = 2;
        config.cores = Vec::new();
        let at = |text: &str| text.parse::<SocketAddr>().expect("address");
        config.nodes.insert(NodeId(2), at("127.0.0.1:7101"));
        let error = config
            .validate()
            .expect_err("7100..7102 and 7101..7103 overlap");
        assert_eq!(error.field, "nodes");
        let text = error.to_string();
        assert!(
            text.contains("node 1 at 127.0.0.1:7100 (shard ports 7100..7102)")
                && text.contains("node 2 at 127.0.0.1:7101 (shard ports 7101..7103)"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        config.nodes.insert(NodeId(2), at("127.0.0.1:7102"));
        assert_eq!(config.validate(), Ok(()));
        config.nodes.insert(NodeId(2), at("127.0.0.2:7100"));
        assert_eq!(config.validate(), Ok(()));
    }

    // Goal: every group has exactly one shard, and shard addresses are base + index.
    // Method: four shards, 100 groups.
    #[test]
    fn plans_partition_groups() {
        let mut config = config();
        config.shards = 4;
        config.cores = Vec::new();
        config.group_count = 100;
        let total: usize = (0..4)
            .map(|s| config.shard_plan(s, false).groups.len())
            .sum();
        assert_eq!(total, 100);
        let plan = config.shard_plan(2, false);
        assert_eq!(plan.net.listen.port(), 7102);
        assert_eq!(plan.net.peers[&NodeId(3)].port(), 7302);
        assert!(plan
            .groups
            .iter()
            .all(|g| shard_of(g.group, 4) == 2 && g.node == NodeId(1)));
    }
}
