//! The checks of synod's fuzz targets, one function per target, each taking the raw
//! bytes a fuzzer made: the peer frame decoder, the client frame decoder, WAL recovery
//! over segment images, and the peer link's handshake. The same file is compiled into
//! the libFuzzer binaries (`fuzz/`, through `#[path]`) and into `tests/fuzz_corpus.rs`,
//! which replays the checked-in corpus and every input that ever failed through it: a
//! crash found by a long run becomes a regression test by adding its input file.
//!
//! Each check asserts more than "no panic": decoded frames re-encode to bytes that
//! decode to the same value and re-encode identically; the typed decoders agree with
//! the generic one; decoding allocates at most a fixed multiple of its input; a
//! recovered log, written again by the real writer, recovers to the same records, and
//! so does the directory after recovery's own prescription (scrub, discard) is applied;
//! a keyed handshake never accepts a proof it did not see made with the key.

#![allow(
    dead_code,
    reason = "each including crate uses a different part: the fuzz binaries one target each"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use synod::client::codec as client_codec;
use synod::client::wire::Body;
use synod::paxos::{Ballot, Body as EntryBody, Entry, GroupId, Instance, NodeId, Record};
use synod::runtime::net::handshake::{
    check_hello, check_reply, hello, proof_context, PROOF_ROLE_ACCEPTOR, PROOF_ROLE_DIALER,
};
use synod::runtime::net::NetConfig;
use synod::transport::auth::{AuthKey, Nonce};
use synod::transport::{
    self, split_frame, DecodeLimits, FrameBody, FrameError, Handshake, HandshakeProof,
};
use synod::wal::group_commit::header_for;
use synod::wal::log_recovery::{recover, LogConfig, LogDecision, LogRecovery, SegmentImage};
use synod::wal::segment_format::{segment_file_name, SegmentGeometry, SegmentHeader};
use synod::wal::{GroupCommit, GroupCommitConfig, Resume, SegmentPlacement, BLOCK_SIZE};

// Allocation accounting: the peak bytes this thread holds while a decoder runs.
#[path = "../common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::measured;

/// What decoding `n` bytes of a frame may allocate: the decoded values are a few times
/// larger than their wire form (`tests/codec.rs` measures 16 times at worst), never more.
fn frame_allocation_bound(n: usize) -> usize {
    16 * n + 1024
}

/// What recovering `n` bytes of segment images may allocate: one copy of each image
/// (read one at a time) and the decoded records, a small multiple of the input.
fn recovery_allocation_bound(n: usize) -> usize {
    64 * n + 64 * 1024
}

// ---------------------------------------------------------------------------------------
// Target 1: peer frames.

/// The limits a node decodes peer frames with (`DecodeLimits::default`, the defaults
/// of the configuration).
fn peer_limits() -> DecodeLimits {
    DecodeLimits::default()
}

/// Target `peer_frame`: `data` as a stream of length-prefixed peer frames, each split
/// and decoded as a link reader does, and `data` itself as one frame's payload. Returns
/// how many frames decoded.
pub fn peer_frame(data: &[u8]) -> usize {
    let limits = peer_limits();
    let mut decoded = 0;
    let mut rest = data;
    loop {
        match split_frame(rest, limits.frame_size_max) {
            Ok(None) => break,
            Ok(Some((payload, consumed))) => {
                assert_eq!(consumed, payload.len() + transport::FRAME_HEADER_SIZE);
                decoded += usize::from(check_peer_payload(payload, &limits));
                rest = &rest[consumed..];
            }
            Err(FrameError::TooLarge { size, max }) => {
                assert!(size > max, "refused a frame of {size} bytes <= {max}");
                break;
            }
            Err(other) => panic!("split_frame: unexpected error {other}"),
        }
    }
    decoded + usize::from(check_peer_payload(data, &limits))
}

