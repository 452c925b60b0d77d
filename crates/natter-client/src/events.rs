//! Typed real-time events: the SDK's view of the protocol's event frames
//! (`natter_proto::stream::EventFrame`), one enum variant per event name,
//! plus the connection changes the SDK itself reports.
//!
//! The wire type keeps the event name as a string and the data as an
//! untagged enum, which is right for a wire format but awkward to match on;
//! here each event is a variant with exactly its fields, so
//! `match event { Event::MessageCreated(m) => …, _ => {} }` is all an
//! application writes. Unknown event names (from a newer server) arrive as
//! [`Event::Unknown`] instead of failing the stream.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use natter_proto::stream::{EventData, EventFrame, PresenceStatus};
use natter_proto::{ConversationKind, Message, Role};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// A position in the server's event log, as the server wrote it. Opaque:
/// store it and hand it back to resume ([`crate::Client::events_from`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    pub fn new(s: impl Into<String>) -> Self {
        Cursor(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Cursor {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Cursor(s.to_owned()))
    }
}

/// How the stream reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// WebSocket, falling back to long-polling when the WebSocket cannot be
    /// opened or keeps failing (and trying WebSocket again now and then).
    #[default]
    Auto,
    /// WebSocket only.
    WebSocket,
    /// Long-polling only (`GET /api/v1/events`).
    LongPoll,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Auto => "auto",
            Transport::WebSocket => "websocket",
            Transport::LongPoll => "long-poll",
        })
    }
}

/// `message.created`, `message.edited`, `message.deleted`: the message as
/// it is now (a replayed `created` of a since-edited message shows the new
/// body; a deleted one has `body: None`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageEvent {
    pub cursor: Cursor,
    pub conversation_id: Uuid,
    pub message: Message,
}

/// `receipt.read`, `receipt.delivered`: `user`'s marker now stands at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceiptEvent {
    pub cursor: Cursor,
    pub conversation_id: Uuid,
    pub user: String,
    pub seq: i64,
}

/// `conversation.created`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationCreatedEvent {
    pub cursor: Cursor,
    pub conversation_id: Uuid,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `conversation.renamed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenamedEvent {
    pub cursor: Cursor,
    pub conversation_id: Uuid,
    pub title: String,
}

/// `member.added`, `member.role_changed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberEvent {
    pub cursor: Cursor,
    pub conversation_id: Uuid,
    pub user: String,
    /// Given with `member.added`.
    pub display_name: Option<String>,
    pub role: Role,
}

/// `member.removed` (also sent to the removed member, after which no more
/// events of the conversation come).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberRemovedEvent {
    pub cursor: Cursor,
    pub conversation_id: Uuid,
    pub user: String,
}

/// `typing`: ephemeral; shown until `active: false` or `expires_in` passes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypingEvent {
    pub conversation_id: Uuid,
    pub user: String,
    pub active: bool,
    #[serde(serialize_with = "millis", rename = "expires_in_ms")]
    pub expires_in: Duration,
}

/// `presence`: ephemeral.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceEvent {
    pub user: String,
    pub status: PresenceStatus,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// `block.added`, `block.removed`: ephemeral; the user's blocked list
/// changed on one of their devices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockEvent {
    pub user: String,
}

/// An event this SDK does not know, from a newer server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownEvent {
    pub name: String,
    pub cursor: Option<Cursor>,
    pub data: serde_json::Value,
}

/// The stream is (again) receiving events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connected {
    pub transport: Transport,
    /// Where the stream continues from: events after it follow.
    pub cursor: Cursor,
    /// Whether this continues an earlier position (`false` only for a
    /// stream started "from now" on its first connection).
    pub resumed: bool,
}

