//! Column lists and row decoding, kept in one place so that every query
//! that returns a user, a conversation or a message selects the same
//! columns in the same order and decodes them the same way.
//!
//! The column lists are macros that expand to string literals, so queries
//! are assembled with `concat!` at compile time and stay `&'static str`.
//! Decoding uses `try_get` and folds surprises into `StoreError::Backend`
//! rather than panicking inside the server.

use std::str::FromStr;

use natter_store::StoreResult;
use natter_types::{
    Conversation, ConversationId, ConversationKind, Message, MessageId, Role, User, UserId,
    UserRef, Username,
};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::error::{backend, pg};

/// `id, username, display_name, created_at` of users aliased `$u`.
macro_rules! user_cols {
    ($u:literal) => {
        concat!(
            $u,
            ".id, ",
            $u,
            ".username, ",
            $u,
            ".display_name, ",
            $u,
            ".created_at"
        )
    };
}

/// The columns of a conversation aliased `$c`.
macro_rules! conversation_cols {
    ($c:literal) => {
        concat!(
            $c,
            ".id, ",
            $c,
            ".kind, ",
            $c,
            ".title, ",
            $c,
            ".created_at, ",
            $c,
            ".last_seq, ",
            $c,
            ".last_activity_at"
        )
    };
}

/// The columns of a message aliased `$m` whose sender is users aliased `$u`.
macro_rules! message_cols {
    ($m:literal, $u:literal) => {
        concat!(
            $m,
            ".id, ",
            $m,
            ".conversation_id, ",
            $m,
            ".seq, ",
            $u,
            ".username, ",
            $m,
            ".client_id, ",
            $m,
            ".body, ",
            $m,
            ".sent_at, ",
            $m,
            ".edited_at, ",
            $m,
            ".deleted_at"
        )
    };
}

pub(crate) use {conversation_cols, message_cols, user_cols};

/// How many columns the conversation list has, to decode rows that join
/// more after it.
pub(crate) const CONVERSATION_COLS: usize = 6;

pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(pg)
}

pub(crate) fn username(s: &str) -> StoreResult<Username> {
    Username::parse(s).map_err(|e| backend(format!("stored username {s:?}: {e}")))
}

pub(crate) fn role(s: &str) -> StoreResult<Role> {
    Role::from_str(s).map_err(backend)
}

pub(crate) fn user(row: &Row, at: usize) -> StoreResult<User> {
    Ok(User {
        id: UserId(get(row, at)?),
        username: username(get(row, at + 1)?)?,
        display_name: get(row, at + 2)?,
        created_at: get(row, at + 3)?,
    })
}

/// A `UserRef` from `username, display_name` at `at`; `None` if the
/// username is NULL (an outer join that found nobody).
pub(crate) fn user_ref(row: &Row, at: usize) -> StoreResult<Option<UserRef>> {
    let Some(name) = get::<Option<&str>>(row, at)? else {
        return Ok(None);
    };
    Ok(Some(UserRef {
        username: username(name)?,
        display_name: get(row, at + 1)?,
    }))
}

pub(crate) fn conversation(row: &Row, at: usize) -> StoreResult<Conversation> {
    Ok(Conversation {
        id: ConversationId(get(row, at)?),
        kind: ConversationKind::from_str(get(row, at + 1)?).map_err(backend)?,
        title: get(row, at + 2)?,
        created_at: get(row, at + 3)?,
        last_seq: get(row, at + 4)?,
        last_activity_at: get(row, at + 5)?,
    })
}

pub(crate) fn message(row: &Row, at: usize) -> StoreResult<Message> {
    Ok(Message {
        id: MessageId(get(row, at)?),
        conversation_id: ConversationId(get(row, at + 1)?),
        seq: get(row, at + 2)?,
        sender: username(get(row, at + 3)?)?,
        client_id: get(row, at + 4)?,
        body: get(row, at + 5)?,
        sent_at: get(row, at + 6)?,
        edited_at: get(row, at + 7)?,
        deleted_at: get(row, at + 8)?,
    })
}

/// A message at `at` from an outer join: `None` if its id is NULL.
pub(crate) fn optional_message(row: &Row, at: usize) -> StoreResult<Option<Message>> {
    if get::<Option<uuid::Uuid>>(row, at)?.is_none() {
        return Ok(None);
    }
    message(row, at).map(Some)
}
