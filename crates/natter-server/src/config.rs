//! Configuration, layered: built-in defaults, then a TOML file
//! (`--config`), then `NATTER_*` environment variables, then flags. Each
//! layer overrides the ones before it.
//!
//! Environment variables name keys in upper case; nested keys are joined
//! with `__`, e.g. `NATTER_LIMITS__MAX_BODY_BYTES=131072`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use natter_core::{CoreConfig, RegistrationMode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The XMPP domain of this server; JIDs are `user@domain`.
    pub domain: String,
    /// Where the server keeps its files (the SQLite database by default).
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; by default SQLite in `data_dir`.
    pub database: Option<String>,
    /// The cluster bus, `nats://HOST:PORT[,…][?prefix=NAME]`; unset, the
    /// node works alone.
    pub bus: Option<String>,
    /// HTTP listen address; port 0 picks a free port.
    pub http: SocketAddr,
    /// `open` (anyone may sign up) or `closed`.
    pub registration: Registration,
    pub limits: Limits,
    pub accounts: Accounts,
    pub stream: StreamSettings,
    pub xmpp: XmppSettings,
    /// Take client IPs from `X-Forwarded-For`; only behind a trusted proxy.
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message body in bytes of UTF-8.
    pub max_body_bytes: usize,
    /// Failed log-ins allowed per client IP per minute.
    pub login_failures_per_minute: u32,
    /// Most members of a group.
    pub max_group_members: usize,
}

/// The real-time stream (WebSocket and long-poll).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Browser origins allowed to connect besides the server's own, e.g.
    /// `["https://chat.example.org"]`; `["*"]` allows any.
    pub allowed_origins: Vec<String>,
    /// Commands a connection may send per second.
    pub commands_per_second: u32,
    /// Items queued for a session before it counts as too slow.
    pub queue: usize,
    /// Seconds between heartbeats; silent connections close after three.
    pub heartbeat_secs: u64,
    /// Seconds a new connection has to send its `auth` frame.
    pub auth_timeout_secs: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            commands_per_second: 50,
            queue: CoreConfig::default().stream_queue,
            heartbeat_secs: 30,
            auth_timeout_secs: 10,
        }
    }
}

/// The XMPP transports. WebSocket (`/xmpp-websocket`) and BOSH
/// (`/http-bind`) ride the HTTP listener; TCP has listeners of its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct XmppSettings {
    /// Serve XMPP at all (all three transports).
    pub enabled: bool,
    /// c2s listen address (STARTTLS); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Direct-TLS c2s listen address (XEP-0368).
    pub tls_listen: SocketAddr,
    /// Allow authentication without TLS on TCP (loopback, tests).
    pub allow_plaintext: bool,
    /// PEM certificate chain and key; without them a self-signed
    /// certificate for the domain is generated into `data_dir`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Largest stanza in bytes (advertised and enforced while reading).
    pub max_stanza_bytes: usize,
    /// Most bound resources per account on one node.
    pub max_sessions_per_user: usize,
    /// Seconds an unauthenticated stream has to authenticate.
    pub auth_timeout_secs: u64,
    /// Most unauthenticated connections from one IP at a time.
    pub max_unauthenticated_per_ip: usize,
    /// Seconds a stream-management session waits to be resumed.
    pub resume_timeout_secs: u64,
    /// Stanzas one session may send per second (also the burst); faster
    /// clients are slowed down, not disconnected.
    pub stanzas_per_second: u32,
}

impl Default for XmppSettings {
    fn default() -> Self {
        let x = natter_xmpp::XmppConfig::default();
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 5222)),
            tls_listen: SocketAddr::from(([127, 0, 0, 1], 5223)),
            allow_plaintext: x.allow_plaintext,
            cert_file: None,
            key_file: None,
            max_stanza_bytes: x.max_stanza_bytes,
            max_sessions_per_user: x.max_sessions_per_user,
            auth_timeout_secs: x.auth_timeout.as_secs(),
            max_unauthenticated_per_ip: x.max_unauthenticated_per_ip,
            resume_timeout_secs: x.resume_timeout.as_secs(),
            stanzas_per_second: x.stanzas_per_second,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Accounts {
    /// Lifetime of a log-in session, in seconds.
    pub session_ttl_secs: u64,
    /// PBKDF2 iterations for stored SCRAM keys (4096 is the RFC minimum).
    pub scram_iterations: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let core = CoreConfig::default();
        Self {
            max_body_bytes: core.max_body_bytes,
            login_failures_per_minute: core.login_failures_per_minute,
            max_group_members: core.max_group_members,
        }
    }
}

