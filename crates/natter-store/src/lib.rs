//! The storage contract: a [`Store`] trait of domain operations that the
//! core calls, the errors they return, and (behind the `conformance`
//! feature) the one suite that every backend must pass.
//!
//! The operations are domain operations, not generic CRUD, so that each
//! backend can do one operation in one transaction with the SQL its
//! database is best at: appending a message assigns its sequence number,
//! checks membership, deduplicates on `client_id` and moves the sender's
//! read marker, atomically.
//!
//! Invariants every backend keeps (the conformance suite checks them):
//! - sequence numbers in a conversation start at 1 and are gap-free and
//!   strictly increasing, whatever the concurrency;
//! - an operation's future resolves only after its commit has returned, so
//!   a caller that acknowledges after `await` never acknowledges data that
//!   could be lost;
//! - read markers only move forward and never pass the last message;
//! - stores persist and never publish: notifying sessions is the hub's job;
//! - every change that clients follow in real time is recorded in the event
//!   log in the same transaction as the change (see "events" below), and
//!   the log only ever grows at its end, in commit order.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod event_codec;

use async_trait::async_trait;
pub use natter_types as types;
use natter_types::{
    BlockedUser, Body, ClientId, Contact, ContactGroups, ContactName, Conversation, ConversationId,
    ConversationSummary, Credentials, DisplayName, Event, EventPos, GroupTitle, Member, Message,
    MessageId, Role, Session, SessionId, Timestamp, User, UserId, Username,
};

/// What can go wrong in a store, in domain terms. Backend errors that the
/// caller cannot act on are folded into [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value is taken: a username, for instance.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The conversation, user or message named does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The user is not a member of the conversation.
    #[error("not a member of the conversation")]
    NotMember,
    /// A `client_id` was reused for a message to another conversation.
    #[error("client_id already used for a message in another conversation")]
    ClientIdReused,
    /// A message to a direct conversation whose sender has blocked the
    /// other member.
    #[error("the sender has blocked the recipient")]
    SenderBlocked,
    /// A message to a direct conversation whose other member has blocked
    /// the sender.
    #[error("the recipient has blocked the sender")]
    RecipientBlocked,
    /// The database failed or could not be reached.
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub display_name: Option<DisplayName>,
    pub credentials: Credentials,
    pub now: Timestamp,
}

/// A new log-in session; `token_hash` is the SHA-256 of the bearer token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub token_hash: [u8; 32],
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub id: ConversationId,
    pub title: GroupTitle,
    pub owner: UserId,
    /// Other members, without the owner; duplicates are ignored.
    pub members: Vec<UserId>,
    pub now: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub sender: UserId,
    pub client_id: ClientId,
    pub body: Body,
    pub now: Timestamp,
}

/// The result of [`Store::append_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub message: Message,
    /// `false` when the `client_id` had been seen and the original message
    /// is returned instead of storing a duplicate.
    pub created: bool,
}

/// A page of history, always returned in ascending sequence order.
///
/// With `after`, the page is the first `limit` messages after it; otherwise
/// it is the last `limit` messages before `before` (or the newest ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: u32,
}

/// Keyset position in a conversation list: the list is ordered by last
/// activity, newest first, then by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationCursor {
    pub last_activity_at: Timestamp,
    pub id: ConversationId,
}

/// A user whose presence another user sees, with when they were last
/// online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresencePeer {
    pub id: UserId,
    pub username: Username,
    pub last_seen_at: Option<Timestamp>,
}

/// Which of two users has blocked the other
/// ([`Store::blocks_between`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Blocks {
    /// The first user named has blocked the second.
    pub by_first: bool,
    /// The second user named has blocked the first.
    pub by_second: bool,
}

impl Blocks {
    /// Whether either has blocked the other.
    pub fn any(self) -> bool {
        self.by_first || self.by_second
    }
}

