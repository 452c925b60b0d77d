//! Records the stores return and the core hands to transports.

use std::fmt;
use std::str::FromStr;

use crate::{ConversationId, MessageId, SessionId, Timestamp, UserId, Username};

/// An account as others may see it, plus its internal id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub display_name: Option<String>,
    pub created_at: Timestamp,
}

impl User {
    pub fn to_ref(&self) -> UserRef {
        UserRef {
            username: self.username.clone(),
            display_name: self.display_name.clone(),
        }
    }
}

/// How a user appears inside other records (members, senders, peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub username: Username,
    pub display_name: Option<String>,
}

/// A log-in session. The bearer token itself is not here: only its hash is
/// stored, and the token is shown once, at log-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub user_agent: Option<String>,
}

/// One entry of a user's contact list (the XMPP roster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub user: UserRef,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub added_at: Timestamp,
}

/// A user on someone's blocked list (XEP-0191's blocklist): no direct
/// messages, presence or typing pass between the two until unblocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedUser {
    pub user: UserRef,
    pub blocked_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// Exactly two members, exactly one conversation per pair.
    Direct,
    /// Any number of members with roles.
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }
}

impl FromStr for ConversationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(Self::Direct),
            "group" => Ok(Self::Group),
            other => Err(format!("unknown conversation kind {other:?}")),
        }
    }
}

/// A member's role in a group. Ordered by power: `Member < Admin < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member" => Ok(Self::Member),
            "admin" => Ok(Self::Admin),
            "owner" => Ok(Self::Owner),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    /// Groups only.
    pub title: Option<String>,
    pub created_at: Timestamp,
    /// Sequence number of the newest message; 0 when there is none.
    pub last_seq: i64,
    /// When the last message was sent, or the conversation created.
    pub last_activity_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: UserRef,
    pub role: Role,
    pub joined_at: Timestamp,
    /// Everything up to and including this sequence number has been read.
    pub read_seq: i64,
    /// Everything up to and including this sequence number has reached at
    /// least one of the member's devices.
    pub delivered_seq: i64,
}

/// A stored message. A deleted message keeps its place in the sequence as a
/// tombstone: `body` is `None` and `deleted_at` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub sender: Username,
    pub client_id: String,
    pub body: Option<String>,
    pub sent_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
}

/// A row of a user's conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub conversation: Conversation,
    /// The viewer's role.
    pub role: Role,
    /// For direct conversations, the other member.
    pub peer: Option<UserRef>,
    pub member_count: i64,
    pub last_message: Option<Message>,
    /// Messages after the viewer's read marker.
    pub unread: i64,
    pub read_seq: i64,
}

/// Salted SCRAM keys for one hash function (RFC 5802): enough to verify a
/// SCRAM exchange or a plain password, never enough to recover the
/// password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// How an account's password is stored: one salt and iteration count, and
/// the SCRAM keys for SHA-1 and SHA-256 so that XMPP clients can use either
/// mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}
