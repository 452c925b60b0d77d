//! Typed errors: what went wrong, in terms an application can act on.
//!
//! The server answers every failure with
//! `{"error":{"code","message","field"?}}` and an HTTP status; the real-time
//! stream uses the same error objects in its replies and WebSocket close
//! codes for the rest. Both are folded here into one [`Error`] whose
//! variant says what to do (log in again, fix the input, wait, retry), and
//! whose fields keep the server's stable `code`, its message and, for
//! validation errors, the field at fault.

use std::time::Duration;

use natter_proto::ErrorBody;

/// Everything the SDK can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached, or the connection broke or timed
    /// out before an answer arrived. Retrying later may succeed; a send
    /// retried with the same `client_id` is never duplicated.
    #[error("network error: {message}")]
    Network {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// No valid credentials: wrong username or password
    /// (`invalid_credentials`), or a missing, expired or revoked token
    /// (`unauthenticated`, `session_revoked`). Log in again.
    #[error("authentication failed: {message}")]
    Unauthenticated { code: String, message: String },
    /// Authenticated, but not allowed (`not_member`, `insufficient_role`,
    /// `registration_closed`, …).
    #[error("permission denied: {message}")]
    Forbidden { code: String, message: String },
    /// The user, conversation, message or contact named does not exist
    /// (`user_not_found`, `conversation_not_found`, …).
    #[error("not found: {message}")]
    NotFound { code: String, message: String },
    /// The input was refused (`invalid_field`, `payload_too_large`,
    /// `malformed_json`, …); `field` names the offending field when the
    /// server said which.
    #[error("invalid input: {message}")]
    Invalid {
        code: String,
        message: String,
        field: Option<String>,
    },
    /// The request conflicts with the current state (`username_taken`,
    /// `client_id_reused`, `last_owner`, …).
    #[error("conflict: {message}")]
    Conflict { code: String, message: String },
    /// Too many requests; `retry_after` is the server's `Retry-After`.
    #[error("rate limited: {message}{}", retry_after.map(|d| format!(" (retry in {} s)", d.as_secs().max(1))).unwrap_or_default())]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The server failed (5xx). `unavailable` (503) is temporary.
    #[error("server error {status}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// The server answered something this SDK does not understand.
    #[error("protocol error: {message}")]
    Protocol { message: String },
    /// The client was set up wrongly (a server URL that is not `http://`,
    /// or `https://` without the `tls` feature).
    #[error("configuration error: {message}")]
    Config { message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds the error for an HTTP status and the server's error body
    /// (`None` when the body was not an error object).
    pub fn from_api(status: u16, body: Option<ErrorBody>, retry_after: Option<Duration>) -> Self {
        let (code, message, field) = match body {
            Some(b) => (b.code, b.message, b.field),
            None => (
                format!("http_{status}"),
                format!("the server answered HTTP {status}"),
                None,
            ),
        };
        match status {
            401 => Error::Unauthenticated { code, message },
            403 => Error::Forbidden { code, message },
            404 => Error::NotFound { code, message },
            409 => Error::Conflict { code, message },
            429 => Error::RateLimited {
                message,
                retry_after,
            },
            400..=499 => Error::Invalid {
                code,
                message,
                field,
            },
            _ => Error::Server {
                status,
                code,
                message,
            },
        }
    }

    /// Builds the error of a failed real-time command reply (`ok: false`),
    /// which carries a code but no status.
    pub fn from_reply(body: ErrorBody) -> Self {
        let status = match body.code.as_str() {
            "unauthenticated" | "invalid_credentials" => 401,
            "not_member" | "insufficient_role" | "not_author" | "forbidden_origin" => 403,
            c if c.ends_with("_not_found") || c == "not_found" => 404,
            "rate_limited" => 429,
            "unavailable" => 503,
            "client_id_reused" | "message_deleted" | "not_a_group" | "last_owner"
            | "group_full" | "username_taken" => 409,
            _ => 400,
        };
        Self::from_api(status, Some(body), None)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Error::Protocol {
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    /// The server's stable error code, when the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Unauthenticated { code, .. }
            | Error::Forbidden { code, .. }
            | Error::NotFound { code, .. }
            | Error::Invalid { code, .. }
            | Error::Conflict { code, .. }
            | Error::Server { code, .. } => Some(code),
            Error::RateLimited { .. } => Some("rate_limited"),
            _ => None,
        }
    }

    /// The request field the server blamed, for validation errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// How long the server asked to wait, for rate limits.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the same request may succeed later unchanged: network
    /// failures, rate limits and server errors. Authentication,
    /// permission, not-found and validation errors will not go away by
    /// retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Network { .. } | Error::RateLimited { .. } | Error::Server { .. }
        )
    }
}

/// The message of an error and its causes, joined: reqwest and tungstenite
/// keep the useful part ("Connection refused") in the source chain.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        let message = chain(&e);
        if e.is_decode() {
            Error::Protocol { message }
        } else if e.is_builder() {
            Error::Config { message }
        } else {
            Error::Network {
                message,
                source: Some(Box::new(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str, field: Option<&str>) -> Option<ErrorBody> {
        Some(ErrorBody {
            code: code.into(),
            message: format!("{code} happened"),
            field: field.map(Into::into),
        })
    }

    #[test]
    fn statuses_map_to_variants() {
        assert!(matches!(
            Error::from_api(401, body("unauthenticated", None), None),
            Error::Unauthenticated { .. }
        ));
        let e = Error::from_api(400, body("invalid_field", Some("username")), None);
        assert_eq!(e.field(), Some("username"));
        assert_eq!(e.code(), Some("invalid_field"));
        assert!(!e.is_retryable());
        let e = Error::from_api(
            429,
            body("rate_limited", None),
            Some(Duration::from_secs(3)),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(e.is_retryable());
        assert!(e.to_string().contains("retry in 3 s"), "{e}");
        assert!(matches!(
            Error::from_api(503, None, None),
            Error::Server { status: 503, .. }
        ));
        assert!(matches!(
            Error::from_api(413, body("payload_too_large", Some("body")), None),
            Error::Invalid { .. }
        ));
    }

    #[test]
    fn replies_map_by_code() {
        assert!(matches!(
            Error::from_reply(body("not_member", None).unwrap()),
            Error::Forbidden { .. }
        ));
        assert!(matches!(
            Error::from_reply(body("conversation_not_found", None).unwrap()),
            Error::NotFound { .. }
        ));
    }
}
