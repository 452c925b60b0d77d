//! Integration tests of the SQLite store, in one test binary (one link, not
//! one per file): the shared conformance suite that every backend passes,
//! plus checks specific to this backend's single-writer design.

mod events;
mod sqlite;
mod writers;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use natter_store::Store;
use natter_store::conformance::Harness;
use natter_store_sqlite::SqliteStore;
use tempfile::TempDir;

/// A fresh database file in a temporary directory, removed when the
/// harness is dropped. The file sits in a subdirectory that does not exist
/// yet, so every test also checks that `open` creates it.
pub struct Sqlite {
    _dir: TempDir,
    path: PathBuf,
}

impl Sqlite {
    pub fn temp() -> Sqlite {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("data").join("natter.sqlite3");
        Sqlite { _dir: dir, path }
    }

    pub fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.path).expect("open the SQLite store")
    }
}

#[async_trait]
impl Harness for Sqlite {
    async fn fresh() -> Option<Self> {
        Some(Sqlite::temp())
    }

    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.store())
    }
}

natter_store::conformance_tests!(Sqlite);
