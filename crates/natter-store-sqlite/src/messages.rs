//! SQL for messages, read and delivered markers. [`append_message`] is the
//! hot path of the whole server: a handful of point look-ups and writes on
//! B-tree tails, run by the writer thread inside its batch transaction.
//! Each write that changes something appends its event in the same job.

use natter_store::event_codec;
use natter_store::{Appended, HistoryQuery, NewMessage, StoreError, StoreResult};
use natter_types::{Body, ConversationId, Message, MessageId, Timestamp, UserId, Username};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{
    DbResultExt, last_seq_of, message_at, message_cols, micros, truncate, username,
};
use crate::{blocks, events};

/// Appends a message. Its sequence number is one past the conversation's
/// newest message: gap-free, because the writer runs one job at a time and
/// a job that fails leaves no row behind.
pub(crate) fn append_message(c: &Connection, new: &NewMessage) -> StoreResult<Appended> {
    let conv = new.conversation_id.0.as_bytes();

    // A retry: answer with the original, as it is now.
    let prior: Option<([u8; 16], i64)> = c
        .prepare_cached(
            "SELECT conversation_id, seq FROM messages WHERE sender_id = ?1 AND client_id = ?2",
        )
        .db()?
        .query_row(params![new.sender.0, new.client_id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .db()?;
    if let Some((prior_conv, seq)) = prior {
        if &prior_conv != conv {
            return Err(StoreError::ClientIdReused);
        }
        let message = message(c, new.conversation_id, seq)?
            .ok_or_else(|| StoreError::Backend("deduplicated message vanished".into()))?;
        return Ok(Appended {
            message,
            created: false,
        });
    }

    // The next number, if the sender is a member and, in a direct
    // conversation, nobody blocked anybody; the same statement gives the
    // sender's name for the result. Every statement counts on the hot path,
    // so the membership and block tests and the name ride along with the
    // read of the newest seq, a seek to the page the insert below writes
    // anyway (for a group, `direct_key` is NULL and the block probe finds
    // nothing at once). Nothing is written to the conversation's row.
    let sent_at = micros(new.now);
    let next: Option<(i64, Username)> = c
        .prepare_cached(concat!(
            "SELECT ",
            last_seq_of!("c"),
            " + 1, (SELECT username FROM users WHERE id = ?2)
               FROM conversations c
              WHERE c.id = ?1
                AND EXISTS (SELECT 1 FROM members WHERE conversation_id = ?1 AND user_id = ?2)
                AND NOT EXISTS (SELECT 1 FROM blocks WHERE pair_key = c.direct_key)"
        ))
        .db()?
        .query_row(params![conv, new.sender.0], |r| {
            Ok((r.get(0)?, username(r, 1)?))
        })
        .optional()
        .db()?;
    let Some((seq, sender)) = next else {
        if let Some(blocked) = blocks::append_refusal(c, new.conversation_id, new.sender)? {
            return Err(blocked);
        }
        return Err(membership_error(c, new.conversation_id)?);
    };
    c.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, id, sender_id, client_id, body, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(params![
        conv,
        seq,
        new.id.0.as_bytes(),
        new.sender.0,
        new.client_id.as_str(),
        new.body.as_str(),
        sent_at,
    ])
    .db()?;
    // the sender has read their own message, which implies delivery
    c.prepare_cached(
        "UPDATE members SET read_seq = max(read_seq, ?3), delivered_seq = max(delivered_seq, ?3)
          WHERE conversation_id = ?1 AND user_id = ?2",
    )
    .db()?
    .execute(params![conv, new.sender.0, seq])
    .db()?;
    let message = Message {
        id: new.id,
        conversation_id: new.conversation_id,
        seq,
        sender,
        client_id: new.client_id.as_str().to_owned(),
        body: Some(new.body.as_str().to_owned()),
        sent_at: truncate(new.now),
        edited_at: None,
        deleted_at: None,
    };
    events::append_for(
        c,
        new.conversation_id,
        &event_codec::message_created(seq),
        new.now,
        &message,
    )?;
    Ok(Appended {
        message,
        created: true,
    })
}

/// Why a member-only write found no membership row: `NotFound` if there
/// is no such conversation, else `NotMember`.
fn membership_error(c: &Connection, id: ConversationId) -> StoreResult<StoreError> {
    let exists = c
        .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")
        .db()?
        .exists([id.0.as_bytes()])
        .db()?;
    Ok(if exists {
        StoreError::NotMember
    } else {
        StoreError::NotFound("conversation")
    })
}

pub(crate) fn message(
    c: &Connection,
    id: ConversationId,
    seq: i64,
) -> StoreResult<Option<Message>> {
    c.prepare_cached(concat!(
        "SELECT ",
        message_cols!("m", "s"),
        " FROM messages m JOIN users s ON s.id = m.sender_id
          WHERE m.conversation_id = ?1 AND m.seq = ?2"
    ))
    .db()?
    .query_row(params![id.0.as_bytes(), seq], |r| message_at(r, 0))
    .optional()
    .db()
}

pub(crate) fn message_by_id(c: &Connection, id: MessageId) -> StoreResult<Option<Message>> {
    c.prepare_cached(concat!(
        "SELECT ",
        message_cols!("m", "s"),
        " FROM messages m JOIN users s ON s.id = m.sender_id WHERE m.id = ?1"
    ))
    .db()?
    .query_row(params![id.0.as_bytes()], |r| message_at(r, 0))
    .optional()
    .db()
}

pub(crate) fn message_by_client_id(
    c: &Connection,
    sender: UserId,
    client_id: &str,
) -> StoreResult<Option<Message>> {
    c.prepare_cached(concat!(
        "SELECT ",
        message_cols!("m", "s"),
        " FROM messages m JOIN users s ON s.id = m.sender_id
          WHERE m.sender_id = ?1 AND m.client_id = ?2"
    ))
    .db()?
    .query_row(params![sender.0, client_id], |r| message_at(r, 0))
    .optional()
    .db()
}

/// A page of history, in ascending order: the first `limit` after `after`,
/// or else the last `limit` before `before`. Either way one range scan of
/// the primary key: the bounds are plain comparisons with constant
/// expressions (no `?n IS NULL OR ...`), so the planner can seek to them
/// instead of filtering a scan from the newest message.
pub(crate) fn messages(
    c: &Connection,
    id: ConversationId,
    q: HistoryQuery,
) -> StoreResult<Vec<Message>> {
    let conv = id.0.as_bytes();
    if let Some(after) = q.after {
        let mut stmt = c.prepare_cached(HISTORY_AFTER).db()?;
        stmt.query_map(params![conv, after, q.before, q.limit], |r| {
            message_at(r, 0)
        })
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
    } else {
        let mut stmt = c.prepare_cached(HISTORY_BEFORE).db()?;
        let mut page: Vec<Message> = stmt
            .query_map(params![conv, q.before, q.limit], |r| message_at(r, 0))
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()?;
        page.reverse();
        Ok(page)
    }
}

/// The first `?4` messages after `?2`, and before `?3` if not NULL.
const HISTORY_AFTER: &str = concat!(
    "SELECT ",
    message_cols!("m", "s"),
    " FROM messages m JOIN users s ON s.id = m.sender_id
      WHERE m.conversation_id = ?1
        AND m.seq > ?2 AND m.seq < coalesce(?3, 9223372036854775807)
      ORDER BY m.seq ASC
      LIMIT ?4"
);

/// The last `?3` messages before `?2` (or the newest, if `?2` is NULL),
/// newest first.
const HISTORY_BEFORE: &str = concat!(
    "SELECT ",
    message_cols!("m", "s"),
    " FROM messages m JOIN users s ON s.id = m.sender_id
      WHERE m.conversation_id = ?1
        AND m.seq < coalesce(?2, 9223372036854775807)
      ORDER BY m.seq DESC
      LIMIT ?3"
);

pub(crate) fn edit_message(
    c: &Connection,
    id: ConversationId,
    seq: i64,
    body: &Body,
    now: Timestamp,
) -> StoreResult<Option<Message>> {
    let n = c
        .prepare_cached(
            "UPDATE messages SET body = ?3, edited_at = ?4
              WHERE conversation_id = ?1 AND seq = ?2 AND deleted_at IS NULL",
        )
        .db()?
        .execute(params![id.0.as_bytes(), seq, body.as_str(), micros(now)])
        .db()?;
    if n == 0 {
        return Ok(None);
    }
    let edited = message(c, id, seq)?
        .ok_or_else(|| StoreError::Backend("edited message vanished".into()))?;
    events::append_for(c, id, &event_codec::message_edited(seq), now, &edited)?;
    Ok(Some(edited))
}

pub(crate) fn delete_message(
    c: &Connection,
    id: ConversationId,
    seq: i64,
    now: Timestamp,
) -> StoreResult<Option<Message>> {
    let n = c
        .prepare_cached(
            "UPDATE messages SET body = NULL, deleted_at = ?3
              WHERE conversation_id = ?1 AND seq = ?2 AND deleted_at IS NULL",
        )
        .db()?
        .execute(params![id.0.as_bytes(), seq, micros(now)])
        .db()?;
    if n == 0 {
        return Ok(None);
    }
    let deleted = message(c, id, seq)?
        .ok_or_else(|| StoreError::Backend("deleted message vanished".into()))?;
    events::append_for(c, id, &event_codec::message_deleted(seq), now, &deleted)?;
    Ok(Some(deleted))
}

/// The two per-member markers. Each moves forward only, never past the
/// last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Read,
    Delivered,
}

/// A member's marker and name, as [`mark`] finds them.
struct Marked {
    at: i64,
    name: Username,
}

/// Moves a read or delivered marker forward to `seq`, clamped to the last
/// message, never back; returns the marker after the call. Only a move
/// appends an event. Reading implies delivery: moving the read marker
/// raises the delivered marker with it, without an event of its own.
pub(crate) fn mark(
    c: &Connection,
    id: ConversationId,
    user: UserId,
    seq: i64,
    marker: Marker,
) -> StoreResult<i64> {
    // One row tells whether the conversation exists, whether the user is a
    // member, where the marker is and how far it may go.
    let column = match marker {
        Marker::Read => 1,
        Marker::Delivered => 2,
    };
    let found: Option<(i64, Option<Marked>)> = c
        .prepare_cached(concat!(
            "SELECT ",
            last_seq_of!("c"),
            ", m.read_seq, m.delivered_seq, u.username
               FROM conversations c
               LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = ?2
               LEFT JOIN users u ON u.id = m.user_id
              WHERE c.id = ?1"
        ))
        .db()?
        .query_row(params![id.0.as_bytes(), user.0], |r| {
            let member = match r.get::<_, Option<i64>>(column)? {
                None => None,
                Some(at) => Some(Marked {
                    at,
                    name: username(r, 3)?,
                }),
            };
            Ok((r.get(0)?, member))
        })
        .optional()
        .db()?;
    let (last_seq, member) = found.ok_or(StoreError::NotFound("conversation"))?;
    let Marked { at: current, name } = member.ok_or(StoreError::NotMember)?;
    let target = seq.min(last_seq);
    if target <= current {
        return Ok(current);
    }
    let (sql, row) = match marker {
        Marker::Read => (
            "UPDATE members SET read_seq = ?3, delivered_seq = max(delivered_seq, ?3)
              WHERE conversation_id = ?1 AND user_id = ?2",
            event_codec::read(&name, target),
        ),
        Marker::Delivered => (
            "UPDATE members SET delivered_seq = ?3
              WHERE conversation_id = ?1 AND user_id = ?2",
            event_codec::delivered(&name, target),
        ),
    };
    c.prepare_cached(sql)
        .db()?
        .execute(params![id.0.as_bytes(), user.0, target])
        .db()?;
    events::append(c, id, &row, events::now())?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An old page of a long conversation must be a seek into the primary
    /// key with both bounds, not a backwards scan from the newest message.
    #[test]
    fn history_pages_seek_to_their_bounds() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::migrate::run(&mut c).unwrap();
        let plan = |sql: &str| {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
            stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let after = plan(HISTORY_AFTER);
        assert!(
            after.contains("SEARCH m USING PRIMARY KEY (conversation_id=? AND seq>? AND seq<?)"),
            "{after}"
        );
        let before = plan(HISTORY_BEFORE);
        assert!(
            before.contains("SEARCH m USING PRIMARY KEY (conversation_id=? AND seq<?)"),
            "{before}"
        );
    }
}
