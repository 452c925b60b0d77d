//! Instant messaging over XMPP (RFC 6121 and the extensions Natter
//! offers), translated into hub calls, and the hub's real-time items
//! translated back into stanzas.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::LazyLock;

use minidom::Element;
use natter_core::queue;
use natter_core::realtime::{Item, Outbound, PresenceStatus, Stream, StreamEnd};
use natter_core::{Caller, CoreError};
use natter_types::{
    ClientId, ContactGroups, ContactName, ConversationId, ConversationKind, DisplayName, EventKind,
    Message, MessageId, Password, Timestamp, Username,
};

use crate::error::{StanzaError, StreamError};
use crate::ns;
use crate::session::{Out, Session};
use crate::xml::{ElementExt, el};

/// Message ids this session sent recently, so that their echo from the
/// hub is not sent back (carbons go to the other resources).
const OWN_SENT_KEEP: usize = 512;
/// Most conversations examined for offline delivery at log-in.
const OFFLINE_CONVERSATIONS: u32 = 100;
/// Most messages per conversation delivered as offline messages; older
/// ones are in the archive (XEP-0313).
const OFFLINE_PER_CONVERSATION: u32 = 100;
/// Own and peer messages remembered per direct conversation (see
/// [`Recent`]); beyond that, receipts and markers read the store.
const RECENT_KEEP: usize = 256;

/// The IM state of a bound session.
pub(crate) struct Im {
    pub caller: Caller,
    pub bare: String,
    pub full: String,
    pub routed: queue::Receiver<Box<Element>>,
    /// The hub stream, open while the resource is available (RFC 6121:
    /// only available resources receive messages to the bare JID).
    pub live: Option<Stream>,
    pub carbons: bool,
    /// XEP-0352: the client is in the background; chat states are held.
    pub inactive: bool,
    /// XEP-0191: the client asked for the blocklist, so it gets pushes.
    pub blocklist_interest: bool,
    /// XEP-0184: the client asked for receipts (a `<request/>` in a message
    /// it sent), so the peer's delivered watermark comes back to it as
    /// `<received/>`. A client that never asks gets none: receipts answer
    /// requests, and unasked ones would cost a stanza per message.
    wants_receipts: bool,
    /// Allocated when the session first has something to remember: an idle
    /// session (or one that never chats) keeps none of these maps, which
    /// are about 0.4 KiB even empty.
    known: Option<Box<Known>>,
}

/// What a session remembers about its conversations, to spare store reads.
#[derive(Default)]
struct Known {
    /// Direct conversations by id, with the peer; `None` for groups.
    peers: HashMap<ConversationId, Option<Username>>,
    /// The direct conversation with each peer.
    conversations: HashMap<Username, ConversationId>,
    own_sent: VecDeque<MessageId>,
    own_sent_set: HashSet<MessageId>,
    /// Highest seq delivered at log-in as an offline message, per
    /// conversation: live copies of those are skipped.
    offline_max: HashMap<ConversationId, i64>,
    /// Highest seq already reported as delivered / displayed to this
    /// session, per conversation.
    reported_delivered: HashMap<ConversationId, i64>,
    reported_read: HashMap<ConversationId, i64>,
    /// Highest seq this resource itself marked as read, per conversation:
    /// its own markers are not copied back to it.
    marked_read: HashMap<ConversationId, i64>,
    /// Recent messages of each direct conversation seen on the live
    /// stream, so that receipts and markers in either direction cost no
    /// store read.
    recent: HashMap<ConversationId, Recent>,
}

/// The recent messages of one direct conversation, as the live stream
/// brought them. Watermark moves (receipts and markers to send) and
/// receipts and markers from the client (naming a peer's message) are
/// answered from here; what is not here is read from the store.
struct Recent {
    /// Every own message with a seq from this one on is in `own`: the
    /// live stream brings every event of the conversation in order from
    /// the first one this session saw.
    complete_from: i64,
    /// Seq and client id of the user's own messages, ascending.
    own: VecDeque<(i64, String)>,
    /// The peer's latest messages, oldest first.
    peer: VecDeque<Message>,
}

impl Recent {
    /// The user's own messages with a seq in `(after, upto]`, if this
    /// knows all of them.
    fn own_between(&self, after: i64, upto: i64) -> Option<impl Iterator<Item = &str>> {
        (after + 1 >= self.complete_from).then(|| {
            self.own
                .iter()
                .skip_while(move |(seq, _)| *seq <= after)
                .take_while(move |(seq, _)| *seq <= upto)
                .map(|(_, id)| id.as_str())
        })
    }
}

impl Im {
    pub fn new(
        caller: Caller,
        bare: String,
        full: String,
        routed: queue::Receiver<Box<Element>>,
    ) -> Self {
        Self {
            caller,
            bare,
            full,
            routed,
            live: None,
            carbons: false,
            inactive: false,
            blocklist_interest: false,
            wants_receipts: false,
            known: None,
        }
    }

    /// What the session remembers; empty maps if nothing yet.
    fn known(&self) -> &Known {
        static NOTHING: LazyLock<Known> = LazyLock::new(Known::default);
        self.known.as_deref().unwrap_or(&NOTHING)
    }

    /// What the session remembers, to add to it.
    fn known_mut(&mut self) -> &mut Known {
        self.known.get_or_insert_default()
    }

    /// Notes a message of a direct conversation that came on the live
    /// stream (`sent_by_me`: the user's own, from any of its resources).
    fn saw_message(&mut self, m: &Message, sent_by_me: bool) {
        let recent = self
            .known_mut()
            .recent
            .entry(m.conversation_id)
            .or_insert_with(|| Recent {
                complete_from: m.seq,
                own: VecDeque::new(),
                peer: VecDeque::new(),
            });
        if sent_by_me {
            recent.own.push_back((m.seq, m.client_id.clone()));
            if recent.own.len() > RECENT_KEEP
                && let Some((seq, _)) = recent.own.pop_front()
            {
                recent.complete_from = recent.complete_from.max(seq + 1);
            }
        } else {
            recent.peer.push_back(m.clone());
            if recent.peer.len() > RECENT_KEEP {
                recent.peer.pop_front();
            }
        }
    }

    /// Notes that the peer's delivered (or read) watermark reached `seq`.
    fn reported(&mut self, conversation: ConversationId, seq: i64, read: bool) {
        let known = self.known_mut();
        let reported = if read {
            &mut known.reported_read
        } else {
            &mut known.reported_delivered
        };
        reported.insert(conversation, seq);
        self.forget_reported(conversation);
    }

