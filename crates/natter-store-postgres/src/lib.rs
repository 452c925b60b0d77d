//! PostgreSQL backend of Natter's [`Store`](natter_store::Store), for
//! deployments that run one or several nodes against a shared database.
//!
//! Why it looks the way it does:
//! - one [`deadpool_postgres`] pool of `tokio-postgres` connections per
//!   store, every statement prepared once per connection (`prepare_cached`);
//! - every operation is one transaction with SQL written for PostgreSQL:
//!   sequence numbers come from a counter row updated under its row lock,
//!   so they stay gap-free across nodes, and unique constraints with
//!   `INSERT .. ON CONFLICT` settle races (one direct conversation per pair,
//!   one message per `client_id`) in the database rather than in memory;
//! - the schema is created by embedded migrations on connect, serialised by
//!   an advisory lock so that several nodes may start at once
//!   (see `src/migrate.rs`);
//! - an optional schema (`search_path`) lets one database hold several
//!   independent Natter data sets, which the tests use for isolation;
//! - the event log orders events by `(transaction id, row id)` and shows
//!   readers only the rows of transactions that have all finished, so that
//!   positions follow commit order across connections and nodes (see
//!   `src/events.rs`).
//!
//! Connections are plain TCP (`NoTls`) for now; TLS (rustls, never
//! OpenSSL) can come later as an option.

mod error;
mod events;
mod migrate;
mod rows;
mod store;

use std::fmt;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use natter_store::{StoreError, StoreResult};
use tokio_postgres::NoTls;

use crate::error::backend;

/// How long to wait for a TCP connection when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an operation waits for a free pooled connection.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of [`PgStore::connect_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// The schema that holds Natter's tables. It is created if missing and
    /// set as the `search_path` of every connection. `None` keeps the
    /// server's default search path (usually `public`).
    ///
    /// The name must be a plain lowercase identifier: `a`–`z`, `0`–`9` and
    /// `_`, not starting with a digit, at most 63 bytes.
    pub schema: Option<String>,
    /// The most connections the pool opens; they are opened on demand.
    pub pool_size: usize,
    /// How long a read of the event log (`event_head`, `events_after`,
    /// `user_events_after`) waits when events committed before it are held
    /// back by an older transaction that is still open, anywhere on the
    /// server. Reads normally wait a few milliseconds at most; after this
    /// long a read answers without the held-back events (they follow in a
    /// later read, never skipped) and logs a warning naming the open
    /// transaction's id. See `src/events.rs`.
    pub event_wait: Duration,
}

impl PgOptions {
    pub const DEFAULT_POOL_SIZE: usize = 16;
    pub const DEFAULT_EVENT_WAIT: Duration = Duration::from_secs(1);
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: None,
            pool_size: Self::DEFAULT_POOL_SIZE,
            event_wait: Self::DEFAULT_EVENT_WAIT,
        }
    }
}

/// A [`Store`](natter_store::Store) on PostgreSQL. Cheap to clone: clones
/// share one connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    event_wait: Duration,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStore")
            .field("pool_size", &status.size)
            .field("pool_max_size", &status.max_size)
            .finish()
    }
}

impl PgStore {
    /// Connects with default options (server's search path, pool of
    /// [`PgOptions::DEFAULT_POOL_SIZE`]) and brings the schema up to date.
    ///
    /// `url` is a libpq-style URL or key/value string, for example
    /// `postgres://natter@127.0.0.1:5432/natter`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// Connects, creates `options.schema` if it is missing, runs the
    /// embedded migrations and returns a store over a pool of connections
    /// that all use that schema.
    pub async fn connect_with(url: &str, options: PgOptions) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("natter");
        }
        if let Some(schema) = &options.schema {
            check_schema_name(schema)?;
            // A startup option rather than a `SET` after connecting: every
            // connection the pool opens, now or after a reconnect, gets it.
            let search_path = format!("-c search_path={schema}");
            let all = match config.get_options() {
                Some(given) if !given.trim().is_empty() => format!("{given} {search_path}"),
                _ => search_path,
            };
            config.options(&all);
        }

        migrate::run(&config, options.schema.as_deref()).await?;

        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .build()
            .map_err(backend)?;
        Ok(Self {
            pool,
            event_wait: options.event_wait,
        })
    }
}

/// Schema names end up in a startup option and in DDL, where they cannot be
/// bound as parameters, so only plain identifiers are accepted.
fn check_schema_name(schema: &str) -> StoreResult<()> {
    let bytes = schema.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid schema name {schema:?}: use a-z, 0-9 and _, not starting with a digit, at most 63 bytes"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(check_schema_name("natter").is_ok());
        assert!(check_schema_name("natter_test_0190a0b47d4c").is_ok());
        assert!(check_schema_name("_x1").is_ok());
        for bad in ["", "1abc", "Natter", "a-b", "a b", "a;drop", "\"x\""] {
            assert!(check_schema_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_schema_name(&"a".repeat(64)).is_err());
        assert!(check_schema_name(&"a".repeat(63)).is_ok());
    }
}
