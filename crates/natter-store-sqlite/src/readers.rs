//! A small pool of read-only connections. In WAL mode readers never block
//! the writer nor each other, so reads run in parallel with the writer
//! thread, each on a blocking-pool thread (SQLite calls block).
//!
//! A semaphore bounds the reads in flight to the number of connections; a
//! connection lost to a panicking read is replaced by a fresh one on demand.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use natter_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::conn::open_reader;

pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    /// Opens `size` read connections on the database at `path`.
    pub(crate) fn open(path: PathBuf, size: usize) -> StoreResult<Arc<Readers>> {
        let idle = (0..size)
            .map(|_| open_reader(&path))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Arc::new(Readers {
            path,
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
        }))
    }

    /// Runs `f` on a read connection. Each statement sees the database as
    /// of its start, including every write whose future has resolved.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("the read pool is closed".into()))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.take()?;
            let result = f(&conn);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    fn take(&self) -> StoreResult<Connection> {
        let conn = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match conn {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }
}
