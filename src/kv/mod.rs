//! The built-in replicated key-value store: the state machine `synod serve` runs in
//! every group by default ([`kv_factory`]), its byte format ([`format`]), exactly-once
//! client sessions, checkpoint images ([`image`]), and the partition of keys over
//! groups ([`group_of`]) that clients compute.
//!
//! Each group holds its own ordered map of byte-string keys to byte-string values.
//! Mutations (put, delete, compare-and-set) are proposed values: [`Command`]s, applied
//! by every replica in log order. Reads (get, bounded range scan) are [`Query`]s on
//! the node's linearizable read path (`StateMachine::query`, served by the leader
//! under its lease). Both return an [`Answer`].
//!
//! # Format (version 1, little-endian)
//!
//! Every command, query and answer opens with the version byte (1) and a kind byte.
//! A *key* is a u16 length (1..=[`KEY_SIZE_MAX`]; 0 allowed for scan bounds) and its
//! bytes; a *value* is a u32 length (0..=[`VALUE_SIZE_MAX`]) and its bytes; an
//! *option* is a byte 0 (absent) or 1 followed by a value.
//!
//! | command | bytes after `01 op` |
//! |---|---|
//! | `01` open session | nothing |
//! | `02` put | session u64, sequence u64, key, value |
//! | `03` delete | session u64, sequence u64, key |
//! | `04` cas | session u64, sequence u64, key, option expected, option new (absent: delete) |
//!
//! | query | bytes after `01 op` |
//! |---|---|
//! | `01` get | key |
//! | `02` scan | start key (may be empty), byte 0 or 1 + end key (exclusive), keys_max u32 (1..=[`SCAN_KEYS_MAX`]), size_max u32 (1..=[`SCAN_SIZE_MAX`]) |
//!
//! | answer | bytes after `01 kind` |
//! |---|---|
//! | `01` done (put) | nothing |
//! | `02` deleted | existed: byte 0 or 1 |
//! | `03` swapped (cas matched) | nothing |
//! | `04` mismatch (cas did not match; nothing changed) | nothing |
//! | `05` value (get) | option value |
//! | `06` scan | count u32, count × (key, value), byte 0 or 1 + next key |
//! | `07` session | id u64 |
//! | `08` error (nothing changed) | code u8 ([`ErrorCode`]), reason as a u16-length string (<= [`REASON_SIZE_MAX`]) |
//!
//! Bytes that do not decode (any bound, tag, length or trailing byte) are answered
//! with error `Malformed` and change nothing; decoding never panics.
//!
//! # Exactly-once sessions
//!
//! The Raft dissertation's client sessions (Ongaro, §6.3): a client opens a session
//! (a command whose answer is the session's id, assigned in log order), then numbers
//! its mutations 1, 2, ... with at most one outstanding, and retries an unanswered one
//! with the SAME number. The state machine keeps, per session, the last applied
//! number and its answer: a duplicate gets the stored answer and changes nothing; a
//! lower number gets `SequenceStale`; an unknown (or expired) session gets
//! `SessionUnknown`, and nothing is applied. The table keeps the [`SESSIONS_MAX`]
//! sessions used most recently, by the order of the log (each applied value advances
//! a counter; a session's last use is the counter's value then), never by a clock, so
//! every replica expires the same sessions. The table is part of the checkpoint. A
//! mutation with session 0 is not deduplicated.
//!
//! # Partition
//!
//! A key belongs to group `jump(fnv1a64(key), groups)`: FNV-1a (64-bit, offset basis
//! 0xcbf29ce484222325, prime 0x100000001b3) of the key's bytes, then the jump
//! consistent hash of Lamping & Veach (2014) over the groups 0..G. Stable across
//! versions: changing it would strand every stored key.
//!
//! Invariants: `apply` is deterministic (no clock, no randomness, no I/O): equal
//! logs give equal maps and session tables on every replica; a group's keys and
//! values total at most [`GROUP_DATA_SIZE_MAX`] bytes (a put beyond is answered
//! `Full`); the session table holds at most [`SESSIONS_MAX`] sessions.

pub mod format;
pub mod image;
mod machine;

pub use format::{
    Answer, Command, ErrorCode, FormatError, Query, Session, WriteOp, FORMAT_VERSION, KEY_SIZE_MAX,
    REASON_SIZE_MAX, SCAN_KEYS_MAX, SCAN_SIZE_MAX, VALUE_SIZE_MAX,
};
pub use machine::KvMachine;

use crate::api::StateMachineFactory;
use crate::paxos::GroupId;

/// Most sessions a group's table keeps; opening one more expires the least recently
/// used (by log order). Part of the format: every replica must use the same bound.
pub const SESSIONS_MAX: usize = 4096;

/// Most bytes of keys and values one group stores. Part of the format: every replica
/// must use the same bound.
pub const GROUP_DATA_SIZE_MAX: u64 = 1 << 30;

/// A factory of [`KvMachine`]s, one per group (the state machine of `synod serve`).
#[must_use]
pub fn kv_factory() -> StateMachineFactory {
    std::sync::Arc::new(|_| Box::new(KvMachine::new()))
}

/// The group that holds `key` among the groups `0..group_count` (see "Partition").
///
/// # Panics
///
/// When `group_count` is 0.
#[must_use]
pub fn group_of(key: &[u8], group_count: u32) -> GroupId {
    assert!(group_count > 0, "group_count must be positive");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    GroupId(crate::support::jump_hash(hash, group_count))
}

#[cfg(test)]
mod tests {
    use super::group_of;
    use crate::paxos::GroupId;

    // Goal: the partition is stable (fixed values: a change would strand stored
    // keys), in range, balanced, and moves only about 1/G of keys when a group is
    // added.
    // Method: known answers, then 20,000 keys over 1..8 groups.
    #[test]
    fn partition_is_stable_balanced_and_moves_little() {
        assert_eq!(group_of(b"", 1), GroupId(0));
        let pinned: Vec<u32> = ["a", "b", "user:1", "user:2", "counter"]
            .iter()
            .map(|k| group_of(k.as_bytes(), 8).0)
            .collect();
        assert_eq!(pinned, PINNED);
        for groups in 1..=8_u32 {
            let mut counts = vec![0_u32; groups as usize];
            let mut moved = 0_u32;
            for i in 0..20_000 {
                let key = format!("key-{i}");
                let g = group_of(key.as_bytes(), groups);
                assert!(g.0 < groups);
                counts[g.0 as usize] += 1;
                if groups > 1 && group_of(key.as_bytes(), groups - 1) != g {
                    assert_eq!(g.0, groups - 1, "a key moves only to the new group");
                    moved += 1;
                }
            }
            let fair = 20_000 / groups;
            for count in &counts {
                assert!(
                    count.abs_diff(fair) < fair / 5,
                    "{groups} groups: {counts:?}"
                );
            }
            if groups > 1 {
                assert!(moved.abs_diff(fair) < fair / 5, "moved {moved} of 20000");
            }
        }
    }

    const PINNED: [u32; 5] = [2, 3, 5, 7, 6];
}