/// Domain operations on durable state. Implementations are cheap to share
/// (`Arc<dyn Store>`) and safe to call from many tasks at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers; used by `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    // --- accounts -------------------------------------------------------

    /// Creates an account; `Conflict("username")` if the name is taken.
    async fn create_user(&self, new: NewUser) -> StoreResult<User>;
    async fn user_by_username(&self, username: &Username) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    async fn users_by_username(&self, usernames: &[Username]) -> StoreResult<Vec<User>>;
    async fn credentials(&self, id: UserId) -> StoreResult<Option<Credentials>>;
    async fn set_display_name(&self, id: UserId, name: Option<DisplayName>) -> StoreResult<User>;
    /// Replaces the credentials and, in the same transaction, revokes every
    /// session of the user except `keep`.
    async fn set_credentials(
        &self,
        id: UserId,
        credentials: Credentials,
        keep: Option<SessionId>,
    ) -> StoreResult<()>;
    /// Disables the account (`Some(when)`) or enables it again (`None`).
    /// Disabling deletes every session of the user in the same
    /// transaction. `NotFound("user")` if there is no such user.
    async fn set_user_disabled(&self, id: UserId, at: Option<Timestamp>) -> StoreResult<()>;
    /// When the account was disabled, if it is. `NotFound("user")` if there
    /// is no such user.
    async fn user_disabled_at(&self, id: UserId) -> StoreResult<Option<Timestamp>>;
    /// Users whose username starts with `query` or whose display name
    /// contains it, case-insensitively, ordered by username.
    async fn search_users(&self, query: &str, limit: u32) -> StoreResult<Vec<User>>;

    // --- sessions -------------------------------------------------------

    async fn create_session(&self, new: NewSession) -> StoreResult<Session>;
    /// The session holding this token hash, if any, with its user. Expiry
    /// is the caller's check: the store does not know the time.
    async fn session_by_token(&self, token_hash: &[u8; 32])
    -> StoreResult<Option<(Session, User)>>;
    /// Sessions of the user that have not expired at `now`
    /// (`expires_at > now`), newest first.
    async fn list_sessions(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<Session>>;
    /// Whether the session exists and has not expired at `now`. Long-lived
    /// connections ask this periodically, so that a session revoked by
    /// another process or node ends there too.
    async fn session_valid(&self, id: SessionId, now: Timestamp) -> StoreResult<bool>;
    /// Deletes one session; `false` if the user has no such session.
    async fn revoke_session(&self, user: UserId, id: SessionId) -> StoreResult<bool>;
    /// Deletes sessions expired at `now` (`expires_at <= now`, the same
    /// rule as [`Store::list_sessions`]); returns how many.
    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64>;

    // --- contacts -------------------------------------------------------

    /// Adds or updates a contact; returns it and whether it is new.
    async fn put_contact(
        &self,
        owner: UserId,
        contact: UserId,
        name: Option<ContactName>,
        groups: ContactGroups,
        now: Timestamp,
    ) -> StoreResult<(Contact, bool)>;
    async fn remove_contact(&self, owner: UserId, contact: UserId) -> StoreResult<bool>;
    /// The contact list, ordered by username.
    async fn list_contacts(&self, owner: UserId) -> StoreResult<Vec<Contact>>;

    // --- blocking -------------------------------------------------------
    //
    // A block is one-way in the list (the owner's) and two-way in effect:
    // between the two users no direct message is appended
    // (`append_message` fails with `SenderBlocked` or `RecipientBlocked`)
    // and neither is in the other's presence audience. Blocks change no
    // contact list, conversation or event.

    /// Blocks `target` for `owner`; returns whether it is new (blocking
    /// twice keeps the first date). `NotFound("user")` if either user does
    /// not exist.
    async fn block_user(&self, owner: UserId, target: UserId, now: Timestamp) -> StoreResult<bool>;
    /// Unblocks `target`; returns whether it was blocked.
    async fn unblock_user(&self, owner: UserId, target: UserId) -> StoreResult<bool>;
    /// Empties `owner`'s blocked list; returns how many were unblocked.
    async fn unblock_all(&self, owner: UserId) -> StoreResult<u64>;
    /// `owner`'s blocked list, ordered by username.
    async fn blocked_users(&self, owner: UserId) -> StoreResult<Vec<BlockedUser>>;
    /// Which of `a` and `b` has blocked the other: one indexed read.
    async fn blocks_between(&self, a: UserId, b: UserId) -> StoreResult<Blocks>;
    /// Whether either member of the direct conversation `id` has blocked
    /// the other; `false` for groups and unknown conversations.
    async fn direct_blocked(&self, id: ConversationId) -> StoreResult<bool>;

    // --- conversations --------------------------------------------------

    /// The direct conversation of two distinct users, created on first use.
    /// Returns whether it was created. Concurrent calls for the same pair
    /// return the same conversation.
    async fn direct_conversation(
        &self,
        a: UserId,
        b: UserId,
        now: Timestamp,
    ) -> StoreResult<(Conversation, bool)>;
    async fn create_group(&self, new: NewGroup) -> StoreResult<Conversation>;
    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<Conversation>>;
    async fn rename_group(
        &self,
        id: ConversationId,
        title: GroupTitle,
    ) -> StoreResult<Conversation>;
    /// Members ordered by join time, then username.
    async fn members(&self, id: ConversationId) -> StoreResult<Vec<Member>>;
    async fn member_role(&self, id: ConversationId, user: UserId) -> StoreResult<Option<Role>>;
    /// Adds a member with `role`, or changes the role of an existing one.
    /// Returns whether the member was added. A new member's read marker
    /// starts at the conversation's last message.
    async fn set_member(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Removes a member; `false` if they were not one. When the last owner
    /// of a group leaves, the longest-standing admin, or else member,
    /// becomes owner, so a group with members always has an owner.
    async fn remove_member(&self, id: ConversationId, user: UserId) -> StoreResult<bool>;
    /// The user's conversations, most recently active first, starting after
    /// `after` in that order.
    async fn list_conversations(
        &self,
        user: UserId,
        after: Option<ConversationCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>>;

    // --- messages -------------------------------------------------------

    /// Appends a message, assigning the next sequence number, unless the
    /// sender already sent one with this `client_id`: then the original is
    /// returned as it is now (`created: false`), or `ClientIdReused` if the
    /// original is in another conversation. Fails with `NotMember`
    /// if the sender is not a member, `NotFound` if there is no such
    /// conversation. The sender's read marker moves to the new message.
    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended>;
    async fn messages(&self, id: ConversationId, query: HistoryQuery) -> StoreResult<Vec<Message>>;
    async fn message(&self, id: ConversationId, seq: i64) -> StoreResult<Option<Message>>;
    /// A message by its id, in whatever conversation: XMPP clients name
    /// messages by id (XEP-0359 stanza ids) when paging the archive.
    async fn message_by_id(&self, id: MessageId) -> StoreResult<Option<Message>>;
    /// A message by its sender and `client_id`: XMPP receipts and markers
    /// name a message by the id its sender gave it.
    async fn message_by_client_id(
        &self,
        sender: UserId,
        client_id: &str,
    ) -> StoreResult<Option<Message>>;
    /// Replaces the body of a message that is not deleted; `None` if there
    /// is no such live message.
    async fn edit_message(
        &self,
        id: ConversationId,
        seq: i64,
        body: Body,
        now: Timestamp,
    ) -> StoreResult<Option<Message>>;
    /// Turns a message into a tombstone; `None` if there is no such live
    /// message.
    async fn delete_message(
        &self,
        id: ConversationId,
        seq: i64,
        now: Timestamp,
    ) -> StoreResult<Option<Message>>;
    /// Moves the member's read marker forward to `seq`, clamped to the last
    /// message; never backwards. Returns the marker after the call.
    async fn mark_read(&self, id: ConversationId, user: UserId, seq: i64) -> StoreResult<i64>;
    /// Moves the member's delivered marker forward to `seq`, clamped to the
    /// last message; never backwards. Returns the marker after the call.
    ///
    /// Reading implies delivery: `mark_read` and `append_message` (for the
    /// sender) raise the delivered marker to the read marker too, without a
    /// `Delivered` event, so `delivered_seq >= read_seq` always holds.
    async fn mark_delivered(&self, id: ConversationId, user: UserId, seq: i64) -> StoreResult<i64>;
    /// Moves several delivered markers at once, each as `mark_delivered`
    /// would: `(conversation, user, seq)`. Marks that no longer apply (the
    /// user left, the conversation is gone) are skipped, not errors: they
    /// were gathered a moment ago and the world moved on. A backend error
    /// fails the call.
    ///
    /// Delivered markers come in bursts (every message delivered to a
    /// device moves one), so backends write them in a few large steps, not
    /// one commit each. Each mark stands alone: the call is not atomic,
    /// and after an error some marks may have moved.
    async fn mark_delivered_many(&self, marks: &[(ConversationId, UserId, i64)])
    -> StoreResult<()>;

    // --- events ---------------------------------------------------------
    //
    // These writes append to the event log in their own transaction:
    // - `append_message` (when it stores a new message): `MessageCreated`;
    // - `edit_message`, `delete_message`: `MessageEdited`, `MessageDeleted`;
    // - `mark_read`, `mark_delivered` (only when the marker moves): `Read`,
    //   `Delivered` with the new marker;
    // - `direct_conversation` (when it creates), `create_group`:
    //   `ConversationCreated`;
    // - `rename_group`: `ConversationRenamed`;
    // - `set_member`: `MemberAdded`, or `MemberRoleChanged` when the role
    //   changes;
    // - `remove_member`: `MemberRemoved`, then `MemberRoleChanged` for a
    //   member promoted to owner.
    // A call that changes nothing appends nothing.

    /// The position of the newest visible event: a reader starting here
    /// sees exactly the events made visible from now on.
    async fn event_head(&self) -> StoreResult<EventPos>;
    /// Up to `limit` events after `after`, in position order. Only events
    /// that no later commit can precede are returned, so a reader that
    /// moves to the position of the last event it got never skips one.
    async fn events_after(&self, after: EventPos, limit: u32) -> StoreResult<Vec<Event>>;
    /// Like [`Store::events_after`], restricted to what `user` may see:
    /// events of the conversations the user is a member of now, and the
    /// user's own removal from a conversation.
    async fn user_events_after(
        &self,
        user: UserId,
        after: EventPos,
        limit: u32,
    ) -> StoreResult<Vec<Event>>;

    // --- presence -------------------------------------------------------

    /// Records when the user was last online.
    async fn set_last_seen(&self, user: UserId, at: Timestamp) -> StoreResult<()>;
    /// Users who see `user`'s presence: the users in `user`'s contact list
    /// and the other members of `user`'s direct conversations, each once,
    /// except those with a block between them and `user` (either way).
    async fn presence_audience(&self, user: UserId) -> StoreResult<Vec<UserId>>;
    /// Users whose presence `user` sees, the reverse relation: those who
    /// have `user` in their contact list and `user`'s direct peers, each
    /// once, ordered by username, except those with a block between them
    /// and `user` (either way).
    async fn presence_subjects(&self, user: UserId) -> StoreResult<Vec<PresencePeer>>;
}
