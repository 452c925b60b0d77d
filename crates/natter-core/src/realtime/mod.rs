//! Real-time delivery: the node-wide fan-out of durable events, presence
//! and typing to the sessions connected to this node.
//!
//! How an event reaches a session:
//!
//! 1. A hub method commits a change; the store appended an event to the
//!    log in the same transaction. The method then wakes the **tailer**.
//! 2. The tailer (one task per node) reads the log in position order and,
//!    for each event, finds the local sessions of the conversation's
//!    members and hands each the same `Arc<Outbound>`: one read and one
//!    allocation per event per node, whatever the number of recipients.
//!    Transports encode an `Outbound` once per wire format and reuse the
//!    bytes for every recipient ([`Outbound::encoded`]).
//! 3. Each session has a bounded queue. A session that does not keep up is
//!    dropped from the registry; its transport closes the connection, and
//!    the client resumes from its last cursor, reading what it missed from
//!    the store. Nothing is lost and no one else waits.
//!
//! A session first registers, then catches up from the store up to the
//! present, then follows its queue, skipping what it already sent; the
//! log's positions give one total order, so "skip what is not newer than
//! my cursor" is the whole deduplication.
//!
//! Presence and typing are ephemeral: kept in memory, sent live, never
//! replayed.
//!
//! In a cluster, every node runs its own tailer over the shared log, so a
//! message reaches the recipients' sessions on every node from the store;
//! the bus (see `cluster`) only wakes the other tailers at once and
//! carries what the store does not hold: presence, typing, revocations.

mod cluster;
mod presence;
mod registry;
mod stream;
mod typing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use natter_bus::{Bus, NodeId};

use natter_types::{
    ConversationId, Event, EventKind, EventPos, Message, SessionId, Timestamp, UserId, Username,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{Caller, CoreResult, Hub};

pub use presence::{HEARTBEAT as PRESENCE_HEARTBEAT, LEASE as PRESENCE_LEASE, PresenceStatus};
pub use stream::{PollOutcome, Stream, StreamEnd};

pub(crate) use presence::Presence;
pub(crate) use registry::Registry;
pub(crate) use typing::Typing;

/// How long a typing notification lasts unless renewed.
pub const TYPING_TTL: Duration = Duration::from_secs(6);
/// How long a long-poll client counts as online after its last poll ends.
pub const POLL_PRESENCE_GRACE: Duration = Duration::from_secs(40);
/// How often the tailer reads the log without a wake-up while the bus is
/// down, or when there is only the store to rely on: this bounds the
/// latency of events written by other nodes then.
pub const LOG_POLL: Duration = Duration::from_millis(200);
/// How often the tailer reads the log without a wake-up while the bus is
/// up: wake-ups come from every node then, and this poll only catches a
/// lost one.
pub const LOG_POLL_BUS_UP: Duration = Duration::from_secs(2);
/// Events read from the store per page, when catching up or tailing.
pub(crate) const PAGE: u32 = 500;
/// Groups larger than this do not broadcast receipts: every member's
/// marker moving for every message would cost members² frames. There,
/// delivered markers are not tracked, and a read receipt goes only to the
/// reader's own sessions (to sync unread counts across devices); markers
/// stay readable through the conversation's member list.
pub const RECEIPT_BROADCAST_LIMIT: usize = 32;

/// Something to deliver to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A durable event; it has a cursor and is replayed on resume.
    Event(Event),
    /// A user's presence changed (or, in a snapshot, is as given).
    Presence {
        user: Username,
        status: PresenceStatus,
        last_seen_at: Option<Timestamp>,
    },
    /// A member started or stopped typing.
    Typing {
        conversation_id: ConversationId,
        user: Username,
        active: bool,
    },
    /// The user's blocked list changed on one of their devices: `user`
    /// was blocked (`blocked`) or unblocked; `None` (with `blocked`
    /// false): everyone was unblocked. For the user's own sessions only.
    Blocklist {
        user: Option<Username>,
        blocked: bool,
    },
    /// The session this connection authenticated with was revoked; the
    /// transport closes the connection after sending this.
    SessionRevoked,
    /// Something one transport hands to one of its own connections on
    /// whichever node it is (XMPP: a stanza for a full JID). Opaque to the
    /// core and skipped by other transports: `to` names the connection in
    /// the transport's terms, `payload` is in its encoding.
    Relay { to: String, payload: Arc<str> },
}

