//! The real-time transports: the JSON event stream over WebSocket
//! (`GET /api/v1/stream`) and its long-poll fallback
//! (`GET`/`POST /api/v1/events`). Both carry the same frames
//! (`natter_proto::stream`); commands from either go through
//! [`execute`], and events are encoded once per item by [`encode_event`],
//! whatever the number of recipients.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use natter_core::realtime::{
    Encoding, Item, Outbound, PresenceStatus, Stream, StreamEnd, TYPING_TTL,
};
use natter_core::{Caller, Hub};
use natter_proto as p;
use natter_proto::stream::{Command, EventData, EventFrame, Hello, Reply, ServerFrame, close};
use natter_types::{ClientId, ConversationId, EventKind, EventPos};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiQuery, Auth, parse_json};

/// Settings of the real-time transports.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Origins (`scheme://host[:port]`) allowed to open browser
    /// connections besides the server's own; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Largest WebSocket frame accepted from a client, in bytes.
    pub max_frame_bytes: usize,
    /// Commands a connection may send per second (also the burst).
    pub commands_per_second: u32,
    /// How often the server pings an idle WebSocket.
    pub heartbeat: Duration,
    /// How long the first (`auth`) frame may take.
    pub auth_timeout: Duration,
    /// Longest long-poll wait a client may ask for.
    pub max_poll_timeout: Duration,
}

impl StreamConfig {
    pub fn for_body_limit(max_body_bytes: usize) -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_frame_bytes: max_body_bytes.saturating_mul(6).saturating_add(16 * 1024),
            commands_per_second: 50,
            heartbeat: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            max_poll_timeout: Duration::from_secs(60),
        }
    }
}

// ----- encoding ---------------------------------------------------------

fn event_frame(item: &Item) -> EventFrame {
    let (event, cursor, data) = match item {
        Item::Event(e) => {
            let conversation_id = e.conversation_id.0;
            let data = match &e.kind {
                EventKind::MessageCreated(m)
                | EventKind::MessageEdited(m)
                | EventKind::MessageDeleted(m) => EventData::Message {
                    conversation_id,
                    message: m.clone().into(),
                },
                EventKind::Read { user, seq } | EventKind::Delivered { user, seq } => {
                    EventData::Receipt {
                        conversation_id,
                        user: user.to_string(),
                        seq: *seq,
                    }
                }
                EventKind::ConversationCreated(c) => EventData::Conversation {
                    conversation_id,
                    kind: c.kind.into(),
                    title: c.title.clone(),
                    created_at: c.created_at,
                },
                EventKind::ConversationRenamed { title } => EventData::Renamed {
                    conversation_id,
                    title: title.clone(),
                },
                EventKind::MemberAdded { user, role } => EventData::Member {
                    conversation_id,
                    user: user.username.to_string(),
                    display_name: user.display_name.clone(),
                    role: (*role).into(),
                },
                EventKind::MemberRoleChanged { user, role } => EventData::Member {
                    conversation_id,
                    user: user.to_string(),
                    display_name: None,
                    role: (*role).into(),
                },
                EventKind::MemberRemoved { user } => EventData::Removed {
                    conversation_id,
                    user: user.to_string(),
                },
            };
            (e.kind.name().to_owned(), Some(e.pos.to_string()), data)
        }
        Item::Presence {
            user,
            status,
            last_seen_at,
        } => (
            "presence".to_owned(),
            None,
            EventData::Presence {
                user: user.to_string(),
                status: wire_status(*status),
                last_seen_at: *last_seen_at,
            },
        ),
        Item::Typing {
            conversation_id,
            user,
            active,
        } => (
            "typing".to_owned(),
            None,
            EventData::Typing {
                conversation_id: conversation_id.0,
                user: user.to_string(),
                active: *active,
                expires_in_ms: TYPING_TTL.as_millis() as u64,
            },
        ),
        Item::SessionRevoked => ("session.revoked".to_owned(), None, EventData::Empty {}),
        Item::Blocklist {
            user: Some(user),
            blocked,
        } => (
            if *blocked {
                "block.added"
            } else {
                "block.removed"
            }
            .to_owned(),
            None,
            EventData::Block {
                user: user.to_string(),
            },
        ),
        Item::Blocklist { user: None, .. } => {
            ("block.cleared".to_owned(), None, EventData::Empty {})
        }
        // Never reaches here: JSON transports skip relays (see `is_relay`).
        Item::Relay { .. } => ("relay".to_owned(), None, EventData::Empty {}),
    };
    EventFrame {
        event,
        cursor,
        data,
    }
}

