//! Natter's HTTP transport: the REST API under `/api/v1`, its OpenAPI
//! document and interactive page, the operational endpoints (`/healthz`,
//! `/readyz`, `/metrics`), and the embedded web client at `/`.
//!
//! Handlers only translate: they parse the request into domain values,
//! call one [`Hub`] method, and turn the result into JSON. Errors become
//! responses in one place, [`error::ApiError`]. This crate does not bind
//! sockets; the server crate passes the router a listener.

mod accounts;
mod blocks;
mod conversations;
pub mod error;
mod extract;
mod ops;
pub mod realtime;
pub mod web;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use natter_core::Hub;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

/// Settings of the HTTP transport.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes. It must leave room for a
    /// maximal message body after JSON escaping.
    pub max_request_bytes: usize,
    /// Take the client IP from `X-Forwarded-For` (behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

impl HttpConfig {
    /// A request limit that admits any message body the hub accepts, even
    /// if every character is escaped (`\u0000` is six bytes for one).
    pub fn for_body_limit(max_body_bytes: usize) -> Self {
        Self {
            max_request_bytes: max_body_bytes.saturating_mul(6).saturating_add(16 * 1024),
            trust_forwarded_for: false,
        }
    }
}

/// Everything a handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    pub config: Arc<HttpConfig>,
    pub stream: Arc<realtime::StreamConfig>,
    /// Renders `/metrics`; `None` serves an empty page.
    pub metrics: Option<PrometheusHandle>,
    /// Flips to `true` when the server shuts down, so that streams and
    /// long-polls end promptly instead of holding the shutdown up.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Natter API",
        description = "The JSON API of Natter. Authenticate with `Authorization: Bearer <token>` from `POST /api/v1/sessions`. Errors are always `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Sign-up, log-in, sessions, profile and directory"),
        (name = "contacts", description = "The contact list (the XMPP roster)"),
        (name = "blocks", description = "Blocked users (the XMPP blocklist, XEP-0191)"),
        (name = "conversations", description = "Direct and group conversations and their members"),
        (name = "messages", description = "History, sending, edits, deletion and read markers"),
        (name = "realtime", description = "Long-poll events and commands (the WebSocket stream at /api/v1/stream carries the same frames; see docs/protocol.md)"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API routes and their OpenAPI document, built from the same code.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::sign_up))
        .routes(routes!(accounts::log_in, accounts::list_sessions))
        .routes(routes!(accounts::log_out))
        .routes(routes!(accounts::revoke_session))
        .routes(routes!(accounts::me, accounts::update_me))
        .routes(routes!(accounts::change_password))
        .routes(routes!(accounts::search_users))
        .routes(routes!(accounts::get_user))
        .routes(routes!(accounts::list_contacts))
        .routes(routes!(accounts::put_contact, accounts::remove_contact))
        .routes(routes!(blocks::list_blocks, blocks::unblock_all))
        .routes(routes!(blocks::block, blocks::unblock))
        .routes(routes!(conversations::create, conversations::list))
        .routes(routes!(conversations::get, conversations::update))
        .routes(routes!(
            conversations::put_member,
            conversations::remove_member
        ))
        .routes(routes!(conversations::send, conversations::history))
        .routes(routes!(conversations::edit, conversations::delete))
        .routes(routes!(conversations::mark_read))
        .routes(routes!(realtime::poll, realtime::command))
        .routes(routes!(realtime::presence))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .split_for_parts()
}

/// The OpenAPI document, for tools that want it without a server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// Builds the whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let doc = Arc::new(doc);
    api.route("/metrics", axum::routing::get(ops::metrics))
        .route("/api/v1/stream", axum::routing::get(realtime::stream))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json((*doc).clone()) }
            }),
        )
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", openapi()),
        )
        .fallback(web::fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(middleware::from_fn(record_metrics))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

/// Counts requests and their latency per route template (never per raw
/// path, which would explode the label set).
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("natter_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("natter_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response.into_response()
}