/// Decodes one peer frame payload and checks the decode's contract; returns whether it
/// decoded.
fn check_peer_payload(payload: &[u8], limits: &DecodeLimits) -> bool {
    let (decoded, peak) = measured(|| transport::decode(payload, limits));
    assert!(
        peak <= frame_allocation_bound(payload.len()),
        "decoding {} bytes allocated {peak} bytes",
        payload.len()
    );
    let typed_agree = |body: Option<&FrameBody>| {
        let kind = body.map(FrameBody::kind);
        let batch = transport::decode_frame(payload, limits).ok();
        assert_eq!(batch.is_some(), kind == Some("MessageBatch"));
        let heartbeats = transport::decode_heartbeat_batch(payload, limits).ok();
        assert_eq!(heartbeats.is_some(), kind == Some("HeartbeatBatch"));
        let handshake = transport::decode_handshake(payload, limits).ok();
        assert_eq!(handshake.is_some(), kind == Some("Handshake"));
        match body {
            Some(FrameBody::MessageBatch(messages)) => assert_eq!(batch.as_ref(), Some(messages)),
            Some(FrameBody::HeartbeatBatch(b)) => assert_eq!(heartbeats.as_ref(), Some(b)),
            Some(FrameBody::Handshake(h)) => assert_eq!(handshake.as_ref(), Some(h)),
            _ => {}
        }
    };
    let Ok(body) = decoded else {
        typed_agree(None);
        return false;
    };
    assert!(
        payload.len() <= limits.frame_size_max,
        "decoded a frame above frame_size_max"
    );
    typed_agree(Some(&body));
    let mut again = Vec::new();
    transport::encode(&body, &mut again);
    let back = match transport::decode(&again, limits) {
        Ok(back) => back,
        Err(e) => panic!(
            "a decoded {} re-encodes to a frame that does not decode: {e}",
            body.kind()
        ),
    };
    assert_eq!(back, body, "decode(encode(decode(x))) != decode(x)");
    let mut third = Vec::new();
    transport::encode(&back, &mut third);
    assert_eq!(third, again, "encoding is not deterministic");
    true
}

// ---------------------------------------------------------------------------------------
// Target 2: client frames.

/// The largest client frame a node accepts by default (`ServerConfig::new`).
const CLIENT_FRAME_SIZE_MAX: usize = 4 << 20;

/// Target `client_frame`: `data` as a stream of client frames, decoded as the node's
/// listener does; and `data` as one frame's flatbuffer behind a correct CRC (so the
/// fuzzer reaches the flatbuffer checks without forging checksums). Returns how many
/// frames decoded.
pub fn client_frame(data: &[u8]) -> usize {
    let mut decoded = 0;
    let mut rest = data;
    loop {
        let (next, peak) = measured(|| client_codec::decode_next(rest, CLIENT_FRAME_SIZE_MAX));
        assert!(peak <= frame_allocation_bound(rest.len()));
        match next {
            Ok(None) | Err(_) => break,
            Ok(Some((body, consumed))) => {
                assert!(consumed <= rest.len() && consumed > client_codec::FRAME_OVERHEAD_SIZE);
                check_client_body(&body);
                decoded += 1;
                rest = &rest[consumed..];
            }
        }
    }
    let mut sealed = Vec::with_capacity(data.len() + client_codec::CRC_SIZE);
    sealed.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    sealed.extend_from_slice(data);
    let (payload, peak) = measured(|| client_codec::decode_payload(&sealed));
    assert!(peak <= frame_allocation_bound(sealed.len()));
    if let Ok(body) = payload {
        check_client_body(&body);
        decoded += 1;
    }
    decoded
}

/// A decoded client body re-encodes to one frame that decodes to the same body, and
/// encoding it again gives the same bytes.
fn check_client_body(body: &Body) {
    let mut again = Vec::new();
    if let Err(e) = client_codec::encode(body, CLIENT_FRAME_SIZE_MAX, &mut again) {
        panic!("a decoded {} does not re-encode: {e}", body.name());
    }
    match client_codec::decode_next(&again, CLIENT_FRAME_SIZE_MAX) {
        Ok(Some((back, consumed))) => {
            assert_eq!(consumed, again.len());
            assert_eq!(&back, body, "decode(encode(decode(x))) != decode(x)");
            let mut third = Vec::new();
            client_codec::encode(&back, CLIENT_FRAME_SIZE_MAX, &mut third).expect("encoded once");
            assert_eq!(third, again, "encoding is not deterministic");
        }
        other => panic!("a re-encoded {} does not decode: {other:?}", body.name()),
    }
}

