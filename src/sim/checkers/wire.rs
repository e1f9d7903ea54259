//! The wire: every message a simulated node sends crosses the real peer codec before
//! the simulated network carries it. The messages a shard has for one peer in one step
//! are packed into frames by the link's own packer (`transport::batch`, with the
//! frame limits a node runs with), each frame is split off the byte stream, decoded and
//! verified (`transport::decode`) and unpacked, and the messages that come out are the
//! ones delivered.
//!
//! Source: the failure the message-size rule prevents (`checkers::size`): a message
//! the core thought fine that the transport could not carry was dropped on every
//! retransmission, and a simulator that skipped the codec could not see it. Carrying
//! every message through the codec puts the frame limits, the packer's splitting and
//! the decoder's verifier in every run.
//!
//! Property, per (sender, receiver, step): packing drops nothing (an honest shard's
//! messages always fit a frame; the link's queue bound is the network's business
//! here); every frame splits off whole and decodes; unpacking yields exactly the
//! messages sent, equal field for field. The delivered messages keep the order they
//! were sent in (the real link reorders heartbeats and acks after the rest, which
//! Paxos tolerates; keeping the order keeps a seed's run what it was).
//!
//! Invariant of the checker: `messages` and `frames` count what crossed, both only grow.

use super::Violation;
use crate::paxos::{Message, MessageBody, NodeId};
use crate::transport::batch::{is_batched, unpack, Packer};
use crate::transport::{decode, split_frame, DecodeLimits};
use std::collections::VecDeque;

const NAME: &str = "wire";

/// Carries messages through the real codec. See the module docs.
#[derive(Debug, Default)]
pub struct WireChecker {
    limits: DecodeLimits,
    packer: Packer,
    buffer: Vec<u8>,
    decoded: Vec<Message>,
    messages: u64,
    frames: u64,
    bytes: u64,
}

/// Which of the packer's frame kinds a message travels in: message batches
/// (`batch::is_batched`), heartbeat batches, heartbeat ack batches.
fn lane(message: &Message) -> usize {
    if is_batched(message) {
        0
    } else if matches!(message.body, MessageBody::Heartbeat { .. }) {
        1
    } else {
        2
    }
}

impl WireChecker {
    /// A wire with the frame limits a node runs with by default.
    #[must_use]
    pub fn new() -> WireChecker {
        WireChecker::default()
    }

    /// Messages carried so far.
    #[must_use]
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Frames carried so far.
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes of those frames, headers included.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Carries `sent` (from `from` to `to`, in one step) through the codec and returns
    /// the decoded messages, in the order sent.
    ///
    /// # Errors
    ///
    /// A message dropped by the packer, a frame that does not split or decode, a body
    /// that does not unpack, or messages that come out other than they went in.
    pub fn carry(
        &mut self,
        from: NodeId,
        to: NodeId,
        sent: &[Message],
    ) -> Result<Vec<Message>, Violation> {
        let link = || format!("node {} to node {}", from.0, to.0);
        self.buffer.clear();
        let packed = self
            .packer
            .pack(from, to, sent, &self.limits, usize::MAX, &mut self.buffer);
        if packed.dropped_queue_full > 0 || !packed.dropped_too_large.is_empty() {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: the packer dropped messages an honest shard sent ({packed:?})",
                    link()
                ),
            ));
        }
        self.decoded.clear();
        let mut at = 0;
        while at < self.buffer.len() {
            let split = split_frame(&self.buffer[at..], self.limits.frame_size_max);
            let Ok(Some((payload, consumed))) = split else {
                return Err(Violation::new(
                    NAME,
                    format!("{}: a frame at byte {at} does not split: {split:?}", link()),
                ));
            };
            let body = decode(payload, &self.limits).map_err(|error| {
                Violation::new(
                    NAME,
                    format!(
                        "{}: a frame of {} B does not decode: {error}",
                        link(),
                        payload.len()
                    ),
                )
            })?;
            unpack(body, from, to, &mut self.decoded).map_err(|error| {
                Violation::new(
                    NAME,
                    format!("{}: a frame does not unpack: {error}", link()),
                )
            })?;
            at += consumed;
            self.frames += 1;
        }
        self.bytes += self.buffer.len() as u64;
        // Each lane keeps its order; the lanes are put back together as sent.
        let mut lanes: [VecDeque<Message>; 3] = Default::default();
        for message in self.decoded.drain(..) {
            lanes[lane(&message)].push_back(message);
        }
        let mut delivered = Vec::with_capacity(sent.len());
        for original in sent {
            match lanes[lane(original)].pop_front() {
                Some(decoded) if decoded == *original => delivered.push(decoded),
                Some(decoded) => {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "{}: a {} of group {} came out of the codec changed: {}",
                            link(),
                            original.body.kind(),
                            original.group.0,
                            first_difference(original, &decoded)
                        ),
                    ));
                }
                None => {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "{}: a {} of group {} did not come out of the codec",
                            link(),
                            original.body.kind(),
                            original.group.0
                        ),
                    ));
                }
            }
        }
        if let Some(extra) = lanes.iter().flatten().next() {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: the codec yielded a {} never sent",
                    link(),
                    extra.body.kind()
                ),
            ));
        }
        self.messages += sent.len() as u64;
        Ok(delivered)
    }
}

