//! Typing notifications: ephemeral, expiring on their own after
//! [`TYPING_TTL`](super::TYPING_TTL) unless renewed, never stored.
//!
//! Every node keeps the whole cluster's typing state: starts, renewals and
//! stops go on the bus, each node applies them to its table and tells its
//! own sessions of changes, and each node expires entries by itself. So a
//! message sent through any node ends its sender's typing everywhere, and
//! typing of a user on a node that died still ends after the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use natter_types::{ConversationId, Username};

use super::{Item, TYPING_TTL};
use crate::{Caller, CoreResult, Hub};

#[derive(Default)]
pub(crate) struct Typing {
    active: Mutex<HashMap<(ConversationId, Username), Instant>>,
}

impl Typing {
    /// Marks `user` typing; returns whether they were not already.
    fn start(&self, conversation: ConversationId, user: &Username) -> bool {
        self.active
            .lock()
            .expect("typing")
            .insert((conversation, user.clone()), Instant::now() + TYPING_TTL)
            .is_none()
    }

    /// Clears `user`'s typing; returns whether they were typing.
    fn stop(&self, conversation: ConversationId, user: &Username) -> bool {
        self.active
            .lock()
            .expect("typing")
            .remove(&(conversation, user.clone()))
            .is_some()
    }

    /// Marks or clears typing as another node reported it; returns
    /// whether this node's sessions must be told.
    pub fn remote(&self, conversation: ConversationId, user: &Username, active: bool) -> bool {
        if active {
            self.start(conversation, user)
        } else {
            self.stop(conversation, user)
        }
    }

    pub fn expired(&self) -> Vec<(ConversationId, Username)> {
        let now = Instant::now();
        let mut active = self.active.lock().expect("typing");
        let gone: Vec<_> = active
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            active.remove(k);
        }
        gone
    }
}

impl Hub {
    /// The caller started (`active`) or stopped typing in a conversation.
    /// Other members' sessions are told; repeated starts only renew the
    /// expiry. In a direct conversation with a block either way, typing
    /// is dropped without an error (it is not revealed to the one blocked).
    pub async fn typing(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        active: bool,
    ) -> CoreResult<()> {
        let (details, _) = self.role_in(caller, conversation).await?;
        if details.kind == natter_types::ConversationKind::Direct
            && self.store().direct_blocked(conversation).await?
        {
            return Ok(());
        }
        let user = &caller.user.username;
        let changed = if active {
            self.rt().typing.start(conversation, user)
        } else {
            self.rt().typing.stop(conversation, user)
        };
        if changed {
            self.broadcast_typing(conversation, user, active).await;
        }
        // Renewals go out too, so the other nodes' expiry stays in step.
        if changed || active {
            self.publish_typing(conversation, user, active);
        }
        Ok(())
    }

    /// Sending a message ends typing in that conversation.
    pub(crate) async fn stop_typing_on_send(&self, conversation: ConversationId, user: &Username) {
        if self.rt().typing.stop(conversation, user) {
            self.broadcast_typing(conversation, user, false).await;
            self.publish_typing(conversation, user, false);
        }
    }

    fn publish_typing(&self, conversation: ConversationId, user: &Username, active: bool) {
        self.publish(natter_bus::Notice::Typing {
            conversation,
            user: user.clone(),
            active,
        });
    }

    /// Tells the sessions here of a typing change.
    pub(crate) async fn broadcast_typing(
        &self,
        conversation: ConversationId,
        user: &Username,
        active: bool,
    ) {
        if let Some(members) = self.member_names(conversation).await {
            self.send_ephemeral(
                &members,
                Item::Typing {
                    conversation_id: conversation,
                    user: user.clone(),
                    active,
                },
                Some(user),
            );
        }
    }
}
