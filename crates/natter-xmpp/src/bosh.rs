//! BOSH (XEP-0124 with XEP-0206) at `/http-bind`: XMPP's long-polling
//! transport. Each HTTP request carries a `<body/>` of stanzas; the
//! server holds one request open until it has something to send or `wait`
//! seconds pass. A task per BOSH session owns the [`Session`], so the same
//! stream logic runs as over TCP and WebSocket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use minidom::Element;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::StreamError;
use crate::session::{Out, Session, Transport};
use crate::xml::{Input, Limits, parse_document};
use crate::{Xmpp, ns};

/// Longest the server holds a request (the client may ask for less).
const MAX_WAIT: u64 = 60;
/// Requests the client may have open at once (XEP-0124 `requests`).
const REQUESTS: usize = 2;
/// Requests queued for a session task beyond this are refused.
const QUEUE: usize = 8;

/// How HTTP handlers reach a BOSH session's task.
#[derive(Clone)]
pub(crate) struct Handle {
    tx: mpsc::Sender<Request>,
}

struct Request {
    body: Element,
    reply: oneshot::Sender<String>,
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn terminate(condition: &str) -> String {
    format!(
        "<body xmlns='{}' type='terminate' condition='{condition}'/>",
        ns::BOSH
    )
}

pub(crate) async fn request(
    State(xmpp): State<Xmpp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let x = xmpp.inner.clone();
    let limits = Limits {
        max_stanza: x.config.max_stanza_bytes,
        ..Limits::default()
    };
    let body = match parse_document(&body, &limits) {
        Ok(b) if b.is("body", ns::BOSH) => b,
        Ok(_) => return xml_response(StatusCode::BAD_REQUEST, terminate("bad-request")),
        Err(e) => {
            let condition = if e.condition == "policy-violation" {
                "policy-violation"
            } else {
                "bad-request"
            };
            return xml_response(StatusCode::BAD_REQUEST, terminate(condition));
        }
    };
    let handle = match body.attr("sid") {
        Some(sid) => match x.bosh.lock().expect("bosh sessions").get(sid) {
            Some(h) => h.clone(),
            None => return xml_response(StatusCode::NOT_FOUND, terminate("item-not-found")),
        },
        None => match create(&xmpp, &body, peer) {
            Ok(h) => h,
            Err(condition) => return xml_response(StatusCode::OK, terminate(condition)),
        },
    };
    let (reply, answer) = oneshot::channel();
    if handle.tx.try_send(Request { body, reply }).is_err() {
        return xml_response(StatusCode::OK, terminate("policy-violation"));
    }
    match tokio::time::timeout(Duration::from_secs(MAX_WAIT + 10), answer).await {
        Ok(Ok(text)) => xml_response(StatusCode::OK, text),
        _ => xml_response(StatusCode::OK, terminate("remote-connection-failed")),
    }
}

fn create(xmpp: &Xmpp, body: &Element, peer: SocketAddr) -> Result<Handle, &'static str> {
    let x = xmpp.inner.clone();
    if body
        .attr("rid")
        .and_then(|r| r.parse::<u64>().ok())
        .is_none()
    {
        return Err("bad-request");
    }
    let session = Session::new(x.clone(), Transport::Bosh, true, Some(peer.ip()))
        .ok_or("policy-violation")?;
    let wait = body
        .attr("wait")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(MAX_WAIT)
        .clamp(1, MAX_WAIT);
    let sid = format!(
        "{}{}",
        crate::routing::short_id(),
        crate::routing::short_id()
    );
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = Handle { tx };
    x.bosh
        .lock()
        .expect("bosh sessions")
        .insert(sid.clone(), handle.clone());
    tokio::spawn(run(
        xmpp.clone(),
        session,
        sid,
        rx,
        Duration::from_secs(wait),
    ));
    Ok(handle)
}

/// A request waiting for something to answer with.
struct Held {
    reply: oneshot::Sender<String>,
    until: Instant,
}

