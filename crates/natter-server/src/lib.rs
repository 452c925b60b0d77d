//! The `natter` server: configuration, the wiring of store, hub and
//! transports, listeners and graceful shutdown.
//!
//! This is the only crate that knows every concrete backend: it picks the
//! store from the database URL's scheme and hands the rest of the system a
//! `dyn Store`, and the bus from its URL (`dyn Bus`). [`run`] takes
//! listeners bound by the caller and a shutdown future, so tests bind port
//! 0 and stop servers when they like.

pub mod config;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use natter_core::Hub;
use natter_http::realtime::StreamConfig;
use natter_http::{AppState, HttpConfig};
use natter_store::Store;
use tokio::net::TcpListener;

pub use config::{Config, Overrides};

/// Opens the store named by the configuration: `sqlite://PATH` (relative
/// paths are relative to the working directory) or `postgres://…`.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url();
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = Path::new(path);
        let store = natter_store_sqlite::SqliteStore::open(path)
            .with_context(|| format!("opening SQLite database {}", path.display()))?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = natter_store_postgres::PgStore::connect(&url)
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://…")
    }
}

/// Opens the cluster bus named by the configuration: `None` without one
/// (the node works alone), NATS for `nats://…`. A node starts even while
/// NATS is down: it reports that in `/readyz` and connects when it can.
pub async fn open_bus(config: &Config) -> anyhow::Result<Option<Arc<dyn natter_bus::Bus>>> {
    let Some(url) = &config.bus else {
        return Ok(None);
    };
    let bus = natter_bus_nats::NatsBus::connect(url, Duration::from_secs(5))
        .await
        .context("connecting to the bus")?;
    if let natter_bus::Health::Down(why) = &*natter_bus::Bus::health(&bus).borrow() {
        tracing::warn!(bus = %url, reason = %why, "bus not reachable yet; retrying in the background");
    }
    Ok(Some(Arc::new(bus)))
}

/// The process-wide Prometheus recorder. The `metrics` facade is global by
/// design, so it is installed once even when a test runs many servers.
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}

/// The listeners of a node, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub http: TcpListener,
    /// XMPP c2s with STARTTLS.
    pub xmpp: Option<TcpListener>,
    /// XMPP c2s with direct TLS.
    pub xmpps: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address the configuration names.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let http = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("binding HTTP to {}", config.http))?;
        let (mut xmpp, mut xmpps) = (None, None);
        if config.xmpp.enabled {
            xmpp = Some(
                TcpListener::bind(config.xmpp.listen)
                    .await
                    .with_context(|| format!("binding XMPP to {}", config.xmpp.listen))?,
            );
            xmpps = Some(
                TcpListener::bind(config.xmpp.tls_listen)
                    .await
                    .with_context(|| format!("binding XMPP (TLS) to {}", config.xmpp.tls_listen))?,
            );
        }
        Ok(Self { http, xmpp, xmpps })
    }
}

/// Serves HTTP on `http` only; see [`serve`].
pub async fn run(
    config: Config,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listeners = Listeners {
        http,
        xmpp: None,
        xmpps: None,
    };
    serve(config, listeners, shutdown).await
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish and closes the store, so that everything acknowledged is
/// committed before this returns.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listeners { http, xmpp, xmpps } = listeners;
    let store = open_store(&config).await?;
    let hub = match open_bus(&config).await? {
        Some(bus) => Hub::with_bus(store, config.core(), bus),
        None => Hub::new(store, config.core()),
    };
    let realtime = hub
        .start_realtime()
        .await
        .context("starting real-time delivery")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = AppState {
        hub: hub.clone(),
        config: Arc::new(HttpConfig {
            trust_forwarded_for: config.trust_forwarded_for,
            ..HttpConfig::for_body_limit(config.limits.max_body_bytes)
        }),
        stream: Arc::new(StreamConfig {
            allowed_origins: config.stream.allowed_origins.clone(),
            commands_per_second: config.stream.commands_per_second,
            heartbeat: Duration::from_secs(config.stream.heartbeat_secs),
            auth_timeout: Duration::from_secs(config.stream.auth_timeout_secs),
            ..StreamConfig::for_body_limit(config.limits.max_body_bytes)
        }),
        metrics: metrics_handle(),
        shutdown: stop_rx.clone(),
    };
    let mut app = natter_http::router(state);
    let mut xmpp_tasks = Vec::new();
    if config.xmpp.enabled {
        let tls = natter_xmpp::tls::server_config(&config.xmpp_cert())
            .context("setting up TLS for XMPP")?;
        let service = natter_xmpp::Xmpp::new(hub.clone(), config.xmpp(), Some(tls), stop_rx);
        app = app.merge(service.router());
        for (listener, direct_tls) in [(xmpp, false), (xmpps, true)] {
            if let Some(listener) = listener {
                tracing::info!(addr = %listener.local_addr()?, direct_tls, "XMPP listening");
                let service = service.clone();
                xmpp_tasks.push(tokio::spawn(async move {
                    service.serve_tcp(listener, direct_tls).await
                }));
            }
        }
    }

    let purge = tokio::spawn(purge_sessions(hub.clone()));
    tracing::info!(http = %http.local_addr()?, domain = %config.domain, bus = %hub.bus_description(), "natter listening");
    let served = axum::serve(
        http,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // Streams and long-polls end now; plain requests finish.
        let _ = stop_tx.send(true);
    })
    .await;
    for t in xmpp_tasks {
        let _ = t.await;
    }
    purge.abort();
    hub.leave_cluster().await;
    drop(realtime);
    drop(hub);
    tracing::info!("natter stopped");
    served.context("serving HTTP")
}

/// Removes expired sessions every hour, so the sessions table does not
/// grow without bound.
async fn purge_sessions(hub: Hub) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match hub.purge_expired_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "expired sessions purged"),
            Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
