//! Behaviour specific to the PostgreSQL backend that the shared suite does
//! not reach: migrations when several nodes start at once, schema
//! isolation, races between stores that share one database (as nodes do),
//! exact timestamp round trips and error mapping.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use natter_store::conformance::{Harness, creds, new_message, now, user};
use natter_store::types::*;
use natter_store::{NewGroup, NewUser, Store, StoreError};
use natter_store_postgres::{PgOptions, PgStore};

use crate::{PgHarness, admin_client, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_migrate_once() {
    let Some(admin) = admin_client().await else {
        return;
    };
    // A schema nobody has created yet, as on a first deployment.
    let h = PgHarness {
        schema: crate::schema_name(),
    };
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let options = h.options();
            tokio::spawn(async move { PgStore::connect_with(&url(), options).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every node connects");
    }
    let history = format!(
        "SELECT count(*) FROM \"{}\".refinery_schema_history",
        h.schema()
    );
    let applied: i64 = admin.query_one(&history, &[]).await.unwrap().get(0);
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, migrations, "each migration applied once");
    let tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&h.schema()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        tables >= 7,
        "tables live in the chosen schema, got {tables}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemas_are_isolated() {
    let (Some(a), Some(b)) = (PgHarness::fresh().await, PgHarness::fresh().await) else {
        return;
    };
    let (a, b) = (a.open().await, b.open().await);
    user(&*a, "alice").await;
    let alice = Username::parse("alice").unwrap();
    assert!(a.user_by_username(&alice).await.unwrap().is_some());
    assert!(b.user_by_username(&alice).await.unwrap().is_none());
    // the same name is free in the other schema
    user(&*b, "alice").await;
}

#[tokio::test]
async fn bad_configuration_is_a_backend_error() {
    let bad_schema = PgStore::connect_with(
        &url(),
        PgOptions {
            schema: Some("Robert'); DROP TABLE users;--".into()),
            ..PgOptions::default()
        },
    )
    .await;
    assert!(
        matches!(bad_schema, Err(StoreError::Backend(_))),
        "{bad_schema:?}"
    );
    let bad_url = PgStore::connect("not a url at all =").await;
    assert!(
        matches!(bad_url, Err(StoreError::Backend(_))),
        "{bad_url:?}"
    );
    // nothing listens on port 1
    let unreachable = PgStore::connect("postgres://root@127.0.0.1:1/test").await;
    assert!(
        matches!(unreachable, Err(StoreError::Backend(_))),
        "{unreachable:?}"
    );
}

/// Two stores over one schema are two nodes: a client retrying the same
/// message through both at once gets one message, and numbering stays
/// gap-free because the loser's counter increment is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_sends_racing_across_nodes() {
    let Some(h) = PgHarness::fresh().await else {
        return;
    };
    let nodes = [h.open().await, h.open().await];
    let alice = user(&*nodes[0], "alice").await;
    let bob = user(&*nodes[0], "bob").await;
    let (c, _) = nodes[1]
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    for round in 0..10 {
        let client_id = format!("dup-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = nodes[i % 2].clone();
                let m = new_message(c.id, alice.id, &client_id, "hello");
                tokio::spawn(async move { store.append_message(m).await.unwrap() })
            })
            .collect();
        let mut created = 0;
        let mut ids = HashSet::new();
        for t in tasks {
            let a = t.await.unwrap();
            created += a.created as usize;
            ids.insert((a.message.id, a.message.seq));
        }
        assert_eq!(created, 1, "round {round}");
        assert_eq!(ids.len(), 1, "everyone gets the same message");
        assert_eq!(ids.into_iter().next().unwrap().1, round + 1, "no gap");
    }
    let conv = nodes[0].conversation(c.id).await.unwrap().unwrap();
    assert_eq!(conv.last_seq, 10);
}