/// Where the debug forms of two messages first differ, with some context of each
/// (values can be large: never the whole message).
fn first_difference(sent: &Message, received: &Message) -> String {
    const CONTEXT: usize = 60;
    let (a, b) = (format!("{sent:?}"), format!("{received:?}"));
    let at = a
        .chars()
        .zip(b.chars())
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.chars().count().min(b.chars().count()));
    let around = |text: &str| -> String {
        let start = at.saturating_sub(CONTEXT);
        text.chars()
            .skip(start)
            .take(at - start + CONTEXT)
            .collect()
    };
    format!(
        "at character {at}, sent \"…{}…\", received \"…{}…\"",
        around(&a),
        around(&b)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Body, Entry, GroupId, Instance, Nanos, Values};
    use bytes::Bytes;

    fn message(group: u32, body: MessageBody) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            group: GroupId(group),
            body,
        }
    }

    fn accept(group: u32, value: Bytes) -> Message {
        let ballot = Ballot {
            round: 3,
            node: NodeId(1),
        };
        message(
            group,
            MessageBody::Accept {
                ballot,
                chosen_through: Instance(4),
                first: Instance(5),
                entries: vec![Entry {
                    origin: ballot,
                    body: Body::Values(Values::from_buf([value])),
                }],
            },
        )
    }

    fn heartbeat(group: u32) -> Message {
        message(
            group,
            MessageBody::Heartbeat {
                ballot: Ballot {
                    round: 3,
                    node: NodeId(1),
                },
                chosen_through: Instance(4),
                sent_at: Nanos(77),
                checksum_through: Instance(4),
                checksum: 0xabcd,
            },
        )
    }

    // Goal: messages of every lane cross the codec unchanged and are delivered in the
    // order sent, although the packer puts heartbeats in frames of their own.
    #[test]
    fn carries_messages_unchanged_in_order() {
        let mut wire = WireChecker::new();
        let sent = vec![
            heartbeat(1),
            accept(1, Bytes::from_static(b"value")),
            heartbeat(2),
            accept(2, Bytes::from(vec![9u8; 40_000])),
        ];
        let delivered = wire.carry(NodeId(1), NodeId(2), &sent).expect("carried");
        assert_eq!(delivered, sent);
        assert_eq!(wire.messages(), 4);
        assert_eq!(wire.frames(), 2, "one message batch, one heartbeat batch");
        assert!(wire.bytes() > 40_000);
    }

    // Goal: a message the real link could not deliver is a violation, not a silent drop
    // (a value above the decoder's `value_size_max` packs but does not decode).
    #[test]
    fn a_message_the_decoder_refuses_is_a_violation() {
        let mut wire = WireChecker::new();
        let too_large = DecodeLimits::default().value_size_max + 1;
        let sent = vec![accept(1, Bytes::from(vec![1u8; too_large]))];
        let error = wire
            .carry(NodeId(1), NodeId(2), &sent)
            .expect_err("refused by the decoder");
        assert!(error.to_string().contains("does not decode"), "{error}");
    }
}
