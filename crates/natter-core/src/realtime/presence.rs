//! Presence: who is online, from the connections each user has open here.
//!
//! A user is online while any connection says online, away while all say
//! away, offline with none. A WebSocket counts while it is open; a
//! long-poll client holds a lease renewed by every poll, so it stays online
//! between polls and goes offline once it stops polling.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use natter_types::{SessionId, UserId, Username};

use super::Item;
use crate::{Caller, CoreResult, Hub, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

impl PresenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }
}

/// One connection's claim on its user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ConnKey {
    Stream(u64),
    Poll(SessionId),
}

#[derive(Debug)]
struct Conn {
    status: PresenceStatus,
    lease_until: Option<Instant>,
}

#[derive(Debug)]
struct UserPresence {
    username: Username,
    conns: HashMap<ConnKey, Conn>,
    shown: PresenceStatus,
}

impl UserPresence {
    fn aggregate(&self) -> PresenceStatus {
        if self
            .conns
            .values()
            .any(|c| c.status == PresenceStatus::Online)
        {
            PresenceStatus::Online
        } else if self.conns.is_empty() {
            PresenceStatus::Offline
        } else {
            PresenceStatus::Away
        }
    }

    /// The new status if it differs from the one last shown.
    fn changed(&mut self) -> Option<PresenceStatus> {
        let now = self.aggregate();
        (now != self.shown).then(|| {
            self.shown = now;
            now
        })
    }
}

/// A change to announce.
pub(crate) type Change = (UserId, Username, PresenceStatus);

#[derive(Default)]
pub(crate) struct Presence {
    users: Mutex<HashMap<UserId, UserPresence>>,
}

impl Presence {
    pub fn set(
        &self,
        user: UserId,
        username: &Username,
        key: ConnKey,
        status: PresenceStatus,
        lease: Option<Duration>,
    ) -> Option<Change> {
        let mut users = self.users.lock().expect("presence");
        let entry = users.entry(user).or_insert_with(|| UserPresence {
            username: username.clone(),
            conns: HashMap::new(),
            shown: PresenceStatus::Offline,
        });
        entry.conns.insert(
            key,
            Conn {
                status,
                lease_until: lease.map(|l| Instant::now() + l),
            },
        );
        entry.changed().map(|s| (user, entry.username.clone(), s))
    }

    pub fn remove(&self, user: UserId, key: ConnKey) -> Option<Change> {
        let mut users = self.users.lock().expect("presence");
        let entry = users.get_mut(&user)?;
        entry.conns.remove(&key);
        let change = entry.changed().map(|s| (user, entry.username.clone(), s));
        if entry.conns.is_empty() {
            users.remove(&user);
        }
        change
    }

    pub fn expire_leases(&self) -> Vec<Change> {
        let now = Instant::now();
        let mut users = self.users.lock().expect("presence");
        let mut changes = Vec::new();
        for (user, entry) in users.iter_mut() {
            entry
                .conns
                .retain(|_, c| c.lease_until.is_none_or(|t| t > now));
            if let Some(s) = entry.changed() {
                changes.push((*user, entry.username.clone(), s));
            }
        }
        users.retain(|_, e| !e.conns.is_empty());
        changes
    }

    /// The status a connection last set, online for a new one.
    pub fn status_of(&self, user: UserId, key: ConnKey) -> PresenceStatus {
        self.users
            .lock()
            .expect("presence")
            .get(&user)
            .and_then(|e| e.conns.get(&key))
            .map(|c| c.status)
            .unwrap_or(PresenceStatus::Online)
    }

    pub fn status(&self, user: UserId) -> PresenceStatus {
        self.users
            .lock()
            .expect("presence")
            .get(&user)
            .map(|e| e.shown)
            .unwrap_or(PresenceStatus::Offline)
    }
}

impl Hub {
    /// Announces a presence change to the user's audience and the user's
    /// own sessions; going offline records the last-seen time.
    pub(crate) async fn presence_changed(&self, (user, username, status): Change) {
        let mut last_seen_at = None;
        if status == PresenceStatus::Offline {
            let at = now();
            if let Err(e) = self.store().set_last_seen(user, at).await {
                tracing::warn!(error = %e, "last seen not recorded");
            }
            last_seen_at = Some(at);
        }
        let mut audience = match self.store().presence_audience(user).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "presence audience unavailable");
                return;
            }
        };
        audience.push(user);
        let out = super::Outbound::new(Item::Presence {
            user: username,
            status,
            last_seen_at,
        });
        self.rt().registry.send_to_ids(&audience, &out);
    }

    pub(crate) async fn set_connection_presence(
        &self,
        caller: &Caller,
        key: ConnKey,
        status: PresenceStatus,
        lease: Option<Duration>,
    ) {
        if let Some(change) =
            self.rt()
                .presence
                .set(caller.user.id, &caller.user.username, key, status, lease)
        {
            self.presence_changed(change).await;
        }
    }

    pub(crate) async fn drop_connection_presence(&self, user: UserId, key: ConnKey) {
        if let Some(change) = self.rt().presence.remove(user, key) {
            self.presence_changed(change).await;
        }
    }

    /// The presence of everyone whose presence the caller sees, for a
    /// snapshot when a stream opens.
    pub async fn presence_snapshot(&self, caller: &Caller) -> CoreResult<Vec<Item>> {
        let peers = self.store().presence_subjects(caller.user.id).await?;
        Ok(peers
            .into_iter()
            .map(|p| {
                let status = self.rt().presence.status(p.id);
                Item::Presence {
                    user: p.username,
                    status,
                    last_seen_at: if status == PresenceStatus::Offline {
                        p.last_seen_at
                    } else {
                        None
                    },
                }
            })
            .collect())
    }
}
