//! The single writer: one OS thread owns the only connection that writes,
//! and every write of the store is a job sent to it. This is how SQLite is
//! fast under concurrent writers.
//!
//! - No contention: SQLite allows one writer at a time. With one thread
//!   holding the write connection, our own writers never see "database is
//!   locked" and never spin in the busy handler; they wait in a queue.
//! - Group commit: the thread takes one job, then drains whatever else is
//!   queued (up to [`MAX_BATCH`]), and runs them all in one `BEGIN
//!   IMMEDIATE` transaction.
//! - Isolation: a job that fails leaves no trace and the other jobs still
//!   commit. That also keeps sequence numbers gap-free, since a failed
//!   append leaves no trace. Jobs run bare first, and nearly every failure
//!   happens before a job changed anything; a job that fails after a
//!   change makes the writer roll the transaction back and run the same
//!   jobs again, each inside its own `SAVEPOINT` (see [`run_batch`]).
//!   Jobs are therefore `Fn`: they may run twice, the first run undone.
//! - Pipelined durability: the write connection commits without waiting
//!   for the disk (`synchronous=NORMAL`), and a second thread, the syncer,
//!   `fdatasync`s the WAL file after each commit while the writer already
//!   runs the next batch. One sync covers every batch committed before it
//!   started, so under load syncs group batches just as batches group
//!   jobs. The writer no longer idles for the length of an fsync per
//!   batch, which is what bounded the append rate before.
//! - Durability of answers: a job's result is sent back only after a sync
//!   that began after its batch's `COMMIT` has returned, so a caller that
//!   acknowledges after `await` never acknowledges data a power cut could
//!   take. If the commit or the sync fails, every job concerned gets an
//!   error.
//! - Durable event head: committed but not yet synced rows are visible to
//!   the read connections, and the event log must not hand them to
//!   anyone (a client shown a message that a crash then took back would
//!   also see its sequence number reused). The syncer publishes the event
//!   log's head as of each synced commit in a [`DurableHead`], and the
//!   log's reads stop there.
//! - A failed sync is not retried: after `fsync` reports an error, Linux
//!   may have dropped the dirty pages, so a later successful sync proves
//!   nothing. The writer then refuses every job (the store reports itself
//!   not ready) until the process is restarted and SQLite recovers from
//!   what is on disk.
//!
//! The threads stop when the [`Writer`] is dropped, after finishing the
//! jobs already queued; dropping joins them, so the file is released when
//! the drop returns.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;

use natter_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::codec::db_error;

/// The most jobs committed in one transaction. Large enough to amortise an
/// fsync over hundreds of appends, small enough that one batch holds the
/// write lock (and delays its first caller) for milliseconds, not seconds.
pub(crate) const MAX_BATCH: usize = 512;

/// Jobs that may wait for the writer. When the queue is full, callers wait
/// in `send`, which is the back-pressure a saturated disk should exert.
const QUEUE: usize = 4096;

/// A write waiting for its turn.
trait Job: Send {
    /// Runs the job in the open transaction and keeps its result until
    /// the fate of the transaction is known.
    ///
    /// With `isolated`, the job runs inside its own savepoint, so whatever
    /// happens the transaction is left with all of its changes or none.
    /// Without, it runs bare, and returns `false` if it failed *after*
    /// changing something: the transaction then holds part of a job, and
    /// must be rolled back and its jobs run again, isolated.
    fn run(&mut self, conn: &Connection, isolated: bool) -> bool;
    /// Answers once the transaction committed (`Ok`) or did not.
    fn finish(self: Box<Self>, committed: Result<(), &str>);
    /// Answers a job that could not run at all.
    fn fail(self: Box<Self>, reason: &str);
}

struct WriteJob<F, T> {
    f: F,
    reply: oneshot::Sender<StoreResult<T>>,
    result: Option<StoreResult<T>>,
}

