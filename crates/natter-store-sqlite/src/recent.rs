//! The newest events of the log, kept in memory as the write jobs append
//! them, so that reading what was just committed costs no SQL.
//!
//! The tailer of every node reads the log right after each commit
//! (`events_after` from near the head). Through SQL that read is a hand-off
//! to a read thread, a read transaction, the joins, and the decoding of
//! every row back into the event the write job had in hand a moment
//! before: at 5,000 messages a second, 6–7 % of the server's CPU. (Reading
//! the commit back on the writer's own connection instead saves nothing:
//! the cost is the decoding, wherever it runs.)
//!
//! So the write jobs keep what they append: `events::append` hands each
//! new row, as a read would decode it, to [`appended`], which on the writer
//! thread collects them. After each commit the writer calls
//! [`Recent::note_commit`], which moves the commit's events here if they
//! are exactly the log's new rows, and otherwise starts the copy afresh
//! after them. A read that starts inside the copy is answered from it
//! ([`Recent::after`]); any other goes to SQL. Either way it stops at the
//! durable head, like every read of the log.
//!
//! The copy answers exactly what SQL would:
//!
//! - It holds *every* event in `(after, last]`. The collected events must
//!   have the positions `last + 1 ..= head`, one each: a job rolled back
//!   (its positions are reused, or missing) or an event written by another
//!   process breaks that sequence, and the copy then restarts at the head,
//!   sending older reads to SQL.
//! - A message event carries the message as it is *now*: an edit or a
//!   deletion replaces the message in the copies of that message's earlier
//!   events.
//! - `conversation.created` carries the conversation's current record,
//!   whose last seq moves with every message: the copy never holds one, it
//!   starts again after it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use natter_store::StoreResult;
use natter_types::{Event, EventKind, EventPos, Message};
use rusqlite::Connection;

use crate::events;

/// Events kept; the oldest go first. A reader further behind reads from
/// SQL, as before the copy existed.
const CAPACITY: usize = 4096;

/// Events appended by a write job, with their positions; `None` for an
/// event the copy must not hold.
type Appended = Vec<(i64, Option<Event>)>;

thread_local! {
    /// The events appended on this thread since the last commit; `None`
    /// (nothing collected) until the thread's first commit turns
    /// collecting on, which only the writer thread does.
    static APPENDED: RefCell<Option<Appended>> = const { RefCell::new(None) };
}

/// Called for each row appended to the log, with the event as a read
/// would decode it (`None`: not to be copied). Keeps it on the writer
/// thread; elsewhere `event` is not even built.
pub(crate) fn appended(pos: i64, event: impl FnOnce() -> Option<Event>) {
    APPENDED.with(|a| {
        if let Some(list) = a.borrow_mut().as_mut() {
            list.push((pos, event()));
        }
    });
}

/// What was appended on this thread since the last call, and collecting
/// from now on; `None` the first time.
fn take_appended() -> Option<Appended> {
    APPENDED.with(|a| a.borrow_mut().replace(Vec::new()))
}

pub(crate) struct Recent {
    window: Mutex<Window>,
}

/// Every event of the log with a position in `(after, last]`, in order.
struct Window {
    after: i64,
    last: i64,
    events: VecDeque<Event>,
}

