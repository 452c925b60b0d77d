//! Request extractors that fail with the API's JSON errors instead of
//! axum's plain-text rejections, and name the field at fault.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{header, request::Parts};
use natter_core::Caller;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON request body. The size limit is checked against
/// `Content-Length` before any byte is read, and again while reading
/// bodies of unknown length.
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body means `T::default()`.
pub struct OptionalJson<T>(pub T);

async fn read_body(req: Request, limit: usize) -> Result<Option<axum::body::Bytes>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(format!(
            "request body is larger than {limit} bytes"
        )));
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.starts_with("application/") && v.ends_with("+json"))
        });
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| ApiError::too_large(format!("request body is larger than {limit} bytes")))?;
    // An empty body is "no body", whatever the content type says.
    if bytes.is_empty() {
        return Ok(None);
    }
    if is_json != Some(true) {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON with Content-Type: application/json",
        ));
    }
    Ok(Some(bytes))
}

/// Deserialises JSON, reporting syntax errors as `malformed_json` and type
/// errors as `invalid_field` with the path of the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            use serde_json::error::Category;
            match inner.classify() {
                Category::Syntax | Category::Eof | Category::Io => Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the request body is not valid JSON: {inner}"),
                )),
                Category::Data => {
                    let text = inner.to_string();
                    let field = missing_field(&text)
                        .map(|f| {
                            if path == "." {
                                f.to_owned()
                            } else {
                                format!("{path}.{f}")
                            }
                        })
                        .unwrap_or_else(|| if path == "." { "body".into() } else { path });
                    let message = match text.find(" at line ") {
                        Some(i) => text[..i].to_owned(),
                        None => text,
                    };
                    Err(ApiError::invalid(
                        field.clone(),
                        format!("{field}: {message}"),
                    ))
                }
            }
        }
    }
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match read_body(req, state.config.max_request_bytes).await? {
            Some(bytes) => parse_json(&bytes).map(ApiJson),
            None => Err(ApiError::invalid("body", "a JSON body is required")),
        }
    }
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match read_body(req, state.config.max_request_bytes).await? {
            Some(bytes) => parse_json(&bytes).map(OptionalJson),
            None => Ok(OptionalJson(T::default())),
        }
    }
}

/// Parses a username from the request, naming `field` if it is invalid.
pub fn username(field: &'static str, s: &str) -> Result<natter_types::Username, ApiError> {
    natter_types::Username::parse(s).map_err(|mut e| {
        e.field = field;
        e.into()
    })
}

/// Path parameters; a parameter that does not parse (a conversation id
/// that is not a UUID) is a 404, as no such resource can exist.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::not_found(format!("no such resource: {}", e.body_text())))
    }
}

/// Query parameters with JSON errors.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| {
                let text = e.body_text();
                let field = text
                    .split_once(": ")
                    .map(|(_, rest)| rest)
                    .and_then(|rest| rest.split(':').next())
                    .filter(|f| !f.contains(' '))
                    .unwrap_or("query")
                    .to_owned();
                ApiError::invalid(field, text)
            })
    }
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "send Authorization: Bearer <token>",
                )
            })?;
        let caller = state.hub.authenticate(token).await?;
        Ok(Auth(caller))
    }
}

/// The client's IP address: the TCP peer, or, when the server is
/// configured to trust a reverse proxy, the last address it appended to
/// `X-Forwarded-For`.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        if state.config.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return Ok(ClientIp(forwarded));
            }
        }
        Ok(ClientIp(peer))
    }
}

/// The `User-Agent` header, if any.
pub struct UserAgent(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(UserAgent(
            parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ))
    }
}
