//! The node's side of the cluster bus: what it publishes, what it does
//! with what the other nodes publish.
//!
//! Nothing durable depends on the bus. Messages and every other event
//! reach other nodes through the store's event log; a [`Notice::Wake`]
//! only makes their tailers read it at once instead of at their next poll.
//! Presence, typing, revocations and [`Hub::deliver_to_user`] items are
//! ephemeral: lost notices are repaired by the next presence heartbeat,
//! by typing's expiry, and by each stream's periodic re-check of its
//! session in the store.
//!
//! A node sends every notice through one task, so its notices keep their
//! order, and drops notices rather than queueing them without bound when
//! the bus is slow or down. It subscribes once per topic and skips its own
//! notices, on which it acted before publishing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use natter_bus::{Envelope, Ephemeral, Health, Notice, RevokeScope, Status, Topic};
use natter_types::{SessionId, UserId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::presence::HEARTBEAT;
use super::{Item, Outbound, PresenceStatus, Revoked};
use crate::Hub;

/// Notices waiting for the bus; past this they are dropped.
pub(crate) const OUTBOX: usize = 4096;

pub(crate) fn status_out(s: PresenceStatus) -> Status {
    match s {
        PresenceStatus::Online => Status::Online,
        PresenceStatus::Away => Status::Away,
        PresenceStatus::Offline => Status::Offline,
    }
}

pub(crate) fn status_in(s: Status) -> PresenceStatus {
    match s {
        Status::Online => PresenceStatus::Online,
        Status::Away => PresenceStatus::Away,
        Status::Offline => PresenceStatus::Offline,
    }
}

pub(crate) fn scope_out(r: Revoked) -> RevokeScope {
    match r {
        Revoked::One(s) => RevokeScope::One(s),
        Revoked::AllBut(keep) => RevokeScope::AllBut(keep),
    }
}

fn scope_in(r: RevokeScope) -> Revoked {
    match r {
        RevokeScope::One(s) => Revoked::One(s),
        RevokeScope::AllBut(keep) => Revoked::AllBut(keep),
    }
}

/// The bus form of an ephemeral item; durable events have none, they
/// travel through the store.
fn ephemeral_out(item: &Item) -> Option<Ephemeral> {
    Some(match item {
        Item::Event(_) => return None,
        Item::Presence {
            user,
            status,
            last_seen_at,
        } => Ephemeral::Presence {
            user: user.clone(),
            status: status_out(*status),
            last_seen_at: *last_seen_at,
        },
        Item::Typing {
            conversation_id,
            user,
            active,
        } => Ephemeral::Typing {
            conversation: *conversation_id,
            user: user.clone(),
            active: *active,
        },
        Item::SessionRevoked => Ephemeral::SessionRevoked,
        Item::Blocklist { user, blocked } => Ephemeral::Blocklist {
            user: user.clone(),
            blocked: *blocked,
        },
        Item::Relay { to, payload } => Ephemeral::Relay {
            to: to.clone(),
            payload: payload.to_string(),
        },
    })
}

fn ephemeral_in(e: Ephemeral) -> Item {
    match e {
        Ephemeral::Presence {
            user,
            status,
            last_seen_at,
        } => Item::Presence {
            user,
            status: status_in(status),
            last_seen_at,
        },
        Ephemeral::Typing {
            conversation,
            user,
            active,
        } => Item::Typing {
            conversation_id: conversation,
            user,
            active,
        },
        Ephemeral::SessionRevoked => Item::SessionRevoked,
        Ephemeral::Blocklist { user, blocked } => Item::Blocklist { user, blocked },
        Ephemeral::Relay { to, payload } => Item::Relay {
            to,
            payload: payload.into(),
        },
    }
}

impl Hub {
    /// Queues a notice for the other nodes; dropped if the bus lags far
    /// behind (every notice is a hint that something else repairs).
    pub(crate) fn publish(&self, notice: Notice) {
        if self.rt().outbox.try_send(notice).is_err() {
            metrics::counter!("natter_bus_notices_dropped_total").increment(1);
        }
    }

    /// Delivers an ephemeral item to `user`'s sessions on every node of
    /// the cluster, or only to the one that authenticated with `session`.
    /// Durable events are not delivered this way (they are in the store,
    /// and every node's tailer fans them out); passing one does nothing.
    pub fn deliver_to_user(&self, user: UserId, session: Option<SessionId>, item: Item) {
        let Some(ephemeral) = ephemeral_out(&item) else {
            return;
        };
        self.rt()
            .registry
            .send_to_user(user, session, &Outbound::new(item));
        self.publish(Notice::Deliver {
            user,
            session,
            item: ephemeral,
        });
    }

    /// The bus's health, for readiness: `Err` says why it is down. A node
    /// whose bus is down still delivers everything durable (its tailer
    /// polls the store more often meanwhile); only presence, typing and
    /// instant revocation across nodes wait for it.
    pub fn bus_health(&self) -> Result<(), String> {
        match &*self.rt().bus.health().borrow() {
            Health::Up => Ok(()),
            Health::Down(why) => Err(why.clone()),
        }
    }

    /// What the bus is, for logs.
    pub fn bus_description(&self) -> String {
        self.rt().bus.describe()
    }

    /// Tells the other nodes that this node's users are gone, before a
    /// graceful stop, so they go offline at once rather than after a lease.
    pub async fn leave_cluster(&self) {
        let envelope = Envelope {
            origin: self.rt().node,
            notice: Notice::Presence {
                full: true,
                users: Vec::new(),
            },
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.rt().bus.publish(envelope)).await;
    }

    /// Publishes the notices queued so far and waits until they have left
    /// the process. For a hub without real-time tasks, such as that of an
    /// administrative command run beside the nodes: its revocations and
    /// account disabling then reach every node's streams at once.
    pub async fn flush_bus(&self) {
        let queued = self.rt().outbox_rx.lock().expect("outbox").take();
        let bus = &self.rt().bus;
        if let Some(mut outbox) = queued {
            while let Ok(notice) = outbox.try_recv() {
                let envelope = Envelope {
                    origin: self.rt().node,
                    notice,
                };
                if let Err(e) = bus.publish(envelope).await {
                    tracing::warn!(error = %e, "bus notice not sent");
                }
            }
        }
        bus.flush().await;
    }

    /// Starts the cluster tasks: the publisher, one subscriber per topic
    /// and the presence heartbeat.
    pub(crate) fn start_cluster(&self, outbox: mpsc::Receiver<Notice>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(self.clone().publisher(outbox)),
            tokio::spawn(self.clone().heartbeat()),
        ];
        for topic in Topic::ALL {
            tasks.push(tokio::spawn(self.clone().subscriber(topic)));
        }
        tasks
    }

    async fn publisher(self, mut outbox: mpsc::Receiver<Notice>) {
        let bus = self.rt().bus.clone();
        let origin = self.rt().node;
        loop {
            let notice = tokio::select! {
                // A burst of commits costs one wake notice.
                _ = self.rt().bus_wake.notified() => Notice::Wake,
                n = outbox.recv() => match n {
                    Some(n) => n,
                    None => return,
                },
            };
            if let Err(e) = bus.publish(Envelope { origin, notice }).await {
                metrics::counter!("natter_bus_notices_dropped_total").increment(1);
                tracing::debug!(error = %e, "bus notice dropped");
            }
        }
    }

    /// Reports every local user's presence every [`HEARTBEAT`], and at
    /// once when the bus comes back, so the other nodes converge quickly.
    async fn heartbeat(self) {
        let mut health = self.rt().bus.health();
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Ok(()) = health.changed() => {}
            }
            if !health.borrow_and_update().is_up() {
                continue;
            }
            let users = self.rt().presence.full_report();
            self.publish(Notice::Presence { full: true, users });
        }
    }

    async fn subscriber(self, topic: Topic) {
        let bus = self.rt().bus.clone();
        let me = self.rt().node;
        loop {
            match bus.subscribe(topic).await {
                Ok(mut sub) => {
                    while let Some(envelope) = sub.next().await {
                        if envelope.origin != me {
                            self.on_notice(envelope).await;
                        }
                    }
                    tracing::warn!(topic = topic.name(), "bus subscription ended; renewing");
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = topic.name(), "bus subscription failed; retrying");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn on_notice(&self, Envelope { origin, notice }: Envelope) {
        metrics::counter!("natter_bus_notices_received_total").increment(1);
        match notice {
            Notice::Wake => self.rt().wake.notify_one(),
            Notice::Presence { full, users } => {
                let changes = self.rt().presence.remote_report(origin, full, &users);
                self.apply_presence(changes, false).await;
            }
            Notice::Typing {
                conversation,
                user,
                active,
            } => {
                if self.rt().typing.remote(conversation, &user, active)
                    && !self.rt().registry.is_empty()
                {
                    self.broadcast_typing(conversation, &user, active).await;
                }
            }
            Notice::Revoke { user, scope } => self.rt().registry.revoke(user, scope_in(scope)),
            Notice::Deliver {
                user,
                session,
                item,
            } => {
                let out = Outbound::new(ephemeral_in(item));
                self.rt().registry.send_to_user(user, session, &out);
            }
        }
    }
}

/// The bus a node uses when it has no other: in-process, for one node.
pub(crate) fn local_bus() -> Arc<dyn natter_bus::Bus> {
    Arc::new(natter_bus::LocalBus::new())
}