/// The wire formats an [`Outbound`] caches encodings for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json = 0,
    Xml = 1,
}

/// An item on its way to sessions, shared by all of them. Each transport
/// encodes it once and every recipient reuses those bytes.
#[derive(Debug)]
pub struct Outbound {
    pub item: Item,
    encoded: [OnceLock<Arc<str>>; 2],
}

impl Outbound {
    pub fn new(item: Item) -> Arc<Self> {
        Arc::new(Self {
            item,
            encoded: Default::default(),
        })
    }

    /// The cursor of a durable event.
    pub fn pos(&self) -> Option<EventPos> {
        match &self.item {
            Item::Event(e) => Some(e.pos),
            _ => None,
        }
    }

    /// The item in `encoding`, made by `encode` the first time only.
    pub fn encoded(&self, encoding: Encoding, encode: impl FnOnce(&Item) -> String) -> Arc<str> {
        self.encoded[encoding as usize]
            .get_or_init(|| Arc::from(encode(&self.item)))
            .clone()
    }

    /// The message of a `message.created` event.
    pub fn created_message(&self) -> Option<&Message> {
        match &self.item {
            Item::Event(Event {
                kind: EventKind::MessageCreated(m),
                ..
            }) => Some(m),
            _ => None,
        }
    }
}

/// Real-time state of the hub.
pub(crate) struct Realtime {
    pub registry: Registry,
    pub presence: Presence,
    pub typing: Typing,
    /// Woken after every commit that appended events.
    pub wake: Notify,
    /// Woken with `wake` for this node's commits: tells the other nodes.
    bus_wake: Notify,
    /// This process's identity on the bus.
    node: NodeId,
    bus: Arc<dyn Bus>,
    /// Notices on their way to the bus.
    outbox: tokio::sync::mpsc::Sender<natter_bus::Notice>,
    outbox_rx: Mutex<Option<tokio::sync::mpsc::Receiver<natter_bus::Notice>>>,
    /// Members of conversations with local recipients, by conversation.
    members: Mutex<HashMap<ConversationId, Arc<Vec<Username>>>>,
    /// Delivered markers waiting to be written, highest seq per member.
    pending_delivered: Mutex<HashMap<(ConversationId, UserId), i64>>,
    delivered_wake: Notify,
    /// Long-poll sessions, by the log-in session polling.
    polls: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<stream::PollSlot>>>>,
}

/// Past this many cached member lists the cache starts over.
const MEMBER_CACHE_MAX: usize = 50_000;

impl Realtime {
    pub fn new(queue: usize, bus: Option<Arc<dyn Bus>>) -> Self {
        let (outbox, outbox_rx) = tokio::sync::mpsc::channel(cluster::OUTBOX);
        Self {
            registry: Registry::new(queue),
            presence: Presence::default(),
            typing: Typing::default(),
            wake: Notify::new(),
            bus_wake: Notify::new(),
            node: NodeId::random(),
            bus: bus.unwrap_or_else(cluster::local_bus),
            outbox,
            outbox_rx: Mutex::new(Some(outbox_rx)),
            members: Mutex::default(),
            pending_delivered: Mutex::default(),
            delivered_wake: Notify::new(),
            polls: Mutex::default(),
        }
    }
}

/// The node's background tasks; dropping this stops them.
pub struct RealtimeTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RealtimeTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Hub {
    pub(crate) fn rt(&self) -> &Realtime {
        &self.inner.realtime
    }

