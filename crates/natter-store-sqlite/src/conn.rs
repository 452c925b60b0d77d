//! Opening SQLite connections with the settings every connection of the
//! store needs, so that the writer and the readers cannot disagree on them.
//!
//! - `journal_mode=WAL`: readers see the last commit without blocking the
//!   writer, and a commit is one sequential append to the log.
//! - `synchronous=FULL` on the read connections (which write only when a
//!   checkpoint runs as they close), `NORMAL` on the write connection: its
//!   commits return without waiting for the disk, and the writer's syncer
//!   thread `fdatasync`s the WAL before any job is answered (`writer.rs`),
//!   so an awaited write is on disk even if the machine loses power. In
//!   WAL mode, `NORMAL` still syncs the WAL before each checkpoint and the
//!   database after it, so a checkpoint never exposes unsynced frames.
//! - `foreign_keys=ON`: off by default in SQLite, per connection.
//! - `busy_timeout=5000`: our own writes never contend (one writer thread),
//!   but another process or a checkpoint may hold a lock for a moment.
//! - the query planner stability guarantee (QPSG): without it, the bundled
//!   SQLite (built with STAT4) marks statements whose plan *might* depend
//!   on a bound value, e.g. `LIMIT ?` or `x.id = ?` where the planner asks
//!   whether the value is 0 or 1, and rusqlite's statement cache clears
//!   bindings on every return, which expires such statements: they were
//!   recompiled on every execution (in `append_message`, that cost about a
//!   third of the append throughput). Our statements have one good plan
//!   whatever the values, so plans are fixed at prepare time.

use std::path::Path;
use std::time::Duration;

use natter_store::{StoreError, StoreResult};
use rusqlite::config::DbConfig;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};

use crate::codec::DbResultExt;

/// Prepared statements kept per connection; the store has a few dozen
/// distinct statements, so all of them stay compiled.
const STATEMENT_CACHE: usize = 128;

/// Opens the connection that writes. It creates the file and switches the
/// database to WAL (a persistent setting of the file).
pub(crate) fn open_writer(path: &Path) -> StoreResult<Connection> {
    // Settings first (in `open`): the busy timeout must be in force before
    // switching to WAL, which needs a moment of exclusive access to the
    // file.
    let conn = open(path, OpenFlags::SQLITE_OPEN_CREATE)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .db()?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "{} cannot use WAL (journal_mode is {mode})",
            path.display()
        )));
    }
    // Durability comes from the writer's syncer; see the module docs.
    conn.pragma_update(None, "synchronous", "NORMAL").db()?;
    // The writer's page cache holds the hot B-tree pages (conversation rows,
    // index tails); 32 MiB, in KiB as the negative form means.
    conn.pragma_update(None, "cache_size", -32_768).db()?;
    // Checkpoints run beside the writer (`checkpoint.rs`), so the log may
    // grow past SQLite's usual 4 MiB; when it restarts, the file is cut
    // back to 64 MiB rather than keeping its largest size on disk.
    conn.pragma_update(None, "journal_size_limit", 64 << 20)
        .db()?;
    Ok(conn)
}

/// Opens the checkpointer's connection (see `checkpoint.rs`): it writes
/// only the database file, copying pages from the log, never rows.
pub(crate) fn open_checkpointer(path: &Path) -> StoreResult<Connection> {
    // `synchronous=FULL` from `configure`: a checkpoint syncs the log
    // before it copies and the database file before the log may be reused.
    open(path, OpenFlags::empty())
}

/// Opens a connection that only reads. It is opened read-write but set to
/// `query_only`, so that it can still take part in WAL recovery and
/// checkpoint-on-close like any other connection.
pub(crate) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = open(path, OpenFlags::empty())?;
    conn.pragma_update(None, "query_only", true).db()?;
    // WAL is a property of the file, set by the writer; a reader that found
    // another mode would block the writer, so refuse to run that way.
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .db()?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "{} is not in WAL mode (journal_mode is {mode})",
            path.display()
        )));
    }
    Ok(conn)
}

/// Opens a read-write connection (each thread owns its own, hence no
/// mutex), with `extra` flags, and applies the common settings.
fn open(path: &Path, extra: OpenFlags) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | extra,
    )
    .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
    configure(&conn)?;
    Ok(conn)
}

pub(crate) fn configure(conn: &Connection) -> StoreResult<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .db()?;
    conn.busy_timeout(Duration::from_millis(5000)).db()?;
    conn.pragma_update(None, "synchronous", "FULL").db()?;
    conn.pragma_update(None, "foreign_keys", true).db()?;
    conn.pragma_update(None, "temp_store", "MEMORY").db()?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    register_functions(conn)?;
    Ok(())
}

/// `natter_fold(text)`: Unicode lowercase, for case-insensitive search.
/// SQLite's own `lower()` and `LIKE` fold ASCII only, so "Élodie" would not
/// match "élo"; PostgreSQL's `ILIKE` does, and the backends should agree.
/// Matching with `instr` on folded text also means the query has no
/// wildcards to escape at all.
fn register_functions(conn: &Connection) -> StoreResult<()> {
    conn.create_scalar_function(
        "natter_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let s: Option<String> = ctx.get(0)?;
            Ok(s.map(|s| s.to_lowercase()))
        },
    )
    .db()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// Cached statements must not be recompiled on each use (see QPSG in
    /// the module documentation).
    #[test]
    fn cached_statements_are_not_recompiled() {
        let mut conn = Connection::open_in_memory().unwrap();
        configure(&conn).unwrap();
        crate::migrate::run(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, created_at, salt, iterations, sha1_stored_key,
                 sha1_server_key, sha256_stored_key, sha256_server_key)
             VALUES (1, 'a', 0, x'', 1, x'', x'', x'', x''),
                    (2, 'b', 0, x'', 1, x'', x'', x'', x'')",
        )
        .unwrap();
        // both shapes used to be recompiled: a parameter compared with a
        // joined key, and a parameter as LIMIT
        let sqls = [
            "SELECT u.username FROM members m JOIN users u ON u.id = m.user_id
              WHERE m.conversation_id = ?1 AND m.user_id = ?2",
            "SELECT username FROM users WHERE id > ?1 ORDER BY username LIMIT ?2",
        ];
        for sql in sqls {
            for i in 0..10i64 {
                let mut stmt = conn.prepare_cached(sql).unwrap();
                let mut rows = stmt.query(rusqlite::params![i % 3, i % 3]).unwrap();
                while rows.next().unwrap().is_some() {}
            }
            let stmt = conn.prepare_cached(sql).unwrap();
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
        }
    }
}
