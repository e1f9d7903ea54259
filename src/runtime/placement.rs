//! Which shard (core) of a node owns a group: a pure function, equal on every node
//! with the same shard count, so a peer's message for a group goes to the one shard
//! that owns that group here.

use crate::paxos::GroupId;

/// The shard of `group` among `shard_count` shards (jump consistent hash, Lamping &
/// Veach 2014: moving to more shards moves only the groups that must move).
#[must_use]
pub fn shard_of(group: GroupId, shard_count: u16) -> u16 {
    assert!(shard_count > 0, "shard_count must be positive");
    let key = u64::from(group.0).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D;
    let shard = crate::support::jump_hash(key, u32::from(shard_count));
    u16::try_from(shard).expect("a shard below shard_count")
}

#[cfg(test)]
mod tests {
    use super::shard_of;
    use crate::paxos::GroupId;

    // Goal: placement is total, in range, balanced, and stable when shards are added.
    // Method: place 10,000 groups on 1..8 shards; check range, spread, and movement.
    #[test]
    fn balanced_and_stable() {
        for shards in 1..=8u16 {
            let mut counts = vec![0u32; usize::from(shards)];
            for g in 0..10_000 {
                let s = shard_of(GroupId(g), shards);
                assert!(s < shards);
                counts[usize::from(s)] += 1;
                if shards > 1 {
                    let before = shard_of(GroupId(g), shards - 1);
                    assert!(
                        s == before || s == shards - 1,
                        "group {g} moved between old shards"
                    );
                }
            }
            let expected = 10_000 / u32::from(shards);
            for c in counts {
                assert!(
                    c > expected * 8 / 10 && c < expected * 12 / 10,
                    "unbalanced: {c} vs {expected}"
                );
            }
        }
    }
}
