//! Blocking other users (XEP-0191's blocking command, as every transport
//! offers it).
//!
//! What a block means, like the blocking of common chat apps: when A
//! blocks B,
//! - neither can send the other a direct message: B gets
//!   [`CoreError::RecipientUnavailable`], which does not reveal the block,
//!   and A gets [`CoreError::Blocked`]; nor open a direct conversation with
//!   the other;
//! - neither sees the other's presence (both leave each other's presence
//!   audience; each is told the other went offline), and typing in their
//!   direct conversation is dropped, both ways;
//! - A keeps the contact list entry, the conversation and its history,
//!   and can read it; B's messages sent before the block stay;
//! - group conversations are not affected: both still see each other's
//!   group messages (leaving or removing is the way there).
//!
//! The check on the message path costs nothing extra: the store folds it
//! into the statement that assigns the sequence number, so there is no
//! cache to invalidate across nodes. A change of a user's list reaches
//! that user's other devices as an ephemeral [`Item::Blocklist`] on every
//! node (clients reread the list when they reconnect).

use natter_types::{BlockedUser, User, Username, ValidationError};

use crate::realtime::{Item, PresenceStatus};
use crate::{Caller, CoreError, CoreResult, Hub, now};

impl Hub {
    /// The caller's blocked list, ordered by username.
    pub async fn blocked(&self, caller: &Caller) -> CoreResult<Vec<BlockedUser>> {
        Ok(self.store().blocked_users(caller.user.id).await?)
    }

    /// Blocks `username`; returns the entry and whether it is new.
    pub async fn block(
        &self,
        caller: &Caller,
        username: &Username,
    ) -> CoreResult<(BlockedUser, bool)> {
        let target = self.user(username).await?;
        if target.id == caller.user.id {
            return Err(ValidationError::new("username", "you cannot block yourself").into());
        }
        // Who saw whom before, so that exactly they are told the other
        // went offline.
        let me = &caller.user;
        let they_saw_me = self.sees(&target, me).await?;
        let i_saw_them = self.sees(me, &target).await?;
        let created = self
            .store()
            .block_user(caller.user.id, target.id, now())
            .await?;
        let entry = self
            .store()
            .blocked_users(caller.user.id)
            .await?
            .into_iter()
            .find(|b| b.user.username == target.username)
            .ok_or(CoreError::not_found("user"))?;
        if created {
            metrics::counter!("natter_blocks_total").increment(1);
            let offline = |user: &User| Item::Presence {
                user: user.username.clone(),
                status: PresenceStatus::Offline,
                last_seen_at: None,
            };
            if they_saw_me {
                self.deliver_to_user(target.id, None, offline(me));
            }
            if i_saw_them {
                self.deliver_to_user(me.id, None, offline(&target));
            }
            self.deliver_to_user(
                me.id,
                None,
                Item::Blocklist {
                    user: Some(target.username.clone()),
                    blocked: true,
                },
            );
        }
        Ok((entry, created))
    }

    /// Unblocks `username`; `NotFound("block")` if it was not blocked.
    pub async fn unblock(&self, caller: &Caller, username: &Username) -> CoreResult<()> {
        let target = self.user(username).await?;
        if !self.store().unblock_user(caller.user.id, target.id).await? {
            return Err(CoreError::not_found("block"));
        }
        self.unblocked(caller, std::slice::from_ref(&target)).await;
        self.deliver_to_user(
            caller.user.id,
            None,
            Item::Blocklist {
                user: Some(target.username.clone()),
                blocked: false,
            },
        );
        Ok(())
    }

    /// Empties the caller's blocked list; returns who was on it.
    pub async fn unblock_all(&self, caller: &Caller) -> CoreResult<Vec<Username>> {
        let list = self.store().blocked_users(caller.user.id).await?;
        let names: Vec<Username> = list.into_iter().map(|b| b.user.username).collect();
        self.store().unblock_all(caller.user.id).await?;
        let users = self.store().users_by_username(&names).await?;
        self.unblocked(caller, &users).await;
        self.deliver_to_user(
            caller.user.id,
            None,
            Item::Blocklist {
                user: None,
                blocked: false,
            },
        );
        Ok(names)
    }

    /// After unblocking: whoever sees the other again learns their current
    /// presence (XEP-0191 3.4: as the server would send it anyway).
    async fn unblocked(&self, caller: &Caller, users: &[User]) {
        for target in users {
            for (viewer, subject) in [(target, &caller.user), (&caller.user, target)] {
                if let Some(item) = self.presence_of(viewer, subject).await {
                    self.deliver_to_user(viewer.id, None, item);
                }
            }
        }
    }

    /// Whether `viewer` sees `subject`'s presence.
    async fn sees(&self, viewer: &User, subject: &User) -> CoreResult<bool> {
        Ok(self
            .store()
            .presence_audience(subject.id)
            .await?
            .contains(&viewer.id))
    }

