//! Natter's XMPP transports: client-to-server streams over TCP (STARTTLS
//! and direct TLS, XEP-0368), over WebSocket (RFC 7395) and over BOSH
//! (XEP-0124/XEP-0206), all translating into the same `Hub` calls as the
//! JSON API and out of the same real-time items.
//!
//! One [`session::Session`] holds the whole state of an XMPP session
//! (SASL, bound resource, stream management, carbons…) and knows nothing
//! of framing; [`tcp`], [`websocket`] and [`bosh`] only cut bytes into
//! [`xml::Input`]s and write [`session::Out`]s back in their own framing.
//! XMPP concepts map onto the core like this:
//!
//! - the roster is the account's contact list;
//! - a `chat` message to a bare or full JID is a message in the direct
//!   conversation of the two accounts; its XEP-0359 stanza id is the
//!   core's message id and its `origin-id` (or stanza `id`) is the
//!   `client_id` that deduplicates retries;
//! - XEP-0184 receipts and XEP-0333 markers move the core's delivered and
//!   read watermarks, and watermarks moved by anyone come back as them;
//! - XEP-0085 chat states are typing; presence is the core's presence;
//! - XEP-0313 archive queries read the shared history.
//!
//! Group conversations are not offered over XMPP yet (MUC is a later
//! step); routing keeps a conversation, not a JID pair, as the unit, so
//! that a group can become a room.

mod blocking;
pub mod bosh;
mod carbons;
pub mod error;
mod im;
mod mam;
pub mod ns;
mod routing;
mod sasl;
pub mod session;
pub mod tcp;
pub mod tls;
pub mod websocket;
pub mod xml;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natter_core::Hub;

pub use tls::CertSource;

/// Configuration of the XMPP transports.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    /// The domain of every JID this server hosts.
    pub domain: String,
    /// Allow authentication without TLS on TCP (loopback, tests).
    pub allow_plaintext: bool,
    /// Largest stanza in bytes; advertised (XEP-0478) and enforced while
    /// reading.
    pub max_stanza_bytes: usize,
    /// Most bound resources per account on this node.
    pub max_sessions_per_user: usize,
    /// How long an unauthenticated stream may take to authenticate.
    pub auth_timeout: Duration,
    /// Most unauthenticated connections from one IP at a time.
    pub max_unauthenticated_per_ip: usize,
    /// How long a stream-management session waits to be resumed.
    pub resume_timeout: Duration,
    /// How long a BOSH session may go without a request.
    pub bosh_inactivity: Duration,
    /// Stanzas a session may send per second (and in a burst); faster
    /// senders are slowed down, not disconnected: the session reads its
    /// next stanza only when the budget allows (traffic shaping).
    pub stanzas_per_second: u32,
}

impl Default for XmppConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            allow_plaintext: false,
            max_stanza_bytes: 256 * 1024,
            max_sessions_per_user: 10,
            auth_timeout: Duration::from_secs(30),
            max_unauthenticated_per_ip: 20,
            resume_timeout: Duration::from_secs(300),
            bosh_inactivity: Duration::from_secs(60),
            stanzas_per_second: 100,
        }
    }
}

/// The XMPP service of one node: cheap to clone, shared by all listeners.
#[derive(Clone)]
pub struct Xmpp {
    pub(crate) inner: Arc<Shared>,
}

pub(crate) struct Shared {
    pub hub: Hub,
    pub config: XmppConfig,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Bound resources on this node, by full JID, for routing stanzas
    /// addressed to a full JID and for resource limits.
    pub resources: Mutex<HashMap<String, routing::Resource>>,
    /// Stream-management sessions waiting to be resumed, by resumption id.
    pub parked: Mutex<HashMap<String, session::Session>>,
    /// Resumable sessions still attached to a connection, by resumption
    /// id: a client that reconnects before the server noticed the old
    /// connection die asks that one to hand its session over.
    pub attached: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// The status text and capabilities of each user's last available
    /// presence sent over XMPP on this node (see `im::presence_extras`).
    pub presence_extras: Mutex<HashMap<natter_types::Username, Vec<minidom::Element>>>,
    /// Messages sent with XEP-0280 `<private/>` (see `carbons.rs`).
    pub private_sent: Mutex<carbons::PrivateSent>,
    /// BOSH sessions, by sid.
    pub bosh: Mutex<HashMap<String, bosh::Handle>>,
    /// Unauthenticated connections per IP.
    pub unauthenticated: Mutex<HashMap<IpAddr, usize>>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Xmpp {
    pub fn new(
        hub: Hub,
        config: XmppConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                hub,
                config,
                tls: tls.map(tokio_rustls::TlsAcceptor::from),
                resources: Mutex::default(),
                parked: Mutex::default(),
                attached: Mutex::default(),
                presence_extras: Mutex::default(),
                private_sent: Mutex::default(),
                bosh: Mutex::default(),
                unauthenticated: Mutex::default(),
                shutdown,
            }),
        }
    }

    pub fn config(&self) -> &XmppConfig {
        &self.inner.config
    }

    /// The HTTP routes of XMPP: WebSocket at `/xmpp-websocket` and BOSH
    /// at `/http-bind`, to merge into the node's HTTP application (which
    /// must be served with `ConnectInfo<SocketAddr>`).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/xmpp-websocket", axum::routing::get(websocket::upgrade))
            .route("/http-bind", axum::routing::post(bosh::request))
            .with_state(self.clone())
    }
}

/// Resolves once the node shuts down.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so callers' futures
    // stay `Send`.
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Counts one unauthenticated connection from an IP while it lives.
pub(crate) struct UnauthSlot {
    shared: Arc<Shared>,
    ip: Option<IpAddr>,
}

impl Shared {
    /// Takes a slot for an unauthenticated connection, or `None` past the
    /// per-IP cap.
    pub(crate) fn unauth_slot(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<UnauthSlot> {
        if let Some(ip) = ip {
            let mut map = self.unauthenticated.lock().expect("unauth map");
            let n = map.entry(ip).or_insert(0);
            if *n >= self.config.max_unauthenticated_per_ip {
                return None;
            }
            *n += 1;
        }
        Some(UnauthSlot {
            shared: self.clone(),
            ip,
        })
    }
}

impl Drop for UnauthSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self.shared.unauthenticated.lock().expect("unauth map");
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}
