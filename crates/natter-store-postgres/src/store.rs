//! The [`Store`] operations in PostgreSQL's SQL.
//!
//! Each operation is one statement or one short READ COMMITTED transaction
//! on a pooled connection, with parameterised, cached statements only. The
//! places where concurrency matters are settled by the database:
//! - `append_message` increments `conversations.last_seq` with an `UPDATE`;
//!   the row lock it takes serialises senders of one conversation (on any
//!   node) until commit, and a rollback puts the counter back, so sequence
//!   numbers are gap-free. The `UNIQUE (sender_id, client_id)` constraint
//!   with `ON CONFLICT DO NOTHING` catches a duplicate that raced past the
//!   first look-up.
//! - `direct_conversation` inserts with `ON CONFLICT (direct_key) DO
//!   NOTHING`: the loser of a race waits for the winner's commit, then reads
//!   its conversation.
//! - `remove_member` locks the conversation row before it deletes and
//!   promotes, so two owners leaving at once cannot leave a group without
//!   an owner.
//!
//! Every write that changes something clients follow appends its events
//! (encoded by `natter_store::event_codec`) in the same transaction, and
//! only when it changed something: the statements that change state are
//! guarded so that a no-op matches no row (`WHERE read_seq < target`,
//! `ON CONFLICT .. DO UPDATE .. WHERE role <> EXCLUDED.role`, `WHERE title
//! IS DISTINCT FROM ..`), and the event follows from what they return.
//! Appending, editing and deleting a message insert their event from a
//! data-modifying CTE of the statement they already run, so the log costs
//! them no round trip. Reading the log is in `events.rs`.
//!
//! Futures resolve only after `COMMIT` has returned.

use async_trait::async_trait;
use deadpool_postgres::{Client, GenericClient, Transaction};
use natter_store::{
    Appended, Blocks, ConversationCursor, HistoryQuery, NewGroup, NewMessage, NewSession, NewUser,
    PresencePeer, Store, StoreError, StoreResult, event_codec,
};
use natter_types::{
    BlockedUser, Body, Contact, ContactGroups, ContactName, Conversation, ConversationId,
    ConversationSummary, Credentials, DisplayName, Event, EventPos, GroupTitle, Member, Message,
    MessageId, Role, ScramKeys, Session, SessionId, Timestamp, User, UserId, Username,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use crate::error::{backend, pg, pool};
use crate::rows::{self, CONVERSATION_COLS, conversation_cols, get, message_cols, user_cols};
use crate::{PgStore, events};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&statement, params).await.map_err(pg)
}

/// At most one row; more is a bug in the query and reported as such.
pub(crate) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query_opt(&statement, params).await.map_err(pg)
}

pub(crate) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<u64> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&statement, params).await.map_err(pg)
}

/// READ COMMITTED whatever the server's default: the operations rely on
/// each statement seeing what committed before it started (after waiting
/// for a row lock or a conflicting insert).
/// First key of the per-conversation advisory lock of appends (the second
/// is a hash of the conversation id; a collision only serialises two
/// conversations' appends). Distinct from the migrations' lock class.
const APPEND_LOCK_CLASS: i32 = 0x4e61_7441; // "NatA"

async fn begin(client: &mut Client) -> StoreResult<Transaction<'_>> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(pg)
}

async fn commit(tx: Transaction<'_>) -> StoreResult<()> {
    tx.commit().await.map_err(pg)
}

async fn rollback(tx: Transaction<'_>) -> StoreResult<()> {
    tx.rollback().await.map_err(pg)
}

fn limit(n: u32) -> i64 {
    i64::from(n)
}

/// Escapes `\`, `%` and `_` so that user input is matched literally by
/// `LIKE`/`ILIKE` (whose default escape character is `\`).
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn session(row: &Row, at: usize) -> StoreResult<Session> {
    Ok(Session {
        id: SessionId(get(row, at)?),
        user_id: UserId(get(row, at + 1)?),
        created_at: get(row, at + 2)?,
        expires_at: get(row, at + 3)?,
        user_agent: get(row, at + 4)?,
    })
}

/// `username, display_name, name, groups, added_at`.
fn contact(row: &Row) -> StoreResult<Contact> {
    Ok(Contact {
        user: rows::user_ref(row, 0)?.ok_or_else(|| backend("contact without a user"))?,
        name: get(row, 2)?,
        groups: get(row, 3)?,
        added_at: get(row, 4)?,
    })
}

fn direct_key(a: UserId, b: UserId) -> String {
    format!("{}:{}", a.0.min(b.0), a.0.max(b.0))
}

const MESSAGE_BY_SEQ: &str = concat!(
    "SELECT ",
    message_cols!("m", "u"),
    " FROM messages m JOIN users u ON u.id = m.sender_id",
    " WHERE m.conversation_id = $1 AND m.seq = $2"
);

const MESSAGE_BY_ID: &str = concat!(
    "SELECT ",
    message_cols!("m", "u"),
    " FROM messages m JOIN users u ON u.id = m.sender_id",
    " WHERE m.id = $1"
);

const MESSAGE_BY_CLIENT_ID: &str = concat!(
    "SELECT ",
    message_cols!("m", "u"),
    " FROM messages m JOIN users u ON u.id = m.sender_id",
    " WHERE m.sender_id = $1 AND m.client_id = $2"
);

const CONVERSATION_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1)";

/// The other members of user `$1`'s direct conversations: the people who
/// see each other's presence without being contacts. Uses `members_user`,
/// then the primary keys of conversations and members.
macro_rules! direct_peers_sql {
    () => {
        concat!(
            "SELECT peer.user_id FROM members me",
            " JOIN conversations dc ON dc.id = me.conversation_id AND dc.kind = 'direct'",
            " JOIN members peer ON peer.conversation_id = me.conversation_id",
            "   AND peer.user_id <> me.user_id",
            " WHERE me.user_id = $1"
        )
    };
}

/// The users with a block between them and user `$1`, either way: blocked
/// pairs share no presence. Uses the primary key and `blocks_target`.
macro_rules! blocked_pairs_sql {
    () => {
        concat!(
            "SELECT target_id FROM blocks WHERE owner_id = $1",
            " UNION SELECT owner_id FROM blocks WHERE target_id = $1"
        )
    };
}

