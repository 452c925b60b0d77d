//! Sending, history, idempotency, edits, deletion, read markers and
//! concurrency.

use std::collections::HashSet;

use natter_testkit::{TestServer, json};

#[tokio::test]
async fn send_and_page_through_history() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let c = alice.direct("bob").await;
    let mut ids = HashSet::new();
    for i in 1..=120 {
        let m = alice
            .say(&c, &format!("m{i}"), &format!("message {i}"))
            .await;
        assert_eq!(m["seq"], i);
        assert_eq!(m["sender"], "alice");
        assert!(m["sent_at"].is_string());
        assert!(
            ids.insert(m["id"].as_str().unwrap().to_owned()),
            "ids are unique"
        );
    }
    let url = |q: &str| format!("/api/v1/conversations/{c}/messages{q}");
    let seqs = |v: &serde_json::Value| {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    // newest page by default (50), ascending
    let r = bob.get(&url("")).await;
    let page = r.expect(200);
    assert_eq!(seqs(page), (71..=120).collect::<Vec<_>>());
    assert_eq!(page["has_more"], true);
    // backwards with before
    let r = bob.get(&url("?before=71&limit=100")).await;
    assert_eq!(seqs(r.expect(200)), (1..=70).collect::<Vec<_>>());
    assert_eq!(r.body["has_more"], false);
    // forwards with after
    let r = bob.get(&url("?after=100&limit=10")).await;
    assert_eq!(seqs(r.expect(200)), (101..=110).collect::<Vec<_>>());
    assert_eq!(r.body["has_more"], true);
    let r = bob.get(&url("?after=110&limit=10")).await;
    assert_eq!(seqs(r.expect(200)), (111..=120).collect::<Vec<_>>());
    assert_eq!(r.body["has_more"], false);
    assert_eq!(r.body["messages"][0]["body"], "message 111");
    for bad in ["?limit=0", "?limit=101", "?before=abc", "?before=5&after=9"] {
        bob.get(&url(bad)).await.expect_error(400, "invalid_field");
    }
}

#[tokio::test]
async fn client_id_makes_sending_idempotent() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    server.user("bob").await;
    server.user("carol").await;
    let c = alice.direct("bob").await;
    let first = alice.say(&c, "retry-me", "once").await;
    let path = format!("/api/v1/conversations/{c}/messages");
    let r = alice
        .post(&path, json!({"client_id": "retry-me", "body": "once"}))
        .await;
    assert_eq!(
        r.expect(200)["message"],
        first,
        "the retry returns the stored message"
    );
    let history = alice.get(&path).await;
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 1);
    // a second device of the same user shares the sender's client ids
    let alice2 = server
        .client()
        .log_in("alice", natter_testkit::PASSWORD)
        .await;
    let r = alice2
        .post(&path, json!({"client_id": "retry-me", "body": "once"}))
        .await;
    assert_eq!(r.expect(200)["message"]["id"], first["id"]);
    // the same client id towards another conversation is a conflict
    let other = alice.direct("carol").await;
    alice
        .post(
            &format!("/api/v1/conversations/{other}/messages"),
            json!({"client_id": "retry-me", "body": "once"}),
        )
        .await
        .expect_error(409, "client_id_reused");
    for bad in [
        json!({"client_id": "", "body": "x"}),
        json!({"client_id": "a b", "body": "x"}),
        json!({"body": "x"}),
    ] {
        let r = alice.post(&path, bad).await;
        r.expect_error(400, "invalid_field");
        assert_eq!(r.body["error"]["field"], "client_id");
    }
    let r = alice
        .post(&path, json!({"client_id": "e", "body": "   "}))
        .await;
    r.expect_error(400, "invalid_field");
    assert_eq!(r.body["error"]["field"], "body");
}

