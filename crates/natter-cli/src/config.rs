//! The client's per-user configuration file: which server to use by
//! default and the session token for each server logged in to, so that
//! `natter login` once is enough.
//!
//! It lives in `$NATTER_CONFIG_DIR/client.toml` (tests and several
//! identities use this), else `$XDG_CONFIG_HOME/natter/client.toml`, else
//! `~/.config/natter/client.toml`. The tokens are credentials: the file is
//! written with mode 0600 (its directory 0700), through a temporary file
//! and a rename, so that it is never readable by others nor half-written.
//!
//! ```toml
//! current = "http://127.0.0.1:8080"
//!
//! [sessions."http://127.0.0.1:8080"]
//! username = "alice"
//! token = "…"
//! expires_at = "2026-12-29T07:00:00Z"
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::exit::{CliResult, Failure, GENERIC};

const FILE: &str = "client.toml";

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// The server used when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// A session per server URL.
    #[serde(default)]
    pub sessions: BTreeMap<String, StoredSession>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    pub username: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The directory of the configuration file.
pub fn dir() -> CliResult<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = from_env("NATTER_CONFIG_DIR") {
        return Ok(d);
    }
    if let Some(d) = from_env("XDG_CONFIG_HOME") {
        return Ok(d.join("natter"));
    }
    if let Some(home) = from_env("HOME") {
        return Ok(home.join(".config").join("natter"));
    }
    Err(Failure::new(
        GENERIC,
        "cannot tell where to keep the client configuration: set NATTER_CONFIG_DIR or HOME",
    ))
}

pub fn path() -> CliResult<PathBuf> {
    Ok(dir()?.join(FILE))
}

impl ClientConfig {
    /// Reads the file; a missing file is an empty configuration.
    pub fn load() -> CliResult<Self> {
        Self::load_from(&path()?)
    }

    pub fn load_from(path: &Path) -> CliResult<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                Failure::new(
                    GENERIC,
                    format!("the configuration file {} is damaged: {e}", path.display()),
                )
                .with_hint("fix or delete it, then log in again")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Failure::new(
                GENERIC,
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    pub fn save(&self) -> CliResult<()> {
        self.save_to(&path()?)
    }

    /// Writes the file readable by its owner only, atomically.
    pub fn save_to(&self, path: &Path) -> CliResult<()> {
        let fail = |what: &str, e: std::io::Error| {
            Failure::new(GENERIC, format!("cannot {what} {}: {e}", path.display()))
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| fail("create the directory of", e))?;
        let text = toml::to_string_pretty(self).expect("the configuration serialises");
        let tmp = dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write = || -> std::io::Result<()> {
            let mut f = options.open(&tmp)?;
            // in case the file existed with wider permissions
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail("write", e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(FILE);
        assert_eq!(
            ClientConfig::load_from(&path).unwrap(),
            ClientConfig::default()
        );
        let mut c = ClientConfig {
            current: Some("http://127.0.0.1:8080".into()),
            ..Default::default()
        };
        c.sessions.insert(
            "http://127.0.0.1:8080".into(),
            StoredSession {
                username: "alice".into(),
                token: "secret".into(),
                expires_at: None,
            },
        );
        c.save_to(&path).unwrap();
        assert_eq!(ClientConfig::load_from(&path).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not [toml").unwrap();
        assert!(ClientConfig::load_from(&path).is_err());
    }
}
