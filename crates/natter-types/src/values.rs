//! Validated input values. Each type has one constructor that checks the
//! rules, so holding one is proof that it is valid.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why an input was refused, naming the field so that every transport can
/// tell the client exactly what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
    /// Set when the value was refused only for its size, which HTTP reports
    /// as 413 rather than 400.
    pub too_large: bool,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
            too_large: false,
        }
    }

    fn too_large(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            too_large: true,
            ..Self::new(field, message)
        }
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

macro_rules! string_value {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// An account name, which is also the localpart of the user's JID
/// (`alice` in `alice@example.org`).
///
/// Rules: 1 to 32 characters from `a`–`z`, `0`–`9`, `.`, `_` and `-`,
/// starting with a letter or a digit. Input is lowercased first, so `Alice`
/// and `alice` name the same account. These characters are a strict subset
/// of what RFC 7622 allows in a localpart, so every username is a valid JID
/// localpart without escaping, and case folding is plain ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);
string_value!(Username);

impl Username {
    pub const MAX_LEN: usize = 32;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "username";
        let name = input.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(ValidationError::new(FIELD, "must not be empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                FIELD,
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(ValidationError::new(
                FIELD,
                "may contain only letters a-z, digits, '.', '_' and '-'",
            ));
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(ValidationError::new(
                FIELD,
                "must start with a letter or a digit",
            ));
        }
        Ok(Self(name))
    }
}

/// A password as typed by the user. It never leaves the core: the stores
/// only see derived SCRAM keys. `Debug` does not print it.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_BYTES: usize = 1024;

    /// Checks a new password. Log-in does not use this: a password that was
    /// valid under older rules must still be accepted there.
    pub fn parse_new(field: &'static str, input: &str) -> Result<Self, ValidationError> {
        if input.chars().count() < Self::MIN_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        Self::parse_any(field, input)
    }

    /// Accepts any password within the size cap, for log-in.
    pub fn parse_any(field: &'static str, input: &str) -> Result<Self, ValidationError> {
        if input.len() > Self::MAX_BYTES {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} bytes", Self::MAX_BYTES),
            ));
        }
        if input.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A human-readable name shown instead of the username: 1 to 64
/// characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);
string_value!(DisplayName);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        bounded_text("display_name", input, Self::MAX_CHARS).map(Self)
    }
}

/// The title of a group conversation: 1 to 128 characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTitle(String);
string_value!(GroupTitle);

impl GroupTitle {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        bounded_text("title", input, Self::MAX_CHARS).map(Self)
    }
}

/// The name a user gives one of their contacts (the roster item name in
/// XMPP): 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactName(String);
string_value!(ContactName);

impl ContactName {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        bounded_text("name", input, 64).map(Self)
    }
}

/// The groups a contact is filed under (roster groups in XMPP): at most 32
/// distinct names of 1 to 64 characters each, kept in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactGroups(Vec<String>);

impl ContactGroups {
    pub const MAX_GROUPS: usize = 32;

    pub fn parse<I, S>(groups: I) -> Result<Self, ValidationError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<String> = Vec::new();
        for g in groups {
            let g = bounded_text("groups", g.as_ref(), 64)?;
            if !out.contains(&g) {
                out.push(g);
            }
        }
        if out.len() > Self::MAX_GROUPS {
            return Err(ValidationError::new(
                "groups",
                format!("at most {} groups", Self::MAX_GROUPS),
            ));
        }
        Ok(Self(out))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

fn bounded_text(
    field: &'static str,
    input: &str,
    max_chars: usize,
) -> Result<String, ValidationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if s.chars().count() > max_chars {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if has_control(s) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

/// A message body: UTF-8 text that is not blank and fits the configured
/// size limit (in bytes of UTF-8; 64 KiB by default). The text is kept as
/// sent, including surrounding whitespace and newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(String);
string_value!(Body);

impl Body {
    /// The default limit, in bytes.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

    pub fn parse(input: String, max_bytes: usize) -> Result<Self, ValidationError> {
        if input.len() > max_bytes {
            return Err(ValidationError::too_large(
                "body",
                format!("must be at most {max_bytes} bytes of UTF-8"),
            ));
        }
        if input.trim().is_empty() {
            return Err(ValidationError::new("body", "must not be empty"));
        }
        if input.contains('\0') {
            return Err(ValidationError::new(
                "body",
                "must not contain NUL characters",
            ));
        }
        Ok(Self(input))
    }

    /// For stores reading back what was validated on the way in.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
}

/// The sender's own id for a message, chosen before the first attempt and
/// reused on every retry, so that a retry never stores the message twice.
/// 1 to 128 printable ASCII characters (a UUID fits well).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);
string_value!(ClientId);

impl ClientId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        if input.is_empty() {
            return Err(ValidationError::new("client_id", "must not be empty"));
        }
        if input.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "client_id",
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if !input.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "client_id",
                "may contain only printable ASCII without spaces",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        let ok = |s: &str, want: &str| assert_eq!(Username::parse(s).unwrap().as_str(), want);
        ok("alice", "alice");
        ok("Alice", "alice");
        ok("  bob.smith_2-x ", "bob.smith_2-x");
        ok("7of9", "7of9");
        let bad = |s: &str| assert!(Username::parse(s).is_err(), "{s:?} should be refused");
        bad("");
        bad("   ");
        bad("_alice");
        bad(".alice");
        bad("al ice");
        bad("alice@example.org");
        bad("al/ice");
        bad("älice");
        bad(&"a".repeat(33));
        ok(&"a".repeat(32), &"a".repeat(32));
    }

    #[test]
    fn passwords() {
        assert!(Password::parse_new("password", "short").is_err());
        assert!(Password::parse_new("password", "long enough").is_ok());
        assert!(Password::parse_new("password", &"x".repeat(1025)).is_err());
        assert!(Password::parse_any("password", "short").is_ok());
        assert!(Password::parse_any("password", "").is_err());
        assert_eq!(
            format!("{:?}", Password::parse_any("p", "secret").unwrap()),
            "Password(..)"
        );
    }

    #[test]
    fn bodies() {
        assert!(Body::parse("hi".into(), 10).is_ok());
        assert!(Body::parse("  \n ".into(), 10).is_err());
        let err = Body::parse("x".repeat(11), 10).unwrap_err();
        assert!(err.too_large);
        assert!(!Body::parse(String::new(), 10).unwrap_err().too_large);
        // the limit counts UTF-8 bytes, not characters
        assert!(Body::parse("é".repeat(6), 10).is_err());
        assert_eq!(
            Body::parse(" keep spaces ".into(), 100).unwrap().as_str(),
            " keep spaces "
        );
    }

    #[test]
    fn texts_and_groups() {
        assert_eq!(
            DisplayName::parse("  Alice A. ").unwrap().as_str(),
            "Alice A."
        );
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(GroupTitle::parse(&"t".repeat(129)).is_err());
        let g = ContactGroups::parse(["Friends", "Work", "Friends"]).unwrap();
        assert_eq!(g.as_slice(), ["Friends", "Work"]);
        assert!(ContactGroups::parse((0..33).map(|i| i.to_string())).is_err());
        assert!(ClientId::parse("has space").is_err());
        assert!(ClientId::parse("0190a0b4-7d4c-7000-8000-000000000000").is_ok());
    }
}
