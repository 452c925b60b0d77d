//! Test clients of the real-time protocol, one per transport, behind one
//! [`Realtime`] interface so that the same scenario runs over WebSocket
//! and long-poll.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Client;

/// How long a test waits for an expected frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw WebSocket to `/api/v1/stream`, for tests of the protocol itself.
pub struct RawSocket {
    pub socket: Socket,
}

impl RawSocket {
    /// Opens the socket without authenticating; `origin` sets the header.
    pub async fn open(
        base: &str,
        origin: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/api/v1/stream", base.replacen("http", "ws", 1));
        let mut req = url.into_client_request()?;
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Self { socket })
    }

    /// The next frame that is not an event (a reply, an error or hello),
    /// or `Err(close code)`.
    pub async fn recv_reply(&mut self) -> Result<Value, Option<u16>> {
        loop {
            let f = self.recv().await?;
            if f["type"] != "event" {
                return Ok(f);
            }
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.socket
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, t: &str) {
        self.socket
            .send(Message::text(t.to_owned()))
            .await
            .expect("send");
    }

    /// The next text frame as JSON, or `Err(close code)` when the server
    /// closed the socket.
    pub async fn recv(&mut self) -> Result<Value, Option<u16>> {
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("no frame from the server in time");
            match next {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("JSON frame"));
                }
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }
}

/// What the scenarios need from a real-time client.
pub enum Realtime {
    Ws(Box<WsClient>),
    Poll(PollClient),
}

/// Which transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    LongPoll,
}

pub struct WsClient {
    raw: RawSocket,
    /// Frames read while waiting for something else.
    pending: VecDeque<Value>,
    next_ref: u64,
    pub cursor: Option<String>,
}

pub struct PollClient {
    client: Client,
    pending: VecDeque<Value>,
    /// Where the next poll continues (past what is in `pending`).
    fetch_cursor: Option<String>,
    /// The cursor of the last durable event handed to the test: what a
    /// real client would persist and resume from.
    cursor: Option<String>,
    next_ref: u64,
}

impl Realtime {
    /// Connects `client` (logged in) over `transport`, resuming after
    /// `cursor` if given.
    pub async fn connect(
        client: &Client,
        transport: Transport,
        cursor: Option<String>,
    ) -> Realtime {
        match transport {
            Transport::WebSocket => {
                let mut raw = RawSocket::open(&client.base, None)
                    .await
                    .expect("open stream");
                let mut auth = json!({"type": "auth", "ref": "auth", "token": client.token.clone().expect("logged in")});
                if let Some(c) = &cursor {
                    auth["cursor"] = json!(c);
                }
                raw.send_json(auth).await;
                let hello = raw.recv().await.expect("hello");
                assert_eq!(hello["type"], "hello", "{hello}");
                assert_eq!(hello["ref"], "auth");
                let cursor = Some(hello["cursor"].as_str().unwrap().to_owned());
                Realtime::Ws(Box::new(WsClient {
                    raw,
                    pending: VecDeque::new(),
                    next_ref: 0,
                    cursor,
                }))
            }
            Transport::LongPoll => {
                let mut p = PollClient {
                    client: client.clone(),
                    pending: VecDeque::new(),
                    fetch_cursor: cursor.clone(),
                    cursor,
                    next_ref: 0,
                };
                if p.fetch_cursor.is_none() {
                    let r = client.get("/api/v1/events?timeout=0").await;
                    let c = r.expect(200)["cursor"].as_str().unwrap().to_owned();
                    p.fetch_cursor = Some(c.clone());
                    p.cursor = Some(c);
                }
                Realtime::Poll(p)
            }
        }
    }

    /// The cursor to resume from: that of the last durable event handed to
    /// the test (events fetched but not yet handed out are not skipped).
    pub fn cursor(&self) -> Option<String> {
        match self {
            Realtime::Ws(w) => w.cursor.clone(),
            Realtime::Poll(p) if p.pending.is_empty() => p.fetch_cursor.clone(),
            Realtime::Poll(p) => p.cursor.clone(),
        }
    }

