//! The event log and delivered markers on SQLite, beyond the shared suite:
//! no-op and failed writes, positions across a restart, markers, catch-up
//! after re-joining, and paging through a log longer than a page.

use std::sync::Arc;

use natter_store::conformance::{new_message, now};
use natter_store::{Store, StoreError};
use natter_types::{Body, ConversationId, Event, EventKind, EventPos, GroupTitle, Role, UserId};

use crate::Sqlite;
use crate::writers::{group, user};

fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

async fn all_events(store: &dyn Store, after: EventPos) -> Vec<Event> {
    store.events_after(after, 1000).await.unwrap()
}

fn body(s: &str) -> Body {
    Body::parse(s.to_owned(), Body::DEFAULT_MAX_BYTES).unwrap()
}

/// Calls that change nothing, or fail, append nothing; positions go on
/// from where they were after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_op_and_failed_writes_append_nothing_and_positions_survive_reopen() {
    let h = Sqlite::temp();
    let store = h.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let mallory = user(&store, "mallory").await;
    let g = group(&store, &alice, std::slice::from_ref(&bob)).await;
    let mark = store.event_head().await.unwrap();

    // same title, same role, not a member, no such message or user
    store
        .rename_group(g.id, GroupTitle::parse("Load").unwrap())
        .await
        .unwrap();
    assert!(
        !store
            .set_member(g.id, bob.id, Role::Member, now())
            .await
            .unwrap()
    );
    assert!(matches!(
        store
            .append_message(new_message(g.id, mallory.id, "x", "no"))
            .await,
        Err(StoreError::NotMember)
    ));
    assert!(matches!(
        store.mark_read(g.id, mallory.id, 1).await,
        Err(StoreError::NotMember)
    ));
    assert!(matches!(
        store.mark_read(ConversationId::new(), bob.id, 1).await,
        Err(StoreError::NotFound("conversation"))
    ));
    assert!(matches!(
        store
            .set_member(g.id, UserId(9_999), Role::Member, now())
            .await,
        Err(StoreError::NotFound("user"))
    ));
    assert!(
        store
            .edit_message(g.id, 1, body("nothing there"), now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.remove_member(g.id, mallory.id).await.unwrap());
    // nothing to read yet: the marker cannot move past the last message
    assert_eq!(store.mark_read(g.id, bob.id, 5).await.unwrap(), 0);
    assert_eq!(store.mark_delivered(g.id, bob.id, 5).await.unwrap(), 0);
    assert_eq!(store.event_head().await.unwrap(), mark);
    assert!(all_events(&store, mark).await.is_empty());

    let sent = store
        .append_message(new_message(g.id, bob.id, "m1", "hello"))
        .await
        .unwrap();
    let events = all_events(&store, mark).await;
    assert_eq!(names(&events), ["message.created"]);
    assert_eq!(
        events[0].at, sent.message.sent_at,
        "a message event is as of its sending"
    );
    assert_eq!(events[0].pos.major, 0);
    let last = events[0].pos;
    drop(store);

    let store = h.store();
    assert_eq!(store.event_head().await.unwrap(), last);
    store
        .append_message(new_message(g.id, alice.id, "m2", "again"))
        .await
        .unwrap();
    let events = all_events(&store, last).await;
    assert_eq!(events.len(), 1);
    assert!(events[0].pos > last);
    // a position from a backend whose majors are larger is after them all
    assert!(
        store
            .events_after(EventPos::new(1, 0), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Markers: reading delivers silently, delivering does not read, and new
/// members start with both markers at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_and_their_events() {
    let h = Sqlite::temp();
    let store = h.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let g = group(&store, &alice, std::slice::from_ref(&bob)).await;
    for i in 0..5 {
        store
            .append_message(new_message(g.id, alice.id, &format!("k{i}"), "x"))
            .await
            .unwrap();
    }
    let mark = store.event_head().await.unwrap();
    assert_eq!(store.mark_delivered(g.id, bob.id, 4).await.unwrap(), 4);
    assert_eq!(store.mark_read(g.id, bob.id, 2).await.unwrap(), 2);
    assert_eq!(store.mark_read(g.id, bob.id, 5).await.unwrap(), 5);
    store
        .set_member(g.id, carol.id, Role::Member, now())
        .await
        .unwrap();
    let events = all_events(&store, mark).await;
    assert_eq!(
        events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>()[..3],
        [
            EventKind::Delivered {
                user: bob.username.clone(),
                seq: 4
            },
            EventKind::Read {
                user: bob.username.clone(),
                seq: 2
            },
            EventKind::Read {
                user: bob.username.clone(),
                seq: 5
            },
        ],
        "no Delivered event for what reading delivered"
    );
    let members = store.members(g.id).await.unwrap();
    let markers = |name: &str| {
        let m = members
            .iter()
            .find(|m| m.user.username.as_str() == name)
            .unwrap();
        (m.read_seq, m.delivered_seq)
    };
    assert_eq!(markers("bob"), (5, 5));
    assert_eq!(markers("carol"), (5, 5), "a newcomer starts at the end");
    assert_eq!(markers("alice"), (5, 5));
}

/// A member removed and added again sees the conversation's events again,
/// including those from while they were away (the contract's rule: what a
/// user may see is decided by membership now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_follow_current_membership() {
    let h = Sqlite::temp();
    let store = h.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let start = store.event_head().await.unwrap();
    let g = group(&store, &alice, std::slice::from_ref(&bob)).await;
    store.remove_member(g.id, bob.id).await.unwrap();
    store
        .append_message(new_message(g.id, alice.id, "a1", "while bob was away"))
        .await
        .unwrap();
    let bobs = store.user_events_after(bob.id, start, 100).await.unwrap();
    assert_eq!(names(&bobs), ["member.removed"]);
    store
        .set_member(g.id, bob.id, Role::Member, now())
        .await
        .unwrap();
    let bobs = store.user_events_after(bob.id, start, 100).await.unwrap();
    assert_eq!(
        names(&bobs),
        [
            "conversation.created",
            "member.removed",
            "message.created",
            "member.added"
        ]
    );
}

/// The store answers events_after while the writer is busy, and pages
/// through a log much longer than a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_logs_page_completely() {
    let h = Sqlite::temp();
    let store: Arc<dyn Store> = Arc::new(h.store());
    let alice = user(&*store, "alice").await;
    let g = group(&*store, &alice, &[]).await;
    let start = store.event_head().await.unwrap();
    for i in 0..300 {
        store
            .append_message(new_message(g.id, alice.id, &format!("p{i}"), "x"))
            .await
            .unwrap();
    }
    let mut at = start;
    let mut seqs = Vec::new();
    loop {
        let page = store.user_events_after(alice.id, at, 64).await.unwrap();
        let Some(last) = page.last() else { break };
        at = last.pos;
        seqs.extend(page.iter().map(|e| match &e.kind {
            EventKind::MessageCreated(m) => m.seq,
            other => panic!("{other:?}"),
        }));
    }
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
}
