//! The serving side of catch-up: credit-based streaming of chosen values to a lagging
//! peer, from memory or from the WAL.
//!
//! A `CatchUpRequest { from, credit }` says: I hold every chosen value below `from`,
//! send me up to `credit` chunks from `from` on. The group keeps one stream per
//! requesting peer: the chunks sent and not yet acknowledged, and where the next one
//! starts. A request from higher up than the previous one (and not beyond what was
//! sent) acknowledges the chunks that end below its `from` and renews the credit: the
//! stream goes on from where it was, so nothing in flight is sent twice. Any other
//! request (the first, a repeat of the previous `from` after a timeout, one from
//! below) starts the stream over at its `from` (go-back-N: a chunk lost or dropped by
//! the requester is resent). While fewer chunks than the credit are in flight the
//! stream sends the next one: from memory at once, or by a WAL read
//! (`Output::wal_reads`) whose answer (`on_wal_read_done`) sends it and asks for the
//! next read at once, so the read of one chunk overlaps the transfer of the previous.
//!
//! An older peer sends no credit (0): it gets one chunk per request, as before
//! streaming. A request that finds nothing to send while nothing is in flight is
//! answered with an empty chunk: its promise and accepted range count toward a rejoin
//! (`learner`).
//!
//! Invariants (`streams_invariants`):
//! - at most `CATCH_UP_STREAMS_MAX` streams per group; per stream, the chunks in flight
//!   are consecutive and ascending and end below `next`, and the credit is in
//!   `1..=catch_up_credit_max`;
//! - a stream never has more chunks in flight than its credit when it sends one more,
//!   and a chunk holds at most `message_size_max / credit` bytes (`chunk_size_max`;
//!   or one entry): memory and link queue per stream are bounded by about one
//!   `message_size_max`, as with one chunk per request;
//! - only chosen instances are sent; a replica re-learning lost state serves catch-up
//!   (chosen values are facts; serving them is no vote) in chunks marked
//!   `from_voter: false`, which no rejoining replica counts as heard from a voter; a
//!   fenced replica that does not vote serves nothing.

use std::collections::VecDeque;

use super::config::MESSAGE_SIZE_MIN;
use super::group::Group;
use super::message::MessageBody;
use super::output::{Output, RawRun, WalRead, WalReadOutcome, WalReader};
use super::size::Packer;
use super::types::{Entry, Instance, NodeId};

/// Streams one group serves at once; a request from another peer beyond it ends the
/// stream of the lowest node id (that peer's next request starts it over).
pub(super) const CATCH_UP_STREAMS_MAX: usize = 16;

/// One peer's catch-up stream (module docs).
#[derive(Clone, Debug)]
pub(crate) struct CatchUpStream {
    /// The `from` of the peer's last request: it holds everything below.
    acknowledged: Instance,
    /// Chunks sent and not acknowledged, as (first, last) instances, ascending.
    in_flight: VecDeque<(Instance, Instance)>,
    /// The first instance of the next chunk.
    next: Instance,
    /// Chunks the peer accepts in flight (its last request's credit, bounded).
    credit: usize,
}

impl Group {
    /// A peer's catch-up request: acknowledges and renews, or starts over, its stream,
    /// then sends what the credit allows (module docs).
    pub(super) fn on_catch_up_request(
        &mut self,
        from: NodeId,
        first: Instance,
        credit: u32,
        retired: bool,
        out: &mut Output,
    ) {
        if first.0 == 0 {
            self.ignore("catch_up_malformed");
            return;
        }
        if !self.may_serve_catch_up() {
            self.ignore("catch_up_fenced");
            return;
        }
        // A request reports the requester's position: a waiting add counts on it.
        self.note_join_progress(from, first, retired, out);
        let credit = usize::try_from(credit)
            .unwrap_or(usize::MAX)
            .clamp(1, self.config.catch_up_credit_max);
        if !self.catch_up_streams.contains_key(&from)
            && self.catch_up_streams.len() >= CATCH_UP_STREAMS_MAX
        {
            self.ignore("catch_up_stream_evicted");
            self.catch_up_streams.pop_first();
        }
        let stream = self
            .catch_up_streams
            .entry(from)
            .or_insert_with(|| CatchUpStream {
                acknowledged: Instance(0),
                in_flight: VecDeque::new(),
                next: first,
                credit,
            });
        let mut restarted = false;
        if first > stream.acknowledged && first <= stream.next {
            // A renewal: the chunks that end below `first` arrived.
            while stream
                .in_flight
                .front()
                .is_some_and(|(_, last)| *last < first)
            {
                stream.in_flight.pop_front();
            }
        } else {
            // First request, a repeat (something was lost), or from below: over again.
            restarted = !stream.in_flight.is_empty();
            stream.in_flight.clear();
            stream.next = first;
        }
        stream.acknowledged = first;
        stream.credit = credit;
        let idle = stream.in_flight.is_empty();
        if restarted {
            self.counters.catch_up_streams_restarted += 1;
        }
        let sent = self.pump_catch_up(from, out);
        if !sent && idle {
            // Nothing from `first` on (behind the request, or a hole in memory): say
            // so, with the promise and accepted range a rejoining peer counts.
            self.send_chunk(from, first, Vec::new(), out);
        }
    }