    /// `subject`'s presence as `viewer` may see it now, if they may.
    async fn presence_of(&self, viewer: &User, subject: &User) -> Option<Item> {
        let peers = self.store().presence_subjects(viewer.id).await.ok()?;
        let peer = peers.into_iter().find(|p| p.id == subject.id)?;
        let status = self.rt().presence.status(peer.id);
        Some(Item::Presence {
            user: peer.username,
            status,
            last_seen_at: (status == PresenceStatus::Offline)
                .then_some(peer.last_seen_at)
                .flatten(),
        })
    }

    /// Refuses a new direct conversation across a block: the caller's own
    /// block first, then the other's (not revealed as such).
    pub(crate) async fn check_not_blocked(&self, caller: &Caller, peer: &User) -> CoreResult<()> {
        let blocks = self.store().blocks_between(caller.user.id, peer.id).await?;
        if blocks.by_first {
            Err(CoreError::Blocked)
        } else if blocks.by_second {
            Err(CoreError::RecipientUnavailable)
        } else {
            Ok(())
        }
    }
}

/// Who blocked whom between the caller and another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    None,
    /// The caller blocked the other (whether or not the other blocked the
    /// caller too).
    ByCaller,
    /// The other blocked the caller. Transports must not reveal this to
    /// the caller; it tells them to act as if the other were unreachable.
    ByOther,
}

