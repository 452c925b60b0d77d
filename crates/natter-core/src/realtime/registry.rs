//! The sessions connected to this node, by user, each with a bounded
//! queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use natter_types::{SessionId, UserId, Username};

use super::{Item, Outbound, Revoked};
use crate::queue;

/// Shared between a registered slot and its receiving end.
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    /// Set when the slot was dropped for not keeping up.
    pub overflowed: AtomicBool,
    /// While set, a full queue drops items instead of the slot: the
    /// session is still reading the store, which has them.
    pub catching_up: AtomicBool,
}

struct Slot {
    id: u64,
    session: SessionId,
    tx: queue::Sender<Arc<Outbound>>,
    state: Arc<SlotState>,
}

#[derive(Default)]
struct Inner {
    by_user: HashMap<UserId, Vec<Slot>>,
    names: HashMap<Username, UserId>,
}

pub(crate) struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    queue: usize,
}

/// The receiving end of a registration; unregisters when dropped.
pub(crate) struct Subscription {
    pub id: u64,
    pub rx: queue::Receiver<Arc<Outbound>>,
    pub state: Arc<SlotState>,
}

impl Registry {
    pub fn new(queue: usize) -> Self {
        Self {
            inner: Mutex::default(),
            next_id: AtomicU64::new(1),
            queue: queue.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner.lock().expect("registry").by_user.is_empty()
    }

    /// Registers a session of `user`; it receives items from now on.
    pub fn register(
        &self,
        user: UserId,
        username: &Username,
        session: SessionId,
        catching_up: bool,
    ) -> Subscription {
        let (tx, rx) = queue::bounded(self.queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SlotState::default());
        state.catching_up.store(catching_up, Ordering::SeqCst);
        let mut inner = self.inner.lock().expect("registry");
        inner.names.insert(username.clone(), user);
        inner.by_user.entry(user).or_default().push(Slot {
            id,
            session,
            tx,
            state: state.clone(),
        });
        metrics::gauge!("natter_stream_sessions").increment(1.0);
        Subscription { id, rx, state }
    }

    pub fn unregister(&self, user: UserId, id: u64) {
        let mut inner = self.inner.lock().expect("registry");
        let Some(slots) = inner.by_user.get_mut(&user) else {
            return;
        };
        let before = slots.len();
        slots.retain(|s| s.id != id);
        if slots.len() < before {
            metrics::gauge!("natter_stream_sessions").decrement(1.0);
        }
        if slots.is_empty() {
            inner.by_user.remove(&user);
            inner.names.retain(|_, u| *u != user);
        }
    }

    /// Queues `out` for every session of the named users that are
    /// connected here, except those of `except`.
    pub fn send_to_names(
        &self,
        names: &[Username],
        out: &Arc<Outbound>,
        except: Option<&Username>,
    ) {
        let mut inner = self.inner.lock().expect("registry");
        let users: Vec<UserId> = names
            .iter()
            .filter(|n| Some(*n) != except)
            .filter_map(|n| inner.names.get(n).copied())
            .collect();
        for user in users {
            Self::send_locked(&mut inner, user, out);
        }
    }

    /// Queues `out` for every session of the given users connected here.
    pub fn send_to_ids(&self, users: &[UserId], out: &Arc<Outbound>) {
        let mut inner = self.inner.lock().expect("registry");
        for user in users {
            Self::send_locked(&mut inner, *user, out);
        }
    }

    /// Queues an ephemeral `out` for the sessions of `user` here, or only
    /// the one that authenticated with `session`. A full queue skips it:
    /// ephemeral items are not worth dropping a session for.
    pub fn send_to_user(&self, user: UserId, session: Option<SessionId>, out: &Arc<Outbound>) {
        let inner = self.inner.lock().expect("registry");
        let Some(slots) = inner.by_user.get(&user) else {
            return;
        };
        for slot in slots {
            if session.is_none_or(|s| s == slot.session) {
                let _ = slot.tx.try_send(out.clone());
            }
        }
    }

    fn send_locked(inner: &mut Inner, user: UserId, out: &Arc<Outbound>) {
        let Some(slots) = inner.by_user.get_mut(&user) else {
            return;
        };
        slots.retain(|slot| match slot.tx.try_send(out.clone()) {
            Ok(()) => true,
            Err(queue::TrySendError::Closed(_)) => false,
            Err(queue::TrySendError::Full(_)) => {
                if slot.state.catching_up.load(Ordering::SeqCst) {
                    // The session reads the store until it is current;
                    // a durable item dropped here is read there.
                    true
                } else {
                    slot.state.overflowed.store(true, Ordering::SeqCst);
                    metrics::counter!("natter_stream_slow_consumers_total").increment(1);
                    metrics::gauge!("natter_stream_sessions").decrement(1.0);
                    false
                }
            }
        });
        if slots.is_empty() {
            inner.by_user.remove(&user);
            inner.names.retain(|_, u| *u != user);
        }
    }

    /// Sends `SessionRevoked` to the matching sessions of `user`.
    pub fn revoke(&self, user: UserId, which: Revoked) {
        let out = Outbound::new(Item::SessionRevoked);
        let inner = self.inner.lock().expect("registry");
        let Some(slots) = inner.by_user.get(&user) else {
            return;
        };
        for slot in slots {
            let hit = match which {
                Revoked::One(s) => slot.session == s,
                Revoked::AllBut(keep) => Some(slot.session) != keep,
            };
            if hit {
                // A revoked session must learn it even when its queue is
                // full, so this waits for room off the lock.
                let tx = slot.tx.clone();
                let out = out.clone();
                tokio::spawn(async move {
                    let _ = tx.send(out).await;
                });
            }
        }
    }
}