    /// Sends `peer`'s stream its next chunks while the credit allows: from memory at
    /// once, or by one WAL read (answered by `on_wal_read_done`). Whether it sent a
    /// chunk or asked for a read.
    fn pump_catch_up(&mut self, peer: NodeId, out: &mut Output) -> bool {
        let mut progressed = false;
        loop {
            let Some(stream) = self.catch_up_streams.get(&peer) else {
                return progressed;
            };
            let next = stream.next;
            if stream.in_flight.len() >= stream.credit || next > self.chosen_through {
                return progressed;
            }
            if next < self.log_floor {
                // Dropped from memory: read back from the WAL (the shard runs one read
                // per group and peer at a time; a repeat while it runs is dropped).
                out.wal_reads.push(WalRead {
                    group: self.config.group,
                    reader: WalReader::Peer(peer),
                    from: next,
                    through: Instance(self.log_floor.0 - 1).min(self.chosen_through),
                    size_max: self.chunk_size_max(peer),
                    count_max: self.config.catch_up_entries_max,
                });
                return true;
            }
            // Bounded by count and bytes.
            let mut entries = Vec::new();
            let mut packer =
                Packer::new(self.chunk_size_max(peer), self.config.catch_up_entries_max);
            let mut instance = next;
            while instance <= self.chosen_through {
                match self.log.get(&instance) {
                    Some(slot) if packer.add(slot.entry.encoded_size()) => {
                        entries.push(slot.entry.clone());
                    }
                    Some(_) => break,
                    // Every chosen instance at or above the floor is in memory; should
                    // one be missing, stop before it and let the peer ask again.
                    None => break,
                }
                instance = instance.next();
            }
            if entries.is_empty() {
                return progressed;
            }
            let last = Instance(next.0 + entries.len() as u64 - 1);
            self.send_chunk(peer, next, entries, out);
            self.note_chunk_sent(peer, next, last);
            progressed = true;
        }
    }

    /// Bytes of one chunk of `peer`'s stream: `message_size_max` split by its credit
    /// (at least `MESSAGE_SIZE_MIN`; a chunk carries at least one entry whatever its
    /// size). The bytes in flight per stream stay those of one stop-and-wait chunk:
    /// the receiving shard refuses messages while its WAL has `wal_pending_size_max`
    /// bytes pending (16 MiB by default, four chunks of 4 MiB), so more bytes in flight
    /// per stream would be lost there and sent again; the credit buys overlap instead.
    fn chunk_size_max(&self, peer: NodeId) -> usize {
        let credit = self.catch_up_streams.get(&peer).map_or(1, |s| s.credit);
        (self.config.message_size_max / credit).max(MESSAGE_SIZE_MIN)
    }

    /// Records a chunk `[first, last]` sent on `peer`'s stream.
    fn note_chunk_sent(&mut self, peer: NodeId, first: Instance, last: Instance) {
        let stream = self
            .catch_up_streams
            .get_mut(&peer)
            .expect("a chunk is sent only on a stream");
        assert_eq!(stream.next, first, "a chunk starts where the stream is");
        assert!(last >= first, "chunk [{}, {}] inverted", first.0, last.0);
        stream.in_flight.push_back((first, last));
        stream.next = last.next();
    }

