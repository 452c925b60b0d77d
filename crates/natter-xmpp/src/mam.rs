//! XEP-0313 message archive management over the shared history, with
//! XEP-0059 result set paging. The archive of an account is the messages
//! of its direct conversations; result ids are the core's message ids
//! (the same as the XEP-0359 stanza ids of live messages), so a client can
//! page from any message it has seen.
//!
//! The core keeps history per conversation, in sequence order. A query
//! over the whole archive merges the conversations by send time: each
//! conversation finds its first (or last) message inside the time bounds
//! by binary search over sequence numbers, which relies on send times
//! growing with the sequence within one conversation (both are assigned
//! by the commit that stores the message).

use std::cmp::Ordering;

use minidom::Element;
use natter_core::Caller;
use natter_store::ConversationCursor;
use natter_types::{ConversationId, ConversationKind, Message, MessageId, Timestamp, Username};

use crate::error::StanzaError;
use crate::im::{Replies, bare_jid};
use crate::ns;
use crate::session::Session;
use crate::xml::{ElementExt, el};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 100;
/// Most direct conversations a query over the whole archive merges.
const MAX_CONVERSATIONS: usize = 1000;

/// The query form (XEP-0313 section 4.1.1).
pub(crate) fn form() -> Element {
    let field = |var: &str, kind: &str| el("field", ns::DATA_FORMS).a("var", var).a("type", kind);
    el("query", ns::MAM).c(el("x", ns::DATA_FORMS)
        .a("type", "form")
        .c(field("FORM_TYPE", "hidden").c(el("value", ns::DATA_FORMS).t(ns::MAM)))
        .c(field("with", "jid-single"))
        .c(field("start", "text-single"))
        .c(field("end", "text-single"))
        .c(field("before-id", "text-single"))
        .c(field("after-id", "text-single")))
}

/// A position in the archive: messages sort by send time, then id.
type Key = (Timestamp, MessageId);

fn key(m: &Message) -> Key {
    (m.sent_at, m.id)
}

#[derive(Default)]
struct Bounds {
    /// Messages sent at or after this time.
    start: Option<Timestamp>,
    /// … and at or before this one.
    end: Option<Timestamp>,
    /// Strictly after this message.
    after: Option<Message>,
    /// Strictly before this message.
    before: Option<Message>,
}

impl Bounds {
    fn contains(&self, m: &Message) -> bool {
        let k = key(m);
        self.start.is_none_or(|t| m.sent_at >= t)
            && self.end.is_none_or(|t| m.sent_at <= t)
            && self.after.as_ref().is_none_or(|a| k > key(a))
            && self.before.as_ref().is_none_or(|b| k < key(b))
    }

    fn lower_time(&self) -> Option<Timestamp> {
        [self.start, self.after.as_ref().map(|m| m.sent_at)]
            .into_iter()
            .flatten()
            .max()
    }

    fn upper_time(&self) -> Option<Timestamp> {
        [self.end, self.before.as_ref().map(|m| m.sent_at)]
            .into_iter()
            .flatten()
            .min()
    }
}

fn parse_time(field: &str, value: &str) -> Result<Timestamp, StanzaError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| StanzaError::bad_request(format!("'{field}' is not an XEP-0082 date-time")))
}

