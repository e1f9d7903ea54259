//! The shard's spans: one per request a handle hands it (`propose`, `read`,
//! `read_log`, `status`), each a child of the span the request was asked from (the
//! request's `span`: the client listener's `request` span, or an embedding program's
//! own), so that one request reads as one chain of spans from its connection to its
//! answer. The identifiers that tie it together are fields: `shard`, `group`,
//! `proposal` (the shard's `ProposalId`), `read` (its read or log read id), and
//! `instance` once the leader proposed the value there. Events mark the steps:
//! `queued` (handed to its group), `in flight` (proposed at its instance) and
//! `answered` (`outcome` = `ok`, with the position a value was applied at, or the
//! error's `Error::kind`, the label of the proposal metrics).
//!
//! Cost: every span and event is at DEBUG. Disabled (the default), a span is
//! `Span::none()` after one callsite check, its fields are not evaluated, and
//! [`Placements`] holds nothing and costs one `is_empty` per loop iteration. Enabled,
//! the subscriber's own costs apply; nothing here adds a lock or a hop between threads:
//! the shard's spans are created, recorded and closed on the shard's thread.

use std::collections::HashMap;

use bytes::Bytes;
use tracing::field::Empty;
use tracing::Span;

use crate::paxos::{GroupId, Instance, ProposalId};
use crate::runtime::log_reads::{LogRead, LogReadId, Position};
use crate::runtime::mailbox::Sender;
use crate::runtime::request::{Error, Proposed};
use crate::runtime::shard::{ReadId, Shard};

/// The `propose` span of proposal `id` in `group`, below `parent`.
pub(super) fn propose(parent: &Span, shard: u16, group: GroupId, id: ProposalId) -> Span {
    tracing::debug_span!(
        parent: parent,
        "propose",
        shard,
        group = group.0,
        proposal = id.0,
        instance = Empty
    )
}

/// Marks a request handed to its group (event `queued`).
pub(super) fn queued(span: &Span) {
    tracing::debug!(parent: span, "queued");
}

/// The `read` span of linearizable read `id` of `group`, below `parent`.
pub(super) fn read(parent: &Span, shard: u16, group: GroupId, id: ReadId) -> Span {
    tracing::debug_span!(
        parent: parent,
        "read",
        shard,
        group = group.0,
        read = id.0,
        read_index = Empty
    )
}

/// The `read_log` span of log read `id` of `group` from `from`, below `parent`.
pub(super) fn read_log(
    parent: &Span,
    shard: u16,
    group: GroupId,
    id: LogReadId,
    from: Position,
) -> Span {
    tracing::debug_span!(
        parent: parent,
        "read_log",
        shard,
        group = group.0,
        read = id.0,
        from = %from
    )
}

/// Marks a status request answered, in a `status` span below `parent`.
pub(super) fn status_answered(parent: &Span, shard: u16, groups: usize) {
    let span = tracing::debug_span!(parent: parent, "status", shard);
    tracing::debug!(parent: &span, outcome = "ok", groups, "answered");
}

/// A caller waiting for the shard's answer, and its request's span (closed when the
/// answer is sent: the span lasts as long as the request is in the shard).
pub(super) struct Waiting<T> {
    reply: Sender<Result<T, Error>>,
    span: Span,
    /// Whether `instance` was recorded on the span (a field is recorded once).
    placed: bool,
}

impl<T> Waiting<T> {
    /// `reply`, waiting in `span`.
    pub(super) fn new(reply: Sender<Result<T, Error>>, span: Span) -> Waiting<T> {
        Waiting {
            reply,
            span,
            placed: false,
        }
    }

    /// The request's span.
    pub(super) fn span(&self) -> &Span {
        &self.span
    }

    /// Answers `error` (event `answered`, `outcome` its kind).
    pub(super) fn fail(self, error: Error) {
        tracing::debug!(parent: &self.span, outcome = error.kind(), %error, "answered");
        self.reply.send(Err(error));
    }
}

impl Waiting<Proposed> {
    /// Records that the leader proposed the value at `instance` (event `in flight`).
    fn placed(&mut self, instance: Instance) {
        self.span.record("instance", instance.0);
        self.placed = true;
        tracing::debug!(parent: &self.span, instance = instance.0, "in flight");
    }

    /// Answers proposal `id` of `group`, applied at `proposed.position`.
    pub(super) fn applied(mut self, id: ProposalId, group: GroupId, proposed: Proposed) {
        let Position { instance, index } = proposed.position;
        if !self.placed && !self.span.is_disabled() {
            self.span.record("instance", instance.0);
            self.placed = true;
        }
        tracing::debug!(
            parent: &self.span,
            outcome = "ok",
            proposal = id.0,
            group = group.0,
            instance = instance.0,
            index,
            "answered"
        );
        self.reply.send(Ok(proposed));
    }
}

impl Waiting<Bytes> {
    /// Answers a read served at `read_index` with the state machine's `output`.
    pub(super) fn read(self, read_index: Instance, output: Bytes) {
        self.span.record("read_index", read_index.0);
        tracing::debug!(parent: &self.span, outcome = "ok", size = output.len(), "answered");
        self.reply.send(Ok(output));
    }
}

impl Waiting<LogRead> {
    /// Answers a log read.
    pub(super) fn answer(self, outcome: Result<LogRead, Error>) {
        match outcome {
            Ok(read) => {
                tracing::debug!(
                    parent: &self.span,
                    outcome = "ok",
                    entries = read.entries.len(),
                    next = %read.next,
                    "answered"
                );
                self.reply.send(Ok(read));
            }
            Err(error) => self.fail(error),
        }
    }
}

/// Traced proposals not yet seen in flight. After each loop iteration the shard is
/// asked where each went (`Group::inflight_instance_of`), so the span gets the
/// instance the leader chose when it chose it, not only when the value is applied.
/// Holds only proposals whose span is enabled, and none once answered: bounded by the
/// proposals waiting.
#[derive(Debug, Default)]
pub(super) struct Placements {
    waiting: Vec<(GroupId, ProposalId)>,
}

impl Placements {
    /// Watches proposal `id` of `group` if its span is enabled.
    pub(super) fn watch(&mut self, group: GroupId, id: ProposalId, span: &Span) {
        if !span.is_disabled() {
            self.waiting.push((group, id));
        }
    }

    /// Records the instance of each watched proposal now in flight; forgets those
    /// answered meanwhile.
    pub(super) fn scan(
        &mut self,
        shard: &Shard,
        proposals: &mut HashMap<ProposalId, Waiting<Proposed>>,
    ) {
        if self.waiting.is_empty() {
            return;
        }
        self.waiting.retain(|&(group, id)| {
            let Some(waiting) = proposals.get_mut(&id) else {
                return false;
            };
            match shard.group(group).and_then(|g| g.inflight_instance_of(id)) {
                Some(instance) => {
                    waiting.placed(instance);
                    false
                }
                None => true,
            }
        });
    }
}
