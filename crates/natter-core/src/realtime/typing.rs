//! Typing notifications: ephemeral, expiring on their own after
//! [`TYPING_TTL`](super::TYPING_TTL) unless renewed, never stored.

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
    /// expiry.
    pub async fn typing(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        active: bool,
    ) -> CoreResult<()> {
        self.role_in(caller, conversation).await?;
        let user = &caller.user.username;
        let changed = if active {
            self.rt().typing.start(conversation, user)
        } else {
            self.rt().typing.stop(conversation, user)
        };
        if changed {
            self.broadcast_typing(conversation, user, active).await;
        }
        Ok(())
    }

    /// Sending a message ends typing in that conversation.
    pub(crate) async fn stop_typing_on_send(&self, conversation: ConversationId, user: &Username) {
        if self.rt().typing.stop(conversation, user) {
            self.broadcast_typing(conversation, user, false).await;
        }
    }

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