impl<F, T> Job for WriteJob<F, T>
where
    F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn run(&mut self, conn: &Connection, isolated: bool) -> bool {
        // The caller gave up (its future was dropped) before the job's turn
        // came: nobody will read the answer, so do not do the work.
        if self.reply.is_closed() {
            self.result = Some(Err(StoreError::Backend("cancelled before it ran".into())));
            return true;
        }
        if isolated {
            self.result = Some(in_savepoint(conn, &self.f));
            return true;
        }
        // SQLite undoes a failed statement by itself, and counts only the
        // rows of statements that completed: an unchanged count means a
        // failed job left nothing behind, which is how nearly every job
        // fails (a membership, block or existence check comes first).
        let before = conn.total_changes();
        match catch_unwind(AssertUnwindSafe(|| (self.f)(conn))) {
            Ok(result) => {
                let clean = result.is_ok() || conn.total_changes() == before;
                self.result = Some(result);
                clean
            }
            Err(_) => {
                self.result = Some(Err(StoreError::Backend("store write panicked".into())));
                false
            }
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), &str>) {
        let result = match (self.result, committed) {
            (None, _) => Err(StoreError::Backend("the write did not run".into())),
            // The job's own error stands: its changes were rolled back
            // anyway, and the error says why better than the commit does.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(reason)) => Err(StoreError::Backend(reason.to_owned())),
        };
        // The caller may have stopped waiting; the data is committed anyway.
        let _ = self.reply.send(result);
    }

    fn fail(self: Box<Self>, reason: &str) {
        let _ = self.reply.send(Err(StoreError::Backend(reason.to_owned())));
    }
}

/// Runs `f` so that, whatever it does, it leaves the transaction either
/// with all its changes (`Ok`) or with none of them (`Err`).
fn in_savepoint<T>(
    conn: &Connection,
    f: &impl Fn(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    exec(conn, "SAVEPOINT job").map_err(db_error)?;
    let result = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
        Ok(r) => r,
        Err(_) => Err(StoreError::Backend("store write panicked".into())),
    };
    match result {
        Ok(v) => match exec(conn, "RELEASE job") {
            Ok(()) => Ok(v),
            Err(e) => {
                rollback_savepoint(conn);
                Err(db_error(e))
            }
        },
        Err(e) => {
            rollback_savepoint(conn);
            Err(e)
        }
    }
}

/// Undoes the current job. If even that fails, the whole transaction is
/// rolled back rather than risk committing half a job; the batch loop sees
/// the transaction gone and fails the batch's earlier jobs too.
fn rollback_savepoint(conn: &Connection) {
    if conn.is_autocommit() {
        return; // SQLite already rolled the whole transaction back
    }
    if exec(conn, "ROLLBACK TO job")
        .and_then(|()| exec(conn, "RELEASE job"))
        .is_err()
    {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The event log's head as of the last durable commit: what the log's
/// reads may return. Shared by the writer and every handle of the store.
#[derive(Clone, Debug)]
pub(crate) struct DurableHead(Arc<AtomicI64>);

impl DurableHead {
    pub(crate) fn new(at: i64) -> Self {
        Self(Arc::new(AtomicI64::new(at)))
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }

    fn advance(&self, to: i64) {
        self.0.fetch_max(to, Ordering::AcqRel);
    }
}

/// How the writer makes commits durable.
pub(crate) struct Durability {
    /// The WAL file the syncer `fdatasync`s; `None` for a database that is
    /// not on disk (the unit tests' in-memory one).
    pub(crate) wal: Option<PathBuf>,
    /// The directory holding the WAL, synced once so that the WAL file's
    /// own entry survives a power cut.
    pub(crate) dir: Option<PathBuf>,
    /// Published after each sync.
    pub(crate) head: DurableHead,
    /// Runs on the write connection after each commit and returns the
    /// event log's head; the store also moves the commit's new events into
    /// its in-memory copy there (see `recent.rs`).
    pub(crate) read_head: ReadHead,
}

/// See [`Durability::read_head`].
pub(crate) type ReadHead = Box<dyn FnMut(&Connection) -> StoreResult<i64> + Send>;

/// A committed batch waiting for its sync.
struct Committed {
    ran: Vec<Box<dyn Job>>,
    head: i64,
}

/// Handle to the writer and syncer threads.
pub(crate) struct Writer {
    /// `None` only while dropping: closing the queue is what stops the
    /// threads.
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    /// Set when a sync failed: nothing written since may be trusted.
    failed: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, the only connection that writes,
    /// and the syncer that makes its commits durable.
    pub(crate) fn spawn(conn: Connection, durability: Durability) -> StoreResult<Writer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (committed_tx, committed_rx) = std::sync::mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let spawn_error =
            |e: std::io::Error| StoreError::Backend(format!("cannot start a store thread: {e}"));
        let Durability {
            wal,
            dir,
            head,
            read_head,
        } = durability;
        let syncer = {
            let failed = failed.clone();
            std::thread::Builder::new()
                .name("natter-sqlite-sync".into())
                .spawn(move || syncer_loop(wal, dir, head, committed_rx, &failed))
                .map_err(spawn_error)?
        };
        let writer = {
            let failed = failed.clone();
            std::thread::Builder::new()
                .name("natter-sqlite-writer".into())
                .spawn(move || writer_loop(conn, rx, committed_tx, read_head, &failed))
                .map_err(spawn_error)?
        };
        Ok(Writer {
            jobs: Some(tx),
            failed,
            // Joined in this order: the writer first, whose end closes the
            // syncer's queue.
            threads: vec![writer, syncer],
        })
    }

    /// Runs `f` on the write connection, inside the current batch's
    /// transaction, and resolves once that transaction is committed and
    /// synced to disk.
    ///
    /// `f` must not open or close transactions itself. If the future is
    /// dropped before the job's turn, the job is skipped; once it has run,
    /// it commits whether or not anyone still awaits it.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(Box::new(WriteJob {
            f,
            reply,
            result: None,
        }))
        .await
        .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether the writer is still taking jobs and its syncs succeed.
    pub(crate) fn is_running(&self) -> bool {
        self.jobs.as_ref().is_some_and(|j| !j.is_closed()) && !self.failed.load(Ordering::Acquire)
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer thread has stopped".into())
}

