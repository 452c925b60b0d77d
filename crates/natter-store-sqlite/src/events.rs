//! The event log: rows appended by the write operations, inside the
//! writer's transaction, and read back in position order.
//!
//! A position is `EventPos { major: 0, minor: <events.pos> }`. `pos` is the
//! rowid, handed out by one writer at a time (our writer thread, and
//! SQLite's write lock across processes), so rowid order is commit order:
//! a read that sees position `p` has every position below it too, and no
//! later commit can land behind a reader. That is what the contract asks
//! of `events_after` with no extra bookkeeping. Positions are never reused:
//! a trigger forbids deleting the newest row (see `V2__events.sql`).
//!
//! Rows hold what the shared [`event_codec`] writes; message events are
//! joined with the message (its current state), `conversation.created`
//! with the conversation record.

use natter_store::event_codec::{self, NewEventRow};
use natter_store::{StoreError, StoreResult};
use natter_types::{Conversation, ConversationId, Event, EventPos, Message, Timestamp, UserId};
use rusqlite::{Connection, Row, params};

use crate::codec::{
    DbResultExt, conversation_cols, message_cols, micros, opt_conversation_at, opt_message_at,
    truncate, ts, uuid,
};
use crate::recent;

/// Appends one event to the log, in the caller's (the writer's)
/// transaction.
pub(crate) fn append(
    c: &Connection,
    conversation: ConversationId,
    row: &NewEventRow,
    at: Timestamp,
) -> StoreResult<()> {
    insert(c, conversation, row, at, None)
}

/// Appends a message event, which carries `message` as this change left
/// it.
pub(crate) fn append_for(
    c: &Connection,
    conversation: ConversationId,
    row: &NewEventRow,
    at: Timestamp,
    message: &Message,
) -> StoreResult<()> {
    insert(c, conversation, row, at, Some(message))
}

