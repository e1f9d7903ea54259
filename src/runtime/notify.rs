//! A one-waiter wake-up for tasks of one executor: `notify` before or during a wait
//! makes the wait end once. The shard loop waits on one for inbound messages and write
//! completions; each peer writer waits on one for queued frames.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

/// A one-waiter wake-up (not `Send`: it lives on one executor).
#[derive(Default)]
pub struct Notify {
    notified: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notify")
            .field("notified", &self.notified.get())
            .finish_non_exhaustive()
    }
}

impl Notify {
    /// Ends the current or the next wait.
    pub fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// `Ready` (consuming the notification) if notified since the last wait ended;
    /// otherwise registers `cx`'s waker and returns `Pending`.
    pub fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.notified.replace(false) {
            Poll::Ready(())
        } else {
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }

    /// Waits until notified.
    pub async fn wait(&self) {
        poll_fn(|cx| self.poll_wait(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Notify;

    // Goal: a notification before the wait is not lost, and one wait consumes it.
    // Method: notify, wait (returns at once), then poll again (pending).
    #[test]
    fn notification_is_kept_until_waited() {
        let notify = Notify::default();
        notify.notify();
        futures_lite::future::block_on(notify.wait());
        let waker = futures_lite::future::block_on(std::future::poll_fn(|cx| {
            std::task::Poll::Ready(cx.waker().clone())
        }));
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(notify.poll_wait(&mut cx).is_pending());
    }
}
