//! Schema migrations: the SQL files under `migrations/`, embedded in the
//! binary and applied in order when a store is opened.
//!
//! Why a small runner of our own rather than refinery: refinery-core's
//! `rusqlite` feature caps rusqlite at 0.41 (which would hold back the
//! whole workspace's SQLite upgrades) and pulls in its config machinery
//! (url, ICU, time, regex, walkdir) that this crate never uses. What we
//! need fits in a page: an ordered list of `(version, name, sql)`, a
//! `schema_migrations` table recording what was applied, and one
//! `BEGIN IMMEDIATE` transaction around the whole run so that two processes
//! opening the same fresh file cannot both apply a migration. The files keep
//! refinery's `V<n>__<name>.sql` naming, so switching later is mechanical.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::codec::DbResultExt;
use natter_store::{StoreError, StoreResult};

/// One schema change. Versions are strictly increasing; a released
/// migration is never edited, only followed by a new one.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/V1__init.sql"),
    },
    Migration {
        version: 2,
        name: "events",
        sql: include_str!("../migrations/V2__events.sql"),
    },
    Migration {
        version: 3,
        name: "disabled_accounts",
        sql: include_str!("../migrations/V3__disabled_accounts.sql"),
    },
    Migration {
        version: 4,
        name: "blocks",
        sql: include_str!("../migrations/V4__blocks.sql"),
    },
    Migration {
        version: 5,
        name: "derived_conversation_state",
        sql: include_str!("../migrations/V5__derived_conversation_state.sql"),
    },
];

/// Brings the schema up to date; returns the versions it applied.
///
/// Refuses a database whose recorded migrations this build does not know
/// (written by a newer Natter, or by a different migration history), rather
/// than running against a schema it does not understand.
pub(crate) fn run(conn: &mut Connection) -> StoreResult<Vec<i64>> {
    apply(conn, MIGRATIONS)
}

/// Applies `migrations`, a prefix of [`MIGRATIONS`] (tests start from an
/// older schema this way).
fn apply(conn: &mut Connection, migrations: &[Migration]) -> StoreResult<Vec<i64>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         ) STRICT",
    )
    .db()?;

    let mut applied_now = Vec::new();
    for m in migrations {
        let recorded: Option<String> = tx
            .query_row(
                "SELECT name FROM schema_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()
            .db()?;
        match recorded {
            Some(name) if name == m.name => continue,
            Some(name) => {
                return Err(StoreError::Backend(format!(
                    "migration {} is recorded as {name:?} but this build calls it {:?}",
                    m.version, m.name
                )));
            }
            None => {}
        }
        tx.execute_batch(m.sql).map_err(|e| {
            StoreError::Backend(format!("migration V{}__{} failed: {e}", m.version, m.name))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, chrono::Utc::now().timestamp_micros()],
        )
        .db()?;
        applied_now.push(m.version);
    }

    let latest = migrations.last().map_or(0, |m| m.version);
    let newest_recorded: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .db()?;
    if newest_recorded > latest {
        return Err(StoreError::Backend(format!(
            "database schema is at version {newest_recorded}, newer than this build ({latest})"
        )));
    }
    tx.commit().db()?;
    Ok(applied_now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.first().is_some_and(|m| m.version == 1));
    }

    #[test]
    fn applies_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(run(&mut conn).unwrap(), [1, 2, 3, 4, 5]);
        assert!(run(&mut conn).unwrap().is_empty());
    }

    /// A database made by the previous release keeps its data, and members
    /// start out having had delivered what they had read.
    #[test]
    fn upgrades_from_v1() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn, &MIGRATIONS[..1]).unwrap(), [1]);
        conn.execute_batch(
            "INSERT INTO users (id, username, created_at, salt, iterations, sha1_stored_key,
                 sha1_server_key, sha256_stored_key, sha256_server_key)
             VALUES (1, 'a', 0, x'', 1, x'', x'', x'', x'');
             INSERT INTO conversations (id, kind, title, created_at, last_seq, last_activity_at)
             VALUES (x'00', 'group', 'g', 0, 7, 0);
             INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq)
             VALUES (x'00', 1, 'owner', 0, 5);",
        )
        .unwrap();
        assert_eq!(run(&mut conn).unwrap(), [2, 3, 4, 5]);
        let (read, delivered, seen): (i64, i64, Option<i64>) = conn
            .query_row(
                "SELECT m.read_seq, m.delivered_seq, u.last_seen_at
                   FROM members m JOIN users u ON u.id = m.user_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((read, delivered, seen), (5, 5, None));
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 0);
    }

    /// Before V5 a conversation kept its last seq and activity in its row;
    /// after, both are read from its newest message, and agree with what
    /// the row said.
    #[test]
    fn upgrades_the_conversation_state_from_v4() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn, &MIGRATIONS[..4]).unwrap(), [1, 2, 3, 4]);
        conn.execute_batch(
            "INSERT INTO users (id, username, created_at, salt, iterations, sha1_stored_key,
                 sha1_server_key, sha256_stored_key, sha256_server_key)
             VALUES (1, 'a', 0, x'', 1, x'', x'', x'', x'');
             INSERT INTO conversations (id, kind, title, created_at, last_seq, last_activity_at)
             VALUES (x'01000000000000000000000000000000', 'group', 'busy', 1000, 2, 3000000),
                    (x'02000000000000000000000000000000', 'group', 'quiet', 5000000, 0, 5000000);
             INSERT INTO members (conversation_id, user_id, role, joined_at)
             VALUES (x'01000000000000000000000000000000', 1, 'owner', 0), (x'02000000000000000000000000000000', 1, 'owner', 0);
             INSERT INTO messages (conversation_id, seq, id, sender_id, client_id, body, sent_at)
             VALUES (x'01000000000000000000000000000000', 1, x'11', 1, 'c1', 'one', 2000000),
                    (x'01000000000000000000000000000000', 2, x'12', 1, 'c2', 'two', 3000000);",
        )
        .unwrap();
        assert_eq!(run(&mut conn).unwrap(), [5]);
        let busy = crate::conversations::conversation(&conn, conv(1))
            .unwrap()
            .unwrap();
        assert_eq!(busy.last_seq, 2);
        assert_eq!(busy.last_activity_at.timestamp(), 3);
        let quiet = crate::conversations::conversation(&conn, conv(2))
            .unwrap()
            .unwrap();
        assert_eq!(quiet.last_seq, 0);
        assert_eq!(quiet.last_activity_at.timestamp(), 5);
    }

    /// The id `b` followed by fifteen zero bytes, as written in raw SQL.
    fn conv(b: u8) -> natter_types::ConversationId {
        let mut id = [0u8; 16];
        id[0] = b;
        natter_types::ConversationId(uuid::Uuid::from_bytes(id))
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        let err = run(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
