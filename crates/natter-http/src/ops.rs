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

/// `GET /readyz`: whether the node can serve requests, with one check per
/// dependency: `database` (the store answers) and `bus` (the cluster bus
/// is connected; always true for a node working alone).
///
/// Without the database nothing works: 503, so load balancers route
/// elsewhere. Without the bus the node still serves everything and
/// delivers every message (it reads the shared store more often), but
/// presence, typing and instant revocation do not cross nodes: the status
/// is `degraded` with 200, so that losing NATS, which every node shares,
/// does not take the whole cluster out of its load balancer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = p::Health), (status = 503, body = p::Health)))]
pub async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<p::Health>) {
    let db = s.hub.ready().await;
    let bus = s.hub.bus_health();
    let (db_ok, bus_ok) = (db.is_ok(), bus.is_ok());
    let health = p::Health {
        status: match (db_ok, bus_ok) {
            (true, true) => "ok",
            (true, false) => "degraded",
            (false, _) => "unavailable",
        }
        .into(),
        checks: vec![
            p::HealthCheck {
                name: "database".into(),
                ok: db_ok,
                error: db.err().map(|e| e.to_string()),
            },
            p::HealthCheck {
                name: "bus".into(),
                ok: bus_ok,
                error: bus.err(),
            },
        ],
    };
    let status = if db_ok {
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
