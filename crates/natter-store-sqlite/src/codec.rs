//! Conversions between SQLite values and domain types, in one place so that
//! every query encodes and decodes the same way: timestamps as INTEGER
//! microseconds, UUIDs as 16-byte BLOBs, enums as their lowercase names,
//! and rusqlite errors as [`StoreError`]s.
//!
//! The `*_cols!` macros give the column list each row decoder expects, so a
//! query and its decoder cannot drift apart.

use std::str::FromStr;

use chrono::DateTime;
use natter_store::{StoreError, StoreResult};
use natter_types::{
    Conversation, ConversationId, Credentials, Message, MessageId, ScramKeys, Session, SessionId,
    Timestamp, User, UserId, UserRef, Username,
};
use rusqlite::Row;
use rusqlite::types::Type;
use uuid::Uuid;

// --- errors -------------------------------------------------------------

/// Maps a rusqlite error to the store's vocabulary: unique violations on
/// values the caller chose become [`StoreError::Conflict`], the rest is a
/// [`StoreError::Backend`] the caller cannot act on.
pub(crate) fn db_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(err, Some(msg)) = &e
        && err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    {
        // SQLite names the columns: "UNIQUE constraint failed: users.username"
        if msg.ends_with("users.username") {
            return StoreError::Conflict("username");
        }
        if msg.ends_with("sessions.token_hash") || msg.ends_with("sessions.id") {
            return StoreError::Conflict("session");
        }
        if msg.ends_with("conversations.id") {
            return StoreError::Conflict("conversation");
        }
        if msg.ends_with("messages.id") {
            return StoreError::Conflict("message");
        }
    }
    StoreError::Backend(e.to_string())
}

/// `.db()?` on rusqlite results (the orphan rule forbids a `From` impl).
pub(crate) trait DbResultExt<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> DbResultExt<T> for rusqlite::Result<T> {
    fn db(self) -> StoreResult<T> {
        self.map_err(db_error)
    }
}

fn conversion(idx: usize, ty: Type, msg: impl Into<String>) -> rusqlite::Error {
    let msg: String = msg.into();
    rusqlite::Error::FromSqlConversionFailure(idx, ty, msg.into())
}

// --- scalars ------------------------------------------------------------

/// A timestamp as stored: microseconds since the Unix epoch.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// A timestamp at the precision the store keeps, so that what an operation
/// returns equals what a later read returns.
pub(crate) fn truncate(t: Timestamp) -> Timestamp {
    DateTime::from_timestamp_micros(micros(t)).unwrap_or(t)
}

pub(crate) fn ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    let v: i64 = row.get(idx)?;
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| conversion(idx, Type::Integer, "timestamp out of range"))
}

pub(crate) fn opt_ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(_) => ts(row, idx).map(Some),
    }
}

pub(crate) fn uuid(row: &Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    let bytes: [u8; 16] = row.get(idx)?;
    Ok(Uuid::from_bytes(bytes))
}

pub(crate) fn username(row: &Row<'_>, idx: usize) -> rusqlite::Result<Username> {
    let s: String = row.get(idx)?;
    Username::parse(&s).map_err(|e| conversion(idx, Type::Text, e.to_string()))
}

/// A TEXT column holding an enum name (`Role`, `ConversationKind`).
pub(crate) fn parsed<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr<Err = String>,
{
    let s: String = row.get(idx)?;
    s.parse()
        .map_err(|e: String| conversion(idx, Type::Text, e))
}

/// The canonical key of a direct conversation: both user ids, smaller
/// first, so that `(a, b)` and `(b, a)` meet on one unique row.
pub(crate) fn direct_key(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a.0 <= b.0 { (a.0, b.0) } else { (b.0, a.0) };
    format!("{lo}:{hi}")
}

// --- rows ---------------------------------------------------------------

/// Columns for [`user_at`], from users aliased `$u`.
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
pub(crate) use user_cols;

pub(crate) fn user_at(row: &Row<'_>, base: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId(row.get(base)?),
        username: username(row, base + 1)?,
        display_name: row.get(base + 2)?,
        created_at: ts(row, base + 3)?,
    })
}

/// Columns for [`user_ref_at`], from users aliased `$u`.
macro_rules! user_ref_cols {
    ($u:literal) => {
        concat!($u, ".username, ", $u, ".display_name")
    };
}
pub(crate) use user_ref_cols;

pub(crate) fn user_ref_at(row: &Row<'_>, base: usize) -> rusqlite::Result<UserRef> {
    Ok(UserRef {
        username: username(row, base)?,
        display_name: row.get(base + 1)?,
    })
}

/// For a LEFT JOINed user: `None` when the join found nothing.
pub(crate) fn opt_user_ref_at(row: &Row<'_>, base: usize) -> rusqlite::Result<Option<UserRef>> {
    match row.get_ref(base)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => user_ref_at(row, base).map(Some),
    }
}