pub(crate) async fn query(
    s: &mut Session,
    iq: &Element,
    q: &Element,
    replies: &mut Replies,
) -> Result<(), StanzaError> {
    let caller = s.im.as_ref().expect("bound").caller.clone();
    let hub = s.x.hub.clone();
    let mut fields = std::collections::HashMap::new();
    if let Some(x) = q.get_child("x", ns::DATA_FORMS) {
        for f in x.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
            if let (Some(var), Some(v)) = (f.attr("var"), f.get_child("value", ns::DATA_FORMS)) {
                fields.insert(var.to_owned(), v.text());
            }
        }
    }
    if let Some(form_type) = fields.get("FORM_TYPE")
        && form_type != ns::MAM
    {
        return Err(StanzaError::bad_request("unknown FORM_TYPE"));
    }
    let by_id = |id: &str| {
        let hub = hub.clone();
        let caller = caller.clone();
        let id = id.to_owned();
        async move {
            let uuid = uuid::Uuid::parse_str(&id)
                .map_err(|_| StanzaError::item_not_found(format!("no message with id {id}")))?;
            hub.message_by_id(&caller, MessageId(uuid))
                .await
                .map_err(|_| StanzaError::item_not_found(format!("no message with id {id}")))
        }
    };
    let mut bounds = Bounds::default();
    if let Some(v) = fields.get("start") {
        bounds.start = Some(parse_time("start", v)?);
    }
    if let Some(v) = fields.get("end") {
        bounds.end = Some(parse_time("end", v)?);
    }
    if let Some(v) = fields.get("after-id") {
        bounds.after = Some(by_id(v).await?);
    }
    if let Some(v) = fields.get("before-id") {
        bounds.before = Some(by_id(v).await?);
    }
    let rsm = q.get_child("set", ns::RSM);
    let max = rsm
        .and_then(|r| r.child_text("max", ns::RSM))
        .map(|m| m.trim().parse::<u32>())
        .transpose()
        .map_err(|_| StanzaError::bad_request("RSM max must be a number"))?
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE);
    if let Some(after) = rsm.and_then(|r| r.child_text("after", ns::RSM)) {
        bounds.after = Some(by_id(after.trim()).await?);
    }
    let mut backward = false;
    if let Some(before) = rsm.and_then(|r| r.get_child("before", ns::RSM)) {
        backward = true;
        let id = before.text();
        if !id.trim().is_empty() {
            bounds.before = Some(by_id(id.trim()).await?);
        }
    }

    let with = match fields.get("with") {
        Some(jid) => match jid::BareJid::new(jid.split('/').next().unwrap_or(jid)) {
            Ok(j) if j.domain().as_str().eq_ignore_ascii_case(s.domain()) => {
                let node = j.node().map(|n| n.to_string()).unwrap_or_default();
                Some(Username::parse(&node).ok())
            }
            Ok(_) => Some(None),
            Err(_) => return Err(StanzaError::bad_request("'with' is not a JID")),
        },
        None => None,
    };
    let conversations = direct_conversations(s, &caller, with.as_ref().map(|w| w.as_ref())).await?;

    let mut candidates = Vec::new();
    for (id, last_seq, last_activity) in conversations {
        if last_seq == 0 || bounds.lower_time().is_some_and(|t| t > last_activity) {
            continue;
        }
        let page = if backward {
            let hi = match &bounds.before {
                Some(b) if b.conversation_id == id => b.seq - 1,
                _ => match bounds.upper_time() {
                    Some(t) => first_after(s, &caller, id, last_seq, t).await? - 1,
                    None => last_seq,
                },
            };
            if hi < 1 {
                continue;
            }
            hub.history(&caller, id, Some(hi + 1), None, Some(max + 1))
                .await?
        } else {
            let lo = match &bounds.after {
                Some(a) if a.conversation_id == id => a.seq + 1,
                _ => match bounds.lower_time() {
                    Some(t) => first_at_or_after(s, &caller, id, last_seq, t).await?,
                    None => 1,
                },
            };
            if lo > last_seq {
                continue;
            }
            hub.history(&caller, id, None, Some(lo - 1), Some(max + 1))
                .await?
        };
        candidates.extend(page.messages.into_iter().filter(|m| bounds.contains(m)));
    }
    candidates.sort_by_key(key);
    let total = candidates.len();
    let page: Vec<Message> = if backward {
        candidates.split_off(total.saturating_sub(max as usize))
    } else {
        candidates.truncate(max as usize);
        candidates
    };
    let complete = total <= max as usize;

    let mut peers = std::collections::HashMap::new();
    for m in &page {
        if let std::collections::hash_map::Entry::Vacant(slot) = peers.entry(m.conversation_id) {
            slot.insert(crate::im::peer_of(s, m.conversation_id).await);
        }
    }
    let im = s.im.as_ref().expect("bound");
    let (own_bare, full) = (im.bare.clone(), im.full.clone());
    let me = caller.user.username.clone();
    for m in &page {
        let Some(body) = &m.body else { continue };
        let to = if m.sender == me {
            peers
                .get(&m.conversation_id)
                .cloned()
                .flatten()
                .map(|p| bare_jid(s, &p))
        } else {
            Some(own_bare.clone())
        };
        let archived = el("message", ns::CLIENT)
            .a("type", "chat")
            .a("id", m.client_id.clone())
            .a("from", bare_jid(s, &m.sender))
            .a_opt("to", to)
            .c(el("body", ns::CLIENT).t(body.clone()))
            .c(el("origin-id", ns::SID).a("id", m.client_id.clone()));
        let result = el("message", ns::CLIENT)
            .a("from", own_bare.clone())
            .a("to", full.clone())
            .a("id", uuid::Uuid::now_v7().to_string())
            .c(el("result", ns::MAM)
                .a_opt("queryid", q.attr("queryid"))
                .a("id", m.id.0.to_string())
                .c(el("forwarded", ns::FORWARD)
                    .c(el("delay", ns::DELAY).a(
                        "stamp",
                        m.sent_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    ))
                    .c(archived)));
        replies.push(result);
    }
    let mut set = el("set", ns::RSM);
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        set = set
            .c(el("first", ns::RSM).t(first.id.0.to_string()))
            .c(el("last", ns::RSM).t(last.id.0.to_string()));
    }
    let mut fin = el("fin", ns::MAM).c(set);
    if complete {
        fin = fin.a("complete", "true");
    }
    replies.push(
        el("iq", ns::CLIENT)
            .a("type", "result")
            .a_opt("id", iq.attr("id"))
            .c(fin),
    );
    Ok(())
}