// ---------------------------------------------------------------------------------------
// Target 3: WAL recovery over segment images.

/// The shard of the fuzzed logs.
const WAL_SHARD: u32 = 2;
/// Segment files of the fuzzed logs: the header and three blocks of records.
const WAL_SEGMENT_SIZE: u64 = 4 * BLOCK_SIZE as u64;
/// Most segment files one input makes.
const WAL_SEGMENTS_MAX: usize = 6;
/// Salt seed of the logs the writer makes here.
const WAL_SALT_SEED: u64 = 0x5eed;

fn wal_config() -> LogConfig {
    LogConfig {
        shard: WAL_SHARD,
        geometry: SegmentGeometry::new(WAL_SEGMENT_SIZE),
        limits: synod::wal::DecodeLimits::default(),
    }
}

/// A log directory: file name -> bytes.
pub type Dir = BTreeMap<String, Vec<u8>>;

fn images(dir: &Dir) -> Vec<SegmentImage<'_>> {
    dir.iter()
        .map(|(name, bytes)| SegmentImage { name, bytes })
        .collect()
}

/// The directory an input means. Byte 0: bits 0-1 the index of the first segment,
/// bit 2 "reseal" (recompute every record checksum the writer would have written, so
/// that mutations inside records reach the decoder), bit 3 a file of another shard.
/// The rest: segment files of `WAL_SEGMENT_SIZE` bytes each (the last may be short).
pub fn wal_dir(data: &[u8]) -> Dir {
    let mut dir = Dir::new();
    let Some((flags, rest)) = data.split_first() else {
        return dir;
    };
    let first = u64::from(flags & 3);
    for (i, bytes) in rest
        .chunks(WAL_SEGMENT_SIZE as usize)
        .take(WAL_SEGMENTS_MAX)
        .enumerate()
    {
        let mut bytes = bytes.to_vec();
        if flags & 4 != 0 {
            reseal(&mut bytes);
        }
        dir.insert(segment_file_name(WAL_SHARD, first + i as u64), bytes);
    }
    if flags & 8 != 0 {
        dir.insert(segment_file_name(WAL_SHARD + 1, 0), vec![0; BLOCK_SIZE]);
    }
    dir
}

/// Recomputes the checksum of every record of a segment file as the writer seals it
/// (`wal::record`: `crc32c_append(salt, bytes[8..size])`), walking sizes from the
/// payload's start and skipping to the next block at a size that cannot be a record.
fn reseal(file: &mut [u8]) {
    let Ok(header) = SegmentHeader::decode(file) else {
        return;
    };
    let header_size = BLOCK_SIZE;
    let mut at = header_size;
    while at + synod::wal::HEADER_SIZE <= file.len() {
        let size = u32::from_le_bytes(file[at..at + 4].try_into().expect("4 bytes")) as usize;
        let fits = size >= synod::wal::HEADER_SIZE
            && size % synod::wal::RECORD_ALIGN == 0
            && at + size <= file.len();
        if !fits {
            at = (at / BLOCK_SIZE + 1) * BLOCK_SIZE;
            continue;
        }
        let checksum = crc32c::crc32c_append(header.salt, &file[at + 8..at + size]);
        file[at + 4..at + 8].copy_from_slice(&checksum.to_le_bytes());
        at += size;
    }
}

