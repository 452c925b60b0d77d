//! Bound resources on this node: who is connected as which full JID, for
//! stanzas addressed to a full JID (IQs between clients, directed
//! presence, roster pushes) and for the per-account session limit.

use minidom::Element;
use natter_core::queue;
use natter_types::UserId;

use crate::Shared;

/// Stanzas queued for one resource beyond this are dropped (with an error
/// to the sender where the protocol has one): a stuck client must not hold
/// memory without bound.
pub(crate) const ROUTED_QUEUE: usize = 256;

/// Stanzas are boxed in the queue so that its buffer, while one exists,
/// holds pointers rather than whole elements.
pub(crate) struct Resource {
    pub user: UserId,
    pub tx: queue::Sender<Box<Element>>,
}

impl Shared {
    /// Claims `resource` (or a variant of it, if taken) for `user`; fails
    /// when the account has as many resources as allowed.
    pub(crate) fn bind(
        &self,
        user: UserId,
        bare: &str,
        resource: &str,
    ) -> Option<(String, queue::Receiver<Box<Element>>)> {
        let mut map = self.resources.lock().expect("resources");
        let count = map.values().filter(|r| r.user == user).count();
        if count >= self.config.max_sessions_per_user {
            return None;
        }
        let mut name = resource.to_owned();
        while map.contains_key(&format!("{bare}/{name}")) {
            // RFC 6120 7.7.2.2: the server may assign a different resource
            // rather than end the other session.
            name = format!("{resource}.{}", short_id());
        }
        let (tx, rx) = queue::bounded(ROUTED_QUEUE);
        map.insert(format!("{bare}/{name}"), Resource { user, tx });
        Some((name, rx))
    }

    pub(crate) fn unbind(&self, full: &str) {
        self.resources.lock().expect("resources").remove(full);
    }

    /// Hands a stanza to the resource bound as `full`; false if there is
    /// none (or it is not keeping up).
    pub(crate) fn route(&self, full: &str, stanza: Element) -> bool {
        let tx = match self.resources.lock().expect("resources").get(full) {
            Some(r) => r.tx.clone(),
            None => return false,
        };
        tx.try_send(Box::new(stanza)).is_ok()
    }

    /// Routes a stanza to the resource bound as `full` on this node, or
    /// else through the cluster to whichever node has it (where it
    /// reaches the resource if it is available). False if the account
    /// does not exist or the local resource is not keeping up.
    pub(crate) async fn route_anywhere(&self, full: &str, stanza: Element) -> bool {
        if self.resources.lock().expect("resources").contains_key(full) {
            return self.route(full, stanza);
        }
        let Some(node) = full.split('@').next() else {
            return false;
        };
        let Ok(name) = natter_types::Username::parse(node) else {
            return false;
        };
        let Ok(user) = self.hub.user(&name).await else {
            return false;
        };
        let payload = crate::xml::to_string(&stanza);
        self.hub.deliver_to_user(
            user.id,
            None,
            natter_core::realtime::Item::Relay {
                to: full.to_owned(),
                payload: payload.into(),
            },
        );
        true
    }

    /// The full JIDs bound for `bare` on this node.
    pub(crate) fn resources_of(&self, bare: &str) -> Vec<String> {
        let prefix = format!("{bare}/");
        self.resources
            .lock()
            .expect("resources")
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect()
    }
}

/// A short random identifier (stream ids, generated resources).
pub(crate) fn short_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{n:012x}")[..12].to_owned()
}
