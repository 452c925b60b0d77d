//! Operational endpoints: liveness, readiness and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use natter_proto as p;

use crate::AppState;

/// `GET /healthz`: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = p::Health)))]
pub async fn healthz() -> Json<p::Health> {
    Json(p::Health {
        status: "ok".into(),
        checks: vec![],
    })
}

/// `GET /readyz`: the node can serve requests (its database answers).
/// Load balancers should route only to ready nodes.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = p::Health), (status = 503, body = p::Health)))]
pub async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<p::Health>) {
    let db = s.hub.ready().await;
    let ok = db.is_ok();
    let health = p::Health {
        status: if ok { "ok" } else { "unavailable" }.into(),
        checks: vec![p::HealthCheck {
            name: "database".into(),
            ok,
            error: db.err().map(|e| e.to_string()),
        }],
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let body = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
