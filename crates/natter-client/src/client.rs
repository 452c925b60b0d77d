//! The REST half of the SDK: [`Client`], a cheap, clonable handle holding
//! the server's address, the bearer token and an HTTP connection pool, with
//! one typed async method per API operation.
//!
//! Requests and answers are the wire types of `natter-proto`, so the SDK
//! and the server cannot drift apart; every failure becomes a typed
//! [`Error`] built from the API's error object. Sending is idempotent: a
//! message gets its `client_id` once ([`Outgoing`]) and is retried with it
//! until the server acknowledges it, so a lost answer never duplicates it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::Stream;
use natter_proto::stream::{Command, Poll, ServerFrame, TypingCommand};
use natter_proto::{
    Block, BlockList, ChangePasswordRequest, Contact, ContactList, Conversation, ConversationList,
    ConversationSummary, CreateConversationRequest, EditMessageRequest, ErrorResponse, History,
    LogInRequest, LogInResponse, MarkReadRequest, Message, MessageResponse, PutContactRequest,
    PutMemberRequest, ReadMarker, Role, Session, SessionList, SignUpRequest, UpdateProfileRequest,
    User, UserList,
};
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::events::{Cursor, Transport};
use crate::stream::EventStream;

/// Settings of a [`Client`]; every field has a sensible default.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest wait for an ordinary request (not a long-poll).
    pub request_timeout: Duration,
    /// Longest wait to open a connection (TCP, TLS, WebSocket handshake).
    pub connect_timeout: Duration,
    /// Sent as `User-Agent`, and shown in the user's session list.
    pub user_agent: String,
    /// How the event stream reaches the server.
    pub transport: Transport,
    /// Spacing of reconnection attempts, and of send retries.
    pub backoff: Backoff,
    /// How long [`Client::send`] keeps retrying a message whose
    /// acknowledgement did not arrive; `None` retries until it does.
    pub send_retry_for: Option<Duration>,
    /// With [`Transport::Auto`]: consecutive WebSocket failures (the
    /// server being reachable over HTTP) before falling back to
    /// long-polling. A WebSocket refused outright (HTTP 4xx on the upgrade,
    /// as proxies that block WebSocket answer) falls back at once.
    pub websocket_failures_before_fallback: u32,
    /// With [`Transport::Auto`], after falling back: how long to long-poll
    /// before trying WebSocket again.
    pub retry_websocket_after: Duration,
    /// How long one long-poll may wait on the server (at most 60 s).
    pub poll_timeout: Duration,
    /// Events buffered between the connection and the application. When
    /// it is full the SDK stops reading; a server whose queue for this
    /// client then overflows disconnects it, and it resumes from its
    /// cursor without losing anything.
    pub event_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: format!("natter-client/{}", env!("CARGO_PKG_VERSION")),
            transport: Transport::Auto,
            backoff: Backoff::default(),
            send_retry_for: Some(Duration::from_secs(120)),
            websocket_failures_before_fallback: 3,
            retry_websocket_after: Duration::from_secs(300),
            poll_timeout: Duration::from_secs(25),
            event_buffer: 256,
        }
    }
}

/// Builds a [`Client`] with non-default [`Options`] or a stored token.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    server: String,
    token: Option<String>,
    options: Options,
}

impl ClientBuilder {
    /// A token from an earlier [`Client::login`].
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    pub fn transport(mut self, transport: Transport) -> Self {
        self.options.transport = transport;
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.request_timeout = timeout;
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.options.user_agent = user_agent.into();
        self
    }

    pub fn build(self) -> Result<Client> {
        let base = parse_server(&self.server)?;
        #[cfg(feature = "tls")]
        crate::tls::install_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(self.options.connect_timeout)
            .user_agent(self.options.user_agent.clone())
            .build()
            .map_err(|e| Error::config(crate::error::chain(&e)))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token: RwLock::new(self.token),
                options: self.options,
            }),
        })
    }
}

