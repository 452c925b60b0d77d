//! SQL for messages and read markers. [`append_message`] is the hot path of
//! the whole server: a handful of point look-ups and writes on B-tree
//! tails, run by the writer thread inside its batch transaction.

use natter_store::{Appended, HistoryQuery, NewMessage, StoreError, StoreResult};
use natter_types::{Body, ConversationId, Message, Timestamp, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{DbResultExt, message_at, message_cols, micros, truncate, username};

/// Appends a message. Sequence numbers are gap-free because the writer runs
/// one job at a time and a failed job's savepoint is rolled back, taking its
/// increment of `last_seq` with it.
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

    // One row tells both whether the conversation exists and whether the
    // sender is in it (and gives the sender's name for the result).
    let sender: Option<Option<_>> = c
        .prepare_cached(
            "SELECT u.username
               FROM conversations c
               LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = ?2
               LEFT JOIN users u ON u.id = m.user_id
              WHERE c.id = ?1",
        )
        .db()?
        .query_row(params![conv, new.sender.0], |r| match r.get_ref(0)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            _ => username(r, 0).map(Some),
        })
        .optional()
        .db()?;
    let sender = match sender {
        None => return Err(StoreError::NotFound("conversation")),
        Some(None) => return Err(StoreError::NotMember),
        Some(Some(name)) => name,
    };

    let sent_at = micros(new.now);
    let seq: i64 = c
        .prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = ?2
              WHERE id = ?1
             RETURNING last_seq",
        )
        .db()?
        .query_row(params![conv, sent_at], |r| r.get(0))
        .db()?;
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
    // the sender has read their own message
    c.prepare_cached(
        "UPDATE members SET read_seq = max(read_seq, ?3)
          WHERE conversation_id = ?1 AND user_id = ?2",
    )
    .db()?
    .execute(params![conv, new.sender.0, seq])
    .db()?;

    Ok(Appended {
        message: Message {
            id: new.id,
            conversation_id: new.conversation_id,
            seq,
            sender,
            client_id: new.client_id.as_str().to_owned(),
            body: Some(new.body.as_str().to_owned()),
            sent_at: truncate(new.now),
            edited_at: None,
            deleted_at: None,
        },
        created: true,
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
    message(c, id, seq)
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
    message(c, id, seq)
}

/// Moves a read marker forward, never past the last message, never back.
pub(crate) fn mark_read(
    c: &Connection,
    id: ConversationId,
    user: UserId,
    seq: i64,
) -> StoreResult<i64> {
    let marker: Option<i64> = c
        .prepare_cached(
            "UPDATE members
                SET read_seq = max(read_seq,
                                   min(?3, (SELECT last_seq FROM conversations WHERE id = ?1)))
              WHERE conversation_id = ?1 AND user_id = ?2
             RETURNING read_seq",
        )
        .db()?
        .query_row(params![id.0.as_bytes(), user.0, seq], |r| r.get(0))
        .optional()
        .db()?;
    if let Some(marker) = marker {
        return Ok(marker);
    }
    let exists = c
        .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")
        .db()?
        .exists([id.0.as_bytes()])
        .db()?;
    Err(if exists {
        StoreError::NotMember
    } else {
        StoreError::NotFound("conversation")
    })
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