/// The body of `list_conversations`, with or without a keyset condition.
/// Columns: the conversation, the viewer's role and read marker, the member
/// count, the peer of a direct conversation and the last message.
macro_rules! list_conversations_sql {
    ($keyset:literal) => {
        concat!(
            "SELECT ",
            conversation_cols!("c"),
            ", m.role, m.read_seq,",
            " (SELECT count(*) FROM members mc WHERE mc.conversation_id = c.id),",
            " peer.username, peer.display_name, ",
            message_cols!("lm", "lu"),
            " FROM members m",
            " JOIN conversations c ON c.id = m.conversation_id",
            " LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq",
            " LEFT JOIN users lu ON lu.id = lm.sender_id",
            " LEFT JOIN LATERAL (",
            "   SELECT pu.username, pu.display_name",
            "   FROM members pm JOIN users pu ON pu.id = pm.user_id",
            "   WHERE pm.conversation_id = c.id AND pm.user_id <> m.user_id",
            "   ORDER BY pm.joined_at, pu.username LIMIT 1",
            " ) peer ON c.kind = 'direct'",
            " WHERE m.user_id = $1",
            $keyset,
            " ORDER BY c.last_activity_at DESC, c.id DESC",
            " LIMIT $2"
        )
    };
}

impl PgStore {
    pub(crate) async fn conn(&self) -> StoreResult<Client> {
        self.pool.get().await.map_err(pool)
    }

    async fn conversation_exists<C: GenericClient>(c: &C, id: ConversationId) -> StoreResult<bool> {
        match query_opt(c, CONVERSATION_EXISTS, &[&id.0]).await? {
            Some(row) => get(&row, 0),
            None => Ok(false),
        }
    }

