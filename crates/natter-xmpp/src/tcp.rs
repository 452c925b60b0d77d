//! XMPP over TCP (RFC 6120): one long-lived XML stream per connection,
//! upgraded in place by STARTTLS, or wrapped in TLS from the first byte
//! on the direct-TLS port (XEP-0368).

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use minidom::Element;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::error::StreamError;
use crate::session::{Out, Session, Transport};
use crate::xml::{Input, Limits, StreamParser, write_into};
use crate::{Xmpp, ns};

/// Bytes read per system call, into a buffer on the stack of the polling
/// thread: the bytes go to the parser in the same poll, so a connection
/// keeps no read buffer of its own while it idles.
const READ_BUFFER: usize = 16 * 1024;
/// Most queued items turned into stanzas for one write.
const BATCH: usize = 64;

impl Xmpp {
    /// Accepts c2s connections until shutdown. With `direct_tls`, every
    /// connection starts with a TLS handshake.
    pub async fn serve_tcp(&self, listener: TcpListener, direct_tls: bool) {
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let x = self.clone();
                        tokio::spawn(async move {
                            // Setting up is boxed: its future (the TLS
                            // handshake, the refusal) is short-lived, and
                            // inline it sized the connection's task for as
                            // long as it lived (7.6 KiB against 3.2 KiB).
                            if let Some((session, conn)) =
                                Box::pin(x.connect(tcp, peer, direct_tls)).await
                            {
                                run(session, conn).await;
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an XMPP connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                _ = crate::stopped(&mut shutdown) => return,
            }
        }
    }

    /// A new connection's session, after the TLS handshake on the
    /// direct-TLS port; `None` if it ends before that.
    async fn connect(
        self,
        tcp: TcpStream,
        peer: SocketAddr,
        direct_tls: bool,
    ) -> Option<(Box<Session>, Conn)> {
        let _ = tcp.set_nodelay(true);
        let x = self.inner.clone();
        let Some(mut session) =
            Session::new(x.clone(), Transport::Tcp, direct_tls, Some(peer.ip()))
        else {
            let mut tcp = tcp;
            let mut w = Writer::default();
            w.close(
                Some(StreamError::policy_violation(
                    "too many unauthenticated connections from your address",
                )),
                &x.config.domain,
            );
            let _ = tcp.write_all(w.buf.as_bytes()).await;
            return None;
        };
        let conn = if direct_tls {
            let acceptor = x.tls.as_ref()?;
            Box::pin(accept_tls(
                acceptor,
                tcp,
                x.config.auth_timeout,
                &mut session,
            ))
            .await?
        } else {
            Conn::Plain(tcp)
        };
        Some((Box::new(session), conn))
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Serializes outputs in TCP framing.
#[derive(Default)]
struct Writer {
    buf: String,
    header_sent: bool,
}

impl Writer {
    fn header(&mut self, id: &str, domain: &str) {
        self.header_sent = true;
        self.buf.push_str(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{id}' from='{domain}' version='1.0' xml:lang='en'>",
            ns::CLIENT,
            ns::STREAM
        ));
    }

    fn element(&mut self, e: &Element) {
        write_element(&mut self.buf, e);
    }

    fn close(&mut self, error: Option<StreamError>, domain: &str) {
        if let Some(error) = error {
            if !self.header_sent {
                // RFC 6120 4.9.1.1: an error before the header comes after one.
                self.header(&crate::routing::short_id(), domain);
            }
            self.element(&error.to_element());
        }
        if self.header_sent {
            self.buf.push_str("</stream:stream>");
        }
    }
}

/// Writes an element; those of the streams namespace (features, errors)
/// get the `stream:` prefix that the stream header declared, which some
/// clients match literally.
pub(crate) fn write_element(buf: &mut String, e: &Element) {
    if e.ns() == ns::STREAM {
        buf.push_str("<stream:");
        buf.push_str(e.name());
        buf.push('>');
        for child in e.children() {
            write_into(buf, child);
        }
        buf.push_str("</stream:");
        buf.push_str(e.name());
        buf.push('>');
    } else {
        write_into(buf, e);
    }
}

/// The session comes boxed: an async fn keeps its arguments besides the
/// locals they move into, and a session inline would be held twice by
/// every connection's task. (The box is freed at once, in the block.)
async fn run(session: Box<Session>, mut conn: Conn) {
    let mut session = {
        let session = session;
        *session
    };
    let x = session.x.clone();
    let limits = Limits {
        max_stanza: x.config.max_stanza_bytes,
        ..Limits::default()
    };
    let domain = x.config.domain.clone();
    let mut parser = StreamParser::new(limits);
    let mut shutdown = x.shutdown.clone();
    // Boxed and dropped once authenticated: a timer is 112 bytes, and
    // built inline in the select below it would size the task for its
    // whole life.
    let mut auth_timer = Some(Box::pin(tokio::time::sleep(x.config.auth_timeout)));
    let mut writer = Writer::default();
    let mut out = Vec::new();
    let mut inputs = Vec::new();
    'conn: loop {
        if session.authenticated() {
            auth_timer = None;
        }
        tokio::select! {
            fed = read_into(&mut conn, &mut parser, &mut inputs) => {
                let Some(fed) = fed else { break 'conn };
                // Handling is boxed: its future is large and short-lived,
                // and inline it would size every connection's task.
                if let Err(e) = fed {
                    // Handle what came before the bad bytes, then fail.
                    for input in std::mem::take(&mut inputs) {
                        Box::pin(session.handle(input, &mut out)).await;
                    }
                    out.push(Out::Close(Some(e)));
                }
                for input in std::mem::take(&mut inputs) {
                    Box::pin(session.handle(input, &mut out)).await;
                    // After these, bytes already read belong to an old
                    // stream: discard them (no plaintext injection across
                    // STARTTLS, RFC 6120 5.3.3).
                    if out.iter().any(Out::ends_writing) {
                        break;
                    }
                }
            }
            push = session.next_push() => Box::pin(session.on_push(push, &mut out)).await,
            _ = async { auth_timer.as_mut().expect("checked").await }, if auth_timer.is_some() => {
                out.push(Out::Close(Some(StreamError::connection_timeout("authenticate sooner"))));
            }
            _ = crate::stopped(&mut shutdown) => {
                session.closed_cleanly = true;
                out.push(Out::Close(Some(StreamError::system_shutdown("the server is shutting down"))));
            }
        }
        // Whatever else is already queued for the client goes into the
        // same write: one system call per wake-up, not one per stanza.
        for _ in 0..BATCH {
            if out.iter().any(Out::ends_writing) {
                break;
            }
            let Some(push) = session.try_push() else {
                break;
            };
            // Boxed like the one above, to keep the task small.
            Box::pin(session.on_push(push, &mut out)).await;
        }
        let mut end = false;
        let mut upgrade = false;
        // Taken, not drained: an idle connection keeps no capacity.
        for o in std::mem::take(&mut out) {
            match o {
                Out::Open { id } => writer.header(&id, &domain),
                Out::Element(e) => writer.element(&e),
                Out::StartTls => {
                    writer
                        .buf
                        .push_str(&format!("<proceed xmlns='{}'/>", ns::TLS));
                    upgrade = true;
                    break;
                }
                Out::Restart => {
                    parser = StreamParser::new(limits);
                    writer.header_sent = false;
                }
                Out::Close(error) => {
                    writer.close(error, &domain);
                    end = true;
                    break;
                }
            }
        }
        if !writer.buf.is_empty() {
            let data = std::mem::take(&mut writer.buf);
            if conn.write_all(data.as_bytes()).await.is_err() {
                break;
            }
        }
        if end {
            let _ = conn.shutdown().await;
            session.closed_cleanly = true;
            break;
        }
        if upgrade {
            let (Conn::Plain(tcp), Some(acceptor)) = (conn, x.tls.clone()) else {
                return;
            };
            let Some(tls) = Box::pin(accept_tls(
                &acceptor,
                tcp,
                x.config.auth_timeout,
                &mut session,
            ))
            .await
            else {
                return;
            };
            conn = tls;
            session.secure = true;
            parser = StreamParser::new(limits);
            writer.header_sent = false;
        }
    }
    session.detach();
}

/// The TLS handshake on `tcp` (direct TLS or after STARTTLS), bounded by
/// the authentication timeout; notes the connection's channel binding in
/// `session`. `None` if the handshake fails or takes too long.
async fn accept_tls(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    timeout: std::time::Duration,
    session: &mut Session,
) -> Option<Conn> {
    let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
        .await
        .ok()?
        .ok()?;
    session.channel_binding = tls_exporter(&tls);
    Some(Conn::Tls(Box::new(tls)))
}

/// The `tls-exporter` channel binding of a connection (RFC 9266), for
/// SCRAM -PLUS. Only under TLS 1.3: RFC 9266 allows it with TLS 1.2 only
/// where the extended master secret was negotiated, which is not worth
/// checking for clients old enough to lack TLS 1.3.
fn tls_exporter(tls: &TlsStream<TcpStream>) -> Option<Box<[u8; 32]>> {
    let conn = tls.get_ref().1;
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
        .ok()
        .map(Box::new)
}

/// Waits until the connection has bytes, reads them into a buffer on the
/// stack and feeds them to the parser within the same poll; `None` at the
/// end of the connection. Cancel-safe: bytes are never read without being
/// parsed.
fn read_into<'a>(
    conn: &'a mut Conn,
    parser: &'a mut StreamParser,
    inputs: &'a mut Vec<Input>,
) -> impl Future<Output = Option<Result<(), StreamError>>> + 'a {
    std::future::poll_fn(move |cx| {
        let mut buf = [MaybeUninit::<u8>::uninit(); READ_BUFFER];
        let mut read = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut *conn).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => Poll::Ready(Some(parser.feed(read.filled(), inputs))),
        }
    })
}