    /// Drops own messages that no watermark move can name any more: both
    /// watermarks passed them.
    fn forget_reported(&mut self, conversation: ConversationId) {
        let Some(k) = self.known.as_deref_mut() else {
            return;
        };
        let (Some(delivered), Some(read), Some(recent)) = (
            k.reported_delivered.get(&conversation),
            k.reported_read.get(&conversation),
            k.recent.get_mut(&conversation),
        ) else {
            return;
        };
        let passed = (*delivered).min(*read);
        while recent.own.front().is_some_and(|(seq, _)| *seq <= passed) {
            recent.own.pop_front();
        }
        recent.complete_from = recent.complete_from.max(passed + 1);
    }

    /// Forgets what the live stream brought: it stopped, and events may
    /// pass unseen until the next one starts.
    pub fn live_stopped(&mut self) {
        self.live = None;
        if let Some(k) = &mut self.known {
            k.recent.clear();
        }
    }

    fn remember_sent(&mut self, id: MessageId) {
        let k = self.known_mut();
        if k.own_sent_set.insert(id) {
            k.own_sent.push_back(id);
            if k.own_sent.len() > OWN_SENT_KEEP
                && let Some(old) = k.own_sent.pop_front()
            {
                k.own_sent_set.remove(&old);
            }
        }
    }
}

/// Where a stanza is addressed.
enum Target {
    /// The server itself (no `to`, or the bare domain).
    Server,
    /// The user's own account (bare JID) or one of its resources.
    Own(Option<String>),
    /// Another local account, maybe a resource of it.
    User(Username, Option<String>),
    /// Another domain: Natter does not federate (yet).
    Remote,
    Invalid,
}

fn target(s: &Session, to: Option<&str>) -> Target {
    let Some(to) = to else {
        return Target::Server;
    };
    let Ok(jid) = jid::Jid::new(to) else {
        return Target::Invalid;
    };
    if !jid.domain().as_str().eq_ignore_ascii_case(s.domain()) {
        return Target::Remote;
    }
    let resource = jid.resource().map(|r| r.to_string());
    let Some(node) = jid.node() else {
        return if resource.is_none() {
            Target::Server
        } else {
            Target::Invalid
        };
    };
    let Ok(name) = Username::parse(node.as_str()) else {
        return Target::Invalid;
    };
    let own = s.caller.as_ref().is_some_and(|c| c.user.username == name);
    if own {
        Target::Own(resource)
    } else {
        Target::User(name, resource)
    }
}

pub(crate) fn bare_jid(s: &Session, user: &Username) -> String {
    format!("{}@{}", user.as_str(), s.domain())
}

