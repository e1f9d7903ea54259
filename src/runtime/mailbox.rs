//! The two places where a shard meets other threads: the [`Mailbox`] through which
//! handles (any thread, any async runtime) hand requests to a shard, and the
//! [`oneshot`] replies through which the shard answers them.
//!
//! Both are a `Mutex` around a small state plus a `Waker`, so they work with every
//! executor: the shard's glommio executor supports wakers from foreign threads, and a
//! handle's reply future can be awaited on tokio, on a plain thread (`block_on`), or on
//! glommio itself. The shard drains its whole mailbox with one lock per loop
//! iteration, so the lock is taken once per batch on the shard's side.
//!
//! Invariants:
//! - a mailbox holds at most `capacity` requests; `push` beyond that is refused (the
//!   caller gets the request back) rather than growing without bound;
//! - once closed, a mailbox refuses every push and a reply whose sender is dropped
//!   resolves to `Err(Canceled)`, so no caller waits forever on a stopped shard.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::support::lock;

/// Why a push was refused; the request comes back.
#[derive(Debug)]
pub enum PushError<T> {
    /// The mailbox holds `capacity` requests already.
    Full(T),
    /// The shard has stopped.
    Closed(T),
}

struct Inbox<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    closed: bool,
    capacity: usize,
}

/// A bounded multi-producer queue of requests toward one shard. Cloning shares it.
pub struct Mailbox<T> {
    inner: Arc<Mutex<Inbox<T>>>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Mailbox<T> {
        Mailbox {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inbox = lock(&self.inner);
        f.debug_struct("Mailbox")
            .field("queued", &inbox.queue.len())
            .field("closed", &inbox.closed)
            .finish_non_exhaustive()
    }
}

impl<T> Mailbox<T> {
    /// An open mailbox holding at most `capacity` requests.
    #[must_use]
    pub fn new(capacity: usize) -> Mailbox<T> {
        Mailbox {
            inner: Arc::new(Mutex::new(Inbox {
                queue: VecDeque::new(),
                waker: None,
                closed: false,
                capacity: capacity.max(1),
            })),
        }
    }

    /// Queues `request` and wakes the shard.
    ///
    /// # Errors
    ///
    /// Gives the request back when the mailbox is full or closed.
    pub fn push(&self, request: T) -> Result<(), PushError<T>> {
        let waker = {
            let mut inbox = lock(&self.inner);
            if inbox.closed {
                return Err(PushError::Closed(request));
            }
            if inbox.queue.len() >= inbox.capacity {
                return Err(PushError::Full(request));
            }
            inbox.queue.push_back(request);
            inbox.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `request` even beyond `capacity` (control requests: stop, status, which
    /// must not be refused because proposals fill the mailbox).
    ///
    /// # Errors
    ///
    /// Gives the request back when the mailbox is closed.
    pub fn push_control(&self, request: T) -> Result<(), T> {
        let waker = {
            let mut inbox = lock(&self.inner);
            if inbox.closed {
                return Err(request);
            }
            inbox.queue.push_back(request);
            inbox.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Moves every queued request into `out`; when there is none, registers `waker`
    /// to be woken by the next push. Returns how many were moved.
    pub fn drain(&self, out: &mut Vec<T>, waker: &Waker) -> usize {
        let mut inbox = lock(&self.inner);
        let count = inbox.queue.len();
        if count == 0 {
            if !inbox.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                inbox.waker = Some(waker.clone());
            }
        } else {
            out.extend(inbox.queue.drain(..));
        }
        count
    }

    /// Refuses every later push and returns what was still queued.
    pub fn close(&self) -> Vec<T> {
        let mut inbox = lock(&self.inner);
        inbox.closed = true;
        inbox.waker = None;
        inbox.queue.drain(..).collect()
    }

    /// Whether the mailbox was closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }
}

/// The sender was dropped without sending: the shard stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canceled;

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
}

/// The sending half of a one-shot reply.
pub struct Sender<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// The receiving half of a one-shot reply: a future of `Result<T, Canceled>`.
pub struct Receiver<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Receiver")
    }
}

/// A one-shot reply channel.
#[must_use]
pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        sender_gone: false,
    }));
    (
        Sender {
            slot: Arc::clone(&slot),
        },
        Receiver { slot },
    )
}

impl<T> Sender<T> {
    /// Delivers `value` and wakes the receiver (a dropped receiver just drops it).
    pub fn send(self, value: T) {
        let waker = {
            let mut slot = lock(&self.slot);
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = lock(&self.slot);
            slot.sender_gone = true;
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.slot);
        if let Some(value) = slot.value.take() {
            return Poll::Ready(Ok(value));
        }
        if slot.sender_gone {
            return Poll::Ready(Err(Canceled));
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: replies cross threads, and a dropped sender resolves the receiver.
    // Method: send from another thread and block on the receiver; drop a sender.
    #[test]
    fn oneshot_delivers_and_cancels() {
        let (tx, rx) = oneshot::<u32>();
        let thread = std::thread::spawn(move || tx.send(7));
        assert_eq!(futures_lite::future::block_on(rx), Ok(7));
        thread.join().expect("sender thread");
        let (tx, rx) = oneshot::<u32>();
        drop(tx);
        assert_eq!(futures_lite::future::block_on(rx), Err(Canceled));
    }

    // Goal: the mailbox is bounded, drains in order, and refuses pushes once closed.
    // Method: fill it to capacity, push once more, drain, close, push again.
    #[test]
    fn mailbox_bounds_and_closes() {
        let mailbox = Mailbox::new(2);
        mailbox.push(1).expect("room");
        mailbox.push(2).expect("room");
        assert!(matches!(mailbox.push(3), Err(PushError::Full(3))));
        let mut out = Vec::new();
        let waker = futures_lite::future::block_on(std::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        assert_eq!(mailbox.drain(&mut out, &waker), 2);
        assert_eq!(out, vec![1, 2]);
        mailbox.push(4).expect("room");
        assert_eq!(mailbox.close(), vec![4]);
        assert!(matches!(mailbox.push(5), Err(PushError::Closed(5))));
    }
}
