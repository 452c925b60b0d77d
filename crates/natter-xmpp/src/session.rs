//! One XMPP session, whatever carries it: stream negotiation (STARTTLS,
//! SASL, resource binding), stream management (XEP-0198) and the dispatch
//! of stanzas to the IM layer. A transport feeds it [`Input`]s and writes
//! the [`Out`]s it returns; between inputs it awaits [`Session::next_push`]
//! for what the hub or other sessions send.
//!
//! Order matters for durability: inputs are handled one at a time and a
//! stanza counts as handled (XEP-0198's `h`) only after the hub call it
//! caused has returned, i.e. after the durable commit.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minidom::Element;
use natter_core::Caller;
use natter_core::realtime::{Outbound, StreamEnd};
use natter_core::scram::ScramServer;

use crate::error::{StanzaError, StreamError};
use crate::im::Im;
use crate::routing::short_id;
use crate::xml::{ElementExt, Input, el};
use crate::{Shared, UnauthSlot, ns};

/// Which framing carries the session; decides what the stream offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    WebSocket,
    Bosh,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Self::Tcp => "XMPP",
            Self::WebSocket => "XMPP over WebSocket",
            Self::Bosh => "XMPP over BOSH",
        }
    }
}

/// What the transport must do.
#[derive(Debug)]
pub enum Out {
    /// Answer the client's stream header with ours, with this id.
    Open { id: String },
    /// Write a top-level element.
    Element(Element),
    /// STARTTLS: write `<proceed/>`, then run the TLS handshake and expect
    /// a new stream header.
    StartTls,
    /// SASL succeeded: expect a new stream header (a fresh parser on TCP).
    Restart,
    /// End the stream, with a stream error if given.
    Close(Option<StreamError>),
}

impl Out {
    /// After this, bytes belong to another stream (or none): nothing more
    /// is read or queued behind it.
    pub fn ends_writing(&self) -> bool {
        matches!(self, Out::StartTls | Out::Restart | Out::Close(_))
    }
}

/// Something that arrived for the session between inputs.
pub enum Push {
    Item(Result<Arc<Outbound>, StreamEnd>),
    Routed(Element),
    /// Time to ask the client for an acknowledgement.
    AckDue,
    /// A new connection resumes this session: end this one.
    TakenOver,
}

/// XEP-0198 state.
pub(crate) struct Sm {
    pub id: Option<String>,
    /// Stanzas handled from the client.
    pub inbound: u32,
    /// Stanzas sent to the client.
    pub outbound: u32,
    /// Sent and not yet acknowledged: (count after sending it, stanza,
    /// the message it carries, for delivered markers).
    pub unacked: VecDeque<(u32, Element, Option<natter_types::Message>)>,
    pub last_request: u32,
    pub request_at: Option<Instant>,
}

/// Most unacknowledged stanzas kept; past it the session ends rather than
/// hold memory for a client that never acknowledges (what it missed is in
/// offline delivery and the archive).
const MAX_UNACKED: usize = 1000;

pub struct Session {
    pub(crate) x: Arc<Shared>,
    pub(crate) transport: Transport,
    /// TLS protects this stream (or its HTTP carrier).
    pub secure: bool,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) stream_id: String,
    pub(crate) caller: Option<Caller>,
    /// Boxed, like `sm`: needed only during authentication, and inline it
    /// would make every session larger for as long as it lives.
    scram: Option<Box<ScramServer>>,
    /// The TLS connection's `tls-exporter` data, which SCRAM -PLUS binds
    /// the log-in to; dropped once authenticated.
    pub(crate) channel_binding: Option<Box<[u8; 32]>>,
    pub(crate) im: Option<Im>,
    /// Boxed: many clients never enable stream management.
    pub(crate) sm: Option<Box<Sm>>,
    unauth: Option<UnauthSlot>,
    /// Set when the session ends by the client's wish (no resumption).
    pub(crate) closed_cleanly: bool,
    /// Signalled when another connection resumes this session.
    takeover: Option<Arc<tokio::sync::Notify>>,
    /// The connection ends because the session moves to another one.
    handover: bool,
    sasl_failures: u32,
    limiter: governor::DefaultDirectRateLimiter,
}

