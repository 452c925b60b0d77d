//! Natter's domain values: identifiers, validated inputs and the records the
//! core and the stores exchange.
//!
//! Values are parsed once at the edge ("parse, don't validate"): a
//! [`Username`] or a [`Body`] that exists is known to be valid, so nothing
//! behind the edge checks again. This crate does no I/O and knows no wire
//! format; the JSON counterparts live in `natter-proto`.

mod events;
mod ids;
mod records;
mod values;

pub use events::{Event, EventKind, EventPos};
pub use ids::{ConversationId, MessageId, SessionId, UserId};
pub use records::{
    BlockedUser, Contact, Conversation, ConversationKind, ConversationSummary, Credentials, Member,
    Message, Role, ScramKeys, Session, User, UserRef,
};
pub use values::{
    Body, ClientId, ContactGroups, ContactName, DisplayName, GroupTitle, Password, Username,
    ValidationError,
};

/// Timestamps are UTC everywhere; clients localise.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