const SYNC_FAILED: &str =
    "an earlier sync of the database to disk failed; restart natter so SQLite recovers";

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit,
        // which closes the syncer's queue in turn; joining both means every
        // answer is sent and the write connection is closed when drop
        // returns, so the same file can be opened again straight away.
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("an SQLite store thread panicked");
            }
        }
    }
}

fn writer_loop(
    conn: Connection,
    mut jobs: mpsc::Receiver<Box<dyn Job>>,
    committed: std::sync::mpsc::Sender<Committed>,
    mut read_head: ReadHead,
    failed: &AtomicBool,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = Vec::with_capacity(jobs.len().min(MAX_BATCH - 1) + 1);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if failed.load(Ordering::Acquire) {
            for job in batch {
                job.fail(SYNC_FAILED);
            }
            continue;
        }
        run_batch(&conn, batch, &committed, &mut read_head);
    }
    // Closed here, before the thread ends, so that when `Drop for Writer`
    // has joined the thread the file has no writer left.
    drop(conn);
}

/// Runs a batch of jobs in as few transactions as possible (normally one)
/// and hands each committed transaction to the syncer, which answers its
/// jobs; jobs of a transaction that failed are answered here.
///
/// Jobs first run bare, without a savepoint each: a savepoint makes SQLite
/// copy every page a job touches into a statement journal first, about a
/// tenth of the writer's time under load. Only when a job fails after
/// changing something is the transaction rolled back and the same jobs run
/// again, each in its own savepoint, so that the failing one takes nothing
/// else down.
fn run_batch(
    conn: &Connection,
    batch: Vec<Box<dyn Job>>,
    committed: &std::sync::mpsc::Sender<Committed>,
    read_head: &mut ReadHead,
) {
    let mut pending: std::collections::VecDeque<Box<dyn Job>> = batch.into();
    let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(pending.len());
    let mut isolated = false;
    while !pending.is_empty() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let reason = format!("cannot begin a write transaction: {e}");
            tracing::error!("{reason}");
            for job in pending {
                job.fail(&reason);
            }
            return;
        }
        let mut lost = false;
        let mut dirty = false;
        while let Some(mut job) = pending.pop_front() {
            let clean = job.run(conn, isolated);
            ran.push(job);
            if conn.is_autocommit() {
                // SQLite rolled back the whole transaction (disk full, I/O
                // error, ...), and with it the earlier jobs of this batch.
                lost = true;
                break;
            }
            if !clean {
                dirty = true;
                break;
            }
        }
        if lost {
            let reason = "the write transaction was rolled back by SQLite";
            tracing::error!("{reason}");
            for r in ran.drain(..) {
                r.finish(Err(reason));
            }
            continue; // the rest of the batch gets a transaction of its own
        }
        if dirty {
            // Undo the part-job, then run this transaction's jobs again,
            // each isolated; they run in the same order, on the same data.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            for job in ran.drain(..).rev() {
                pending.push_front(job);
            }
            isolated = true;
            continue;
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                // With one writer, the head read right after the commit is
                // exactly this transaction's last event.
                let head = match read_head(conn) {
                    Ok(head) => head,
                    Err(e) => {
                        // Committed, so the next successful read covers
                        // these events; until then they stay unpublished.
                        tracing::error!("reading the event head after a commit: {e}");
                        i64::MIN
                    }
                };
                let batch = Committed {
                    ran: std::mem::take(&mut ran),
                    head,
                };
                if let Err(std::sync::mpsc::SendError(batch)) = committed.send(batch) {
                    // The syncer is gone (it panicked): nobody can vouch
                    // for durability any more.
                    for r in batch.ran {
                        r.finish(Err("the SQLite syncer thread has stopped"));
                    }
                }
            }
            Err(e) => {
                let reason = format!("commit failed: {e}");
                tracing::error!("{reason}");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                for r in ran.drain(..) {
                    r.finish(Err(&reason));
                }
            }
        }
    }
}