async fn run(
    xmpp: Xmpp,
    mut session: Session,
    sid: String,
    mut rx: mpsc::Receiver<Request>,
    wait: Duration,
) {
    let x = xmpp.inner.clone();
    let domain = x.config.domain.clone();
    let inactivity = x.config.bosh_inactivity;
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut pending: Vec<Out> = Vec::new();
    let mut last_rid: Option<u64> = None;
    let mut created = false;
    let mut idle_since = Instant::now();
    let mut shutdown = x.shutdown.clone();
    let auth_deadline = Instant::now() + x.config.auth_timeout;
    loop {
        let next_deadline = held.front().map(|h| h.until);
        tokio::select! {
            req = rx.recv() => {
                let Some(Request { body, reply }) = req else { break };
                let rid = body.attr("rid").and_then(|r| r.parse::<u64>().ok());
                match (rid, last_rid) {
                    (None, _) => { let _ = reply.send(terminate("bad-request")); break; }
                    (Some(r), Some(last)) if r <= last || r > last + REQUESTS as u64 + 1 => {
                        let _ = reply.send(terminate("item-not-found"));
                        break;
                    }
                    _ => last_rid = rid,
                }
                held.push_back(Held { reply, until: Instant::now() + wait });
                if !created {
                    created = true;
                    let version = body.attr_ns(ns::XBOSH, "version").or(Some("1.0"));
                    session.handle(Input::Open {
                        to: body.attr("to").map(str::to_owned),
                        version: version.map(str::to_owned),
                    }, &mut pending).await;
                } else if body.attr_ns(ns::XBOSH, "restart") == Some("true") {
                    session.handle(Input::Open {
                        to: Some(domain.clone()),
                        version: Some("1.0".into()),
                    }, &mut pending).await;
                }
                let terminating = body.attr("type") == Some("terminate");
                for child in body.children() {
                    session.handle(Input::Element(child.clone()), &mut pending).await;
                    if pending.iter().any(|o| matches!(o, Out::Close(_))) {
                        break;
                    }
                }
                if terminating {
                    session.handle(Input::Close, &mut pending).await;
                }
            }
            push = session.next_push() => session.on_push(push, &mut pending).await,
            _ = async { tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)).await }, if next_deadline.is_some() => {
                // Nothing to say within `wait`: answer the oldest empty.
                if let Some(h) = held.pop_front() {
                    let _ = h.reply.send(format!("<body xmlns='{}'/>", ns::BOSH));
                }
            }
            _ = tokio::time::sleep_until(idle_since + inactivity), if held.is_empty() => {
                // The client stopped polling: the session ends (or waits
                // for stream-management resumption elsewhere).
                break;
            }
            _ = tokio::time::sleep_until(auth_deadline), if !session.authenticated() => {
                pending.push(Out::Close(Some(StreamError::connection_timeout("authenticate sooner"))));
            }
            _ = crate::stopped(&mut shutdown) => {
                session.closed_cleanly = true;
                pending.push(Out::Close(Some(StreamError::system_shutdown("the server is shutting down"))));
            }
        }
        // Answer with what there is; keep at most `REQUESTS - 1` held so
        // the client can always send.
        let closing = pending.iter().any(|o| matches!(o, Out::Close(_)));
        while (!pending.is_empty() || held.len() >= REQUESTS) && !held.is_empty() {
            let h = held.pop_front().expect("checked non-empty");
            let text = render(&mut pending, &sid, wait, &domain, &x.config);
            let _ = h.reply.send(text);
        }
        if held.is_empty() {
            idle_since = Instant::now();
        }
        if closing {
            session.closed_cleanly = true;
            for h in held.drain(..) {
                let _ = h.reply.send(terminate("remote-stream-error"));
            }
            break;
        }
    }
    x.bosh.lock().expect("bosh sessions").remove(&sid);
    session.detach();
}

/// One response `<body/>` with everything pending.
fn render(
    pending: &mut Vec<Out>,
    sid: &str,
    wait: Duration,
    domain: &str,
    config: &crate::XmppConfig,
) -> String {
    let mut attrs = format!(
        " xmlns='{}' xmlns:stream='{}' xmlns:xmpp='{}'",
        ns::BOSH,
        ns::STREAM,
        ns::XBOSH
    );
    let mut inner = String::new();
    for o in pending.drain(..) {
        match o {
            Out::Open { id } => {
                attrs.push_str(&format!(
                    " sid='{sid}' wait='{}' requests='{REQUESTS}' hold='1' inactivity='{}' ver='1.11' from='{domain}' authid='{id}' xmpp:version='1.0' xmpp:restartlogic='true' maxpause='{}'",
                    wait.as_secs(),
                    config.bosh_inactivity.as_secs(),
                    config.bosh_inactivity.as_secs(),
                ));
            }
            Out::Element(e) => crate::tcp::write_element(&mut inner, &e),
            Out::StartTls | Out::Restart => {}
            Out::Close(error) => {
                match &error {
                    Some(e) if e.condition == "host-unknown" => {
                        attrs.push_str(" type='terminate' condition='host-unknown'");
                    }
                    Some(e) => {
                        attrs.push_str(" type='terminate' condition='remote-stream-error'");
                        crate::tcp::write_element(&mut inner, &e.to_element());
                    }
                    None => attrs.push_str(" type='terminate'"),
                }
                break;
            }
        }
    }
    format!("<body{attrs}>{inner}</body>")
}
