//! Presence: who is online, from the connections each user has open,
//! on this node and on the others.
//!
//! A user is online while any connection says online, away while all say
//! away, offline with none. A WebSocket counts while it is open; a
//! long-poll client holds a lease renewed by every poll, so it stays online
//! between polls and goes offline once it stops polling.
//!
//! Across a cluster, each node aggregates its own connections per user and
//! reports that aggregate on the bus when it changes, and all of it in a
//! full report every [`HEARTBEAT`]. Every node combines its own aggregate
//! with the reports of the others (best status wins) and announces changes
//! of the combination to its own sessions. A report holds for [`LEASE`]:
//! a node that dies stops reporting and its users go offline everywhere
//! once the lease runs out. While the bus is down nobody can report, so
//! leases are held rather than expired, and expire only a full lease after
//! the bus returns without a report.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use natter_bus::{NodeId, NodePresence};
use natter_types::{SessionId, UserId, Username};

use super::Item;
use crate::{Caller, CoreResult, Hub, now};

/// How often a node reports all of its users' presence.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long a node's report holds without being renewed.
pub const LEASE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PresenceStatus {
    // Ordered from least to most present: the best one wins.
    Offline,
    Away,
    Online,
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

/// Another node's report about one user.
#[derive(Debug)]
struct Remote {
    status: PresenceStatus,
    until: Instant,
}

#[derive(Debug)]
struct UserPresence {
    username: Username,
    /// This node's connections.
    conns: HashMap<ConnKey, Conn>,
    /// The other nodes' reports.
    remote: HashMap<NodeId, Remote>,
    /// The aggregate of `conns` last reported to the other nodes.
    reported: PresenceStatus,
    /// The cluster-wide status last announced to sessions here.
    shown: PresenceStatus,
}

impl UserPresence {
    fn local(&self) -> PresenceStatus {
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

    fn cluster(&self) -> PresenceStatus {
        self.remote
            .values()
            .map(|r| r.status)
            .fold(self.local(), PresenceStatus::max)
    }

    fn idle(&self) -> bool {
        self.conns.is_empty() && self.remote.is_empty()
    }

    /// What changed since the last call: this node's aggregate (to report)
    /// and the cluster-wide status (to announce).
    fn changes(&mut self, user: UserId, out: &mut Changes) {
        let local = self.local();
        if local != self.reported {
            self.reported = local;
            out.reports.push(NodePresence {
                user,
                username: self.username.clone(),
                status: super::cluster::status_out(local),
            });
        }
        let cluster = self.cluster();
        if cluster != self.shown {
            self.shown = cluster;
            out.announce.push((user, self.username.clone(), cluster));
        }
    }
}

/// A change to announce to this node's sessions.
pub(crate) type Change = (UserId, Username, PresenceStatus);

/// The outcome of a presence update.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Users whose aggregate on this node changed: tell the other nodes.
    pub reports: Vec<NodePresence>,
    /// Users whose cluster-wide status changed: tell the sessions here.
    pub announce: Vec<Change>,
}

#[derive(Default)]
pub(crate) struct Presence {
    users: Mutex<HashMap<UserId, UserPresence>>,
}

impl Presence {
    fn entry<'a>(
        users: &'a mut HashMap<UserId, UserPresence>,
        user: UserId,
        username: &Username,
    ) -> &'a mut UserPresence {
        users.entry(user).or_insert_with(|| UserPresence {
            username: username.clone(),
            conns: HashMap::new(),
            remote: HashMap::new(),
            reported: PresenceStatus::Offline,
            shown: PresenceStatus::Offline,
        })
    }

    pub fn set(
        &self,
        user: UserId,
        username: &Username,
        key: ConnKey,
        status: PresenceStatus,
        lease: Option<Duration>,
    ) -> Changes {
        let mut users = self.users.lock().expect("presence");
        let entry = Self::entry(&mut users, user, username);
        entry.conns.insert(
            key,
            Conn {
                status,
                lease_until: lease.map(|l| Instant::now() + l),
            },
        );
        let mut out = Changes::default();
        entry.changes(user, &mut out);
        out
    }

    pub fn remove(&self, user: UserId, key: ConnKey) -> Changes {
        let mut out = Changes::default();
        let mut users = self.users.lock().expect("presence");
        let Some(entry) = users.get_mut(&user) else {
            return out;
        };
        entry.conns.remove(&key);
        entry.changes(user, &mut out);
        if entry.idle() {
            users.remove(&user);
        }
        out
    }

    /// Takes in another node's report. A full report replaces everything
    /// that node said before.
    pub fn remote_report(&self, node: NodeId, full: bool, report: &[NodePresence]) -> Changes {
        let until = Instant::now() + LEASE;
        let mut out = Changes::default();
        let mut users = self.users.lock().expect("presence");
        let mut touched = Vec::with_capacity(report.len());
        for p in report {
            let entry = Self::entry(&mut users, p.user, &p.username);
            let status = super::cluster::status_in(p.status);
            if status == PresenceStatus::Offline {
                entry.remote.remove(&node);
            } else {
                entry.remote.insert(node, Remote { status, until });
            }
            touched.push(p.user);
        }
        if full {
            for (user, entry) in users.iter_mut() {
                if entry.remote.contains_key(&node) && !report.iter().any(|p| p.user == *user) {
                    entry.remote.remove(&node);
                    touched.push(*user);
                }
            }
        }
        for user in touched {
            if let Some(entry) = users.get_mut(&user) {
                entry.changes(user, &mut out);
                if entry.idle() {
                    users.remove(&user);
                }
            }
        }
        out
    }

    /// Ends long-poll leases that ran out and other nodes' reports that
    /// were not renewed; with `hold_remote` (the bus is down, so nobody
    /// could renew), reports are kept and their leases start over.
    pub fn expire(&self, hold_remote: bool) -> Changes {
        self.expire_at(Instant::now(), hold_remote)
    }

    fn expire_at(&self, now: Instant, hold_remote: bool) -> Changes {
        let mut users = self.users.lock().expect("presence");
        let mut out = Changes::default();
        for (user, entry) in users.iter_mut() {
            entry
                .conns
                .retain(|_, c| c.lease_until.is_none_or(|t| t > now));
            if hold_remote {
                for r in entry.remote.values_mut() {
                    r.until = r.until.max(now + LEASE);
                }
            } else {
                entry.remote.retain(|_, r| r.until > now);
            }
            entry.changes(*user, &mut out);
        }
        users.retain(|_, e| !e.idle());
        out
    }

    /// This node's aggregate for every user connected here: a full report.
    pub fn full_report(&self) -> Vec<NodePresence> {
        self.users
            .lock()
            .expect("presence")
            .iter()
            .filter(|(_, e)| !e.conns.is_empty())
            .map(|(user, e)| NodePresence {
                user: *user,
                username: e.username.clone(),
                status: super::cluster::status_out(e.local()),
            })
            .collect()
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

    /// The cluster-wide status.
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
    /// Reports this node's changes to the other nodes and announces
    /// cluster-wide changes to the sessions here. `record` is set where
    /// the change started here (or a lease ran out here): only then is
    /// the last-seen time written, so a cluster writes it once, not once
    /// per node.
    pub(crate) async fn apply_presence(&self, changes: Changes, record: bool) {
        if !changes.reports.is_empty() {
            self.publish(natter_bus::Notice::Presence {
                full: false,
                users: changes.reports,
            });
        }
        for change in changes.announce {
            self.presence_changed(change, record).await;
        }
    }

    /// Announces a presence change to the user's audience and the user's
    /// own sessions connected here; going offline records the last-seen
    /// time when `record`.
    async fn presence_changed(&self, (user, username, status): Change, record: bool) {
        if !record && self.rt().registry.is_empty() {
            return;
        }
        let mut last_seen_at = None;
        if status == PresenceStatus::Offline {
            let at = now();
            if record && let Err(e) = self.store().set_last_seen(user, at).await {
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
        let changes =
            self.rt()
                .presence
                .set(caller.user.id, &caller.user.username, key, status, lease);
        self.apply_presence(changes, true).await;
    }

    pub(crate) async fn drop_connection_presence(&self, user: UserId, key: ConnKey) {
        let changes = self.rt().presence.remove(user, key);
        self.apply_presence(changes, true).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> (UserId, Username) {
        (UserId(1), Username::parse("alice").unwrap())
    }

    fn report(status: natter_bus::Status) -> Vec<NodePresence> {
        let (user, username) = alice();
        vec![NodePresence {
            user,
            username,
            status,
        }]
    }

    fn announced(c: &Changes) -> Vec<PresenceStatus> {
        c.announce.iter().map(|(_, _, s)| *s).collect()
    }

    #[test]
    fn the_best_status_of_any_node_wins() {
        let p = Presence::default();
        let (user, name) = alice();
        let other = NodeId::random();
        let c = p.set(user, &name, ConnKey::Stream(1), PresenceStatus::Away, None);
        assert_eq!(announced(&c), [PresenceStatus::Away]);
        assert_eq!(c.reports.len(), 1, "the other nodes are told");
        let c = p.remote_report(other, false, &report(natter_bus::Status::Online));
        assert_eq!(announced(&c), [PresenceStatus::Online]);
        assert!(c.reports.is_empty(), "remote news is not re-reported");
        // Leaving here changes nothing while the other node has her.
        let c = p.remove(user, ConnKey::Stream(1));
        assert!(c.announce.is_empty());
        assert_eq!(c.reports.len(), 1);
        assert_eq!(p.status(user), PresenceStatus::Online);
        // A full report without her: she is gone there too.
        let c = p.remote_report(other, true, &[]);
        assert_eq!(announced(&c), [PresenceStatus::Offline]);
        assert_eq!(p.status(user), PresenceStatus::Offline);
        assert!(p.full_report().is_empty());
    }

    #[test]
    fn a_silent_node_expires_unless_the_bus_is_down() {
        let p = Presence::default();
        let (user, _) = alice();
        let other = NodeId::random();
        p.remote_report(other, true, &report(natter_bus::Status::Online));
        assert_eq!(p.status(user), PresenceStatus::Online);
        let later = Instant::now() + LEASE + Duration::from_secs(1);
        // Bus down: nobody could renew, so the report is held...
        assert!(p.expire_at(later, true).announce.is_empty());
        assert_eq!(p.status(user), PresenceStatus::Online);
        // ...for a full lease from then.
        assert!(p.expire_at(later, false).announce.is_empty());
        let c = p.expire_at(later + LEASE + Duration::from_secs(1), false);
        assert_eq!(announced(&c), [PresenceStatus::Offline]);
    }

    #[test]
    fn full_reports_list_local_aggregates_only() {
        let p = Presence::default();
        let (user, name) = alice();
        p.set(user, &name, ConnKey::Stream(1), PresenceStatus::Away, None);
        p.set(
            user,
            &name,
            ConnKey::Stream(2),
            PresenceStatus::Online,
            None,
        );
        p.remote_report(
            NodeId::random(),
            false,
            &[NodePresence {
                user: UserId(2),
                username: Username::parse("bob").unwrap(),
                status: natter_bus::Status::Online,
            }],
        );
        let full = p.full_report();
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].user, user);
        assert_eq!(full[0].status, natter_bus::Status::Online);
    }
}
