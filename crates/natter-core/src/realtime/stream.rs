//! A session's view of the real-time flow: a WebSocket-style [`Stream`]
//! that catches up from a cursor and then follows live items, and the
//! one-shot [`Hub::poll`] of long-polling. Both share the ordering rule:
//! register first, then read the store, then follow the queue, skipping
//! anything not newer than the cursor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use natter_types::{EventPos, UserId};

use super::presence::ConnKey;
use super::registry::Subscription;
use super::{Item, Outbound, PAGE, POLL_PRESENCE_GRACE, PresenceStatus};
use crate::{Caller, CoreResult, Hub};

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The session's queue overflowed: the client must reconnect and resume
    /// from its cursor.
    SlowConsumer,
    /// The store could not be read; the client may resume later.
    Unavailable,
}

/// An open real-time stream of one session.
pub struct Stream {
    hub: Hub,
    caller: Caller,
    sub: Subscription,
    pos: EventPos,
    catching_up: bool,
    buf: VecDeque<Arc<Outbound>>,
}

impl Hub {
    /// Opens a stream for `caller`. With a `resume` cursor, everything after
    /// it is delivered first; without, the stream starts at the present.
    /// The caller counts as online while the stream is open.
    pub async fn open_stream(
        &self,
        caller: &Caller,
        resume: Option<EventPos>,
    ) -> CoreResult<Stream> {
        // Register before reading the store: whatever is committed from now
        // on reaches the queue, whatever came before is in the store.
        let sub = self.rt().registry.register(
            caller.user.id,
            &caller.user.username,
            caller.session,
            true,
        );
        let pos = match resume {
            Some(p) => p,
            None => self.store().event_head().await?,
        };
        self.set_connection_presence(
            caller,
            ConnKey::Stream(sub.id),
            PresenceStatus::Online,
            None,
        )
        .await;
        Ok(Stream {
            hub: self.clone(),
            caller: caller.clone(),
            sub,
            pos,
            catching_up: true,
            buf: VecDeque::new(),
        })
    }
}

impl Stream {
    /// The position of the last durable event handed out.
    pub fn cursor(&self) -> EventPos {
        self.pos
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The next item, in order; durable events are never repeated.
    pub async fn next(&mut self) -> Result<Arc<Outbound>, StreamEnd> {
        loop {
            if let Some(out) = self.buf.pop_front() {
                if let Some(p) = out.pos() {
                    self.pos = p;
                }
                return Ok(out);
            }
            if self.catching_up {
                let page = self
                    .hub
                    .store()
                    .user_events_after(self.caller.user.id, self.pos, PAGE)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "catch-up read failed");
                        StreamEnd::Unavailable
                    })?;
                if page.is_empty() {
                    // Stop letting the queue drop items, then read once
                    // more: anything dropped before this point is in the
                    // store by now.
                    if !self.sub.state.catching_up.swap(false, Ordering::SeqCst) {
                        self.catching_up = false;
                    }
                    continue;
                }
                self.buf
                    .extend(page.into_iter().map(|e| Outbound::new(Item::Event(e))));
                continue;
            }
            match self.sub.rx.recv().await {
                Some(out) => {
                    if let Some(p) = out.pos() {
                        if p <= self.pos {
                            continue;
                        }
                        self.pos = p;
                    }
                    return Ok(out);
                }
                None => {
                    return Err(if self.sub.state.overflowed.load(Ordering::SeqCst) {
                        StreamEnd::SlowConsumer
                    } else {
                        StreamEnd::Unavailable
                    });
                }
            }
        }
    }

    /// The next item if one is queued, without waiting; `None` while the
    /// stream still catches up from the store (and when it ended: `next`
    /// says why). Lets a transport put what is already waiting into the
    /// same write.
    pub fn try_next(&mut self) -> Option<Arc<Outbound>> {
        loop {
            if let Some(out) = self.buf.pop_front() {
                if let Some(p) = out.pos() {
                    self.pos = p;
                }
                return Some(out);
            }
            if self.catching_up {
                return None;
            }
            let out = self.sub.rx.try_recv().ok()?;
            if let Some(p) = out.pos() {
                if p <= self.pos {
                    continue;
                }
                self.pos = p;
            }
            return Some(out);
        }
    }

    /// Sets this connection's presence (online or away).
    pub async fn set_presence(&self, status: PresenceStatus) -> CoreResult<()> {
        if status == PresenceStatus::Offline {
            return Err(natter_types::ValidationError::new(
                "status",
                "a connected session is online or away",
            )
            .into());
        }
        self.hub
            .set_connection_presence(&self.caller, ConnKey::Stream(self.sub.id), status, None)
            .await;
        Ok(())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.hub
            .rt()
            .registry
            .unregister(self.caller.user.id, self.sub.id);
        let hub = self.hub.clone();
        let (user, key) = (self.caller.user.id, ConnKey::Stream(self.sub.id));
        // Announcing offline touches the store; it must not block the drop.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { hub.drop_connection_presence(user, key).await });
        }
    }
}

/// A long-poll session's registration, kept between polls.
pub(crate) struct PollSlot {
    user: UserId,
    sub: Subscription,
    lease_until: Instant,
}

