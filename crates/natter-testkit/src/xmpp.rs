//! A raw XMPP client for protocol tests: the same scenario runs over TCP,
//! WebSocket (RFC 7395) and BOSH, sending literal XML and reading parsed
//! elements, so tests can say exactly what goes over the wire.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use natter_xmpp::xml::{Input, Limits, StreamParser, parse_document};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub use minidom::Element;

use crate::TestServer;

/// How long a test waits for an expected element.
pub const WAIT: Duration = Duration::from_secs(10);

/// The three framings of XMPP that Natter serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Tcp,
    WebSocket,
    Bosh,
}

pub const ALL: [Framing; 3] = [Framing::Tcp, Framing::WebSocket, Framing::Bosh];

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Wire {
    Tcp {
        io: Box<dyn Io>,
        parser: Box<StreamParser>,
    },
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>),
    Bosh {
        http: reqwest::Client,
        url: String,
        sid: Option<String>,
        rid: u64,
    },
}

/// What arrived: an element, the stream header, or the end.
#[derive(Debug, Clone)]
pub enum Got {
    Open,
    Element(Element),
    Closed,
}

pub struct XmppClient {
    pub framing: Framing,
    wire: Wire,
    queue: VecDeque<Got>,
    domain: String,
    /// The full JID after binding.
    pub jid: Option<String>,
    /// This end's `tls-exporter` channel binding (RFC 9266), once TLS 1.3
    /// is up.
    tls_exporter: Option<[u8; 32]>,
}

/// What a SCRAM log-in says about channel binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `n`: the client does not bind.
    None,
    /// `y`: the client could bind but believes the server cannot.
    Unsupported,
    /// -PLUS with this connection's `tls-exporter` data.
    Exporter,
    /// -PLUS with data from some other connection (a relay in the middle).
    Forged,
}

