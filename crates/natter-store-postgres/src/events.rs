//! The event log on PostgreSQL: positions in commit order, across
//! connections and nodes.
//!
//! # The problem
//!
//! Readers tail the log by asking for the events after the last position
//! they saw, so a position must never become visible *behind* one that a
//! reader may already have passed. A `BIGSERIAL` alone breaks this:
//! sequence numbers are handed out when rows are inserted, not when they
//! commit. T1 takes id 10, T2 takes id 11 and commits first; a reader that
//! saw 11 and moved there skips 10 for good once T1 commits. Locking the
//! log for the length of every writing transaction would fix it by making
//! all writers wait for each other, which is not an option either.
//!
//! # The technique (as in PgQ)
//!
//! Each row records the id of the transaction that wrote it: `xid xid8`,
//! filled by `DEFAULT pg_current_xact_id()` (the 64-bit id, which never
//! wraps around), next to `id`, a sequence that orders the rows of one
//! transaction. The position is `EventPos { major: xid, minor: id }`,
//! ordered lexicographically. A reader only returns rows with
//!
//! ```text
//! xid < pg_snapshot_xmin(pg_current_snapshot())
//! ```
//!
//! in `(xid, id)` order. The `xmin` of a snapshot (the *horizon* below) is
//! the oldest transaction id still running when the snapshot was taken:
//! - every transaction with a smaller id has finished, so all of its rows
//!   are committed and visible to this very snapshot (or rolled back and
//!   gone): below the horizon the log is complete and will never change;
//! - every transaction that has not finished, and every one that has not
//!   started or not yet been given an id, has an id >= the horizon, and
//!   horizons only grow.
//!
//! So once a reader has been given an event at position `p` (always
//! `p.major < horizon`), every event that can still appear has
//! `xid >= horizon > p.major`: it comes after `p`, and
//! `(xid, id) > (after.major, after.minor)` never skips a row. Inside one
//! transaction the sequence orders the rows as they were inserted (a
//! removal before the promotion it causes). The horizon and the rows come
//! from the same statement snapshot, and a plain `SELECT` is given no
//! transaction id, so a reader never holds back the log it reads.
//!
//! Everything is a B-tree range scan: the primary key `(xid, id)` for the
//! whole log and its head, `(conversation_id, xid, id)` for one
//! conversation, and a partial `(target_user_id, xid, id)` index for
//! removals. Positions cross the wire as `bigint` (`xid::text::bigint`;
//! a 64-bit xid stays far below `i64::MAX`) and come back as
//! `$1::bigint::text::xid8`, a constant that the index scans use as a
//! bound.
//!
//! # The cost, and reading what has committed
//!
//! The horizon is server-wide: any transaction that holds an id, in any
//! database of the server, holds back every event committed after it
//! started until it finishes. With the short transactions of this store
//! that is a few milliseconds. But the conformance suite, and callers like
//! a hub that reads right after it was told of a commit, expect a read to
//! return what has committed before it. So a read also looks, in the same
//! statement, for the newest *held-back* event: committed and visible, but
//! at or above the horizon (in the whole log, also for a user's read: one
//! index probe rather than one per conversation, at the price of sometimes
//! waiting for events the user will not see). If there is one and the page
//! is not full, the
//! read polls the horizon (a cheap query, backing off from 1 ms to 20 ms)
//! until it passes that event, then reads again. The wait ends when the
//! transactions that were open at the time finish, whatever is started
//! meanwhile. A transaction left open (idle in transaction, a forgotten
//! prepared transaction) would stall the log for as long as it lasts, so
//! the wait is bounded by [`PgOptions::event_wait`](crate::PgOptions):
//! after that the read returns only what is safe and logs a warning that
//! names the open transaction's id. Setting the server's
//! `idle_in_transaction_session_timeout` is wise on a shared database.
//!
//! Caveat for operators: the positions are transaction ids, which survive
//! `pg_upgrade` but not a dump and restore into a new cluster, where ids
//! start again from a low value. Cursors held by clients from before such
//! a restore would point past every new event; clear the event log and
//! let clients resynchronise after one.
//!
//! # A user's catch-up
//!
//! `user_events_after` must find the events of the user's conversations in
//! a log shared by everyone, however old the cursor. Scanning the log from
//! the cursor and filtering by membership costs the whole log's traffic
//! since the cursor, which for a user in a few quiet conversations is
//! almost all wasted. Instead the query takes, for each membership, the
//! first `limit` positions of that conversation after the cursor (an
//! index-only scan of `events_conversation`; nothing for a quiet
//! conversation beyond one index descent), adds the user's own removals,
//! keeps the first `limit` positions overall and only then fetches those
//! rows and joins their messages and conversations. The cost is one index
//! descent per membership plus at most `limit` index entries per active
//! conversation, all from the index. Measured on a log of 500,000 events
//! with a user in 500 conversations and pages of 100: about 5 ms from a
//! recent cursor, 30 ms from one before the whole log (50,000 index
//! entries), against about 2 ms for a page of the whole log.