/// Sequence numbers stay gap-free with senders spread over several nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_across_nodes_are_gap_free() {
    let Some(h) = PgHarness::fresh().await else {
        return;
    };
    let nodes = [h.open().await, h.open().await, h.open().await];
    let owner = user(&*nodes[0], "owner").await;
    let mut senders = Vec::new();
    for i in 0..9 {
        senders.push(user(&*nodes[0], &format!("s{i}")).await);
    }
    let g = nodes[0]
        .create_group(NewGroup {
            id: ConversationId::new(),
            title: GroupTitle::parse("Nodes").unwrap(),
            owner: owner.id,
            members: senders.iter().map(|s| s.id).collect(),
            now: now(),
        })
        .await
        .unwrap();
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let store: Arc<dyn Store> = nodes[i % nodes.len()].clone();
            let (sid, conv) = (s.id, g.id);
            tokio::spawn(async move {
                for j in 0..20 {
                    store
                        .append_message(new_message(conv, sid, &format!("n{j}"), "hello"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let all = nodes[1]
        .messages(
            g.id,
            natter_store::HistoryQuery {
                before: None,
                after: Some(0),
                limit: 1000,
            },
        )
        .await
        .unwrap();
    let seqs: Vec<i64> = all.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=180).collect::<Vec<_>>());
}

/// The store returns what it stored, even when the caller's clock has more
/// precision than TIMESTAMPTZ's microseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_exactly() {
    let Some(h) = PgHarness::fresh().await else {
        return;
    };
    let store = h.open().await;
    let nanos = Utc::now() + TimeDelta::nanoseconds(123);
    let alice = store
        .create_user(NewUser {
            username: Username::parse("alice").unwrap(),
            display_name: None,
            credentials: creds(1),
            now: nanos,
        })
        .await
        .unwrap();
    assert_eq!(store.user_by_id(alice.id).await.unwrap().unwrap(), alice);
    let bob = user(&*store, "bob").await;
    let (c, _) = store
        .direct_conversation(alice.id, bob.id, nanos)
        .await
        .unwrap();
    assert_eq!(store.conversation(c.id).await.unwrap().unwrap(), c);
    let mut m = new_message(c.id, alice.id, "precise", "hello");
    m.now = nanos;
    let sent = store.append_message(m).await.unwrap().message;
    assert_eq!(store.message(c.id, 1).await.unwrap().unwrap(), sent);
    let edited = store
        .edit_message(
            c.id,
            1,
            Body::parse("edited".into(), 100).unwrap(),
            nanos + TimeDelta::nanoseconds(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.message(c.id, 1).await.unwrap().unwrap(), edited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cases() {
    let Some(h) = PgHarness::fresh().await else {
        return;
    };
    let store = h.open().await;
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;

    // no direct conversation with oneself, and unknown users are NotFound
    assert!(
        store
            .direct_conversation(alice.id, alice.id, now())
            .await
            .is_err()
    );
    let ghost = UserId(i64::MAX);
    assert!(matches!(
        store.direct_conversation(alice.id, ghost, now()).await,
        Err(StoreError::NotFound("user"))
    ));

    // the last member leaving a group leaves it empty, without error
    let g = store
        .create_group(NewGroup {
            id: ConversationId::new(),
            title: GroupTitle::parse("Solo").unwrap(),
            owner: alice.id,
            members: vec![],
            now: now(),
        })
        .await
        .unwrap();
    assert!(store.remove_member(g.id, alice.id).await.unwrap());
    assert!(store.members(g.id).await.unwrap().is_empty());
    assert!(
        !store
            .remove_member(ConversationId::new(), alice.id)
            .await
            .unwrap()
    );

    // an admin is preferred over an earlier member; a remaining owner
    // keeps the group from being handed over
    let g = store
        .create_group(NewGroup {
            id: ConversationId::new(),
            title: GroupTitle::parse("Pair").unwrap(),
            owner: alice.id,
            members: vec![bob.id],
            now: now(),
        })
        .await
        .unwrap();
    let carol = user(&*store, "carol").await;
    store
        .set_member(g.id, carol.id, Role::Admin, now())
        .await
        .unwrap();
    let dave = user(&*store, "dave").await;
    store
        .set_member(g.id, dave.id, Role::Owner, now())
        .await
        .unwrap();
    assert!(store.remove_member(g.id, alice.id).await.unwrap());
    assert_eq!(
        store.member_role(g.id, carol.id).await.unwrap(),
        Some(Role::Admin),
        "dave is still an owner"
    );
    assert!(store.remove_member(g.id, dave.id).await.unwrap());
    assert_eq!(
        store.member_role(g.id, carol.id).await.unwrap(),
        Some(Role::Owner)
    );

    // renaming a direct conversation or an unknown one is NotFound
    let (d, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    assert!(matches!(
        store
            .rename_group(d.id, GroupTitle::parse("x").unwrap())
            .await,
        Err(StoreError::NotFound(_))
    ));
    // mark_read on an unknown conversation is NotFound, not NotMember
    assert!(matches!(
        store.mark_read(ConversationId::new(), alice.id, 1).await,
        Err(StoreError::NotFound(_))
    ));
    // contacts name users that exist
    assert!(matches!(
        store
            .put_contact(alice.id, ghost, None, ContactGroups::default(), now())
            .await,
        Err(StoreError::NotFound("user"))
    ));
    // a backslash in a search is literal too
    assert!(store.search_users("\\", 10).await.unwrap().is_empty());
    store.ping().await.unwrap();
}