    /// Tells the tailer that new events were committed.
    pub(crate) fn wake_tailer(&self) {
        self.rt().wake.notify_one();
        self.rt().bus_wake.notify_one();
    }

    /// Starts the node's real-time tasks: the tailer that fans events out,
    /// the writer of delivered markers, the sweeper that expires typing
    /// and presence, and the tasks of the cluster bus. Called once.
    pub async fn start_realtime(&self) -> CoreResult<RealtimeTasks> {
        let start = self.store().event_head().await?;
        let outbox = self
            .rt()
            .outbox_rx
            .lock()
            .expect("outbox")
            .take()
            .expect("real-time tasks start once per hub");
        let mut tasks = vec![
            tokio::spawn(self.clone().tail(start)),
            tokio::spawn(self.clone().write_delivered()),
            tokio::spawn(self.clone().sweep()),
        ];
        tasks.extend(self.start_cluster(outbox));
        Ok(RealtimeTasks { tasks })
    }

    async fn tail(self, mut pos: EventPos) {
        // Events can become visible without a wake-up on this node (written
        // by another node whose wake-up was lost, or held back behind an
        // older open transaction), so the log is also polled: rarely while
        // the bus brings wake-ups, often while it does not.
        let mut health = self.rt().bus.health();
        loop {
            let poll = if health.borrow_and_update().is_up() {
                LOG_POLL_BUS_UP
            } else {
                LOG_POLL
            };
            tokio::select! {
                _ = self.rt().wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                // The bus came back or went away: read now (notices may
                // have been lost) and pick the new interval.
                Ok(()) = health.changed() => {}
            }
            loop {
                let page = match self.store().events_after(pos, PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the event log failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                };
                if page.is_empty() {
                    break;
                }
                for event in page {
                    pos = event.pos;
                    self.dispatch(event).await;
                }
            }
        }
    }

    /// Hands one durable event to the local sessions that may see it.
    async fn dispatch(&self, event: Event) {
        let conversation = event.conversation_id;
        let membership_changes = matches!(
            event.kind,
            EventKind::ConversationCreated(_)
                | EventKind::MemberAdded { .. }
                | EventKind::MemberRemoved { .. }
        );
        if membership_changes {
            self.rt()
                .members
                .lock()
                .expect("member cache")
                .remove(&conversation);
        }
        if self.rt().registry.is_empty() {
            return;
        }
        let names = match self.member_names(conversation).await {
            Some(names) => names,
            None => return,
        };
        metrics::counter!("natter_events_dispatched_total").increment(1);
        let out = Outbound::new(Item::Event(event));
        let Item::Event(event) = &out.item else {
            unreachable!("just built as an event")
        };
        // The cached member list itself in the common case: no copy of the
        // names per event.
        let extended;
        let recipients: &[Username] = match &event.kind {
            EventKind::MemberRemoved { user } => {
                let mut r = names.as_ref().clone();
                r.push(user.clone());
                extended = r;
                &extended
            }
            EventKind::Read { user, .. } | EventKind::Delivered { user, .. }
                if names.len() > RECEIPT_BROADCAST_LIMIT =>
            {
                std::slice::from_ref(user)
            }
            _ => &names,
        };
        self.rt().registry.send_to_names(recipients, &out, None);
    }

