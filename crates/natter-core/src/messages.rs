//! Sending, reading, editing and deleting messages, and read markers.

use natter_store::{HistoryQuery, NewMessage};
use natter_types::{Body, ClientId, ConversationId, Message, MessageId, Role, Username};

use crate::{Caller, CoreError, CoreResult, Hub, now};

/// Largest history page.
pub const MAX_HISTORY_PAGE: u32 = 100;
/// History page size when none is asked for.
pub const DEFAULT_HISTORY_PAGE: u32 = 50;

/// The result of a send: the stored message, and whether this call stored
/// it (`false` when it is a retry of a message already stored).
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub message: Message,
    pub created: bool,
}

/// A page of history in ascending order, and whether more messages lie
/// beyond it in the direction of paging.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

impl Hub {
    /// Parses a body against the configured size limit.
    pub fn parse_body(&self, text: String) -> CoreResult<Body> {
        Ok(Body::parse(text, self.config().max_body_bytes)?)
    }

    /// Stores a message. The future resolves after the durable commit, so
    /// a transport may acknowledge as soon as it has the outcome. A retry
    /// with the same `client_id` returns the original message.
    pub async fn send_message(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        client_id: ClientId,
        body: Body,
    ) -> CoreResult<SendOutcome> {
        let appended = self
            .store()
            .append_message(NewMessage {
                id: MessageId::new(),
                conversation_id: conversation,
                sender: caller.user.id,
                client_id,
                body,
                now: now(),
            })
            .await?;
        if appended.created {
            metrics::counter!("natter_messages_stored_total").increment(1);
            self.wake_tailer();
            self.stop_typing_on_send(conversation, &caller.user.username)
                .await;
        }
        Ok(SendOutcome {
            message: appended.message,
            created: appended.created,
        })
    }

    /// A page of history. With `after`, the page follows it (paging
    /// forward); otherwise it ends before `before` or at the newest
    /// message (paging back).
    pub async fn history(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        before: Option<i64>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> CoreResult<HistoryPage> {
        let limit = limit.unwrap_or(DEFAULT_HISTORY_PAGE);
        if limit == 0 || limit > MAX_HISTORY_PAGE {
            return Err(natter_types::ValidationError::new(
                "limit",
                format!("must be between 1 and {MAX_HISTORY_PAGE}"),
            )
            .into());
        }
        if let (Some(b), Some(a)) = (before, after)
            && b <= a
        {
            return Err(
                natter_types::ValidationError::new("before", "must be greater than after").into(),
            );
        }
        self.role_in(caller, conversation).await?;
        let mut messages = self
            .store()
            .messages(
                conversation,
                HistoryQuery {
                    before,
                    after,
                    limit: limit + 1,
                },
            )
            .await?;
        let has_more = messages.len() > limit as usize;
        if has_more {
            // One extra row was read to learn whether more exist; drop it
            // from the far end of the paging direction.
            if after.is_some() {
                messages.pop();
            } else {
                messages.remove(0);
            }
        }
        Ok(HistoryPage { messages, has_more })
    }

    /// Finds a live message the caller may change: their own, or in a
    /// group any message when `moderate` and the caller is admin or owner.
    async fn changeable(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        seq: i64,
        moderate: bool,
    ) -> CoreResult<Message> {
        let (_, role) = self.role_in(caller, conversation).await?;
        let message = self
            .store()
            .message(conversation, seq)
            .await?
            .ok_or(CoreError::not_found("message"))?;
        if message.deleted_at.is_some() {
            return Err(CoreError::conflict(
                "message_deleted",
                "the message has been deleted",
            ));
        }
        let own = message.sender == caller.user.username;
        let moderator = moderate && role >= Role::Admin;
        if !(own || moderator) {
            return Err(CoreError::forbidden(
                "not_author",
                "you can only change your own messages",
            ));
        }
        Ok(message)
    }

    /// Replaces the body of one of the caller's messages.
    pub async fn edit_message(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        seq: i64,
        body: Body,
    ) -> CoreResult<Message> {
        self.changeable(caller, conversation, seq, false).await?;
        let edited = self
            .store()
            .edit_message(conversation, seq, body, now())
            .await?
            .ok_or_else(|| {
                CoreError::conflict("message_deleted", "the message has been deleted")
            })?;
        self.wake_tailer();
        Ok(edited)
    }

    /// Deletes a message, leaving a tombstone in its place. Senders delete
    /// their own; group admins and owners may delete any (moderation).
    pub async fn delete_message(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        seq: i64,
    ) -> CoreResult<Message> {
        self.changeable(caller, conversation, seq, true).await?;
        let deleted = self
            .store()
            .delete_message(conversation, seq, now())
            .await?
            .ok_or_else(|| {
                CoreError::conflict("message_deleted", "the message has been deleted")
            })?;
        self.wake_tailer();
        Ok(deleted)
    }

    /// A message by its id, if the caller is a member of its conversation.
    pub async fn message_by_id(&self, caller: &Caller, id: MessageId) -> CoreResult<Message> {
        let message = self
            .store()
            .message_by_id(id)
            .await?
            .ok_or(CoreError::not_found("message"))?;
        self.visible(caller, message).await
    }

    /// A message by its sender and the `client_id` the sender gave it, if
    /// the caller is a member of its conversation.
    pub async fn message_by_client_id(
        &self,
        caller: &Caller,
        sender: &Username,
        client_id: &str,
    ) -> CoreResult<Message> {
        let sender = self
            .store()
            .user_by_username(sender)
            .await?
            .ok_or(CoreError::not_found("message"))?;
        let message = self
            .store()
            .message_by_client_id(sender.id, client_id)
            .await?
            .ok_or(CoreError::not_found("message"))?;
        self.visible(caller, message).await
    }

    /// `message` if the caller may see it; "not found" rather than
    /// "forbidden" otherwise, so ids of other people's messages leak nothing.
    async fn visible(&self, caller: &Caller, message: Message) -> CoreResult<Message> {
        match self.role_in(caller, message.conversation_id).await {
            Ok(_) => Ok(message),
            Err(CoreError::Forbidden { .. } | CoreError::NotFound { .. }) => {
                Err(CoreError::not_found("message"))
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the caller's read marker forward; returns where it stands.
    pub async fn mark_read(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        seq: i64,
    ) -> CoreResult<i64> {
        if seq < 0 {
            return Err(natter_types::ValidationError::new("seq", "must not be negative").into());
        }
        self.role_in(caller, conversation).await?;
        let marker = self
            .store()
            .mark_read(conversation, caller.user.id, seq)
            .await?;
        self.wake_tailer();
        Ok(marker)
    }
}
