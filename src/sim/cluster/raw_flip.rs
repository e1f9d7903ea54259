//! Corrupted catch-up runs: the network flips one byte of a `CatchUpRaw` run's records
//! in flight (`SimOptions::network_raw_flip_ppm`), and delivery checks that the
//! receiving shard refused the run whole (`CatchUpCounters::raw_refused`) rather than
//! hand any of it to its group. The peer asks again: the honest run is lost, as a
//! dropped message is.
//!
//! Invariant: every flipped run delivered to a running shard is counted refused, or
//! refused for backpressure before it was looked at (`refused_messages`).

use std::collections::BTreeMap;

use super::Cluster;
use crate::paxos::{GroupId, Message, MessageBody, NodeId};
use crate::runtime::ShardInput;
use crate::sim::checkers::Violation;

/// A run as the network carries it: its receiver, group, first instance, and the
/// CRC32C of its pieces (a flipped byte changes it, so an honest copy never matches).
pub(super) type RawKey = (NodeId, GroupId, u64, u32);

/// The key of `message` when it is a `CatchUpRaw`.
fn key_of(message: &Message) -> Option<RawKey> {
    let MessageBody::CatchUpRaw { run, .. } = &message.body else {
        return None;
    };
    let crc = run
        .records
        .iter()
        .fold(0u32, |crc, piece| crc32c::crc32c_append(crc, piece));
    Some((message.to, message.group, run.first_instance.0, crc))
}

/// Flipped runs in flight, by key, with how many copies were sent.
pub(super) type Flipped = BTreeMap<RawKey, u32>;

impl Cluster {
    /// With the seed's chance, flips one byte of `message`'s records when it is a
    /// `CatchUpRaw` with any, and remembers it for delivery.
    pub(super) fn maybe_flip_raw(&mut self, message: &mut Message) {
        // The liveness phase's network loses nothing (`heal`): a flipped run is refused
        // like a lost message, so flips stop there too.
        let ppm = if self.liveness {
            0
        } else {
            self.options.network_raw_flip_ppm
        };
        let MessageBody::CatchUpRaw { run, .. } = &mut message.body else {
            return;
        };
        let size = run.size();
        if ppm == 0 || size == 0 || !self.raw_flip_prng.chance_ppm(ppm) {
            return;
        }
        let mut at = self.raw_flip_prng.below(size as u64) as usize;
        let mask = self.raw_flip_prng.range(1, 255) as u8;
        for piece in &mut run.records {
            if at < piece.len() {
                let mut bytes = piece.to_vec();
                bytes[at] ^= mask;
                *piece = bytes::Bytes::from(bytes);
                break;
            }
            at -= piece.len();
        }
        let key = key_of(message).expect("a CatchUpRaw");
        *self.raw_flipped.entry(key).or_insert(0) += 1;
        self.report.raw_runs_flipped += 1;
    }

    /// Delivers `message` to a running shard; a flipped run must come out refused.
    pub(super) fn deliver_maybe_flipped(
        &mut self,
        node: usize,
        shard: usize,
        message: Message,
    ) -> Result<(), Violation> {
        let flipped = key_of(&message).filter(|key| {
            let Some(count) = self.raw_flipped.get_mut(key) else {
                return false;
            };
            *count -= 1;
            if *count == 0 {
                self.raw_flipped.remove(key);
            }
            true
        });
        let refused = |cluster: &Cluster| {
            cluster.nodes[node].shards[shard]
                .shard
                .as_ref()
                .map(|core| core.catch_up_counters().raw_refused + core.counters().refused_messages)
        };
        let before = refused(self);
        let what = flipped.map(|(to, group, first, _)| (to, group, first));
        self.step_shard(node, shard, ShardInput::Message(message))?;
        let Some((to, group, first)) = what else {
            return Ok(());
        };
        if refused(self) <= before {
            return Err(Violation::new(
                "raw_flip",
                format!(
                    "node {} group {}: a catch-up run from instance {first} with a byte \
                     flipped in flight was not refused",
                    to.0, group.0
                ),
            ));
        }
        self.report.raw_runs_refused += 1;
        Ok(())
    }
}
