//! Turning PostgreSQL and pool errors into [`StoreError`]s.
//!
//! Constraint violations the caller can act on become domain errors, chosen
//! by constraint name (PostgreSQL's default names for the constraints in
//! `migrations/`); everything else is [`StoreError::Backend`] with the
//! database's message, for the logs.

use std::error::Error;
use std::fmt::Display;

use natter_store::StoreError;
use tokio_postgres::error::SqlState;

/// Any error the caller cannot act on.
pub(crate) fn backend(e: impl Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// An error with its causes: `tokio-postgres` prints only "db error" for a
/// database error and keeps the server's message in the source.
fn with_causes(e: &dyn Error) -> StoreError {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    StoreError::Backend(message)
}

/// Maps an error of a statement.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        return with_causes(&e);
    };
    let constraint = db.constraint().unwrap_or_default();
    if *db.code() == SqlState::UNIQUE_VIOLATION {
        match constraint {
            "users_username_key" => return StoreError::Conflict("username"),
            "sessions_pkey" | "sessions_token_hash_key" => return StoreError::Conflict("session"),
            "conversations_pkey" => return StoreError::Conflict("conversation"),
            "messages_id_key" => return StoreError::Conflict("message"),
            _ => {}
        }
    } else if *db.code() == SqlState::FOREIGN_KEY_VIOLATION {
        match constraint {
            "sessions_user_id_fkey"
            | "contacts_owner_id_fkey"
            | "contacts_contact_id_fkey"
            | "members_user_id_fkey"
            | "messages_sender_id_fkey" => return StoreError::NotFound("user"),
            "members_conversation_id_fkey" | "messages_conversation_id_fkey" => {
                return StoreError::NotFound("conversation");
            }
            _ => {}
        }
    }
    with_causes(&e)
}

/// Maps an error of getting a pooled connection.
pub(crate) fn pool(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg(e),
        other => StoreError::Backend(format!("connection pool: {other}")),
    }
}
