//! Why a connection closed, and the rate-limited log of closes: every close is counted
//! under its reason in `NetCounters::closes`; its line is written within the reason's
//! budget ([`CLOSE_LOG_BURST`] per [`CLOSE_LOG_INTERVAL`], a `LogBudget`), and the
//! closes past the budget are summed up in one line when the interval is over.
//!
//! Invariant: over any interval, a reason writes at most [`CLOSE_LOG_BURST`] close
//! lines plus one summary, however many connections close.

use std::fmt;
use std::io;
use std::time::Duration;

use super::admission::{Evicted, TooManyFromSource};
use super::handshake::Refusal;
use super::Inner;
use crate::runtime::log_budget::Admit;
use crate::transport::batch::UnpackError;

/// Lines logged per close reason per [`CLOSE_LOG_INTERVAL`]; the rest are counted and
/// summed up in one line when the interval is over.
pub const CLOSE_LOG_BURST: u32 = 3;

/// The window of [`CLOSE_LOG_BURST`].
pub const CLOSE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection was closed: a counter name and, for the log line, the details.
pub(super) struct Closed {
    pub(super) reason: &'static str,
    pub(super) detail: String,
}

impl Closed {
    pub(super) fn new(reason: &'static str, detail: impl fmt::Display) -> Closed {
        Closed {
            reason,
            detail: detail.to_string(),
        }
    }

    pub(super) fn io(error: &io::Error) -> Closed {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            Closed::new("peer closed", "end of stream")
        } else {
            Closed::new("io error", error)
        }
    }

    /// The close of the connection from `node` to `own` that sent a frame `unpack`
    /// refused.
    pub(super) fn unpack(error: &UnpackError, node: u32, own: u32) -> Closed {
        match error {
            UnpackError::Forged { from, to } => Closed::new(
                "forged sender/receiver",
                format_args!(
                    "message from {} to {} on the connection of node {node} to {own}",
                    from.0, to.0
                ),
            ),
            UnpackError::UnexpectedHandshake { kind } => Closed::new("unexpected handshake", kind),
            UnpackError::Unsupported { kind } => Closed::new("unsupported frame", kind),
        }
    }
}

impl From<Refusal> for Closed {
    fn from(refusal: Refusal) -> Closed {
        Closed::new(refusal.reason(), &refusal)
    }
}

impl From<TooManyFromSource> for Closed {
    fn from(refused: TooManyFromSource) -> Closed {
        Closed::new(TooManyFromSource::REASON, refused)
    }
}

impl From<Evicted> for Closed {
    fn from(evicted: Evicted) -> Closed {
        Closed::new(Evicted::REASON, evicted)
    }
}

impl Inner {
    /// Counts one closed (or refused) connection and logs it within the reason's line
    /// budget.
    pub(super) fn closed(&self, peer: &dyn fmt::Display, closed: &Closed, level: log::Level) {
        let admit = self
            .close_log
            .borrow_mut()
            .admit(closed.reason, self.clock.now());
        let mut counters = self.counters.borrow_mut();
        *counters.closes.entry(closed.reason).or_insert(0) += 1;
        let Admit::Log { suppressed, .. } = admit else {
            counters.close_lines_suppressed += 1;
            return;
        };
        counters.close_lines_logged += 1;
        drop(counters);
        if suppressed > 0 {
            self.log_suppressed(closed.reason, suppressed);
        }
        log::log!(
            level,
            "net: node {} shard {}: closed connection with {peer}: {}: {}",
            self.config.node.0,
            self.config.shard,
            closed.reason,
            closed.detail
        );
    }

    /// Logs the summary line of `count` closes of `reason` that were not logged.
    pub(super) fn log_suppressed(&self, reason: &str, count: u64) {
        self.counters.borrow_mut().close_lines_logged += 1;
        log::warn!(
            "net: node {} shard {}: {count} more closes \"{reason}\" not logged in the last {:?}",
            self.config.node.0,
            self.config.shard,
            CLOSE_LOG_INTERVAL
        );
    }
}
