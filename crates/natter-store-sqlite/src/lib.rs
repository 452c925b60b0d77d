//! The SQLite backend of Natter's [`Store`]: a single file, no server to
//! run, and fast enough for a busy single-node deployment.
//!
//! SQLite allows one writer at a time, so the design follows from that:
//!
//! - every write is a job for **one writer thread** that owns the only
//!   write connection and commits jobs in groups (`writer.rs`): no
//!   "database is locked" between our own writers, and one `fdatasync` of
//!   the WAL per group of batches, run by a second thread while the writer
//!   goes on; a job's future resolves only after a sync that followed its
//!   batch's `COMMIT`;
//! - checkpoints (copying the WAL back into the database file) run on a
//!   **checkpointer thread** with its own connection (`checkpoint.rs`),
//!   not on the writer, which would stall every queued write meanwhile;
//! - reads go to a **small pool of read connections** (`readers.rs`),
//!   which in WAL mode run alongside the writer without blocking it;
//! - the schema is applied by embedded migrations when the store opens
//!   (`migrate.rs`);
//! - the event log (`events.rs`) is a table appended to by the write
//!   operations in their own job, so in the same transaction as the change;
//!   its rowid is the position, and with one writer rowid order is commit
//!   order. Its reads stop at the last *synced* commit, so no event goes
//!   out that a power cut could take back. The newest events are also
//!   kept in memory as the write jobs append them (`recent.rs`), so that
//!   the tailer's read of what was just written needs no SQL.
//!
//! [`SqliteStore`] is a handle: cloning it is cheap and every clone shares
//! the same writer and readers. When the last clone is dropped, the writer
//! finishes its queued jobs and closes the file before the drop returns.

mod accounts;
mod blocks;
mod checkpoint;
mod codec;
mod conn;
mod conversations;
mod events;
mod messages;
mod migrate;
mod presence;
mod readers;
mod recent;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use natter_store::{
    Appended, Blocks, ConversationCursor, HistoryQuery, NewGroup, NewMessage, NewSession, NewUser,
    PresencePeer, Store, StoreError, StoreResult,
};
use natter_types::{
    BlockedUser, Body, Contact, ContactGroups, ContactName, Conversation, ConversationId,
    ConversationSummary, Credentials, DisplayName, Event, EventPos, GroupTitle, Member, Message,
    MessageId, Role, Session, SessionId, Timestamp, User, UserId, Username,
};
use rusqlite::Connection;

use crate::checkpoint::Checkpointer;
use crate::readers::Readers;
use crate::recent::Recent;
use crate::writer::{Durability, DurableHead, Writer};

/// SQLite's name for the write-ahead log of the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Read connections per store. Reads are short point and range queries;
/// four is plenty for a 2-core machine and cheap on a bigger one.
const READERS: usize = 4;