/// Target `wal_segments`: recovery of the directory `wal_dir(data)` never panics (its
/// postconditions are asserted inside), stays within its allocation bound, and its
/// result re-verifies: the recovered records written again by the real writer recover
/// to the same records with a clean end; and the directory after recovery's own
/// prescription (the scrub zeroed, the discarded files deleted) recovers to the same
/// records, LSNs and resume point. Returns how many records were recovered.
pub fn wal_segments(data: &[u8]) -> usize {
    let dir = wal_dir(data);
    let config = wal_config();
    let (recovered, peak) = measured(|| recover(&images(&dir), &config));
    assert!(
        peak <= recovery_allocation_bound(data.len()),
        "recovering {} bytes allocated {peak} bytes",
        data.len()
    );
    let records: Vec<Record> = recovered.records.iter().map(|r| r.record.clone()).collect();

    // The records, written again, recover as they were.
    let written = write_log(&records, 3);
    let again = recover(&images(&written), &config);
    assert_eq!(
        again.decision,
        LogDecision::Clean,
        "a rewritten log is not clean"
    );
    let again_records: Vec<&Record> = again.records.iter().map(|r| &r.record).collect();
    assert_eq!(again_records, records.iter().collect::<Vec<_>>());

    // Recovery's prescription applied, the directory recovers to the same log.
    let prescribed = apply_prescription(dir, &recovered, &config.geometry);
    let after = recover(&images(&prescribed), &config);
    assert_eq!(
        after.records, recovered.records,
        "records changed after the scrub"
    );
    assert_eq!(after.lsn_through, recovered.lsn_through);
    assert_eq!(
        after.resume, recovered.resume,
        "resume moved after the scrub"
    );
    assert!(
        after.discard.is_empty(),
        "discard left files: {:?}",
        after.discard
    );
    records.len()
}

/// `dir` after what a node does BEFORE its first append: the discarded files deleted
/// and the scrub range zeroed.
fn apply_prescription(mut dir: Dir, recovered: &LogRecovery, geometry: &SegmentGeometry) -> Dir {
    for name in &recovered.discard {
        assert!(
            dir.remove(name).is_some(),
            "discard names a file that is not there: {name}"
        );
    }
    let scrub = &recovered.scrub;
    if scrub.start < scrub.end {
        let (index, from) = geometry.locate(scrub.start);
        let (_, to) = geometry.locate(scrub.end - 1);
        let name = segment_file_name(WAL_SHARD, index);
        if let Some(file) = dir.get_mut(&name) {
            let end = usize::try_from(to + 1)
                .expect("within a segment")
                .min(file.len());
            let start = usize::try_from(from).expect("within a segment").min(end);
            file[start..end].fill(0);
        }
    }
    dir
}