    /// Sends `to` a catch-up chunk of `entries` (chosen, consecutive from `first`).
    fn send_chunk(&self, to: NodeId, first: Instance, entries: Vec<Entry>, out: &mut Output) {
        let body = MessageBody::CatchUpChunk {
            chosen_through: self.chosen_through,
            promised: self.promised,
            accepted_max: self.accepted_max(),
            first,
            entries,
            from_voter: self.voting,
            membership_changed: self.membership_ever_changed(),
        };
        self.send(out, to, body);
    }

    /// The highest instance at which this replica has accepted anything. The floor
    /// minus one is applied, hence accepted or learned, when the log is empty above it.
    fn accepted_max(&self) -> Instance {
        self.log
            .last_key_value()
            .map_or(Instance(self.log_floor.0 - 1), |(instance, _)| instance)
    }

    /// Whether this replica answers catch-up requests. A replica re-learning lost
    /// state does too: the values it holds for chosen are facts (each was chosen
    /// before it took it for chosen, by catch-up, a verified checkpoint or its own
    /// restored log, as any voter's), and serving them is no vote. Its chunks say
    /// `from_voter: false`, since its promise and accepted range may be below what it
    /// had before the loss: a rejoining replica does not count them among the peers it
    /// heard from (`learner`). Refusing instead left a cluster waiting forever when
    /// only such a replica held the values its voters, restarted below their vote
    /// floors (`checkpoint`), needed before they could promise (seed 20003367). A
    /// fenced replica that does not vote serves nothing: its log diverged.
    fn may_serve_catch_up(&self) -> bool {
        self.voting || !self.fenced
    }

    /// The WAL read for `peer` from `first` returned: sends what it found as the
    /// stream's next chunk, bounded as any catch-up chunk, and goes on with the stream.
    /// A read the stream no longer waits for (it started over meanwhile) is dropped.
    /// Nothing is sent when the WAL had nothing (the peer asks again) or no longer
    /// holds `first` (the group's checkpoint is streamed instead: `transfer`).
    pub(super) fn on_wal_read_done(
        &mut self,
        peer: NodeId,
        first: Instance,
        outcome: WalReadOutcome,
        out: &mut Output,
    ) {
        if !self.may_serve_catch_up() || first.0 == 0 {
            self.ignore("wal_read_refused");
            return;
        }
        if self.catch_up_streams.get(&peer).map(|s| s.next) != Some(first) {
            self.ignore("catch_up_read_stale");
            self.pump_catch_up(peer, out);
            return;
        }
        let found = match outcome {
            WalReadOutcome::Entries(found) => found,
            WalReadOutcome::Raw(runs) => {
                if let Some(last) = self.send_raw_runs(peer, first, runs, out) {
                    self.note_chunk_sent(peer, first, last);
                    self.pump_catch_up(peer, out);
                }
                return;
            }
            WalReadOutcome::Truncated { .. } => {
                self.catch_up_streams.remove(&peer);
                self.on_wal_truncated(peer, first, out);
                return;
            }
        };
        let mut entries = Vec::new();
        let mut packer = Packer::new(self.chunk_size_max(peer), self.config.catch_up_entries_max);
        for (offset, entry) in found.into_iter().enumerate() {
            // Only chosen instances: the read was asked below the floor, and the chosen
            // watermark never moves back.
            if first.0 + offset as u64 > self.chosen_through.0 {
                break;
            }
            if !packer.add(entry.encoded_size()) {
                break;
            }
            entries.push(entry);
        }
        if entries.is_empty() {
            self.ignore("catch_up_wal_empty");
            return;
        }
        self.counters.catch_up_wal_served += 1;
        let last = Instance(first.0 + entries.len() as u64 - 1);
        self.send_chunk(peer, first, entries, out);
        self.note_chunk_sent(peer, first, last);
        self.pump_catch_up(peer, out);
    }

