//! Behaviour particular to the SQLite backend, beyond the shared suite.

use std::sync::Arc;

use natter_store::{HistoryQuery, Store};
use natter_types::DisplayName;

use crate::Sqlite;
use crate::writers::{group, message, user};

#[tokio::test]
async fn search_folds_unicode_case_and_takes_wildcards_literally() {
    let h = Sqlite::temp();
    let store = h.store();
    let elodie = user(&store, "elodie").await;
    store
        .set_display_name(elodie.id, Some(DisplayName::parse("Élodie Ñúñez").unwrap()))
        .await
        .unwrap();
    let pct = user(&store, "pct").await;
    store
        .set_display_name(pct.id, Some(DisplayName::parse("100% sure").unwrap()))
        .await
        .unwrap();
    let names = |us: Vec<natter_types::User>| {
        us.into_iter()
            .map(|u| u.username.into_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.search_users("ÉLO", 10).await.unwrap()),
        ["elodie"]
    );
    assert_eq!(
        names(store.search_users("ñúñ", 10).await.unwrap()),
        ["elodie"]
    );
    assert_eq!(
        names(store.search_users("0% s", 10).await.unwrap()),
        ["pct"]
    );
    assert!(store.search_users("1_0", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn clones_share_one_writer_and_reopening_after_the_last_works() {
    let h = Sqlite::temp();
    let store = h.store();
    let clone = store.clone();
    let alice = user(&clone, "alice").await;
    drop(store);
    assert!(clone.user_by_id(alice.id).await.unwrap().is_some());
    drop(clone);
    for _ in 0..3 {
        let store = h.store();
        store.ping().await.unwrap();
        assert!(store.user_by_id(alice.id).await.unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_does_not_disturb_others() {
    let h = Sqlite::temp();
    let store: Arc<dyn Store> = Arc::new(h.store());
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    let conv = group(&*store, &alice, std::slice::from_ref(&bob)).await;
    for i in 0..50 {
        // start an append and give up on it almost at once
        let fut = store.append_message(message(&conv, &alice, &format!("c{i}")));
        let _ = tokio::time::timeout(std::time::Duration::from_micros(1), fut).await;
    }
    let a = store
        .append_message(message(&conv, &bob, "after"))
        .await
        .unwrap();
    // whatever the cancelled ones did, the numbers are still gap-free
    let page = store
        .messages(
            conv.id,
            HistoryQuery {
                before: None,
                after: Some(0),
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.last().unwrap().seq, a.message.seq);
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=a.message.seq).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_last_member_leaving_leaves_an_empty_group() {
    let h = Sqlite::temp();
    let store = h.store();
    let alice = user(&store, "alice").await;
    let conv = group(&store, &alice, &[]).await;
    assert!(store.remove_member(conv.id, alice.id).await.unwrap());
    assert!(store.members(conv.id).await.unwrap().is_empty());
    assert!(store.conversation(conv.id).await.unwrap().is_some());
}

#[tokio::test]
async fn history_pages_at_both_ends() {
    let h = Sqlite::temp();
    let store = h.store();
    let alice = user(&store, "alice").await;
    let conv = group(&store, &alice, &[]).await;
    for i in 0..30 {
        store
            .append_message(message(&conv, &alice, &format!("h{i}")))
            .await
            .unwrap();
    }
    let q = |before, after| HistoryQuery {
        before,
        after,
        limit: 3,
    };
    let seqs = |ms: Vec<natter_types::Message>| ms.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.messages(conv.id, q(Some(5), None)).await.unwrap()),
        [2, 3, 4]
    );
    assert_eq!(
        seqs(store.messages(conv.id, q(None, Some(27))).await.unwrap()),
        [28, 29, 30]
    );
}

#[test]
fn open_refuses_databases_private_to_one_connection() {
    use natter_store_sqlite::SqliteStore;
    assert!(SqliteStore::open(std::path::Path::new(":memory:")).is_err());
    assert!(SqliteStore::open(std::path::Path::new("")).is_err());
}
