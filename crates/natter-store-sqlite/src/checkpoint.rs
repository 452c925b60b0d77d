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
//! [`WRITER_CHECKPOINT_AT`] pages the writer checkpoints itself, as SQLite
//! would have done: by then the checkpointer has copied nearly everything,
//! so that costs the writer little, and its next transaction restarts the
//! log.
//!
//! Durability does not depend on any of this: a commit is durable once
//! the WAL is synced (see `writer.rs`), and a checkpoint first syncs the
//! WAL and then the database file before the log may be reused.

use std::os::raw::c_int;
use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use natter_store::{StoreError, StoreResult};
use rusqlite::{Connection, MAIN_DB, hooks::Wal, wal::CheckpointMode};

/// Pages in the log past which the checkpointer is woken: SQLite's own
/// auto-checkpoint threshold (4 MiB of 4 KiB pages).
pub(crate) const CHECKPOINT_AT: c_int = 1_000;

/// Pages in the log past which the writer checkpoints itself, so that the
/// log restarts (64 MiB of 4 KiB pages: bounded disk use, and reads that
/// look pages up in the log's index stay fast).
pub(crate) const WRITER_CHECKPOINT_AT: c_int = 16_384;

/// The checkpointer thread; dropping it waits for it to end, which it does
/// once the write connection (holding the other end of its wake-ups) is
/// closed.
pub(crate) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection to the database at `path`,
    /// starts its thread, and hooks `write_conn`'s commits to it.
    pub(crate) fn start(write_conn: &mut Connection, path: &Path) -> StoreResult<Checkpointer> {
        let conn = crate::conn::open_checkpointer(path)?;
        // One pending wake-up is enough: a checkpoint copies everything
        // committed before it starts.
        let (wake, woken) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("natter-sqlite-ckpt".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    checkpoint(&conn);
                }
                // the write connection is closed: so is this one
                drop(conn);
            })
            .map_err(|e| StoreError::Backend(format!("cannot start a store thread: {e}")))?;
        // Replaces SQLite's auto-checkpoint, which is itself a WAL hook.
        let mut next = CHECKPOINT_AT;
        write_conn
            .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
                after_commit(wal, pages, &mut next, &wake);
                Ok(())
            }))
            .map_err(crate::codec::db_error)?;
        Ok(Checkpointer {
            thread: Some(thread),
        })
    }
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

/// Runs on the writer thread after each commit, with the pages now in the
/// log. `next` is the log size at which to checkpoint again: one
/// checkpoint per [`CHECKPOINT_AT`] new pages, SQLite's own cadence, not
/// one per commit (each costs two `fsync`s, and a page rewritten by every
/// commit would be copied every time). That holds for the writer's own
/// checkpoints too: past [`WRITER_CHECKPOINT_AT`], a log that cannot
/// restart (readers still on its pages) must not cost the writer a
/// checkpoint per commit.
fn after_commit(wal: &mut Wal, pages: c_int, next: &mut c_int, wake: &SyncSender<()>) {
    if pages < *next - CHECKPOINT_AT {
        // The log restarted from its beginning.
        *next = CHECKPOINT_AT;
    }
    if pages < *next {
        return;
    }
    *next = pages + CHECKPOINT_AT;
    if pages >= WRITER_CHECKPOINT_AT {
        // A checkpoint that could not finish (a reader holds old pages,
        // the checkpointer is busy) is retried later; the data is safe in
        // the log.
        if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
            tracing::debug!(error = %e, "writer checkpoint did not run");
        }
    } else {
        match wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::error!("the SQLite checkpointer thread has stopped");
            }
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
