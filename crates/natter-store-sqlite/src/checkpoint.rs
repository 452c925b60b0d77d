//! Checkpoints off the writer's thread.
//!
//! A WAL database must now and then copy the log back into the main file
//! (a checkpoint), or the log grows without end. SQLite's default does it
//! on the connection that commits, once the log passes 1,000 pages: the
//! writer thread would copy the pages and `fsync` the database file while
//! every queued write waits. Measured under 100 concurrent senders, that
//! was 16 % of the writer thread's time, half of it in `fsync`.
//!
//! Here the write connection's WAL hook only notes the log's size after
//! each commit. Past [`CHECKPOINT_AT`] pages it wakes a checkpointer thread
//! with a connection of its own, which runs a `PASSIVE` checkpoint: it
//! copies what no reader still needs while the writer goes on (a passive
//! checkpoint takes no lock a writer waits for).
//!
//! The log can only start again from its beginning when a write begins
//! with every committed page already copied, and under steady load the
//! writer commits again before a concurrent checkpoint ends. So past
//! [`Policy::writer_at`] pages the writer checkpoints itself, as SQLite
//! would have done, and its next transaction restarts the log.
//!
//! When it does matters: every job waits while the writer checkpoints, for
//! as long as it takes to copy what the checkpointer has not and to sync
//! the database file. Right after a pass of the checkpointer ends, that is
//! only what was committed during the pass; at a random moment it may be a
//! whole pass's worth (a thousand pages), which measured 10 to 40 ms at
//! 5,000 messages a second, once a second. So the writer waits for the
//! first pass that ends once the log is past the mark, and checkpoints at
//! its next commit. Only a log that grows on regardless (the
//! checkpointer stuck behind a reader, say) makes it checkpoint on its own,
//! past [`Policy::forced_at`].
//!
//! Durability does not depend on any of this: a commit is durable once
//! the WAL is synced (see `writer.rs`), and a checkpoint first syncs the
//! WAL and then the database file before the log may be reused.

use std::os::raw::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use natter_store::{StoreError, StoreResult};
use rusqlite::{Connection, MAIN_DB, hooks::Wal, wal::CheckpointMode};

/// When checkpoints run, in pages of the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The checkpointer is woken once per this many new pages.
    pub every: c_int,
    /// Past this size the writer checkpoints itself after the next pass of
    /// the checkpointer, so that the log restarts.
    pub writer_at: c_int,
    /// Past this size the writer checkpoints itself without waiting for a
    /// pass (once per `every` pages).
    pub forced_at: c_int,
}

impl Policy {
    /// SQLite's own auto-checkpoint cadence (4 MiB of 4 KiB pages); a
    /// restart past 64 MiB (bounded disk use, and reads that look pages up
    /// in the log's index stay fast), and at 256 MiB whatever it costs.
    pub(crate) const DEFAULT: Policy = Policy {
        every: 1_000,
        writer_at: 16_384,
        forced_at: 65_536,
    };
}

/// The checkpointer thread; dropping it waits for it to end, which it does
/// once the write connection (holding the other end of its wake-ups) is
/// closed.
pub(crate) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection to the database at `path`,
    /// starts its thread, and hooks `write_conn`'s commits to it.
    pub(crate) fn start(
        write_conn: &mut Connection,
        path: &Path,
        policy: Policy,
    ) -> StoreResult<Checkpointer> {
        let conn = crate::conn::open_checkpointer(path)?;
        // One pending wake-up is enough: a checkpoint copies everything
        // committed before it starts.
        let (wake, woken) = sync_channel::<Pass>(1);
        let passes = Arc::new(AtomicU64::new(0));
        let finished = passes.clone();
        let thread = std::thread::Builder::new()
            .name("natter-sqlite-ckpt".into())
            .spawn(move || {
                while let Ok(pass) = woken.recv() {
                    checkpoint(&conn);
                    finished.store(pass.packed(), Ordering::Release);
                }
                // the write connection is closed: so is this one
                drop(conn);
            })
            .map_err(|e| StoreError::Backend(format!("cannot start a store thread: {e}")))?;
        Hook::install(write_conn, policy, wake, passes)?;
        Ok(Checkpointer {
            thread: Some(thread),
        })
    }
}

/// A wake-up of the checkpointer: which log (counted from 0 by restarts,
/// as the writer sees them) and its size when it was sent. The thread
/// hands it back, packed, once its pass is over.
#[derive(Debug, Clone, Copy)]
struct Pass {
    log: u32,
    pages: u32,
}

impl Pass {
    fn packed(self) -> u64 {
        (u64::from(self.log) << 32) | u64::from(self.pages)
    }

    fn unpack(v: u64) -> Pass {
        Pass {
            log: (v >> 32) as u32,
            pages: v as u32,
        }
    }
}

/// The writer connection's commit hook and what it keeps between commits.
struct Hook {
    policy: Policy,
    /// The log size at which to act again.
    next: c_int,
    /// Restarts of the log seen so far.
    log: u32,
    /// The last finished pass acted upon, packed.
    seen: u64,
    wake: SyncSender<Pass>,
    /// The last finished pass, packed, set by the checkpointer thread.
    passes: Arc<AtomicU64>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the SQLite checkpointer thread panicked");
        }
    }
}

