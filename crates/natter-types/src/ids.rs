//! Identifiers. Users have a compact numeric id used only inside the server
//! (the username is their public identity); conversations, messages and
//! sessions have UUIDs because they are shown to clients and must not leak
//! counts or be guessable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Internal numeric id of an account. Never sent over the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new id. Version 7 UUIDs sort by creation time, which keeps
            /// B-tree inserts local in both databases.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Public id of a conversation (direct or group).
    ConversationId
);
uuid_id!(
    /// Globally unique id of a message; stable across edits and deletion.
    MessageId
);
uuid_id!(
    /// Public id of a log-in session, used to list and revoke sessions. It is
    /// not the bearer token: the token is only ever stored hashed.
    SessionId
);