/// Checks the server URL: `http://host[:port][/prefix]`, or `https://`
/// with the `tls` feature. The result has no trailing slash.
fn parse_server(server: &str) -> Result<Url> {
    let mut url = Url::parse(server.trim()).map_err(|e| {
        Error::config(format!(
            "{server:?} is not a server URL ({e}); use e.g. http://127.0.0.1:8080"
        ))
    })?;
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => {
            return Err(Error::config(
                "https:// needs natter-client built with the `tls` feature \
                 (e.g. cargo build -p natter-server --features natter-cli/tls)",
            ));
        }
        other => {
            return Err(Error::config(format!(
                "unsupported scheme {other:?} in {server:?}: use http:// or https://"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(format!("{server:?} has no host")));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// A typed client of one Natter server. Clones share the connection pool
/// and the token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: RwLock<Option<String>>,
    options: Options,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server())
            .field("logged_in", &self.token().is_some())
            .finish()
    }
}

/// Which page of history to fetch; see [`Client::history`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Messages with a smaller sequence number (paging backwards).
    pub before: Option<i64>,
    /// Messages with a greater sequence number (paging forwards).
    pub after: Option<i64>,
    /// 1 to 100; the server's default (50) when `None`.
    pub limit: Option<u32>,
}

/// A message to send, with the `client_id` chosen once for all its
/// attempts. Keep it (even across restarts of the application) until
/// [`Client::send_outgoing`] succeeds: sending it again can never
/// duplicate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Outgoing {
    pub conversation_id: Uuid,
    pub client_id: String,
    pub body: String,
}

impl Outgoing {
    /// A message with a fresh `client_id` (a UUIDv7).
    pub fn new(conversation_id: Uuid, body: impl Into<String>) -> Self {
        Self {
            conversation_id,
            client_id: Uuid::now_v7().to_string(),
            body: body.into(),
        }
    }
}

/// The server's acknowledgement of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The message as stored.
    pub message: Message,
    /// `false` when an earlier attempt had already stored it (its answer
    /// was lost): the stored message is returned, not a duplicate.
    pub created: bool,
    /// How many requests it took.
    pub attempts: u32,
}

/// An answer's status and body.
struct Answer {
    status: u16,
    bytes: Vec<u8>,
}

impl Client {
    /// A client of the server at `server` (`http://host:port`), not logged
    /// in.
    pub fn new(server: &str) -> Result<Client> {
        Self::builder(server).build()
    }

    pub fn builder(server: &str) -> ClientBuilder {
        ClientBuilder {
            server: server.to_owned(),
            token: None,
            options: Options::default(),
        }
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        self.inner.base.as_str().trim_end_matches('/')
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The bearer token in use, if logged in.
    pub fn token(&self) -> Option<String> {
        self.inner.token.read().expect("token lock").clone()
    }

    /// Uses `token` (from an earlier log-in) from now on, for this client
    /// and its clones.
    pub fn set_token(&self, token: Option<String>) {
        *self.inner.token.write().expect("token lock") = token;
    }

    // ----- plumbing ------------------------------------------------------

    /// `base` + `/api/v1/` + the segments, each percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        {
            let mut path = url.path_segments_mut().expect("http URLs have paths");
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let mut req = self
            .inner
            .http
            .request(method, url)
            .timeout(self.inner.options.request_timeout);
        if let Some(token) = self.token() {
            req = req.bearer_auth(token);
        }
        req
    }

