//! The one place where errors become HTTP responses.
//!
//! Every error body is `{"error": {"code", "message", "field"?}}`; the
//! `code` is stable and meant for programs, the message for people.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use natter_core::CoreError;
use natter_proto::{ErrorBody, ErrorResponse};
use natter_types::ValidationError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    pub field: Option<String>,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", message)
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        if e.too_large {
            Self {
                field: Some(e.field.into()),
                ..Self::too_large(format!("{}: {}", e.field, e.message))
            }
        } else {
            Self::invalid(e.field, format!("{}: {}", e.field, e.message))
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let message = e.to_string();
        match e {
            CoreError::Invalid(v) => v.into(),
            CoreError::Unauthenticated => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
            }
            CoreError::BadCredentials => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
            }
            CoreError::Forbidden { code, .. } => Self::new(StatusCode::FORBIDDEN, code, message),
            CoreError::NotFound { what } => {
                Self::new(StatusCode::NOT_FOUND, format!("{what}_not_found"), message)
            }
            CoreError::Conflict { code, .. } => Self::new(StatusCode::CONFLICT, code, message),
            CoreError::Blocked => Self::new(StatusCode::FORBIDDEN, "blocked", message),
            CoreError::RecipientUnavailable => {
                Self::new(StatusCode::FORBIDDEN, "recipient_unavailable", message)
            }
            CoreError::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            },
            CoreError::RegistrationClosed => {
                Self::new(StatusCode::FORBIDDEN, "registration_closed", message)
            }
            CoreError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code.into_owned(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up so that a client that waits exactly
            // this long is let through.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
