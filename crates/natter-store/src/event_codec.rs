//! The storage encoding of event log rows, shared by every backend so that
//! the log means the same everywhere.
//!
//! A row holds the event's kind name ([`EventKind::name`]), its
//! conversation, for message events the message's `seq` (the message is
//! joined in when the row is read, so it shows its current state), and for
//! the other kinds a small JSON payload, [`Payload`]. Usernames never
//! change, so they are stored by name and need no join.

use natter_types::{
    Conversation, EventKind, Message, Role, UserId, UserRef, Username, ValidationError,
};
use serde::{Deserialize, Serialize};

/// The JSON payload column of an event row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Payload {
    /// `receipt.read`, `receipt.delivered`.
    Marker { user: String, seq: i64 },
    /// `member.added`, `member.role_changed` (no display name).
    Member {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        role: String,
    },
    /// `member.removed`.
    Removed { user: String },
    /// `conversation.renamed`.
    Renamed { title: String },
    /// Events whose data lives elsewhere (messages, creation).
    Empty {},
}

/// What a backend writes for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEventRow {
    pub kind: &'static str,
    /// For message events.
    pub seq: Option<i64>,
    /// JSON text.
    pub payload: String,
    /// Set for `member.removed`: the removed user still receives it.
    pub target_user: Option<UserId>,
}

fn json(p: &Payload) -> String {
    serde_json::to_string(p).expect("payloads always serialise")
}

pub fn message_created(seq: i64) -> NewEventRow {
    message_row("message.created", seq)
}

pub fn message_edited(seq: i64) -> NewEventRow {
    message_row("message.edited", seq)
}

pub fn message_deleted(seq: i64) -> NewEventRow {
    message_row("message.deleted", seq)
}

fn message_row(kind: &'static str, seq: i64) -> NewEventRow {
    NewEventRow {
        kind,
        seq: Some(seq),
        payload: json(&Payload::Empty {}),
        target_user: None,
    }
}

pub fn read(user: &Username, seq: i64) -> NewEventRow {
    marker("receipt.read", user, seq)
}

pub fn delivered(user: &Username, seq: i64) -> NewEventRow {
    marker("receipt.delivered", user, seq)
}

fn marker(kind: &'static str, user: &Username, seq: i64) -> NewEventRow {
    NewEventRow {
        kind,
        seq: None,
        payload: json(&Payload::Marker {
            user: user.as_str().into(),
            seq,
        }),
        target_user: None,
    }
}

pub fn conversation_created() -> NewEventRow {
    NewEventRow {
        kind: "conversation.created",
        seq: None,
        payload: json(&Payload::Empty {}),
        target_user: None,
    }
}

pub fn renamed(title: &str) -> NewEventRow {
    NewEventRow {
        kind: "conversation.renamed",
        seq: None,
        payload: json(&Payload::Renamed {
            title: title.into(),
        }),
        target_user: None,
    }
}

pub fn member_added(user: &UserRef, role: Role) -> NewEventRow {
    NewEventRow {
        kind: "member.added",
        seq: None,
        payload: json(&Payload::Member {
            user: user.username.as_str().into(),
            display_name: user.display_name.clone(),
            role: role.as_str().into(),
        }),
        target_user: None,
    }
}

pub fn role_changed(user: &Username, role: Role) -> NewEventRow {
    NewEventRow {
        kind: "member.role_changed",
        seq: None,
        payload: json(&Payload::Member {
            user: user.as_str().into(),
            display_name: None,
            role: role.as_str().into(),
        }),
        target_user: None,
    }
}

pub fn member_removed(user: UserId, username: &Username) -> NewEventRow {
    NewEventRow {
        kind: "member.removed",
        seq: None,
        payload: json(&Payload::Removed {
            user: username.as_str().into(),
        }),
        target_user: Some(user),
    }
}

/// Why a stored row could not be decoded (a bug or a corrupted row).
#[derive(Debug, thiserror::Error)]
#[error("undecodable event row ({kind}): {reason}")]
pub struct DecodeError {
    pub kind: String,
    pub reason: String,
}

