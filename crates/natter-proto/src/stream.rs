//! Frames of the real-time protocol (version 1), shared by the WebSocket
//! stream and long-polling. See `docs/protocol.md` for the prose and an
//! example of every frame.
//!
//! Client frames carry a `type` and an optional `ref`; the server answers
//! each command with a `reply` carrying the same `ref`. Server-initiated
//! frames are `hello`, `event` and `error`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ConversationKind, ErrorBody, Message, Role};

/// The protocol version spoken by this server.
pub const PROTOCOL_VERSION: u32 = 1;
/// The WebSocket subprotocol naming it.
pub const SUBPROTOCOL: &str = "natter.v1";

/// WebSocket close codes used by the stream.
pub mod close {
    /// The server is shutting down; reconnect (to another node) and resume.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame was larger than the limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server could not continue (storage unavailable); resume later.
    pub const UNAVAILABLE: u16 = 1011;
    /// The first frame was not a valid `auth`, or it came too late.
    pub const UNAUTHENTICATED: u16 = 4001;
    /// The session was revoked (log-out, password change, revocation).
    pub const SESSION_REVOKED: u16 = 4003;
    /// The client did not read fast enough; reconnect and resume from the
    /// last cursor: nothing is lost.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// Nothing was received for too long (pings count).
    pub const IDLE_TIMEOUT: u16 = 4009;
}

/// A command from the client. Over WebSocket the first frame must be
/// `auth`; over long-poll (`POST /api/v1/events`) `auth` is not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    Auth(AuthCommand),
    Send(SendCommand),
    Read(ReadCommand),
    Typing(TypingCommand),
    Presence(PresenceCommand),
    Ping(PingCommand),
}

/// Authenticate the WebSocket and choose where to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthCommand {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub token: String,
    /// Resume after this cursor; omitted: start from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Send a message; the reply comes after the durable commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendCommand {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub conversation_id: Uuid,
    pub client_id: String,
    pub body: String,
}

/// Move the read marker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadCommand {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub conversation_id: Uuid,
    pub seq: i64,
}

/// Start (`active: true`) or stop typing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypingCommand {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub conversation_id: Uuid,
    pub active: bool,
}

/// Set this connection's presence: `online` or `away`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceCommand {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub status: PresenceStatus,
}

/// Answered with an empty reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PingCommand {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl Command {
    /// The command names, as in `type`.
    pub const NAMES: [&'static str; 6] = ["auth", "send", "read", "typing", "presence", "ping"];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth",
            Self::Send(_) => "send",
            Self::Read(_) => "read",
            Self::Typing(_) => "typing",
            Self::Presence(_) => "presence",
            Self::Ping(_) => "ping",
        }
    }

    pub fn reference(&self) -> Option<&str> {
        match self {
            Self::Auth(c) => c.reference.as_deref(),
            Self::Send(c) => c.reference.as_deref(),
            Self::Read(c) => c.reference.as_deref(),
            Self::Typing(c) => c.reference.as_deref(),
            Self::Presence(c) => c.reference.as_deref(),
            Self::Ping(c) => c.reference.as_deref(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The answer to `auth`: the stream is open.
    Hello(Hello),
    /// The answer to a command, with the command's `ref`.
    Reply(Reply),
    /// Something happened.
    Event(EventFrame),
    /// A frame could not be understood and had no `ref` to reply to.
    Error { error: ErrorBody },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hello {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub protocol: u32,
    pub user: crate::User,
    pub session_id: Uuid,
    /// The position the stream starts from.
    pub cursor: String,
    /// The server pings this often; it closes connections silent for
    /// three times as long.
    pub heartbeat_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reply {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// An event. Durable events have a `cursor`; ephemeral ones (typing,
/// presence, session.revoked) do not and are never replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventFrame {
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[schema(value_type = Object)]
    pub data: EventData,
}

/// The data of each event, by event name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventData {
    /// `message.created`, `message.edited`, `message.deleted`.
    Message {
        conversation_id: Uuid,
        message: Message,
    },
    /// `receipt.read`, `receipt.delivered`: the member's marker now stands
    /// at `seq`.
    Receipt {
        conversation_id: Uuid,
        user: String,
        seq: i64,
    },
    /// `conversation.created`.
    Conversation {
        conversation_id: Uuid,
        kind: ConversationKind,
        title: Option<String>,
        created_at: DateTime<Utc>,
    },
    /// `member.added`, `member.role_changed`.
    Member {
        conversation_id: Uuid,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        role: Role,
    },
    /// `conversation.renamed`.
    Renamed {
        conversation_id: Uuid,
        title: String,
    },
    /// `typing`: shown until `active: false` or `expires_in_ms` passes.
    Typing {
        conversation_id: Uuid,
        user: String,
        active: bool,
        expires_in_ms: u64,
    },
    /// `member.removed`.
    Removed { conversation_id: Uuid, user: String },
    /// `presence`.
    Presence {
        user: String,
        status: PresenceStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen_at: Option<DateTime<Utc>>,
    },
    /// `block.added`, `block.removed`: the caller's blocked list changed
    /// on one of their devices.
    Block { user: String },
    /// `session.revoked`, `block.cleared`.
    Empty {},
}

/// `GET /api/v1/events`: the answer to a long-poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Poll {
    /// Event frames (`"type": "event"`), exactly as over WebSocket, in
    /// order.
    pub events: Vec<ServerFrame>,
    /// Pass as `cursor` to the next poll.
    pub cursor: String,
    /// More events are waiting: poll again at once.
    pub more: bool,
}

/// `GET /api/v1/presence`: the presence of everyone whose presence the
/// caller sees, as the `presence` events a stream sends after `hello`.
/// Lets a client learn the presence of someone it just started talking
/// to, which no stream event would tell it until that presence changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PresenceSnapshot {
    pub events: Vec<ServerFrame>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_ref() {
        let c: Command = serde_json::from_str(
            r#"{"type":"send","ref":"7","conversation_id":"0190a0b4-7d4c-7000-8000-000000000000","client_id":"c","body":"hi"}"#,
        )
        .unwrap();
        assert_eq!(c.name(), "send");
        assert_eq!(c.reference(), Some("7"));
        let p: Command = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(p.reference(), None);
        assert!(serde_json::from_str::<Command>(r#"{"type":"ping","extra":1}"#).is_err());
    }
}