impl Hook {
    /// Hooks `write_conn`'s commits, waking the checkpointer through
    /// `wake` and learning of its finished passes from `passes`. This
    /// replaces SQLite's auto-checkpoint, which is itself a WAL hook.
    fn install(
        write_conn: &mut Connection,
        policy: Policy,
        wake: SyncSender<Pass>,
        passes: Arc<AtomicU64>,
    ) -> StoreResult<()> {
        let mut hook = Hook {
            policy,
            next: policy.every,
            log: 0,
            seen: 0,
            wake,
            passes,
        };
        write_conn
            .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
                hook.after_commit(wal, pages);
                Ok(())
            }))
            .map_err(crate::codec::db_error)
    }

    /// Runs on the writer thread after each commit, with the pages now in
    /// the log. The checkpointer is woken once per [`Policy::every`] new
    /// pages, SQLite's own cadence, not once per commit (each checkpoint
    /// costs two `fsync`s, and a page rewritten by every commit would be
    /// copied every time). The writer's own checkpoints keep to that
    /// cadence too, so that a log that cannot restart (readers still on
    /// its pages) does not cost the writer a checkpoint per commit.
    fn after_commit(&mut self, wal: &mut Wal, pages: c_int) {
        let Policy {
            every,
            writer_at,
            forced_at,
        } = self.policy;
        if pages < self.next - every {
            // The log restarted from its beginning.
            self.next = every;
            self.log = self.log.wrapping_add(1);
        }
        if pages >= writer_at && self.caught_up(pages) {
            self.writer_checkpoint(wal);
            return;
        }
        if pages < self.next {
            return;
        }
        self.next = pages + every;
        if pages >= forced_at {
            self.writer_checkpoint(wal);
            return;
        }
        let pass = Pass {
            log: self.log,
            pages: u32::try_from(pages).unwrap_or(0),
        };
        match self.wake.try_send(pass) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the SQLite checkpointer thread has stopped");
            }
        }
    }

    /// Whether a pass of the checkpointer over this log has ended since
    /// the last one acted upon, one woken at most [`Policy::every`] pages
    /// ago: what is left to copy is then only what was committed since it
    /// began. Each pass is acted upon once.
    fn caught_up(&mut self, pages: c_int) -> bool {
        let packed = self.passes.load(Ordering::Acquire);
        let pass = Pass::unpack(packed);
        if packed == self.seen
            || pass.log != self.log
            || i64::from(pages) - i64::from(pass.pages) > i64::from(self.policy.every)
        {
            return false;
        }
        self.seen = packed;
        true
    }

    fn writer_checkpoint(&self, wal: &mut Wal) {
        // A checkpoint that could not finish (a reader holds old pages,
        // the checkpointer is busy) is retried later; the data is safe in
        // the log.
        if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
            tracing::debug!(error = %e, "writer checkpoint did not run");
        }
    }
}

fn checkpoint(conn: &Connection) {
    match conn.wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::PASSIVE) {
        Ok((log, copied)) => tracing::trace!(log, copied, "checkpoint"),
        // Busy (another connection is checkpointing) or an I/O error:
        // nothing is lost, the pages stay in the log for the next try.
        Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::Receiver;

    use super::*;

    /// A write connection whose commits run a [`Hook`] with `policy`, and
    /// the other ends of its wake-ups: the test plays the checkpointer,
    /// between commits, so that what a pass covers is known exactly.
    fn hooked(dir: &Path, policy: Policy) -> (Connection, Receiver<Pass>, Arc<AtomicU64>) {
        let path = dir.join("t.db");
        let mut conn = crate::conn::open_writer(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (v BLOB NOT NULL)")
            .unwrap();
        let (wake, woken) = sync_channel::<Pass>(1);
        let passes = Arc::new(AtomicU64::new(0));
        Hook::install(&mut conn, policy, wake, passes.clone()).unwrap();
        (conn, woken, passes)
    }

    /// One commit of a 3 KB row: a page or two of log.
    fn commit_row(conn: &Connection) {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [vec![7u8; 3_000]])
            .unwrap();
    }

    fn log_pages(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("t.db-wal")).map_or(0, |m| m.len()) / 4_096
    }

    const POLICY: Policy = Policy {
        every: 50,
        writer_at: 400,
        forced_at: 1_600,
    };

    /// With the checkpointer's passes ending between commits, the writer
    /// restarts the log soon after it passes `writer_at`, well before
    /// `forced_at`.
    #[test]
    fn the_writer_restarts_the_log_after_a_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, woken, passes) = hooked(dir.path(), POLICY);
        let checkpointer = crate::conn::open_checkpointer(&dir.path().join("t.db")).unwrap();
        let reader = crate::conn::open_reader(&dir.path().join("t.db")).unwrap();
        for _ in 0..3_000 {
            commit_row(&conn);
            if let Ok(pass) = woken.try_recv() {
                // A commit lands while the pass is still going, as under
                // steady load. A reader on the log from before the pass
                // keeps that commit's transaction from restarting the log
                // by itself, as a commit during a real pass could not.
                reader.execute_batch("BEGIN").unwrap();
                reader
                    .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .unwrap();
                checkpoint(&checkpointer);
                commit_row(&conn);
                reader.execute_batch("COMMIT").unwrap();
                passes.store(pass.packed(), Ordering::Release);
            }
        }
        let pages = log_pages(dir.path());
        assert!(
            pages < 600,
            "the log grew to {pages} pages: the writer did not restart it after a pass"
        );
    }

    /// No pass ever ends (the checkpointer is stuck): the writer restarts
    /// the log by itself past `forced_at`, and not before.
    #[test]
    fn past_the_forced_mark_the_writer_checkpoints_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _woken, _passes) = hooked(dir.path(), POLICY);
        let mut largest = 0;
        for _ in 0..3_000 {
            commit_row(&conn);
            largest = largest.max(log_pages(dir.path()));
        }
        assert!(
            (1_600..2_000).contains(&largest),
            "the log reached {largest} pages: it should restart just past 1,600"
        );
    }
}