/// Columns for [`credentials_at`], from the users table.
macro_rules! credentials_cols {
    () => {
        "salt, iterations, sha1_stored_key, sha1_server_key, sha256_stored_key, sha256_server_key"
    };
}
pub(crate) use credentials_cols;

pub(crate) fn credentials_at(row: &Row<'_>, base: usize) -> rusqlite::Result<Credentials> {
    Ok(Credentials {
        salt: row.get(base)?,
        iterations: row.get(base + 1)?,
        sha1: ScramKeys {
            stored_key: row.get(base + 2)?,
            server_key: row.get(base + 3)?,
        },
        sha256: ScramKeys {
            stored_key: row.get(base + 4)?,
            server_key: row.get(base + 5)?,
        },
    })
}

/// Columns for [`session_at`], from sessions aliased `$s`.
macro_rules! session_cols {
    ($s:literal) => {
        concat!(
            $s,
            ".id, ",
            $s,
            ".user_id, ",
            $s,
            ".created_at, ",
            $s,
            ".expires_at, ",
            $s,
            ".user_agent"
        )
    };
}
pub(crate) use session_cols;

pub(crate) fn session_at(row: &Row<'_>, base: usize) -> rusqlite::Result<Session> {
    Ok(Session {
        id: SessionId(uuid(row, base)?),
        user_id: UserId(row.get(base + 1)?),
        created_at: ts(row, base + 2)?,
        expires_at: ts(row, base + 3)?,
        user_agent: row.get(base + 4)?,
    })
}

/// The last sequence number of conversation `$c` (an alias of
/// `conversations`): that of its newest message, 0 before the first. One
/// seek to the end of the conversation's range of the messages' primary
/// key; the conversation row does not keep it (see
/// `V5__derived_conversation_state.sql`).
macro_rules! last_seq_of {
    ($c:literal) => {
        concat!(
            "coalesce((SELECT newest.seq FROM messages newest
                        WHERE newest.conversation_id = ",
            $c,
            ".id ORDER BY newest.seq DESC LIMIT 1), 0)"
        )
    };
}
pub(crate) use last_seq_of;

/// Columns for [`conversation_at`], from conversations aliased `$c`: the
/// last sequence number and the last activity (the newest message's time,
/// else the creation's) are read from the messages.
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
            $crate::codec::last_seq_of!($c),
            ", coalesce((SELECT newest.sent_at FROM messages newest
                          WHERE newest.conversation_id = ",
            $c,
            ".id ORDER BY newest.seq DESC LIMIT 1), ",
            $c,
            ".created_at)"
        )
    };
}
pub(crate) use conversation_cols;

pub(crate) fn conversation_at(row: &Row<'_>, base: usize) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: ConversationId(uuid(row, base)?),
        kind: parsed(row, base + 1)?,
        title: row.get(base + 2)?,
        created_at: ts(row, base + 3)?,
        last_seq: row.get(base + 4)?,
        last_activity_at: ts(row, base + 5)?,
    })
}

/// For a LEFT JOINed conversation: `None` when the join found nothing.
pub(crate) fn opt_conversation_at(
    row: &Row<'_>,
    base: usize,
) -> rusqlite::Result<Option<Conversation>> {
    match row.get_ref(base)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => conversation_at(row, base).map(Some),
    }
}

/// Columns for [`message_at`], from messages aliased `$m` joined with the
/// sender's users row aliased `$s`.
macro_rules! message_cols {
    ($m:literal, $s:literal) => {
        concat!(
            $m,
            ".id, ",
            $m,
            ".conversation_id, ",
            $m,
            ".seq, ",
            $s,
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
pub(crate) use message_cols;

pub(crate) fn message_at(row: &Row<'_>, base: usize) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId(uuid(row, base)?),
        conversation_id: ConversationId(uuid(row, base + 1)?),
        seq: row.get(base + 2)?,
        sender: username(row, base + 3)?,
        client_id: row.get(base + 4)?,
        body: row.get(base + 5)?,
        sent_at: ts(row, base + 6)?,
        edited_at: opt_ts(row, base + 7)?,
        deleted_at: opt_ts(row, base + 8)?,
    })
}

/// For a LEFT JOINed message: `None` when the join found nothing.
pub(crate) fn opt_message_at(row: &Row<'_>, base: usize) -> rusqlite::Result<Option<Message>> {
    match row.get_ref(base)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => message_at(row, base).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_keys_ignore_order() {
        assert_eq!(direct_key(UserId(7), UserId(3)), "3:7");
        assert_eq!(direct_key(UserId(3), UserId(7)), "3:7");
    }

    #[test]
    fn timestamps_truncate_to_micros() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let tr = truncate(t);
        assert_eq!(tr.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(truncate(tr), tr);
    }
}
