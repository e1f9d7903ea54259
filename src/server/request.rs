//! What one client request becomes: a future of the node's handle that answers it,
//! run inside the request's span. A connection has a `connection` span (`connection`:
//! its id, counted by the listener from 1; `peer`: the client's address); each request
//! a `request` span below it (`request`: the client's request id; `kind`: `propose`,
//! `read`, `read_log`, `transfer_leadership`, `change_membership` or `status`; `group`), with an event when it is `received` and
//! one when it is `answered` (`outcome` = `ok`, with the position for a proposal, or
//! the error's `Error::kind`). The shard's span for the request (`runtime::driver`'s
//! `propose`, `read`, `read_log`, `status`) hangs below the `request` span: the handle
//! takes the current span as the request's parent while the future is polled inside
//! it. So one request reads as one chain, from the socket to the state machine and
//! back (README, "Logs and tracing").
//!
//! Cost: every span and event is at DEBUG; disabled (the default), each is a callsite
//! check and the future runs in `Span::none()`.

use std::future::Future;
use std::pin::Pin;

use tracing::{Instrument, Span};

use crate::api::{Error, NodeHandle};
use crate::client::wire::{Body, NodeStatus};
use crate::paxos::{GroupId, NodeId};

/// A request's answer, to be polled by the connection's driver.
pub(super) type Task = Pin<Box<dyn Future<Output = Body> + Send>>;

/// The `connection` span of connection `id` from `peer`.
pub(super) fn connection_span(id: u64, peer: &str) -> Span {
    tracing::debug_span!("connection", connection = id, peer)
}

/// The `request` span of request `request` (`kind`, in `group`) below `connection`,
/// with its `received` event.
fn request_span(
    connection: &Span,
    request: u64,
    kind: &'static str,
    group: Option<GroupId>,
) -> Span {
    let span = tracing::debug_span!(
        parent: connection,
        "request",
        request,
        kind,
        group = group.map(|g| g.0)
    );
    tracing::debug!(parent: &span, "received");
    span
}

/// The answer to a failed request (event `answered`, `outcome` the error's kind).
fn failed(request: u64, error: &Error) -> Body {
    tracing::debug!(request, outcome = error.kind(), %error, "answered");
    Body::Failed {
        request,
        error: error.into(),
    }
}

/// The answer to a request without a result (event `answered`).
fn done(request: u64, outcome: Result<(), Error>) -> Body {
    match outcome {
        Ok(()) => {
            tracing::debug!(request, outcome = "ok", "answered");
            Body::Done { request }
        }
        Err(error) => failed(request, &error),
    }
}

/// The future that answers a leadership or membership request (`task_of`).
fn admin_task(body: Body, handle: NodeHandle, connection: &Span) -> Task {
    match body {
        Body::TransferLeadership { request, group, to } => {
            let span = request_span(connection, request, "transfer_leadership", Some(group));
            Box::pin(
                async move { done(request, handle.transfer_leadership(group, to).await) }
                    .instrument(span),
            )
        }
        Body::ChangeMembership {
            request,
            group,
            change,
        } => {
            let span = request_span(connection, request, "change_membership", Some(group));
            Box::pin(
                async move { done(request, handle.change_membership(group, change).await) }
                    .instrument(span),
            )
        }
        other => unreachable!("task_of passes only admin requests, not {}", other.name()),
    }
}

/// The future that answers one request (in its span below `connection`), or why the
/// message is not a request.
pub(super) fn task_of(
    body: Body,
    handle: &NodeHandle,
    node: NodeId,
    connection: &Span,
) -> Result<Task, String> {
    let handle = handle.clone();
    Ok(match body {
        Body::Propose {
            request,
            group,
            value,
        } => {
            let span = request_span(connection, request, "propose", Some(group));
            Box::pin(
                async move {
                    match handle.propose(group, value).await {
                        Ok(proposed) => {
                            tracing::debug!(
                                request,
                                outcome = "ok",
                                instance = proposed.position.instance.0,
                                index = proposed.position.index,
                                "answered"
                            );
                            Body::ProposeDone {
                                request,
                                position: proposed.position,
                                output: proposed.output,
                            }
                        }
                        Err(error) => failed(request, &error),
                    }
                }
                .instrument(span),
            )
        }
        Body::Read {
            request,
            group,
            query,
        } => {
            let span = request_span(connection, request, "read", Some(group));
            Box::pin(
                async move {
                    match handle.read(group, query).await {
                        Ok(output) => {
                            tracing::debug!(request, outcome = "ok", "answered");
                            Body::ReadDone { request, output }
                        }
                        Err(error) => failed(request, &error),
                    }
                }
                .instrument(span),
            )
        }
        Body::ReadLog {
            request,
            group,
            from,
            size_max,
        } => {
            let span = request_span(connection, request, "read_log", Some(group));
            Box::pin(
                async move {
                    // The shard caps the size at `LOG_READ_SIZE_MAX`, well within
                    // `answer_frame_size_max`.
                    let size_max = usize::try_from(size_max).unwrap_or(usize::MAX);
                    match handle.read_log(group, from, size_max).await {
                        Ok(read) => {
                            tracing::debug!(
                                request,
                                outcome = "ok",
                                entries = read.entries.len(),
                                "answered"
                            );
                            Body::ReadLogDone { request, read }
                        }
                        Err(error) => failed(request, &error),
                    }
                }
                .instrument(span),
            )
        }
        body @ (Body::TransferLeadership { .. } | Body::ChangeMembership { .. }) => {
            admin_task(body, handle, connection)
        }
        Body::Status { request } => {
            let span = request_span(connection, request, "status", None);
            Box::pin(
                async move {
                    match handle.status().await {
                        Ok(shards) => {
                            tracing::debug!(request, outcome = "ok", "answered");
                            Body::StatusDone {
                                request,
                                status: NodeStatus { node, shards },
                            }
                        }
                        Err(error) => failed(request, &error),
                    }
                }
                .instrument(span),
            )
        }
        other @ (Body::Hello { .. }
        | Body::Challenge { .. }
        | Body::Proof { .. }
        | Body::Welcome { .. }
        | Body::Refused { .. }
        | Body::ProposeDone { .. }
        | Body::ReadDone { .. }
        | Body::ReadLogDone { .. }
        | Body::Failed { .. }
        | Body::StatusDone { .. }
        | Body::Done { .. }) => {
            return Err(format!(
                "a client may not send a {} after the handshake",
                other.name()
            ))
        }
    })
}