/// A [`Store`] on one SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    // Dropped first: closing the writer joins its thread.
    writer: Writer,
    // Then the checkpointer, which ends once the write connection is gone.
    _checkpointer: Checkpointer,
    readers: Arc<Readers>,
    /// How far the event log may be read: see `writer.rs`.
    head: DurableHead,
    /// The newest events, kept as the writer appended them.
    recent: Arc<Recent>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file (and its directory)
    /// if needed, and brings its schema up to date.
    ///
    /// This blocks for as long as opening and migrating take; call it at
    /// start-up (or from `spawn_blocking`).
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        // Both name a database private to one connection, which the other
        // connections of the store would never see.
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            return Err(StoreError::Backend(format!(
                "the SQLite store needs a file, not {:?}",
                path.as_os_str()
            )));
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("creating directory {}: {e}", dir.display()))
            })?;
        }
        let mut write_conn = conn::open_writer(path)?;
        let applied = migrate::run(&mut write_conn)?;
        if !applied.is_empty() {
            tracing::info!(path = %path.display(), ?applied, "applied SQLite migrations");
        }
        let readers = Readers::open(path.to_owned(), READERS)?;
        let wal = wal_path(path);
        // What an earlier process committed may still sit in the page
        // cache; it is published as durable below, so sync it first.
        match std::fs::File::open(&wal) {
            Ok(f) => f
                .sync_data()
                .map_err(|e| StoreError::Backend(format!("syncing {}: {e}", wal.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Backend(format!(
                    "opening {}: {e}",
                    wal.display()
                )));
            }
        }
        let checkpointer = Checkpointer::start(&mut write_conn, path, checkpoint::Policy::DEFAULT)?;
        let start = events::head(&write_conn, i64::MAX)?.minor;
        let head = DurableHead::new(start);
        let recent = Arc::new(Recent::new(start));
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let writer = Writer::spawn(
            write_conn,
            Durability {
                wal: Some(wal),
                dir: Some(dir),
                head: head.clone(),
                read_head: {
                    let recent = recent.clone();
                    Box::new(move |c| recent.note_commit(c))
                },
            },
        )?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer,
                _checkpointer: checkpointer,
                readers,
                head,
                recent,
                path: path.to_owned(),
            }),
        })
    }

    /// The database file this store works on.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer thread, in the current batch's transaction;
    /// resolves after the transaction committed and was synced. `f` may
    /// run twice, the first run rolled back (see `writer.rs`).
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    /// Runs `f` on a pooled read connection, on a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.readers.read(f).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(codec::db_error)
        })
        .await?;
        // Ready means able to write: the writer must be alive and taking
        // jobs and its syncs succeeding. An empty job commits an empty
        // transaction, and its sync has nothing to flush.
        if !self.inner.writer.is_running() {
            return Err(StoreError::Backend("the SQLite writer has stopped".into()));
        }
        self.write(|_| Ok(())).await
    }

    // --- accounts -------------------------------------------------------

    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        self.write(move |c| accounts::create_user(c, &new)).await
    }

    async fn user_by_username(&self, username: &Username) -> StoreResult<Option<User>> {
        let username = username.clone();
        self.read(move |c| accounts::user_by_username(c, username.as_str()))
            .await
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        self.read(move |c| accounts::user_by_id(c, id)).await
    }

    async fn users_by_username(&self, usernames: &[Username]) -> StoreResult<Vec<User>> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let usernames = usernames.to_vec();
        self.read(move |c| accounts::users_by_username(c, &usernames))
            .await
    }

    async fn credentials(&self, id: UserId) -> StoreResult<Option<Credentials>> {
        self.read(move |c| accounts::credentials(c, id)).await
    }

    async fn set_user_disabled(&self, id: UserId, at: Option<Timestamp>) -> StoreResult<()> {
        self.write(move |c| accounts::set_disabled(c, id, at)).await
    }

    async fn user_disabled_at(&self, id: UserId) -> StoreResult<Option<Timestamp>> {
        self.read(move |c| accounts::disabled_at(c, id)).await
    }

    async fn set_display_name(&self, id: UserId, name: Option<DisplayName>) -> StoreResult<User> {
        self.write(move |c| accounts::set_display_name(c, id, name.as_ref()))
            .await
    }

    async fn set_credentials(
        &self,
        id: UserId,
        credentials: Credentials,
        keep: Option<SessionId>,
    ) -> StoreResult<()> {
        self.write(move |c| accounts::set_credentials(c, id, &credentials, keep))
            .await
    }

    async fn search_users(&self, query: &str, limit: u32) -> StoreResult<Vec<User>> {
        let query = query.to_owned();
        self.read(move |c| accounts::search_users(c, &query, limit))
            .await
    }

    // --- sessions -------------------------------------------------------

    async fn create_session(&self, new: NewSession) -> StoreResult<Session> {
        self.write(move |c| accounts::create_session(c, &new)).await
    }

    async fn session_by_token(
        &self,
        token_hash: &[u8; 32],
    ) -> StoreResult<Option<(Session, User)>> {
        let token_hash = *token_hash;
        self.read(move |c| accounts::session_by_token(c, &token_hash))
            .await
    }

    async fn list_sessions(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<Session>> {
        self.read(move |c| accounts::list_sessions(c, user, now))
            .await
    }

    async fn session_valid(&self, id: SessionId, now: Timestamp) -> StoreResult<bool> {
        self.read(move |c| accounts::session_valid(c, id, now))
            .await
    }

    async fn revoke_session(&self, user: UserId, id: SessionId) -> StoreResult<bool> {
        self.write(move |c| accounts::revoke_session(c, user, id))
            .await
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(move |c| accounts::purge_expired_sessions(c, now))
            .await
    }

    // --- contacts -------------------------------------------------------

    async fn put_contact(
        &self,
        owner: UserId,
        contact: UserId,
        name: Option<ContactName>,
        groups: ContactGroups,
        now: Timestamp,
    ) -> StoreResult<(Contact, bool)> {
        self.write(move |c| accounts::put_contact(c, owner, contact, name.as_ref(), &groups, now))
            .await
    }

    async fn remove_contact(&self, owner: UserId, contact: UserId) -> StoreResult<bool> {
        self.write(move |c| accounts::remove_contact(c, owner, contact))
            .await
    }

    async fn list_contacts(&self, owner: UserId) -> StoreResult<Vec<Contact>> {
        self.read(move |c| accounts::list_contacts(c, owner)).await
    }

    // --- blocking -------------------------------------------------------

    async fn block_user(&self, owner: UserId, target: UserId, now: Timestamp) -> StoreResult<bool> {
        self.write(move |c| blocks::block(c, owner, target, now))
            .await
    }

    async fn unblock_user(&self, owner: UserId, target: UserId) -> StoreResult<bool> {
        self.write(move |c| blocks::unblock(c, owner, target)).await
    }

    async fn unblock_all(&self, owner: UserId) -> StoreResult<u64> {
        self.write(move |c| blocks::unblock_all(c, owner)).await
    }

    async fn blocked_users(&self, owner: UserId) -> StoreResult<Vec<BlockedUser>> {
        self.read(move |c| blocks::list(c, owner)).await
    }

    async fn blocks_between(&self, a: UserId, b: UserId) -> StoreResult<Blocks> {
        self.read(move |c| blocks::between(c, a, b)).await
    }

    async fn direct_blocked(&self, id: ConversationId) -> StoreResult<bool> {
        self.read(move |c| blocks::direct_blocked(c, id)).await
    }

    // --- conversations --------------------------------------------------

    async fn direct_conversation(
        &self,
        a: UserId,
        b: UserId,
        now: Timestamp,
    ) -> StoreResult<(Conversation, bool)> {
        // The common case, an existing conversation, costs a read instead
        // of a turn of the writer and a sync.
        if let Some(conv) = self
            .read(move |c| conversations::existing_direct(c, a, b))
            .await?
        {
            return Ok((conv, false));
        }
        self.write(move |c| conversations::direct_conversation(c, a, b, now))
            .await
    }

    async fn create_group(&self, new: NewGroup) -> StoreResult<Conversation> {
        self.write(move |c| conversations::create_group(c, &new))
            .await
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<Conversation>> {
        self.read(move |c| conversations::conversation(c, id)).await
    }

    async fn rename_group(
        &self,
        id: ConversationId,
        title: GroupTitle,
    ) -> StoreResult<Conversation> {
        self.write(move |c| conversations::rename_group(c, id, &title))
            .await
    }

    async fn members(&self, id: ConversationId) -> StoreResult<Vec<Member>> {
        self.read(move |c| conversations::members(c, id)).await
    }

    async fn member_role(&self, id: ConversationId, user: UserId) -> StoreResult<Option<Role>> {
        self.read(move |c| conversations::member_role(c, id, user))
            .await
    }

    async fn set_member(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.write(move |c| conversations::set_member(c, id, user, role, now))
            .await
    }

    async fn remove_member(&self, id: ConversationId, user: UserId) -> StoreResult<bool> {
        self.write(move |c| conversations::remove_member(c, id, user))
            .await
    }

    async fn list_conversations(
        &self,
        user: UserId,
        after: Option<ConversationCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>> {
        self.read(move |c| conversations::list_conversations(c, user, after, limit))
            .await
    }

    // --- messages -------------------------------------------------------

    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended> {
        self.write(move |c| messages::append_message(c, &new)).await
    }

    async fn messages(&self, id: ConversationId, query: HistoryQuery) -> StoreResult<Vec<Message>> {
        self.read(move |c| messages::messages(c, id, query)).await
    }

    async fn message(&self, id: ConversationId, seq: i64) -> StoreResult<Option<Message>> {
        self.read(move |c| messages::message(c, id, seq)).await
    }

    async fn message_by_id(&self, id: MessageId) -> StoreResult<Option<Message>> {
        self.read(move |c| messages::message_by_id(c, id)).await
    }

    async fn message_by_client_id(
        &self,
        sender: UserId,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        let client_id = client_id.to_owned();
        self.read(move |c| messages::message_by_client_id(c, sender, &client_id))
            .await
    }

    async fn edit_message(
        &self,
        id: ConversationId,
        seq: i64,
        body: Body,
        now: Timestamp,
    ) -> StoreResult<Option<Message>> {
        self.write(move |c| messages::edit_message(c, id, seq, &body, now))
            .await
    }

    async fn delete_message(
        &self,
        id: ConversationId,
        seq: i64,
        now: Timestamp,
    ) -> StoreResult<Option<Message>> {
        self.write(move |c| messages::delete_message(c, id, seq, now))
            .await
    }

    async fn mark_read(&self, id: ConversationId, user: UserId, seq: i64) -> StoreResult<i64> {
        self.write(move |c| messages::mark(c, id, user, seq, messages::Marker::Read))
            .await
    }

    async fn mark_delivered(&self, id: ConversationId, user: UserId, seq: i64) -> StoreResult<i64> {
        self.write(move |c| messages::mark(c, id, user, seq, messages::Marker::Delivered))
            .await
    }

    /// One writer job for the whole burst, rather than a job (a queue
    /// hand-off, a savepoint and an answer) per marker.
    async fn mark_delivered_many(
        &self,
        marks: &[(ConversationId, UserId, i64)],
    ) -> StoreResult<()> {
        // A job of a thousand marks held the writer for several
        // milliseconds, and every message queued behind it waited that
        // long; in jobs of this size, one after the other, appends slip in
        // between.
        const MARKS_PER_JOB: usize = 64;
        for chunk in marks.chunks(MARKS_PER_JOB) {
            let chunk = chunk.to_vec();
            self.write(move |c| {
                for &(id, user, seq) in &chunk {
                    match messages::mark(c, id, user, seq, messages::Marker::Delivered) {
                        Ok(_) | Err(StoreError::NotMember | StoreError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    // --- events ---------------------------------------------------------

    async fn event_head(&self) -> StoreResult<EventPos> {
        let upto = self.inner.head.get();
        self.read(move |c| events::head(c, upto)).await
    }

    async fn events_after(&self, after: EventPos, limit: u32) -> StoreResult<Vec<Event>> {
        let upto = self.inner.head.get();
        if let Some(events) = self.inner.recent.after(after, limit, upto) {
            return Ok(events);
        }
        self.read(move |c| events::after(c, after, limit, upto))
            .await
    }

    async fn user_events_after(
        &self,
        user: UserId,
        after: EventPos,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let upto = self.inner.head.get();
        self.read(move |c| events::user_after(c, user, after, limit, upto))
            .await
    }

    // --- presence -------------------------------------------------------

    async fn set_last_seen(&self, user: UserId, at: Timestamp) -> StoreResult<()> {
        self.write(move |c| presence::set_last_seen(c, user, at))
            .await
    }

    async fn presence_audience(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        self.read(move |c| presence::audience(c, user)).await
    }

    async fn presence_subjects(&self, user: UserId) -> StoreResult<Vec<PresencePeer>> {
        self.read(move |c| presence::subjects(c, user)).await
    }
}