fn wire_status(s: PresenceStatus) -> p::stream::PresenceStatus {
    match s {
        PresenceStatus::Online => p::stream::PresenceStatus::Online,
        PresenceStatus::Away => p::stream::PresenceStatus::Away,
        PresenceStatus::Offline => p::stream::PresenceStatus::Offline,
    }
}

/// The JSON text of an item's event frame, encoded once per item and
/// shared by every recipient.
pub fn encode_event(out: &Outbound) -> Arc<str> {
    out.encoded(Encoding::Json, |item| {
        serde_json::to_string(&ServerFrame::Event(event_frame(item))).expect("frames serialise")
    })
}

fn frame_text(frame: &ServerFrame) -> String {
    serde_json::to_string(frame).expect("frames serialise")
}

fn error_body(e: &ApiError) -> p::ErrorBody {
    p::ErrorBody {
        code: e.code.to_string(),
        message: e.message.clone(),
        field: e.field.clone(),
    }
}

fn reply(reference: Option<String>, result: ApiResult<serde_json::Value>) -> ServerFrame {
    match result {
        Ok(data) => ServerFrame::Reply(Reply {
            reference,
            ok: true,
            data: (!data.is_null()).then_some(data),
            error: None,
        }),
        Err(e) => ServerFrame::Reply(Reply {
            reference,
            ok: false,
            data: None,
            error: Some(error_body(&e)),
        }),
    }
}

// ----- commands -----------------------------------------------------------

/// Parses a client frame: not JSON is `malformed_json`, an unknown `type`
/// is `unknown_type`, bad fields are `invalid_field`.
fn parse_command(text: &str) -> Result<Command, (Option<String>, ApiError)> {
    // The common case, a valid frame, costs one parse; the slower path
    // below only runs to explain what is wrong with a bad one.
    if let Ok(command) = serde_json::from_str::<Command>(text) {
        return Ok(command);
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        (
            None,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the frame is not valid JSON: {e}"),
            ),
        )
    })?;
    let reference = value.get("ref").and_then(|r| r.as_str()).map(str::to_owned);
    let Some(serde_json::Value::Object(mut fields)) = Some(value) else {
        return Err((
            reference,
            ApiError::invalid("body", "a frame is a JSON object"),
        ));
    };
    let kind = match fields.remove("type") {
        Some(serde_json::Value::String(t)) => t,
        _ => {
            return Err((
                reference,
                ApiError::invalid("type", "type: a frame needs a type"),
            ));
        }
    };
    // The fields are parsed without the tag, so that an error names the
    // field at fault (serde cannot track paths through a tagged enum).
    let rest = serde_json::to_vec(&fields).expect("a map serialises");
    let parsed = match kind.as_str() {
        "auth" => parse_json(&rest).map(Command::Auth),
        "send" => parse_json(&rest).map(Command::Send),
        "read" => parse_json(&rest).map(Command::Read),
        "typing" => parse_json(&rest).map(Command::Typing),
        "presence" => parse_json(&rest).map(Command::Presence),
        "ping" => parse_json(&rest).map(Command::Ping),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_type",
            format!("unknown frame type {other:?}"),
        )),
    };
    parsed.map_err(|e| (reference, e))
}

/// Where a `presence` command applies.
enum PresenceScope<'a> {
    Stream(&'a Stream),
    Poll,
}

/// Runs one command for `caller`; the same code serves WebSocket and
/// long-poll.
async fn execute(
    hub: &Hub,
    caller: &Caller,
    command: Command,
    scope: PresenceScope<'_>,
) -> ApiResult<serde_json::Value> {
    match command {
        Command::Auth(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "already_authenticated",
            "auth is only valid as the first frame of a stream",
        )),
        Command::Send(p::stream::SendCommand {
            conversation_id,
            client_id,
            body,
            ..
        }) => {
            let client_id = ClientId::parse(&client_id)?;
            let body = hub.parse_body(body)?;
            let out = hub
                .send_message(caller, ConversationId(conversation_id), client_id, body)
                .await?;
            Ok(serde_json::json!({
                "message": p::Message::from(out.message),
                "created": out.created,
            }))
        }
        Command::Read(p::stream::ReadCommand {
            conversation_id,
            seq,
            ..
        }) => {
            let read_seq = hub
                .mark_read(caller, ConversationId(conversation_id), seq)
                .await?;
            Ok(serde_json::json!({ "read_seq": read_seq }))
        }
        Command::Typing(p::stream::TypingCommand {
            conversation_id,
            active,
            ..
        }) => {
            hub.typing(caller, ConversationId(conversation_id), active)
                .await?;
            Ok(serde_json::Value::Null)
        }
        Command::Presence(p::stream::PresenceCommand { status, .. }) => {
            let status = match status {
                p::stream::PresenceStatus::Online => PresenceStatus::Online,
                p::stream::PresenceStatus::Away => PresenceStatus::Away,
                p::stream::PresenceStatus::Offline => PresenceStatus::Offline,
            };
            match scope {
                PresenceScope::Stream(stream) => stream.set_presence(status).await?,
                PresenceScope::Poll => hub.set_poll_presence(caller, status).await?,
            }
            Ok(serde_json::Value::Null)
        }
        Command::Ping(_) => Ok(serde_json::Value::Null),
    }
}