    /// Why an append matched no row, if it was a block: the sender is a
    /// member of a direct conversation where someone blocked someone (the
    /// sender's own block first). `None` otherwise.
    async fn append_refusal<C: GenericClient>(
        c: &C,
        id: ConversationId,
        sender: UserId,
    ) -> StoreResult<Option<StoreError>> {
        let owners: Vec<i64> = query(
            c,
            "SELECT b.owner_id FROM conversations c JOIN blocks b ON b.pair_key = c.direct_key
             WHERE c.id = $1
               AND EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = $1 AND m.user_id = $2)",
            &[&id.0, &sender.0],
        )
        .await?
        .iter()
        .map(|row| get(row, 0))
        .collect::<StoreResult<_>>()?;
        Ok(if owners.contains(&sender.0) {
            Some(StoreError::SenderBlocked)
        } else if owners.is_empty() {
            None
        } else {
            Some(StoreError::RecipientBlocked)
        })
    }

    /// The conversation exists: tells `NotFound` from `NotMember` once an
    /// operation found no membership row.
    async fn not_member_or_not_found<C: GenericClient>(
        c: &C,
        id: ConversationId,
    ) -> StoreResult<StoreError> {
        Ok(if PgStore::conversation_exists(c, id).await? {
            StoreError::NotMember
        } else {
            StoreError::NotFound("conversation")
        })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        let c = self.conn().await?;
        c.simple_query("SELECT 1").await.map_err(pg)?;
        Ok(())
    }

    // --- accounts -------------------------------------------------------

    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        let c = self.conn().await?;
        let creds = &new.credentials;
        let iterations = i32::try_from(creds.iterations)
            .map_err(|_| backend("iteration count does not fit the column"))?;
        let display_name = new.display_name.as_ref().map(DisplayName::as_str);
        let row = query_opt(
            &c,
            concat!(
                "INSERT INTO users AS u (username, display_name, created_at, salt, iterations,",
                " sha1_stored_key, sha1_server_key, sha256_stored_key, sha256_server_key)",
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                " RETURNING ",
                user_cols!("u")
            ),
            &[
                &new.username.as_str(),
                &display_name,
                &new.now,
                &creds.salt,
                &iterations,
                &creds.sha1.stored_key,
                &creds.sha1.server_key,
                &creds.sha256.stored_key,
                &creds.sha256.server_key,
            ],
        )
        .await?
        .ok_or_else(|| backend("INSERT .. RETURNING returned no row"))?;
        rows::user(&row, 0)
    }

    async fn user_by_username(&self, username: &Username) -> StoreResult<Option<User>> {
        let c = self.conn().await?;
        let row = query_opt(
            &c,
            concat!(
                "SELECT ",
                user_cols!("u"),
                " FROM users u WHERE u.username = $1"
            ),
            &[&username.as_str()],
        )
        .await?;
        row.map(|r| rows::user(&r, 0)).transpose()
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        let c = self.conn().await?;
        let row = query_opt(
            &c,
            concat!("SELECT ", user_cols!("u"), " FROM users u WHERE u.id = $1"),
            &[&id.0],
        )
        .await?;
        row.map(|r| rows::user(&r, 0)).transpose()
    }

    async fn users_by_username(&self, usernames: &[Username]) -> StoreResult<Vec<User>> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        let names: Vec<&str> = usernames.iter().map(Username::as_str).collect();
        query(
            &c,
            concat!(
                "SELECT ",
                user_cols!("u"),
                " FROM users u WHERE u.username = ANY($1) ORDER BY u.username"
            ),
            &[&names],
        )
        .await?
        .iter()
        .map(|r| rows::user(r, 0))
        .collect()
    }

    async fn credentials(&self, id: UserId) -> StoreResult<Option<Credentials>> {
        let c = self.conn().await?;
        let Some(row) = query_opt(
            &c,
            "SELECT salt, iterations, sha1_stored_key, sha1_server_key, sha256_stored_key,
                    sha256_server_key
             FROM users WHERE id = $1",
            &[&id.0],
        )
        .await?
        else {
            return Ok(None);
        };
        let iterations: i32 = get(&row, 1)?;
        Ok(Some(Credentials {
            salt: get(&row, 0)?,
            iterations: u32::try_from(iterations)
                .map_err(|_| backend("stored iteration count is negative"))?,
            sha1: ScramKeys {
                stored_key: get(&row, 2)?,
                server_key: get(&row, 3)?,
            },
            sha256: ScramKeys {
                stored_key: get(&row, 4)?,
                server_key: get(&row, 5)?,
            },
        }))
    }

    async fn set_user_disabled(&self, id: UserId, at: Option<Timestamp>) -> StoreResult<()> {
        let c = self.conn().await?;
        // One statement, so the flag and the end of the sessions commit
        // together.
        let row = query_opt(
            &c,
            "WITH u AS (UPDATE users SET disabled_at = $2 WHERE id = $1 RETURNING id),
                  d AS (DELETE FROM sessions
                         WHERE user_id IN (SELECT id FROM u) AND $2::timestamptz IS NOT NULL)
             SELECT id FROM u",
            &[&id.0, &at],
        )
        .await?;
        row.map(|_| ()).ok_or(StoreError::NotFound("user"))
    }

    async fn user_disabled_at(&self, id: UserId) -> StoreResult<Option<Timestamp>> {
        let c = self.conn().await?;
        let row = query_opt(&c, "SELECT disabled_at FROM users WHERE id = $1", &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        get(&row, 0)
    }

    async fn set_display_name(&self, id: UserId, name: Option<DisplayName>) -> StoreResult<User> {
        let c = self.conn().await?;
        let name = name.as_ref().map(DisplayName::as_str);
        let row = query_opt(
            &c,
            concat!(
                "UPDATE users AS u SET display_name = $2 WHERE u.id = $1 RETURNING ",
                user_cols!("u")
            ),
            &[&id.0, &name],
        )
        .await?
        .ok_or(StoreError::NotFound("user"))?;
        rows::user(&row, 0)
    }

    async fn set_credentials(
        &self,
        id: UserId,
        credentials: Credentials,
        keep: Option<SessionId>,
    ) -> StoreResult<()> {
        let iterations = i32::try_from(credentials.iterations)
            .map_err(|_| backend("iteration count does not fit the column"))?;
        let keep = keep.map(|s| s.0);
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let updated = execute(
            &tx,
            "UPDATE users SET salt = $2, iterations = $3, sha1_stored_key = $4,
                    sha1_server_key = $5, sha256_stored_key = $6, sha256_server_key = $7
             WHERE id = $1",
            &[
                &id.0,
                &credentials.salt,
                &iterations,
                &credentials.sha1.stored_key,
                &credentials.sha1.server_key,
                &credentials.sha256.stored_key,
                &credentials.sha256.server_key,
            ],
        )
        .await?;
        if updated == 0 {
            rollback(tx).await?;
            return Err(StoreError::NotFound("user"));
        }
        execute(
            &tx,
            "DELETE FROM sessions WHERE user_id = $1 AND ($2::uuid IS NULL OR id <> $2)",
            &[&id.0, &keep],
        )
        .await?;
        commit(tx).await
    }

    async fn search_users(&self, query_text: &str, max: u32) -> StoreResult<Vec<User>> {
        // Usernames are stored lowercase ASCII, so a lowercase prefix with
        // LIKE finds them; display names need ILIKE.
        let prefix = format!("{}%", escape_like(&query_text.to_lowercase()));
        let contains = format!("%{}%", escape_like(query_text));
        let c = self.conn().await?;
        query(
            &c,
            concat!(
                "SELECT ",
                user_cols!("u"),
                " FROM users u",
                " WHERE u.username LIKE $1 OR u.display_name ILIKE $2",
                " ORDER BY u.username LIMIT $3"
            ),
            &[&prefix, &contains, &limit(max)],
        )
        .await?
        .iter()
        .map(|r| rows::user(r, 0))
        .collect()
    }

    // --- sessions -------------------------------------------------------

    async fn create_session(&self, new: NewSession) -> StoreResult<Session> {
        let c = self.conn().await?;
        let row = query_opt(
            &c,
            "INSERT INTO sessions AS s (id, user_id, token_hash, created_at, expires_at, user_agent)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING s.id, s.user_id, s.created_at, s.expires_at, s.user_agent",
            &[
                &new.id.0,
                &new.user_id.0,
                &new.token_hash.as_slice(),
                &new.created_at,
                &new.expires_at,
                &new.user_agent,
            ],
        )
        .await?
        .ok_or_else(|| backend("INSERT .. RETURNING returned no row"))?;
        session(&row, 0)
    }

    async fn session_by_token(
        &self,
        token_hash: &[u8; 32],
    ) -> StoreResult<Option<(Session, User)>> {
        let c = self.conn().await?;
        let row = query_opt(
            &c,
            concat!(
                "SELECT s.id, s.user_id, s.created_at, s.expires_at, s.user_agent, ",
                user_cols!("u"),
                " FROM sessions s JOIN users u ON u.id = s.user_id",
                " WHERE s.token_hash = $1"
            ),
            &[&token_hash.as_slice()],
        )
        .await?;
        match row {
            Some(row) => Ok(Some((session(&row, 0)?, rows::user(&row, 5)?))),
            None => Ok(None),
        }
    }

    async fn list_sessions(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<Session>> {
        let c = self.conn().await?;
        query(
            &c,
            "SELECT s.id, s.user_id, s.created_at, s.expires_at, s.user_agent
             FROM sessions s
             WHERE s.user_id = $1 AND s.expires_at > $2
             ORDER BY s.created_at DESC, s.id DESC",
            &[&user.0, &now],
        )
        .await?
        .iter()
        .map(|r| session(r, 0))
        .collect()
    }

    async fn session_valid(&self, id: SessionId, now: Timestamp) -> StoreResult<bool> {
        let c = self.conn().await?;
        let row = query_opt(
            &c,
            "SELECT 1 FROM sessions WHERE id = $1 AND expires_at > $2",
            &[&id.0, &now],
        )
        .await?;
        Ok(row.is_some())
    }

    async fn revoke_session(&self, user: UserId, id: SessionId) -> StoreResult<bool> {
        let c = self.conn().await?;
        let n = execute(
            &c,
            "DELETE FROM sessions WHERE user_id = $1 AND id = $2",
            &[&user.0, &id.0],
        )
        .await?;
        Ok(n > 0)
    }

    /// A session whose `expires_at` is `now` counts as expired, as it does
    /// for `list_sessions`.
    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let c = self.conn().await?;
        execute(&c, "DELETE FROM sessions WHERE expires_at <= $1", &[&now]).await
    }

    // --- contacts -------------------------------------------------------

    async fn put_contact(
        &self,
        owner: UserId,
        contact_id: UserId,
        name: Option<ContactName>,
        groups: ContactGroups,
        now: Timestamp,
    ) -> StoreResult<(Contact, bool)> {
        let c = self.conn().await?;
        let name = name.as_ref().map(ContactName::as_str);
        // `xmax = 0` holds for a freshly inserted row version and not for
        // one that `ON CONFLICT DO UPDATE` locked and rewrote: one
        // statement, no race, and we learn which it was.
        let row = query_opt(
            &c,
            "WITH c AS (
                 INSERT INTO contacts (owner_id, contact_id, name, groups, added_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (owner_id, contact_id)
                 DO UPDATE SET name = EXCLUDED.name, groups = EXCLUDED.groups
                 RETURNING contact_id, name, groups, added_at, (xmax = 0) AS inserted
             )
             SELECT u.username, u.display_name, c.name, c.groups, c.added_at, c.inserted
             FROM c JOIN users u ON u.id = c.contact_id",
            &[&owner.0, &contact_id.0, &name, &groups.as_slice(), &now],
        )
        .await?
        .ok_or_else(|| backend("INSERT .. RETURNING returned no row"))?;
        Ok((contact(&row)?, get(&row, 5)?))
    }

    async fn remove_contact(&self, owner: UserId, contact_id: UserId) -> StoreResult<bool> {
        let c = self.conn().await?;
        let n = execute(
            &c,
            "DELETE FROM contacts WHERE owner_id = $1 AND contact_id = $2",
            &[&owner.0, &contact_id.0],
        )
        .await?;
        Ok(n > 0)
    }

    async fn list_contacts(&self, owner: UserId) -> StoreResult<Vec<Contact>> {
        let c = self.conn().await?;
        query(
            &c,
            "SELECT u.username, u.display_name, c.name, c.groups, c.added_at
             FROM contacts c JOIN users u ON u.id = c.contact_id
             WHERE c.owner_id = $1
             ORDER BY u.username",
            &[&owner.0],
        )
        .await?
        .iter()
        .map(contact)
        .collect()
    }

    // --- blocking -------------------------------------------------------

    async fn block_user(&self, owner: UserId, target: UserId, now: Timestamp) -> StoreResult<bool> {
        let c = self.conn().await?;
        // Both users must exist: the insert takes its values from them, so
        // a missing one inserts nothing and is told apart below.
        let n = execute(
            &c,
            "INSERT INTO blocks (owner_id, target_id, pair_key, blocked_at)
             SELECT o.id, t.id, $3, $4 FROM users o, users t WHERE o.id = $1 AND t.id = $2
             ON CONFLICT (owner_id, target_id) DO NOTHING",
            &[&owner.0, &target.0, &direct_key(owner, target), &now],
        )
        .await?;
        if n > 0 {
            return Ok(true);
        }
        let users: i64 = query_opt(
            &c,
            "SELECT count(*) FROM users WHERE id = $1 OR id = $2",
            &[&owner.0, &target.0],
        )
        .await?
        .map(|row| get(&row, 0))
        .transpose()?
        .unwrap_or(0);
        let wanted = if owner == target { 1 } else { 2 };
        if users < wanted {
            return Err(StoreError::NotFound("user"));
        }
        Ok(false)
    }

    async fn unblock_user(&self, owner: UserId, target: UserId) -> StoreResult<bool> {
        let c = self.conn().await?;
        let n = execute(
            &c,
            "DELETE FROM blocks WHERE owner_id = $1 AND target_id = $2",
            &[&owner.0, &target.0],
        )
        .await?;
        Ok(n > 0)
    }

    async fn unblock_all(&self, owner: UserId) -> StoreResult<u64> {
        let c = self.conn().await?;
        execute(&c, "DELETE FROM blocks WHERE owner_id = $1", &[&owner.0]).await
    }

    async fn blocked_users(&self, owner: UserId) -> StoreResult<Vec<BlockedUser>> {
        let c = self.conn().await?;
        query(
            &c,
            "SELECT u.username, u.display_name, b.blocked_at
             FROM blocks b JOIN users u ON u.id = b.target_id
             WHERE b.owner_id = $1
             ORDER BY u.username",
            &[&owner.0],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(BlockedUser {
                user: rows::user_ref(row, 0)?.ok_or_else(|| backend("block without a user"))?,
                blocked_at: get(row, 2)?,
            })
        })
        .collect()
    }

    async fn blocks_between(&self, a: UserId, b: UserId) -> StoreResult<Blocks> {
        if a == b {
            return Ok(Blocks::default());
        }
        let c = self.conn().await?;
        let owners: Vec<i64> = query(
            &c,
            "SELECT owner_id FROM blocks WHERE pair_key = $1",
            &[&direct_key(a, b)],
        )
        .await?
        .iter()
        .map(|row| get(row, 0))
        .collect::<StoreResult<_>>()?;
        Ok(Blocks {
            by_first: owners.contains(&a.0),
            by_second: owners.contains(&b.0),
        })
    }

    async fn direct_blocked(&self, id: ConversationId) -> StoreResult<bool> {
        let c = self.conn().await?;
        let row = query_opt(
            &c,
            "SELECT EXISTS (SELECT 1 FROM conversations c JOIN blocks b
                            ON b.pair_key = c.direct_key WHERE c.id = $1)",
            &[&id.0],
        )
        .await?;
        match row {
            Some(row) => get(&row, 0),
            None => Ok(false),
        }
    }

    // --- conversations --------------------------------------------------

    async fn direct_conversation(
        &self,
        a: UserId,
        b: UserId,
        now: Timestamp,
    ) -> StoreResult<(Conversation, bool)> {
        if a == b {
            return Err(backend("a direct conversation needs two distinct users"));
        }
        let key = direct_key(a, b);
        const BY_KEY: &str = concat!(
            "SELECT ",
            conversation_cols!("c"),
            " FROM conversations c WHERE c.direct_key = $1"
        );
        let mut c = self.conn().await?;
        // The common case: it exists already.
        if let Some(row) = query_opt(&c, BY_KEY, &[&key]).await? {
            return Ok((rows::conversation(&row, 0)?, false));
        }

        let tx = begin(&mut c).await?;
        let id = ConversationId::new();
        let inserted = query_opt(
            &tx,
            concat!(
                "INSERT INTO conversations AS c",
                " (id, kind, title, direct_key, created_at, last_seq, last_activity_at)",
                " VALUES ($1, 'direct', NULL, $2, $3, 0, $3)",
                " ON CONFLICT (direct_key) DO NOTHING",
                " RETURNING ",
                conversation_cols!("c")
            ),
            &[&id.0, &key, &now],
        )
        .await?;
        let Some(row) = inserted else {
            // Another call won the race; the insert waited for its commit,
            // so this statement (a new snapshot) sees its conversation.
            let row = query_opt(&tx, BY_KEY, &[&key])
                .await?
                .ok_or_else(|| backend("direct conversation vanished after a conflict"))?;
            rollback(tx).await?;
            return Ok((rows::conversation(&row, 0)?, false));
        };
        let conversation = rows::conversation(&row, 0)?;
        execute(
            &tx,
            "INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq)
             VALUES ($1, $2, 'member', $4, 0), ($1, $3, 'member', $4, 0)",
            &[&id.0, &a.0, &b.0, &conversation.created_at],
        )
        .await?;
        events::append(&tx, id, &event_codec::conversation_created(), now).await?;
        commit(tx).await?;
        Ok((conversation, true))
    }

    async fn create_group(&self, new: NewGroup) -> StoreResult<Conversation> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let row = query_opt(
            &tx,
            concat!(
                "INSERT INTO conversations AS c",
                " (id, kind, title, direct_key, created_at, last_seq, last_activity_at)",
                " VALUES ($1, 'group', $2, NULL, $3, 0, $3)",
                " RETURNING ",
                conversation_cols!("c")
            ),
            &[&new.id.0, &new.title.as_str(), &new.now],
        )
        .await?
        .ok_or_else(|| backend("INSERT .. RETURNING returned no row"))?;
        let conversation = rows::conversation(&row, 0)?;
        let others: Vec<i64> = new.members.iter().map(|u| u.0).collect();
        execute(
            &tx,
            "INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq)
             SELECT $1::uuid, $2::bigint, 'owner', $4::timestamptz, 0
             UNION ALL
             SELECT DISTINCT $1::uuid, u, 'member', $4::timestamptz, 0
             FROM unnest($3::bigint[]) AS t (u)
             WHERE u <> $2::bigint",
            &[&new.id.0, &new.owner.0, &others, &conversation.created_at],
        )
        .await?;
        // The members come with the record: no member.added events.
        events::append(&tx, new.id, &event_codec::conversation_created(), new.now).await?;
        commit(tx).await?;
        Ok(conversation)
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<Conversation>> {
        let c = self.conn().await?;
        let row = query_opt(
            &c,
            concat!(
                "SELECT ",
                conversation_cols!("c"),
                " FROM conversations c WHERE c.id = $1"
            ),
            &[&id.0],
        )
        .await?;
        row.map(|r| rows::conversation(&r, 0)).transpose()
    }

    /// Direct conversations have no title: renaming one is `NotFound`.
    /// Renaming a group to the title it has changes nothing and appends
    /// nothing.
    async fn rename_group(
        &self,
        id: ConversationId,
        title: GroupTitle,
    ) -> StoreResult<Conversation> {
        let c = self.conn().await?;
        let event = event_codec::renamed(title.as_str());
        let renamed = query_opt(
            &c,
            concat!(
                "WITH c AS (",
                "   UPDATE conversations AS c SET title = $2",
                "   WHERE c.id = $1 AND c.kind = 'group' AND c.title IS DISTINCT FROM $2",
                "   RETURNING *",
                " ), ev AS (",
                "   INSERT INTO events",
                "     (conversation_id, kind, seq, payload, target_user_id, created_at)",
                "   SELECT c.id, $3, $4::bigint, $5::text::jsonb, $6::bigint, $7::timestamptz",
                "   FROM c",
                " )",
                " SELECT ",
                conversation_cols!("c"),
                " FROM c"
            ),
            &[
                &id.0,
                &title.as_str(),
                &event.kind,
                &event.seq,
                &event.payload,
                &event.target_user.map(|u| u.0),
                &events::clock(),
            ],
        )
        .await?;
        if let Some(row) = renamed {
            return rows::conversation(&row, 0);
        }
        // Already so titled (or no such group): read it after any
        // concurrent rename that the update waited for.
        let row = query_opt(
            &c,
            concat!(
                "SELECT ",
                conversation_cols!("c"),
                " FROM conversations c WHERE c.id = $1 AND c.kind = 'group'"
            ),
            &[&id.0],
        )
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
        rows::conversation(&row, 0)
    }

    async fn members(&self, id: ConversationId) -> StoreResult<Vec<Member>> {
        let c = self.conn().await?;
        query(
            &c,
            "SELECT u.username, u.display_name, m.role, m.joined_at, m.read_seq, m.delivered_seq
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = $1
             ORDER BY m.joined_at, u.username",
            &[&id.0],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(Member {
                user: rows::user_ref(row, 0)?.ok_or_else(|| backend("member without a user"))?,
                role: rows::role(get(row, 2)?)?,
                joined_at: get(row, 3)?,
                read_seq: get(row, 4)?,
                delivered_seq: get(row, 5)?,
            })
        })
        .collect()
    }

    async fn member_role(&self, id: ConversationId, user: UserId) -> StoreResult<Option<Role>> {
        let c = self.conn().await?;
        let row = query_opt(
            &c,
            "SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2",
            &[&id.0, &user.0],
        )
        .await?;
        row.map(|r| rows::role(get(&r, 0)?)).transpose()
    }

    async fn set_member(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        // A new member has read (and so received) everything before they
        // joined. An existing member is only updated if the role changes;
        // no row back means no change or no such conversation. `xmax = 0`:
        // see `put_contact`.
        let changed = query_opt(
            &tx,
            "WITH m AS (
                 INSERT INTO members
                     (conversation_id, user_id, role, joined_at, read_seq, delivered_seq)
                 SELECT c.id, $2, $3, $4, c.last_seq, c.last_seq
                 FROM conversations c WHERE c.id = $1
                 ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = EXCLUDED.role
                 WHERE members.role <> EXCLUDED.role
                 RETURNING user_id, (xmax = 0) AS inserted
             )
             SELECT m.inserted, u.username, u.display_name
             FROM m JOIN users u ON u.id = m.user_id",
            &[&id.0, &user.0, &role.as_str(), &now],
        )
        .await?;
        let Some(row) = changed else {
            rollback(tx).await?;
            return if PgStore::conversation_exists(&c, id).await? {
                Ok(false)
            } else {
                Err(StoreError::NotFound("conversation"))
            };
        };
        let inserted: bool = get(&row, 0)?;
        let who = rows::user_ref(&row, 1)?.ok_or_else(|| backend("member without a user"))?;
        let event = if inserted {
            event_codec::member_added(&who, role)
        } else {
            event_codec::role_changed(&who.username, role)
        };
        events::append(&tx, id, &event, now).await?;
        commit(tx).await?;
        Ok(inserted)
    }

    async fn remove_member(&self, id: ConversationId, user: UserId) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        // Serialises removals (and appends) in this conversation, so the
        // owner check below sees every other removal.
        let Some(conv) = query_opt(
            &tx,
            "SELECT kind FROM conversations WHERE id = $1 FOR NO KEY UPDATE",
            &[&id.0],
        )
        .await?
        else {
            rollback(tx).await?;
            return Ok(false);
        };
        let kind: String = get(&conv, 0)?;
        let Some(removed) = query_opt(
            &tx,
            "DELETE FROM members m USING users u
             WHERE m.conversation_id = $1 AND m.user_id = $2 AND u.id = m.user_id
             RETURNING m.role, u.username",
            &[&id.0, &user.0],
        )
        .await?
        else {
            rollback(tx).await?;
            return Ok(false);
        };
        let at = events::clock();
        let name = rows::username(get(&removed, 1)?)?;
        events::append(&tx, id, &event_codec::member_removed(user, &name), at).await?;
        if kind == "group" && rows::role(get(&removed, 0)?)? == Role::Owner {
            // The longest-standing admin, else member, unless an owner is
            // left; nothing if nobody is.
            let promoted = query_opt(
                &tx,
                "UPDATE members m SET role = 'owner'
                 FROM users u
                 WHERE m.conversation_id = $1 AND u.id = m.user_id
                   AND NOT EXISTS (
                       SELECT 1 FROM members o WHERE o.conversation_id = $1 AND o.role = 'owner')
                   AND m.user_id = (
                       SELECT n.user_id FROM members n JOIN users nu ON nu.id = n.user_id
                       WHERE n.conversation_id = $1
                       ORDER BY n.role = 'admin' DESC, n.joined_at, nu.username
                       LIMIT 1)
                 RETURNING u.username",
                &[&id.0],
            )
            .await?;
            if let Some(row) = promoted {
                let name = rows::username(get(&row, 0)?)?;
                events::append(&tx, id, &event_codec::role_changed(&name, Role::Owner), at).await?;
            }
        }
        commit(tx).await?;
        Ok(true)
    }

    async fn list_conversations(
        &self,
        user: UserId,
        after: Option<ConversationCursor>,
        max: u32,
    ) -> StoreResult<Vec<ConversationSummary>> {
        let c = self.conn().await?;
        let found = match after {
            None => query(&c, list_conversations_sql!(""), &[&user.0, &limit(max)]).await?,
            Some(cursor) => {
                query(
                    &c,
                    list_conversations_sql!(" AND (c.last_activity_at, c.id) < ($3, $4)"),
                    &[&user.0, &limit(max), &cursor.last_activity_at, &cursor.id.0],
                )
                .await?
            }
        };
        let at = CONVERSATION_COLS;
        found
            .iter()
            .map(|row| {
                let conversation = rows::conversation(row, 0)?;
                let read_seq: i64 = get(row, at + 1)?;
                Ok(ConversationSummary {
                    role: rows::role(get(row, at)?)?,
                    member_count: get(row, at + 2)?,
                    peer: rows::user_ref(row, at + 3)?,
                    last_message: rows::optional_message(row, at + 5)?,
                    unread: (conversation.last_seq - read_seq).max(0),
                    read_seq,
                    conversation,
                })
            })
            .collect()
    }

    // --- messages -------------------------------------------------------

    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;

        // A retry of a message already stored?
        if let Some(row) = query_opt(
            &tx,
            MESSAGE_BY_CLIENT_ID,
            &[&new.sender.0, &new.client_id.as_str()],
        )
        .await?
        {
            rollback(tx).await?;
            return existing(rows::message(&row, 0)?, new.conversation_id);
        }

        // Serialise the conversation's appenders before this transaction
        // gets its id. The event log is ordered by transaction id, and ids
        // are handed out at a transaction's first write: two appenders that
        // both got an id and then raced for the row lock below could take
        // sequence numbers in the opposite order of their ids, and readers
        // of the log would see seq 3 before seq 2. An advisory lock needs
        // no transaction id, so whoever holds it gets its id (at the UPDATE)
        // after the previous holder committed: ids, and so log positions,
        // follow sequence numbers within a conversation.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::text))",
            &[&APPEND_LOCK_CLASS, &new.conversation_id.0.to_string()],
        )
        .await
        .map_err(pg)?;

        // The next number, under the conversation's row lock until commit.
        // Membership and, for a direct conversation, the absence of a block
        // are part of the condition (one probe of `blocks_pair`; a group's
        // NULL `direct_key` matches nothing): no row means no conversation,
        // no membership or a block, told apart below.
        let Some(row) = query_opt(
            &tx,
            "UPDATE conversations c
             SET last_seq = c.last_seq + 1, last_activity_at = $3
             WHERE c.id = $1
               AND EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = $1 AND m.user_id = $2)
               AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.pair_key = c.direct_key)
             RETURNING c.last_seq",
            &[&new.conversation_id.0, &new.sender.0, &new.now],
        )
        .await?
        else {
            let error = match PgStore::append_refusal(&tx, new.conversation_id, new.sender).await? {
                Some(blocked) => blocked,
                None => PgStore::not_member_or_not_found(&tx, new.conversation_id).await?,
            };
            rollback(tx).await?;
            return Err(error);
        };
        let seq: i64 = get(&row, 0)?;

        // Store it, move the sender's read and delivered markers and
        // append the event, unless a concurrent call with the same
        // client_id committed first (the insert waits for it, then does
        // nothing, and so do the statements that depend on it).
        let event = event_codec::message_created(seq);
        let inserted = query_opt(
            &tx,
            concat!(
                "WITH ins AS (",
                "   INSERT INTO messages (conversation_id, seq, id, sender_id, client_id, body, sent_at)",
                "   VALUES ($1, $2, $3, $4, $5, $6, $7)",
                "   ON CONFLICT (sender_id, client_id) DO NOTHING",
                "   RETURNING *",
                " ), mark AS (",
                "   UPDATE members SET read_seq = GREATEST(read_seq, $2),",
                "     delivered_seq = GREATEST(delivered_seq, $2)",
                "   WHERE conversation_id = $1 AND user_id = $4 AND EXISTS (SELECT 1 FROM ins)",
                " ), ev AS (",
                "   INSERT INTO events",
                "     (conversation_id, kind, seq, payload, target_user_id, created_at)",
                "   SELECT ins.conversation_id, $8, $9::bigint, $10::text::jsonb, $11::bigint,",
                "     ins.sent_at",
                "   FROM ins",
                " )",
                " SELECT ",
                message_cols!("ins", "u"),
                " FROM ins JOIN users u ON u.id = ins.sender_id"
            ),
            &[
                &new.conversation_id.0,
                &seq,
                &new.id.0,
                &new.sender.0,
                &new.client_id.as_str(),
                &new.body.as_str(),
                &new.now,
                &event.kind,
                &event.seq,
                &event.payload,
                &event.target_user.map(|u| u.0),
            ],
        )
        .await?;
        let Some(row) = inserted else {
            // Lost the race to a duplicate: the rollback restores last_seq.
            rollback(tx).await?;
            let row = query_opt(
                &c,
                MESSAGE_BY_CLIENT_ID,
                &[&new.sender.0, &new.client_id.as_str()],
            )
            .await?
            .ok_or_else(|| backend("duplicate message vanished after a conflict"))?;
            return existing(rows::message(&row, 0)?, new.conversation_id);
        };
        let message = rows::message(&row, 0)?;
        commit(tx).await?;
        Ok(Appended {
            message,
            created: true,
        })
    }

    async fn messages(&self, id: ConversationId, q: HistoryQuery) -> StoreResult<Vec<Message>> {
        let c = self.conn().await?;
        let before = q.before.unwrap_or(i64::MAX);
        let mut messages = match q.after {
            Some(after) => query(
                &c,
                concat!(
                    "SELECT ",
                    message_cols!("m", "u"),
                    " FROM messages m JOIN users u ON u.id = m.sender_id",
                    " WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq < $3",
                    " ORDER BY m.seq LIMIT $4"
                ),
                &[&id.0, &after, &before, &limit(q.limit)],
            )
            .await?
            .iter()
            .map(|r| rows::message(r, 0))
            .collect::<StoreResult<Vec<_>>>()?,
            None => query(
                &c,
                concat!(
                    "SELECT ",
                    message_cols!("m", "u"),
                    " FROM messages m JOIN users u ON u.id = m.sender_id",
                    " WHERE m.conversation_id = $1 AND m.seq < $2",
                    " ORDER BY m.seq DESC LIMIT $3"
                ),
                &[&id.0, &before, &limit(q.limit)],
            )
            .await?
            .iter()
            .map(|r| rows::message(r, 0))
            .collect::<StoreResult<Vec<_>>>()?,
        };
        if q.after.is_none() {
            messages.reverse();
        }
        Ok(messages)
    }

    async fn message(&self, id: ConversationId, seq: i64) -> StoreResult<Option<Message>> {
        let c = self.conn().await?;
        let row = query_opt(&c, MESSAGE_BY_SEQ, &[&id.0, &seq]).await?;
        row.map(|r| rows::message(&r, 0)).transpose()
    }

    async fn message_by_id(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let c = self.conn().await?;
        let row = query_opt(&c, MESSAGE_BY_ID, &[&id.0]).await?;
        row.map(|r| rows::message(&r, 0)).transpose()
    }

    async fn message_by_client_id(
        &self,
        sender: UserId,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        let c = self.conn().await?;
        let row = query_opt(&c, MESSAGE_BY_CLIENT_ID, &[&sender.0, &client_id]).await?;
        row.map(|r| rows::message(&r, 0)).transpose()
    }

    async fn edit_message(
        &self,
        id: ConversationId,
        seq: i64,
        body: Body,
        now: Timestamp,
    ) -> StoreResult<Option<Message>> {
        let c = self.conn().await?;
        let event = event_codec::message_edited(seq);
        let row = query_opt(
            &c,
            concat!(
                "WITH m AS (",
                "   UPDATE messages SET body = $3, edited_at = $4",
                "   WHERE conversation_id = $1 AND seq = $2 AND deleted_at IS NULL",
                "   RETURNING *",
                " ), ev AS (",
                "   INSERT INTO events",
                "     (conversation_id, kind, seq, payload, target_user_id, created_at)",
                "   SELECT m.conversation_id, $5, $6::bigint, $7::text::jsonb, $8::bigint,",
                "     $4::timestamptz",
                "   FROM m",
                " )",
                " SELECT ",
                message_cols!("m", "u"),
                " FROM m JOIN users u ON u.id = m.sender_id"
            ),
            &[
                &id.0,
                &seq,
                &body.as_str(),
                &now,
                &event.kind,
                &event.seq,
                &event.payload,
                &event.target_user.map(|u| u.0),
            ],
        )
        .await?;
        row.map(|r| rows::message(&r, 0)).transpose()
    }

    async fn delete_message(
        &self,
        id: ConversationId,
        seq: i64,
        now: Timestamp,
    ) -> StoreResult<Option<Message>> {
        let c = self.conn().await?;
        let event = event_codec::message_deleted(seq);
        let row = query_opt(
            &c,
            concat!(
                "WITH m AS (",
                "   UPDATE messages SET body = NULL, deleted_at = $3",
                "   WHERE conversation_id = $1 AND seq = $2 AND deleted_at IS NULL",
                "   RETURNING *",
                " ), ev AS (",
                "   INSERT INTO events",
                "     (conversation_id, kind, seq, payload, target_user_id, created_at)",
                "   SELECT m.conversation_id, $4, $5::bigint, $6::text::jsonb, $7::bigint,",
                "     $3::timestamptz",
                "   FROM m",
                " )",
                " SELECT ",
                message_cols!("m", "u"),
                " FROM m JOIN users u ON u.id = m.sender_id"
            ),
            &[
                &id.0,
                &seq,
                &now,
                &event.kind,
                &event.seq,
                &event.payload,
                &event.target_user.map(|u| u.0),
            ],
        )
        .await?;
        row.map(|r| rows::message(&r, 0)).transpose()
    }

    /// Raises the delivered marker with the read marker, without a
    /// `Delivered` event.
    async fn mark_read(&self, id: ConversationId, user: UserId, seq: i64) -> StoreResult<i64> {
        self.move_marker(Marker::Read, id, user, seq).await
    }

    async fn mark_delivered(&self, id: ConversationId, user: UserId, seq: i64) -> StoreResult<i64> {
        self.move_marker(Marker::Delivered, id, user, seq).await
    }

    /// One transaction, and so one commit to wait for, for the burst.
    async fn mark_delivered_many(
        &self,
        marks: &[(ConversationId, UserId, i64)],
    ) -> StoreResult<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        for &(id, user, seq) in marks {
            // No row: the marker does not move, or there is no such member
            // any more; either way there is nothing to write.
            if let Some(row) = query_opt(&tx, MOVE_DELIVERED, &[&id.0, &user.0, &seq]).await? {
                let moved_to: i64 = get(&row, 0)?;
                let name = rows::username(get(&row, 1)?)?;
                let event = event_codec::delivered(&name, moved_to);
                events::append(&tx, id, &event, events::clock()).await?;
            }
        }
        commit(tx).await
    }

    // --- events ---------------------------------------------------------

    async fn event_head(&self) -> StoreResult<EventPos> {
        events::event_head(self).await
    }

    async fn events_after(&self, after: EventPos, limit: u32) -> StoreResult<Vec<Event>> {
        events::events_after(self, after, limit).await
    }

    async fn user_events_after(
        &self,
        user: UserId,
        after: EventPos,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        events::user_events_after(self, user, after, limit).await
    }

    // --- presence -------------------------------------------------------

    /// Times only move forward: nodes that record a user's comings and
    /// goings out of order keep the latest.
    async fn set_last_seen(&self, user: UserId, at: Timestamp) -> StoreResult<()> {
        let c = self.conn().await?;
        let n = execute(
            &c,
            "UPDATE users SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id = $1",
            &[&user.0, &at],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn presence_audience(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        let c = self.conn().await?;
        query(
            &c,
            concat!(
                "SELECT id FROM (",
                "SELECT c.contact_id AS id FROM contacts c WHERE c.owner_id = $1",
                " UNION ",
                direct_peers_sql!(),
                ") a WHERE id NOT IN (",
                blocked_pairs_sql!(),
                ") ORDER BY 1"
            ),
            &[&user.0],
        )
        .await?
        .iter()
        .map(|row| Ok(UserId(get(row, 0)?)))
        .collect()
    }

    async fn presence_subjects(&self, user: UserId) -> StoreResult<Vec<PresencePeer>> {
        let c = self.conn().await?;
        query(
            &c,
            concat!(
                "SELECT u.id, u.username, u.last_seen_at FROM users u",
                " WHERE u.id IN (",
                "   SELECT c.owner_id FROM contacts c WHERE c.contact_id = $1",
                "   UNION ALL ",
                direct_peers_sql!(),
                " ) AND u.id NOT IN (",
                blocked_pairs_sql!(),
                ") ORDER BY u.username"
            ),
            &[&user.0],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(PresencePeer {
                id: UserId(get(row, 0)?),
                username: rows::username(get(row, 1)?)?,
                last_seen_at: get(row, 2)?,
            })
        })
        .collect()
    }
}