use std::time::Duration;

use deadpool_postgres::{Client, GenericClient};
use natter_store::event_codec::{self, NewEventRow};
use natter_store::{StoreError, StoreResult};
use natter_types::{ConversationId, Event, EventPos, Timestamp, UserId};
use tokio::time::Instant;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PgStore;
use crate::rows::{self, conversation_cols, get, message_cols};
use crate::store::{execute, query, query_opt};

/// The longest pause between two looks at the horizon while waiting.
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// Appends one row, in the caller's transaction. The transaction id and
/// the sequence number come from the column defaults.
const INSERT_EVENT: &str = "INSERT INTO events \
     (conversation_id, kind, seq, payload, target_user_id, created_at) \
     VALUES ($1, $2, $3, $4::text::jsonb, $5, $6)";

/// Appends `row` to the log in the transaction `c` is in.
pub(crate) async fn append<C: GenericClient>(
    c: &C,
    conversation: ConversationId,
    row: &NewEventRow,
    at: Timestamp,
) -> StoreResult<()> {
    let target = row.target_user.map(|u| u.0);
    execute(
        c,
        INSERT_EVENT,
        &[
            &conversation.0,
            &row.kind,
            &row.seq,
            &row.payload,
            &target,
            &at,
        ],
    )
    .await?;
    Ok(())
}

/// The time of an event whose operation is given none.
pub(crate) fn clock() -> Timestamp {
    chrono::Utc::now()
}

/// Wraps a query that selects `(xid, id)` of one page of positions, in
/// order, as the CTE `page`, into a complete read. The page may use `h`,
/// the horizon. Columns: the newest held-back xid (or NULL), then the
/// event, then its message with the sender's username (message kinds),
/// then its conversation (`conversation.created`). With an empty page it
/// returns one row whose event columns are all NULL, so that the held-back
/// xid still comes back.
///
/// Each page row fetches its event, message, sender and conversation by
/// key in a `LATERAL` subquery with `LIMIT 1`, which the planner cannot
/// turn into a join of whole tables. That matters for prepared statements:
/// a generic plan does not know the page's `LIMIT $n` and guesses a tenth
/// of the log, which made plain joins hash the whole `events` table (and,
/// with small tables, merge-join `users` from its first id).
macro_rules! read_events_sql {
    ($page:literal) => {
        concat!(
            "WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon),",
            " held AS (SELECT (SELECT e.xid FROM events e",
            "   WHERE e.xid >= (SELECT horizon FROM h) ORDER BY e.xid DESC LIMIT 1) AS xid),",
            " page AS (",
            $page,
            ")",
            " SELECT held.xid::text::bigint, e.xid::text::bigint, e.id, e.conversation_id,",
            " e.kind, e.payload::text, e.created_at, msg.*, conv.*",
            " FROM held LEFT JOIN (page p",
            "   CROSS JOIN LATERAL (SELECT * FROM events e",
            "     WHERE e.xid = p.xid AND e.id = p.id LIMIT 1) e",
            "   LEFT JOIN LATERAL (SELECT ",
            message_cols!("m", "mu"),
            " FROM messages m CROSS JOIN LATERAL (SELECT u.username FROM users u",
            "       WHERE u.id = m.sender_id LIMIT 1) mu",
            "     WHERE m.conversation_id = e.conversation_id AND m.seq = e.seq LIMIT 1) msg ON true",
            "   LEFT JOIN LATERAL (SELECT ",
            conversation_cols!("c"),
            " FROM conversations c",
            "     WHERE c.id = e.conversation_id AND e.kind = 'conversation.created' LIMIT 1",
            "   ) conv ON true",
            " ) ON true",
            " ORDER BY e.xid, e.id"
        )
    };
}

