//! XEP-0191, the blocking command, over the hub's blocked lists: the same
//! list the REST API and the web client change, so a block made anywhere
//! holds everywhere.
//!
//! - `<blocklist/>` get answers the list and marks the resource
//!   *interested*: from then on it gets the pushes (3.2).
//! - `<block/>` set with at least one item (`bad-request` without), and
//!   `<unblock/>` set, whose empty form unblocks everyone (3.3–3.5).
//!   Every item is checked before anything changes. Items name accounts:
//!   a bare JID of a local user; a full JID is taken as its account (a
//!   user is blocked, not one device). A JID that is not a user of this
//!   server is refused with `item-not-found`: Natter does not federate,
//!   so nothing could come from it, and keeping such a JID only to echo
//!   it back is not worth a second kind of list entry. Unblocking a user
//!   who is not blocked is a no-op.
//! - Pushes reach every interested, available resource of the user on any
//!   node, one `<block/>` or `<unblock/>` per user changed (an empty
//!   `<unblock/>` after unblocking everyone), also when the change came
//!   from the REST API: they follow the hub's `Item::Blocklist`.
//! - Stanzas routed between two users outside the message path (presence,
//!   IQs, bodiless messages to a full JID) are checked by [`guard`]:
//!   towards a user one blocked, `not-acceptable` with `<blocked/>`; from
//!   a user who blocked one, presence is dropped and the rest answered
//!   with `service-unavailable`, as for an unknown user (3.3). Chat
//!   messages are refused by the hub itself, in the same terms.

use minidom::Element;
use natter_core::{BlockState, CoreError};
use natter_types::Username;

use crate::error::StanzaError;
use crate::im::{Replies, bare_jid};
use crate::ns;
use crate::session::Session;
use crate::xml::{ElementExt, el};

/// Handles a blocking IQ addressed to the user's own account.
pub(crate) async fn iq(
    s: &mut Session,
    e: &Element,
    payload: &Element,
    replies: &mut Replies,
) -> Result<(), StanzaError> {
    let caller = s.im.as_ref().expect("bound").caller.clone();
    let hub = s.x.hub.clone();
    match (e.attr("type"), payload.name()) {
        (Some("get"), "blocklist") => {
            let list = hub.blocked(&caller).await?;
            let mut q = el("blocklist", ns::BLOCKING);
            for b in list {
                q = q.c(el("item", ns::BLOCKING).a("jid", bare_jid(s, &b.user.username)));
            }
            s.im.as_mut().expect("bound").blocklist_interest = true;
            replies.push(result(e).c(q));
        }
        (Some("set"), "block") => {
            let users = items(s, payload).await?;
            if users.is_empty() {
                return Err(StanzaError::bad_request("a block needs at least one item"));
            }
            for user in &users {
                hub.block(&caller, user).await.map_err(not_found)?;
            }
            replies.push(result(e));
        }
        (Some("set"), "unblock") => {
            let users = items(s, payload).await?;
            if users.is_empty() {
                hub.unblock_all(&caller).await?;
            }
            for user in &users {
                match hub.unblock(&caller, user).await {
                    Ok(()) | Err(CoreError::NotFound { what: "block" }) => {}
                    Err(e) => return Err(not_found(e)),
                }
            }
            replies.push(result(e));
        }
        _ => return Err(StanzaError::bad_request("not a blocking command")),
    }
    Ok(())
}

fn result(iq: &Element) -> Element {
    el("iq", ns::CLIENT)
        .a("type", "result")
        .a_opt("id", iq.attr("id"))
        .a_opt("from", iq.attr("to"))
}

fn not_found(e: CoreError) -> StanzaError {
    match e {
        CoreError::NotFound { .. } => StanzaError::item_not_found("no such user on this server"),
        e => e.into(),
    }
}

/// The accounts the `<item jid=…/>` children name, all checked (and
/// looked up) before anything changes.
async fn items(s: &Session, payload: &Element) -> Result<Vec<Username>, StanzaError> {
    let me = &s.im.as_ref().expect("bound").caller.user.username;
    let mut users = Vec::new();
    for item in payload.children().filter(|c| c.is("item", ns::BLOCKING)) {
        let Some(jid) = item.attr("jid") else {
            return Err(StanzaError::bad_request("an item needs a jid"));
        };
        let user = local_user(s, jid)?
            .ok_or_else(|| StanzaError::item_not_found("not a user of this server"))?;
        if &user == me {
            return Err(StanzaError::new(
                "modify",
                "not-acceptable",
                "you cannot block yourself",
            ));
        }
        if !users.contains(&user) {
            users.push(user);
        }
    }
    for user in &users {
        s.x.hub.user(user).await.map_err(not_found)?;
    }
    Ok(users)
}

/// The account a JID names on this server; `None` for another domain or a
/// bare domain, `jid-malformed` if it is no JID.
fn local_user(s: &Session, jid: &str) -> Result<Option<Username>, StanzaError> {
    let jid = jid::Jid::new(jid)
        .map_err(|_| StanzaError::new("modify", "jid-malformed", "not a valid JID"))?;
    if !jid.domain().as_str().eq_ignore_ascii_case(s.domain()) {
        return Ok(None);
    }
    Ok(jid.node().and_then(|n| Username::parse(n.as_str()).ok()))
}

/// A push of a blocklist change to this resource, if it asked for the
/// list (XEP-0191 3.3–3.5).
pub(crate) fn push(s: &Session, user: Option<&Username>, blocked: bool) -> Option<Element> {
    let im = s.im.as_ref().expect("bound");
    if !im.blocklist_interest {
        return None;
    }
    let mut change = el(if blocked { "block" } else { "unblock" }, ns::BLOCKING);
    if let Some(user) = user {
        change = change.c(el("item", ns::BLOCKING).a("jid", bare_jid(s, user)));
    }
    Some(
        el("iq", ns::CLIENT)
            .a("type", "set")
            .a("id", format!("block-{}", crate::routing::short_id()))
            .a("to", im.full.clone())
            .c(change),
    )
}

/// Checks a stanza routed to another user outside the message path
/// against blocks either way. `None`: carry on; `Some(Ok(()))`: dropped
/// silently; `Some(Err(_))`: refused with that error.
///
/// Chat messages with a body return at once, before any parsing: the hub
/// refuses those itself, at no extra cost.
pub(crate) async fn guard(s: &Session, e: &Element) -> Option<Result<(), StanzaError>> {
    let name = e.name();
    let to = e.attr("to")?;
    let checked = match name {
        "presence" | "iq" => true,
        // Bodiless messages to a full JID are routed as they are (call
        // signalling and the like); the rest are the hub's.
        "message" => {
            e.get_child("body", ns::CLIENT).is_none()
                && to.contains('/')
                && !crate::im::has_im_payload(e)
        }
        _ => false,
    };
    if !checked {
        return None;
    }
    let peer = local_user(s, to).ok()??;
    let caller = &s.im.as_ref()?.caller;
    if peer == caller.user.username {
        return None;
    }
    let kind = e.attr("type");
    // Errors and results are never answered with an error.
    let answerable = !matches!(kind, Some("error" | "result"));
    match s.x.hub.block_state(caller, &peer).await {
        Ok(BlockState::None) | Err(_) => None,
        Ok(BlockState::ByCaller) if answerable => Some(Err(StanzaError::blocked())),
        Ok(BlockState::ByCaller) => Some(Ok(())),
        Ok(BlockState::ByOther) if name == "presence" || !answerable => Some(Ok(())),
        Ok(BlockState::ByOther) => Some(Err(StanzaError::service_unavailable())),
    }
}