impl Default for Accounts {
    fn default() -> Self {
        let core = CoreConfig::default();
        Self {
            session_ttl_secs: core.session_ttl.as_secs(),
            scram_iterations: core.scram_iterations,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            data_dir: PathBuf::from("./natter-data"),
            database: None,
            bus: None,
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            registration: Registration::Open,
            limits: Limits::default(),
            accounts: Accounts::default(),
            stream: StreamSettings::default(),
            xmpp: XmppSettings::default(),
            trust_forwarded_for: false,
        }
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "domain",
    "data_dir",
    "database",
    "bus",
    "http",
    "registration",
    "limits",
    "accounts",
    "stream",
    "xmpp",
    "trust_forwarded_for",
];

/// Values given as command-line flags; `None` leaves the lower layers be.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    #[serde(skip_serializing_if = "XmppOverrides::is_empty")]
    pub xmpp: XmppOverrides,
}

/// XMPP flags (`--xmpp`, `--xmpps`).
#[derive(Debug, Default, Serialize)]
pub struct XmppOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
}

impl XmppOverrides {
    fn is_empty(&self) -> bool {
        self.listen.is_none() && self.tls_listen.is_none()
    }
}

impl Config {
    /// Loads the layers in order. A named config file must exist.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            anyhow::ensure!(
                file.exists(),
                "config file {} does not exist",
                file.display()
            );
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            .merge(
                // Only keys of this file: other NATTER_ variables (the
                // client's NATTER_SERVER, test settings) are not ours.
                Env::prefixed("NATTER_")
                    .filter(|k| {
                        let top = k.as_str().split("__").next().unwrap_or_default();
                        TOP_LEVEL_KEYS
                            .iter()
                            .any(|key| top.eq_ignore_ascii_case(key))
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.domain.trim().is_empty(), "domain must not be empty");
        anyhow::ensure!(
            (1..=16 * 1024 * 1024).contains(&self.limits.max_body_bytes),
            "limits.max_body_bytes must be between 1 and 16 MiB"
        );
        anyhow::ensure!(
            self.accounts.scram_iterations >= 4096,
            "accounts.scram_iterations must be at least 4096 (RFC 5802)"
        );
        anyhow::ensure!(
            self.accounts.session_ttl_secs > 0,
            "accounts.session_ttl_secs must be positive"
        );
        // A zero period would make the heartbeat timer panic.
        anyhow::ensure!(
            self.stream.heartbeat_secs > 0,
            "stream.heartbeat_secs must be positive"
        );
        if let Some(bus) = &self.bus {
            anyhow::ensure!(
                bus.starts_with("nats://"),
                "bus must be a nats:// URL, got {bus:?}"
            );
            anyhow::ensure!(
                self.database_url().starts_with("postgres"),
                "a cluster (bus) needs a PostgreSQL database shared by its nodes"
            );
        }
        anyhow::ensure!(
            self.stream.auth_timeout_secs > 0,
            "stream.auth_timeout_secs must be positive"
        );
        anyhow::ensure!(
            (4096..=16 * 1024 * 1024).contains(&self.xmpp.max_stanza_bytes),
            "xmpp.max_stanza_bytes must be between 4 KiB and 16 MiB"
        );
        anyhow::ensure!(
            self.xmpp.max_stanza_bytes > self.limits.max_body_bytes,
            "xmpp.max_stanza_bytes must exceed limits.max_body_bytes, or no full-size message fits in a stanza"
        );
        anyhow::ensure!(
            self.xmpp.cert_file.is_some() == self.xmpp.key_file.is_some(),
            "xmpp.cert_file and xmpp.key_file go together"
        );
        anyhow::ensure!(
            self.xmpp.auth_timeout_secs > 0 && self.xmpp.max_sessions_per_user > 0,
            "xmpp.auth_timeout_secs and xmpp.max_sessions_per_user must be positive"
        );
        Ok(())
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("natter.db").display()))
    }

    pub fn xmpp(&self) -> natter_xmpp::XmppConfig {
        natter_xmpp::XmppConfig {
            domain: self.domain.trim().to_ascii_lowercase(),
            allow_plaintext: self.xmpp.allow_plaintext,
            max_stanza_bytes: self.xmpp.max_stanza_bytes,
            max_sessions_per_user: self.xmpp.max_sessions_per_user,
            auth_timeout: Duration::from_secs(self.xmpp.auth_timeout_secs),
            max_unauthenticated_per_ip: self.xmpp.max_unauthenticated_per_ip,
            resume_timeout: Duration::from_secs(self.xmpp.resume_timeout_secs),
            stanzas_per_second: self.xmpp.stanzas_per_second.max(1),
            ..natter_xmpp::XmppConfig::default()
        }
    }

    /// Where the XMPP certificate comes from.
    pub fn xmpp_cert(&self) -> natter_xmpp::CertSource {
        match (&self.xmpp.cert_file, &self.xmpp.key_file) {
            (Some(cert), Some(key)) => natter_xmpp::CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => natter_xmpp::CertSource::SelfSigned {
                domain: self.domain.trim().to_ascii_lowercase(),
                dir: self.data_dir.clone(),
            },
        }
    }

    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            domain: self.domain.trim().to_ascii_lowercase(),
            registration: match self.registration {
                Registration::Open => RegistrationMode::Open,
                Registration::Closed => RegistrationMode::Closed,
            },
            session_ttl: Duration::from_secs(self.accounts.session_ttl_secs),
            max_body_bytes: self.limits.max_body_bytes,
            scram_iterations: self.accounts.scram_iterations,
            login_failures_per_minute: self.limits.login_failures_per_minute,
            max_group_members: self.limits.max_group_members,
            stream_queue: self.stream.queue.max(16),
        }
    }
}