/// Syncs the WAL for every committed batch and answers its jobs; see the
/// module documentation.
fn syncer_loop(
    wal: Option<PathBuf>,
    dir: Option<PathBuf>,
    head: DurableHead,
    committed: std::sync::mpsc::Receiver<Committed>,
    failed: &AtomicBool,
) {
    let mut dir_synced = dir.is_none();
    while let Ok(first) = committed.recv() {
        let mut group = vec![first];
        group.extend(committed.try_iter());
        let outcome = if failed.load(Ordering::Acquire) {
            Err(SYNC_FAILED.to_owned())
        } else {
            sync(wal.as_deref(), dir.as_deref(), &mut dir_synced)
        };
        match outcome {
            Ok(()) => {
                let newest = group.iter().map(|c| c.head).max().unwrap_or(i64::MIN);
                // Published before the answers, so that whoever acts on an
                // answer finds its events readable.
                head.advance(newest);
                for r in group.into_iter().flat_map(|c| c.ran) {
                    r.finish(Ok(()));
                }
            }
            Err(reason) => {
                if !failed.swap(true, Ordering::AcqRel) {
                    tracing::error!("{reason}; the store stops taking writes");
                }
                for r in group.into_iter().flat_map(|c| c.ran) {
                    r.finish(Err(&reason));
                }
            }
        }
    }
}

