//! The event log's PostgreSQL specifics: positions in commit order while
//! transactions overlap (what a plain BIGSERIAL gets wrong), reads that
//! wait for older transactions, one event per change when nodes race, and
//! the V2 migration over existing data.

use std::time::Duration;

use natter_store::conformance::{Harness, new_message, now, user};
use natter_store::types::*;
use natter_store::{NewGroup, Store};
use natter_store_postgres::{PgOptions, PgStore};
use tokio_postgres::NoTls;

use crate::{PgHarness, admin_client, url};

fn created_ids(events: &[Event]) -> Vec<MessageId> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::MessageCreated(m) => m.id,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Waits until some session waits for advisory lock `key`.
async fn until_waiting_for(admin: &tokio_postgres::Client, key: i64) {
    for _ in 0..500 {
        let waiting: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks
                  WHERE locktype = 'advisory' AND NOT granted
                    AND classid = 0 AND objid = $1::bigint::oid AND objsubid = 1)",
                &[&key],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nobody waits for advisory lock {key}");
}

/// T1 appends (its event row takes the smaller id) and stays open; T2, on
/// another node, appends later and commits first. A reader that took T2's
/// event and moved past it would skip T1's for good, so T2's event must not
/// be returned until T1 has finished; then both come back in (xid, id)
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_transaction_holds_back_later_commits() {
    let Some(h) = PgHarness::fresh().await else {
        return;
    };
    let Some(admin) = admin_client().await else {
        return;
    };
    let node_a = h.open_pg().await;
    let node_b = h.open_pg().await;
    // A reader that gives up waiting quickly, to see what is safe to return
    // while T1 is open.
    let impatient = PgStore::connect_with(
        &url(),
        PgOptions {
            event_wait: Duration::from_millis(50),
            ..h.options()
        },
    )
    .await
    .unwrap();
    let alice = user(&node_a, "alice").await;
    let bob = user(&node_a, "bob").await;
    let carol = user(&node_a, "carol").await;
    let (d1, _) = node_a
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    let (d2, _) = node_a
        .direct_conversation(alice.id, carol.id, now())
        .await
        .unwrap();
    let from = node_a.event_head().await.unwrap();

    // T1 is a real append that stops just before its commit: a trigger,
    // fired after the statement that inserts the message and its event,
    // makes the message "held" wait for an advisory lock held here.
    let key = i64::from(rand_key());
    let schema = h.schema();
    admin
        .batch_execute(&format!(
            r#"CREATE FUNCTION "{schema}".hold_append() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   IF NEW.client_id = 'held' THEN
                       PERFORM pg_advisory_xact_lock_shared({key});
                   END IF;
                   RETURN NULL;
               END $$;
               CREATE TRIGGER hold_append AFTER INSERT ON "{schema}".messages
                   FOR EACH ROW EXECUTE FUNCTION "{schema}".hold_append();"#
        ))
        .await
        .unwrap();
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let t1 = {
        let node_a = node_a.clone();
        tokio::spawn(async move {
            node_a
                .append_message(new_message(d1.id, alice.id, "held", "hello"))
                .await
                .unwrap()
                .message
        })
    };
    until_waiting_for(&admin, key).await;

    // T2 commits on the other node.
    let later = node_b
        .append_message(new_message(d2.id, alice.id, "later", "hello"))
        .await
        .unwrap()
        .message;
    let stored: i64 = admin
        .query_one(
            &format!(r#"SELECT count(*) FROM "{schema}".events WHERE seq IS NOT NULL"#),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "T2's event is committed, T1's is not");

    // Neither is in the log yet, however the log is read.
    let seen = impatient.events_after(from, 100).await.unwrap();
    assert!(seen.is_empty(), "T2's event must wait for T1: {seen:?}");
    assert_eq!(impatient.event_head().await.unwrap(), from);
    let carols = impatient
        .user_events_after(carol.id, from, 100)
        .await
        .unwrap();
    assert!(carols.is_empty(), "{carols:?}");
    assert!(!t1.is_finished());

    // T1 commits: both come back, T1's first.
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let held = t1.await.unwrap();
    let seen = node_b.events_after(from, 100).await.unwrap();
    assert_eq!(created_ids(&seen), [held.id, later.id]);
    let (p1, p2) = (seen[0].pos, seen[1].pos);
    assert!(
        p1.major < p2.major && p1.minor < p2.minor,
        "T1 started first and took the smaller row id, but committed last: {p1} {p2}"
    );
    assert_eq!(node_b.event_head().await.unwrap(), p2);
    assert_eq!(
        created_ids(&node_a.user_events_after(carol.id, from, 100).await.unwrap()),
        [later.id]
    );
    // A reader that moved to T1's event still gets T2's.
    assert_eq!(
        created_ids(&node_a.events_after(p1, 100).await.unwrap()),
        [later.id]
    );
}

fn rand_key() -> u32 {
    // Unique enough among concurrent test runs on one server.
    let id = uuid::Uuid::now_v7();
    let bytes = id.as_bytes();
    u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) & 0x7fff_ffff
}

/// A read returns what committed before it, once the older transactions
/// that hold it back have finished, rather than an incomplete answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_wait_for_older_transactions() {
    let Some(h) = PgHarness::fresh().await else {
        return;
    };
    let Some(admin) = admin_client().await else {
        return;
    };
    let store = h.open_pg().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let (d, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    let from = store.event_head().await.unwrap();

    // Any transaction with an id, anywhere on the server, holds the
    // horizon back: this one has nothing to do with Natter.
    admin.batch_execute("BEGIN").await.unwrap();
    admin
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap();
    let sent = store
        .append_message(new_message(d.id, alice.id, "m1", "hello"))
        .await
        .unwrap()
        .message;
    let tail = {
        let store = store.clone();
        tokio::spawn(async move { store.events_after(from, 100).await.unwrap() })
    };
    let head = {
        let store = store.clone();
        tokio::spawn(async move { store.event_head().await.unwrap() })
    };
    let catch_up = {
        let store = store.clone();
        tokio::spawn(async move { store.user_events_after(bob.id, from, 100).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !tail.is_finished() && !head.is_finished() && !catch_up.is_finished(),
        "reads wait while the older transaction is open"
    );
    admin.batch_execute("COMMIT").await.unwrap();
    let seen = tail.await.unwrap();
    assert_eq!(created_ids(&seen), [sent.id]);
    assert_eq!(head.await.unwrap(), seen[0].pos);
    assert_eq!(catch_up.await.unwrap(), seen);
}

/// Markers moved by many calls at once, over two nodes, append one event
/// per move; calls that change nothing append nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_nodes_append_one_event_per_change() {
    let Some(h) = PgHarness::fresh().await else {
        return;
    };
    let nodes = [h.open_pg().await, h.open_pg().await];
    let alice = user(&nodes[0], "alice").await;
    let bob = user(&nodes[0], "bob").await;
    let g = nodes[0]
        .create_group(NewGroup {
            id: ConversationId::new(),
            title: GroupTitle::parse("Race").unwrap(),
            owner: alice.id,
            members: vec![bob.id],
            now: now(),
        })
        .await
        .unwrap();
    for i in 0..5 {
        nodes[0]
            .append_message(new_message(g.id, alice.id, &format!("r{i}"), "hello"))
            .await
            .unwrap();
    }
    let from = nodes[0].event_head().await.unwrap();

    for (read, target, want) in [(false, 4, 4), (true, 3, 3)] {
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let store = nodes[i % 2].clone();
                tokio::spawn(async move {
                    if read {
                        store.mark_read(g.id, bob.id, target).await.unwrap()
                    } else {
                        store.mark_delivered(g.id, bob.id, target).await.unwrap()
                    }
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), want);
        }
    }
    // no-ops: the same title, the same role
    nodes[1]
        .rename_group(g.id, GroupTitle::parse("Race").unwrap())
        .await
        .unwrap();
    assert!(
        !nodes[1]
            .set_member(g.id, bob.id, Role::Member, now())
            .await
            .unwrap()
    );
    let renamed = nodes[1]
        .rename_group(g.id, GroupTitle::parse("Derby").unwrap())
        .await
        .unwrap();
    assert_eq!(renamed.title.as_deref(), Some("Derby"));

    let kinds: Vec<_> = nodes[0]
        .events_after(from, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Delivered {
                user: bob.username.clone(),
                seq: 4
            },
            EventKind::Read {
                user: bob.username.clone(),
                seq: 3
            },
            EventKind::ConversationRenamed {
                title: "Derby".into()
            },
        ]
    );
    let bob_m = nodes[1]
        .members(g.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.user.username == bob.username)
        .unwrap();
    assert_eq!((bob_m.read_seq, bob_m.delivered_seq), (3, 4));
}