fn insert(
    c: &Connection,
    conversation: ConversationId,
    row: &NewEventRow,
    at: Timestamp,
    message: Option<&Message>,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO events (conversation_id, kind, seq, payload, target_user_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .db()?
    .execute(params![
        conversation.0.as_bytes(),
        row.kind,
        row.seq,
        row.payload,
        row.target_user.map(|u| u.0),
        micros(at),
    ])
    .db()?;
    // The event as a read of the log would decode it, for the in-memory
    // copy of the newest events; `None` where the copy must not hold it
    // (`conversation.created`, which carries a record that keeps
    // changing).
    let pos = c.last_insert_rowid();
    recent::appended(pos, || {
        let kind = event_codec::decode(row.kind, &row.payload, message.cloned(), None).ok()?;
        Some(Event {
            pos: EventPos::new(0, pos),
            conversation_id: conversation,
            at: truncate(at),
            kind,
        })
    });
    Ok(())
}

/// The time of an event whose operation is not given one: the writer's
/// clock, at the precision the store keeps.
pub(crate) fn now() -> Timestamp {
    truncate(chrono::Utc::now())
}

/// The newest position in the log, but not past `upto` (the durable head,
/// see `writer.rs`; `i64::MAX` for the writer itself).
pub(crate) fn head(c: &Connection, upto: i64) -> StoreResult<EventPos> {
    let pos: i64 = c
        .prepare_cached("SELECT coalesce(max(pos), 0) FROM events")
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    Ok(EventPos::new(0, pos.min(upto)))
}

/// The `pos` to read after, or `None` when no event of this store can
/// follow `after` (a position from another backend, major > 0).
fn start(after: EventPos) -> Option<i64> {
    match after.major {
        0 => Some(after.minor),
        m if m < 0 => Some(i64::MIN),
        _ => None,
    }
}

/// Columns 0..=4 of an event row, then the joined message (5..=13) and
/// conversation (14..=19), for [`raw_at`].
macro_rules! event_select {
    () => {
        concat!(
            "SELECT e.pos, e.conversation_id, e.kind, e.payload, e.created_at, ",
            message_cols!("m", "s"),
            ", ",
            conversation_cols!("c"),
            " FROM events e
              LEFT JOIN messages m ON m.conversation_id = e.conversation_id AND m.seq = e.seq
              LEFT JOIN users s ON s.id = m.sender_id
              LEFT JOIN conversations c
                     ON e.kind = 'conversation.created' AND c.id = e.conversation_id"
        )
    };
}

/// Everything after `?1`, the first `?2` events: a walk of the rowid
/// range.
const AFTER: &str = concat!(
    event_select!(),
    " WHERE e.pos > ?1 AND e.pos <= ?3
      ORDER BY e.pos
      LIMIT ?2"
);

/// What user `?2` may see in the window `(?1, ?4]` of the log, the first
/// `?3` events: the events of the conversations they are a member of now,
/// and their own removals.
///
/// A walk of the window by rowid: the unary `+`s keep the planner from
/// the per-conversation indexes, which would cost a seek per conversation
/// of the user even when the window holds a handful of rows. The user's
/// conversation ids are read once into an ephemeral index (from
/// `members_by_user`), so each row costs one look-up, however many
/// conversations the user has.
const USER_WINDOW: &str = concat!(
    event_select!(),
    " WHERE e.pos > ?1 AND e.pos <= ?4
        AND (+e.conversation_id IN (SELECT mb.conversation_id FROM members mb
                                     WHERE mb.user_id = ?2)
             OR +e.target_user_id = ?2)
      ORDER BY e.pos
      LIMIT ?3"
);

/// The same as [`USER_WINDOW`] after `?1` up to `?4`, through
/// the indexes: for each of the user's conversations a range of
/// `events_by_conversation`, and the user's removals from
/// `events_by_target`, positions only (covering), of which the first `?3`
/// are kept and only those rows read and joined. A removal from a
/// conversation the user has joined again is in the first arm already; the
/// second leaves it out, so that no position counts twice against `?3`.
const USER_INDEXED: &str = concat!(
    event_select!(),
    " WHERE e.pos IN (
          SELECT x.pos FROM members mb
            JOIN events x ON x.conversation_id = mb.conversation_id
           WHERE mb.user_id = ?2 AND x.pos > ?1 AND x.pos <= ?4
          UNION ALL
          SELECT x.pos FROM events x
           WHERE x.target_user_id = ?2 AND x.pos > ?1 AND x.pos <= ?4
             AND x.conversation_id NOT IN (SELECT mb.conversation_id FROM members mb
                                            WHERE mb.user_id = ?2)
          ORDER BY 1
          LIMIT ?3)
      ORDER BY e.pos"
);

/// How many rows of the log a user's read walks before it switches to the
/// indexes: at least this many, and more for large pages (see
/// [`user_after`]).
const WINDOW_MIN: i64 = 4096;
const WINDOW_PER_EVENT: i64 = 16;

/// Everything after `after` up to `upto`, the first `limit` events.
pub(crate) fn after(
    c: &Connection,
    after: EventPos,
    limit: u32,
    upto: i64,
) -> StoreResult<Vec<Event>> {
    let Some(from) = start(after) else {
        return Ok(Vec::new());
    };
    let mut stmt = c.prepare_cached(AFTER).db()?;
    let rows = stmt
        .query_map(params![from, limit, upto], raw_at)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    rows.into_iter().map(RawEvent::decode).collect()
}

/// What `user` may see after `after`, the first `limit` events.
///
/// Two plans, because readers come in two kinds. Most are near the end of
/// the log: a long poll, or a session that has caught up. For them the
/// cheapest is to walk the few rows after the cursor, whatever the number
/// of the user's conversations. A client back after a long absence is far
/// behind, and walking the whole tail for a user who is in a small part of
/// it would read every row since; for that the indexes give the user's
/// rows directly, at the cost of one seek per conversation.
///
/// So: walk a window of `max(WINDOW_MIN, WINDOW_PER_EVENT * limit)` rows;
/// if the log ends inside it, or the window alone fills the page (a user
/// in at least one event of `WINDOW_PER_EVENT`), that is the answer. Else
/// the rest of the page comes from the indexes, after the window. Both
/// reads are in one read transaction, so they see the same log.
pub(crate) fn user_after(
    c: &Connection,
    user: UserId,
    after: EventPos,
    limit: u32,
    upto: i64,
) -> StoreResult<Vec<Event>> {
    let window = WINDOW_MIN.max(WINDOW_PER_EVENT * i64::from(limit));
    user_after_with(c, user, after, limit, window, upto)
}