#[cfg(test)]
// figment's `Jail` closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "natter.toml",
                r#"
                domain = "file.example"
                http = "127.0.0.1:9000"
                registration = "closed"
                [limits]
                max_body_bytes = 1000
                "#,
            )?;
            jail.set_env("NATTER_HTTP", "127.0.0.1:9001");
            jail.set_env("NATTER_LIMITS__LOGIN_FAILURES_PER_MINUTE", "3");
            jail.set_env("NATTER_SERVER", "http://not-a-server-setting");
            let c = Config::load(
                Some(Path::new("natter.toml")),
                Overrides {
                    domain: Some("flag.example".into()),
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(c.domain, "flag.example", "flags beat the file");
            assert_eq!(c.http.port(), 9001, "environment beats the file");
            assert_eq!(c.registration, Registration::Closed);
            assert_eq!(c.limits.max_body_bytes, 1000);
            assert_eq!(c.limits.login_failures_per_minute, 3);
            assert_eq!(
                c.limits.max_group_members,
                Limits::default().max_group_members
            );
            Ok(())
        });
    }

    #[test]
    fn defaults_need_no_file() {
        Jail::expect_with(|_| {
            let c = Config::load(None, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c, Config::default());
            assert_eq!(c.http.to_string(), "127.0.0.1:8080");
            assert!(c.database_url().ends_with("natter-data/natter.db"));
            Ok(())
        });
    }

    #[test]
    fn the_example_file_states_the_defaults() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../natter.example.toml");
        Jail::expect_with(|_| {
            let c = Config::load(Some(Path::new(example)), Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c, Config::default());
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "unknown_key = 1")?;
            assert!(Config::load(Some(Path::new("bad.toml")), Overrides::default()).is_err());
            jail.create_file("bad2.toml", "[accounts]\nscram_iterations = 10")?;
            jail.create_file("bad3.toml", "[stream]\nheartbeat_secs = 0")?;
            assert!(Config::load(Some(Path::new("bad3.toml")), Overrides::default()).is_err());
            assert!(Config::load(Some(Path::new("bad2.toml")), Overrides::default()).is_err());
            assert!(Config::load(Some(Path::new("missing.toml")), Overrides::default()).is_err());
            Ok(())
        });
    }
}