/// The connection was lost; the SDK reconnects by itself after `retry_in`
/// and resumes from its cursor, so no durable event is lost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disconnected {
    pub transport: Transport,
    pub reason: String,
    #[serde(serialize_with = "millis", rename = "retry_in_ms")]
    pub retry_in: Duration,
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// One item of the event stream.
///
/// Durable events (messages, receipts, conversation and member changes)
/// carry a [`Cursor`]; ephemeral ones (typing, presence) and the
/// connection reports do not.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event")]
#[non_exhaustive]
pub enum Event {
    #[serde(rename = "message.created")]
    MessageCreated(MessageEvent),
    #[serde(rename = "message.edited")]
    MessageEdited(MessageEvent),
    #[serde(rename = "message.deleted")]
    MessageDeleted(MessageEvent),
    #[serde(rename = "receipt.delivered")]
    Delivered(ReceiptEvent),
    #[serde(rename = "receipt.read")]
    Read(ReceiptEvent),
    #[serde(rename = "conversation.created")]
    ConversationCreated(ConversationCreatedEvent),
    #[serde(rename = "conversation.renamed")]
    ConversationRenamed(RenamedEvent),
    #[serde(rename = "member.added")]
    MemberAdded(MemberEvent),
    #[serde(rename = "member.role_changed")]
    MemberRoleChanged(MemberEvent),
    #[serde(rename = "member.removed")]
    MemberRemoved(MemberRemovedEvent),
    #[serde(rename = "typing")]
    Typing(TypingEvent),
    #[serde(rename = "presence")]
    Presence(PresenceEvent),
    /// This session was revoked (log-out elsewhere, password change); the
    /// stream then ends with [`crate::Error::Unauthenticated`].
    #[serde(rename = "session.revoked")]
    SessionRevoked,
    #[serde(rename = "block.added")]
    BlockAdded(BlockEvent),
    #[serde(rename = "block.removed")]
    BlockRemoved(BlockEvent),
    /// Everyone was unblocked.
    #[serde(rename = "block.cleared")]
    BlocksCleared,
    #[serde(rename = "unknown")]
    Unknown(UnknownEvent),
    /// Reported by the SDK, not the server.
    #[serde(rename = "stream.connected")]
    Connected(Connected),
    /// Reported by the SDK, not the server.
    #[serde(rename = "stream.disconnected")]
    Disconnected(Disconnected),
}

impl Event {
    /// The event's name as on the wire (`message.created`, …); the SDK's
    /// own reports are `stream.connected` and `stream.disconnected`.
    pub fn name(&self) -> &str {
        match self {
            Event::MessageCreated(_) => "message.created",
            Event::MessageEdited(_) => "message.edited",
            Event::MessageDeleted(_) => "message.deleted",
            Event::Delivered(_) => "receipt.delivered",
            Event::Read(_) => "receipt.read",
            Event::ConversationCreated(_) => "conversation.created",
            Event::ConversationRenamed(_) => "conversation.renamed",
            Event::MemberAdded(_) => "member.added",
            Event::MemberRoleChanged(_) => "member.role_changed",
            Event::MemberRemoved(_) => "member.removed",
            Event::Typing(_) => "typing",
            Event::Presence(_) => "presence",
            Event::SessionRevoked => "session.revoked",
            Event::BlockAdded(_) => "block.added",
            Event::BlockRemoved(_) => "block.removed",
            Event::BlocksCleared => "block.cleared",
            Event::Unknown(u) => &u.name,
            Event::Connected(_) => "stream.connected",
            Event::Disconnected(_) => "stream.disconnected",
        }
    }

    /// The cursor of a durable event: the position to resume after once
    /// the application has processed it.
    pub fn cursor(&self) -> Option<&Cursor> {
        match self {
            Event::MessageCreated(e) | Event::MessageEdited(e) | Event::MessageDeleted(e) => {
                Some(&e.cursor)
            }
            Event::Delivered(e) | Event::Read(e) => Some(&e.cursor),
            Event::ConversationCreated(e) => Some(&e.cursor),
            Event::ConversationRenamed(e) => Some(&e.cursor),
            Event::MemberAdded(e) | Event::MemberRoleChanged(e) => Some(&e.cursor),
            Event::MemberRemoved(e) => Some(&e.cursor),
            Event::Unknown(e) => e.cursor.as_ref(),
            _ => None,
        }
    }