    /// Sends `peer` the raw runs a WAL read found from `first`, one `CatchUpRaw` each,
    /// as read: the reader bounded them together by `message_size_max`
    /// (`WalRead::size_max`) and made them consecutive from `first`. Only chosen
    /// instances leave: the runs stop at the first that is not consecutive or reaches
    /// above the chosen watermark (the read was asked below the floor, so neither
    /// happens; a run is never cut here, this layer does not read records). The last
    /// instance sent, if any.
    fn send_raw_runs(
        &mut self,
        peer: NodeId,
        first: Instance,
        runs: Vec<RawRun>,
        out: &mut Output,
    ) -> Option<Instance> {
        let accepted_max = self.accepted_max();
        let mut next = first;
        let mut last_sent = None;
        for run in runs {
            if run.first_instance != next
                || run.last_instance < run.first_instance
                || run.last_instance > self.chosen_through
            {
                self.ignore("catch_up_raw_not_chosen");
                break;
            }
            next = run.last_instance.next();
            last_sent = Some(run.last_instance);
            let body = MessageBody::CatchUpRaw {
                chosen_through: self.chosen_through,
                promised: self.promised,
                accepted_max,
                run,
                from_voter: self.voting,
                membership_changed: self.membership_ever_changed(),
            };
            self.send(out, peer, body);
        }
        if last_sent.is_none() {
            self.ignore("catch_up_wal_empty");
            return None;
        }
        self.counters.catch_up_wal_served += 1;
        last_sent
    }

    /// Checks the invariants of the module docs; panics with the values if broken.
    pub(super) fn streams_invariants(&self) {
        assert!(
            self.catch_up_streams.len() <= CATCH_UP_STREAMS_MAX,
            "{} catch-up streams > {CATCH_UP_STREAMS_MAX}",
            self.catch_up_streams.len()
        );
        assert!(
            self.catch_up_unsynced() <= self.config.catch_up_credit_max,
            "{} catch-up chunks learned and not durable > catch_up_credit_max {}",
            self.catch_up_unsynced(),
            self.config.catch_up_credit_max
        );
        assert!(
            self.catch_up_ahead.len() <= self.config.catch_up_credit_max,
            "{} catch-up chunks kept ahead > catch_up_credit_max {}",
            self.catch_up_ahead.len(),
            self.config.catch_up_credit_max
        );
        for (peer, stream) in &self.catch_up_streams {
            assert!(
                stream.in_flight.len() <= self.config.catch_up_credit_max,
                "stream to {peer:?}: {} chunks in flight > catch_up_credit_max {}",
                stream.in_flight.len(),
                self.config.catch_up_credit_max
            );
            assert!(
                (1..=self.config.catch_up_credit_max).contains(&stream.credit),
                "stream to {peer:?}: credit {} outside 1..={}",
                stream.credit,
                self.config.catch_up_credit_max
            );
            let mut expected: Option<Instance> = None;
            for (first, last) in &stream.in_flight {
                assert!(first <= last, "stream to {peer:?}: chunk inverted");
                if let Some(expected) = expected {
                    assert_eq!(
                        *first, expected,
                        "stream to {peer:?}: chunks not consecutive"
                    );
                }
                expected = Some(last.next());
            }
            if let Some(end) = expected {
                assert_eq!(
                    end, stream.next,
                    "stream to {peer:?}: next not after chunks"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::paxos::checkpoint::Restore;
    use crate::paxos::message::{Message, MessageBody};
    use crate::paxos::output::Output;
    use crate::paxos::types::{Ballot, Body, Entry, Instance, Membership, NodeId};
    use crate::paxos::{Group, GroupConfig, GroupId, Input, Nanos};

    /// Node 2 of three, holding chosen values 1..=150 in memory, 10 per chunk at most.
    fn server() -> Group {
        let ballot = Ballot {
            round: 1,
            node: NodeId(1),
        };
        let entry = |i: u64| Entry {
            origin: ballot,
            body: Body::Values(smallvec::smallvec![bytes::Bytes::from(
                i.to_le_bytes().to_vec()
            )]),
        };
        let restore = Restore {
            accepted: (1..=150u64)
                .map(|i| (Instance(i), (ballot, entry(i))))
                .collect(),
            chosen_through: Instance(150),
            ..Restore::default()
        };
        let voters = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]);
        let mut config = GroupConfig::new(NodeId(2), GroupId(1), voters);
        config.catch_up_entries_max = 10;
        config.catch_up_credit_max = 4;
        Group::new(config, restore, Nanos(0))
    }

    /// Node 3, empty, asking node 2 with a credit of 4.
    fn requester() -> Group {
        let voters = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]);
        let mut config = GroupConfig::new(NodeId(3), GroupId(1), voters);
        config.catch_up_entries_max = 10;
        config.catch_up_credit_max = 4;
        Group::new(config, Restore::default(), Nanos(0))
    }