/// Writes `records` as a node would, `per_batch` records a batch: segment headers
/// BEFORE their first batch, batches never straddling a segment.
pub fn write_log(records: &[Record], per_batch: usize) -> Dir {
    let geometry = SegmentGeometry::new(WAL_SEGMENT_SIZE);
    let mut dir = Dir::new();
    let mut commit = GroupCommit::segmented(
        GroupCommitConfig {
            buffer_size_max: usize::try_from(geometry.payload_size()).expect("small"),
            salt: 0,
            writes_in_flight_max: 1,
        },
        Resume::EMPTY,
        SegmentPlacement {
            payload_size: geometry.payload_size(),
            salt_seed: WAL_SALT_SEED,
        },
    );
    let flush = |commit: &mut GroupCommit, dir: &mut Dir| {
        let lsn_prev = commit.durable_through();
        let Some(plan) = commit.take_write() else {
            return;
        };
        let (index, file_offset) = geometry.locate(plan.offset);
        let file = dir
            .entry(segment_file_name(WAL_SHARD, index))
            .or_insert_with(|| vec![0; WAL_SEGMENT_SIZE as usize]);
        if let Some(header) = header_for(&plan, &geometry, WAL_SHARD, lsn_prev, 0) {
            file[..BLOCK_SIZE].copy_from_slice(&header.encode());
        }
        let at = usize::try_from(file_offset).expect("within a segment");
        file[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
        commit.on_durable(plan.lsn_through);
        commit.invariants();
    };
    for (i, record) in records.iter().enumerate() {
        if commit.append(record).is_err() {
            flush(&mut commit, &mut dir);
            commit
                .append(record)
                .expect("a record that was in a segment fits an empty batch");
        }
        if (i + 1) % per_batch.max(1) == 0 {
            flush(&mut commit, &mut dir);
        }
    }
    flush(&mut commit, &mut dir);
    dir
}

/// A few real logs (every record kind the writer makes, batches of several sizes, a
/// value that spans blocks), each as a `wal_segments` input.
pub fn wal_seeds() -> Vec<(String, Vec<u8>)> {
    let ballot = |round| Ballot {
        round,
        node: NodeId(1),
    };
    let accept = |instance: u64, size: usize| Record::Accept {
        group: GroupId(1 + (instance % 3) as u32),
        instance: Instance(instance),
        ballot: ballot(2),
        entry: Entry {
            origin: ballot(2),
            body: EntryBody::Values(vec![bytes::Bytes::from(vec![0xa5; size])].into()),
        },
    };
    let mut mixed = vec![Record::Promise {
        group: GroupId(1),
        ballot: ballot(2),
    }];
    for instance in 1..=24 {
        mixed.push(accept(instance, 16 + (instance as usize * 97) % 600));
        if instance % 5 == 0 {
            mixed.push(Record::Chosen {
                group: GroupId(1),
                through: Instance(instance),
            });
        }
    }
    mixed.push(Record::Learn {
        group: GroupId(2),
        instance: Instance(30),
        entry: Entry {
            origin: ballot(1),
            body: EntryBody::Values(vec![bytes::Bytes::from(vec![7; 5000])].into()),
        },
    });
    mixed.push(Record::Installed {
        group: GroupId(3),
        through: Instance(40),
    });
    let promises: Vec<Record> = (1..=40)
        .map(|round: u64| Record::Promise {
            group: GroupId(u32::try_from(round % 4).expect("small")),
            ballot: ballot(round),
        })
        .collect();
    let mut seeds = Vec::new();
    for (name, records, per_batch, flags) in [
        ("mixed-batches-of-4", &mixed, 4, 0_u8),
        ("mixed-resealed", &mixed, 3, 4),
        ("promises-batches-of-8", &promises, 8, 0),
        ("promises-resealed", &promises, 3, 4),
    ] {
        let dir = write_log(records, per_batch);
        let mut input = vec![flags];
        for bytes in dir.values() {
            input.extend_from_slice(bytes);
        }
        seeds.push((name.to_string(), input));
    }
    seeds
}

// ---------------------------------------------------------------------------------------
// Target 4: the peer link's handshake.

const HANDSHAKE_CLUSTER: u64 = 77;
const HANDSHAKE_SHARD: u16 = 1;
const HANDSHAKE_SHARDS: u16 = 2;

/// Node `node`'s link configuration in a three-node cluster, with or without the
/// cluster key.
fn net_config(node: u32, keyed: bool) -> NetConfig {
    let addr = |n: u32| -> SocketAddr {
        format!("127.0.0.1:{}", 7000 + n)
            .parse()
            .expect("literal address")
    };
    let layout: BTreeMap<NodeId, SocketAddr> = (1..=3).map(|n| (NodeId(n), addr(n))).collect();
    let peers = layout
        .iter()
        .filter(|(n, _)| n.0 != node)
        .map(|(n, a)| (*n, *a))
        .collect();
    NetConfig {
        node: NodeId(node),
        shard: HANDSHAKE_SHARD,
        shards: HANDSHAKE_SHARDS,
        layout,
        key: keyed.then(|| AuthKey::from_bytes(&[0x4b; 32]).expect("a 32-byte key")),
        cluster: HANDSHAKE_CLUSTER,
        listen: addr(node),
        peers,
        limits: DecodeLimits::default(),
        peer_queue_size_max: 1 << 20,
        inbound_count_max: 1024,
        connect_backoff_min: Duration::from_millis(10),
        connect_backoff_max: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(1),
        pending_max: 64,
        pending_per_source_max: 8,
    }
}

/// The acceptor's nonce in the fuzzed exchanges (fixed: the input cannot see it, and a
/// proof over it needs the key).
const ACCEPTOR_NONCE: Nonce = [0xac; 16];
/// The dialer's nonce when this node dials.
const DIALER_NONCE: Nonce = [0xd1; 16];

/// Target `handshake`. Byte 0: bit 0 keyed, bit 1 this node dials (else it accepts),
/// bit 2 (accepting, keyed) the dialer's proof is made honestly with the key over the
/// nonce the input's hello carries. Bytes 1-2: the length of the first frame (u16 LE);
/// then the first frame (the hello, or the reply when dialing), then the second (the
/// dialer's proof).
///
/// Checks: a hello or reply passes only if it decodes to a handshake naming this
/// cluster, a configured peer and this shard; with a key, a peer is accepted only with
/// the one proof the key makes over both nonces and the direction (nothing else the
/// input holds verifies); an honest proof is accepted exactly when the hello's shard
/// count and layout are this node's. Returns 1 when the peer was accepted, else 0.
pub fn handshake(data: &[u8]) -> usize {
    let Some((&flags, rest)) = data.split_first() else {
        return 0;
    };
    let keyed = flags & 1 != 0;
    let (first, second) = match rest.split_first_chunk::<2>() {
        Some((len, rest)) => {
            let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
            rest.split_at(len)
        }
        None => (rest, &[][..]),
    };
    let own = net_config(1, keyed);
    if flags & 2 != 0 {
        return handshake_dialing(&own, first);
    }
    handshake_accepting(&own, flags & 4 != 0, first, second)
}

/// `frame` decoded as the handshake a check let pass.
fn passed_handshake(own: &NetConfig, frame: &[u8]) -> Handshake {
    match transport::decode(frame, &own.limits) {
        Ok(FrameBody::Handshake(h)) => {
            assert_eq!((h.cluster, h.shard), (own.cluster, own.shard));
            assert!(own.peers.contains_key(&h.node) && h.node != own.node);
            assert_eq!(
                h.nonce.is_some(),
                own.key.is_some(),
                "a key on one side only"
            );
            h
        }
        other => panic!("a frame that is not a handshake passed: {other:?}"),
    }
}

/// Whether the peer's shard count and layout in `h` are `own`'s.
fn same_layout(own: &NetConfig, h: &Handshake) -> bool {
    let layout: BTreeMap<_, _> = h.layout.iter().copied().collect();
    h.shards == own.shards && layout == own.layout
}

/// This node dials node 2 and reads `reply`.
fn handshake_dialing(own: &NetConfig, reply: &[u8]) -> usize {
    let dialed = NodeId(2);
    let nonce = own.key.is_some().then_some(DIALER_NONCE);
    let Ok(proof) = check_reply(own, dialed, nonce, reply) else {
        return 0;
    };
    let h = passed_handshake(own, reply);
    assert_eq!(h.node, dialed);
    assert!(
        same_layout(own, &h),
        "accepted an acceptor with another layout"
    );
    let context = proof_context(own.cluster, own.node, dialed, own.shard);
    match (&own.key, h.nonce) {
        (Some(key), Some(theirs)) => {
            let nonces = [&DIALER_NONCE, &theirs];
            let genuine = key.prove(PROOF_ROLE_ACCEPTOR, nonces, &context);
            assert_eq!(
                h.proof,
                Some(genuine),
                "accepted a reply without the key's proof"
            );
            let ours = key.prove(PROOF_ROLE_DIALER, nonces, &context);
            assert_eq!(proof, Some(HandshakeProof { proof: ours }));
        }
        _ => assert_eq!((proof, h.proof), (None, None)),
    }
    1
}

/// This node accepts the hello `first`, then reads the dialer's proof: `second`, or the
/// genuine proof when `honest`.
fn handshake_accepting(own: &NetConfig, honest: bool, first: &[u8], second: &[u8]) -> usize {
    let Ok(hello_ok) = check_hello(own, first) else {
        return 0;
    };
    let h = passed_handshake(own, first);
    assert_eq!(hello_ok.node(), h.node);
    assert_eq!(hello_ok.keyed(), own.key.is_some());
    let (reply, state) = hello_ok.reply(own, own.key.is_some().then_some(ACCEPTOR_NONCE));
    assert_eq!(
        (reply.node, reply.nonce.is_some()),
        (own.node, own.key.is_some())
    );
    let context = proof_context(own.cluster, h.node, own.node, own.shard);
    let genuine = match (&own.key, h.nonce) {
        (Some(key), Some(theirs)) => {
            let nonces = [&theirs, &ACCEPTOR_NONCE];
            assert_eq!(
                reply.proof,
                Some(key.prove(PROOF_ROLE_ACCEPTOR, nonces, &context))
            );
            Some(key.prove(PROOF_ROLE_DIALER, nonces, &context))
        }
        _ => None,
    };
    let frame = genuine.map(|proof| {
        if honest {
            let mut bytes = Vec::new();
            transport::encode(
                &FrameBody::HandshakeProof(HandshakeProof { proof }),
                &mut bytes,
            );
            bytes
        } else {
            second.to_vec()
        }
    });
    let result = state.finish(own, frame.as_deref());
    let proof_is_genuine = match (&frame, genuine) {
        (Some(frame), Some(genuine)) => matches!(
            transport::decode(frame, &own.limits),
            Ok(FrameBody::HandshakeProof(p)) if p.proof == genuine
        ),
        _ => true,
    };
    match result {
        Ok(node) => {
            assert!(proof_is_genuine, "a keyed acceptor accepted a forged proof");
            assert_eq!(node, h.node);
            assert!(same_layout(own, &h), "accepted a peer with another layout");
            1
        }
        Err(refusal) => {
            assert!(
                !proof_is_genuine || !same_layout(own, &h),
                "refused an honest peer with the same layout: {refusal}"
            );
            0
        }
    }
}

/// Real handshake exchanges as `handshake` inputs: hellos of each peer, keyed and not,
/// a reply, and a real (wrong-nonce) proof.
pub fn handshake_seeds() -> Vec<(String, Vec<u8>)> {
    let encode = |body: FrameBody| {
        let mut bytes = Vec::new();
        transport::encode(&body, &mut bytes);
        bytes
    };
    let input = |flags: u8, first: &[u8], second: &[u8]| {
        let mut out = vec![flags];
        out.extend_from_slice(&u16::try_from(first.len()).expect("small").to_le_bytes());
        out.extend_from_slice(first);
        out.extend_from_slice(second);
        out
    };
    let mut seeds = Vec::new();
    for keyed in [false, true] {
        let dialer = net_config(2, keyed);
        let nonce = keyed.then_some([0x33; 16]);
        let hello_frame = encode(FrameBody::Handshake(hello(&dialer, nonce)));
        let proof = encode(FrameBody::HandshakeProof(HandshakeProof { proof: [9; 32] }));
        let flags = u8::from(keyed);
        seeds.push((
            format!("hello-keyed-{keyed}"),
            input(flags, &hello_frame, &proof),
        ));
        seeds.push((
            format!("hello-honest-keyed-{keyed}"),
            input(flags | 4, &hello_frame, &[]),
        ));
        // The acceptor's reply to node 1's hello, as node 1 reads it when dialing 2.
        let accepting = net_config(2, keyed);
        let first_hello = encode(FrameBody::Handshake(hello(
            &net_config(1, keyed),
            keyed.then_some(DIALER_NONCE),
        )));
        if let Ok(h) = check_hello(&accepting, &first_hello) {
            let (reply, _) = h.reply(&accepting, keyed.then_some(ACCEPTOR_NONCE));
            let reply_frame = encode(FrameBody::Handshake(reply));
            seeds.push((
                format!("reply-keyed-{keyed}"),
                input(flags | 2, &reply_frame, &[]),
            ));
        }
    }
    seeds
}

/// Runs `target`'s check (`peer_frame`, `client_frame`, `wal_segments` or `handshake`)
/// on `data`; returns what it returns (frames decoded, records recovered, peers
/// accepted).
pub fn run(target: &str, data: &[u8]) -> usize {
    match target {
        "peer_frame" => peer_frame(data),
        "client_frame" => client_frame(data),
        "wal_segments" => wal_segments(data),
        "handshake" => handshake(data),
        other => panic!("no fuzz target named {other}"),
    }
}

/// Every target's name.
pub const TARGETS: [&str; 4] = ["peer_frame", "client_frame", "wal_segments", "handshake"];
