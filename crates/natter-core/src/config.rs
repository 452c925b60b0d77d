//! The part of the server configuration that the hub enforces.

use std::time::Duration;

use natter_types::Body;

/// Who may create accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationMode {
    /// Anyone may sign up.
    #[default]
    Open,
    /// Sign-up is refused; accounts are made by an administrator.
    Closed,
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The XMPP domain; usernames are the localparts of JIDs in it.
    pub domain: String,
    pub registration: RegistrationMode,
    /// How long a log-in session lasts.
    pub session_ttl: Duration,
    /// Largest message body, in bytes of UTF-8.
    pub max_body_bytes: usize,
    /// PBKDF2 iterations for new SCRAM credentials.
    pub scram_iterations: u32,
    /// Failed log-ins allowed per client IP per minute (also the burst).
    pub login_failures_per_minute: u32,
    /// Most members a group may have.
    pub max_group_members: usize,
    /// Items a real-time session may have queued before it counts as too
    /// slow and is disconnected (to resume from its cursor).
    pub stream_queue: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            registration: RegistrationMode::Open,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            max_body_bytes: Body::DEFAULT_MAX_BYTES,
            scram_iterations: 10_000,
            login_failures_per_minute: 10,
            max_group_members: 10_000,
            stream_queue: 1024,
        }
    }
}