/// Column offsets of [`read_events_sql`].
const HELD: usize = 0;
const EVENT: usize = 1;
const MESSAGE: usize = EVENT + 6;
const CONVERSATION: usize = MESSAGE + 9;

/// The whole log after `($1, $2)`, at most `$3` events.
const EVENTS_AFTER: &str = read_events_sql!(
    "SELECT e.xid, e.id FROM events e \
     WHERE (e.xid, e.id) > ($1::bigint::text::xid8, $2) \
       AND e.xid < (SELECT horizon FROM h) \
     ORDER BY e.xid, e.id LIMIT $3"
);

/// What user `$1` sees after `($2, $3)`, at most `$4` events: the first
/// `$4` positions of each of their conversations, and their removals from
/// conversations they are not (again) a member of, merged.
const USER_EVENTS_AFTER: &str = read_events_sql!(
    "SELECT x.xid, x.id FROM ( \
       SELECT p.xid, p.id FROM members mb \
       CROSS JOIN LATERAL ( \
         SELECT e.xid, e.id FROM events e \
         WHERE e.conversation_id = mb.conversation_id \
           AND (e.xid, e.id) > ($2::bigint::text::xid8, $3) \
           AND e.xid < (SELECT horizon FROM h) \
         ORDER BY e.xid, e.id LIMIT $4 \
       ) p \
       WHERE mb.user_id = $1 \
       UNION ALL \
       (SELECT e.xid, e.id FROM events e \
        WHERE e.target_user_id = $1 \
          AND (e.xid, e.id) > ($2::bigint::text::xid8, $3) \
          AND e.xid < (SELECT horizon FROM h) \
          AND NOT EXISTS (SELECT 1 FROM members mb \
                          WHERE mb.conversation_id = e.conversation_id AND mb.user_id = $1) \
        ORDER BY e.xid, e.id LIMIT $4) \
     ) x ORDER BY x.xid, x.id LIMIT $4"
);

/// The newest held-back xid (or NULL), then the newest safe position (or
/// NULLs).
const HEAD: &str = "WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) \
     SELECT (SELECT e.xid FROM events e WHERE e.xid >= (SELECT horizon FROM h) \
             ORDER BY e.xid DESC LIMIT 1)::text::bigint, \
            hd.xid::text::bigint, hd.id \
     FROM h LEFT JOIN LATERAL ( \
       SELECT e.xid, e.id FROM events e WHERE e.xid < (SELECT horizon FROM h) \
       ORDER BY e.xid DESC, e.id DESC LIMIT 1 \
     ) hd ON true";

const HORIZON: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A cursor as bound parameters. Positions handed out are never negative;
/// a negative major (not a valid `xid8`) means "from the start".
fn bounds(after: EventPos) -> (i64, i64) {
    (after.major.max(0), after.minor)
}

fn event(row: &Row) -> StoreResult<Option<Event>> {
    let Some(major) = get::<Option<i64>>(row, EVENT)? else {
        return Ok(None);
    };
    let kind: &str = get(row, EVENT + 3)?;
    let payload: &str = get(row, EVENT + 4)?;
    let message = rows::optional_message(row, MESSAGE)?;
    let conversation = match get::<Option<uuid::Uuid>>(row, CONVERSATION)? {
        Some(_) => Some(rows::conversation(row, CONVERSATION)?),
        None => None,
    };
    let kind = event_codec::decode(kind, payload, message, conversation)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(Some(Event {
        pos: EventPos::new(major, get(row, EVENT + 1)?),
        conversation_id: ConversationId(get(row, EVENT + 2)?),
        at: get(row, EVENT + 5)?,
        kind,
    }))
}