fn user_after_with(
    c: &Connection,
    user: UserId,
    after: EventPos,
    limit: u32,
    window: i64,
    upto: i64,
) -> StoreResult<Vec<Event>> {
    let Some(from) = start(after) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Dropped without a commit: a read-only transaction just ends.
    let snapshot = c.unchecked_transaction().db()?;
    let head = head(&snapshot, upto)?.minor;
    let end = from.saturating_add(window);
    let mut rows = snapshot
        .prepare_cached(USER_WINDOW)
        .db()?
        .query_map(params![from, user.0, limit, end.min(head)], raw_at)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    let missing = limit as usize - rows.len();
    if end < head && missing > 0 {
        let rest = snapshot
            .prepare_cached(USER_INDEXED)
            .db()?
            .query_map(params![end, user.0, missing as u32, head], raw_at)
            .db()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db()?;
        rows.extend(rest);
    }
    drop(snapshot);
    rows.into_iter().map(RawEvent::decode).collect()
}

/// An event row as read, before the shared codec rebuilds its kind.
struct RawEvent {
    pos: i64,
    conversation_id: ConversationId,
    kind: String,
    payload: String,
    at: Timestamp,
    message: Option<Message>,
    conversation: Option<Conversation>,
}

fn raw_at(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        pos: r.get(0)?,
        conversation_id: ConversationId(uuid(r, 1)?),
        kind: r.get(2)?,
        payload: r.get(3)?,
        at: ts(r, 4)?,
        message: opt_message_at(r, 5)?,
        conversation: opt_conversation_at(r, 14)?,
    })
}