    async fn execute(&self, req: reqwest::RequestBuilder) -> Result<Answer> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await?.to_vec();
        if (200..300).contains(&status) {
            return Ok(Answer { status, bytes });
        }
        let body = serde_json::from_slice::<ErrorResponse>(&bytes)
            .ok()
            .map(|r| r.error);
        Err(Error::from_api(status, body, retry_after))
    }

    fn decode<T: DeserializeOwned>(answer: &Answer) -> Result<T> {
        serde_json::from_slice(&answer.bytes).map_err(|e| {
            Error::protocol(format!(
                "unexpected answer from the server (HTTP {}): {e}",
                answer.status
            ))
        })
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T> {
        let answer = self.execute(self.request(Method::GET, url)).await?;
        Self::decode(&answer)
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &B,
    ) -> Result<(u16, T)> {
        let answer = self.execute(self.request(method, url).json(body)).await?;
        Ok((answer.status, Self::decode(&answer)?))
    }

    async fn delete(&self, url: Url) -> Result<()> {
        self.execute(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    // ----- accounts ------------------------------------------------------

    /// Creates an account (when the server's registration is open). Does
    /// not log in.
    pub async fn signup(
        &self,
        username: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> Result<User> {
        let req = SignUpRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            display_name: display_name.map(str::to_owned),
        };
        Ok(self
            .send_json(Method::POST, self.url(&["accounts"]), &req)
            .await?
            .1)
    }

    /// Logs in; this client (and its clones) use the new token from now
    /// on. Keep `token` to skip the log-in next time
    /// ([`ClientBuilder::token`]).
    pub async fn login(&self, username: &str, password: &str) -> Result<LogInResponse> {
        let req = LogInRequest {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let (_, out): (_, LogInResponse) = self
            .send_json(Method::POST, self.url(&["sessions"]), &req)
            .await?;
        self.set_token(Some(out.token.clone()));
        Ok(out)
    }

    /// Ends this session on the server and forgets the token.
    pub async fn logout(&self) -> Result<()> {
        self.delete(self.url(&["sessions", "current"])).await?;
        self.set_token(None);
        Ok(())
    }

    /// The logged-in user.
    pub async fn me(&self) -> Result<User> {
        self.get(self.url(&["me"])).await
    }

    /// Sets (or with `None` clears) the display name.
    pub async fn set_display_name(&self, name: Option<&str>) -> Result<User> {
        let req = UpdateProfileRequest {
            display_name: Some(name.map(str::to_owned)),
        };
        Ok(self
            .send_json(Method::PATCH, self.url(&["me"]), &req)
            .await?
            .1)
    }

    /// Changes the password; the server revokes every other session.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<()> {
        let req = ChangePasswordRequest {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        self.execute(
            self.request(Method::PUT, self.url(&["me", "password"]))
                .json(&req),
        )
        .await?;
        Ok(())
    }

    /// The user's active sessions (devices).
    pub async fn sessions(&self) -> Result<Vec<Session>> {
        let list: SessionList = self.get(self.url(&["sessions"])).await?;
        Ok(list.sessions)
    }

    /// Searches the directory by username prefix or part of a display
    /// name; at most `limit` (≤ 50, default 20) users.
    pub async fn search_users(&self, query: &str, limit: Option<u32>) -> Result<Vec<User>> {
        let mut url = self.url(&["users"]);
        url.query_pairs_mut().append_pair("q", query);
        if let Some(l) = limit {
            url.query_pairs_mut().append_pair("limit", &l.to_string());
        }
        let list: UserList = self.get(url).await?;
        Ok(list.users)
    }

    /// One user's public profile.
    pub async fn user(&self, username: &str) -> Result<User> {
        self.get(self.url(&["users", username])).await
    }

    // ----- contacts ------------------------------------------------------

    /// The contact list, ordered by username.
    pub async fn contacts(&self) -> Result<Vec<Contact>> {
        let list: ContactList = self.get(self.url(&["contacts"])).await?;
        Ok(list.contacts)
    }

    /// Adds a contact, or updates its name and groups; returns it and
    /// whether it is new.
    pub async fn put_contact(
        &self,
        username: &str,
        details: &PutContactRequest,
    ) -> Result<(Contact, bool)> {
        let (status, contact) = self
            .send_json(Method::PUT, self.url(&["contacts", username]), details)
            .await?;
        Ok((contact, status == 201))
    }

    pub async fn remove_contact(&self, username: &str) -> Result<()> {
        self.delete(self.url(&["contacts", username])).await
    }

    // ----- blocks --------------------------------------------------------

    /// The blocked list, ordered by username.
    pub async fn blocks(&self) -> Result<Vec<Block>> {
        let list: BlockList = self.get(self.url(&["blocks"])).await?;
        Ok(list.blocks)
    }

    /// Blocks a user; returns the entry and whether it is new.
    pub async fn block(&self, username: &str) -> Result<(Block, bool)> {
        let (status, block) = self
            .send_json(
                Method::PUT,
                self.url(&["blocks", username]),
                &serde_json::json!({}),
            )
            .await?;
        Ok((block, status == 201))
    }

    /// Unblocks a user (`block_not_found` if they were not blocked).
    pub async fn unblock(&self, username: &str) -> Result<()> {
        self.delete(self.url(&["blocks", username])).await
    }

    /// Unblocks everyone.
    pub async fn unblock_all(&self) -> Result<()> {
        self.delete(self.url(&["blocks"])).await
    }

    // ----- conversations -------------------------------------------------

    /// One page of conversations, most recently active first; pass the
    /// page's `next_cursor` for the next one.
    pub async fn conversations_page(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ConversationList> {
        let mut url = self.url(&["conversations"]);
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        if let Some(l) = limit {
            url.query_pairs_mut().append_pair("limit", &l.to_string());
        }
        self.get(url).await
    }

    /// Every conversation of the user, with unread counts, most recently
    /// active first.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .conversations_page(cursor.as_deref(), Some(100))
                .await?;
            all.extend(page.conversations);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One conversation with its members.
    pub async fn conversation(&self, id: Uuid) -> Result<Conversation> {
        self.get(self.url(&["conversations", &id.to_string()]))
            .await
    }

    /// The direct conversation with `username`, created on first use.
    pub async fn direct(&self, username: &str) -> Result<Conversation> {
        let req = CreateConversationRequest::Direct {
            with: username.to_owned(),
        };
        Ok(self
            .send_json(Method::POST, self.url(&["conversations"]), &req)
            .await?
            .1)
    }

    /// A new group owned by the caller, with the given other members.
    pub async fn create_group(&self, title: &str, members: &[String]) -> Result<Conversation> {
        let req = CreateConversationRequest::Group {
            title: title.to_owned(),
            members: members.to_vec(),
        };
        Ok(self
            .send_json(Method::POST, self.url(&["conversations"]), &req)
            .await?
            .1)
    }

    /// Renames a group (admins and owners).
    pub async fn rename_group(&self, id: Uuid, title: &str) -> Result<Conversation> {
        let req = natter_proto::UpdateConversationRequest {
            title: title.to_owned(),
        };
        Ok(self
            .send_json(
                Method::PATCH,
                self.url(&["conversations", &id.to_string()]),
                &req,
            )
            .await?
            .1)
    }

    /// Adds a member to a group, or changes a member's role.
    pub async fn set_member(
        &self,
        id: Uuid,
        username: &str,
        role: Option<Role>,
    ) -> Result<Conversation> {
        let req = PutMemberRequest { role };
        Ok(self
            .send_json(
                Method::PUT,
                self.url(&["conversations", &id.to_string(), "members", username]),
                &req,
            )
            .await?
            .1)
    }

    /// Removes a member, or leaves when `username` is the caller's.
    pub async fn remove_member(&self, id: Uuid, username: &str) -> Result<()> {
        self.delete(self.url(&["conversations", &id.to_string(), "members", username]))
            .await
    }

    // ----- messages ------------------------------------------------------

    /// One page of history, in ascending order. Without `after` the page
    /// ends at `before` (or the newest message); with `after` it starts
    /// right after it. `has_more` says whether more lie beyond, in the
    /// paging direction.
    pub async fn history(&self, id: Uuid, query: HistoryQuery) -> Result<History> {
        let mut url = self.url(&["conversations", &id.to_string(), "messages"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(b) = query.before {
                q.append_pair("before", &b.to_string());
            }
            if let Some(a) = query.after {
                q.append_pair("after", &a.to_string());
            }
            if let Some(l) = query.limit {
                q.append_pair("limit", &l.to_string());
            }
        }
        self.get(url).await
    }

    /// Every message after sequence number `after` (0: from the start), in
    /// order, fetched in pages of 100 as the stream is read.
    pub fn messages_after(
        &self,
        id: Uuid,
        after: i64,
    ) -> impl Stream<Item = Result<Message>> + Send + 'static {
        struct Pages {
            client: Client,
            after: i64,
            page: std::vec::IntoIter<Message>,
            more: bool,
        }
        let state = Pages {
            client: self.clone(),
            after,
            page: Vec::new().into_iter(),
            more: true,
        };
        futures::stream::try_unfold(state, move |mut s| async move {
            loop {
                if let Some(m) = s.page.next() {
                    s.after = m.seq;
                    return Ok(Some((m, s)));
                }
                if !s.more {
                    return Ok(None);
                }
                let query = HistoryQuery {
                    after: Some(s.after),
                    limit: Some(100),
                    ..Default::default()
                };
                let h = s.client.history(id, query).await?;
                s.more = h.has_more && !h.messages.is_empty();
                s.page = h.messages.into_iter();
            }
        })
    }

    /// Sends `body` to a conversation: chooses a `client_id`, then retries
    /// (network failures, server errors, rate limits) with the same one
    /// until the server acknowledges, for at most
    /// [`Options::send_retry_for`].
    pub async fn send(&self, conversation: Uuid, body: impl Into<String>) -> Result<Sent> {
        self.send_outgoing(&Outgoing::new(conversation, body)).await
    }

    /// Sends (or re-sends) a message with its `client_id`; see
    /// [`Client::send`]. Safe to call again with the same [`Outgoing`]
    /// after any failure, even from another process.
    pub async fn send_outgoing(&self, out: &Outgoing) -> Result<Sent> {
        let deadline = self
            .inner
            .options
            .send_retry_for
            .map(|d| tokio::time::Instant::now() + d);
        let mut backoff = self.inner.options.backoff.start();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.send_once(out).await {
                Ok((message, created)) => {
                    return Ok(Sent {
                        message,
                        created,
                        attempts,
                    });
                }
                Err(e) if e.is_retryable() => {
                    let wait = backoff.next_wait().max(e.retry_after().unwrap_or_default());
                    if deadline.is_some_and(|d| tokio::time::Instant::now() + wait > d) {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, attempt = attempts, ?wait, client_id = %out.client_id, "send not acknowledged; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt; the message and whether this attempt stored it.
    async fn send_once(&self, out: &Outgoing) -> Result<(Message, bool)> {
        let req = natter_proto::SendMessageRequest {
            client_id: out.client_id.clone(),
            body: out.body.clone(),
        };
        let (status, resp): (_, MessageResponse) = self
            .send_json(
                Method::POST,
                self.url(&[
                    "conversations",
                    &out.conversation_id.to_string(),
                    "messages",
                ]),
                &req,
            )
            .await?;
        Ok((resp.message, status == 201))
    }

    /// Edits one's own message.
    pub async fn edit(&self, conversation: Uuid, seq: i64, body: &str) -> Result<Message> {
        let req = EditMessageRequest {
            body: body.to_owned(),
        };
        let (_, r): (_, MessageResponse) = self
            .send_json(
                Method::PATCH,
                self.url(&[
                    "conversations",
                    &conversation.to_string(),
                    "messages",
                    &seq.to_string(),
                ]),
                &req,
            )
            .await?;
        Ok(r.message)
    }

    /// Deletes a message, leaving a tombstone; returns it.
    pub async fn delete_message(&self, conversation: Uuid, seq: i64) -> Result<Message> {
        let answer = self
            .execute(self.request(
                Method::DELETE,
                self.url(&[
                    "conversations",
                    &conversation.to_string(),
                    "messages",
                    &seq.to_string(),
                ]),
            ))
            .await?;
        Ok(Self::decode::<MessageResponse>(&answer)?.message)
    }

    /// Moves the read marker forward to `seq` (clamped to the last message;
    /// never backwards); returns where it stands.
    pub async fn mark_read(&self, conversation: Uuid, seq: i64) -> Result<i64> {
        let (_, r): (_, ReadMarker) = self
            .send_json(
                Method::POST,
                self.url(&["conversations", &conversation.to_string(), "read"]),
                &MarkReadRequest { seq },
            )
            .await?;
        Ok(r.read_seq)
    }

    /// Tells the conversation's members that the user is (or stopped)
    /// typing. Renew every few seconds while typing.
    pub async fn typing(&self, conversation: Uuid, active: bool) -> Result<()> {
        self.command(&Command::Typing(TypingCommand {
            reference: None,
            conversation_id: conversation,
            active,
        }))
        .await
        .map(drop)
    }

    /// Runs a real-time command over HTTP (`POST /api/v1/events`); the
    /// reply's `data`, or its error.
    pub async fn command(&self, command: &Command) -> Result<Option<serde_json::Value>> {
        let (_, frame): (_, ServerFrame) = self
            .send_json(Method::POST, self.url(&["events"]), command)
            .await?;
        match frame {
            ServerFrame::Reply(r) if r.ok => Ok(r.data),
            ServerFrame::Reply(r) => Err(r
                .error
                .map(Error::from_reply)
                .unwrap_or_else(|| Error::protocol("a failed reply without an error"))),
            other => Err(Error::protocol(format!(
                "expected a reply frame, got {other:?}"
            ))),
        }
    }

    // ----- real time -----------------------------------------------------

    /// One long-poll (`GET /api/v1/events`): without a cursor, the current
    /// position; with one, the events after it, waiting up to `wait`.
    pub async fn poll(&self, cursor: Option<&Cursor>, wait: Duration) -> Result<Poll> {
        let mut url = self.url(&["events"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(c) = cursor {
                q.append_pair("cursor", c.as_str());
            }
            q.append_pair("timeout", &wait.as_secs().min(60).to_string());
        }
        let req = self
            .request(Method::GET, url)
            .timeout(wait + self.inner.options.request_timeout);
        let answer = self.execute(req).await?;
        Self::decode(&answer)
    }

    /// Follows the user's events from now on: a [`futures::Stream`] that
    /// reconnects by itself and resumes from the last event it handed out.
    /// Must be called within a Tokio runtime.
    pub fn events(&self) -> EventStream {
        EventStream::spawn(self.clone(), None)
    }

    /// Follows the user's events after `cursor` (one saved from
    /// [`EventStream::cursor`] or [`crate::Event::cursor`]): everything
    /// missed since, in order, then live events. `None` starts from now.
    pub fn events_from(&self, cursor: Option<Cursor>) -> EventStream {
        EventStream::spawn(self.clone(), cursor)
    }

    /// The WebSocket URL of the stream (`ws://…/api/v1/stream`).
    pub(crate) fn stream_url(&self) -> Url {
        let mut url = self.url(&["stream"]);
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .expect("ws and wss are valid schemes");
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked_and_normalised() {
        let c = Client::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(c.server(), "http://127.0.0.1:8080");
        assert_eq!(
            c.url(&["conversations", "a b"]).as_str(),
            "http://127.0.0.1:8080/api/v1/conversations/a%20b"
        );
        assert_eq!(c.stream_url().as_str(), "ws://127.0.0.1:8080/api/v1/stream");
        let c = Client::new("http://example.org/natter/").unwrap();
        assert_eq!(
            c.url(&["me"]).as_str(),
            "http://example.org/natter/api/v1/me"
        );
        assert!(matches!(
            Client::new("ftp://example.org"),
            Err(Error::Config { .. })
        ));
        assert!(matches!(Client::new("nonsense"), Err(Error::Config { .. })));
        if !cfg!(feature = "tls") {
            assert!(matches!(
                Client::new("https://example.org"),
                Err(Error::Config { .. })
            ));
        }
    }

    /// With `tls`, https is accepted and really spoken: against a plain
    /// HTTP port the handshake fails as a network error.
    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn https_speaks_tls_with_ring() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let c = Client::new(&format!("https://{addr}")).unwrap();
        assert_eq!(c.stream_url().scheme(), "wss");
        let e = c.me().await.unwrap_err();
        assert!(matches!(e, Error::Network { .. }), "{e:?}");
    }

    #[test]
    fn outgoing_ids_are_unique() {
        let id = Uuid::now_v7();
        assert_ne!(
            Outgoing::new(id, "a").client_id,
            Outgoing::new(id, "a").client_id
        );
    }
}
