//! A small bounded queue with one receiver, for the per-session queues
//! (the hub's real-time items, XMPP's routed stanzas).
//!
//! Why not `tokio::sync::mpsc`: every session holds one or two of these
//! for as long as it is connected, mostly empty. A tokio channel allocates
//! its cache-padded shared state and a first block of 32 slots up front,
//! about 0.75 KiB of resident memory per channel; this queue allocates one
//! small block (about 130 bytes) and its buffer only while items wait.
//! Throughput is not the point: one short, uncontended lock per item is
//! cheap next to what the item costs to encode and write.
//!
//! Semantics follow tokio's bounded channel where the callers rely on
//! them: `try_send` fails with `Full` or `Closed`, `send` waits for room,
//! `recv` returns `None` once every sender is gone and the queue is empty,
//! dropping the receiver closes the queue and drops what was queued, and
//! `recv` is cancel-safe.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use tokio::sync::Notify;

/// Creates a queue holding at most `capacity` items (at least one).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            closed: false,
            receiver: None,
        }),
        room: Notify::new(),
        capacity: capacity.max(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Senders waiting in [`Sender::send`] for room (rare: only pushes
    /// that must not be dropped wait).
    room: Notify,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    /// Live [`Sender`]s; at zero the receiver ends after the last item.
    senders: usize,
    /// The receiver is gone: nothing more is accepted.
    closed: bool,
    /// The receiver's task, while it waits for an item.
    receiver: Option<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the state
        // inconsistent (every change is a single push, pop or flag), so a
        // poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why [`Sender::try_send`] failed; holds the item.
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds `capacity` items.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// The sending end; clones send into the same queue.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or closed.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() >= self.shared.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        let waker = state.receiver.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room while the queue is full; gives the
    /// item back if the receiver is gone.
    pub async fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            // Created before trying, so that room made in between is not
            // missed.
            let room = self.shared.room.notified();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(i)) => return Err(i),
                Err(TrySendError::Full(i)) => {
                    item = i;
                    room.await;
                }
            }
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let waker = if state.senders == 0 {
            state.receiver.take()
        } else {
            None
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    /// Every sender is gone and nothing is left.
    Disconnected,
}

/// The receiving end.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is
    /// empty. Cancel-safe: an item is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            match self.take(&mut state) {
                Ok(item) => Poll::Ready(Some(item)),
                Err(TryRecvError::Disconnected) => Poll::Ready(None),
                Err(TryRecvError::Empty) => {
                    match &mut state.receiver {
                        Some(w) => w.clone_from(cx.waker()),
                        None => state.receiver = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        self.take(&mut state)
    }

    fn take(&self, state: &mut State<T>) -> Result<T, TryRecvError> {
        let was_full = state.items.len() >= self.shared.capacity;
        match state.items.pop_front() {
            Some(item) => {
                if state.items.is_empty() && state.items.capacity() > SHRINK_ABOVE {
                    // A burst is over: an idle session keeps no buffer
                    // sized for it.
                    state.items = VecDeque::new();
                }
                if was_full {
                    self.shared.room.notify_one();
                }
                Ok(item)
            }
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

/// Buffer capacity kept once the queue is empty again: the smallest a
/// `VecDeque` of pointers allocates, so that a session getting one item at
/// a time does not allocate for each, while one that had a burst (the
/// presences of its account's other resources at log-in) does not keep a
/// buffer sized for it.
const SHRINK_ABOVE: usize = 4;

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.receiver = None;
            std::mem::take(&mut state.items)
        };
        // Waiting senders learn that the queue is closed.
        self.shared.room.notify_waiters();
        // Dropped outside the lock: an item's drop may do anything.
        drop(items);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue::Sender")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue::Receiver")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn delivers_in_order_up_to_capacity() {
        let (tx, mut rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn ends_after_the_last_sender_and_item() {
        let (tx, mut rx) = bounded(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        tx2.try_send(2).unwrap();
        drop(tx2);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_send_and_on_close() {
        let (tx, mut rx) = bounded::<u32>(4);
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(7).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        assert_eq!(waiter.await.unwrap(), (Some(7), None));
    }

    #[tokio::test]
    async fn recv_is_cancel_safe() {
        let (tx, mut rx) = bounded(4);
        let r = tokio::time::timeout(Duration::from_millis(10), rx.recv()).await;
        assert!(r.is_err());
        tx.try_send(5).unwrap();
        assert_eq!(rx.recv().await, Some(5));
    }

    #[tokio::test]
    async fn send_waits_for_room_and_fails_when_closed() {
        let (tx, mut rx) = bounded(1);
        tx.try_send(1).unwrap();
        let tx2 = tx.clone();
        let sender = tokio::spawn(async move { tx2.send(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sender.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(sender.await.unwrap(), Ok(()));
        assert_eq!(rx.recv().await, Some(2));

        tx.try_send(3).unwrap();
        let tx3 = tx.clone();
        let sender = tokio::spawn(async move { tx3.send(4).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(sender.await.unwrap(), Err(4));
        assert_eq!(tx.try_send(5), Err(TrySendError::Closed(5)));
    }

    #[tokio::test]
    async fn dropping_the_receiver_drops_the_items() {
        let item = Arc::new(());
        let (tx, rx) = bounded(4);
        tx.try_send(item.clone()).unwrap();
        assert_eq!(Arc::strong_count(&item), 2);
        drop(rx);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[tokio::test]
    async fn an_empty_queue_gives_its_buffer_back() {
        let (tx, mut rx) = bounded(256);
        for i in 0..100 {
            tx.try_send(i).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }
}
