//! The event stream: a background task that keeps one real-time connection
//! open (WebSocket, or long-polling where WebSocket fails), reconnects with
//! backoff, resumes from its cursor, and hands typed [`Event`]s to the
//! application through a bounded channel read as a [`futures::Stream`].
//!
//! Two cursors matter. The task resumes from the last durable event it
//! *received*: everything received is either handed out already or waiting
//! in the channel, in memory, so resuming from there loses nothing and
//! repeats nothing. [`EventStream::cursor`] is the last durable event
//! *handed to the application*: the position an application saves, so that
//! after its own restart it resumes exactly after what it processed.
//!
//! Only errors that reconnecting cannot fix end the stream: a token that
//! is invalid, expired or revoked (close codes 4001/4003 or HTTP 401), or
//! a cursor the server does not know. Everything else is reported as
//! [`Event::Disconnected`] and retried.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, Stream, StreamExt};
use natter_proto::stream::{AuthCommand, Command, ServerFrame, close};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;

use crate::error::{Error, chain};
use crate::events::{Connected, Cursor, Disconnected, Event, Transport};
use crate::{Client, Result};

/// How long the server may take to answer `auth` with `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A WebSocket that dies sooner than this after `hello`, without a close
/// frame, counts as a failed WebSocket (a proxy that cuts upgraded
/// connections) rather than a network blip.
const STABLE_AFTER: Duration = Duration::from_secs(10);

enum Item {
    Event(Event),
    Fatal(Error),
}