    /// The conversation the event belongs to, if any.
    pub fn conversation_id(&self) -> Option<Uuid> {
        match self {
            Event::MessageCreated(e) | Event::MessageEdited(e) | Event::MessageDeleted(e) => {
                Some(e.conversation_id)
            }
            Event::Delivered(e) | Event::Read(e) => Some(e.conversation_id),
            Event::ConversationCreated(e) => Some(e.conversation_id),
            Event::ConversationRenamed(e) => Some(e.conversation_id),
            Event::MemberAdded(e) | Event::MemberRoleChanged(e) => Some(e.conversation_id),
            Event::MemberRemoved(e) => Some(e.conversation_id),
            Event::Typing(e) => Some(e.conversation_id),
            _ => None,
        }
    }

    /// Whether the event comes from the server's durable log (and so has a
    /// cursor and is replayed on resume).
    pub fn is_durable(&self) -> bool {
        self.cursor().is_some()
    }

    /// Maps a wire event frame. A frame whose data does not fit its name
    /// becomes [`Event::Unknown`] rather than an error, so that one odd
    /// frame never stops a stream.
    pub fn from_frame(frame: EventFrame) -> Event {
        let EventFrame {
            event,
            cursor,
            data,
        } = frame;
        let cursor = cursor.map(Cursor);
        let durable = |cursor: &Option<Cursor>| cursor.clone();
        let mapped = match (event.as_str(), data) {
            (
                name @ ("message.created" | "message.edited" | "message.deleted"),
                EventData::Message {
                    conversation_id,
                    message,
                },
            ) => durable(&cursor).map(|cursor| {
                let e = MessageEvent {
                    cursor,
                    conversation_id,
                    message,
                };
                match name {
                    "message.created" => Event::MessageCreated(e),
                    "message.edited" => Event::MessageEdited(e),
                    _ => Event::MessageDeleted(e),
                }
            }),
            (
                name @ ("receipt.read" | "receipt.delivered"),
                EventData::Receipt {
                    conversation_id,
                    user,
                    seq,
                },
            ) => durable(&cursor).map(|cursor| {
                let e = ReceiptEvent {
                    cursor,
                    conversation_id,
                    user,
                    seq,
                };
                if name == "receipt.read" {
                    Event::Read(e)
                } else {
                    Event::Delivered(e)
                }
            }),
            (
                "conversation.created",
                EventData::Conversation {
                    conversation_id,
                    kind,
                    title,
                    created_at,
                },
            ) => durable(&cursor).map(|cursor| {
                Event::ConversationCreated(ConversationCreatedEvent {
                    cursor,
                    conversation_id,
                    kind,
                    title,
                    created_at,
                })
            }),
            (
                "conversation.renamed",
                EventData::Renamed {
                    conversation_id,
                    title,
                },
            ) => durable(&cursor).map(|cursor| {
                Event::ConversationRenamed(RenamedEvent {
                    cursor,
                    conversation_id,
                    title,
                })
            }),
            (
                name @ ("member.added" | "member.role_changed"),
                EventData::Member {
                    conversation_id,
                    user,
                    display_name,
                    role,
                },
            ) => durable(&cursor).map(|cursor| {
                let e = MemberEvent {
                    cursor,
                    conversation_id,
                    user,
                    display_name,
                    role,
                };
                if name == "member.added" {
                    Event::MemberAdded(e)
                } else {
                    Event::MemberRoleChanged(e)
                }
            }),
            (
                "member.removed",
                EventData::Removed {
                    conversation_id,
                    user,
                },
            ) => durable(&cursor).map(|cursor| {
                Event::MemberRemoved(MemberRemovedEvent {
                    cursor,
                    conversation_id,
                    user,
                })
            }),
            (
                "typing",
                EventData::Typing {
                    conversation_id,
                    user,
                    active,
                    expires_in_ms,
                },
            ) => Some(Event::Typing(TypingEvent {
                conversation_id,
                user,
                active,
                expires_in: Duration::from_millis(expires_in_ms),
            })),
            (
                "presence",
                EventData::Presence {
                    user,
                    status,
                    last_seen_at,
                },
            ) => Some(Event::Presence(PresenceEvent {
                user,
                status,
                last_seen_at,
            })),
            ("session.revoked", _) => Some(Event::SessionRevoked),
            ("block.added", EventData::Block { user }) => {
                Some(Event::BlockAdded(BlockEvent { user }))
            }
            ("block.removed", EventData::Block { user }) => {
                Some(Event::BlockRemoved(BlockEvent { user }))
            }
            ("block.cleared", _) => Some(Event::BlocksCleared),
            (_, data) => {
                return Event::Unknown(UnknownEvent {
                    name: event,
                    cursor,
                    data: serde_json::to_value(&data).unwrap_or(serde_json::Value::Null),
                });
            }
        };
        // A durable event without a cursor: kept, but as unknown, so that
        // it never moves the resume position.
        mapped.unwrap_or(Event::Unknown(UnknownEvent {
            name: event,
            cursor: None,
            data: serde_json::Value::Null,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natter_proto::stream::ServerFrame;

    fn parse(json: &str) -> Event {
        match serde_json::from_str::<ServerFrame>(json).unwrap() {
            ServerFrame::Event(f) => Event::from_frame(f),
            other => panic!("not an event: {other:?}"),
        }
    }

    const CONV: &str = "0190a0b4-7d4c-7000-8000-000000000001";

    #[test]
    fn every_documented_event_maps() {
        let msg = format!(
            r#"{{"id":"{CONV}","conversation_id":"{CONV}","seq":8,"sender":"bob","client_id":"b-3","body":"hi","sent_at":"2026-11-29T07:01:02Z","edited_at":null,"deleted_at":null}}"#
        );
        let e = parse(&format!(
            r#"{{"type":"event","event":"message.created","cursor":"0-1843","data":{{"conversation_id":"{CONV}","message":{msg}}}}}"#
        ));
        let Event::MessageCreated(m) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(m.message.body.as_deref(), Some("hi"));
        assert_eq!(e.cursor().unwrap().as_str(), "0-1843");
        assert!(e.is_durable());

        let e = parse(&format!(
            r#"{{"type":"event","event":"receipt.read","cursor":"0-1845","data":{{"conversation_id":"{CONV}","user":"alice","seq":8}}}}"#
        ));
        assert!(matches!(e, Event::Read(ReceiptEvent { seq: 8, .. })));

        let e = parse(&format!(
            r#"{{"type":"event","event":"member.removed","cursor":"0-1855","data":{{"conversation_id":"{CONV}","user":"carol"}}}}"#
        ));
        assert!(
            matches!(&e, Event::MemberRemoved(r) if r.user == "carol"),
            "{e:?}"
        );

        let e = parse(&format!(
            r#"{{"type":"event","event":"conversation.renamed","cursor":"0-1852","data":{{"conversation_id":"{CONV}","title":"New"}}}}"#
        ));
        assert!(matches!(&e, Event::ConversationRenamed(r) if r.title == "New"));

        let e = parse(&format!(
            r#"{{"type":"event","event":"member.role_changed","cursor":"0-1854","data":{{"conversation_id":"{CONV}","user":"dave","role":"admin"}}}}"#
        ));
        assert!(matches!(&e, Event::MemberRoleChanged(r) if r.role == Role::Admin));

        let e = parse(&format!(
            r#"{{"type":"event","event":"typing","data":{{"conversation_id":"{CONV}","user":"bob","active":true,"expires_in_ms":6000}}}}"#
        ));
        assert!(matches!(&e, Event::Typing(t) if t.expires_in == Duration::from_secs(6)));
        assert!(!e.is_durable());

        let e = parse(
            r#"{"type":"event","event":"presence","data":{"user":"bob","status":"offline","last_seen_at":"2026-11-29T07:30:00Z"}}"#,
        );
        assert!(matches!(&e, Event::Presence(p) if p.last_seen_at.is_some()));

        let e = parse(r#"{"type":"event","event":"session.revoked","data":{}}"#);
        assert_eq!(e, Event::SessionRevoked);

        let e = parse(r#"{"type":"event","event":"poll.created","cursor":"0-9","data":{}}"#);
        assert!(matches!(&e, Event::Unknown(u) if u.name == "poll.created" && u.cursor.is_some()));
    }

    #[test]
    fn events_serialise_with_their_name() {
        let e = Event::SessionRevoked;
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"event": "session.revoked"})
        );
        let e = Event::Disconnected(Disconnected {
            transport: Transport::WebSocket,
            reason: "gone".into(),
            retry_in: Duration::from_millis(1500),
        });
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "stream.disconnected");
        assert_eq!(v["retry_in_ms"], 1500);
    }
}