#[tokio::test]
async fn only_members_read_and_write() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    server.user("bob").await;
    let mallory = server.user("mallory").await;
    let c = alice.direct("bob").await;
    let path = format!("/api/v1/conversations/{c}/messages");
    mallory
        .post(&path, json!({"client_id": "x", "body": "hi"}))
        .await
        .expect_error(403, "not_member");
    mallory.get(&path).await.expect_error(403, "not_member");
    mallory
        .post(
            &format!("/api/v1/conversations/{c}/read"),
            json!({"seq": 1}),
        )
        .await
        .expect_error(403, "not_member");
    let unknown = uuid::Uuid::now_v7();
    alice
        .post(
            &format!("/api/v1/conversations/{unknown}/messages"),
            json!({"client_id": "x", "body": "hi"}),
        )
        .await
        .expect_error(404, "conversation_not_found");
    server
        .client()
        .post(&path, json!({"client_id": "x", "body": "hi"}))
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let server = TestServer::start_with(|c| c.limits.max_body_bytes = 1024).await;
    let alice = server.user("alice").await;
    server.user("bob").await;
    let c = alice.direct("bob").await;
    let path = format!("/api/v1/conversations/{c}/messages");
    alice
        .post(&path, json!({"client_id": "ok", "body": "é".repeat(512)}))
        .await
        .expect(201);
    let r = alice
        .post(&path, json!({"client_id": "big", "body": "é".repeat(513)}))
        .await;
    r.expect_error(413, "payload_too_large");
    assert_eq!(r.body["error"]["field"], "body");
    // a request far over the HTTP limit is refused from its Content-Length
    let r = alice
        .send_raw(
            reqwest::Method::POST,
            &path,
            "application/json",
            vec![b'x'; 10 * 1024 * 1024],
        )
        .await;
    r.expect_error(413, "payload_too_large");
    let history = alice.get(&path).await;
    assert_eq!(
        history.body["messages"].as_array().unwrap().len(),
        1,
        "nothing else stored"
    );
}

#[tokio::test]
async fn edit_and_delete() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let c = alice.direct("bob").await;
    let m = alice.say(&c, "e1", "helo").await;
    let msg = |seq: i64| format!("/api/v1/conversations/{c}/messages/{seq}");

    let r = alice.patch(&msg(1), json!({"body": "hello"})).await;
    let edited = r.expect(200)["message"].clone();
    assert_eq!(edited["body"], "hello");
    assert_eq!(edited["id"], m["id"]);
    assert!(edited["edited_at"].is_string());
    bob.patch(&msg(1), json!({"body": "hijack"}))
        .await
        .expect_error(403, "not_author");
    bob.delete(&msg(1)).await.expect_error(403, "not_author");
    alice
        .patch(&msg(9), json!({"body": "x"}))
        .await
        .expect_error(404, "message_not_found");
    alice
        .patch(&msg(1), json!({"body": ""}))
        .await
        .expect_error(400, "invalid_field");

    let r = alice.delete(&msg(1)).await;
    let tomb = r.expect(200)["message"].clone();
    assert!(tomb["body"].is_null());
    assert!(tomb["deleted_at"].is_string());
    alice
        .delete(&msg(1))
        .await
        .expect_error(409, "message_deleted");
    alice
        .patch(&msg(1), json!({"body": "back"}))
        .await
        .expect_error(409, "message_deleted");
    let history = bob
        .get(&format!("/api/v1/conversations/{c}/messages"))
        .await;
    assert_eq!(
        history.body["messages"][0], tomb,
        "the tombstone keeps its place"
    );

    // in groups, admins and owners moderate; members do not
    let g = alice.group("G", &["bob", "carol"]).await;
    let gmsg = |seq: i64| format!("/api/v1/conversations/{g}/messages/{seq}");
    carol.say(&g, "c1", "spam").await;
    bob.say(&g, "b1", "ok").await;
    bob.delete(&gmsg(1)).await.expect_error(403, "not_author");
    alice.delete(&gmsg(1)).await.expect(200);
    alice
        .patch(&gmsg(2), json!({"body": "edited by owner"}))
        .await
        .expect_error(403, "not_author");
}

#[tokio::test]
async fn read_markers_move_forward_only() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let c = alice.direct("bob").await;
    for i in 0..5 {
        alice.say(&c, &format!("r{i}"), "x").await;
    }
    let path = format!("/api/v1/conversations/{c}/read");
    let read = |seq: i64| bob.post(&path, json!({"seq": seq}));
    assert_eq!(read(3).await.expect(200)["read_seq"], 3);
    assert_eq!(read(1).await.expect(200)["read_seq"], 3);
    assert_eq!(read(50).await.expect(200)["read_seq"], 5);
    read(-1).await.expect_error(400, "invalid_field");
    let me = bob.member(&c, "bob").await;
    assert_eq!(me["read_seq"], 5);
    assert_eq!(me["delivered_seq"], 5, "reading implies delivery");
}

/// Many clients sending into one group at once: every message gets its own
/// sequence number and the numbers have no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_keep_sequences_gap_free() {
    const SENDERS: usize = 20;
    const EACH: usize = 25;
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let mut clients = Vec::new();
    for i in 0..SENDERS {
        clients.push(server.user(&format!("s{i}")).await);
    }
    let names: Vec<String> = (0..SENDERS).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let g = owner.group("busy", &refs).await;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let g = g.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for j in 0..EACH {
                    seqs.push(
                        c.say(&g, &format!("k{j}"), "busy").await["seq"]
                            .as_i64()
                            .unwrap(),
                    );
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t.unwrap());
    }
    all.sort();
    assert_eq!(all, (1..=(SENDERS * EACH) as i64).collect::<Vec<_>>());
}