    /// One step of `group` on `message`, its invariants checked.
    fn deliver(group: &mut Group, message: Message) -> Output {
        let mut out = Output::default();
        group.step(Nanos(2), Input::Message(message), &mut out);
        group.invariants();
        out
    }

    /// The (from, credit) of the catch-up requests in `messages`, all to node 2.
    fn requests(messages: &[Message]) -> Vec<(u64, u32)> {
        messages
            .iter()
            .map(|m| match m.body {
                MessageBody::CatchUpRequest { from, credit, .. } if m.to == NodeId(2) => {
                    (from.0, credit)
                }
                ref other => panic!("not a request to node 2: {other:?}"),
            })
            .collect()
    }

    /// Node 3's request to node 2; returns the (first, last) instances of the chunks
    /// node 2 sends at once.
    fn request(group: &mut Group, from: u64, credit: u32) -> Vec<(u64, u64)> {
        let message = Message {
            group: GroupId(1),
            from: NodeId(3),
            to: NodeId(2),
            body: MessageBody::CatchUpRequest {
                from: Instance(from),
                credit,
                retired: false,
            },
        };
        let mut out = Output::default();
        group.step(Nanos(1), Input::Message(message), &mut out);
        group.invariants();
        assert!(
            out.wal_reads.is_empty(),
            "all in memory: {:?}",
            out.wal_reads
        );
        out.send
            .into_iter()
            .map(|m| match m.body {
                MessageBody::CatchUpChunk { first, entries, .. } => {
                    (first.0, first.0 + entries.len() as u64 - 1)
                }
                other => panic!("not a chunk: {other:?}"),
            })
            .collect()
    }

    // Goal: a request without credit (an older peer) gets one chunk; a credit of 4
    // gets four consecutive chunks; a renewal from higher up acknowledges the chunks
    // below it and sends only what the credit frees, never one in flight again; a
    // repeated `from` (a lost chunk) starts the stream over; the credit is bounded by
    // the server's `catch_up_credit_max`.
    // Method: a server of 150 chosen values in memory, 10 per chunk; node 3 asks.
    #[test]
    fn credit_bounds_the_chunks_in_flight() {
        let mut group = server();
        assert_eq!(
            request(&mut group, 1, 0),
            vec![(1, 10)],
            "no credit: one chunk"
        );
        assert_eq!(
            request(&mut group, 11, 4),
            vec![(11, 20), (21, 30), (31, 40), (41, 50)]
        );
        // Two chunks arrived: two more leave, from where the stream was.
        assert_eq!(request(&mut group, 31, 4), vec![(51, 60), (61, 70)]);
        // Nothing arrived since (the same `from`): over again from 31.
        assert_eq!(
            request(&mut group, 31, 4),
            vec![(31, 40), (41, 50), (51, 60), (61, 70)]
        );
        // A credit above the server's bound is cut to it (and chunks shrink with
        // the credit, but these 10-entry chunks are far below either size).
        let chunks = request(&mut group, 71, u32::MAX);
        assert_eq!(chunks, vec![(71, 80), (81, 90), (91, 100), (101, 110)]);
        // Acknowledging everything: the rest; then nothing is left to send, and a
        // request with nothing in flight is answered with an empty chunk (its report
        // counts toward a rejoin), shown here as (151, 150).
        assert_eq!(
            request(&mut group, 111, 4),
            vec![(111, 120), (121, 130), (131, 140), (141, 150)]
        );
        assert_eq!(request(&mut group, 151, 4), vec![(151, 150)]);
    }