/// The caller's direct conversations (optionally only the one with
/// `with`): id, last seq and last activity.
async fn direct_conversations(
    s: &Session,
    caller: &Caller,
    with: Option<Option<&Username>>,
) -> Result<Vec<(ConversationId, i64, Timestamp)>, StanzaError> {
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.x.hub.conversations(caller, cursor, 100).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(ConversationCursor {
            last_activity_at: last.conversation.last_activity_at,
            id: last.conversation.id,
        });
        for c in &page {
            if c.conversation.kind != ConversationKind::Direct {
                continue;
            }
            match with {
                Some(None) => return Ok(Vec::new()),
                Some(Some(w)) if c.peer.as_ref().map(|p| &p.username) != Some(w) => continue,
                _ => {}
            }
            found.push((
                c.conversation.id,
                c.conversation.last_seq,
                c.conversation.last_activity_at,
            ));
            if with.is_some() {
                return Ok(found);
            }
        }
        if page.len() < 100 || found.len() >= MAX_CONVERSATIONS {
            break;
        }
    }
    Ok(found)
}

/// The send time of message `seq` (deleted ones keep theirs).
async fn sent_at(
    s: &Session,
    caller: &Caller,
    id: ConversationId,
    seq: i64,
) -> Result<Option<Timestamp>, StanzaError> {
    let page =
        s.x.hub
            .history(caller, id, Some(seq + 1), Some(seq - 1), Some(1))
            .await?;
    Ok(page.messages.first().map(|m| m.sent_at))
}

/// The first seq whose message was sent at or after `t` (`last_seq + 1`
/// if none).
async fn first_at_or_after(
    s: &Session,
    caller: &Caller,
    id: ConversationId,
    last_seq: i64,
    t: Timestamp,
) -> Result<i64, StanzaError> {
    search(s, caller, id, last_seq, |at| at.cmp(&t) == Ordering::Less).await
}

/// The first seq whose message was sent after `t`.
async fn first_after(
    s: &Session,
    caller: &Caller,
    id: ConversationId,
    last_seq: i64,
    t: Timestamp,
) -> Result<i64, StanzaError> {
    search(s, caller, id, last_seq, |at| at <= t).await
}

/// Binary search for the first seq in `1..=last_seq` where `before` no
/// longer holds.
async fn search(
    s: &Session,
    caller: &Caller,
    id: ConversationId,
    last_seq: i64,
    before: impl Fn(Timestamp) -> bool,
) -> Result<i64, StanzaError> {
    let (mut lo, mut hi) = (1, last_seq + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match sent_at(s, caller, id, mid).await? {
            Some(at) if before(at) => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}