impl RawEvent {
    fn decode(self) -> StoreResult<Event> {
        let kind = event_codec::decode(&self.kind, &self.payload, self.message, self.conversation)
            .map_err(|e| StoreError::Backend(format!("event {}: {e}", self.pos)))?;
        Ok(Event {
            pos: EventPos::new(0, self.pos),
            conversation_id: self.conversation_id,
            at: self.at,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn plan(c: &Connection, sql: &str) -> String {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
        stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Each read's plan is the one its documentation describes: ranges of
    /// the rowid or of the indexes, never a scan of the log, never a sort
    /// of whole rows.
    #[test]
    fn event_reads_seek() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::migrate::run(&mut c).unwrap();
        let joins = [
            "SEARCH m USING PRIMARY KEY (conversation_id=? AND seq=?) LEFT-JOIN",
            "SEARCH s USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN",
            "SEARCH c USING PRIMARY KEY (id=?) LEFT-JOIN",
        ];
        let check = |sql: &str, want: &[&str]| {
            let p = plan(&c, sql);
            for w in want.iter().chain(&joins) {
                assert!(p.contains(w), "{w:?} not in\n{p}");
            }
            assert!(!p.contains("SCAN"), "{p}");
            p
        };
        let p = check(
            AFTER,
            &["SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"],
        );
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        let p = check(
            USER_WINDOW,
            &[
                "SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
                "SEARCH mb USING COVERING INDEX members_by_user (user_id=?)",
            ],
        );
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        let p = check(
            USER_INDEXED,
            &[
                "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)",
                "SEARCH mb USING COVERING INDEX members_by_user (user_id=?)",
                "SEARCH x USING COVERING INDEX events_by_conversation (conversation_id=? AND rowid>? AND rowid<?)",
                "SEARCH x USING INDEX events_by_target (target_user_id=? AND rowid>? AND rowid<?)",
            ],
        );
        // the only sort is of positions, inside the IN list
        assert_eq!(p.matches("TEMP B-TREE").count(), 1, "{p}");
    }

    /// Positions are never handed out twice: old events may be deleted,
    /// the newest may not, so the next position is always new.
    #[test]
    fn positions_are_never_reused() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::migrate::run(&mut c).unwrap();
        let conv = ConversationId::new();
        for seq in 1..=3 {
            append(&c, conv, &event_codec::message_created(seq), now()).unwrap();
        }
        assert_eq!(head(&c, i64::MAX).unwrap(), EventPos::new(0, 3));
        let err = c.execute("DELETE FROM events", []).unwrap_err();
        assert!(err.to_string().contains("newest event"), "{err}");
        assert!(c.execute("DELETE FROM events WHERE pos = 3", []).is_err());
        assert_eq!(
            c.execute("DELETE FROM events WHERE pos < 3", []).unwrap(),
            2
        );
        append(&c, conv, &event_codec::message_created(4), now()).unwrap();
        assert_eq!(head(&c, i64::MAX).unwrap(), EventPos::new(0, 4));
    }

    /// A log of `n` events over `convs` conversations (pseudo-random), the
    /// user 1 a member of every `every`-th and removed from conversation 1.
    fn synthetic(path: &std::path::Path, convs: i64, n: i64, every: i64) -> Connection {
        let mut c = crate::conn::open_writer(path).unwrap();
        crate::migrate::run(&mut c).unwrap();
        let conv = |i: i64| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            b
        };
        c.execute_batch(
            "BEGIN;
             INSERT INTO users (id, username, created_at, salt, iterations, sha1_stored_key,
                 sha1_server_key, sha256_stored_key, sha256_server_key)
             VALUES (1, 'u1', 0, x'', 1, x'', x'', x'', x''), (2, 'u2', 0, x'', 1, x'', x'', x'', x'');",
        )
        .unwrap();
        {
            let mut cv = c
                .prepare(
                    "INSERT INTO conversations (id, kind, title, created_at)
                     VALUES (?1, 'group', 't', 0)",
                )
                .unwrap();
            let mut mb = c
                .prepare(
                    "INSERT INTO members (conversation_id, user_id, role, joined_at)
                     VALUES (?1, ?2, 'member', 0)",
                )
                .unwrap();
            for i in 0..convs {
                cv.execute(params![conv(i)]).unwrap();
                mb.execute(params![conv(i), 2]).unwrap();
                if i % every == 0 && i != 1 {
                    mb.execute(params![conv(i), 1]).unwrap();
                }
            }
            let mut ev = c
                .prepare(
                    "INSERT INTO events (conversation_id, kind, seq, payload, target_user_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                )
                .unwrap();
            let mut ms = c
                .prepare(
                    "INSERT INTO messages (conversation_id, seq, id, sender_id, client_id, body, sent_at)
                     VALUES (?1, ?2, ?3, 2, ?4, 'hello there', 0)",
                )
                .unwrap();
            let removed = event_codec::member_removed(
                UserId(1),
                &natter_types::Username::parse("u1").unwrap(),
            );
            let mut seqs = vec![0i64; convs as usize];
            let mut x: u64 = 12345;
            for k in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % convs as u64) as i64;
                if k % 997 == 500 {
                    ev.execute(params![
                        conv(1),
                        removed.kind,
                        None::<i64>,
                        removed.payload,
                        1
                    ])
                    .unwrap();
                    continue;
                }
                seqs[i as usize] += 1;
                let seq = seqs[i as usize];
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&(k as u64).to_be_bytes());
                ms.execute(params![conv(i), seq, id, format!("c{k}")])
                    .unwrap();
                ev.execute(params![conv(i), "message.created", seq, "{}", None::<i64>])
                    .unwrap();
            }
        }
        c.execute_batch("COMMIT").unwrap();
        c
    }

    /// The two-plan read gives exactly what a plain filter of the log
    /// gives, wherever the window ends, also for a user removed from a
    /// conversation and back in it.
    #[test]
    fn user_reads_agree_with_a_plain_filter() {
        let dir = tempfile::tempdir().unwrap();
        let c = synthetic(&dir.path().join("x.sqlite3"), 40, 3000, 7);
        agree_with_a_plain_filter(&c);
        c.execute(
            "INSERT INTO members (conversation_id, user_id, role, joined_at)
             SELECT conversation_id, 1, 'member', 0 FROM events WHERE target_user_id = 1 LIMIT 1",
            [],
        )
        .unwrap();
        agree_with_a_plain_filter(&c);
    }

    fn agree_with_a_plain_filter(c: &Connection) {
        let mine: Vec<i64> = c
            .prepare(
                "SELECT pos FROM events
                  WHERE conversation_id IN (SELECT conversation_id FROM members WHERE user_id = 1)
                     OR target_user_id = 1
                  ORDER BY pos",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(mine.len() > 300 && mine.len() < 1000, "{}", mine.len());
        // `upto` is the durable head: nothing past it may be read
        for upto in [i64::MAX, 2999, 1500] {
            for window in [1, 10, 100, 1000, 10_000] {
                for after in [0i64, 1, 499, 500, 2000, 2999, 3000, 5000] {
                    for limit in [1u32, 7, 100, 5000] {
                        let got: Vec<i64> = user_after_with(
                            c,
                            UserId(1),
                            EventPos::new(0, after),
                            limit,
                            window,
                            upto,
                        )
                        .unwrap()
                        .iter()
                        .map(|e| e.pos.minor)
                        .collect();
                        let want: Vec<i64> = mine
                            .iter()
                            .copied()
                            .filter(|&p| p > after && p <= upto)
                            .take(limit as usize)
                            .collect();
                        assert_eq!(
                            got, want,
                            "upto {upto}, window {window}, after {after}, limit {limit}"
                        );
                    }
                }
            }
            let all: Vec<i64> = after(c, EventPos::new(0, 100), 5000, upto)
                .unwrap()
                .iter()
                .map(|e| e.pos.minor)
                .collect();
            let want: Vec<i64> = (101..=upto.min(3000)).collect();
            assert_eq!(all, want, "upto {upto}");
            assert_eq!(head(c, upto).unwrap().minor, upto.min(3000));
        }
    }

    /// Timings on a long log, for the record: a user in 500 of 10 000
    /// conversations (5% of the log) and one in 3 (0.03%), reading pages of
    /// 500 from near the end and from far back. Run with `cargo test
    /// --release -p natter-store-sqlite -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn user_reads_on_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite3");
        const N: i64 = 1_000_000;
        let t = Instant::now();
        let c = synthetic(&path, 10_000, N, 20);
        c.execute(
            "DELETE FROM members WHERE user_id = 2 AND conversation_id NOT IN
                 (SELECT conversation_id FROM members WHERE user_id = 1 LIMIT 3)",
            [],
        )
        .unwrap();
        drop(c);
        eprintln!("{N} events written in {:?}", t.elapsed());
        let r = crate::conn::open_reader(&path).unwrap();
        let head = head(&r, i64::MAX).unwrap().minor;
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(
                after(&r, EventPos::new(0, head - N), 500, i64::MAX)
                    .unwrap()
                    .len(),
                500
            );
        }
        eprintln!("all users' events: 500 events in {:?}", t.elapsed() / 5);
        for user in [1, 2] {
            for back in [0, 100, 10_000, 100_000, N] {
                let after = EventPos::new(0, head - back);
                let t = Instant::now();
                let mut n = 0;
                for _ in 0..5 {
                    n = user_after(&r, UserId(user), after, 500, i64::MAX)
                        .unwrap()
                        .len();
                }
                eprintln!(
                    "user {user}, {back:>7} events behind: {n:>3} events in {:?}",
                    t.elapsed() / 5
                );
            }
        }
    }
}
