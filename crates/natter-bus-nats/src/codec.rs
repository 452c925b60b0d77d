//! The one place where bus notices become bytes: JSON of small wire
//! structs, independent of the domain types' own layout, so that nodes of
//! neighbouring versions keep understanding each other. Unknown notice
//! kinds fail to decode and are skipped by the subscriber, which is what an
//! at-most-once bus allows.

use natter_bus::{Envelope, Ephemeral, NodeId, NodePresence, Notice, RevokeScope, Status};
use natter_types::{ConversationId, SessionId, Timestamp, UserId, Username};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize, Deserialize)]
struct WireEnvelope {
    /// The origin node.
    o: Uuid,
    #[serde(flatten)]
    n: WireNotice,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum WireNotice {
    Wake,
    Presence {
        full: bool,
        users: Vec<WirePresence>,
    },
    Typing {
        conversation: Uuid,
        user: String,
        active: bool,
    },
    Revoke {
        user: i64,
        /// The one session revoked, or with `all`, the one kept.
        session: Option<Uuid>,
        all: bool,
    },
    Deliver {
        user: i64,
        session: Option<Uuid>,
        item: WireItem,
    },
}

#[derive(Serialize, Deserialize)]
struct WirePresence {
    id: i64,
    name: String,
    status: WireStatus,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum WireStatus {
    Online,
    Away,
    Offline,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireItem {
    Presence {
        user: String,
        status: WireStatus,
        last_seen_at: Option<Timestamp>,
    },
    Typing {
        conversation: Uuid,
        user: String,
        active: bool,
    },
    SessionRevoked,
    Blocklist {
        user: Option<String>,
        blocked: bool,
    },
    Relay {
        to: String,
        payload: String,
    },
}

/// Why bytes from the bus were not a notice.
#[derive(Debug)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let wire = WireEnvelope {
        o: envelope.origin.0,
        n: match &envelope.notice {
            Notice::Wake => WireNotice::Wake,
            Notice::Presence { full, users } => WireNotice::Presence {
                full: *full,
                users: users
                    .iter()
                    .map(|p| WirePresence {
                        id: p.user.0,
                        name: p.username.to_string(),
                        status: status_out(p.status),
                    })
                    .collect(),
            },
            Notice::Typing {
                conversation,
                user,
                active,
            } => WireNotice::Typing {
                conversation: conversation.0,
                user: user.to_string(),
                active: *active,
            },
            Notice::Revoke { user, scope } => {
                let (session, all) = match scope {
                    RevokeScope::One(s) => (Some(s.0), false),
                    RevokeScope::AllBut(keep) => (keep.map(|s| s.0), true),
                };
                WireNotice::Revoke {
                    user: user.0,
                    session,
                    all,
                }
            }
            Notice::Deliver {
                user,
                session,
                item,
            } => WireNotice::Deliver {
                user: user.0,
                session: session.map(|s| s.0),
                item: match item {
                    Ephemeral::Presence {
                        user,
                        status,
                        last_seen_at,
                    } => WireItem::Presence {
                        user: user.to_string(),
                        status: status_out(*status),
                        last_seen_at: *last_seen_at,
                    },
                    Ephemeral::Typing {
                        conversation,
                        user,
                        active,
                    } => WireItem::Typing {
                        conversation: conversation.0,
                        user: user.to_string(),
                        active: *active,
                    },
                    Ephemeral::SessionRevoked => WireItem::SessionRevoked,
                    Ephemeral::Blocklist { user, blocked } => WireItem::Blocklist {
                        user: user.as_ref().map(|u| u.to_string()),
                        blocked: *blocked,
                    },
                    Ephemeral::Relay { to, payload } => WireItem::Relay {
                        to: to.clone(),
                        payload: payload.clone(),
                    },
                },
            },
        },
    };
    serde_json::to_vec(&wire).expect("notices always serialize")
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let wire: WireEnvelope =
        serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))?;
    let notice = match wire.n {
        WireNotice::Wake => Notice::Wake,
        WireNotice::Presence { full, users } => Notice::Presence {
            full,
            users: users
                .into_iter()
                .map(|p| {
                    Ok(NodePresence {
                        user: UserId(p.id),
                        username: username(&p.name)?,
                        status: status_in(p.status),
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
        },
        WireNotice::Typing {
            conversation,
            user,
            active,
        } => Notice::Typing {
            conversation: ConversationId(conversation),
            user: username(&user)?,
            active,
        },
        WireNotice::Revoke { user, session, all } => Notice::Revoke {
            user: UserId(user),
            scope: match (all, session) {
                (true, keep) => RevokeScope::AllBut(keep.map(SessionId)),
                (false, Some(s)) => RevokeScope::One(SessionId(s)),
                (false, None) => return Err(DecodeError("revoke of no session".into())),
            },
        },
        WireNotice::Deliver {
            user,
            session,
            item,
        } => Notice::Deliver {
            user: UserId(user),
            session: session.map(SessionId),
            item: match item {
                WireItem::Presence {
                    user,
                    status,
                    last_seen_at,
                } => Ephemeral::Presence {
                    user: username(&user)?,
                    status: status_in(status),
                    last_seen_at,
                },
                WireItem::Typing {
                    conversation,
                    user,
                    active,
                } => Ephemeral::Typing {
                    conversation: ConversationId(conversation),
                    user: username(&user)?,
                    active,
                },
                WireItem::SessionRevoked => Ephemeral::SessionRevoked,
                WireItem::Blocklist { user, blocked } => Ephemeral::Blocklist {
                    user: user.as_deref().map(username).transpose()?,
                    blocked,
                },
                WireItem::Relay { to, payload } => Ephemeral::Relay { to, payload },
            },
        },
    };
    Ok(Envelope {
        origin: NodeId(wire.o),
        notice,
    })
}

fn username(s: &str) -> Result<Username, DecodeError> {
    Username::parse(s).map_err(|e| DecodeError(e.to_string()))
}

fn status_out(s: Status) -> WireStatus {
    match s {
        Status::Online => WireStatus::Online,
        Status::Away => WireStatus::Away,
        Status::Offline => WireStatus::Offline,
    }
}

fn status_in(s: WireStatus) -> Status {
    match s {
        WireStatus::Online => Status::Online,
        WireStatus::Away => Status::Away,
        WireStatus::Offline => Status::Offline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_bad_names_do_not_decode() {
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"o":"00000000-0000-0000-0000-000000000000","t":"nope"}"#).is_err());
        let bad = br#"{"o":"00000000-0000-0000-0000-000000000000","t":"typing","conversation":"00000000-0000-0000-0000-000000000000","user":"NOT A NAME!","active":true}"#;
        assert!(decode(bad).is_err());
    }
}