fn exporter_of<T>(tls: &tokio_rustls::client::TlsStream<T>) -> Option<[u8; 32]> {
    let conn = tls.get_ref().1;
    (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
        .then(|| {
            conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok()
        })
        .flatten()
}

const NS_CLIENT: &str = "jabber:client";

impl XmppClient {
    /// Connects and sends the stream header (or `<open/>`, or the BOSH
    /// session request); the server's features are the next element.
    pub async fn connect(server: &TestServer, framing: Framing) -> Self {
        let mut c = Self::unopened(server, framing).await;
        c.open().await;
        c
    }

    /// Connects and opens a stream to another domain.
    pub async fn connect_to(server: &TestServer, framing: Framing, to: &str) -> Self {
        let mut c = Self::unopened(server, framing).await;
        c.open_to(to).await;
        c
    }

    /// A TCP connection on which nothing was sent yet.
    pub async fn connect_raw(server: &TestServer) -> Self {
        Self::unopened(server, Framing::Tcp).await
    }

    async fn unopened(server: &TestServer, framing: Framing) -> Self {
        let domain = server.config.domain.clone();
        let wire = match framing {
            Framing::Tcp => Wire::Tcp {
                io: Box::new(TcpStream::connect(server.xmpp_addr).await.expect("connect")),
                parser: Box::new(StreamParser::new(Limits::default())),
            },
            Framing::WebSocket => {
                let mut req = format!("ws://{}/xmpp-websocket", server.addr)
                    .into_client_request()
                    .expect("request");
                req.headers_mut()
                    .insert("Sec-WebSocket-Protocol", "xmpp".parse().expect("header"));
                let (ws, resp) = tokio_tungstenite::connect_async(req).await.expect("ws");
                assert_eq!(
                    resp.headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok()),
                    Some("xmpp"),
                    "RFC 7395: the server agrees on the xmpp subprotocol"
                );
                Wire::Ws(Box::new(ws))
            }
            Framing::Bosh => Wire::Bosh {
                http: reqwest::Client::new(),
                url: format!("http://{}/http-bind", server.addr),
                sid: None,
                rid: 1000 + rand_u32() as u64,
            },
        };
        Self {
            framing,
            wire,
            queue: VecDeque::new(),
            domain,
            jid: None,
            tls_exporter: None,
        }
    }

    /// Opens (or restarts) the stream.
    pub async fn open(&mut self) {
        let domain = self.domain.clone();
        self.open_to(&domain).await;
    }

    pub async fn open_to(&mut self, to: &str) {
        match &mut self.wire {
            Wire::Tcp { io, parser } => {
                **parser = StreamParser::new(Limits::default());
                let header = format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
                );
                io.write_all(header.as_bytes()).await.expect("write");
            }
            Wire::Ws(ws) => {
                let open = format!(
                    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{to}' version='1.0'/>"
                );
                ws.send(WsMessage::Text(open.into()))
                    .await
                    .expect("ws send");
            }
            Wire::Bosh { sid, rid, .. } => {
                *rid += 1;
                let body = match sid {
                    None => format!(
                        "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' rid='{rid}' to='{to}' wait='10' hold='1' ver='1.6' xmpp:version='1.0'/>"
                    ),
                    Some(sid) => format!(
                        "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' rid='{rid}' sid='{sid}' to='{to}' xmpp:restart='true'/>"
                    ),
                };
                self.bosh_post(body).await;
            }
        }
    }

    /// Sends raw XML: one element (or, on TCP, any bytes).
    pub async fn send(&mut self, xml: &str) {
        match &mut self.wire {
            Wire::Tcp { io, .. } => {
                let _ = io.write_all(xml.as_bytes()).await;
            }
            Wire::Ws(ws) => {
                let _ = ws.send(WsMessage::Text(xml.to_owned().into())).await;
            }
            Wire::Bosh { sid, rid, .. } => {
                *rid += 1;
                let body = format!(
                    "<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}' sid='{}'>{xml}</body>",
                    sid.clone().unwrap_or_default()
                );
                self.bosh_post(body).await;
            }
        }
    }

    /// Sends bytes that need not be XML at all (TCP and WebSocket).
    pub async fn send_raw(&mut self, data: &[u8]) {
        match &mut self.wire {
            Wire::Tcp { io, .. } => {
                let _ = io.write_all(data).await;
            }
            Wire::Ws(ws) => {
                let text = String::from_utf8_lossy(data).into_owned();
                let _ = ws.send(WsMessage::Text(text.into())).await;
            }
            Wire::Bosh { http, url, .. } => {
                let resp = http.post(url.clone()).body(data.to_vec()).send().await;
                if let Ok(r) = resp {
                    let text = r.text().await.unwrap_or_default();
                    self.bosh_response(&text);
                }
            }
        }
    }

    async fn bosh_post(&mut self, body: String) {
        let Wire::Bosh { http, url, .. } = &self.wire else {
            unreachable!()
        };
        let resp = http
            .post(url.clone())
            .body(body)
            .send()
            .await
            .expect("bosh post");
        let text = resp.text().await.expect("bosh body");
        self.bosh_response(&text);
    }

    fn bosh_response(&mut self, text: &str) {
        let body = match parse_document(text.as_bytes(), &Limits::default()) {
            Ok(b) => b,
            Err(e) => panic!("bad BOSH response {text:?}: {e:?}"),
        };
        if let Wire::Bosh { sid, .. } = &mut self.wire
            && let Some(s) = body.attr("sid")
        {
            *sid = Some(s.to_owned());
            self.queue.push_back(Got::Open);
        }
        if body.attr("authid").is_some() && body.attr("sid").is_none() {
            self.queue.push_back(Got::Open);
        }
        for child in body.children() {
            self.queue.push_back(Got::Element(child.clone()));
        }
        if body.attr("type") == Some("terminate") {
            // XEP-0206: some stream errors travel as the body's condition.
            if let Some(condition) = body.attr("condition")
                && condition != "remote-stream-error"
            {
                let error = Element::builder("error", "http://etherx.jabber.org/streams")
                    .append(Element::bare(
                        condition,
                        "urn:ietf:params:xml:ns:xmpp-streams",
                    ))
                    .build();
                self.queue.push_back(Got::Element(error));
            }
            self.queue.push_back(Got::Closed);
        }
    }

    /// The next thing from the server; panics after [`WAIT`].
    pub async fn next(&mut self) -> Got {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("the server sent nothing in time")
    }

    async fn next_inner(&mut self) -> Got {
        loop {
            if let Some(g) = self.queue.pop_front() {
                return g;
            }
            match &mut self.wire {
                Wire::Tcp { io, parser } => {
                    let mut buf = [0u8; 8192];
                    let n = io.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return Got::Closed;
                    }
                    let mut inputs = Vec::new();
                    parser
                        .feed(&buf[..n], &mut inputs)
                        .expect("the server sends well-formed XML");
                    for i in inputs {
                        self.queue.push_back(match i {
                            Input::Open { .. } => Got::Open,
                            Input::Element(e) => Got::Element(e),
                            Input::Close => Got::Closed,
                        });
                    }
                }
                Wire::Ws(ws) => match ws.next().await {
                    Some(Ok(WsMessage::Text(t))) => {
                        let e = parse_document(t.as_bytes(), &Limits::default())
                            .expect("each frame is one element");
                        if e.is("open", "urn:ietf:params:xml:ns:xmpp-framing") {
                            self.queue.push_back(Got::Open);
                        } else if e.is("close", "urn:ietf:params:xml:ns:xmpp-framing") {
                            self.queue.push_back(Got::Closed);
                        } else {
                            self.queue.push_back(Got::Element(e));
                        }
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return Got::Closed,
                    Some(Ok(_)) => {}
                },
                Wire::Bosh { sid, rid, .. } => {
                    // An empty request: the server holds it until it has
                    // something or its wait passes.
                    *rid += 1;
                    let body = format!(
                        "<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}' sid='{}'/>",
                        sid.clone().unwrap_or_default()
                    );
                    self.bosh_post(body).await;
                }
            }
        }
    }

    /// The next element, skipping stream headers; panics on stream end.
    pub async fn recv(&mut self) -> Element {
        loop {
            match self.next().await {
                Got::Open => continue,
                Got::Element(e) => return e,
                Got::Closed => panic!("the stream closed"),
            }
        }
    }

    /// The next element that `pred` accepts, skipping others.
    pub async fn recv_where(&mut self, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            let e = self.recv().await;
            if pred(&e) {
                return e;
            }
        }
    }

    /// The reply to the IQ with this id.
    pub async fn iq_reply(&mut self, id: &str) -> Element {
        self.recv_where(|e| e.name() == "iq" && e.attr("id") == Some(id))
            .await
    }

    /// Expects a stream error; returns its condition.
    pub async fn stream_error(&mut self) -> String {
        loop {
            match self.next().await {
                Got::Open => continue,
                Got::Element(e) if e.name() == "error" => {
                    let cond = e
                        .children()
                        .find(|c| {
                            c.ns() == "urn:ietf:params:xml:ns:xmpp-streams" && c.name() != "text"
                        })
                        .map(|c| c.name().to_owned())
                        .unwrap_or_default();
                    return cond;
                }
                Got::Element(_) => continue,
                Got::Closed => return "closed".into(),
            }
        }
    }

    /// Whether the server closed the stream (after whatever it sent).
    pub async fn closed(&mut self) -> bool {
        loop {
            match self.next().await {
                Got::Closed => return true,
                _ => continue,
            }
        }
    }

    /// The features element that follows a stream (re)start.
    pub async fn features(&mut self) -> Element {
        self.recv_where(|e| e.name() == "features").await
    }

    /// SASL PLAIN, stream restart and resource binding.
    pub async fn login_plain(&mut self, user: &str, password: &str, resource: &str) {
        self.features().await;
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
        ))
        .await;
        let r = self.recv().await;
        assert_eq!(r.name(), "success", "PLAIN log-in failed: {r:?}");
        self.open().await;
        self.bind(resource).await;
    }

    /// SCRAM-SHA-256 (RFC 7677), checking the server's signature.
    pub async fn login_scram(&mut self, user: &str, password: &str, resource: &str) {
        self.features().await;
        let outcome = self.scram_sha256(user, password, Binding::None).await;
        assert_eq!(outcome.name(), "success", "{outcome:?}");
        self.open().await;
        self.bind(resource).await;
    }

    /// One SCRAM-SHA-256 exchange (or -PLUS, by `binding`), after the
    /// features were read; returns the server's last element, `<success/>`
    /// (whose signature is checked) or `<failure/>`.
    pub async fn scram_sha256(&mut self, user: &str, password: &str, binding: Binding) -> Element {
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce = format!("{:x}{:x}", rand_u32(), rand_u32());
        let first_bare = format!("n={user},r={nonce}");
        let exporter = self.tls_exporter.map(|e| e.to_vec());
        let (mechanism, header, cb_data) = match binding {
            Binding::None => ("SCRAM-SHA-256", "n,,", Vec::new()),
            Binding::Unsupported => ("SCRAM-SHA-256", "y,,", Vec::new()),
            Binding::Exporter => (
                "SCRAM-SHA-256-PLUS",
                "p=tls-exporter,,",
                exporter.expect("a TLS 1.3 connection"),
            ),
            Binding::Forged => ("SCRAM-SHA-256-PLUS", "p=tls-exporter,,", vec![0; 32]),
        };
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{}</auth>",
            b64.encode(format!("{header}{first_bare}"))
        ))
        .await;
        let challenge = self.recv().await;
        if challenge.name() != "challenge" {
            return challenge;
        }
        let server_first = String::from_utf8(b64.decode(challenge.text()).unwrap()).unwrap();
        let mut r = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => r = v,
                Some(("s", v)) => salt = b64.decode(v).unwrap(),
                Some(("i", v)) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        assert!(r.starts_with(&nonce), "the server nonce extends ours");
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let hmac = |key: &[u8], data: &[u8]| {
            let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
            m.update(data);
            m.finalize().into_bytes().to_vec()
        };
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let cbind = [header.as_bytes(), &cb_data].concat();
        let without_proof = format!("c={},r={r}", b64.encode(cbind));
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            b64.encode(format!("{without_proof},p={}", b64.encode(proof)))
        ))
        .await;
        let outcome = self.recv().await;
        if outcome.name() == "success" {
            let server_key = hmac(&salted, b"Server Key");
            let expected = format!(
                "v={}",
                b64.encode(hmac(&server_key, auth_message.as_bytes()))
            );
            assert_eq!(
                String::from_utf8(b64.decode(outcome.text()).unwrap()).unwrap(),
                expected,
                "the server proves it knows the keys"
            );
        }
        outcome
    }

    pub async fn bind(&mut self, resource: &str) {
        self.features().await;
        self.send(&format!(
            "<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let reply = self.iq_reply("bind1").await;
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
        let jid = reply
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .map(|j| j.text())
            .expect("bound JID");
        self.jid = Some(jid);
    }

    /// Logs in with PLAIN over TCP to a server at `addr` (a process the
    /// test started), binds, and sends initial presence.
    pub async fn online_at(
        addr: std::net::SocketAddr,
        domain: &str,
        user: &str,
        password: &str,
    ) -> Self {
        let mut c = Self {
            framing: Framing::Tcp,
            wire: Wire::Tcp {
                io: Box::new(TcpStream::connect(addr).await.expect("connect")),
                parser: Box::new(StreamParser::new(Limits::default())),
            },
            queue: VecDeque::new(),
            domain: domain.to_owned(),
            jid: None,
            tls_exporter: None,
        };
        c.open().await;
        c.available(user, password).await;
        c
    }

    /// Logs in with PLAIN, binds, and sends initial presence.
    pub async fn online(server: &TestServer, framing: Framing, user: &str, password: &str) -> Self {
        let mut c = Self::connect(server, framing).await;
        c.available(user, password).await;
        c
    }

    async fn available(&mut self, user: &str, password: &str) {
        let c = self;
        c.login_plain(user, password, "test").await;
        c.send("<presence xmlns='jabber:client'/>").await;
        // our own presence comes back once we are available
        let jid = c.jid.clone();
        c.recv_where(|e| e.name() == "presence" && e.attr("from") == jid.as_deref())
            .await;
    }

    /// Upgrades a TCP stream with STARTTLS, trusting the server's
    /// self-signed certificate from its data directory.
    pub async fn starttls(&mut self, server: &TestServer) {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        self.starttls_after_proceed(server).await;
    }

    /// Reads `<proceed/>` (the request was sent already) and upgrades;
    /// anything the server sent after it in plaintext would fail the
    /// handshake.
    pub async fn starttls_after_proceed(&mut self, server: &TestServer) {
        let proceed = self.recv().await;
        assert_eq!(proceed.name(), "proceed", "{proceed:?}");
        let Wire::Tcp { io, parser } = &mut self.wire else {
            panic!("STARTTLS is for TCP")
        };
        let plain = std::mem::replace(io, Box::new(tokio::io::duplex(1).0));
        let tls = tls_connector(server)
            .connect(
                rustls::pki_types::ServerName::try_from(self.domain.clone()).unwrap(),
                plain,
            )
            .await
            .expect("TLS handshake");
        self.tls_exporter = exporter_of(&tls);
        *io = Box::new(tls);
        **parser = StreamParser::new(Limits::default());
        self.open().await;
    }

    /// Connects to the direct-TLS port.
    pub async fn connect_direct_tls(server: &TestServer) -> Self {
        let tcp = TcpStream::connect(server.xmpps_addr)
            .await
            .expect("connect");
        let tls = tls_connector(server)
            .connect(
                rustls::pki_types::ServerName::try_from(server.config.domain.clone()).unwrap(),
                Box::new(tcp) as Box<dyn Io>,
            )
            .await
            .expect("TLS handshake");
        let tls_exporter = exporter_of(&tls);
        let mut c = Self {
            tls_exporter,
            framing: Framing::Tcp,
            wire: Wire::Tcp {
                io: Box::new(tls),
                parser: Box::new(StreamParser::new(Limits::default())),
            },
            queue: VecDeque::new(),
            domain: server.config.domain.clone(),
            jid: None,
        };
        c.open().await;
        c
    }

    /// The bare JID of a user of the test server's domain.
    pub fn bare(&self, user: &str) -> String {
        format!("{user}@{}", self.domain)
    }
}

fn tls_connector(server: &TestServer) -> tokio_rustls::TlsConnector {
    let pem =
        std::fs::read(server.config.data_dir.join("xmpp-cert.pem")).expect("server certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// Finds a child by name in the client namespace.
pub fn child<'a>(e: &'a Element, name: &str, ns: &str) -> Option<&'a Element> {
    e.get_child(name, ns)
}

/// The body of a message stanza.
pub fn body(e: &Element) -> Option<String> {
    e.get_child("body", NS_CLIENT).map(|b| b.text())
}

/// Base64, as SASL payloads are.
pub fn base64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}
