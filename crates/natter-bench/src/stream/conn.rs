//! The generator's WebSocket clients and the tallies they keep.
//!
//! Each connection has one task reading frames and one writing the frames
//! queued for it, so that the scheduler never waits for a socket (the load
//! stays open-loop) and a slow reader never holds up a writer. Frames are
//! recognised by cheap substring searches rather than parsed as JSON: on
//! a two-core machine the generator's CPU is part of the budget, and only
//! three things are needed from a frame: is it our `message.created`, is
//! it a reply to one of our sends, and was that reply ok.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::hist::Hist;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The marker our message bodies start with: `nb1:<id>:<sent ns>:<sender>:`.
pub const BODY_TAG: &str = "nb1:";
/// The start of a warm-up message's body: counted in
/// [`Shared::warmups`], not measured.
pub const WARMUP_TAG: &str = "nbw:";
const BODY_FIELD: &str = "\"body\":\"nb1:";

/// [`Slot::state`] of a message whose sender's connection was gone.
pub const NOT_SENT: u8 = 3;

/// What became of one message of the load.
#[derive(Default)]
pub struct Slot {
    /// 0: no reply yet, 1: ok, 2: error, [`NOT_SENT`].
    pub state: AtomicU8,
    /// Times it reached a recipient (not counting the sender's echo).
    pub received: AtomicU32,
    /// When it was handed to its connection, ns since [`Shared::base`].
    pub sent_ns: AtomicU64,
}

/// Everything the connection tasks record, shared with the scenario.
pub struct Shared {
    pub base: Instant,
    pub slots: Vec<Slot>,
    /// Send to `message.created` at a recipient.
    pub latency: Hist,
    /// Send to the `ok` reply at the sender (the durable commit).
    pub ack: Hist,
    pub deliveries: AtomicU64,
    pub echoes: AtomicU64,
    pub replies_ok: AtomicU64,
    pub replies_err: AtomicU64,
    /// Frames of any kind, and those that were neither ours nor replies
    /// (receipts, presence…).
    pub frames: AtomicU64,
    pub other_frames: AtomicU64,
    /// Warm-up messages that reached a recipient.
    pub warmups: AtomicU64,
    /// When the last delivery arrived, ns since `base`.
    pub last_delivery_ns: AtomicU64,
    /// Set before the harness stops the server, so that the closes that
    /// follow are not counted as failures.
    pub closing: AtomicBool,
    pub disconnects: AtomicU64,
    pub close_reasons: Mutex<BTreeMap<String, u64>>,
    /// The first few error replies, to print.
    pub error_samples: Mutex<Vec<String>>,
}

impl Shared {
    /// Tallies for a load of `messages` messages.
    pub fn new(messages: usize) -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            slots: (0..messages).map(|_| Slot::default()).collect(),
            latency: Hist::new(),
            ack: Hist::new(),
            deliveries: AtomicU64::new(0),
            echoes: AtomicU64::new(0),
            replies_ok: AtomicU64::new(0),
            replies_err: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            other_frames: AtomicU64::new(0),
            warmups: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            disconnects: AtomicU64::new(0),
            close_reasons: Mutex::new(BTreeMap::new()),
            error_samples: Mutex::new(Vec::new()),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn note_close(&self, reason: String) {
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        *self
            .close_reasons
            .lock()
            .expect("close reasons")
            .entry(reason)
            .or_default() += 1;
    }

    fn note_error(&self, frame: &str) {
        self.replies_err.fetch_add(1, Ordering::Relaxed);
        let mut s = self.error_samples.lock().expect("error samples");
        if s.len() < 5 {
            s.push(frame.chars().take(300).collect());
        }
    }

