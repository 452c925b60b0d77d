//! The cluster bus: how the nodes of one Natter deployment tell each other
//! what the store cannot — "read the log now", who is online, who is
//! typing, which sessions are revoked, and ephemeral items for one user's
//! sessions wherever they are connected.
//!
//! The bus carries **notifications only**. Everything acknowledged to a
//! client is in the store first; a node that misses a notice still
//! delivers every message, from the store, at its next poll of the event
//! log. So an implementation may be at-most-once (core NATS is), and a
//! subscriber that falls behind may drop notices.
//!
//! The [`Bus`] trait is publish/subscribe by [`Topic`] of typed
//! [`Envelope`]s, plus a health signal for readiness. [`LocalBus`] is the
//! in-process implementation of a single node; `natter-bus-nats` is the
//! NATS one. Both pass the same conformance suite (feature `conformance`,
//! macro [`bus_conformance_tests!`]). Notices are domain values here; an
//! implementation that crosses the network encodes them in one place of
//! its own.
//!
//! A node subscribes once per topic (a handful of subscriptions per node)
//! and filters locally against its own sessions, so the bus never sees a
//! connection come or go.

#[cfg(feature = "conformance")]
pub mod conformance;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use natter_types::{ConversationId, SessionId, Timestamp, UserId, Username};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// One node of a cluster, random per process start: a restarted node is a
/// new node, and the others age out the old one's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub Uuid);

impl NodeId {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a notice is about; each node subscribes once to each topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// New events are in the log.
    Wake,
    /// Per-node presence reports.
    Presence,
    /// Typing starts and stops.
    Typing,
    /// Revocations and ephemeral items addressed to a user's sessions.
    Control,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::Wake, Topic::Presence, Topic::Typing, Topic::Control];

    /// A short stable name, for subjects and logs.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Wake => "wake",
            Topic::Presence => "presence",
            Topic::Typing => "typing",
            Topic::Control => "control",
        }
    }
}

/// A notice and the node that sent it. Nodes receive their own notices
/// too and skip them by `origin`: they already acted locally.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub origin: NodeId,
    pub notice: Notice,
}

/// What crosses the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The origin committed events: read the event log now rather than at
    /// the next poll.
    Wake,
    /// The presence of users connected to the origin node, aggregated over
    /// that node's connections. A `full` report lists every user connected
    /// there (users not in it are offline on that node) and doubles as the
    /// node's heartbeat: reports expire after a lease, so a dead node's
    /// users go offline. A partial report changes only the users it names.
    Presence {
        full: bool,
        users: Vec<NodePresence>,
    },
    /// `user` started or stopped typing in `conversation`; renewals are
    /// sent too, so other nodes keep their own expiry in step.
    Typing {
        conversation: ConversationId,
        user: Username,
        active: bool,
    },
    /// Close the user's streams that authenticated with the given sessions.
    Revoke { user: UserId, scope: RevokeScope },
    /// Deliver an ephemeral item to the user's sessions on every node (or
    /// to one session only).
    Deliver {
        user: UserId,
        session: Option<SessionId>,
        item: Ephemeral,
    },
}

impl Notice {
    pub fn topic(&self) -> Topic {
        match self {
            Notice::Wake => Topic::Wake,
            Notice::Presence { .. } => Topic::Presence,
            Notice::Typing { .. } => Topic::Typing,
            Notice::Revoke { .. } | Notice::Deliver { .. } => Topic::Control,
        }
    }
}

/// One user's presence on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePresence {
    pub user: UserId,
    pub username: Username,
    pub status: Status,
}

/// Presence as the bus carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Online,
    Away,
    Offline,
}

/// Which of a user's sessions a revocation closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeScope {
    One(SessionId),
    /// All of them, except one if given.
    AllBut(Option<SessionId>),
}

/// An ephemeral item for a user's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ephemeral {
    Presence {
        user: Username,
        status: Status,
        last_seen_at: Option<Timestamp>,
    },
    Typing {
        conversation: ConversationId,
        user: Username,
        active: bool,
    },
    SessionRevoked,
    /// The user's blocked list changed (see
    /// `natter_core::realtime::Item::Blocklist`).
    Blocklist {
        user: Option<Username>,
        blocked: bool,
    },
    /// For one connection of the user, named in a transport's terms, with
    /// a payload in its encoding (see `natter_core::realtime::Item::Relay`).
    Relay {
        to: String,
        payload: String,
    },
}

/// Whether the bus can carry notices now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Up,
    Down(String),
}

impl Health {
    pub fn is_up(&self) -> bool {
        matches!(self, Health::Up)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("bus: {0}")]
    Other(String),
}

/// Notices of one topic, in the order each publisher sent them.
pub type Subscription = BoxStream<'static, Envelope>;

/// Publish/subscribe between the nodes of a cluster.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `envelope` to every subscriber of its notice's topic on every
    /// node, this one included. At most once: a notice may be lost (the
    /// bus is down, a subscriber lags), never duplicated.
    async fn publish(&self, envelope: Envelope) -> Result<(), BusError>;

    /// Notices of `topic` published from now on. Once this returns, the
    /// subscription is in place: a notice published afterwards by any node
    /// reaches it (unless lost as above). An implementation that
    /// reconnects keeps its subscriptions across reconnections.
    async fn subscribe(&self, topic: Topic) -> Result<Subscription, BusError>;

    /// The current health and its changes, for readiness and for the
    /// hub to poll the store more often while notices may be lost.
    fn health(&self) -> watch::Receiver<Health>;

    /// A short description for logs, e.g. the server address.
    fn describe(&self) -> String;

    /// Waits until what was published has left this process, for a short
    /// process (an administrative command) that publishes and exits.
    async fn flush(&self) {}
}

/// The bus of a single node: a broadcast channel per topic in memory.
#[derive(Clone)]
pub struct LocalBus {
    topics: Arc<HashMap<Topic, broadcast::Sender<Envelope>>>,
    health: watch::Sender<Health>,
}

/// Notices buffered per subscriber before the slowest starts losing some.
const LOCAL_CAPACITY: usize = 4096;

impl LocalBus {
    pub fn new() -> Self {
        let topics = Topic::ALL
            .into_iter()
            .map(|t| (t, broadcast::channel(LOCAL_CAPACITY).0))
            .collect();
        Self {
            topics: Arc::new(topics),
            health: watch::Sender::new(Health::Up),
        }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, envelope: Envelope) -> Result<(), BusError> {
        // No subscriber is not an error: nobody needed the notice.
        let _ = self.topics[&envelope.notice.topic()].send(envelope);
        Ok(())
    }

    async fn subscribe(&self, topic: Topic) -> Result<Subscription, BusError> {
        let rx = self.topics[&topic].subscribe();
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(envelope) => return Some((envelope, rx)),
                    // At most once: a lagging subscriber loses notices.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }

    fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    fn describe(&self) -> String {
        "in-process".into()
    }
}