/// The stream of the user's events; see [`Client::events`]. Yields
/// `Ok(event)` until an error that reconnecting cannot fix, which is
/// yielded as `Err` before the stream ends. Dropping it closes the
/// connection.
pub struct EventStream {
    rx: mpsc::Receiver<Item>,
    cursor: Option<Cursor>,
    task: JoinHandle<()>,
    done: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("cursor", &self.cursor)
            .field("done", &self.done)
            .finish()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventStream {
    pub(crate) fn spawn(client: Client, cursor: Option<Cursor>) -> EventStream {
        let (tx, rx) = mpsc::channel(client.options().event_buffer.max(1));
        let runner = Runner {
            mode: client.options().transport,
            client,
            tx,
            cursor: cursor.clone(),
            ws_failures: 0,
            long_poll_since: None,
        };
        EventStream {
            rx,
            cursor,
            task: tokio::spawn(runner.run()),
            done: false,
        }
    }

    /// The cursor of the last durable event handed out (or, before any,
    /// the position the stream started from): save it, and pass it to
    /// [`Client::events_from`] to continue exactly after it.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Closes the connection; the stream ends.
    pub fn close(&mut self) {
        self.task.abort();
        self.rx.close();
        self.done = true;
    }
}

impl Stream for EventStream {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Item::Event(event))) => {
                if let Some(c) = event.cursor() {
                    self.cursor = Some(c.clone());
                } else if let Event::Connected(c) = &event {
                    self.cursor = Some(c.cursor.clone());
                }
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(Some(Item::Fatal(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// How one connection ended.
enum End {
    /// The application dropped the stream.
    Closed,
    /// Reconnecting cannot help.
    Fatal(Error),
    /// Lost; reconnect after a backoff.
    Lost {
        reason: String,
        /// It had delivered `hello` (or a poll answer): reset the backoff.
        connected: bool,
        /// Wait at least this long (a rate limit's `Retry-After`).
        min_wait: Duration,
        verdict: Verdict,
    },
    /// Long-polling ended to give WebSocket another chance.
    Upgrade,
}

/// What a WebSocket attempt says about WebSocket on this network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It worked (or ended for reasons unrelated to the transport).
    Healthy,
    /// The upgrade was refused with an HTTP 4xx: a proxy or server that
    /// does not do WebSocket. Fall back at once.
    Refused,
    /// It broke in a way that suggests the path blocks WebSocket.
    Failed,
    /// Nothing answered at all; says nothing about WebSocket.
    Unreachable,
}

struct Runner {
    client: Client,
    mode: Transport,
    tx: mpsc::Sender<Item>,
    /// Resume position: the last durable event received, or where the
    /// stream started.
    cursor: Option<Cursor>,
    ws_failures: u32,
    /// Set while long-polling because WebSocket failed ([`Transport::Auto`]).
    long_poll_since: Option<Instant>,
}

fn lost(reason: impl Into<String>, connected: bool, verdict: Verdict) -> End {
    End::Lost {
        reason: reason.into(),
        connected,
        min_wait: Duration::ZERO,
        verdict,
    }
}

impl Runner {
    async fn run(mut self) {
        let mut backoff = self.client.options().backoff.start();
        loop {
            let transport = match self.mode {
                Transport::Auto if self.long_poll_since.is_some() => Transport::LongPoll,
                Transport::Auto => Transport::WebSocket,
                other => other,
            };
            let end = match transport {
                Transport::LongPoll => self.long_poll().await,
                _ => self.websocket().await,
            };
            match end {
                End::Closed => return,
                End::Fatal(e) => {
                    let _ = self.tx.send(Item::Fatal(e)).await;
                    return;
                }
                End::Upgrade => {
                    tracing::debug!("trying WebSocket again");
                    continue;
                }
                End::Lost {
                    reason,
                    connected,
                    min_wait,
                    verdict,
                } => {
                    if connected {
                        backoff.reset();
                    }
                    let fell_back = transport == Transport::WebSocket && self.judge(verdict);
                    let wait = if fell_back {
                        Duration::ZERO
                    } else {
                        backoff.next_wait().max(min_wait)
                    };
                    let reason = if fell_back {
                        format!("{reason}; falling back to long-polling")
                    } else {
                        reason
                    };
                    tracing::debug!(%reason, ?wait, "event stream disconnected");
                    let report = Event::Disconnected(Disconnected {
                        transport,
                        reason,
                        retry_in: wait,
                    });
                    if !self.emit(report).await {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.tx.closed() => return,
                    }
                }
            }
        }
    }

    /// Records the outcome of a WebSocket attempt; `true` when it is time
    /// to fall back to long-polling.
    fn judge(&mut self, verdict: Verdict) -> bool {
        if self.mode != Transport::Auto {
            return false;
        }
        let fall_back = match verdict {
            Verdict::Healthy => {
                self.ws_failures = 0;
                false
            }
            Verdict::Unreachable => false,
            Verdict::Refused => true,
            Verdict::Failed => {
                self.ws_failures += 1;
                self.ws_failures >= self.client.options().websocket_failures_before_fallback
            }
        };
        if fall_back {
            self.long_poll_since = Some(Instant::now());
        }
        fall_back
    }

    /// Hands an event to the application; `false` once it is gone.
    async fn emit(&mut self, event: Event) -> bool {
        if let Some(c) = event.cursor() {
            self.cursor = Some(c.clone());
        }
        self.tx.send(Item::Event(event)).await.is_ok()
    }

    fn connected_event(&self, transport: Transport, cursor: Cursor, resumed: bool) -> Event {
        Event::Connected(Connected {
            transport,
            cursor,
            resumed,
        })
    }

    // ----- WebSocket -----------------------------------------------------

    async fn websocket(&mut self) -> End {
        let Some(token) = self.client.token() else {
            return End::Fatal(not_logged_in());
        };
        let opts = self.client.options().clone();
        let mut request = match self.client.stream_url().as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return End::Fatal(Error::config(chain(&e))),
        };
        let headers = request.headers_mut();
        headers.insert(
            "sec-websocket-protocol",
            natter_proto::stream::SUBPROTOCOL
                .parse()
                .expect("a valid header"),
        );
        if let Ok(ua) = opts.user_agent.parse() {
            headers.insert("user-agent", ua);
        }
        let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
        let mut socket = tokio::select! {
            _ = self.tx.closed() => return End::Closed,
            r = tokio::time::timeout(opts.connect_timeout, connect) => match r {
                Err(_) => return lost("opening the WebSocket timed out", false, Verdict::Failed),
                Ok(Err(e)) => return connect_failed(e),
                Ok(Ok((socket, _))) => socket,
            },
        };

        let resumed = self.cursor.is_some();
        let auth = Command::Auth(AuthCommand {
            reference: Some("auth".into()),
            token,
            cursor: self.cursor.as_ref().map(|c| c.as_str().to_owned()),
        });
        let text = serde_json::to_string(&auth).expect("commands serialise");
        if let Err(e) = socket.send(WsMessage::text(text)).await {
            return lost(chain(&e), false, Verdict::Failed);
        }

        // `hello`, or a failed reply and a close
        let deadline = Instant::now() + HELLO_TIMEOUT;
        let hello = loop {
            let frame = tokio::select! {
                _ = self.tx.closed() => return End::Closed,
                f = tokio::time::timeout_at(deadline, socket.next()) => f,
            };
            match frame {
                Err(_) => return lost("no hello from the server in time", false, Verdict::Failed),
                Ok(None) => {
                    return lost("the connection closed before hello", false, Verdict::Failed);
                }
                Ok(Some(Err(e))) => return lost(chain(&e), false, Verdict::Failed),
                Ok(Some(Ok(WsMessage::Text(t)))) => match serde_json::from_str::<ServerFrame>(&t) {
                    Ok(ServerFrame::Hello(h)) => break h,
                    Ok(ServerFrame::Reply(r)) if !r.ok => {
                        let e = r
                            .error
                            .map(Error::from_reply)
                            .unwrap_or_else(|| Error::protocol("auth failed without an error"));
                        return match e {
                            Error::Unauthenticated { .. } | Error::Invalid { .. } => End::Fatal(e),
                            other => lost(other.to_string(), false, Verdict::Healthy),
                        };
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        return End::Fatal(Error::protocol(format!("bad frame before hello: {e}")));
                    }
                },
                Ok(Some(Ok(WsMessage::Close(frame)))) => {
                    return closed(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                        false,
                        false,
                    );
                }
                Ok(Some(Ok(_))) => continue,
            }
        };
        let started = Instant::now();
        let cursor = match &self.cursor {
            Some(c) => c.clone(),
            None => {
                let c = Cursor::new(hello.cursor.clone());
                self.cursor = Some(c.clone());
                c
            }
        };
        tracing::debug!(user = %hello.user.username, %cursor, "event stream connected (WebSocket)");
        if !self
            .emit(self.connected_event(Transport::WebSocket, cursor, resumed))
            .await
        {
            return End::Closed;
        }
        // the server pings every heartbeat; three missed ones mean a dead
        // connection, even if TCP has not noticed
        let idle = Duration::from_millis(hello.heartbeat_ms.max(1000)) * 3 + Duration::from_secs(5);
        let broken = |reason: String| {
            let verdict = if started.elapsed() < STABLE_AFTER {
                Verdict::Failed
            } else {
                Verdict::Healthy
            };
            lost(reason, true, verdict)
        };
        loop {
            let frame = tokio::select! {
                _ = self.tx.closed() => {
                    let _ = socket.close(None).await;
                    return End::Closed;
                }
                f = tokio::time::timeout(idle, socket.next()) => f,
            };
            match frame {
                Err(_) => {
                    return lost(
                        format!("nothing from the server for {} s", idle.as_secs()),
                        true,
                        Verdict::Healthy,
                    );
                }
                Ok(None) => return broken("the connection closed".into()),
                Ok(Some(Err(e))) => return broken(chain(&e)),
                Ok(Some(Ok(WsMessage::Text(t)))) => match serde_json::from_str::<ServerFrame>(&t) {
                    Ok(ServerFrame::Event(f)) => {
                        if !self.emit(Event::from_frame(f)).await {
                            return End::Closed;
                        }
                    }
                    Ok(ServerFrame::Error { error }) => {
                        tracing::warn!(code = %error.code, message = %error.message, "the server reported an error on the stream");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "ignoring a frame that does not parse"),
                },
                Ok(Some(Ok(WsMessage::Close(frame)))) => {
                    let stable = started.elapsed() >= STABLE_AFTER;
                    return closed(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                        true,
                        stable,
                    );
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    // ----- long-polling --------------------------------------------------

    async fn long_poll(&mut self) -> End {
        if self.client.token().is_none() {
            return End::Fatal(not_logged_in());
        }
        let opts = self.client.options().clone();
        let resumed = self.cursor.is_some();
        let mut announced = false;
        loop {
            if let Some(since) = self.long_poll_since
                && since.elapsed() >= opts.retry_websocket_after
            {
                self.long_poll_since = None;
                // one more failure falls back again
                self.ws_failures = opts.websocket_failures_before_fallback.saturating_sub(1);
                return End::Upgrade;
            }
            let cursor = match self.cursor.clone() {
                Some(c) => c,
                None => {
                    let first = tokio::select! {
                        _ = self.tx.closed() => return End::Closed,
                        r = self.client.poll(None, Duration::ZERO) => r,
                    };
                    match first {
                        Ok(p) => {
                            let c = Cursor::new(p.cursor);
                            self.cursor = Some(c.clone());
                            c
                        }
                        Err(e) => return poll_failed(e, announced),
                    }
                }
            };
            // the first poll answers at once, so that the connection is
            // known to work (and reported) without waiting for an event
            let wait = if !announced {
                Duration::ZERO
            } else if let Some(since) = self.long_poll_since {
                // not past the time to try WebSocket again
                let left = opts.retry_websocket_after.saturating_sub(since.elapsed());
                opts.poll_timeout
                    .min(Duration::from_secs(left.as_secs_f64().ceil() as u64))
            } else {
                opts.poll_timeout
            };
            let answer = tokio::select! {
                _ = self.tx.closed() => return End::Closed,
                r = self.client.poll(Some(&cursor), wait) => r,
            };
            let poll = match answer {
                Ok(p) => p,
                Err(e) => return poll_failed(e, announced),
            };
            if !announced {
                announced = true;
                tracing::debug!(%cursor, "event stream connected (long-poll)");
                if !self
                    .emit(self.connected_event(Transport::LongPoll, cursor, resumed))
                    .await
                {
                    return End::Closed;
                }
            }
            for frame in poll.events {
                if let ServerFrame::Event(f) = frame
                    && !self.emit(Event::from_frame(f)).await
                {
                    return End::Closed;
                }
            }
            self.cursor = Some(Cursor::new(poll.cursor));
        }
    }
}

fn not_logged_in() -> Error {
    Error::Unauthenticated {
        code: "unauthenticated".into(),
        message: "not logged in: no token to open the event stream with".into(),
    }
}

/// The end of a failed long-poll.
fn poll_failed(e: Error, connected: bool) -> End {
    match e {
        Error::Network { .. } | Error::Server { .. } => {
            lost(e.to_string(), connected, Verdict::Healthy)
        }
        Error::RateLimited { retry_after, .. } => End::Lost {
            reason: e.to_string(),
            connected,
            min_wait: retry_after.unwrap_or_default(),
            verdict: Verdict::Healthy,
        },
        fatal => End::Fatal(fatal),
    }
}

/// The end of a WebSocket that could not be opened.
fn connect_failed(e: tungstenite::Error) -> End {
    match &e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<natter_proto::ErrorResponse>(b).ok())
                .map(|r| r.error);
            let reason = format!(
                "the WebSocket upgrade was refused with HTTP {status}{}",
                body.as_ref()
                    .map(|b| format!(" ({})", b.message))
                    .unwrap_or_default()
            );
            let verdict = if (400..500).contains(&status) {
                Verdict::Refused
            } else {
                Verdict::Failed
            };
            lost(reason, false, verdict)
        }
        tungstenite::Error::Io(io) => {
            use std::io::ErrorKind::*;
            let verdict = match io.kind() {
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
                | NotFound => Verdict::Unreachable,
                _ => Verdict::Failed,
            };
            lost(chain(&e), false, verdict)
        }
        tungstenite::Error::Url(_) => End::Fatal(Error::config(chain(&e))),
        _ => lost(chain(&e), false, Verdict::Failed),
    }
}

/// The end of a WebSocket the server closed with `frame` (code, reason).
fn closed(frame: Option<(u16, String)>, connected: bool, stable: bool) -> End {
    let Some((code, reason)) = frame else {
        let verdict = if stable {
            Verdict::Healthy
        } else {
            Verdict::Failed
        };
        return lost("closed by the server", connected, verdict);
    };
    let text = |default: &str| {
        if reason.is_empty() {
            default.to_owned()
        } else {
            reason.clone()
        }
    };
    match code {
        close::UNAUTHENTICATED => End::Fatal(Error::Unauthenticated {
            code: "unauthenticated".into(),
            message: text("the token was not accepted; log in again"),
        }),
        close::SESSION_REVOKED => End::Fatal(Error::Unauthenticated {
            code: "session_revoked".into(),
            message: text("the session was revoked; log in again"),
        }),
        close::TOO_BIG => End::Fatal(Error::protocol(text("a frame was too large"))),
        _ => lost(
            format!("closed by the server ({code}: {})", text("no reason given")),
            connected,
            Verdict::Healthy,
        ),
    }
}