impl Session {
    /// A new session; `None` when the IP has too many unauthenticated
    /// connections already.
    pub(crate) fn new(
        x: Arc<Shared>,
        transport: Transport,
        secure: bool,
        ip: Option<IpAddr>,
    ) -> Option<Self> {
        let unauth = x.unauth_slot(ip)?;
        Some(Self {
            transport,
            secure,
            ip,
            stream_id: short_id(),
            caller: None,
            scram: None,
            channel_binding: None,
            im: None,
            sm: None,
            unauth: Some(unauth),
            closed_cleanly: false,
            takeover: None,
            handover: false,
            sasl_failures: 0,
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(
                std::num::NonZeroU32::new(x.config.stanzas_per_second.max(1))
                    .expect("at least one"),
            )),
            x,
        })
    }

    pub fn authenticated(&self) -> bool {
        self.caller.is_some()
    }

    pub(crate) fn domain(&self) -> &str {
        &self.x.config.domain
    }

    fn tls_offered(&self) -> bool {
        self.transport == Transport::Tcp && !self.secure && self.x.tls.is_some()
    }

    /// Authentication needs TLS first.
    fn tls_required(&self) -> bool {
        self.transport == Transport::Tcp && !self.secure && !self.x.config.allow_plaintext
    }

    /// Handles one input; what to write goes to `out`.
    pub async fn handle(&mut self, input: Input, out: &mut Vec<Out>) {
        match input {
            Input::Open { to, version } => self.open(to, version, out),
            Input::Close => {
                self.closed_cleanly = true;
                out.push(Out::Close(None));
            }
            Input::Element(e) => self.element(e, out).await,
        }
    }

    fn open(&mut self, to: Option<String>, version: Option<String>, out: &mut Vec<Out>) {
        self.stream_id = short_id();
        out.push(Out::Open {
            id: self.stream_id.clone(),
        });
        match to {
            Some(to) if to.eq_ignore_ascii_case(self.domain()) => {}
            Some(_) => {
                out.push(Out::Close(Some(StreamError::host_unknown(
                    "this server does not serve that domain",
                ))));
                return;
            }
            None => {
                out.push(Out::Close(Some(StreamError::host_unknown(
                    "the stream header needs a 'to' naming the domain",
                ))));
                return;
            }
        }
        if version.as_deref().and_then(|v| v.split('.').next()) != Some("1") {
            out.push(Out::Close(Some(StreamError::unsupported_version(
                "XMPP 1.0 streams only",
            ))));
            return;
        }
        out.push(Out::Element(self.features()));
    }

    fn features(&self) -> Element {
        let mut f = el("features", ns::STREAM);
        if self.caller.is_none() {
            if self.tls_offered() {
                let mut tls = el("starttls", ns::TLS);
                if self.tls_required() {
                    tls = tls.c(el("required", ns::TLS));
                }
                f = f.c(tls);
            }
            if !self.tls_required() {
                let bindings = self.channel_bindings();
                let mut mechs = el("mechanisms", ns::SASL);
                for m in crate::sasl::offered(&bindings) {
                    mechs = mechs.c(el("mechanism", ns::SASL).t(m));
                }
                if self.plain_allowed() {
                    mechs = mechs.c(el("mechanism", ns::SASL).t("PLAIN"));
                }
                f = f.c(mechs);
                // XEP-0440: which binding types the -PLUS mechanisms use.
                if !bindings.is_empty() {
                    let mut cb = el("sasl-channel-binding", ns::SASL_CB);
                    for kind in bindings.kinds() {
                        cb = cb.c(el("channel-binding", ns::SASL_CB).a("type", kind));
                    }
                    f = f.c(cb);
                }
                if self.x.hub.config().registration == natter_core::RegistrationMode::Open {
                    f = f.c(el("register", ns::REGISTER_FEATURE));
                }
            }
        } else {
            f = f
                .c(el("bind", ns::BIND))
                .c(el("session", ns::SESSION).c(el("optional", ns::SESSION)))
                .c(el("sm", ns::SM))
                .c(el("csi", ns::CSI));
        }
        // XEP-0478: tell the client the stanza size limit up front.
        f.c(
            el("limits", ns::LIMITS).c(el("max-bytes", ns::LIMITS).t(self
                .x
                .config
                .max_stanza_bytes
                .to_string())),
        )
    }

    /// What a SCRAM exchange on this stream can be bound to.
    pub(crate) fn channel_bindings(&self) -> natter_core::scram::ChannelBindings {
        let bindings = natter_core::scram::ChannelBindings::none();
        match &self.channel_binding {
            Some(data) => bindings.with("tls-exporter", data.to_vec()),
            None => bindings,
        }
    }

    pub(crate) fn plain_allowed(&self) -> bool {
        self.secure || self.transport != Transport::Tcp || self.x.config.allow_plaintext
    }

    async fn element(&mut self, e: Element, out: &mut Vec<Out>) {
        let (name, namespace) = (e.name().to_owned(), e.ns());
        match (name.as_str(), namespace.as_str()) {
            ("starttls", ns::TLS) => {
                if self.tls_offered() && self.caller.is_none() {
                    out.push(Out::StartTls);
                } else {
                    out.push(Out::Element(el("failure", ns::TLS)));
                    out.push(Out::Close(None));
                }
            }
            (_, ns::SASL) => {
                if self.caller.is_some() || self.tls_required() {
                    out.push(Out::Close(Some(StreamError::policy_violation(
                        "SASL is not available at this point of the stream",
                    ))));
                    return;
                }
                self.sasl(&e, out).await;
            }
            (_, ns::SM) => self.sm(e, out).await,
            ("active", ns::CSI) | ("inactive", ns::CSI) => {
                if let Some(im) = &mut self.im {
                    im.inactive = name == "inactive";
                }
            }
            ("message" | "presence" | "iq", ns::CLIENT) => {
                self.limiter.until_ready().await;
                self.stanza(e, out).await;
                if let Some(sm) = &mut self.sm {
                    sm.inbound = sm.inbound.wrapping_add(1);
                }
            }
            (_, ns::CLIENT) => out.push(Out::Close(Some(StreamError::unsupported_stanza_type(
                format!("<{name}/> is not a stanza"),
            )))),
            _ => out.push(Out::Close(Some(StreamError::unsupported_stanza_type(
                format!("unknown element <{name} xmlns='{namespace}'/>"),
            )))),
        }
    }

    async fn sasl(&mut self, e: &Element, out: &mut Vec<Out>) {
        match crate::sasl::step(self, e).await {
            crate::sasl::Step::Reply(reply) => out.push(Out::Element(reply)),
            crate::sasl::Step::Challenge(reply, server) => {
                self.scram = Some(Box::new(server));
                out.push(Out::Element(reply));
            }
            crate::sasl::Step::Success(reply, caller) => {
                self.caller = Some(caller);
                self.unauth = None;
                self.channel_binding = None;
                out.push(Out::Element(reply));
                out.push(Out::Restart);
            }
            crate::sasl::Step::Failure(reply) => {
                self.sasl_failures += 1;
                out.push(Out::Element(reply));
                if self.sasl_failures >= 3 {
                    out.push(Out::Close(Some(StreamError::policy_violation(
                        "too many failed authentication attempts",
                    ))));
                }
            }
        }
    }

    pub(crate) fn take_scram(&mut self) -> Option<ScramServer> {
        self.scram.take().map(|s| *s)
    }

    async fn stanza(&mut self, e: Element, out: &mut Vec<Out>) {
        let Some(caller) = self.caller.clone() else {
            // In-band registration is the one thing allowed before SASL.
            if e.name() == "iq" && e.get_child("query", ns::REGISTER).is_some() {
                if let Some(reply) = crate::im::register(self, &e).await {
                    out.push(Out::Element(reply));
                }
                return;
            }
            out.push(Out::Close(Some(StreamError::not_authorized(
                "authenticate before sending stanzas",
            ))));
            return;
        };
        // RFC 6120 8.1.2.1: a 'from' must be the session's own JID, if any.
        if let Some(from) = e.attr("from") {
            let own = match &self.im {
                Some(im) => from == im.full || from == im.bare,
                None => false,
            };
            if !own {
                out.push(Out::Close(Some(StreamError::invalid_from(
                    "'from' does not match the authenticated JID",
                ))));
                return;
            }
        }
        if self.im.is_none() {
            if e.name() == "iq"
                && e.attr("type") == Some("set")
                && e.get_child("bind", ns::BIND).is_some()
            {
                self.bind(&caller, &e, out);
            } else if e.name() == "iq" {
                out.push(Out::Element(
                    StanzaError::new("cancel", "not-allowed", "bind a resource first").reply_to(&e),
                ));
            } else {
                out.push(Out::Close(Some(StreamError::not_authorized(
                    "bind a resource before sending stanzas",
                ))));
            }
            return;
        }
        let mut replies = crate::im::Replies::default();
        crate::im::stanza(self, e, &mut replies).await;
        for (stanza, message) in replies.0 {
            self.send(stanza, message, out);
        }
    }

    fn bind(&mut self, caller: &Caller, e: &Element, out: &mut Vec<Out>) {
        let requested = e
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("resource", ns::BIND))
            .map(|r| r.text())
            .unwrap_or_default();
        let bare = format!("{}@{}", caller.user.username.as_str(), self.domain());
        let resource = if requested.trim().is_empty() {
            format!("natter.{}", short_id())
        } else {
            match jid::FullJid::new(&format!("{bare}/{requested}")) {
                Ok(j) => j.resource().to_string(),
                Err(_) => {
                    out.push(Out::Element(
                        StanzaError::bad_request("invalid resource").reply_to(e),
                    ));
                    return;
                }
            }
        };
        let Some((resource, routed)) = self.x.bind(caller.user.id, &bare, &resource) else {
            out.push(Out::Element(
                StanzaError::new(
                    "cancel",
                    "resource-constraint",
                    "this account has as many sessions as allowed",
                )
                .reply_to(e),
            ));
            return;
        };
        let full = format!("{bare}/{resource}");
        let reply = el("iq", ns::CLIENT)
            .a("type", "result")
            .a_opt("id", e.attr("id"))
            .c(el("bind", ns::BIND).c(el("jid", ns::BIND).t(full.clone())));
        self.im = Some(Im::new(caller.clone(), bare, full, routed));
        out.push(Out::Element(reply));
    }

    async fn sm(&mut self, e: Element, out: &mut Vec<Out>) {
        match e.name() {
            "enable" => {
                if self.im.is_none() || self.sm.is_some() {
                    out.push(Out::Element(
                        el("failed", ns::SM).c(el("unexpected-request", ns::STANZAS_ERR)),
                    ));
                    return;
                }
                let resume = matches!(e.attr("resume"), Some("true" | "1"));
                let id = resume.then(|| format!("{}-{}", short_id(), short_id()));
                let mut reply = el("enabled", ns::SM);
                if let Some(id) = &id {
                    reply = reply
                        .a("id", id.clone())
                        .a("resume", "true")
                        .a("max", self.x.config.resume_timeout.as_secs().to_string());
                }
                if let Some(id) = &id {
                    self.attach(id.clone());
                }
                self.sm = Some(Box::new(Sm {
                    id,
                    inbound: 0,
                    outbound: 0,
                    unacked: VecDeque::new(),
                    last_request: 0,
                    request_at: None,
                }));
                out.push(Out::Element(reply));
            }
            "r" => {
                if let Some(sm) = &self.sm {
                    out.push(Out::Element(el("a", ns::SM).a("h", sm.inbound.to_string())));
                }
            }
            "a" => {
                let Some(h) = e.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                    out.push(Out::Close(Some(StreamError::bad_format(
                        "<a/> needs a numeric 'h'",
                    ))));
                    return;
                };
                if let Err(e) = self.acknowledged(h) {
                    out.push(Out::Close(Some(e)));
                }
            }
            "resume" => self.resume(&e, out).await,
            _ => out.push(Out::Close(Some(StreamError::unsupported_stanza_type(
                "unknown stream management element",
            )))),
        }
    }

    /// The client has everything up to its `h`th stanza: those messages
    /// count as delivered now.
    fn acknowledged(&mut self, h: u32) -> Result<(), StreamError> {
        let Some(sm) = &mut self.sm else {
            return Ok(());
        };
        if h.wrapping_sub(sm.outbound) as i32 > 0 {
            return Err(StreamError::new_undefined(
                "handled-count-too-high",
                format!(
                    "acknowledged {h} stanzas, but only {} were sent",
                    sm.outbound
                ),
            ));
        }
        while let Some((n, _, _)) = sm.unacked.front() {
            if (h.wrapping_sub(*n) as i32) < 0 {
                break;
            }
            let (_, _, message) = sm.unacked.pop_front().expect("front exists");
            if let (Some(m), Some(caller)) = (message, &self.caller) {
                self.x.hub.note_delivered(caller, &m);
            }
        }
        if sm.unacked.is_empty() {
            sm.request_at = None;
        }
        Ok(())
    }

    /// Registers this session as resumable while its connection lives.
    fn attach(&mut self, id: String) {
        let notify = Arc::new(tokio::sync::Notify::new());
        self.x
            .attached
            .lock()
            .expect("attached sessions")
            .insert(id, notify.clone());
        self.takeover = Some(notify);
    }

    /// The parked session `id`; if its connection is still attached, asks
    /// it to hand the session over and waits for that (XEP-0198 section 5:
    /// the old stream ends with `<conflict/>`).
    async fn take_parked(&self, id: &str) -> Option<Session> {
        let user = self.caller.as_ref()?.user.id;
        let take = || {
            let mut parked = self.x.parked.lock().expect("parked sessions");
            match parked.get(id) {
                Some(p) if p.caller.as_ref().map(|c| c.user.id) == Some(user) => parked.remove(id),
                _ => None,
            }
        };
        if let Some(s) = take() {
            return Some(s);
        }
        let attached = self
            .x
            .attached
            .lock()
            .expect("attached sessions")
            .get(id)
            .cloned()?;
        attached.notify_one();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(s) = take() {
                return Some(s);
            }
        }
        None
    }

    async fn resume(&mut self, e: &Element, out: &mut Vec<Out>) {
        let failed = |out: &mut Vec<Out>, cond: &str| {
            out.push(Out::Element(
                el("failed", ns::SM).c(el(cond, ns::STANZAS_ERR)),
            ));
        };
        if self.caller.is_none() || self.im.is_some() {
            failed(out, "unexpected-request");
            return;
        }
        let (Some(previd), Some(h)) = (
            e.attr("previd"),
            e.attr("h").and_then(|h| h.parse::<u32>().ok()),
        ) else {
            failed(out, "bad-request");
            return;
        };
        let Some(mut old) = self.take_parked(previd).await else {
            failed(out, "item-not-found");
            return;
        };
        // The resumed session continues with this connection's transport.
        old.transport = self.transport;
        old.secure = self.secure;
        old.ip = self.ip;
        old.stream_id = self.stream_id.clone();
        old.closed_cleanly = false;
        old.handover = false;
        let _ = std::mem::replace(self, old);
        self.attach(previd.to_owned());
        if let Err(e) = self.acknowledged(h) {
            out.push(Out::Close(Some(e)));
            return;
        }
        let sm = self
            .sm
            .as_mut()
            .expect("a parked session has stream management");
        out.push(Out::Element(
            el("resumed", ns::SM)
                .a("previd", previd)
                .a("h", sm.inbound.to_string()),
        ));
        // Resend what the client never acknowledged, counting afresh.
        sm.outbound = h;
        let resend: Vec<_> = sm.unacked.drain(..).collect();
        for (_, stanza, message) in resend {
            self.send(stanza, message, out);
        }
        tracing::debug!(previd, "XMPP session resumed");
    }

    /// Writes a stanza, counting it for stream management.
    pub(crate) fn send(
        &mut self,
        stanza: Element,
        message: Option<natter_types::Message>,
        out: &mut Vec<Out>,
    ) {
        let is_stanza = matches!(stanza.name(), "message" | "presence" | "iq");
        if let (Some(sm), true) = (&mut self.sm, is_stanza) {
            sm.outbound = sm.outbound.wrapping_add(1);
            sm.unacked.push_back((sm.outbound, stanza.clone(), message));
            out.push(Out::Element(stanza));
            if sm.outbound.wrapping_sub(sm.last_request) >= 5 {
                sm.last_request = sm.outbound;
                sm.request_at = None;
                out.push(Out::Element(el("r", ns::SM)));
            } else if sm.request_at.is_none() {
                sm.request_at = Some(Instant::now() + Duration::from_secs(2));
            }
            if sm.unacked.len() > MAX_UNACKED {
                out.push(Out::Close(Some(StreamError::policy_violation(
                    "too many unacknowledged stanzas",
                ))));
            }
        } else {
            if let (Some(m), Some(caller)) = (message, &self.caller) {
                self.x.hub.note_delivered(caller, &m);
            }
            out.push(Out::Element(stanza));
        }
    }

    /// Waits for the next thing to send the client; cancel-safe.
    pub async fn next_push(&mut self) -> Push {
        let ack_due = self.sm.as_ref().and_then(|s| s.request_at);
        let takeover = self.takeover.clone();
        let Some(im) = &mut self.im else {
            return std::future::pending().await;
        };
        let taken = async {
            match takeover {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        let ack = async {
            match ack_due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = async {
                match &mut im.live {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => Push::Item(item),
            Some(stanza) = im.routed.recv() => Push::Routed(*stanza),
            _ = ack => Push::AckDue,
            _ = taken => Push::TakenOver,
        }
    }

    /// What [`Session::next_push`] would return at once, if anything is
    /// already queued (hub items and routed stanzas only).
    pub fn try_push(&mut self) -> Option<Push> {
        let im = self.im.as_mut()?;
        if let Some(item) = im.live.as_mut().and_then(|l| l.try_next()) {
            return Some(Push::Item(Ok(item)));
        }
        im.routed
            .try_recv()
            .ok()
            .map(|stanza| Push::Routed(*stanza))
    }

    /// Handles what [`Session::next_push`] returned.
    pub async fn on_push(&mut self, push: Push, out: &mut Vec<Out>) {
        match push {
            Push::AckDue => {
                if let Some(sm) = &mut self.sm {
                    sm.request_at = None;
                    sm.last_request = sm.outbound;
                    out.push(Out::Element(el("r", ns::SM)));
                }
            }
            Push::Routed(stanza) => self.send(stanza, None, out),
            Push::TakenOver => {
                self.handover = true;
                out.push(Out::Close(Some(StreamError::conflict(
                    "this session was resumed on another connection",
                ))));
            }
            Push::Item(Ok(item)) => {
                let mut stanzas = Vec::new();
                match crate::im::live(self, &item, &mut stanzas).await {
                    Ok(()) => {
                        for (s, m) in stanzas {
                            self.send(s, m, out);
                        }
                    }
                    Err(e) => out.push(Out::Close(Some(e))),
                }
            }
            Push::Item(Err(end)) => crate::im::stream_ended(self, end, out).await,
        }
    }

    /// The connection is gone. A session with resumable stream management
    /// waits to be resumed; any other ends here.
    pub fn detach(mut self) {
        let resumable = (self.handover || !self.closed_cleanly)
            && self.im.is_some()
            && self.sm.as_ref().is_some_and(|s| s.id.is_some());
        if !resumable {
            return;
        }
        let id = self
            .sm
            .as_ref()
            .and_then(|s| s.id.clone())
            .expect("resumable sessions have an id");
        let x = self.x.clone();
        let timeout = x.config.resume_timeout;
        self.scram = None;
        self.takeover = None;
        x.attached.lock().expect("attached sessions").remove(&id);
        x.parked
            .lock()
            .expect("parked sessions")
            .insert(id.clone(), self);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            // Dropping it ends the session: presence goes offline, and
            // unacknowledged messages stay for offline delivery.
            let expired = x.parked.lock().expect("parked sessions").remove(&id);
            drop(expired);
        });
    }

    pub(crate) fn transport_label(&self) -> &'static str {
        self.transport.label()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(im) = &self.im {
            self.x.unbind(&im.full);
        }
        if self.takeover.is_some()
            && let Some(id) = self.sm.as_ref().and_then(|s| s.id.as_ref())
        {
            self.x
                .attached
                .lock()
                .expect("attached sessions")
                .remove(id);
        }
    }
}

impl StreamError {
    /// `undefined-condition` with an application-specific condition
    /// element, as XEP-0198 asks for `handled-count-too-high`.
    pub fn new_undefined(_app: &'static str, text: impl Into<String>) -> Self {
        Self {
            condition: "undefined-condition",
            text: Some(text.into()),
        }
    }
}