fn limiter(per_second: u32) -> DefaultDirectRateLimiter {
    let n = NonZeroU32::new(per_second.max(1)).expect("at least one");
    RateLimiter::direct(Quota::per_second(n))
}

fn rate_limited() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many commands; slow down",
    )
}

// ----- WebSocket ----------------------------------------------------------

/// Browsers always send `Origin`; other clients usually do not. A browser
/// page may connect only from the server's own origin or an allowed one.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host)
    })
}

/// `GET /api/v1/stream`: the real-time stream over WebSocket
/// (subprotocol `natter.v1`). The first frame must be `auth`.
pub async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &s.stream.allowed_origins) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "this origin may not open a stream",
        )
        .into_response();
    }
    ws.protocols([p::stream::SUBPROTOCOL])
        // Every connection keeps its read buffer, idle or not: the
        // library's default 128 KiB would dominate the memory of idle
        // connections. Client frames are commands, almost always under
        // 1 KiB; the buffer grows to hold a larger frame whole (read in
        // 1 KiB steps).
        .read_buffer_size(1024)
        .max_message_size(s.stream.max_frame_bytes)
        .max_frame_size(s.stream.max_frame_bytes)
        .on_upgrade(move |socket| run_socket(Box::new((socket, s))))
}

/// Closes with `code`, then waits briefly for the client's Close (the
/// closing handshake of RFC 6455), so that the client reads the code
/// before the connection goes away.
async fn close_with(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let sent = socket
        .send(WsMessage::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
    if sent.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn send_text(socket: &mut WebSocket, text: impl Into<Utf8Bytes>) -> bool {
    socket.send(WsMessage::Text(text.into())).await.is_ok()
}

/// Waits for the `auth` frame; `None` after closing the socket.
async fn authenticate(
    socket: &mut WebSocket,
    s: &AppState,
) -> Option<(Caller, Option<EventPos>, Option<String>)> {
    let first = match tokio::time::timeout(s.stream.auth_timeout, socket.recv()).await {
        Ok(Some(Ok(WsMessage::Text(t)))) => t,
        Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) => return None,
        _ => {
            close_with(socket, close::UNAUTHENTICATED, "expected an auth frame").await;
            return None;
        }
    };
    let (reference, token, cursor) = match parse_command(first.as_str()) {
        Ok(Command::Auth(a)) => (a.reference, a.token, a.cursor),
        Ok(other) => {
            let e = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the first frame must be auth",
            );
            send_text(
                socket,
                frame_text(&reply(other.reference().map(str::to_owned), Err(e))),
            )
            .await;
            close_with(
                socket,
                close::UNAUTHENTICATED,
                "the first frame must be auth",
            )
            .await;
            return None;
        }
        Err((reference, e)) => {
            send_text(socket, frame_text(&reply(reference, Err(e)))).await;
            close_with(
                socket,
                close::UNAUTHENTICATED,
                "the first frame must be auth",
            )
            .await;
            return None;
        }
    };
    let cursor = match cursor.as_deref().map(str::parse::<EventPos>) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(())) => {
            let e = ApiError::invalid("cursor", "cursor: not a cursor from this server");
            send_text(socket, frame_text(&reply(reference, Err(e)))).await;
            close_with(socket, close::UNAUTHENTICATED, "invalid cursor").await;
            return None;
        }
    };
    match s.hub.authenticate(&token).await {
        Ok(caller) => Some((caller, cursor, reference)),
        Err(e) => {
            send_text(socket, frame_text(&reply(reference, Err(e.into())))).await;
            close_with(socket, close::UNAUTHENTICATED, "authentication failed").await;
            None
        }
    }
}