/// Rebuilds an event from its row. `message` must be given for message
/// kinds and `conversation` for `conversation.created`.
pub fn decode(
    kind: &str,
    payload: &str,
    message: Option<Message>,
    conversation: Option<Conversation>,
) -> Result<EventKind, DecodeError> {
    let err = |reason: String| DecodeError {
        kind: kind.to_owned(),
        reason,
    };
    // Message and creation events, the most frequent by far, carry no
    // payload worth parsing: decide them before touching the JSON (the
    // untagged payload would try each shape in turn).
    let need_message = || message.clone().ok_or_else(|| err("message missing".into()));
    match kind {
        "message.created" => return Ok(EventKind::MessageCreated(need_message()?)),
        "message.edited" => return Ok(EventKind::MessageEdited(need_message()?)),
        "message.deleted" => return Ok(EventKind::MessageDeleted(need_message()?)),
        "conversation.created" => {
            return Ok(EventKind::ConversationCreated(
                conversation.ok_or_else(|| err("conversation missing".into()))?,
            ));
        }
        _ => {}
    }
    let p: Payload = serde_json::from_str(payload).map_err(|e| err(e.to_string()))?;
    let name = |s: &str| Username::parse(s).map_err(|e: ValidationError| err(e.to_string()));
    let role = |s: &str| s.parse::<Role>().map_err(err);
    Ok(match (kind, p) {
        ("receipt.read", Payload::Marker { user, seq }) => EventKind::Read {
            user: name(&user)?,
            seq,
        },
        ("receipt.delivered", Payload::Marker { user, seq }) => EventKind::Delivered {
            user: name(&user)?,
            seq,
        },
        ("conversation.renamed", Payload::Renamed { title }) => {
            EventKind::ConversationRenamed { title }
        }
        (
            "member.added",
            Payload::Member {
                user,
                display_name,
                role: r,
            },
        ) => EventKind::MemberAdded {
            user: UserRef {
                username: name(&user)?,
                display_name,
            },
            role: role(&r)?,
        },
        ("member.role_changed", Payload::Member { user, role: r, .. }) => {
            EventKind::MemberRoleChanged {
                user: name(&user)?,
                role: role(&r)?,
            }
        }
        ("member.removed", Payload::Removed { user }) => {
            EventKind::MemberRemoved { user: name(&user)? }
        }
        (other, p) => return Err(err(format!("unexpected payload {p:?} for {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let bob = Username::parse("bob").unwrap();
        let r = read(&bob, 7);
        assert_eq!(
            decode(r.kind, &r.payload, None, None).unwrap(),
            EventKind::Read {
                user: bob.clone(),
                seq: 7
            }
        );
        let r = member_added(
            &UserRef {
                username: bob.clone(),
                display_name: Some("Bob".into()),
            },
            Role::Admin,
        );
        assert!(matches!(
            decode(r.kind, &r.payload, None, None).unwrap(),
            EventKind::MemberAdded {
                role: Role::Admin,
                ..
            }
        ));
        let r = role_changed(&bob, Role::Owner);
        assert_eq!(
            decode(r.kind, &r.payload, None, None).unwrap(),
            EventKind::MemberRoleChanged {
                user: bob.clone(),
                role: Role::Owner
            }
        );
        let r = member_removed(UserId(3), &bob);
        assert_eq!(r.target_user, Some(UserId(3)));
        assert_eq!(
            decode(r.kind, &r.payload, None, None).unwrap(),
            EventKind::MemberRemoved { user: bob.clone() }
        );
        let r = renamed("T");
        assert_eq!(
            decode(r.kind, &r.payload, None, None).unwrap(),
            EventKind::ConversationRenamed { title: "T".into() }
        );
        let r = message_created(1);
        assert!(
            decode(r.kind, &r.payload, None, None).is_err(),
            "needs the message"
        );
        assert!(decode("bogus", "{}", None, None).is_err());
    }
}