fn stamp(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn result(iq: &Element) -> Element {
    el("iq", ns::CLIENT)
        .a("type", "result")
        .a_opt("id", iq.attr("id"))
        .a_opt("from", iq.attr("to"))
}

/// Stanzas to send in answer to one input, each with the message it
/// delivers, if any (for delivered markers, see `Session::send`).
#[derive(Default)]
pub(crate) struct Replies(pub Vec<(Element, Option<Message>)>);

impl Replies {
    pub fn push(&mut self, stanza: Element) {
        self.0.push((stanza, None));
    }

    pub fn push_message(&mut self, stanza: Element, message: Message) {
        self.0.push((stanza, Some(message)));
    }
}

/// Handles a stanza from a bound resource; replies go to `replies`.
pub(crate) async fn stanza(s: &mut Session, e: Element, replies: &mut Replies) {
    let outcome = match crate::blocking::guard(s, &e).await {
        Some(blocked) => blocked,
        None => match e.name() {
            "message" => message(s, &e, replies).await,
            "presence" => presence(s, &e, replies).await,
            _ => iq(s, &e, replies).await,
        },
    };
    if let Err(err) = outcome {
        // RFC 6120 8.3.1: never answer an error with an error.
        if e.attr("type") != Some("error") {
            replies.push(err.reply_to(&e));
        }
    }
}

type Handled = Result<(), StanzaError>;

async fn direct_conversation(
    s: &mut Session,
    peer: &Username,
) -> Result<ConversationId, StanzaError> {
    let im = s.im.as_ref().expect("bound");
    if let Some(id) = im.known().conversations.get(peer) {
        return Ok(*id);
    }
    let created =
        s.x.hub
            .direct_conversation(&im.caller, peer)
            .await
            .map_err(|e| match e {
                // RFC 6121 8.5.2.2.1: no such account looks like no service.
                CoreError::NotFound { .. } => StanzaError::service_unavailable(),
                e => e.into(),
            })?;
    let id = created.details.conversation.id;
    let known = s.im.as_mut().expect("bound").known_mut();
    known.conversations.insert(peer.clone(), id);
    known.peers.insert(id, Some(peer.clone()));
    Ok(id)
}

/// The peer of a direct conversation, `None` for a group.
pub(crate) async fn peer_of(s: &mut Session, id: ConversationId) -> Option<Username> {
    let im = s.im.as_ref().expect("bound");
    if let Some(p) = im.known().peers.get(&id) {
        return p.clone();
    }
    let details = s.x.hub.conversation(&im.caller, id).await.ok()?;
    let me = &im.caller.user.username;
    let peer = (details.conversation.kind == ConversationKind::Direct)
        .then(|| {
            details
                .members
                .iter()
                .map(|m| m.user.username.clone())
                .find(|u| u != me)
        })
        .flatten();
    let known = s.im.as_mut().expect("bound").known_mut();
    if let Some(p) = &peer {
        known.conversations.insert(p.clone(), id);
    }
    known.peers.insert(id, peer.clone());
    peer
}

async fn message(s: &mut Session, e: &Element, _replies: &mut Replies) -> Handled {
    let kind = e.attr("type").unwrap_or("normal");
    if kind == "error" || kind == "headline" {
        return Ok(());
    }
    let (peer, resource) = match target(s, e.attr("to")) {
        Target::User(peer, resource) => (peer, resource),
        Target::Remote => {
            return Err(StanzaError::new(
                "cancel",
                "remote-server-not-found",
                "this server does not federate with other domains",
            ));
        }
        Target::Invalid => return Err(StanzaError::new("modify", "jid-malformed", "")),
        Target::Server | Target::Own(_) => return Err(StanzaError::service_unavailable()),
    };
    if kind == "groupchat" {
        return Err(StanzaError::new(
            "cancel",
            "service-unavailable",
            "group chat over XMPP is not available yet",
        ));
    }
    let body = e.get_child("body", ns::CLIENT).map(|b| b.text());
    // Without a body, a message to a full JID is for that client alone
    // (call signalling and the like): route it as it is.
    if body.is_none()
        && let Some(resource) = &resource
        && !has_im_payload(e)
    {
        let full = format!("{}/{resource}", bare_jid(s, &peer));
        let from = s.im.as_ref().expect("bound").full.clone();
        let mut stanza = e.clone();
        stanza.set_attr(rxml::Namespace::NONE, ncname("from"), from);
        if !s.x.route_anywhere(&full, stanza).await {
            return Err(StanzaError::service_unavailable());
        }
        return Ok(());
    }
    let conversation = direct_conversation(s, &peer).await?;
    let caller = s.im.as_ref().expect("bound").caller.clone();
    let hub = s.x.hub.clone();

    // XEP-0184 receipt and XEP-0333 markers: name one of the peer's
    // messages by the id its sender gave it.
    if let Some(r) = e.get_child("received", ns::RECEIPTS)
        && let Some(m) = peer_message(s, &peer, r.attr("id")).await
    {
        hub.note_delivered(&caller, &m);
    }
    for child in e.children().filter(|c| c.ns() == ns::MARKERS) {
        let Some(m) = peer_message(s, &peer, child.attr("id")).await else {
            continue;
        };
        match child.name() {
            "received" => hub.note_delivered(&caller, &m),
            "displayed" | "acknowledged" => {
                hub.mark_read(&caller, m.conversation_id, m.seq).await?;
                let marked =
                    s.im.as_mut()
                        .expect("bound")
                        .known_mut()
                        .marked_read
                        .entry(m.conversation_id)
                        .or_insert(0);
                *marked = (*marked).max(m.seq);
            }
            _ => {}
        }
    }
    // XEP-0424 retraction of one's own message.
    if let Some(r) = e.get_child("retract", ns::RETRACT) {
        let Some(m) = own_message(s, r.attr("id")).await else {
            return Err(StanzaError::item_not_found("no such message of yours"));
        };
        hub.delete_message(&caller, m.conversation_id, m.seq)
            .await?;
        return Ok(());
    }
    if let Some(text) = body {
        let body = hub
            .parse_body(text)
            .map_err(|e| StanzaError::new("modify", "not-acceptable", e.to_string()))?;
        // XEP-0308 correction of one's own last message.
        if let Some(r) = e.get_child("replace", ns::CORRECT) {
            let Some(m) = own_message(s, r.attr("id")).await else {
                return Err(StanzaError::item_not_found("no such message of yours"));
            };
            hub.edit_message(&caller, m.conversation_id, m.seq, body)
                .await?;
            return Ok(());
        }
        let client_id = e
            .get_child("origin-id", ns::SID)
            .and_then(|o| o.attr("id"))
            .or(e.attr("id"))
            .and_then(|id| ClientId::parse(id).ok())
            .unwrap_or_else(|| {
                ClientId::parse(&uuid::Uuid::now_v7().to_string()).expect("a UUID is a client id")
            });
        let im = s.im.as_mut().expect("bound");
        im.wants_receipts |= e.get_child("request", ns::RECEIPTS).is_some();
        if e.get_child("private", ns::CARBONS).is_some() {
            s.x.private_sent
                .lock()
                .expect("not poisoned")
                .mark(caller.user.id, client_id.as_str());
        }
        let sent = hub
            .send_message(&caller, conversation, client_id, body)
            .await?;
        s.im.as_mut().expect("bound").remember_sent(sent.message.id);
        return Ok(());
    }
    // XEP-0085 chat state without a message: typing.
    for child in e.children().filter(|c| c.ns() == ns::CHATSTATES) {
        let active = child.name() == "composing";
        hub.typing(&caller, conversation, active).await?;
    }
    Ok(())
}

/// Whether a bodiless message carries something the IM layer handles
/// (receipts, markers, chat states, retractions) rather than something for
/// the addressed client alone.
pub(crate) fn has_im_payload(e: &Element) -> bool {
    e.children().any(|c| {
        let n = c.ns();
        n == ns::RECEIPTS || n == ns::MARKERS || n == ns::CHATSTATES || n == ns::RETRACT
    })
}

fn ncname(name: &str) -> rxml::NcName {
    rxml::NcName::try_from(name).expect("names in the code are valid")
}

/// One of the peer's messages by the id its sender gave it, or by its
/// stanza id (clients differ in which they quote).
async fn peer_message(s: &Session, peer: &Username, id: Option<&str>) -> Option<Message> {
    let id = id?;
    let im = s.im.as_ref()?;
    // Usually one the live stream just brought: no store read.
    let uuid = uuid::Uuid::parse_str(id).ok();
    if let Some(conversation) = im.known().conversations.get(peer)
        && let Some(recent) = im.known().recent.get(conversation)
        && let Some(m) = recent
            .peer
            .iter()
            .rev()
            .find(|m| m.client_id == id || Some(m.id.0) == uuid)
    {
        return Some(m.clone());
    }
    let caller = &im.caller;
    if let Ok(m) = s.x.hub.message_by_client_id(caller, peer, id).await {
        return Some(m);
    }
    s.x.hub
        .message_by_id(caller, MessageId(uuid?))
        .await
        .ok()
        .filter(|m| &m.sender == peer)
}

async fn own_message(s: &Session, id: Option<&str>) -> Option<Message> {
    let id = id?;
    let caller = &s.im.as_ref()?.caller;
    let me = caller.user.username.clone();
    if let Ok(m) = s.x.hub.message_by_client_id(caller, &me, id).await {
        return Some(m);
    }
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    s.x.hub
        .message_by_id(caller, MessageId(uuid))
        .await
        .ok()
        .filter(|m| m.sender == me)
}

fn presence_status(e: &Element) -> PresenceStatus {
    match e.get_child("show", ns::CLIENT).map(|s| s.text()).as_deref() {
        Some("away" | "xa" | "dnd") => PresenceStatus::Away,
        _ => PresenceStatus::Online,
    }
}

async fn presence(s: &mut Session, e: &Element, replies: &mut Replies) -> Handled {
    let kind = e.attr("type");
    match (kind, e.attr("to")) {
        (None, None) => {
            let status = presence_status(e);
            s.x.presence_extras.lock().expect("presence extras").insert(
                s.im.as_ref().expect("bound").caller.user.username.clone(),
                presence_extras(e),
            );
            let full = s.im.as_ref().expect("bound").full.clone();
            // RFC 6121 4.2.2: the user's own resources see the presence
            // too, this one first, so a client knows it is available
            // before what was waiting for it arrives.
            replies.push(own_presence(e, &full, &full));
            for other in s.x.resources_of(&s.im.as_ref().expect("bound").bare) {
                if other != full {
                    s.x.route(&other, own_presence(e, &full, &other));
                }
            }
            match &s.im.as_ref().expect("bound").live {
                Some(live) => live.set_presence(status).await?,
                None => become_available(s, status, replies).await?,
            }
        }
        (Some("unavailable"), None) => s.im.as_mut().expect("bound").live_stopped(),
        (
            Some(kind @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe")),
            Some(to),
        ) => {
            let Target::User(peer, _) = target(s, Some(to)) else {
                return Ok(());
            };
            subscription(s, kind, &peer, replies).await?;
        }
        (None | Some("unavailable"), Some(to)) => {
            // Directed presence to another client on this node.
            if let Target::User(peer, Some(resource)) = target(s, Some(to)) {
                let full = format!("{}/{resource}", bare_jid(s, &peer));
                let mut stanza = e.clone();
                let from = s.im.as_ref().expect("bound").full.clone();
                stanza.set_attr(rxml::Namespace::NONE, ncname("from"), from);
                s.x.route_anywhere(&full, stanza).await;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Presence subscriptions (RFC 6121 section 3) over Natter's contacts.
///
/// A contact in Natter means "in my address book, and I share my presence
/// with them"; one sees the presence of whoever has one as a contact (or
/// shares a direct conversation). So, for the roster of alice:
///
/// - alice's item for bob is `from` (bob sees alice) or, when alice also
///   sees bob, `both`;
/// - alice's `subscribe` to bob adds bob to her contacts and asks bob;
///   bob's `subscribed` adds alice to his contacts, after which alice sees
///   him;
/// - `unsubscribe` and `unsubscribed` keep the contacts (Natter has no
///   "listed but hidden" state) and answer with the state as it is.
async fn subscription(
    s: &mut Session,
    kind: &str,
    peer: &Username,
    replies: &mut Replies,
) -> Handled {
    let caller = s.im.as_ref().expect("bound").caller.clone();
    let hub = s.x.hub.clone();
    let me = caller.user.username.clone();
    let peer_jid = bare_jid(s, peer);
    let not_found = |e: CoreError| match e {
        CoreError::NotFound { .. } => StanzaError::item_not_found("no such user"),
        e => e.into(),
    };
    match kind {
        "subscribe" | "subscribed" => {
            let existing = hub.contacts(&caller).await?;
            let (name, groups) = existing
                .iter()
                .find(|c| &c.user.username == peer)
                .map(|c| (c.name.clone(), c.groups.clone()))
                .unwrap_or_default();
            let name = name
                .as_deref()
                .map(ContactName::parse)
                .transpose()
                .ok()
                .flatten();
            let groups = ContactGroups::parse(groups).unwrap_or_default();
            hub.put_contact(&caller, peer, name, groups)
                .await
                .map_err(not_found)?;
            push_roster_state(s, peer, replies).await;
            if kind == "subscribe" {
                if sees(s, peer).await {
                    // Already visible: approved at once (RFC 6121 3.1.3).
                    replies.push(
                        el("presence", ns::CLIENT)
                            .a("type", "subscribed")
                            .a("from", peer_jid),
                    );
                    peer_presence(s, peer, replies).await;
                } else {
                    // Ask the contact's clients on this node.
                    tell_peer(s, &me, &peer_jid, "subscribe");
                }
            } else {
                // The contact now sees us: tell its clients, with our state.
                tell_peer(s, &me, &peer_jid, "subscribed");
                let available = s.im.as_ref().expect("bound").live.is_some();
                for full in s.x.resources_of(&peer_jid) {
                    let item = roster_item(s, &me, None, &[], "both");
                    s.x.route(&full, roster_push_to(&full, item));
                    if available {
                        s.x.route(
                            &full,
                            el("presence", ns::CLIENT)
                                .a("from", s.im.as_ref().expect("bound").full.clone())
                                .a("to", full.clone()),
                        );
                    }
                }
            }
        }
        "unsubscribe" | "unsubscribed" => {
            push_roster_state(s, peer, replies).await;
            if kind == "unsubscribed" {
                // A declined (or withdrawn) request: the requester's
                // clients learn of it (RFC 6121 3.2.2).
                tell_peer(s, &me, &peer_jid, "unsubscribed");
            }
            if kind == "unsubscribe" && !sees(s, peer).await {
                replies.push(
                    el("presence", ns::CLIENT)
                        .a("type", "unsubscribed")
                        .a("from", peer_jid),
                );
            }
        }
        _ => peer_presence(s, peer, replies).await,
    }
    Ok(())
}

/// Whether the caller sees `peer`'s presence.
async fn sees(s: &Session, peer: &Username) -> bool {
    let caller = &s.im.as_ref().expect("bound").caller;
    s.x.hub
        .presence_snapshot(caller)
        .await
        .map(|items| {
            items
                .iter()
                .any(|i| matches!(i, Item::Presence { user, .. } if user == peer))
        })
        .unwrap_or(false)
}

/// Pushes the caller's roster item for `peer` as it now stands.
async fn push_roster_state(s: &Session, peer: &Username, replies: &mut Replies) {
    let caller = s.im.as_ref().expect("bound").caller.clone();
    let Ok(contacts) = s.x.hub.contacts(&caller).await else {
        return;
    };
    let item = match contacts.iter().find(|c| &c.user.username == peer) {
        Some(c) => {
            let state = if sees(s, peer).await { "both" } else { "from" };
            roster_item(s, peer, c.name.as_deref(), &c.groups, state)
        }
        None => roster_item(s, peer, None, &[], "remove"),
    };
    roster_push(s, item, replies);
}

fn own_presence(e: &Element, from: &str, to: &str) -> Element {
    let mut p = el("presence", ns::CLIENT).a("from", from).a("to", to);
    for child in e.children() {
        p = p.c(child.clone());
    }
    p
}

/// The current presence of `peer`, if the caller may see it.
async fn peer_presence(s: &Session, peer: &Username, replies: &mut Replies) {
    let caller = &s.im.as_ref().expect("bound").caller;
    if let Ok(items) = s.x.hub.presence_snapshot(caller).await {
        for item in items {
            if let Item::Presence { user, status, .. } = &item
                && user == peer
            {
                replies.push(presence_of(s, user, *status));
            }
        }
    }
}

fn presence_of(s: &Session, user: &Username, status: PresenceStatus) -> Element {
    let mut p = el("presence", ns::CLIENT)
        .a("from", bare_jid(s, user))
        .a("to", s.im.as_ref().expect("bound").full.clone());
    match status {
        PresenceStatus::Online => {}
        PresenceStatus::Away => p = p.c(el("show", ns::CLIENT).t("away")),
        PresenceStatus::Offline => return p.a("type", "unavailable"),
    }
    // What the user's XMPP client said beyond online/away: its status
    // text and XEP-0115 capabilities, passed through.
    if let Some(extras) =
        s.x.presence_extras
            .lock()
            .expect("presence extras")
            .get(user)
    {
        for e in extras {
            p = p.c(e.clone());
        }
    }
    p
}

/// The parts of an available presence passed on to contacts: status text
/// and entity capabilities (XEP-0115). `show` is the core's status.
fn presence_extras(e: &Element) -> Vec<Element> {
    e.children()
        .filter(|c| c.is("status", ns::CLIENT) || c.is("c", ns::CAPS))
        .take(4)
        .cloned()
        .collect()
}

/// Initial presence: the resource starts receiving messages, learns its
/// contacts' presence, and gets what arrived while it was away.
async fn become_available(
    s: &mut Session,
    status: PresenceStatus,
    replies: &mut Replies,
) -> Handled {
    let caller = s.im.as_ref().expect("bound").caller.clone();
    let hub = s.x.hub.clone();
    // Register before reading the store, so nothing slips between.
    let live = hub.open_stream(&caller, None).await?;
    if status != PresenceStatus::Online {
        live.set_presence(status).await?;
    }
    s.im.as_mut().expect("bound").live = Some(live);
    for item in hub.presence_snapshot(&caller).await? {
        if let Item::Presence { user, status, .. } = &item
            && *status != PresenceStatus::Offline
        {
            replies.push(presence_of(s, user, *status));
        }
    }
    offline_messages(s, replies).await;
    Ok(())
}

/// Messages of direct conversations that reached none of the user's
/// devices yet, oldest first, marked with their original time.
async fn offline_messages(s: &mut Session, replies: &mut Replies) {
    let caller = s.im.as_ref().expect("bound").caller.clone();
    let hub = s.x.hub.clone();
    // What reached a device of the user a moment ago may still wait in
    // the hub's coalescing of delivered markers: it must not come again.
    hub.flush_delivered(caller.user.id).await;
    let Ok(list) = hub
        .conversations(&caller, None, OFFLINE_CONVERSATIONS)
        .await
    else {
        return;
    };
    for summary in list {
        if summary.unread == 0 || summary.conversation.kind != ConversationKind::Direct {
            continue;
        }
        let id = summary.conversation.id;
        let Ok(details) = hub.conversation(&caller, id).await else {
            continue;
        };
        let Some(me) = details
            .members
            .iter()
            .find(|m| m.user.username == caller.user.username)
        else {
            continue;
        };
        let from = me.delivered_seq.max(me.read_seq);
        if from >= summary.conversation.last_seq {
            continue;
        }
        // The newest ones: a client that was away long reads the older
        // ones from the archive.
        let Ok(mut page) = hub
            .history(&caller, id, None, None, Some(OFFLINE_PER_CONVERSATION))
            .await
        else {
            continue;
        };
        page.messages.retain(|m| m.seq > from);
        let peer = peer_of(s, id).await;
        for m in page.messages {
            s.im.as_mut()
                .expect("bound")
                .known_mut()
                .offline_max
                .insert(id, m.seq);
            if m.sender == caller.user.username || m.body.is_none() || peer.is_none() {
                continue;
            }
            let mut stanza = chat_message(s, &m);
            stanza = stanza.c(el("delay", ns::DELAY)
                .a("from", s.domain().to_owned())
                .a("stamp", stamp(&m.sent_at)));
            // Offline messages count as delivered when written (or, with
            // stream management, when acknowledged): see `Session::send`.
            replies.push_message(stanza, m);
        }
    }
}

/// A chat message from its sender to this resource, as stored.
pub(crate) fn chat_message(s: &Session, m: &Message) -> Element {
    let im = s.im.as_ref().expect("bound");
    let mut stanza = el("message", ns::CLIENT)
        .a("type", "chat")
        .a("id", m.client_id.clone())
        .a("from", bare_jid(s, &m.sender))
        .a("to", im.full.clone());
    if let Some(body) = &m.body {
        stanza = stanza.c(el("body", ns::CLIENT).t(body.clone()));
    }
    stanza
        .c(el("stanza-id", ns::SID)
            .a("by", im.bare.clone())
            .a("id", m.id.0.to_string()))
        .c(el("origin-id", ns::SID).a("id", m.client_id.clone()))
        // The core tracks delivery and reading of every message, so every
        // message asks for receipts and markers.
        .c(el("request", ns::RECEIPTS))
        .c(el("markable", ns::MARKERS))
}

fn roster_item(
    s: &Session,
    user: &Username,
    name: Option<&str>,
    groups: &[String],
    subscription: &str,
) -> Element {
    let mut item = el("item", ns::ROSTER)
        .a("jid", bare_jid(s, user))
        .a("subscription", subscription)
        .a_opt("name", name);
    for g in groups {
        item = item.c(el("group", ns::ROSTER).t(g.clone()));
    }
    item
}

/// Pushes a roster change to every resource of the account (RFC 6121
/// 2.1.6), this one through `replies`.
fn roster_push(s: &Session, item: Element, replies: &mut Replies) {
    let im = s.im.as_ref().expect("bound");
    for full in s.x.resources_of(&im.bare) {
        let push = roster_push_to(&full, item.clone());
        if full == im.full {
            replies.push(push);
        } else {
            s.x.route(&full, push);
        }
    }
}

/// A roster push (RFC 6121 2.1.6) of `item` to the resource `full`.
fn roster_push_to(full: &str, item: Element) -> Element {
    el("iq", ns::CLIENT)
        .a("type", "set")
        .a("id", format!("push-{}", crate::routing::short_id()))
        .a("to", full)
        .c(el("query", ns::ROSTER).c(item))
}

/// Sends a subscription presence of `kind` from `me` to the clients of
/// `peer_jid` on this node.
fn tell_peer(s: &Session, me: &Username, peer_jid: &str, kind: &str) {
    let me_jid = bare_jid(s, me);
    for full in s.x.resources_of(peer_jid) {
        s.x.route(
            &full,
            el("presence", ns::CLIENT)
                .a("type", kind)
                .a("from", me_jid.clone())
                .a("to", full.clone()),
        );
    }
}

async fn iq(s: &mut Session, e: &Element, replies: &mut Replies) -> Handled {
    let kind = e.attr("type").unwrap_or("");
    if !matches!(kind, "get" | "set" | "result" | "error") || e.attr("id").is_none() {
        return Err(StanzaError::bad_request("an iq needs an id and a type"));
    }
    let dest = target(s, e.attr("to"));
    // IQs between clients are routed to the addressed resource.
    let addressed = match &dest {
        Target::User(peer, Some(resource)) => Some(format!("{}/{resource}", bare_jid(s, peer))),
        Target::Own(Some(resource)) => {
            Some(format!("{}/{resource}", s.im.as_ref().expect("bound").bare))
        }
        _ => None,
    };
    if let Some(full) = addressed
        && full != s.im.as_ref().expect("bound").full
    {
        {
            let mut stanza = e.clone();
            let from = s.im.as_ref().expect("bound").full.clone();
            stanza.set_attr(rxml::Namespace::NONE, ncname("from"), from);
            if !s.x.route_anywhere(&full, stanza).await && matches!(kind, "get" | "set") {
                return Err(StanzaError::service_unavailable());
            }
            return Ok(());
        }
    }
    if matches!(kind, "result" | "error") {
        return Ok(());
    }
    let Some(payload) = e.children().next() else {
        return Err(StanzaError::bad_request("an iq get or set needs a payload"));
    };
    let caller = s.im.as_ref().expect("bound").caller.clone();
    let hub = s.x.hub.clone();
    let on_account = matches!(dest, Target::Server | Target::Own(None));
    match (kind, payload.name(), payload.ns().as_str()) {
        ("get", "query", ns::ROSTER) if on_account => {
            let contacts = hub.contacts(&caller).await?;
            let visible: HashSet<Username> = hub
                .presence_snapshot(&caller)
                .await?
                .into_iter()
                .filter_map(|i| match i {
                    Item::Presence { user, .. } => Some(user),
                    _ => None,
                })
                .collect();
            let mut q = el("query", ns::ROSTER);
            for c in contacts {
                let state = if visible.contains(&c.user.username) {
                    "both"
                } else {
                    "from"
                };
                q = q.c(roster_item(
                    s,
                    &c.user.username,
                    c.name.as_deref(),
                    &c.groups,
                    state,
                ));
            }
            replies.push(result(e).c(q));
        }
        ("set", "query", ns::ROSTER) if on_account => {
            let items: Vec<&Element> = payload
                .children()
                .filter(|c| c.is("item", ns::ROSTER))
                .collect();
            let [item] = items.as_slice() else {
                return Err(StanzaError::bad_request(
                    "a roster set has exactly one item",
                ));
            };
            let Some(Target::User(peer, None)) = item.attr("jid").map(|j| target(s, Some(j)))
            else {
                return Err(StanzaError::new(
                    "modify",
                    "not-acceptable",
                    "the item must be a user of this server",
                ));
            };
            if item.attr("subscription") == Some("remove") {
                hub.remove_contact(&caller, &peer).await?;
                replies.push(result(e));
                roster_push(s, roster_item(s, &peer, None, &[], "remove"), replies);
            } else {
                let name = item
                    .attr("name")
                    .filter(|n| !n.is_empty())
                    .map(ContactName::parse)
                    .transpose()
                    .map_err(|e| StanzaError::new("modify", "not-acceptable", e.to_string()))?;
                let groups: Vec<String> = item
                    .children()
                    .filter(|c| c.is("group", ns::ROSTER))
                    .map(|g| g.text())
                    .collect();
                let groups = ContactGroups::parse(groups)
                    .map_err(|e| StanzaError::new("modify", "not-acceptable", e.to_string()))?;
                let (contact, _) = hub
                    .put_contact(&caller, &peer, name, groups)
                    .await
                    .map_err(|e| match e {
                        CoreError::NotFound { .. } => StanzaError::item_not_found("no such user"),
                        e => e.into(),
                    })?;
                replies.push(result(e));
                push_roster_state(s, &contact.user.username, replies).await;
            }
        }
        ("get", "query", ns::DISCO_INFO) => {
            let mut q = el("query", ns::DISCO_INFO).a_opt("node", payload.attr("node"));
            match &dest {
                Target::Server => {
                    q = q.c(el("identity", ns::DISCO_INFO)
                        .a("category", "server")
                        .a("type", "im")
                        .a("name", "Natter"));
                    for f in SERVER_FEATURES {
                        q = q.c(el("feature", ns::DISCO_INFO).a("var", *f));
                    }
                }
                Target::Own(None) | Target::User(_, None) => {
                    q = q.c(el("identity", ns::DISCO_INFO)
                        .a("category", "account")
                        .a("type", "registered"));
                    for f in ACCOUNT_FEATURES {
                        q = q.c(el("feature", ns::DISCO_INFO).a("var", *f));
                    }
                }
                _ => return Err(StanzaError::service_unavailable()),
            }
            replies.push(result(e).c(q));
        }
        ("get", "query", ns::DISCO_ITEMS) => {
            replies.push(
                result(e).c(el("query", ns::DISCO_ITEMS).a_opt("node", payload.attr("node"))),
            );
        }
        ("get", "ping", ns::PING) if matches!(dest, Target::Server | Target::Own(_)) => {
            replies.push(result(e));
        }
        ("get", "query", ns::VERSION) if matches!(dest, Target::Server) => {
            replies.push(
                result(e).c(el("query", ns::VERSION)
                    .c(el("name", ns::VERSION).t("Natter"))
                    .c(el("version", ns::VERSION).t(env!("CARGO_PKG_VERSION")))),
            );
        }
        ("get", "time", ns::TIME) if matches!(dest, Target::Server) => {
            replies.push(
                result(e).c(el("time", ns::TIME)
                    .c(el("tzo", ns::TIME).t("+00:00"))
                    .c(el("utc", ns::TIME).t(stamp(&chrono::Utc::now())))),
            );
        }
        ("get", "vCard", ns::VCARD) => {
            let user = match &dest {
                // Read afresh: the name may have changed since log-in.
                Target::Server | Target::Own(None) => hub.user(&caller.user.username).await?,
                Target::User(peer, None) => hub
                    .user(peer)
                    .await
                    .map_err(|_| StanzaError::service_unavailable())?,
                _ => return Err(StanzaError::service_unavailable()),
            };
            let mut card = el("vCard", ns::VCARD);
            if let Some(name) = &user.display_name {
                card = card
                    .c(el("FN", ns::VCARD).t(name.clone()))
                    .c(el("NICKNAME", ns::VCARD).t(name.clone()));
            }
            replies.push(result(e).c(card));
        }
        ("set", "vCard", ns::VCARD) if on_account => {
            let name = payload
                .child_text("FN", ns::VCARD)
                .or_else(|| payload.child_text("NICKNAME", ns::VCARD))
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty());
            let name = name
                .as_deref()
                .map(DisplayName::parse)
                .transpose()
                .map_err(|e| StanzaError::new("modify", "not-acceptable", e.to_string()))?;
            hub.set_display_name(&caller, name).await?;
            replies.push(result(e));
        }
        ("set", "session", ns::SESSION) => replies.push(result(e)),
        ("set", "enable" | "disable", ns::CARBONS) if on_account => {
            s.im.as_mut().expect("bound").carbons = payload.name() == "enable";
            replies.push(result(e));
        }
        (_, "blocklist" | "block" | "unblock", ns::BLOCKING) if on_account => {
            crate::blocking::iq(s, e, payload, replies).await?
        }
        ("get", "query", ns::MAM) if on_account => replies.push(result(e).c(crate::mam::form())),
        ("set", "query", ns::MAM) if on_account => {
            crate::mam::query(s, e, payload, replies).await?
        }
        ("get", "query", ns::REGISTER) if on_account => {
            replies.push(
                result(e).c(el("query", ns::REGISTER)
                    .c(el("registered", ns::REGISTER))
                    .c(el("username", ns::REGISTER).t(caller.user.username.as_str().to_owned()))),
            );
        }
        ("set", "query", ns::REGISTER) if on_account => {
            return Err(StanzaError::not_allowed(
                "change the password or delete the account through the web client or the API",
            ));
        }
        _ => return Err(StanzaError::service_unavailable()),
    }
    Ok(())
}

/// What disco#info on the server lists (XEP-0030).
const SERVER_FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::VERSION,
    ns::TIME,
    ns::VCARD,
    ns::ROSTER,
    ns::REGISTER,
    ns::CARBONS,
    ns::RECEIPTS,
    ns::MARKERS,
    ns::CHATSTATES,
    ns::SID,
    ns::CORRECT,
    ns::RETRACT,
    ns::CSI,
    ns::BLOCKING,
    "msgoffline",
];

/// What disco#info on an account lists: its archive.
const ACCOUNT_FEATURES: &[&str] = &[ns::DISCO_INFO, ns::MAM, ns::SID];

/// In-band registration (XEP-0077) before authentication, following the
/// server's registration mode.
pub(crate) async fn register(s: &mut Session, e: &Element) -> Option<Element> {
    let open = s.x.hub.config().registration == natter_core::RegistrationMode::Open;
    let kind = e.attr("type")?;
    let reply = match kind {
        "get" if open => result(e).c(el("query", ns::REGISTER)
            .c(el("instructions", ns::REGISTER).t("Choose a username and a password."))
            .c(el("username", ns::REGISTER))
            .c(el("password", ns::REGISTER))),
        "set" if open => {
            let q = e.get_child("query", ns::REGISTER)?;
            let username = q.child_text("username", ns::REGISTER).unwrap_or_default();
            let password = q.child_text("password", ns::REGISTER).unwrap_or_default();
            let parsed = Username::parse(&username)
                .map_err(CoreError::from)
                .and_then(|u| Ok((u, Password::parse_new("password", &password)?)));
            let outcome = match parsed {
                Ok((u, p)) => s.x.hub.sign_up(u, p, None).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => result(e),
                Err(CoreError::Conflict { .. }) => {
                    StanzaError::new("cancel", "conflict", "that username is taken").reply_to(e)
                }
                Err(err) => StanzaError::from(err).reply_to(e),
            }
        }
        "get" | "set" => {
            StanzaError::not_allowed("registration is closed on this server").reply_to(e)
        }
        _ => return None,
    };
    Some(reply)
}

/// Translates one real-time item into stanzas for this resource, each with
/// the message it delivers (for delivered markers).
pub(crate) async fn live(
    s: &mut Session,
    out: &Outbound,
    stanzas: &mut Vec<(Element, Option<Message>)>,
) -> Result<(), StreamError> {
    let me = s.im.as_ref().expect("bound").caller.user.username.clone();
    match &out.item {
        Item::Event(ev) => {
            let conversation = ev.conversation_id;
            match &ev.kind {
                EventKind::MessageCreated(m) => {
                    if peer_of(s, conversation).await.is_none() {
                        // Not a direct conversation (or not known yet):
                        // what `recent` holds of it may have a gap now.
                        if let Some(k) = &mut s.im.as_mut().expect("bound").known {
                            k.recent.remove(&conversation);
                        }
                        return Ok(());
                    }
                    s.im.as_mut().expect("bound").saw_message(m, m.sender == me);
                    let im = s.im.as_ref().expect("bound");
                    if m.sender == me {
                        if im.carbons
                            && !im.known().own_sent_set.contains(&m.id)
                            && !s
                                .x
                                .private_sent
                                .lock()
                                .expect("not poisoned")
                                .is_marked(im.caller.user.id, &m.client_id)
                        {
                            stanzas.push((carbon_sent(s, m), None));
                        }
                    } else if im
                        .known()
                        .offline_max
                        .get(&conversation)
                        .is_none_or(|max| m.seq > *max)
                    {
                        stanzas.push((chat_message(s, m), Some(m.clone())));
                    }
                }
                EventKind::MessageEdited(m) => {
                    if peer_of(s, conversation).await.is_none() || m.sender == me {
                        return Ok(());
                    }
                    let im = s.im.as_ref().expect("bound");
                    let mut stanza = el("message", ns::CLIENT)
                        .a("type", "chat")
                        .a("id", uuid::Uuid::now_v7().to_string())
                        .a("from", bare_jid(s, &m.sender))
                        .a("to", im.full.clone());
                    if let Some(body) = &m.body {
                        stanza = stanza.c(el("body", ns::CLIENT).t(body.clone()));
                    }
                    stanzas.push((
                        stanza.c(el("replace", ns::CORRECT).a("id", m.client_id.clone())),
                        None,
                    ));
                }
                EventKind::MessageDeleted(m) => {
                    if peer_of(s, conversation).await.is_none() || m.sender == me {
                        return Ok(());
                    }
                    let im = s.im.as_ref().expect("bound");
                    stanzas.push((
                        el("message", ns::CLIENT)
                            .a("type", "chat")
                            .a("id", uuid::Uuid::now_v7().to_string())
                            .a("from", bare_jid(s, &m.sender))
                            .a("to", im.full.clone())
                            .c(el("retract", ns::RETRACT).a("id", m.client_id.clone()))
                            .c(el("store", ns::HINTS)),
                        None,
                    ));
                }
                EventKind::Delivered { user, seq } if *user != me => {
                    receipts(s, conversation, user, *seq, false, stanzas).await;
                }
                EventKind::Read { user, seq } if *user != me => {
                    receipts(s, conversation, user, *seq, true, stanzas).await;
                }
                EventKind::Read { seq, .. } => {
                    own_read_carbon(s, conversation, *seq, stanzas).await;
                }
                _ => {}
            }
        }
        Item::Presence { user, status, .. } => {
            if *user != me {
                stanzas.push((presence_of(s, user, *status), None));
            }
        }
        Item::Typing {
            conversation_id,
            user,
            active,
        } => {
            if *user == me || s.im.as_ref().expect("bound").inactive {
                return Ok(());
            }
            if peer_of(s, *conversation_id).await.is_none() {
                return Ok(());
            }
            let state = if *active { "composing" } else { "active" };
            stanzas.push((
                el("message", ns::CLIENT)
                    .a("type", "chat")
                    .a("from", bare_jid(s, user))
                    .a("to", s.im.as_ref().expect("bound").full.clone())
                    .c(el(state, ns::CHATSTATES))
                    .c(el("no-store", ns::HINTS)),
                None,
            ));
        }
        Item::SessionRevoked => {
            return Err(StreamError::not_authorized("this session was revoked"));
        }
        Item::Blocklist { user, blocked } => {
            stanzas.extend(crate::blocking::push(s, user.as_ref(), *blocked).map(|p| (p, None)));
        }
        Item::Relay { to, payload } => {
            // A stanza routed to this full JID from another node; it was
            // serialized by a node of ours, but is parsed with the limits.
            if *to == s.im.as_ref().expect("bound").full {
                let limits = crate::xml::Limits {
                    max_stanza: s.x.config.max_stanza_bytes,
                    ..crate::xml::Limits::default()
                };
                match crate::xml::parse_document(payload.as_bytes(), &limits) {
                    Ok(stanza) => stanzas.push((stanza, None)),
                    Err(e) => tracing::warn!(error = ?e, "a relayed stanza did not parse"),
                }
            }
        }
    }
    Ok(())
}

/// XEP-0184 receipts (delivered) or a XEP-0333 displayed marker (read) for
/// the caller's messages up to `seq` that the peer's watermark passed.
async fn receipts(
    s: &mut Session,
    conversation: ConversationId,
    peer: &Username,
    seq: i64,
    read: bool,
    stanzas: &mut Vec<(Element, Option<Message>)>,
) {
    if peer_of(s, conversation).await.as_ref() != Some(peer) {
        return;
    }
    let im = s.im.as_mut().expect("bound");
    if !read && !im.wants_receipts {
        // Nothing to send, but the watermark still passed these messages:
        // the cache of own messages need not keep them for it.
        im.reported(conversation, seq, read);
        return;
    }
    let im = s.im.as_ref().expect("bound");
    let reported = if read {
        &im.known().reported_read
    } else {
        &im.known().reported_delivered
    };
    let after = reported
        .get(&conversation)
        .copied()
        .unwrap_or(0)
        .max(seq - 50);
    if seq <= after {
        return;
    }
    // The client ids of the user's messages the watermark passed: from
    // what the live stream brought, or else from history.
    let cached = im
        .known()
        .recent
        .get(&conversation)
        .and_then(|r| r.own_between(after, seq))
        .map(|ids| ids.map(str::to_owned).collect::<Vec<_>>());
    let mine = match cached {
        Some(ids) => ids,
        None => {
            let Ok(page) =
                s.x.hub
                    .history(
                        &im.caller,
                        conversation,
                        Some(seq + 1),
                        Some(after),
                        Some(50),
                    )
                    .await
            else {
                return;
            };
            let me = &im.caller.user.username;
            page.messages
                .into_iter()
                .filter(|m| &m.sender == me)
                .map(|m| m.client_id)
                .collect()
        }
    };
    let full = im.full.clone();
    let from = bare_jid(s, peer);
    let marker = |child: Element| {
        el("message", ns::CLIENT)
            .a("type", "chat")
            .a("from", from.clone())
            .a("to", full.clone())
            .c(child)
    };
    if read {
        if let Some(id) = mine.into_iter().last() {
            stanzas.push((marker(el("displayed", ns::MARKERS).a("id", id)), None));
        }
    } else {
        for id in mine {
            stanzas.push((marker(el("received", ns::RECEIPTS).a("id", id)), None));
        }
    }
    s.im.as_mut()
        .expect("bound")
        .reported(conversation, seq, read);
}

/// XEP-0280 with XEP-0333: the user read up to `seq` on another device
/// (an XMPP client or the web client), so this one gets a carbon of a
/// displayed marker and can clear its unread state.
async fn own_read_carbon(
    s: &mut Session,
    conversation: ConversationId,
    seq: i64,
    stanzas: &mut Vec<(Element, Option<Message>)>,
) {
    let im = s.im.as_ref().expect("bound");
    if !im.carbons
        || im
            .known()
            .marked_read
            .get(&conversation)
            .is_some_and(|m| *m >= seq)
    {
        return;
    }
    let Some(peer) = peer_of(s, conversation).await else {
        return;
    };
    let im = s.im.as_ref().expect("bound");
    let Ok(page) =
        s.x.hub
            .history(&im.caller, conversation, Some(seq + 1), None, Some(20))
            .await
    else {
        return;
    };
    let Some(m) = page.messages.iter().rev().find(|m| m.sender == peer) else {
        return;
    };
    let marker = el("message", ns::CLIENT)
        .a("type", "chat")
        .a("from", im.bare.clone())
        .a("to", bare_jid(s, &peer))
        .c(el("displayed", ns::MARKERS).a("id", m.client_id.clone()));
    let carbon = el("message", ns::CLIENT)
        .a("type", "chat")
        .a("from", im.bare.clone())
        .a("to", im.full.clone())
        .c(el("sent", ns::CARBONS).c(el("forwarded", ns::FORWARD).c(marker)));
    stanzas.push((carbon, None));
}

/// XEP-0280: a copy of a message the user sent from another device.
fn carbon_sent(s: &Session, m: &Message) -> Element {
    let im = s.im.as_ref().expect("bound");
    let peer = im.known().peers.get(&m.conversation_id).cloned().flatten();
    let mut inner = el("message", ns::CLIENT)
        .a("type", "chat")
        .a("id", m.client_id.clone())
        .a("from", im.bare.clone())
        .a_opt("to", peer.map(|p| bare_jid(s, &p)));
    if let Some(body) = &m.body {
        inner = inner.c(el("body", ns::CLIENT).t(body.clone()));
    }
    inner = inner
        .c(el("stanza-id", ns::SID)
            .a("by", im.bare.clone())
            .a("id", m.id.0.to_string()))
        .c(el("origin-id", ns::SID).a("id", m.client_id.clone()));
    el("message", ns::CLIENT)
        .a("type", "chat")
        .a("from", im.bare.clone())
        .a("to", im.full.clone())
        .c(el("sent", ns::CARBONS).c(el("forwarded", ns::FORWARD).c(inner)))
}

/// The hub stream ended: reopen it from its cursor (the store has what the
/// queue dropped), or end the XMPP stream if the store is gone.
pub(crate) async fn stream_ended(s: &mut Session, end: StreamEnd, out: &mut Vec<Out>) {
    let Some(im) = s.im.as_mut() else { return };
    let Some(old) = im.live.take() else { return };
    let cursor = old.cursor();
    drop(old);
    if end == StreamEnd::Unavailable {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    match s.x.hub.open_stream(&im.caller, Some(cursor)).await {
        Ok(stream) => im.live = Some(stream),
        Err(e) => {
            tracing::warn!(error = %e, "reopening the real-time stream of an XMPP session failed");
            out.push(Out::Close(Some(StreamError::internal_server_error(
                "the server cannot deliver messages right now",
            ))));
        }
    }
}
