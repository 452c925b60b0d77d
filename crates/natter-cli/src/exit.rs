//! Exit codes and the one error type of the command-line client, so that
//! scripts can tell "the server is down" from "you are logged out" from
//! "no such user" without parsing messages.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (a server error, a local file that cannot be written) |
//! | 2 | usage: bad arguments, no server given, an unusable server URL |
//! | 3 | network: the server cannot be reached, or is temporarily unavailable (502/503/504) |
//! | 4 | authentication: not logged in, wrong password, expired or revoked session |
//! | 5 | permission: e.g. not a member of the conversation, registration closed |
//! | 6 | not found: no such user, conversation, message or contact |
//! | 7 | invalid input: refused by validation (empty message, bad username, …) or a conflict (name taken) |
//! | 8 | rate limited: try again later (the message says when) |

use std::process::ExitCode;

use natter_client::Error;

pub const OK: u8 = 0;
pub const GENERIC: u8 = 1;
pub const USAGE: u8 = 2;
pub const NETWORK: u8 = 3;
pub const AUTH: u8 = 4;
pub const PERMISSION: u8 = 5;
pub const NOT_FOUND: u8 = 6;
pub const INVALID: u8 = 7;
pub const RATE_LIMITED: u8 = 8;

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// What to do about it, printed after the message.
    pub hint: Option<String>,
}

pub type CliResult<T = ()> = Result<T, Failure>;

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(INVALID, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints the failure on standard error and returns the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("natter: error: {}", self.message);
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
        ExitCode::from(self.code)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Network { .. } => NETWORK,
            Error::Server {
                status: 502..=504, ..
            } => NETWORK,
            Error::Server { .. } | Error::Protocol { .. } => GENERIC,
            Error::Unauthenticated { .. } => AUTH,
            Error::Forbidden { .. } => PERMISSION,
            Error::NotFound { .. } => NOT_FOUND,
            Error::Invalid { .. } | Error::Conflict { .. } => INVALID,
            Error::RateLimited { .. } => RATE_LIMITED,
            Error::Config { .. } => USAGE,
            _ => GENERIC,
        };
        let hint = match &e {
            Error::Unauthenticated { code, .. } if code == "invalid_credentials" => None,
            Error::Unauthenticated { .. } => Some(
                "your session has expired or was revoked: log in again with `natter login USERNAME`"
                    .to_owned(),
            ),
            Error::Network { .. } => {
                Some("is the server running, and is --server / NATTER_SERVER right?".to_owned())
            }
            _ => None,
        };
        Failure {
            code,
            message: e.to_string(),
            hint,
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(GENERIC, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_documented_codes() {
        let api = |status| Failure::from(Error::from_api(status, None, None)).code;
        assert_eq!(api(401), AUTH);
        assert_eq!(api(403), PERMISSION);
        assert_eq!(api(404), NOT_FOUND);
        assert_eq!(api(400), INVALID);
        assert_eq!(api(409), INVALID);
        assert_eq!(api(429), RATE_LIMITED);
        assert_eq!(api(503), NETWORK);
        assert_eq!(api(500), GENERIC);
    }
}