/// Which marker [`PgStore::move_marker`] moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Read,
    Delivered,
}

impl PgStore {
    /// Moves a member's marker forward to `seq`, clamped to the last
    /// message, and appends its event in the same transaction, only if it
    /// moves. Moving the read marker raises the delivered marker to it.
    ///
    /// The update matches no row unless the marker moves; a concurrent
    /// move of the same marker makes it wait for that commit and check
    /// again, so two calls never both append for one step. The event needs
    /// the member's username and the clamped value, which only the update
    /// knows, hence a second statement rather than one.
    async fn move_marker(
        &self,
        marker: Marker,
        id: ConversationId,
        user: UserId,
        seq: i64,
    ) -> StoreResult<i64> {
        const MOVE_READ: &str = "UPDATE members m
             SET read_seq = LEAST($3, c.last_seq),
                 delivered_seq = GREATEST(m.delivered_seq, LEAST($3, c.last_seq))
             FROM conversations c, users u
             WHERE c.id = $1 AND m.conversation_id = $1 AND m.user_id = $2 AND u.id = $2
               AND m.read_seq < LEAST($3, c.last_seq)
             RETURNING m.read_seq, u.username";
        const READ: &str =
            "SELECT m.read_seq FROM members m WHERE m.conversation_id = $1 AND m.user_id = $2";
        const DELIVERED: &str =
            "SELECT m.delivered_seq FROM members m WHERE m.conversation_id = $1 AND m.user_id = $2";
        let (update, current) = match marker {
            Marker::Read => (MOVE_READ, READ),
            Marker::Delivered => (MOVE_DELIVERED, DELIVERED),
        };

        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        if let Some(row) = query_opt(&tx, update, &[&id.0, &user.0, &seq]).await? {
            let moved_to: i64 = get(&row, 0)?;
            let name = rows::username(get(&row, 1)?)?;
            let event = match marker {
                Marker::Read => event_codec::read(&name, moved_to),
                Marker::Delivered => event_codec::delivered(&name, moved_to),
            };
            events::append(&tx, id, &event, events::clock()).await?;
            commit(tx).await?;
            return Ok(moved_to);
        }
        rollback(tx).await?;
        // It does not move: the marker as it is now, if there is a member.
        match query_opt(&c, current, &[&id.0, &user.0]).await? {
            Some(row) => get(&row, 0),
            None => Err(PgStore::not_member_or_not_found(&c, id).await?),
        }
    }
}