/// `fdatasync` of the WAL: whatever the writer wrote to it before this
/// call is on disk when it returns, whichever descriptor wrote it. Opened
/// per sync (a few microseconds) rather than kept, so a WAL file SQLite
/// replaced could never leave us syncing a stale one.
fn sync(
    wal: Option<&std::path::Path>,
    dir: Option<&std::path::Path>,
    dir_synced: &mut bool,
) -> Result<(), String> {
    let Some(wal) = wal else {
        return Ok(());
    };
    std::fs::File::open(wal)
        .and_then(|f| f.sync_data())
        .map_err(|e| format!("syncing {}: {e}", wal.display()))?;
    if !*dir_synced && let Some(dir) = dir {
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("syncing directory {}: {e}", dir.display()))?;
        *dir_synced = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on an in-memory table `t`, syncing `wal` (if any) and
    /// publishing `head` as `read_head` reads it after each commit.
    fn writer_with(wal: Option<PathBuf>, head: &DurableHead, read_head: ReadHead) -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)")
            .unwrap();
        Writer::spawn(
            conn,
            Durability {
                wal,
                dir: None,
                head: head.clone(),
                read_head,
            },
        )
        .unwrap()
    }

    fn writer() -> Writer {
        writer_with(None, &DurableHead::new(0), Box::new(|_| Ok(0)))
    }

    fn insert(v: i64) -> impl Fn(&Connection) -> StoreResult<()> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map(drop)
                .map_err(db_error)
        }
    }

    fn count(w: &Writer) -> impl Future<Output = StoreResult<i64>> + '_ {
        w.write(|c| {
            c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .map_err(db_error)
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_does_not_take_its_batch_down() {
        let w = std::sync::Arc::new(writer());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let w = w.clone();
                // every fifth job violates the unique constraint after
                // inserting a row of its own, which must be undone too
                tokio::spawn(async move {
                    if i % 5 == 0 {
                        w.write(move |c| {
                            insert(10_000 + i)(c)?;
                            insert(0)(c)?;
                            insert(0)(c)
                        })
                        .await
                    } else {
                        w.write(insert(i)).await
                    }
                })
            })
            .collect();
        let mut failed = 0;
        for t in tasks {
            failed += t.await.unwrap().is_err() as usize;
        }
        assert_eq!(failed, 40);
        assert_eq!(count(&w).await.unwrap(), 160);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_fails_before_writing_runs_once_and_so_do_the_others() {
        use std::sync::atomic::AtomicUsize;
        let w = Arc::new(writer());
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (w, runs) = (w.clone(), runs.clone());
                tokio::spawn(async move {
                    w.write(move |c| {
                        runs.fetch_add(1, Ordering::Relaxed);
                        if i % 5 == 0 {
                            // refused by a check, as an append to a
                            // conversation one is not a member of is
                            return Err(StoreError::NotMember);
                        }
                        insert(i)(c)
                    })
                    .await
                })
            })
            .collect();
        let mut failed = 0;
        for t in tasks {
            failed += t.await.unwrap().is_err() as usize;
        }
        assert_eq!(failed, 10);
        assert_eq!(count(&w).await.unwrap(), 40);
        // no transaction was rolled back and run again
        assert_eq!(runs.load(Ordering::Relaxed), 50);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_dead_writer() {
        let w = writer();
        let r: StoreResult<()> = w
            .write(|c| {
                insert(1)(c)?;
                panic!("boom")
            })
            .await;
        assert!(matches!(r, Err(StoreError::Backend(_))));
        assert!(w.is_running());
        assert_eq!(
            count(&w).await.unwrap(),
            0,
            "the panicking job's row is gone"
        );
    }

    #[tokio::test]
    async fn answers_come_after_the_durable_head_moved() {
        let head = DurableHead::new(0);
        let w = writer_with(
            None,
            &head,
            Box::new(|c| {
                c.query_row("SELECT coalesce(max(v), 0) FROM t", [], |r| r.get(0))
                    .map_err(db_error)
            }),
        );
        for v in [3, 7, 5] {
            w.write(insert(v)).await.unwrap();
            // the head as of this job's commit is published before it is
            // answered, and never moves back
            assert_eq!(head.get(), if v == 5 { 7 } else { v });
        }
    }

    #[tokio::test]
    async fn a_failed_sync_fails_the_job_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let head = DurableHead::new(0);
        // no such file: the sync fails the way a broken disk would
        let w = writer_with(
            Some(dir.path().join("missing-wal")),
            &head,
            Box::new(|_| Ok(1)),
        );
        assert!(
            matches!(w.write(insert(1)).await, Err(StoreError::Backend(m)) if m.contains("missing-wal"))
        );
        assert_eq!(head.get(), 0, "nothing unsynced is published");
        assert!(!w.is_running());
        // even a sync that would now succeed proves nothing any more
        std::fs::write(dir.path().join("missing-wal"), b"").unwrap();
        assert!(
            matches!(w.write(insert(2)).await, Err(StoreError::Backend(m)) if m.contains("restart"))
        );
        assert_eq!(head.get(), 0);
    }

    #[tokio::test]
    async fn dropping_finishes_queued_work() {
        let w = writer();
        w.write(insert(1)).await.unwrap();
        drop(w); // joins
    }
}
