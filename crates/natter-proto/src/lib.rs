//! Natter's JSON wire types: the bodies of the REST API (and, later, of
//! the event stream), with their OpenAPI schemas.
//!
//! These are counterparts of the domain records in `natter-types`, not the
//! records themselves, so that the wire format can stay stable while the
//! domain changes. Conversions from domain records are explicit `From`
//! impls here; conversions into domain values are parsing, done by the
//! transport that receives the request.

use chrono::{DateTime, Utc};
use natter_types as t;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub mod stream;

/// The API version in the path (`/api/v1`).
pub const API_VERSION: &str = "v1";

// ----- errors -------------------------------------------------------------

/// Every error response has this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code for programs, e.g. `invalid_field`.
    #[schema(example = "invalid_field")]
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// The offending request field, for validation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

// ----- accounts -------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    /// 1-32 characters: `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter
    /// or digit; lowercased.
    #[schema(example = "alice")]
    pub username: String,
    /// At least 8 characters, at most 1024 bytes.
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogInRequest {
    pub username: String,
    pub password: String,
}

/// `PATCH /me`: fields left out are unchanged; `null` clears.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

/// Distinguishes a field that is absent (`None`) from one that is `null`
/// (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub username: String,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<t::User> for User {
    fn from(u: t::User) -> Self {
        Self {
            username: u.username.into_string(),
            display_name: u.display_name,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserRef {
    pub username: String,
    pub display_name: Option<String>,
}

impl From<t::UserRef> for UserRef {
    fn from(u: t::UserRef) -> Self {
        Self {
            username: u.username.into_string(),
            display_name: u.display_name,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// The answer to a log-in. The token is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogInResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub session_id: Uuid,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

impl Session {
    pub fn new(s: t::Session, current: t::SessionId) -> Self {
        Self {
            id: s.id.0,
            created_at: s.created_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent,
            current: s.id == current,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

// ----- contacts -------------------------------------------------------------

/// `PUT /contacts/{username}`; the body may be empty or `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutContactRequest {
    /// Your name for the contact.
    #[serde(default)]
    pub name: Option<String>,
    /// Groups to file the contact under (roster groups).
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub username: String,
    pub display_name: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub added_at: DateTime<Utc>,
}

impl From<t::Contact> for Contact {
    fn from(c: t::Contact) -> Self {
        Self {
            username: c.user.username.into_string(),
            display_name: c.user.display_name,
            name: c.name,
            groups: c.groups,
            added_at: c.added_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactList {
    pub contacts: Vec<Contact>,
}

// ----- blocks ---------------------------------------------------------------

/// A user on the caller's blocked list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Block {
    pub username: String,
    pub display_name: Option<String>,
    pub blocked_at: DateTime<Utc>,
}

impl From<t::BlockedUser> for Block {
    fn from(b: t::BlockedUser) -> Self {
        Self {
            username: b.user.username.into_string(),
            display_name: b.user.display_name,
            blocked_at: b.blocked_at,
        }
    }
}

/// `GET /blocks`: the blocked list, ordered by username.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockList {
    pub blocks: Vec<Block>,
}

// ----- conversations --------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
}

impl From<t::ConversationKind> for ConversationKind {
    fn from(k: t::ConversationKind) -> Self {
        match k {
            t::ConversationKind::Direct => Self::Direct,
            t::ConversationKind::Group => Self::Group,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl From<t::Role> for Role {
    fn from(r: t::Role) -> Self {
        match r {
            t::Role::Owner => Self::Owner,
            t::Role::Admin => Self::Admin,
            t::Role::Member => Self::Member,
        }
    }
}

impl From<Role> for t::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Owner => Self::Owner,
            Role::Admin => Self::Admin,
            Role::Member => Self::Member,
        }
    }
}

/// `POST /conversations`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CreateConversationRequest {
    /// The direct conversation with one other user (created once per pair).
    Direct { with: String },
    /// A group owned by the caller.
    Group {
        title: String,
        #[serde(default)]
        members: Vec<String>,
    },
}

/// `PATCH /conversations/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversationRequest {
    pub title: String,
}

/// `PUT /conversations/{id}/members/{username}`; `role` defaults to
/// `member`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMemberRequest {
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub username: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    /// The member has read everything up to this sequence number.
    pub read_seq: i64,
    /// Everything up to this sequence number reached one of the member's
    /// devices.
    pub delivered_seq: i64,
}

impl From<t::Member> for Member {
    fn from(m: t::Member) -> Self {
        Self {
            username: m.user.username.into_string(),
            display_name: m.user.display_name,
            role: m.role.into(),
            joined_at: m.joined_at,
            read_seq: m.read_seq,
            delivered_seq: m.delivered_seq,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub id: Uuid,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Sequence number of the newest message (0: none yet).
    pub last_seq: i64,
    pub last_activity_at: DateTime<Utc>,
    pub members: Vec<Member>,
}

impl Conversation {
    pub fn new(c: t::Conversation, members: Vec<t::Member>) -> Self {
        Self {
            id: c.id.0,
            kind: c.kind.into(),
            title: c.title,
            created_at: c.created_at,
            last_seq: c.last_seq,
            last_activity_at: c.last_activity_at,
            members: members.into_iter().map(Into::into).collect(),
        }
    }
}

/// One row of the conversation list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversationSummary {
    pub id: Uuid,
    pub kind: ConversationKind,
    pub title: Option<String>,
    /// For direct conversations, the other member.
    pub peer: Option<UserRef>,
    /// The caller's role.
    pub role: Role,
    pub member_count: i64,
    pub last_seq: i64,
    pub last_activity_at: DateTime<Utc>,
    pub last_message: Option<Message>,
    /// Messages after the caller's read marker.
    pub unread: i64,
    pub read_seq: i64,
}

impl From<t::ConversationSummary> for ConversationSummary {
    fn from(s: t::ConversationSummary) -> Self {
        let c = s.conversation;
        Self {
            id: c.id.0,
            kind: c.kind.into(),
            title: c.title,
            peer: s.peer.map(Into::into),
            role: s.role.into(),
            member_count: s.member_count,
            last_seq: c.last_seq,
            last_activity_at: c.last_activity_at,
            last_message: s.last_message.map(Into::into),
            unread: s.unread,
            read_seq: s.read_seq,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

// ----- messages -------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// Chosen by the client before the first attempt and reused on every
    /// retry: a retry returns the stored message instead of a duplicate.
    #[schema(example = "0190a0b4-7d4c-7000-8000-00000000cafe")]
    pub client_id: String,
    /// UTF-8 text, at most 64 KiB by default.
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessageRequest {
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// Globally unique and stable.
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// Position in the conversation: gap-free, strictly increasing from 1.
    pub seq: i64,
    pub sender: String,
    pub client_id: String,
    /// `null` once the message is deleted.
    pub body: Option<String>,
    pub sent_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<t::Message> for Message {
    fn from(m: t::Message) -> Self {
        Self {
            id: m.id.0,
            conversation_id: m.conversation_id.0,
            seq: m.seq,
            sender: m.sender.into_string(),
            client_id: m.client_id,
            body: m.body,
            sent_at: m.sent_at,
            edited_at: m.edited_at,
            deleted_at: m.deleted_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageResponse {
    pub message: Message,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct History {
    /// In ascending sequence order.
    pub messages: Vec<Message>,
    /// Whether more messages lie beyond this page in the paging direction.
    pub has_more: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkReadRequest {
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadMarker {
    /// Where the caller's read marker stands after the call.
    pub read_seq: i64,
}

// ----- operations -----------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`; `degraded` when the node serves but its cluster bus is down;
    /// `unavailable` when it cannot serve. The failing component is in
    /// `checks`.
    pub status: String,
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
