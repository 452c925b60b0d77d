//! A minimal XMPP client-to-server client (RFC 6120/6121): stream
//! open, optional in-band registration (XEP-0077), SASL SCRAM-SHA-1,
//! SCRAM-SHA-256 or PLAIN, resource binding, the legacy session when a
//! server requires it, initial presence, then `<message>` in both
//! directions.
//!
//! Plaintext TCP only: the generator runs on loopback next to the server,
//! and TLS would add the same cost to every server under test while
//! costing the generator CPU it needs for the load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::scram::{Hash, SaltCache, Scram};
use super::xml::{Element, Item, StreamReader, escape};
use crate::stream::conn::Shared;

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// How to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Mechanism {
    #[value(name = "scram-sha-1")]
    #[serde(rename = "SCRAM-SHA-1")]
    ScramSha1,
    #[value(name = "scram-sha-256")]
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "plain")]
    #[serde(rename = "PLAIN")]
    Plain,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => Hash::Sha1.mechanism(),
            Mechanism::ScramSha256 => Hash::Sha256.mechanism(),
            Mechanism::Plain => "PLAIN",
        }
    }
}

/// Where and how to log in.
#[derive(Clone)]
pub struct Login {
    pub addr: SocketAddr,
    pub domain: String,
    pub mechanism: Mechanism,
    /// Register the account in-band first (an existing account is fine).
    pub register: bool,
    /// Send initial presence after binding, so that the server routes
    /// messages for the bare JID to this resource.
    pub presence: bool,
    pub timeout: Duration,
    pub salts: Arc<SaltCache>,
}

/// A negotiated, bound stream.
pub struct Session {
    reader: StreamReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        escape(domain)
    )
}

/// Reads the next element, failing on the end of the stream.
async fn element(reader: &mut StreamReader<OwnedReadHalf>) -> anyhow::Result<Element> {
    match reader.next().await? {
        Item::Element(e) if e.name == "error" => {
            let cond: Vec<&str> = e.children.iter().map(|c| c.name.as_str()).collect();
            bail!("stream error: {}", cond.join(" "))
        }
        Item::Element(e) => Ok(e),
        Item::StreamStart(_) => bail!("unexpected stream header"),
        Item::StreamEnd => bail!("the server closed the stream"),
    }
}

/// Reads the stream header and the features that follow it.
async fn open(reader: &mut StreamReader<OwnedReadHalf>) -> anyhow::Result<Element> {
    match reader.next().await? {
        Item::StreamStart(_) => {}
        other => bail!("expected a stream header, got {other:?}"),
    }
    let features = element(reader).await?;
    ensure!(
        features.name == "features",
        "expected stream features, got {}",
        features.describe()
    );
    Ok(features)
}

/// Reads elements until the `<iq>` answering `id`.
async fn iq_answer(reader: &mut StreamReader<OwnedReadHalf>, id: &str) -> anyhow::Result<Element> {
    loop {
        let e = element(reader).await?;
        if e.name == "iq" && e.attr("id") == Some(id) {
            return Ok(e);
        }
    }
}

fn text_of(e: &Element) -> anyhow::Result<String> {
    let t = e.text.trim();
    if t.is_empty() || t == "=" {
        return Ok(String::new());
    }
    String::from_utf8(B64.decode(t).context("SASL data is not base64")?)
        .context("SASL data is not UTF-8")
}

impl Login {
    /// Connects, (registers,) authenticates and binds `user`.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Session> {
        tokio::time::timeout(self.timeout, self.negotiate(user, password, resource))
            .await
            .with_context(|| format!("log-in of {user} timed out"))?
            .with_context(|| format!("log-in of {user}"))
    }

    async fn negotiate(
        &self,
        user: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Session> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let (r, mut writer) = tcp.into_split();
        let mut reader = StreamReader::new(r);
        writer.write_all(header(&self.domain).as_bytes()).await?;
        let features = open(&mut reader).await?;
        if self.register {
            writer
                .write_all(
                    format!(
                        "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{}</username><password>{}</password></query></iq>",
                        escape(user),
                        escape(password)
                    )
                    .as_bytes(),
                )
                .await?;
            let answer = iq_answer(&mut reader, "reg").await?;
            let conflict = answer
                .child("error")
                .is_some_and(|e| e.child("conflict").is_some());
            ensure!(
                answer.attr("type") == Some("result") || conflict,
                "in-band registration refused: {}",
                answer.describe()
            );
        }
        let offered: Vec<&str> = features
            .child("mechanisms")
            .map(|m| m.children.iter().map(|c| c.text.trim()).collect())
            .unwrap_or_default();
        let mech = self.mechanism.name();
        ensure!(
            offered.contains(&mech),
            "the server does not offer {mech} (offers {offered:?})"
        );
        let mut scram = None;
        let initial = match self.mechanism {
            Mechanism::Plain => format!("\0{user}\0{password}"),
            Mechanism::ScramSha1 | Mechanism::ScramSha256 => {
                let hash = if self.mechanism == Mechanism::ScramSha1 {
                    Hash::Sha1
                } else {
                    Hash::Sha256
                };
                let (s, first) = Scram::start(hash, user, password);
                scram = Some(s);
                first
            }
        };
        writer
            .write_all(
                format!(
                    "<auth xmlns='{NS_SASL}' mechanism='{mech}'>{}</auth>",
                    B64.encode(initial)
                )
                .as_bytes(),
            )
            .await?;
        loop {
            let e = element(&mut reader).await?;
            match e.name.as_str() {
                "challenge" => {
                    let data = text_of(&e)?;
                    let s = scram.as_mut().context("a challenge to PLAIN")?;
                    let reply = if data.starts_with("v=") {
                        // Servers that send the verifier as a challenge
                        // expect an empty response.
                        s.verify(&data)?;
                        String::new()
                    } else {
                        B64.encode(s.respond(&data, &self.salts)?)
                    };
                    writer
                        .write_all(
                            format!("<response xmlns='{NS_SASL}'>{reply}</response>").as_bytes(),
                        )
                        .await?;
                }
                "success" => {
                    let data = text_of(&e)?;
                    if let Some(s) = &scram
                        && !data.is_empty()
                    {
                        s.verify(&data)?;
                    }
                    break;
                }
                "failure" => bail!("authentication failed: {}", e.describe()),
                _ => {}
            }
        }
        writer.write_all(header(&self.domain).as_bytes()).await?;
        reader = reader.restart();
        let features = open(&mut reader).await?;
        ensure!(
            features.child("bind").is_some(),
            "no resource binding offered: {}",
            features.describe()
        );
        writer
            .write_all(
                format!(
                    "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{}</resource></bind></iq>",
                    escape(resource)
                )
                .as_bytes(),
            )
            .await?;
        let bound = iq_answer(&mut reader, "bind").await?;
        ensure!(
            bound.attr("type") == Some("result"),
            "binding refused: {}",
            bound.describe()
        );
        ensure!(
            bound.child("bind").and_then(|b| b.child("jid")).is_some(),
            "no JID in the bind result: {}",
            bound.describe()
        );
        // RFC 3921 sessions: only when offered and not marked optional.
        if let Some(s) = features.child("session")
            && s.child("optional").is_none()
        {
            writer
                .write_all(b"<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
                .await?;
            let answer = iq_answer(&mut reader, "sess").await?;
            ensure!(
                answer.attr("type") == Some("result"),
                "session refused: {}",
                answer.describe()
            );
        }
        if self.presence {
            writer.write_all(b"<presence/>").await?;
        }
        Ok(Session { reader, writer })
    }
}

