//! Message size: every message a group sends fits its byte budget, the budget fits the
//! frame limit, and the budget's estimate bounds the real encoding.
//!
//! Source: the size rule of `paxos::size` and `GroupConfig::message_size_max`, after
//! the failure it prevents: accept runs, catch-up chunks and promises bounded by count
//! alone grew past the transport's frame limit with large values; the link dropped the
//! frame, the sender rebuilt the same message on its next retransmission, and a lagging
//! follower never caught up. The core splits by `MessageBody::encoded_size`, an upper
//! bound computed without the codec (which lives in a higher layer), so two things must
//! hold: the core honours its budget, and the estimate really bounds the codec.
//!
//! Method: for every message as it leaves a shard, check
//! `encoded_size() <= message_size_max <= frame_size_max`. For a deterministic sample
//! (the first message of each kind, then every [`SAMPLE_EVERY`]th of that kind) also
//! encode it alone in a frame with the real codec and check the frame's length against
//! the estimate. Sampling per kind keeps the rare kinds (promises, catch-up chunks)
//! sampled although heartbeats and accepted replies outnumber them.
//!
//! Invariant of the checker: `encoded <= sent`, both only grow.

use super::Violation;
use crate::paxos::{Message, NodeId};
use crate::transport::{DecodeLimits, Encoder};
use std::collections::BTreeMap;

const NAME: &str = "message_size";

/// One message of each kind in this many is also encoded with the real codec.
pub const SAMPLE_EVERY: u64 = 64;

/// The message-size property. See the module docs.
#[derive(Debug)]
pub struct MessageSizeChecker {
    message_size_max: usize,
    frame_size_max: usize,
    /// Messages seen so far, per kind (decides the sample).
    seen: BTreeMap<&'static str, u64>,
    sent: u64,
    encoded: u64,
    encoder: Encoder,
    buffer: Vec<u8>,
}

impl Default for MessageSizeChecker {
    /// A checker for the default frame limit, with the budget equal to it (a driver
    /// that knows its groups' `message_size_max` uses [`MessageSizeChecker::new`]).
    fn default() -> MessageSizeChecker {
        let frame_size_max = DecodeLimits::default().frame_size_max;
        MessageSizeChecker::new(frame_size_max, frame_size_max)
    }
}

impl MessageSizeChecker {
    /// A checker for groups whose budget is `message_size_max` bytes, over a transport
    /// whose frames hold at most `frame_size_max` bytes.
    #[must_use]
    pub fn new(message_size_max: usize, frame_size_max: usize) -> MessageSizeChecker {
        MessageSizeChecker {
            message_size_max,
            frame_size_max,
            seen: BTreeMap::new(),
            sent: 0,
            encoded: 0,
            encoder: Encoder::new(),
            buffer: Vec::new(),
        }
    }

    /// `node` sent `message` (an honest shard's output): it fits the budget, the budget
    /// fits a frame, and, when sampled, the real encoding fits the estimate.
    pub fn observe_sent(&mut self, node: NodeId, message: &Message) -> Result<(), Violation> {
        let estimate = message.body.encoded_size();
        self.check(node, message, estimate)
    }

    /// Messages checked so far.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Messages also encoded with the real codec so far.
    #[must_use]
    pub fn encoded(&self) -> u64 {
        self.encoded
    }