    /// The member usernames of a conversation, cached.
    pub(crate) async fn member_names(&self, id: ConversationId) -> Option<Arc<Vec<Username>>> {
        if let Some(names) = self.rt().members.lock().expect("member cache").get(&id) {
            return Some(names.clone());
        }
        let members = match self.store().members(id).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "loading members failed");
                return None;
            }
        };
        let names = Arc::new(
            members
                .into_iter()
                .map(|m| m.user.username)
                .collect::<Vec<_>>(),
        );
        let mut cache = self.rt().members.lock().expect("member cache");
        if cache.len() >= MEMBER_CACHE_MAX {
            cache.clear();
        }
        cache.insert(id, names.clone());
        Some(names)
    }

    /// Records that a message reached one of `caller`'s devices; the
    /// delivered marker is written shortly after, coalesced with others.
    pub fn note_delivered(&self, caller: &Caller, message: &Message) {
        if message.sender == caller.user.username {
            return;
        }
        let mut pending = self
            .rt()
            .pending_delivered
            .lock()
            .expect("pending delivered");
        let seq = pending
            .entry((message.conversation_id, caller.user.id))
            .or_insert(0);
        *seq = (*seq).max(message.seq);
        drop(pending);
        self.rt().delivered_wake.notify_one();
    }

    async fn write_delivered(self) {
        // Coalescing window: a burst of messages costs one store write for
        // all of its markers, and a member's several messages in the window
        // one marker move. Delivered ticks are not latency-critical; a
        // fifth of a second is not noticed, and at thousands of messages a
        // second it turns one durable write per message into a few a
        // second. Whoever decides by the stored markers flushes a user's
        // pending ones first (`flush_delivered`).
        const WINDOW: Duration = Duration::from_millis(200);
        loop {
            self.rt().delivered_wake.notified().await;
            tokio::time::sleep(WINDOW).await;
            let batch = std::mem::take(
                &mut *self
                    .rt()
                    .pending_delivered
                    .lock()
                    .expect("pending delivered"),
            );
            self.write_marks(batch).await;
        }
    }

    /// Writes now the delivered markers of `user` that wait for the
    /// coalescing window, so that what is read next sees them. XMPP's
    /// offline delivery at log-in resends what reached none of the user's
    /// devices by the stored markers: without this, a message a device got
    /// a moment ago would come again to the next one.
    pub async fn flush_delivered(&self, user: UserId) {
        let mine: HashMap<_, _> = {
            let mut pending = self
                .rt()
                .pending_delivered
                .lock()
                .expect("pending delivered");
            pending.extract_if(|(_, u), _| *u == user).collect()
        };
        if !mine.is_empty() {
            self.write_marks(mine).await;
        }
    }

    async fn write_marks(&self, batch: HashMap<(ConversationId, UserId), i64>) {
        let mut marks = Vec::with_capacity(batch.len());
        for ((conversation, user), seq) in batch {
            // Large groups get no delivered receipts (see
            // `RECEIPT_BROADCAST_LIMIT`); their membership is cached.
            let small = self
                .member_names(conversation)
                .await
                .is_some_and(|m| m.len() <= RECEIPT_BROADCAST_LIMIT);
            if small {
                marks.push((conversation, user, seq));
            }
        }
        if let Err(e) = self.store().mark_delivered_many(&marks).await {
            tracing::debug!(error = %e, "delivered markers not written");
        }
        self.wake_tailer();
    }

    async fn sweep(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            for (conversation, user) in self.rt().typing.expired() {
                self.broadcast_typing(conversation, &user, false).await;
            }
            let bus_down = !self.rt().bus.health().borrow().is_up();
            let changes = self.rt().presence.expire(bus_down);
            self.apply_presence(changes, true).await;
            self.expire_poll_slots();
        }
    }

    /// Sends an ephemeral item to every session of the given users
    /// connected here.
    pub(crate) fn send_ephemeral(&self, users: &[Username], item: Item, except: Option<&Username>) {
        let out = Outbound::new(item);
        self.rt().registry.send_to_names(users, &out, except);
    }

    /// Closes every local stream of `user` that authenticated with one of
    /// `sessions` (or, with `None`, every stream but `keep`'s).
    pub(crate) fn revoke_streams(&self, user: UserId, sessions: Revoked) {
        self.rt().registry.revoke(user, sessions);
        self.publish(natter_bus::Notice::Revoke {
            user,
            scope: cluster::scope_out(sessions),
        });
    }
}

/// Which sessions a revocation covers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Revoked {
    One(SessionId),
    AllBut(Option<SessionId>),
}
