//! The hub: every command of every transport ends here, as a typed method
//! on [`Hub`]. It enforces the rules (who may do what, validation that
//! needs state, throttling) and calls the [`Store`](natter_store::Store).
//!
//! The hub knows no wire format: no JSON, no XML, no HTTP, no sockets.
//! Transports parse their input into domain values, call one method, and
//! translate the result or the [`CoreError`] back out. Because every
//! transport goes through the same methods, a rule written here holds for
//! REST, the event stream and XMPP alike.

mod accounts;
mod blocking;
mod config;
mod conversations;
mod error;
mod messages;
pub mod queue;
pub mod realtime;
pub mod scram;
mod throttle;

use std::sync::Arc;

use chrono::{DurationRound, TimeDelta, Utc};
use natter_bus::Bus;
use natter_store::Store;
use natter_types::{SessionId, Timestamp, User};

pub use accounts::{LoginContext, LoginOutcome};
pub use blocking::BlockState;
pub use config::{CoreConfig, RegistrationMode};
pub use conversations::{ConversationDetails, CreatedConversation};
pub use error::CoreError;
pub use messages::{HistoryPage, SendOutcome};
pub use throttle::LoginThrottle;

pub type CoreResult<T> = Result<T, CoreError>;

/// An authenticated caller: the account and the session it acts through.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub session: SessionId,
}

/// A cheap, clonable handle to the hub. Clones share the same state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: CoreConfig,
    throttle: LoginThrottle,
    realtime: realtime::Realtime,
}

impl Hub {
    /// A hub of a single node.
    pub fn new(store: Arc<dyn Store>, config: CoreConfig) -> Self {
        Self::build(store, config, None)
    }

    /// A hub of one node of a cluster: the other nodes share the store and
    /// hear each other on `bus`.
    pub fn with_bus(store: Arc<dyn Store>, config: CoreConfig, bus: Arc<dyn Bus>) -> Self {
        Self::build(store, config, Some(bus))
    }

    fn build(store: Arc<dyn Store>, config: CoreConfig, bus: Option<Arc<dyn Bus>>) -> Self {
        let throttle = LoginThrottle::new(config.login_failures_per_minute);
        let realtime = realtime::Realtime::new(config.stream_queue, bus);
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                throttle,
                realtime,
            }),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// Whether the hub can serve: the store answers.
    pub async fn ready(&self) -> CoreResult<()> {
        self.store().ping().await.map_err(CoreError::from)
    }

    /// Deletes expired sessions; the server calls this periodically.
    pub async fn purge_expired_sessions(&self) -> CoreResult<u64> {
        Ok(self.store().purge_expired_sessions(now()).await?)
    }
}

/// The current time at the precision the stores keep (microseconds), so a
/// value read back equals the value written.
pub fn now() -> Timestamp {
    Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("microseconds always truncate")
}