    fn check(&mut self, node: NodeId, message: &Message, estimate: usize) -> Result<(), Violation> {
        let kind = message.body.kind();
        let describe = || {
            format!(
                "node {} sent a {kind} to node {} in group {}",
                node.0, message.to.0, message.group.0
            )
        };
        if self.message_size_max > self.frame_size_max {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: message_size_max {} exceeds the frame limit {}",
                    describe(),
                    self.message_size_max,
                    self.frame_size_max
                ),
            ));
        }
        if estimate > self.message_size_max {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: its estimated size {estimate} B exceeds message_size_max {} B",
                    describe(),
                    self.message_size_max
                ),
            ));
        }
        self.sent += 1;
        let seen = self.seen.entry(kind).or_insert(0);
        let sampled = *seen % SAMPLE_EVERY == 0;
        *seen += 1;
        if sampled {
            self.buffer.clear();
            self.encoder
                .encode_frame(std::slice::from_ref(message), &mut self.buffer);
            self.encoded += 1;
            let real = self.buffer.len();
            if real > estimate {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "{}: its real encoding takes {real} B, above the estimate {estimate} B",
                        describe()
                    ),
                ));
            }
        }
        assert!(
            self.encoded <= self.sent,
            "checker bookkeeping: {} encoded of {} sent",
            self.encoded,
            self.sent
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{MessageSizeChecker, SAMPLE_EVERY};
    use crate::paxos::{
        Ballot, Body, Entry, GroupId, Instance, Message, MessageBody, NodeId, PromisedEntry,
    };
    use bytes::Bytes;

    fn ballot() -> Ballot {
        Ballot {
            round: 3,
            node: NodeId(1),
        }
    }

    fn entry(size: usize) -> Entry {
        Entry {
            origin: ballot(),
            body: Body::Values(smallvec::smallvec![Bytes::from(vec![7u8; size])]),
        }
    }

    fn promise(entries: usize, size: usize) -> Message {
        let entries = (1..=entries as u64)
            .map(|i| PromisedEntry {
                instance: Instance(i),
                ballot: ballot(),
                chosen: false,
                entry: entry(size),
            })
            .collect();
        Message {
            group: GroupId(1),
            from: NodeId(2),
            to: NodeId(1),
            body: MessageBody::Promise {
                ballot: ballot(),
                chosen_through: Instance(0),
                entries,
                truncated: false,
            },
        }
    }

    // Goal: a message within its budget passes, and the sample encodes the first one of
    // each kind and then one in SAMPLE_EVERY.
    // Method: send 2 * SAMPLE_EVERY small promises; count the encodings.
    #[test]
    fn honest_messages_pass_and_are_sampled() {
        let mut checker = MessageSizeChecker::new(64 << 10, 16 << 20);
        for _ in 0..2 * SAMPLE_EVERY {
            checker.observe_sent(NodeId(2), &promise(3, 1_000)).unwrap();
        }
        assert_eq!(checker.sent(), 2 * SAMPLE_EVERY);
        assert_eq!(checker.encoded(), 2);
    }

    // Goal (negative self-test): a planted oversize message is caught, as is a budget
    // above the frame limit and an estimate below the real encoding.
    // Method: a promise of 40 KiB against a 32 KiB budget; a budget of 32 MiB over a
    // 16 MiB frame; a sampled message checked against an estimate 1 byte too small.
    #[test]
    fn oversize_messages_are_caught() {
        let mut checker = MessageSizeChecker::new(32 << 10, 16 << 20);
        let big = promise(10, 4 << 10);
        assert!(big.body.encoded_size() > 32 << 10);
        let violation = checker.observe_sent(NodeId(2), &big).unwrap_err();
        assert_eq!(violation.checker, "message_size");
        assert!(
            violation.message.contains("exceeds message_size_max 32768"),
            "{violation}"
        );

        let mut checker = MessageSizeChecker::new(32 << 20, 16 << 20);
        let violation = checker
            .observe_sent(NodeId(2), &promise(1, 10))
            .unwrap_err();
        assert!(
            violation.message.contains("exceeds the frame limit"),
            "{violation}"
        );

        let mut checker = MessageSizeChecker::new(64 << 10, 16 << 20);
        let small = promise(2, 1_000);
        let mut real = Vec::new();
        crate::transport::encode_frame(std::slice::from_ref(&small), &mut real);
        let violation = checker
            .check(NodeId(2), &small, real.len() - 1)
            .unwrap_err();
        assert!(
            violation.message.contains("above the estimate"),
            "{violation}"
        );
        let mut checker = MessageSizeChecker::new(64 << 10, 16 << 20);
        checker.check(NodeId(2), &small, real.len()).unwrap();
        assert_eq!(checker.encoded(), 1);
    }
}