/// Appenders racing on one conversation from several nodes: the log
/// returns the conversation's messages in sequence order, so every reader
/// shows them in the same gap-free order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_come_out_of_the_log_in_sequence_order() {
    let Some(h) = PgHarness::fresh().await else {
        return;
    };
    let nodes = [h.open_pg().await, h.open_pg().await, h.open_pg().await];
    let alice = user(&nodes[0], "alice").await;
    let bob = user(&nodes[0], "bob").await;
    let g = nodes[0]
        .create_group(NewGroup {
            id: ConversationId::new(),
            title: GroupTitle::parse("Race").unwrap(),
            owner: alice.id,
            members: vec![bob.id],
            now: now(),
        })
        .await
        .unwrap();
    let from = nodes[0].event_head().await.unwrap();
    const EACH: usize = 40;
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let store = nodes[i % 3].clone();
            let sender = if i % 2 == 0 { alice.id } else { bob.id };
            tokio::spawn(async move {
                for j in 0..EACH {
                    store
                        .append_message(new_message(g.id, sender, &format!("{i}-{j}"), "x"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let mut seqs = Vec::new();
    let mut pos = from;
    loop {
        let page = nodes[1].events_after(pos, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        pos = last.pos;
        for e in &page {
            if let EventKind::MessageCreated(m) = &e.kind {
                seqs.push(m.seq);
            }
        }
    }
    assert_eq!(seqs, (1..=(6 * EACH) as i64).collect::<Vec<_>>());
}

mod v1 {
    refinery::embed_migrations!("migrations");
}

/// Members of a database created before the event log start with the
/// delivered marker at their read marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_to_v2_backfills_delivered_markers() {
    let Some(admin) = admin_client().await else {
        return;
    };
    // A schema at V1 only, as an older Natter left it.
    let h = PgHarness {
        schema: crate::schema_name(),
    };
    let schema = h.schema();
    admin
        .batch_execute(&format!(r#"CREATE SCHEMA "{schema}""#))
        .await
        .unwrap();
    let mut config: tokio_postgres::Config = url().parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (mut client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    v1::migrations::runner()
        .set_target(refinery::Target::Version(1))
        .run_async(&mut client)
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO users (username, created_at, salt, iterations, sha1_stored_key,
                 sha1_server_key, sha256_stored_key, sha256_server_key)
             VALUES ('alice', now(), '', 1, '', '', '', ''), ('bob', now(), '', 1, '', '', '', '');
             INSERT INTO conversations (id, kind, direct_key, created_at, last_seq, last_activity_at)
             SELECT gen_random_uuid(), 'direct', min(id) || ':' || max(id), now(), 5, now()
             FROM users;
             INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq)
             SELECT c.id, u.id, 'member', now(), CASE u.username WHEN 'alice' THEN 5 ELSE 2 END
             FROM conversations c, users u;",
        )
        .await
        .unwrap();
    drop(client);

    let store = h.open_pg().await;
    let by_name = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .user_by_username(&Username::parse(name).unwrap())
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (alice, bob) = (by_name("alice").await, by_name("bob").await);
    let id = store.list_conversations(alice.id, None, 10).await.unwrap()[0]
        .conversation
        .id;
    let mut markers: Vec<_> = store
        .members(id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user.username.into_string(), m.read_seq, m.delivered_seq))
        .collect();
    markers.sort();
    assert_eq!(
        markers,
        [("alice".into(), 5, 5), ("bob".into(), 2, 2)],
        "delivered starts at read"
    );
    // and the log starts empty, after the data it predates
    assert_eq!(store.event_head().await.unwrap(), EventPos::START);
    assert_eq!(store.mark_delivered(id, bob.id, 4).await.unwrap(), 4);
    assert_eq!(
        store.events_after(EventPos::START, 10).await.unwrap()[0].kind,
        EventKind::Delivered {
            user: bob.username,
            seq: 4
        }
    );
}
