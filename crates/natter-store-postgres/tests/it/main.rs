//! Integration tests against a real PostgreSQL server: the shared
//! conformance suite plus the PostgreSQL-specific behaviour (schemas,
//! migrations under concurrency, the event log's commit order), in one
//! test binary.
//!
//! Each test gets its own schema, `natter_test_<uuid v7>`, in the database
//! named by `NATTER_TEST_POSTGRES_URL` (default
//! `postgres://root@127.0.0.1:5432/test`), so tests run in parallel without
//! seeing each other. The schema is dropped when the harness is dropped;
//! schemas that a killed run left behind are dropped by a later run once
//! they are an hour old (the UUID v7 in the name carries the creation time).
//! Without a reachable server the tests print a notice and pass vacuously,
//! unless `NATTER_TEST_REQUIRE_POSTGRES=1`, which makes that a failure.

mod events;
mod postgres;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use natter_store::Store;
use natter_store::conformance::Harness;
use natter_store_postgres::{PgOptions, PgStore};
use tokio_postgres::NoTls;
use uuid::Uuid;

const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";
const SCHEMA_PREFIX: &str = "natter_test_";
/// Leftover schemas older than this are assumed abandoned.
const STALE_AFTER: Duration = Duration::from_secs(3600);
/// Small pools: many tests run at once against one server.
const TEST_POOL_SIZE: usize = 8;
/// The tests of this binary run at once on one server (a busy, shared
/// machine, too), and every open transaction anywhere on it briefly holds
/// back every schema's event log. A generous wait keeps that from failing
/// a check that expects a read to return what it just committed; the tests
/// of the wait itself set their own.
const TEST_EVENT_WAIT: Duration = Duration::from_secs(5);

pub fn url() -> String {
    std::env::var("NATTER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A plain connection for set-up and inspection, or `None` (with a notice)
/// if the server cannot be reached.
pub async fn admin_client() -> Option<tokio_postgres::Client> {
    let url = url();
    let connect = tokio_postgres::connect(&url, NoTls);
    let result = tokio::time::timeout(Duration::from_secs(10), connect).await;
    match result {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Some(client)
        }
        Ok(Err(e)) => {
            skip_notice(&url, &e.to_string());
            None
        }
        Err(_) => {
            skip_notice(&url, "timed out");
            None
        }
    }
}

/// Skips, or fails when `NATTER_TEST_REQUIRE_POSTGRES` is set (for CI,
/// where a missing server must not pass as a green run).
fn skip_notice(url: &str, why: &str) {
    if std::env::var("NATTER_TEST_REQUIRE_POSTGRES").is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("PostgreSQL not reachable at {url} ({why}) and NATTER_TEST_REQUIRE_POSTGRES is set");
    }
    // Straight to stderr, not `eprintln!`, which the test harness captures
    // and hides for tests that pass.
    let _ = writeln!(
        std::io::stderr(),
        "skipping: PostgreSQL not reachable at {url} ({why}); set NATTER_TEST_POSTGRES_URL"
    );
}

/// A fresh schema name; a UUID v7 starts with the creation time.
pub fn schema_name() -> String {
    format!("{SCHEMA_PREFIX}{}", Uuid::now_v7().simple())
}

/// Drops `natter_test_` schemas older than [`STALE_AFTER`], once per test
/// binary; best effort.
async fn sweep_stale_schemas(client: &tokio_postgres::Client) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&SCHEMA_PREFIX],
        )
        .await
    else {
        return;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    for row in rows {
        let name: String = row.get(0);
        let created_ms = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|hex| Uuid::parse_str(hex).ok())
            .and_then(|id| id.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                u128::from(secs) * 1000 + u128::from(nanos / 1_000_000)
            });
        if let Some(created_ms) = created_ms
            && now_ms.saturating_sub(created_ms) > STALE_AFTER.as_millis()
        {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

/// Drops a schema from a thread of its own, with its own runtime and
/// connection: `Drop` cannot await, and may run on a runtime that is
/// shutting down.
fn drop_schema_blocking(schema: String) {
    let cleanup = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let url = url();
            let connect = tokio_postgres::connect(&url, NoTls);
            let Ok(Ok((client, connection))) =
                tokio::time::timeout(Duration::from_secs(10), connect).await
            else {
                return;
            };
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = tokio::time::timeout(Duration::from_secs(30), client.batch_execute(&sql)).await;
        });
    });
    let _ = cleanup.join();
}

/// One schema per test.
pub struct PgHarness {
    schema: String,
}

impl PgHarness {
    pub fn options(&self) -> PgOptions {
        PgOptions {
            schema: Some(self.schema.clone()),
            pool_size: TEST_POOL_SIZE,
            event_wait: TEST_EVENT_WAIT,
        }
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub async fn open_pg(&self) -> PgStore {
        PgStore::connect_with(&url(), self.options())
            .await
            .expect("connect to the test schema")
    }
}

#[async_trait::async_trait]
impl Harness for PgHarness {
    async fn fresh() -> Option<Self> {
        let admin = admin_client().await?;
        sweep_stale_schemas(&admin).await;
        // connect_with creates the schema and migrates it; later opens find
        // it ready.
        let harness = Self {
            schema: schema_name(),
        };
        drop(harness.open_pg().await);
        Some(harness)
    }

    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.open_pg().await)
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        drop_schema_blocking(std::mem::take(&mut self.schema));
    }
}

natter_store::conformance_tests!(PgHarness);