    // Goal: chunks of a stream that overtake one another on the network are all
    // learned once the first arrives, and the renewal then acknowledges every one, so
    // the server sends only new chunks. Ignoring the chunks ahead as gaps left the
    // server counting them in flight until the requester's timer restarted the stream,
    // once per reordering: a lagging replica caught up slower than the cluster chose.
    // Method: node 2 streams four chunks to node 3 (credit 4), delivered last first;
    // node 3's renewal goes back to node 2.
    #[test]
    fn chunks_overtaken_are_learned_and_acknowledged() {
        let mut server = server();
        let mut requester = requester();
        let ask = first_ask(&requester);
        let mut out = Output::default();
        server.step(Nanos(1), Input::Message(ask), &mut out);
        let mut chunks = std::mem::take(&mut out.send);
        assert_eq!(chunks.len(), 4, "four chunks of credit: {chunks:?}");
        let mut notices = Vec::new();
        while let Some(chunk) = chunks.pop() {
            let mut out = Output::default();
            requester.step(Nanos(2), Input::Message(chunk), &mut out);
            requester.invariants();
            assert!(
                out.send.is_empty(),
                "four chunks not durable: no credit left"
            );
            notices.append(&mut out.send_after_persist);
        }
        assert_eq!(requester.chosen_through, Instance(40), "all four learned");
        // Once they are durable, the notice renews the credit.
        let notice = notices.pop().expect("learning sends a durability notice");
        let mut out = Output::default();
        requester.step(Nanos(2), Input::Message(notice), &mut out);
        let renewal = out.send.pop().expect("durability renews the credit");
        assert!(
            matches!(renewal.body, MessageBody::CatchUpRequest { from, .. } if from == Instance(41)),
            "renewal from 41: {renewal:?}"
        );
        let mut out = Output::default();
        server.step(Nanos(3), Input::Message(renewal), &mut out);
        let sent: Vec<(u64, u64)> = out
            .send
            .into_iter()
            .map(|m| match m.body {
                MessageBody::CatchUpChunk { first, entries, .. } => {
                    (first.0, first.0 + entries.len() as u64 - 1)
                }
                other => panic!("not a chunk: {other:?}"),
            })
            .collect();
        assert_eq!(sent, vec![(41, 50), (51, 60), (61, 70), (71, 80)]);
    }

    // Goal: the requester renews at once when a chunk teaches something, granting the
    // credit less the chunks learned and not yet durable (3, 2, 1, then nothing), and
    // the durability notice sent after each chunk's records renews when nothing else
    // did; a notice with nothing new to acknowledge asks nothing (a repeated `from`
    // would make the server start over).
    // Method: node 2 streams four chunks to node 3 (credit 4), delivered in order
    // while node 3's disk holds every notice; then the notices arrive.
    #[test]
    fn renewals_grant_the_credit_not_durable() {
        let mut server = server();
        let mut requester = requester();
        let ask = first_ask(&requester);
        let chunks = deliver(&mut server, ask).send;
        assert_eq!(chunks.len(), 4, "four chunks of credit: {chunks:?}");
        let mut renewals = Vec::new();
        let mut notices = Vec::new();
        for chunk in chunks {
            let mut out = deliver(&mut requester, chunk);
            renewals.push(requests(&out.send));
            notices.append(&mut out.send_after_persist);
        }
        assert_eq!(
            renewals,
            vec![vec![(11, 3)], vec![(21, 2)], vec![(31, 1)], vec![]],
            "at once, less what is not durable"
        );
        assert_eq!(requester.catch_up_unsynced(), 4);
        assert!(
            notices.iter().all(|m| m.to == NodeId(3)),
            "notices go to the requester itself: {notices:?}"
        );
        // The first chunk is durable: one chunk of credit, from 41 (the fourth chunk
        // was not acknowledged yet); then nothing new to acknowledge, so the other
        // notices ask nothing.
        let answers: Vec<Vec<(u64, u32)>> = notices
            .into_iter()
            .map(|m| requests(&deliver(&mut requester, m).send))
            .collect();
        assert_eq!(answers, vec![vec![(41, 1)], vec![], vec![], vec![]]);
        assert_eq!(requester.catch_up_unsynced(), 0);
        assert_eq!(requester.catch_up_credit(), 4);
    }