/// A live connection of the generator: stanzas queued here are written by
/// its writer task, so that the scheduler never waits for a socket.
pub struct XConn {
    tx: mpsc::UnboundedSender<Out>,
}

enum Out {
    Stanza(String),
    /// Drop the TCP connection without closing the stream, as a client
    /// that loses its network would.
    Abort,
}

impl XConn {
    /// Queues a stanza; false if the connection is gone.
    pub fn send(&self, stanza: String) -> bool {
        self.tx.send(Out::Stanza(stanza)).is_ok()
    }

    /// Cuts the connection without a closing `</stream:stream>`.
    pub fn abort(&self) {
        let _ = self.tx.send(Out::Abort);
    }
}

impl Session {
    /// Ends the stream politely and waits for the server to close it.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.writer.write_all(b"</stream:stream>").await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match self.reader.next().await {
                    Ok(Item::StreamEnd) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        let _ = self.writer.shutdown().await;
        Ok(())
    }

    /// Starts the reader and writer tasks; `me` identifies the connection
    /// in message bodies, and what arrives is tallied in `shared`.
    pub fn run(self, me: u32, shared: Arc<Shared>) -> XConn {
        let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
        let Session {
            mut reader,
            mut writer,
            ..
        } = self;
        let replies = tx.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(out) = rx.recv().await {
                let mut abort = false;
                let mut push = |out: Out, buf: &mut Vec<u8>| match out {
                    Out::Stanza(s) => buf.extend_from_slice(s.as_bytes()),
                    Out::Abort => abort = true,
                };
                push(out, &mut buf);
                while let Ok(out) = rx.try_recv() {
                    push(out, &mut buf);
                }
                if abort {
                    // Dropping both halves resets nothing politely: the
                    // socket just closes, with no closing stream tag.
                    return;
                }
                if writer.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
            let _ = writer.write_all(b"</stream:stream>").await;
            let _ = writer.shutdown().await;
        });
        tokio::spawn(async move {
            loop {
                match reader.next().await {
                    Ok(Item::Element(e)) => match e.name.as_str() {
                        "message" => match e.child("body") {
                            Some(b) => shared.on_body(me, &b.text),
                            None => {
                                shared
                                    .frames
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                shared
                                    .other_frames
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        },
                        "iq" if matches!(e.attr("type"), Some("get" | "set")) => {
                            // Pings and other requests: an empty result
                            // keeps the server from timing us out.
                            let id = escape(e.attr("id").unwrap_or("")).into_owned();
                            let to = e
                                .attr("from")
                                .map(|f| format!(" to='{}'", escape(f)))
                                .unwrap_or_default();
                            let _ = replies
                                .send(Out::Stanza(format!("<iq type='result' id='{id}'{to}/>")));
                        }
                        "error" => {
                            let cond: Vec<&str> =
                                e.children.iter().map(|c| c.name.as_str()).collect();
                            shared.closed(format!("stream error: {}", cond.join(" ")));
                            return;
                        }
                        _ => {
                            shared
                                .frames
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            shared
                                .other_frames
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    },
                    Ok(Item::StreamStart(_)) => {
                        shared.closed("a second stream header".to_owned());
                        return;
                    }
                    Ok(Item::StreamEnd) => {
                        shared.closed("stream closed".to_owned());
                        return;
                    }
                    Err(e) => {
                        shared.closed(format!("error: {e:#}"));
                        return;
                    }
                }
            }
        });
        XConn { tx }
    }
}
