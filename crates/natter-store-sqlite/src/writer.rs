//! The single writer: one OS thread owns the only connection that writes,
//! and every write of the store is a job sent to it. This is how SQLite is
//! fast under concurrent writers.
//!
//! - No contention: SQLite allows one writer at a time. With one thread
//!   holding the write connection, our own writers never see "database is
//!   locked" and never spin in the busy handler; they wait in a queue.
//! - Group commit: the thread takes one job, then drains whatever else is
//!   queued (up to [`MAX_BATCH`]), and runs them all in one `BEGIN
//!   IMMEDIATE` transaction, so one WAL fsync covers the whole batch. Under
//!   load, batches grow by themselves while the previous fsync runs.
//! - Isolation: each job runs inside its own `SAVEPOINT`; a job that fails
//!   rolls back only its own changes and the other jobs still commit. That
//!   also keeps sequence numbers gap-free, since a failed append leaves no
//!   trace.
//! - Durability: results are sent back only after `COMMIT` has returned
//!   (with `synchronous=FULL`, after the fsync), so a caller that
//!   acknowledges after `await` never acknowledges lost data. If the commit
//!   fails, every job of the batch gets an error.
//!
//! The thread stops when the [`Writer`] is dropped, after finishing the
//! jobs already queued; dropping joins it, so the file is released when
//! the drop returns.

use std::panic::{AssertUnwindSafe, catch_unwind};
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
    /// Runs the job inside its own savepoint of the open transaction and
    /// returns how to answer once the fate of the transaction is known.
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Ran>;
    /// Answers a job that could not run at all.
    fn fail(self: Box<Self>, reason: &str);
}

/// A job that has run and awaits its batch's commit.
trait Ran: Send {
    /// `Ok` once the transaction committed, `Err` if it did not.
    fn finish(self: Box<Self>, committed: Result<(), &str>);
}

struct WriteJob<F, T> {
    f: F,
    reply: oneshot::Sender<StoreResult<T>>,
}

struct Finished<T> {
    result: StoreResult<T>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Job for WriteJob<F, T>
where
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Ran> {
        let WriteJob { f, reply } = *self;
        // The caller gave up (its future was dropped) before the job's turn
        // came: nobody will read the answer, so do not do the work.
        let result = if reply.is_closed() {
            Err(StoreError::Backend("cancelled before it ran".into()))
        } else {
            in_savepoint(conn, f)
        };
        Box::new(Finished { result, reply })
    }

    fn fail(self: Box<Self>, reason: &str) {
        let _ = self.reply.send(Err(StoreError::Backend(reason.to_owned())));
    }
}

impl<T: Send + 'static> Ran for Finished<T> {
    fn finish(self: Box<Self>, committed: Result<(), &str>) {
        let result = match (self.result, committed) {
            // The job's own error stands: its changes were rolled back
            // anyway, and the error says why better than the commit does.
            (Err(e), _) => Err(e),
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(reason)) => Err(StoreError::Backend(reason.to_owned())),
        };
        // The caller may have stopped waiting; the data is committed anyway.
        let _ = self.reply.send(result);
    }
}

/// Runs `f` so that, whatever it does, it leaves the transaction either
/// with all its changes (`Ok`) or with none of them (`Err`).
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
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

/// Handle to the writer thread.
pub(crate) struct Writer {
    /// `None` only while dropping: closing the queue is what stops the
    /// thread.
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, the only connection that writes.
    pub(crate) fn spawn(conn: Connection) -> StoreResult<Writer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("natter-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the write connection, inside the current batch's
    /// transaction, and resolves once that transaction has committed.
    ///
    /// `f` must not open or close transactions itself. If the future is
    /// dropped before the job's turn, the job is skipped; once it has run,
    /// it commits whether or not anyone still awaits it.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(Box::new(WriteJob { f, reply }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether the writer thread is still taking jobs.
    pub(crate) fn is_running(&self) -> bool {
        self.jobs.as_ref().is_some_and(|j| !j.is_closed())
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer thread has stopped".into())
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what is queued and exit;
        // joining means the write connection is closed when drop returns, so
        // the same file can be opened again straight away.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
    }
}

fn writer_loop(conn: Connection, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = Vec::with_capacity(jobs.len().min(MAX_BATCH - 1) + 1);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch);
    }
    // Closed here, before the thread ends, so that when `Drop for Writer`
    // has joined the thread the file has no writer left.
    drop(conn);
}

/// Runs a batch of jobs in as few transactions as possible (normally one)
/// and answers each job after its transaction's fate is known.
fn run_batch(conn: &Connection, batch: Vec<Box<dyn Job>>) {
    let mut pending = batch.into_iter().peekable();
    let mut ran: Vec<Box<dyn Ran>> = Vec::with_capacity(pending.len());
    while pending.peek().is_some() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let reason = format!("cannot begin a write transaction: {e}");
            tracing::error!("{reason}");
            for job in pending {
                job.fail(&reason);
            }
            return;
        }
        let mut lost = false;
        for job in pending.by_ref() {
            ran.push(job.run(conn));
            if conn.is_autocommit() {
                // SQLite rolled back the whole transaction (disk full, I/O
                // error, ...), and with it the earlier jobs of this batch.
                lost = true;
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
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                for r in ran.drain(..) {
                    r.finish(Ok(()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)")
            .unwrap();
        Writer::spawn(conn).unwrap()
    }

    fn insert(v: i64) -> impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static {
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
    async fn dropping_finishes_queued_work() {
        let w = writer();
        w.write(insert(1)).await.unwrap();
        drop(w); // joins
    }
}