impl Hub {
    /// Who blocked whom between the caller and `other`; `None` also when
    /// there is no such user (the caller's request then fails as it would
    /// anyway). For stanzas routed between users outside the message path.
    pub async fn block_state(&self, caller: &Caller, other: &Username) -> CoreResult<BlockState> {
        let Some(other) = self.store().user_by_username(other).await? else {
            return Ok(BlockState::None);
        };
        let blocks = self
            .store()
            .blocks_between(caller.user.id, other.id)
            .await?;
        Ok(if blocks.by_first {
            BlockState::ByCaller
        } else if blocks.by_second {
            BlockState::ByOther
        } else {
            BlockState::None
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use natter_types::{ConversationId, GroupTitle, Password};

    use super::*;
    use crate::realtime::{Stream, StreamEnd};
    use crate::{CoreConfig, LoginContext};

    struct World {
        hub: Hub,
        _tasks: crate::realtime::RealtimeTasks,
        _dir: tempfile::TempDir,
    }

    async fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = natter_store_sqlite::SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let hub = Hub::new(
            Arc::new(store),
            CoreConfig {
                scram_iterations: 4096,
                ..CoreConfig::default()
            },
        );
        let tasks = hub.start_realtime().await.unwrap();
        World {
            hub,
            _tasks: tasks,
            _dir: dir,
        }
    }

    fn name(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    async fn account(hub: &Hub, user: &str) -> Caller {
        let password = || Password::parse_new("password", "correct horse 1").unwrap();
        hub.sign_up(name(user), password(), None).await.unwrap();
        let out = hub
            .log_in(&name(user), password(), LoginContext::default())
            .await
            .unwrap();
        Caller {
            user: out.user,
            session: out.session.id,
        }
    }

    async fn send(hub: &Hub, from: &Caller, to: ConversationId, id: &str) -> CoreResult<()> {
        let body = hub.parse_body(format!("message {id}")).unwrap();
        let client_id = natter_types::ClientId::parse(id).unwrap();
        hub.send_message(from, to, client_id, body)
            .await
            .map(|_| ())
    }

    /// The next item that is not a durable event.
    /// The direct conversation of alice and bob (opened by bob), and a
    /// group alice made with bob in it.
    async fn direct_and_group(
        hub: &Hub,
        alice: &Caller,
        bob: &Caller,
    ) -> (ConversationId, ConversationId) {
        let direct = hub
            .direct_conversation(bob, &alice.user.username)
            .await
            .unwrap()
            .details
            .conversation
            .id;
        let group = hub
            .create_group(
                alice,
                GroupTitle::parse("g").unwrap(),
                vec![bob.user.username.clone()],
            )
            .await
            .unwrap()
            .details
            .conversation
            .id;
        (direct, group)
    }

    async fn next_ephemeral(stream: &mut Stream) -> Item {
        loop {
            let out: Result<_, StreamEnd> = stream.next().await;
            let out = out.expect("stream open");
            if !matches!(out.item, Item::Event(_)) {
                return out.item.clone();
            }
        }
    }

    #[tokio::test]
    async fn the_list_and_its_errors() {
        let w = world().await;
        let alice = account(&w.hub, "alice").await;
        account(&w.hub, "bob").await;
        account(&w.hub, "carol").await;
        let (entry, created) = w.hub.block(&alice, &name("carol")).await.unwrap();
        assert!(created);
        assert_eq!(entry.user.username.as_str(), "carol");
        assert!(!w.hub.block(&alice, &name("carol")).await.unwrap().1);
        w.hub.block(&alice, &name("bob")).await.unwrap();
        let names = |list: Vec<BlockedUser>| {
            list.into_iter()
                .map(|b| b.user.username.into_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(w.hub.blocked(&alice).await.unwrap()),
            ["bob", "carol"]
        );
        assert!(matches!(
            w.hub.block(&alice, &name("alice")).await,
            Err(CoreError::Invalid(_))
        ));
        assert!(matches!(
            w.hub.block(&alice, &name("nobody")).await,
            Err(CoreError::NotFound { what: "user" })
        ));
        w.hub.unblock(&alice, &name("bob")).await.unwrap();
        assert!(matches!(
            w.hub.unblock(&alice, &name("bob")).await,
            Err(CoreError::NotFound { what: "block" })
        ));
        w.hub.block(&alice, &name("bob")).await.unwrap();
        let mut gone = w.hub.unblock_all(&alice).await.unwrap();
        gone.sort();
        assert_eq!(gone, [name("bob"), name("carol")]);
        assert!(w.hub.blocked(&alice).await.unwrap().is_empty());
    }

    /// Direct messages stop both ways with the two errors; groups and
    /// history do not; unblocking restores everything.
    #[tokio::test]
    async fn direct_messages_stop_both_ways() {
        let w = world().await;
        let hub = &w.hub;
        let alice = account(hub, "alice").await;
        let bob = account(hub, "bob").await;
        let (direct, group) = direct_and_group(hub, &alice, &bob).await;
        send(hub, &bob, direct, "b1").await.unwrap();

        hub.block(&alice, &name("bob")).await.unwrap();
        assert!(matches!(
            send(hub, &bob, direct, "b2").await,
            Err(CoreError::RecipientUnavailable)
        ));
        assert!(matches!(
            send(hub, &alice, direct, "a1").await,
            Err(CoreError::Blocked)
        ));
        assert!(matches!(
            hub.direct_conversation(&bob, &name("alice")).await,
            Err(CoreError::RecipientUnavailable)
        ));
        assert!(matches!(
            hub.direct_conversation(&alice, &name("bob")).await,
            Err(CoreError::Blocked)
        ));
        send(hub, &bob, group, "b3").await.unwrap();
        let history = hub.history(&alice, direct, None, None, None).await.unwrap();
        assert_eq!(history.messages.len(), 1, "alice still reads the history");
        assert_eq!(
            hub.contacts(&alice).await.unwrap().len(),
            0,
            "blocking adds or removes no contact"
        );

        hub.unblock(&alice, &name("bob")).await.unwrap();
        send(hub, &bob, direct, "b4").await.unwrap();
        hub.direct_conversation(&alice, &name("bob")).await.unwrap();
    }

    /// Presence goes offline both ways on a block and comes back on
    /// unblocking; typing in the direct conversation is dropped; the
    /// blocker's own sessions hear of the change.
    #[tokio::test]
    async fn presence_typing_and_own_devices() {
        let w = world().await;
        let hub = &w.hub;
        let alice = account(hub, "alice").await;
        let bob = account(hub, "bob").await;
        hub.put_contact(&alice, &name("bob"), None, Default::default())
            .await
            .unwrap();
        hub.put_contact(&bob, &name("alice"), None, Default::default())
            .await
            .unwrap();
        let (direct, group) = direct_and_group(hub, &alice, &bob).await;
        let mut a = hub.open_stream(&alice, None).await.unwrap();
        let mut b = hub.open_stream(&bob, None).await.unwrap();
        // Each sees the other come online (alice's own first for her).
        let online = |user: &str| Item::Presence {
            user: name(user),
            status: PresenceStatus::Online,
            last_seen_at: None,
        };
        let offline = |user: &str| Item::Presence {
            user: name(user),
            status: PresenceStatus::Offline,
            last_seen_at: None,
        };
        assert_eq!(next_ephemeral(&mut a).await, online("alice"));
        assert_eq!(next_ephemeral(&mut a).await, online("bob"));
        assert_eq!(next_ephemeral(&mut b).await, online("bob"));

        hub.block(&alice, &name("bob")).await.unwrap();
        assert_eq!(next_ephemeral(&mut b).await, offline("alice"));
        assert_eq!(next_ephemeral(&mut a).await, offline("bob"));
        assert_eq!(
            next_ephemeral(&mut a).await,
            Item::Blocklist {
                user: Some(name("bob")),
                blocked: true
            }
        );

        // Typing: dropped in the direct conversation, delivered in the
        // group, so the first typing alice hears is the group's.
        hub.typing(&bob, direct, true).await.unwrap();
        hub.typing(&bob, group, true).await.unwrap();
        match next_ephemeral(&mut a).await {
            Item::Typing {
                conversation_id, ..
            } => assert_eq!(conversation_id, group),
            other => panic!("unexpected {other:?}"),
        }

        hub.unblock(&alice, &name("bob")).await.unwrap();
        assert_eq!(next_ephemeral(&mut b).await, online("alice"));
        assert_eq!(next_ephemeral(&mut a).await, online("bob"));
        assert_eq!(
            next_ephemeral(&mut a).await,
            Item::Blocklist {
                user: Some(name("bob")),
                blocked: false
            }
        );
    }
}
