//! Durable events: the log that real-time sessions replay and follow.
//!
//! Every change that clients must learn about, and must not miss across a
//! disconnect or a restart, is written to the event log in the same
//! transaction as the change itself. Each event has an [`EventPos`]; the
//! positions form one total order that only grows at its end, so a client
//! that remembers the last position it saw can ask for everything after it
//! and get each event exactly once, in order.

use std::fmt;
use std::str::FromStr;

use crate::{Conversation, ConversationId, Message, Role, Timestamp, UserRef, Username};

/// A position in the event log. Backends choose what the two numbers mean
/// (SQLite: `(0, row id)`; PostgreSQL: `(transaction id, row id)`); only
/// their lexicographic order matters, and an event is only ever visible at
/// a position greater than every position already visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventPos {
    pub major: i64,
    pub minor: i64,
}

impl EventPos {
    /// Before every event.
    pub const START: EventPos = EventPos { major: 0, minor: 0 };

    pub fn new(major: i64, minor: i64) -> Self {
        Self { major, minor }
    }
}

/// Cursors are shown to clients as `<major>-<minor>` and treated by them as
/// opaque strings.
impl fmt::Display for EventPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

impl FromStr for EventPos {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (a, b) = s.split_once('-').ok_or(())?;
        let major = a.parse::<i64>().map_err(|_| ())?;
        let minor = b.parse::<i64>().map_err(|_| ())?;
        if major < 0 || minor < 0 {
            return Err(());
        }
        Ok(Self { major, minor })
    }
}

/// One durable event, scoped to a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub pos: EventPos,
    pub conversation_id: ConversationId,
    pub at: Timestamp,
    pub kind: EventKind,
}

/// What happened. Message events carry the message as it is when the event
/// is read (an edited message shows its new body even in its `Created`
/// event; a deleted one is a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    MessageCreated(Message),
    MessageEdited(Message),
    MessageDeleted(Message),
    /// A member's read marker moved forward to `seq`.
    Read {
        user: Username,
        seq: i64,
    },
    /// A member's delivered marker moved forward to `seq`.
    Delivered {
        user: Username,
        seq: i64,
    },
    /// The conversation was created; the record is as of the event's
    /// reading.
    ConversationCreated(Conversation),
    ConversationRenamed {
        title: String,
    },
    MemberAdded {
        user: UserRef,
        role: Role,
    },
    /// The member left or was removed; they receive this event too.
    MemberRemoved {
        user: Username,
    },
    MemberRoleChanged {
        user: Username,
        role: Role,
    },
}

impl EventKind {
    /// The event's name on the wire, `<noun>.<verb>`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageCreated(_) => "message.created",
            Self::MessageEdited(_) => "message.edited",
            Self::MessageDeleted(_) => "message.deleted",
            Self::Read { .. } => "receipt.read",
            Self::Delivered { .. } => "receipt.delivered",
            Self::ConversationCreated(_) => "conversation.created",
            Self::ConversationRenamed { .. } => "conversation.renamed",
            Self::MemberAdded { .. } => "member.added",
            Self::MemberRemoved { .. } => "member.removed",
            Self::MemberRoleChanged { .. } => "member.role_changed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_and_round_trip() {
        let a = EventPos::new(5, 10);
        let b = EventPos::new(6, 1);
        assert!(a < b && EventPos::START < a);
        assert_eq!("5-10".parse::<EventPos>(), Ok(a));
        assert_eq!(a.to_string().parse::<EventPos>(), Ok(a));
        for bad in ["", "5", "5-", "-1-2", "a-b", "5-10-2"] {
            assert!(bad.parse::<EventPos>().is_err(), "{bad}");
        }
    }
}