/// One read: the events and the newest held-back xid.
async fn read(c: &Client, sql: &str, params: Params<'_>) -> StoreResult<(Vec<Event>, Option<i64>)> {
    let found = query(c, sql, params).await?;
    let held = match found.first() {
        Some(row) => get(row, HELD)?,
        None => None,
    };
    let mut events = Vec::with_capacity(found.len());
    for row in &found {
        events.extend(event(row)?);
    }
    Ok((events, held))
}

/// Waits until every transaction with an id up to `held` has finished, or
/// `wait` has passed; returns whether it got there.
async fn settle(c: &Client, held: i64, wait: Duration) -> StoreResult<bool> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        let row = query_opt(c, HORIZON, &[])
            .await?
            .ok_or_else(|| StoreError::Backend("no horizon".into()))?;
        let horizon: i64 = get(&row, 0)?;
        if horizon > held {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                open_xid = horizon,
                held_back_xid = held,
                waited_ms = wait.as_millis() as u64,
                "event log held back by a transaction that is still open \
                 (see pg_stat_activity.backend_xid); answering without the events behind it"
            );
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Reads a page; if events committed before the read are held back and the
/// page has room, waits for them (see the module notes) and reads again.
async fn read_settled(
    store: &PgStore,
    sql: &str,
    params: Params<'_>,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    let c = store.conn().await?;
    let (events, held) = read(&c, sql, params).await?;
    match held {
        Some(held) if events.len() < limit as usize => {
            settle(&c, held, store.event_wait).await?;
            Ok(read(&c, sql, params).await?.0)
        }
        _ => Ok(events),
    }
}

pub(crate) async fn events_after(
    store: &PgStore,
    after: EventPos,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let (major, minor) = bounds(after);
    let max = i64::from(limit);
    read_settled(store, EVENTS_AFTER, &[&major, &minor, &max], limit).await
}

pub(crate) async fn user_events_after(
    store: &PgStore,
    user: UserId,
    after: EventPos,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let (major, minor) = bounds(after);
    let max = i64::from(limit);
    read_settled(
        store,
        USER_EVENTS_AFTER,
        &[&user.0, &major, &minor, &max],
        limit,
    )
    .await
}

pub(crate) async fn event_head(store: &PgStore) -> StoreResult<EventPos> {
    let c = store.conn().await?;
    let head = |row: &Row| -> StoreResult<EventPos> {
        Ok(match get::<Option<i64>>(row, 1)? {
            Some(major) => EventPos::new(major, get(row, 2)?),
            None => EventPos::START,
        })
    };
    let row = query_opt(&c, HEAD, &[])
        .await?
        .ok_or_else(|| StoreError::Backend("no event head".into()))?;
    let Some(held) = get::<Option<i64>>(&row, 0)? else {
        return head(&row);
    };
    settle(&c, held, store.event_wait).await?;
    let row = query_opt(&c, HEAD, &[])
        .await?
        .ok_or_else(|| StoreError::Backend("no event head".into()))?;
    head(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_bind_as_valid_xids() {
        assert_eq!(bounds(EventPos::START), (0, 0));
        assert_eq!(bounds(EventPos::new(-5, 3)), (0, 3));
        assert_eq!(bounds(EventPos::new(812, 9)), (812, 9));
    }

    #[test]
    fn read_columns_line_up() {
        // held + 6 event columns, then the message's and the
        // conversation's, in the order the rows module decodes them
        let select = EVENTS_AFTER.rsplit_once(" SELECT held.").unwrap().1;
        let select = select.split_once(" FROM held").unwrap().0;
        assert_eq!(select.split(", ").count(), MESSAGE + 2);
        assert!(select.ends_with("msg.*, conv.*"));
        for (cols, count) in [
            (message_cols!("m", "mu"), CONVERSATION - MESSAGE),
            (conversation_cols!("c"), rows::CONVERSATION_COLS),
        ] {
            assert_eq!(cols.split(", ").count(), count);
            assert!(EVENTS_AFTER.contains(&format!("(SELECT {cols} FROM ")));
        }
    }
}