impl Recent {
    /// An empty copy of a log whose newest position is `head`.
    pub(crate) fn new(head: i64) -> Self {
        Self {
            window: Mutex::new(Window {
                after: head,
                last: head,
                events: VecDeque::new(),
            }),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run by the writer thread after each commit, on the write connection:
    /// moves the commit's events into the copy and returns the log's head.
    pub(crate) fn note_commit(&self, c: &Connection) -> StoreResult<i64> {
        let appended = take_appended();
        let head = events::head(c, i64::MAX)?.minor;
        let mut window = self.window();
        let expected = window.last + 1..=head;
        match appended {
            Some(list) if list.iter().map(|(pos, _)| *pos).eq(expected) => {
                window.extend(list, head);
            }
            _ if head == window.last => {}
            _ => window.restart(head),
        }
        Ok(head)
    }

    /// The events after `after`, at most `limit` and none past `upto`, if
    /// the copy holds everything after `after`; `None` sends the caller to
    /// SQL.
    pub(crate) fn after(&self, after: EventPos, limit: u32, upto: i64) -> Option<Vec<Event>> {
        if after.major != 0 {
            return None;
        }
        let window = self.window();
        if after.minor < window.after {
            return None;
        }
        let start = window
            .events
            .partition_point(|e| e.pos.minor <= after.minor);
        Some(
            window
                .events
                .range(start..)
                .take_while(|e| e.pos.minor <= upto)
                .take(limit as usize)
                .cloned()
                .collect(),
        )
    }
}

impl Window {
    fn extend(&mut self, fresh: Appended, head: i64) {
        for (pos, event) in fresh {
            let Some(event) = event else {
                self.restart(pos);
                continue;
            };
            if let EventKind::MessageEdited(m) | EventKind::MessageDeleted(m) = &event.kind {
                self.refresh(m);
            }
            self.events.push_back(event);
        }
        self.last = head;
        while self.events.len() > CAPACITY {
            if let Some(oldest) = self.events.pop_front() {
                self.after = oldest.pos.minor;
            }
        }
    }

    /// Holds nothing, and everything after `at` from now on.
    fn restart(&mut self, at: i64) {
        self.events.clear();
        self.after = at;
        self.last = at;
    }

    /// Gives the copies of `m`'s earlier events its current state.
    fn refresh(&mut self, m: &Message) {
        for event in &mut self.events {
            if let EventKind::MessageCreated(old)
            | EventKind::MessageEdited(old)
            | EventKind::MessageDeleted(old) = &mut event.kind
                && old.conversation_id == m.conversation_id
                && old.seq == m.seq
            {
                *old = m.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use natter_store::Store;
    use natter_store::conformance::{group, new_message, now, user};
    use natter_types::{Body, GroupTitle};

    use super::*;
    use crate::SqliteStore;

    /// Every read of the log from every position gives the same events,
    /// whether the copy answers it or SQL does, after the kinds of writes
    /// the copy must treat with care: edits and deletions of messages it
    /// holds, conversations created in the middle of the log, and a write
    /// that fails.
    #[tokio::test]
    async fn the_copy_answers_what_sql_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("natter.db")).unwrap();
        let start = store.event_head().await.unwrap().minor;
        let alice = user(&store, "alice").await;
        let bob = user(&store, "bob").await;
        let (direct, _) = store
            .direct_conversation(alice.id, bob.id, now())
            .await
            .unwrap();
        let group = group(&store, &alice, &[&bob]).await;
        let created_group = store.event_head().await.unwrap().minor;
        for (i, conv) in [direct.id, group.id, direct.id, direct.id]
            .into_iter()
            .enumerate()
        {
            let text = format!("m{i}");
            store
                .append_message(new_message(conv, alice.id, &text, &text))
                .await
                .unwrap();
        }
        // refused: the client id was used in another conversation
        assert!(
            store
                .append_message(new_message(group.id, alice.id, "m0", "again"))
                .await
                .is_err()
        );
        let edited = Body::parse("m0!".into(), Body::DEFAULT_MAX_BYTES).unwrap();
        store
            .edit_message(direct.id, 1, edited, now())
            .await
            .unwrap();
        store.delete_message(direct.id, 2, now()).await.unwrap();
        store.mark_delivered(direct.id, bob.id, 3).await.unwrap();
        store.mark_read(direct.id, bob.id, 2).await.unwrap();
        store
            .rename_group(group.id, GroupTitle::parse("Crew").unwrap())
            .await
            .unwrap();
        store.remove_member(group.id, bob.id).await.unwrap();
        let head = store.event_head().await.unwrap().minor;

        let recent = &store.inner.recent;
        assert!(recent.after(EventPos::new(0, start), 100, head).is_none());
        let copied = recent
            .after(EventPos::new(0, created_group), 100, head)
            .expect("the copy starts after the last conversation created");
        assert_eq!(copied.len() as i64, head - created_group);
        match &copied[0].kind {
            EventKind::MessageCreated(m) => assert_eq!(m.body.as_deref(), Some("m0!")),
            other => panic!("{other:?}"),
        }
        for p in start..=head {
            let after = EventPos::new(0, p);
            let from_sql = store
                .inner
                .readers
                .read(move |c| events::after(c, after, 100, i64::MAX))
                .await
                .unwrap();
            let served = store.events_after(after, 100).await.unwrap();
            assert_eq!(served, from_sql, "after {p}");
            let limited = store.events_after(after, 2).await.unwrap();
            assert_eq!(limited[..], from_sql[..from_sql.len().min(2)], "after {p}");
        }
    }

    fn renamed(pos: i64) -> (i64, Option<Event>) {
        let event = Event {
            pos: EventPos::new(0, pos),
            conversation_id: natter_types::ConversationId::new(),
            at: now(),
            kind: EventKind::ConversationRenamed { title: "t".into() },
        };
        (pos, Some(event))
    }

    /// Past its capacity the copy drops its oldest events, and reads from
    /// before them go to SQL.
    #[test]
    fn the_oldest_events_go_first() {
        let recent = Recent::new(0);
        let head = CAPACITY as i64 + 10;
        recent
            .window()
            .extend((1..=head).map(renamed).collect(), head);
        assert!(recent.after(EventPos::new(0, 9), 1, head).is_none());
        let first = recent.after(EventPos::new(0, 10), 1, head).unwrap();
        assert_eq!(first[0].pos, EventPos::new(0, 11));
        // nothing past the durable head
        assert!(
            recent
                .after(EventPos::new(0, 10), 5, 10)
                .unwrap()
                .is_empty()
        );
    }

    /// Events that are not exactly the log's new rows (a rolled-back job's,
    /// positions reused) are not copied: the copy starts again at the head.
    #[test]
    fn a_broken_sequence_restarts_the_copy() {
        let conn = Connection::open_in_memory().unwrap();
        let mut c = conn;
        crate::migrate::run(&mut c).unwrap();
        let recent = Recent::new(0);
        let row = |c: &Connection| {
            events::append(
                c,
                natter_types::ConversationId::new(),
                &natter_store::event_codec::renamed("t"),
                now(),
            )
            .unwrap()
        };
        // the first commit turns collecting on
        recent.note_commit(&c).unwrap();
        row(&c);
        row(&c);
        assert_eq!(recent.note_commit(&c).unwrap(), 2);
        assert_eq!(recent.after(EventPos::new(0, 0), 10, 2).unwrap().len(), 2);
        // a row collected, then rolled back: its position comes again
        c.execute_batch("BEGIN").unwrap();
        row(&c);
        c.execute_batch("ROLLBACK").unwrap();
        row(&c);
        assert_eq!(recent.note_commit(&c).unwrap(), 3);
        assert!(recent.after(EventPos::new(0, 2), 10, 3).is_none());
        assert_eq!(recent.after(EventPos::new(0, 3), 10, 3), Some(Vec::new()));
    }
}
