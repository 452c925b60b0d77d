//! XMPP over WebSocket (RFC 7395) at `/xmpp-websocket`, subprotocol
//! `xmpp`: every text frame is one complete element, the stream is opened
//! and closed with `<open/>` and `<close/>` in the framing namespace, and
//! a stream restart is simply a new `<open/>`.

use std::net::SocketAddr;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use minidom::Element;

use crate::error::StreamError;
use crate::session::{Out, Session, Transport};
use crate::xml::{Input, Limits, parse_document, to_string};
use crate::{Xmpp, ns};

pub(crate) async fn upgrade(
    State(xmpp): State<Xmpp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    // Frames up to twice the stanza limit are read, so that one over the
    // limit gets the documented <policy-violation/>; past that the socket
    // is simply dropped, before buffering more.
    let limit = xmpp.inner.config.max_stanza_bytes.saturating_mul(2);
    ws.protocols(["xmpp"])
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(4096)
        .on_upgrade(move |socket| run(xmpp, socket, peer))
        .into_response()
}

fn open_frame(id: &str, domain: &str) -> String {
    format!(
        "<open xmlns='{}' id='{id}' from='{domain}' version='1.0' xml:lang='en'/>",
        ns::FRAMING
    )
}

fn element_frame(e: &Element) -> String {
    if e.ns() == ns::STREAM {
        // Each frame stands alone, so the prefix is declared in it.
        let mut s = format!("<stream:{} xmlns:stream='{}'>", e.name(), ns::STREAM);
        for child in e.children() {
            s.push_str(&to_string(child));
        }
        s.push_str(&format!("</stream:{}>", e.name()));
        s
    } else {
        to_string(e)
    }
}

/// Turns one frame into the session's input.
fn input(frame: &str, limits: &Limits) -> Result<Input, StreamError> {
    let e = parse_document(frame.as_bytes(), limits)?;
    if e.is("open", ns::FRAMING) {
        return Ok(Input::Open {
            to: e.attr("to").map(str::to_owned),
            version: e.attr("version").map(str::to_owned),
        });
    }
    if e.is("close", ns::FRAMING) {
        return Ok(Input::Close);
    }
    if e.ns() == ns::STREAM {
        return Err(StreamError::invalid_namespace(
            "use <open/> and <close/> of RFC 7395, not <stream:stream>",
        ));
    }
    Ok(Input::Element(e))
}

async fn run(xmpp: Xmpp, socket: WebSocket, peer: SocketAddr) {
    let x = xmpp.inner.clone();
    let (mut tx, mut rx) = socket.split();
    let domain = x.config.domain.clone();
    // The HTTP listener's protection is the WebSocket's: PLAIN is allowed
    // here exactly as passwords are on the REST API of the same listener.
    let Some(mut session) = Session::new(x.clone(), Transport::WebSocket, true, Some(peer.ip()))
    else {
        let _ = tx
            .send(WsMessage::Text(
                error_frames(
                    &StreamError::policy_violation("too many unauthenticated connections"),
                    &domain,
                )
                .into(),
            ))
            .await;
        return;
    };
    let limits = Limits {
        max_stanza: x.config.max_stanza_bytes,
        ..Limits::default()
    };
    let mut shutdown = x.shutdown.clone();
    let auth_deadline = tokio::time::Instant::now() + x.config.auth_timeout;
    let mut opened = false;
    let mut out = Vec::new();
    loop {
        tokio::select! {
            frame = rx.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => match input(text.as_str(), &limits) {
                    Ok(i) => session.handle(i, &mut out).await,
                    Err(e) => out.push(Out::Close(Some(e))),
                },
                Some(Ok(WsMessage::Binary(_))) => out.push(Out::Close(Some(
                    StreamError::bad_format("RFC 7395 frames are text"),
                ))),
                Some(Ok(_)) => continue,
                Some(Err(_)) => break,
                None => break,
            },
            push = session.next_push() => session.on_push(push, &mut out).await,
            _ = tokio::time::sleep_until(auth_deadline), if !session.authenticated() => {
                out.push(Out::Close(Some(StreamError::connection_timeout("authenticate sooner"))));
            }
            _ = crate::stopped(&mut shutdown) => {
                session.closed_cleanly = true;
                out.push(Out::Close(Some(StreamError::system_shutdown("the server is shutting down"))));
            }
        }
        let mut end = false;
        for o in out.drain(..) {
            let frame = match o {
                Out::Open { id } => {
                    opened = true;
                    open_frame(&id, &domain)
                }
                Out::Element(e) => element_frame(&e),
                Out::StartTls | Out::Restart => continue,
                Out::Close(error) => {
                    end = true;
                    let mut s = String::new();
                    if let Some(error) = error {
                        if !opened {
                            s.push_str(&open_frame(&crate::routing::short_id(), &domain));
                            if tx
                                .send(WsMessage::Text(std::mem::take(&mut s).into()))
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                        s = element_frame(&error.to_element());
                        let _ = tx.send(WsMessage::Text(s.into())).await;
                    }
                    format!("<close xmlns='{}'/>", ns::FRAMING)
                }
            };
            if tx.send(WsMessage::Text(frame.into())).await.is_err() {
                end = true;
                break;
            }
            if end {
                break;
            }
        }
        out.clear();
        if end {
            session.closed_cleanly = true;
            let _ = tx.close().await;
            break;
        }
    }
    session.detach();
}

fn error_frames(error: &StreamError, domain: &str) -> String {
    format!(
        "{}{}",
        open_frame(&crate::routing::short_id(), domain),
        element_frame(&error.to_element())
    )
}
