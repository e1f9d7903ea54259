//! The shard's reads (pure): linearizable reads of a group's state machine, answered
//! once their read index is applied under the lease, and reads of a group's chosen log
//! (`runtime::log_reads`), answered from memory, through the WAL, or once a value is
//! chosen at their position.

use super::{ReadDone, ReadId, ReadRefused, Shard};
use crate::paxos::{Group, GroupId, Instance, Nanos, Role};
use crate::runtime::log_reads::{Decision, LogReadAsk};

impl Shard {
    /// A log read: answered, sent to the WAL (held until the records before it are
    /// durable, as a peer's catch-up read), or left waiting for a value.
    pub(super) fn on_log_read(&mut self, ask: LogReadAsk) {
        let group = self.groups.get(&ask.group);
        let count_max = self.config.log_reads_wal_count_max;
        let decision = self.log_reads.on_ask(ask, group, count_max);
        self.on_log_read_decision(decision);
    }

    /// Executes a log read's decision: its answer, or its WAL read held until the
    /// records before it are durable.
    pub(super) fn on_log_read_decision(&mut self, decision: Decision) {
        match decision {
            Decision::Done(done) => self.pending_log_reads.push(done),
            Decision::Wal(read) => {
                let inserted = self.wal_reads_in_flight.insert((read.group, read.reader));
                assert!(inserted, "log read {:?} asked twice", read.reader);
                self.wal_reads_held.push_back((self.lsn_planned(), read));
            }
            Decision::Waiting => {}
        }
    }

    /// Decides the log reads that waited for a value now chosen, and answers those
    /// whose wait ended.
    pub(super) fn serve_log_reads(&mut self, now: Nanos) {
        for id in self.log_reads.waiting_groups() {
            let group = self
                .groups
                .get(&id)
                .expect("log reads wait only on groups of the shard");
            for ask in self.log_reads.take_ready(group) {
                self.on_log_read(ask);
            }
        }
        let groups = &self.groups;
        let expired = self.log_reads.expire(now, |id| {
            groups.get(&id).map_or(Instance(0), Group::chosen_through)
        });
        self.pending_log_reads.extend(expired);
    }

    /// A read: refused at once, or queued until its read index is applied.
    pub(super) fn on_read(&mut self, now: Nanos, group: GroupId, id: ReadId) {
        let outcome = match self.groups.get(&group) {
            None => Err(ReadRefused::NoSuchGroup),
            Some(state) if state.role() != Role::Leader => Err(ReadRefused::NotLeader {
                hint: state.leader_hint(),
            }),
            Some(_) if self.reads.len() >= self.config.reads_pending_count_max => {
                Err(ReadRefused::Overloaded {
                    pending_count: self.reads.len(),
                })
            }
            Some(state) => match state.read_index(now) {
                None => Err(ReadRefused::LeaseNotHeld),
                // Served at the end of the flush, after what is applied meanwhile.
                Some(index) => {
                    self.reads.push((id, group, index));
                    return;
                }
            },
        };
        self.counters.reads_refused += 1;
        self.pending_reads.push(ReadDone { id, group, outcome });
    }

    /// Answers every waiting read whose index is applied; refuses those whose group
    /// lost the lead or the lease meanwhile (a read may wait only under the lease).
    pub(super) fn serve_reads(&mut self, now: Nanos) {
        let mut index = 0;
        while index < self.reads.len() {
            let (id, group, read_index) = self.reads[index];
            let state = self
                .groups
                .get(&group)
                .expect("reads are queued only for groups of the shard");
            let outcome = if state.role() != Role::Leader {
                Err(ReadRefused::NotLeader {
                    hint: state.leader_hint(),
                })
            } else if state.applied_through() >= read_index {
                Ok(read_index)
            } else if state.read_index(now).is_none() {
                Err(ReadRefused::LeaseNotHeld)
            } else {
                index += 1;
                continue;
            };
            self.reads.remove(index);
            match outcome {
                Ok(_) => self.counters.reads_served += 1,
                Err(_) => self.counters.reads_refused += 1,
            }
            self.pending_reads.push(ReadDone { id, group, outcome });
        }
    }
}