/// The answer to one long-poll.
#[derive(Debug)]
pub struct PollOutcome {
    pub items: Vec<Arc<Outbound>>,
    /// Where the next poll continues.
    pub cursor: EventPos,
    /// More events are waiting: poll again at once.
    pub more: bool,
}

impl Hub {
    /// One long-poll: returns at once with the events after `cursor` if
    /// there are any, otherwise waits up to `timeout` for the next items.
    /// Without a cursor it returns the current position to start from.
    pub async fn poll(
        &self,
        caller: &Caller,
        cursor: Option<EventPos>,
        timeout: Duration,
    ) -> CoreResult<PollOutcome> {
        // Polling keeps the session online for a grace period after it.
        let key = ConnKey::Poll(caller.session);
        let status = self.rt().presence.status_of(caller.user.id, key);
        self.set_connection_presence(caller, key, status, Some(timeout + POLL_PRESENCE_GRACE))
            .await;
        let Some(cursor) = cursor else {
            return Ok(PollOutcome {
                items: Vec::new(),
                cursor: self.store().event_head().await?,
                more: false,
            });
        };
        // The session's registration outlives each poll, so that items
        // arriving between polls wait in its queue; it was made before the
        // first read of the store, so nothing slips between.
        let slot = self.poll_slot(caller);
        let mut slot = slot.lock().await;
        if slot.sub.state.overflowed.load(Ordering::SeqCst) {
            // Dropped as too slow: start a fresh queue; the store has every
            // durable item the old one lost.
            self.rt().registry.unregister(caller.user.id, slot.sub.id);
            slot.sub = self.rt().registry.register(
                caller.user.id,
                &caller.user.username,
                caller.session,
                false,
            );
        }
        let result = self
            .poll_registered(caller, cursor, timeout, &mut slot.sub)
            .await;
        slot.lease_until = Instant::now() + POLL_PRESENCE_GRACE;
        result
    }

    fn poll_slot(&self, caller: &Caller) -> Arc<tokio::sync::Mutex<PollSlot>> {
        let mut polls = self.rt().polls.lock().expect("poll sessions");
        polls
            .entry(caller.session)
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(PollSlot {
                    user: caller.user.id,
                    sub: self.rt().registry.register(
                        caller.user.id,
                        &caller.user.username,
                        caller.session,
                        false,
                    ),
                    lease_until: Instant::now() + POLL_PRESENCE_GRACE,
                }))
            })
            .clone()
    }

    /// Forgets long-poll sessions that stopped polling.
    pub(crate) fn expire_poll_slots(&self) {
        let now = Instant::now();
        let mut polls = self.rt().polls.lock().expect("poll sessions");
        polls.retain(|_, slot| match slot.try_lock() {
            Ok(s) if s.lease_until <= now => {
                self.rt().registry.unregister(s.user, s.sub.id);
                false
            }
            _ => true,
        });
    }

    async fn poll_registered(
        &self,
        caller: &Caller,
        cursor: EventPos,
        timeout: Duration,
        sub: &mut Subscription,
    ) -> CoreResult<PollOutcome> {
        let mut page = self
            .store()
            .user_events_after(caller.user.id, cursor, PAGE + 1)
            .await?;
        if !page.is_empty() {
            let more = page.len() > PAGE as usize;
            page.truncate(PAGE as usize);
            let cursor = page.last().map(|e| e.pos).unwrap_or(cursor);
            return Ok(PollOutcome {
                items: page
                    .into_iter()
                    .map(|e| Outbound::new(Item::Event(e)))
                    .collect(),
                cursor,
                more,
            });
        }
        let mut items = Vec::new();
        let mut pos = cursor;
        let mut keep = |out: Arc<Outbound>, items: &mut Vec<Arc<Outbound>>| match out.pos() {
            Some(p) if p <= pos => {}
            Some(p) => {
                pos = p;
                items.push(out);
            }
            None => items.push(out),
        };
        if let Ok(Some(first)) = tokio::time::timeout(timeout, sub.rx.recv()).await {
            keep(first, &mut items);
            // Whatever else is already queued goes in the same answer.
            while items.len() < PAGE as usize {
                match sub.rx.try_recv() {
                    Ok(out) => keep(out, &mut items),
                    Err(_) => break,
                }
            }
        }
        if sub.state.overflowed.load(Ordering::SeqCst) {
            // Items were dropped: the next poll reads them from the store.
            items.retain(|o| o.pos().is_none());
            return Ok(PollOutcome {
                items,
                cursor,
                more: true,
            });
        }
        Ok(PollOutcome {
            items,
            cursor: pos,
            more: false,
        })
    }

    /// Sets the presence of the caller's long-poll session.
    pub async fn set_poll_presence(
        &self,
        caller: &Caller,
        status: PresenceStatus,
    ) -> CoreResult<()> {
        if status == PresenceStatus::Offline {
            self.drop_connection_presence(caller.user.id, ConnKey::Poll(caller.session))
                .await;
            return Ok(());
        }
        self.set_connection_presence(
            caller,
            ConnKey::Poll(caller.session),
            status,
            Some(super::POLL_PRESENCE_GRACE + Duration::from_secs(30)),
        )
        .await;
        Ok(())
    }
}