    /// Sends a command and returns its reply frame.
    pub async fn command(&mut self, mut frame: Value) -> Value {
        match self {
            Realtime::Ws(w) => {
                w.next_ref += 1;
                let r = format!("r{}", w.next_ref);
                frame["ref"] = json!(r);
                w.raw.send_json(frame).await;
                loop {
                    let f = w.raw.recv().await.expect("reply");
                    if f["type"] == "reply" && f["ref"] == r {
                        return f;
                    }
                    w.pending.push_back(f);
                }
            }
            Realtime::Poll(p) => {
                p.next_ref += 1;
                let r = format!("r{}", p.next_ref);
                frame["ref"] = json!(r);
                let resp = p.client.post("/api/v1/events", frame).await;
                let f = resp.expect(200).clone();
                assert_eq!(f["ref"], r);
                f
            }
        }
    }

    /// Sends a message; returns the reply's message.
    pub async fn send(&mut self, conversation: &str, client_id: &str, body: &str) -> Value {
        let r = self
            .command(json!({"type": "send", "conversation_id": conversation, "client_id": client_id, "body": body}))
            .await;
        assert_eq!(r["ok"], true, "{r}");
        r["data"]["message"].clone()
    }

    /// The next event frame (any), waiting up to [`WAIT`].
    pub async fn next_event(&mut self) -> Value {
        self.try_next_event(WAIT).await.expect("an event in time")
    }

    /// The next event within `wait`, or `None`.
    pub async fn try_next_event(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match self {
                Realtime::Ws(w) => {
                    if let Some(f) = w.pending.pop_front() {
                        Some(f)
                    } else {
                        match tokio::time::timeout_at(deadline, w.raw.socket.next()).await {
                            Err(_) => return None,
                            Ok(Some(Ok(Message::Text(t)))) => {
                                Some(serde_json::from_str::<Value>(t.as_str()).unwrap())
                            }
                            Ok(Some(Ok(Message::Close(f)))) => panic!("stream closed: {f:?}"),
                            Ok(Some(Ok(_))) => None,
                            Ok(other) => panic!("stream ended: {other:?}"),
                        }
                    }
                }
                Realtime::Poll(p) => {
                    if let Some(f) = p.pending.pop_front() {
                        Some(f)
                    } else {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        if left.is_zero() {
                            return None;
                        }
                        let secs = left.as_secs().clamp(1, 25);
                        let cursor = p.fetch_cursor.clone().unwrap();
                        let r = p
                            .client
                            .get(&format!("/api/v1/events?cursor={cursor}&timeout={secs}"))
                            .await;
                        let body = r.expect(200).clone();
                        p.fetch_cursor = Some(body["cursor"].as_str().unwrap().to_owned());
                        for e in body["events"].as_array().unwrap() {
                            assert_eq!(e["type"], "event", "{e}");
                            p.pending.push_back(e.clone());
                        }
                        None
                    }
                }
            };
            if let Some(f) = frame
                && f["type"] == "event"
            {
                if let Some(c) = f["cursor"].as_str() {
                    match &mut *self {
                        Realtime::Ws(w) => w.cursor = Some(c.to_owned()),
                        Realtime::Poll(p) => p.cursor = Some(c.to_owned()),
                    }
                }
                return Some(f);
            }
        }
    }

    /// Waits for the next event named `name`, skipping others.
    pub async fn expect_event(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next_event(left).await {
                Some(e) if e["event"] == name => return e,
                Some(_) => continue,
                None => panic!("no {name} event in time"),
            }
        }
    }

    /// Waits for an event matching `pred`, skipping others.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next_event(left).await {
                Some(e) if pred(&e) => return e,
                Some(_) => continue,
                None => panic!("no event matching {what} in time"),
            }
        }
    }

    /// Closes the connection (a WebSocket close; a long-poll client just
    /// stops polling).
    pub async fn close(self) {
        if let Realtime::Ws(mut w) = self {
            let _ = w.raw.socket.close(None).await;
        }
    }
}