/// Serves one stream until it ends. Every connection's task holds this
/// future for the connection's life, so it is kept small: the socket and
/// state come boxed (an async fn keeps its arguments besides the locals
/// they move into; the box is freed at once), and the calls whose futures
/// are large and short-lived (authentication, commands, closing) are
/// boxed where they are awaited.
async fn run_socket(args: Box<(WebSocket, AppState)>) {
    let (mut socket, s) = {
        let args = args;
        *args
    };
    let Some((caller, cursor, reference)) = Box::pin(authenticate(&mut socket, &s)).await else {
        return;
    };
    let mut stream = match Box::pin(s.hub.open_stream(&caller, cursor)).await {
        Ok(st) => st,
        Err(e) => {
            tracing::warn!(error = %e, "opening a stream failed");
            Box::pin(close_with(&mut socket, close::UNAVAILABLE, "unavailable")).await;
            return;
        }
    };
    let hello = ServerFrame::Hello(Hello {
        reference,
        protocol: p::stream::PROTOCOL_VERSION,
        user: caller.user.clone().into(),
        session_id: caller.session.0,
        cursor: stream.cursor().to_string(),
        heartbeat_ms: s.stream.heartbeat.as_millis() as u64,
    });
    if !send_text(&mut socket, frame_text(&hello)).await {
        return;
    }
    if let Ok(snapshot) = Box::pin(s.hub.presence_snapshot(&caller)).await {
        for item in snapshot {
            if !send_text(&mut socket, encode_event(&Outbound::new(item)).to_string()).await {
                return;
            }
        }
    }

    let limiter = limiter(s.stream.commands_per_second);
    let mut heartbeat = tokio::time::interval(s.stream.heartbeat);
    heartbeat.tick().await;
    let idle_limit = s.stream.heartbeat * 3;
    let mut last_heard = Instant::now();
    let mut shutdown = s.shutdown.clone();

    loop {
        tokio::select! {
            next = stream.next() => match next {
                Ok(out) if matches!(out.item, Item::Relay { .. }) => {}
                Ok(out) => {
                    let text = encode_event(&out);
                    if !send_text(&mut socket, text.to_string()).await {
                        break;
                    }
                    if let Some(m) = out.created_message() {
                        s.hub.note_delivered(&caller, m);
                    }
                    if out.item == Item::SessionRevoked {
                        Box::pin(close_with(&mut socket, close::SESSION_REVOKED, "session revoked")).await;
                        break;
                    }
                }
                Err(StreamEnd::SlowConsumer) => {
                    Box::pin(close_with(&mut socket, close::SLOW_CONSUMER, "too slow: resume from your cursor")).await;
                    break;
                }
                Err(StreamEnd::Unavailable) => {
                    Box::pin(close_with(&mut socket, close::UNAVAILABLE, "unavailable: resume later")).await;
                    break;
                }
            },
            frame = socket.recv() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(WsMessage::Text(text))) => {
                        let answer = if limiter.check().is_err() {
                            let reference = parse_command(text.as_str()).ok().and_then(|c| c.reference().map(str::to_owned));
                            reply(reference, Err(rate_limited()))
                        } else {
                            match parse_command(text.as_str()) {
                                Ok(cmd) => {
                                    let reference = cmd.reference().map(str::to_owned);
                                    reply(reference, Box::pin(execute(&s.hub, &caller, cmd, PresenceScope::Stream(&stream))).await)
                                }
                                Err((Some(reference), e)) => reply(Some(reference), Err(e)),
                                Err((None, e)) => ServerFrame::Error { error: error_body(&e) },
                            }
                        };
                        if !send_text(&mut socket, frame_text(&answer)).await {
                            break;
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        let e = ApiError::new(StatusCode::BAD_REQUEST, "unsupported_frame", "frames are JSON text; binary frames are not used");
                        if !send_text(&mut socket, frame_text(&ServerFrame::Error { error: error_body(&e) })).await {
                            break;
                        }
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    Some(Ok(WsMessage::Close(_))) | None => break,
                    Some(Err(e)) => {
                        let too_big = e.to_string().to_ascii_lowercase().contains("too long")
                            || e.to_string().to_ascii_lowercase().contains("too big")
                            || e.to_string().to_ascii_lowercase().contains("capacity");
                        if too_big {
                            Box::pin(close_with(&mut socket, close::TOO_BIG, "frame too large")).await;
                        }
                        break;
                    }
                }
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > idle_limit {
                    Box::pin(close_with(&mut socket, close::IDLE_TIMEOUT, "idle")).await;
                    break;
                }
                // A revocation by another process or node (an
                // administrator, a password change elsewhere) reaches
                // this connection at the next heartbeat.
                if let Ok(false) = Box::pin(s.hub.session_valid(&caller)).await {
                    let revoked = encode_event(&Outbound::new(Item::SessionRevoked));
                    let _ = send_text(&mut socket, revoked.to_string()).await;
                    Box::pin(close_with(&mut socket, close::SESSION_REVOKED, "session revoked")).await;
                    break;
                }
                if socket.send(WsMessage::Ping(Default::default())).await.is_err() {
                    break;
                }
            },
            _ = shutdown.changed() => {
                Box::pin(close_with(&mut socket, close::GOING_AWAY, "server shutting down")).await;
                break;
            }
        }
    }
}