    // Goal: with a disk slower than the network, the chunks on the way plus those
    // learned and not durable never exceed the credit, the bound is reached (the
    // disk is the limit), and the stream reaches the end without a timeout or a
    // restart: a renewal waits on no sync, and the notices keep it going.
    // Method: node 2 streams 150 values in chunks of 10 to node 3, one chunk
    // delivered per round; node 3's disk syncs (its notices arrive) every third round.
    #[test]
    fn chunks_in_flight_and_not_durable_stay_within_the_credit() {
        let mut server = server();
        let mut requester = requester();
        let mut to_server = std::collections::VecDeque::from([first_ask(&requester)]);
        let mut to_requester = std::collections::VecDeque::new();
        let mut disk = Vec::new();
        let mut outstanding_max = 0;
        for round in 1..=200 {
            while let Some(request) = to_server.pop_front() {
                to_requester.extend(deliver(&mut server, request).send);
            }
            if let Some(chunk) = to_requester.pop_front() {
                let mut out = deliver(&mut requester, chunk);
                to_server.extend(out.send);
                disk.append(&mut out.send_after_persist);
            }
            if round % 3 == 0 {
                for notice in std::mem::take(&mut disk) {
                    to_server.extend(deliver(&mut requester, notice).send);
                }
            }
            let outstanding = to_requester.len() + requester.catch_up_unsynced();
            assert!(
                outstanding <= 4,
                "round {round}: {outstanding} chunks > credit 4"
            );
            outstanding_max = outstanding_max.max(outstanding);
            if requester.chosen_through == Instance(150) {
                assert_eq!(outstanding_max, 4, "the bound was reached");
                assert_eq!(server.counters.catch_up_streams_restarted, 0);
                return;
            }
        }
        panic!("stalled at {}", requester.chosen_through.0);
    }

    // Goal: a chunk the requester's shard refused for want of WAL room restarts the
    // stream at the next instance once what the WAL held is durable, not when the
    // retransmit timer runs out; the refusals of the chunks after it ask nothing more;
    // the server then sends from the refused chunk on.
    // Method: node 2 streams four chunks to node 3 (credit 4); node 3 learns the
    // first, its shard refuses the second and the fourth, the third arrives (kept
    // ahead of the gap); then the notice of the refusal arrives and node 3's request
    // goes to node 2.
    #[test]
    fn a_refused_chunk_restarts_the_stream_once_there_is_room() {
        let mut server = server();
        let mut requester = requester();
        let ask = first_ask(&requester);
        let mut chunks = deliver(&mut server, ask).send.into_iter();
        let first = deliver(&mut requester, chunks.next().expect("four chunks"));
        assert_eq!(requests(&first.send), vec![(11, 3)], "learned: renewed");
        to_server_all(&mut server, first.send);
        let refuse = |requester: &mut Group, first: u64| {
            let mut out = Output::default();
            let input = Input::CatchUpRefused {
                from: NodeId(2),
                first: Instance(first),
            };
            requester.step(Nanos(3), input, &mut out);
            requester.invariants();
            out
        };
        let refused = refuse(&mut requester, 11);
        assert!(refused.send.is_empty(), "nothing until there is room");
        let mut notice = refused.send_after_persist;
        assert_eq!(notice.len(), 1, "one notice, after what the WAL holds");
        let _second = chunks.next();
        let third = deliver(&mut requester, chunks.next().expect("four chunks"));
        assert!(third.send.is_empty(), "ahead of the gap: nothing learned");
        let again = refuse(&mut requester, 31);
        assert!(
            again.send.is_empty() && again.send_after_persist.is_empty(),
            "a refusal while the notice is on its way asks nothing more"
        );
        let restart = deliver(&mut requester, notice.pop().expect("one notice"));
        assert_eq!(
            requests(&restart.send),
            vec![(11, 4)],
            "the previous `from` again: the server starts over there"
        );
        let restarted = server.counters.catch_up_streams_restarted;
        let mut out = Output::default();
        for message in restart.send {
            server.step(Nanos(4), Input::Message(message), &mut out);
        }
        assert_eq!(server.counters.catch_up_streams_restarted, restarted + 1);
        let sent: Vec<u64> = out
            .send
            .iter()
            .map(|m| match m.body {
                MessageBody::CatchUpChunk { first, .. } => first.0,
                ref other => panic!("not a chunk: {other:?}"),
            })
            .collect();
        assert_eq!(sent, vec![11, 21, 31, 41], "from the refused chunk on");
    }

    /// Node 3's first request to node 2, from instance 1 with its full credit.
    fn first_ask(requester: &Group) -> Message {
        Message {
            group: GroupId(1),
            from: NodeId(3),
            to: NodeId(2),
            body: requester.catch_up_request(Instance(1)),
        }
    }

    /// Delivers `messages` to the server, dropping what it sends.
    fn to_server_all(server: &mut Group, messages: Vec<Message>) {
        for message in messages {
            deliver(server, message);
        }
    }
}