/// Moves a member's delivered marker forward (clamped to the last message);
/// returns the new marker and the member's name, or no row if it does not
/// move or there is no such member.
const MOVE_DELIVERED: &str = "UPDATE members m
     SET delivered_seq = LEAST($3, c.last_seq)
     FROM conversations c, users u
     WHERE c.id = $1 AND m.conversation_id = $1 AND m.user_id = $2 AND u.id = $2
       AND m.delivered_seq < LEAST($3, c.last_seq)
     RETURNING m.delivered_seq, u.username";

/// The answer to a `client_id` seen before: the original if it belongs to
/// this conversation, `ClientIdReused` if not.
fn existing(message: Message, conversation: ConversationId) -> StoreResult<Appended> {
    if message.conversation_id == conversation {
        Ok(Appended {
            message,
            created: false,
        })
    } else {
        Err(StoreError::ClientIdReused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like("b100_"), "b100\\_");
        assert_eq!(escape_like("50%"), "50\\%");
        assert_eq!(escape_like("a\\b"), "a\\\\b");
        assert_eq!(escape_like("plain"), "plain");
    }

    #[test]
    fn direct_keys_ignore_order() {
        assert_eq!(direct_key(UserId(7), UserId(3)), "3:7");
        assert_eq!(direct_key(UserId(3), UserId(7)), "3:7");
    }
}
