//! Embedded schema migrations, safe when several nodes start at once.
//!
//! The SQL lives in `migrations/` (PostgreSQL dialect, its own files, not
//! shared with SQLite) and is compiled into the binary by refinery's
//! `embed_migrations!`, so a server needs no files beside it. Refinery keeps
//! its history in `refinery_schema_history` in the same schema, verifies
//! checksums of applied migrations and runs each new one in a transaction.
//!
//! Refinery itself does not guard against two processes migrating at the
//! same moment, so the runner works on a dedicated connection that first
//! takes a session-level advisory lock keyed on the schema: other nodes
//! wait, then find nothing left to do. A session lock (rather than
//! `pg_advisory_xact_lock`) is needed because refinery opens and commits
//! its own transactions; it is released by closing that connection, which
//! also happens if anything fails half-way.

use natter_store::{StoreError, StoreResult};
use tokio_postgres::NoTls;

use crate::error::pg;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// First key of the advisory lock; the second is a hash of the schema name
/// so that migrations of different schemas do not wait for each other.
const LOCK_CLASS: i32 = 0x4e61_7474; // "Natt"

/// Creates `schema` if it is given and missing, then applies the pending
/// migrations, holding the migration lock throughout. `config` already
/// carries the `search_path` option for `schema`.
pub(crate) async fn run(config: &tokio_postgres::Config, schema: Option<&str>) -> StoreResult<()> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(pg)?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection failed");
        }
    });

    let result = async {
        client
            .execute(
                "SELECT pg_advisory_lock($1, hashtext(coalesce($2::text, current_schema(), '')))",
                &[&LOCK_CLASS, &schema],
            )
            .await
            .map_err(pg)?;
        if let Some(schema) = schema {
            // The name was checked to be a plain identifier: DDL cannot take
            // it as a parameter.
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await
                .map_err(pg)?;
        }
        let report = embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        for m in report.applied_migrations() {
            tracing::info!(version = m.version(), name = m.name(), "applied migration");
        }
        Ok(())
    }
    .await;

    // Closing the connection releases the advisory lock, also on failure.
    drop(client);
    let _ = connection.await;
    result
}