// ----- long-poll ----------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
pub struct PollParams {
    /// The `cursor` of the previous answer (or of a stream's events);
    /// omitted on the first poll, which returns the current position.
    cursor: Option<String>,
    /// Seconds to wait when nothing is pending: 0 to 60, 25 by default.
    timeout: Option<u64>,
}

/// `GET /api/v1/events`: long-poll for events after a cursor. Returns at
/// once when events are waiting, otherwise when one arrives or the timeout
/// passes.
#[utoipa::path(get, path = "/api/v1/events", tag = "realtime", security(("bearer" = [])),
    params(PollParams),
    responses((status = 200, body = p::stream::Poll), (status = 400, body = p::ErrorResponse), (status = 401, body = p::ErrorResponse)))]
pub async fn poll(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<PollParams>,
) -> ApiResult<Response> {
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<EventPos>()
                .map_err(|_| ApiError::invalid("cursor", "cursor: not a cursor from this server"))
        })
        .transpose()?;
    let secs = q.timeout.unwrap_or(25);
    if Duration::from_secs(secs) > s.stream.max_poll_timeout {
        return Err(ApiError::invalid(
            "timeout",
            format!(
                "timeout: at most {} seconds",
                s.stream.max_poll_timeout.as_secs()
            ),
        ));
    }
    let mut shutdown = s.shutdown.clone();
    let outcome = tokio::select! {
        r = s.hub.poll(&caller, cursor, Duration::from_secs(secs)) => r?,
        _ = shutdown.changed() => natter_core::realtime::PollOutcome { items: Vec::new(), cursor: cursor.unwrap_or_default(), more: true },
    };
    // The body is assembled from the per-item encodings that WebSocket
    // sessions share, so an event is encoded once whatever the transport.
    let mut body = String::from("{\"events\":[");
    let items = outcome
        .items
        .iter()
        .filter(|o| !matches!(o.item, Item::Relay { .. }));
    for (i, out) in items.enumerate() {
        if let Some(m) = out.created_message() {
            s.hub.note_delivered(&caller, m);
        }
        if i > 0 {
            body.push(',');
        }
        body.push_str(&encode_event(out));
    }
    body.push_str("],\"cursor\":");
    body.push_str(
        &serde_json::to_string(&outcome.cursor.to_string()).expect("a string serialises"),
    );
    body.push_str(",\"more\":");
    body.push_str(if outcome.more { "true" } else { "false" });
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/v1/presence`: the presence of everyone whose presence the
/// caller sees (contacts and direct peers), as `presence` event frames.
#[utoipa::path(get, path = "/api/v1/presence", tag = "realtime", security(("bearer" = [])),
    responses((status = 200, body = p::stream::PresenceSnapshot), (status = 401, body = p::ErrorResponse)))]
pub async fn presence(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<p::stream::PresenceSnapshot>> {
    let items = s.hub.presence_snapshot(&caller).await?;
    Ok(Json(p::stream::PresenceSnapshot {
        events: items
            .into_iter()
            .map(|item| ServerFrame::Event(event_frame(&item)))
            .collect(),
    }))
}

/// `POST /api/v1/events`: send a command (`send`, `read`, `typing`,
/// `presence`, `ping`) as a long-poll client; answered with its reply.
#[utoipa::path(post, path = "/api/v1/events", tag = "realtime", security(("bearer" = [])),
    request_body = Command,
    responses((status = 200, description = "The reply frame; `ok` says whether the command succeeded", body = Reply), (status = 401, body = p::ErrorResponse)))]
pub async fn command(
    State(s): State<AppState>,
    Auth(caller): Auth,
    body: axum::body::Bytes,
) -> ApiResult<Json<ServerFrame>> {
    if body.len() > s.config.max_request_bytes {
        return Err(ApiError::too_large(format!(
            "request body is larger than {} bytes",
            s.config.max_request_bytes
        )));
    }
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body is not UTF-8",
        )
    })?;
    let frame = match parse_command(text) {
        Ok(cmd) => {
            let reference = cmd.reference().map(str::to_owned);
            reply(
                reference,
                execute(&s.hub, &caller, cmd, PresenceScope::Poll).await,
            )
        }
        Err((reference, e)) => reply(reference, Err(e)),
    };
    Ok(Json(frame))
}
