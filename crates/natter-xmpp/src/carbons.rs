//! What XEP-0280 needs beyond the IM mapping: the messages their senders
//! marked `<private/>`, which must not be copied to the sender's other
//! resources.
//!
//! The core has no notion of a private message (it is an XMPP hint, and
//! the message is in the shared history all the same), so the mark is kept
//! here, on the node, keyed by sender and `client_id`, and recorded before
//! the message is sent: the other resources' copies come from the event
//! log, which may reach them before the send returns. A resource of the
//! same user on another node of a cluster does not see the mark and gets
//! its carbon anyway.

use std::collections::{HashSet, VecDeque};

use natter_types::UserId;

/// Marks kept; the oldest go first. A carbon is decided within
/// milliseconds of the send, so this only has to cover messages in flight.
const KEPT: usize = 4096;

#[derive(Default)]
pub(crate) struct PrivateSent {
    marked: HashSet<(UserId, Box<str>)>,
    order: VecDeque<(UserId, Box<str>)>,
}

impl PrivateSent {
    pub(crate) fn mark(&mut self, sender: UserId, client_id: &str) {
        let key = (sender, Box::<str>::from(client_id));
        if self.marked.insert(key.clone()) {
            self.order.push_back(key);
            if self.order.len() > KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.marked.remove(&old);
            }
        }
    }

    pub(crate) fn is_marked(&self, sender: UserId, client_id: &str) -> bool {
        !self.marked.is_empty() && self.marked.contains(&(sender, Box::<str>::from(client_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_per_sender_and_the_oldest_go_first() {
        let mut p = PrivateSent::default();
        let (a, b) = (UserId(1), UserId(2));
        p.mark(a, "m-0");
        assert!(p.is_marked(a, "m-0"));
        assert!(!p.is_marked(b, "m-0"));
        for i in 1..=KEPT {
            p.mark(a, &format!("m-{i}"));
        }
        assert!(!p.is_marked(a, "m-0"), "evicted");
        assert!(p.is_marked(a, "m-1"));
        assert!(p.is_marked(a, &format!("m-{KEPT}")));
        assert_eq!(p.order.len(), KEPT);
    }
}