    /// Handles one text frame that arrived on connection `me`.
    fn on_text(&self, me: u32, t: &str) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        if t.contains("\"message.created\"") {
            self.on_message(me, parse_body(t));
        } else if t.contains("\"type\":\"reply\"") {
            let ok = t.contains("\"ok\":true");
            let slot = reference(t).and_then(|r| self.slots.get(r as usize));
            match (slot, ok) {
                (Some(slot), true) => {
                    if slot
                        .state
                        .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.replies_ok.fetch_add(1, Ordering::Relaxed);
                        let sent = slot.sent_ns.load(Ordering::Relaxed);
                        self.ack.record(self.now_ns().saturating_sub(sent) / 1000);
                    }
                }
                (Some(slot), false) => {
                    if slot
                        .state
                        .compare_exchange(0, 2, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.note_error(t);
                    }
                }
                (None, true) => {
                    self.other_frames.fetch_add(1, Ordering::Relaxed);
                }
                (None, false) => self.note_error(t),
            }
        } else if t.contains("\"type\":\"error\"") {
            self.note_error(t);
        } else {
            self.other_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// Handles the body of a message that arrived on connection `me`
    /// over a transport that hands over bodies rather than JSON frames
    /// (XMPP).
    pub fn on_body(&self, me: u32, body: &str) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        if body.starts_with(WARMUP_TAG) {
            self.warmups.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.on_message(me, body.strip_prefix(BODY_TAG).and_then(parse_fields));
    }

    /// Counts a delivery (or an echo) of the message whose body fields
    /// are `fields`.
    fn on_message(&self, me: u32, fields: Option<(u64, u64, u32)>) {
        let Some((id, sent_ns, sender)) = fields else {
            self.other_frames.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if sender == me {
            self.echoes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.now_ns();
        self.latency.record(now.saturating_sub(sent_ns) / 1000);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
        if let Some(slot) = self.slots.get(id as usize) {
            slot.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a connection that ended while the harness was not closing.
    pub fn closed(&self, reason: String) {
        self.note_close(reason);
    }
}

/// `(id, sent ns, sender)` from a frame carrying one of our bodies.
fn parse_body(t: &str) -> Option<(u64, u64, u32)> {
    let start = t.find(BODY_FIELD)? + BODY_FIELD.len();
    parse_fields(&t[start..])
}

/// `(id, sent ns, sender)` from the rest of a body after its tag.
fn parse_fields(rest: &str) -> Option<(u64, u64, u32)> {
    let mut parts = rest.splitn(4, ':');
    let id = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    let sender = parts.next()?.parse().ok()?;
    Some((id, sent, sender))
}

/// The numeric `ref` of a reply (our sends use the message id).
fn reference(t: &str) -> Option<u64> {
    const REF: &str = "\"ref\":\"";
    let start = t.find(REF)? + REF.len();
    let end = start + t[start..].find('"')?;
    t[start..end].parse().ok()
}

/// The body of message `id`: the tag, the id, the send time and the
/// sender's connection, padded with `x` to `len` bytes.
pub fn body(id: u64, sent_ns: u64, sender: u32, len: usize) -> String {
    let mut b = format!("{BODY_TAG}{id}:{sent_ns}:{sender}:");
    while b.len() < len {
        b.push('x');
    }
    b
}

/// An open, authenticated connection of the generator: a WebSocket, or
/// a long-polling client.
pub struct Conn {
    tx: Tx,
}

enum Tx {
    Ws(mpsc::UnboundedSender<Message>),
    Poll(mpsc::UnboundedSender<String>),
}

impl Conn {
    /// Queues a text frame; false if the connection is gone.
    pub fn send(&self, text: String) -> bool {
        match &self.tx {
            Tx::Ws(tx) => tx.send(Message::text(text)).is_ok(),
            Tx::Poll(tx) => tx.send(text).is_ok(),
        }
    }

    /// A long-polling client (`GET`/`POST /api/v1/events`) with `token`:
    /// one task polls from the current position on, and every command is
    /// posted by a task of its own, so that sends stay open-loop; replies
    /// and events are tallied in `shared` as on a WebSocket.
    pub async fn open_poll(
        client: reqwest::Client,
        base: String,
        token: &str,
        me: u32,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Conn> {
        let auth = format!("Bearer {token}");
        let first: serde_json::Value = poll_once(&client, &base, &auth, None, 0).await?;
        let mut cursor = first["cursor"]
            .as_str()
            .context("no cursor in the first poll")?
            .to_owned();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        {
            let (client, base, auth, shared) =
                (client.clone(), base.clone(), auth.clone(), shared.clone());
            tokio::spawn(async move {
                while let Some(frame) = rx.recv().await {
                    let (client, base, auth, shared) =
                        (client.clone(), base.clone(), auth.clone(), shared.clone());
                    tokio::spawn(async move {
                        let resp = client
                            .post(format!("{base}/api/v1/events"))
                            .header("authorization", auth)
                            .header("content-type", "application/json")
                            .body(frame)
                            .send()
                            .await;
                        match resp {
                            Ok(r) => match r.text().await {
                                Ok(t) => shared.on_text(me, &t),
                                Err(e) => shared.note_error(&format!("reading a reply: {e}")),
                            },
                            Err(e) => shared.note_error(&format!("posting a command: {e}")),
                        }
                    });
                }
            });
        }
        tokio::spawn(async move {
            while !shared.closing.load(Ordering::Relaxed) {
                match poll_once(&client, &base, &auth, Some(&cursor), 25).await {
                    Ok(page) => {
                        if let Some(events) = page["events"].as_array() {
                            for e in events {
                                shared.on_text(me, &e.to_string());
                            }
                        }
                        match page["cursor"].as_str() {
                            Some(c) => c.clone_into(&mut cursor),
                            None => {
                                shared.note_close("a poll without a cursor".to_owned());
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        shared.note_close(format!("poll failed: {e:#}"));
                        return;
                    }
                }
            }
        });
        Ok(Conn { tx: Tx::Poll(tx) })
    }

    /// Opens `/api/v1/stream`, authenticates with `token`, waits for
    /// `hello` and starts the reader and writer tasks. `me` identifies the
    /// connection in message bodies (to tell echoes from deliveries).
    pub async fn open(
        addr: SocketAddr,
        token: &str,
        me: u32,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Conn> {
        // The default 128 KiB read buffer per socket would make 10 000
        // idle sockets cost the generator over a gigabyte. (Writes are
        // buffered until the writer task flushes a batch.)
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let url = format!("ws://{addr}/api/v1/stream");
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .context("opening the WebSocket")?;
        let auth = serde_json::json!({"type": "auth", "ref": "auth", "token": token}).to_string();
        ws.send(Message::text(auth)).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if t.contains("\"type\":\"hello\"") {
                        break;
                    }
                    bail!("expected hello, got {}", t.as_str());
                }
                Some(Ok(Message::Close(f))) => bail!("closed before hello: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("waiting for hello"),
                None => bail!("closed before hello"),
            }
        }
        let (mut sink, stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.feed(m).await.is_err() {
                    return;
                }
                while let Ok(m) = rx.try_recv() {
                    if sink.feed(m).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        tokio::spawn(read_loop(me, stream, shared));
        Ok(Conn { tx: Tx::Ws(tx) })
    }
}

/// One `GET /api/v1/events`.
async fn poll_once(
    client: &reqwest::Client,
    base: &str,
    auth: &str,
    cursor: Option<&str>,
    timeout: u32,
) -> anyhow::Result<serde_json::Value> {
    let mut url = format!("{base}/api/v1/events?timeout={timeout}");
    if let Some(c) = cursor {
        url.push_str("&cursor=");
        url.push_str(c);
    }
    let resp = client
        .get(url)
        .header("authorization", auth)
        .send()
        .await
        .context("polling")?;
    let status = resp.status();
    let text = resp.text().await.context("reading a poll")?;
    if !status.is_success() {
        bail!("poll: HTTP {status}: {text}");
    }
    serde_json::from_str(&text).context("poll response")
}

async fn read_loop(me: u32, mut stream: SplitStream<Socket>, shared: Arc<Shared>) {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => shared.on_text(me, t.as_str()),
            Some(Ok(Message::Close(f))) => {
                let reason = match f {
                    Some(f) => format!("close {} {}", u16::from(f.code), f.reason),
                    None => "close without code".to_owned(),
                };
                shared.note_close(reason);
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                shared.note_close(format!("error: {e}"));
                return;
            }
            None => {
                shared.note_close("ended".to_owned());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_recognised() {
        let shared = Shared::new(10);
        let b = body(3, 1_000, 7, 60);
        assert_eq!(b.len(), 60);
        let event = format!(
            r#"{{"type":"event","event":"message.created","cursor":"0-5","data":{{"conversation_id":"c","message":{{"id":"m","conversation_id":"c","seq":1,"sender":"u7","client_id":"c3","body":"{b}","sent_at":"t","edited_at":null,"deleted_at":null}}}}}}"#
        );
        shared.on_text(7, &event);
        assert_eq!(shared.echoes.load(Ordering::Relaxed), 1);
        shared.on_text(8, &event);
        assert_eq!(shared.deliveries.load(Ordering::Relaxed), 1);
        assert_eq!(shared.slots[3].received.load(Ordering::Relaxed), 1);

        let reply = format!(
            r#"{{"type":"reply","ref":"3","ok":true,"data":{{"created":true,"message":{{"body":"{b}"}}}}}}"#
        );
        shared.on_text(7, &reply);
        assert_eq!(shared.slots[3].state.load(Ordering::Relaxed), 1);
        assert_eq!(shared.replies_ok.load(Ordering::Relaxed), 1);

        let failed =
            r#"{"type":"reply","ref":"4","ok":false,"error":{"code":"not_member","message":"no"}}"#;
        shared.on_text(7, failed);
        assert_eq!(shared.slots[4].state.load(Ordering::Relaxed), 2);
        assert_eq!(shared.replies_err.load(Ordering::Relaxed), 1);

        shared.on_text(
            7,
            r#"{"type":"event","event":"receipt.delivered","cursor":"0-6","data":{}}"#,
        );
        assert_eq!(shared.other_frames.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn warm_up_bodies_are_counted_apart() {
        let shared = Shared::new(10);
        shared.on_body(1, &format!("{WARMUP_TAG}0"));
        assert_eq!(shared.warmups.load(Ordering::Relaxed), 1);
        shared.on_body(1, &body(2, 1_000, 0, 60));
        assert_eq!(shared.warmups.load(Ordering::Relaxed), 1);
        assert_eq!(shared.deliveries.load(Ordering::Relaxed), 1);
        assert_eq!(shared.other_frames.load(Ordering::Relaxed), 0);
        assert_eq!(shared.latency.count(), 1);
    }
}
