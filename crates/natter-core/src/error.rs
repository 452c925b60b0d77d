//! The hub's error type: what went wrong, in terms a transport can map to
//! its own wire (an HTTP status, an XMPP error condition) in one place.

use std::time::Duration;

use natter_store::StoreError;
use natter_types::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Input that breaks a rule; names the field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No valid credentials were presented (missing, unknown, expired or
    /// revoked token).
    #[error("authentication required")]
    Unauthenticated,
    /// Wrong username or password; deliberately does not say which.
    #[error("invalid username or password")]
    BadCredentials,
    /// The caller is authenticated but not allowed to do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// A named thing does not exist (`what` is e.g. "user", "conversation").
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The caller has blocked the other user: they must unblock them to
    /// write to them.
    #[error("you have blocked this user; unblock them first")]
    Blocked,
    /// The other user does not accept this from the caller (they blocked
    /// the caller). Deliberately does not say why: a block is not
    /// revealed to the one blocked.
    #[error("this user is not available")]
    RecipientUnavailable,
    /// Too many attempts; retry after the given time.
    #[error("too many attempts, retry in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    /// Sign-up is closed on this server.
    #[error("registration is closed on this server")]
    RegistrationClosed,
    /// Storage failed; the operation did not take effect.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl CoreError {
    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str) -> Self {
        Self::NotFound { what }
    }

    /// The error for an operation on a conversation the caller is not in.
    pub(crate) fn not_member() -> Self {
        Self::forbidden("not_member", "you are not a member of this conversation")
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::conflict(
                if what == "username" {
                    "username_taken"
                } else {
                    "conflict"
                },
                format!("{what} already exists"),
            ),
            StoreError::NotFound(what) => Self::NotFound { what },
            StoreError::NotMember => Self::not_member(),
            StoreError::ClientIdReused => Self::conflict(
                "client_id_reused",
                "client_id was already used for a message in another conversation",
            ),
            StoreError::SenderBlocked => Self::Blocked,
            StoreError::RecipientBlocked => Self::RecipientUnavailable,
            StoreError::Backend(msg) => {
                tracing::error!(error = %msg, "storage failure");
                Self::Unavailable("storage is unavailable".into())
            }
        }
    }
}
