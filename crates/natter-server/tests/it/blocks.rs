//! Blocking other users: the list, what a block stops (and what it does
//! not), and the events the blocker's other devices and the blocked user
//! get. The XMPP side (XEP-0191) is in `xmpp.rs`.

use std::time::Duration;

use natter_testkit::stream::{Realtime, Transport};
use natter_testkit::{Client, PASSWORD, TestServer, json};

fn names(list: &serde_json::Value) -> Vec<String> {
    list["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["username"].as_str().unwrap().to_owned())
        .collect()
}

async fn send(client: &Client, conv: &str, id: &str) -> natter_testkit::Response {
    client
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"client_id": id, "body": "hello"}),
        )
        .await
}

#[tokio::test]
async fn blocks_list_block_unblock_and_unblock_all() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    server.user("bob").await;
    server.user("carol").await;

    assert_eq!(
        names(alice.get("/api/v1/blocks").await.expect(200)).len(),
        0
    );
    let b = alice.put("/api/v1/blocks/carol", json!({})).await;
    let b = b.expect(201);
    assert_eq!(b["username"], "carol");
    assert!(b["blocked_at"].is_string());
    // again: the same entry, 200
    let again = alice.put("/api/v1/blocks/carol", json!({})).await;
    assert_eq!(again.expect(200)["blocked_at"], b["blocked_at"]);
    alice.put("/api/v1/blocks/bob", json!({})).await.expect(201);
    assert_eq!(
        names(alice.get("/api/v1/blocks").await.expect(200)),
        ["bob", "carol"]
    );

    alice
        .put("/api/v1/blocks/nobody", json!({}))
        .await
        .expect_error(404, "user_not_found");
    alice
        .put("/api/v1/blocks/alice", json!({}))
        .await
        .expect_error(400, "invalid_field");
    alice.delete("/api/v1/blocks/bob").await.expect(204);
    alice
        .delete("/api/v1/blocks/bob")
        .await
        .expect_error(404, "block_not_found");
    assert_eq!(
        names(alice.get("/api/v1/blocks").await.expect(200)),
        ["carol"]
    );

    alice.put("/api/v1/blocks/bob", json!({})).await.expect(201);
    alice.delete("/api/v1/blocks").await.expect(204);
    assert!(names(alice.get("/api/v1/blocks").await.expect(200)).is_empty());
    server
        .client()
        .get("/api/v1/blocks")
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn blocks_stop_direct_messages_both_ways_but_not_groups_or_history() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice
        .put("/api/v1/contacts/bob", json!({}))
        .await
        .expect(201);
    let conv = bob.direct("alice").await;
    let group = alice.group("friends", &["bob"]).await;
    bob.say(&conv, "b-1", "hi alice").await;

    alice.put("/api/v1/blocks/bob", json!({})).await.expect(201);
    // bob is not told why
    send(&bob, &conv, "b-2")
        .await
        .expect_error(403, "recipient_unavailable");
    send(&alice, &conv, "a-1")
        .await
        .expect_error(403, "blocked");
    bob.post(
        "/api/v1/conversations",
        json!({"kind": "direct", "with": "alice"}),
    )
    .await
    .expect_error(403, "recipient_unavailable");
    // nothing was stored
    let history = alice
        .get(&format!("/api/v1/conversations/{conv}/messages"))
        .await;
    let messages = history.expect(200)["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 1, "alice still reads the history");
    assert_eq!(messages[0]["client_id"], "b-1");
    // groups go on; the contact stays
    bob.say(&group, "b-3", "in the group").await;
    let contacts = alice.get("/api/v1/contacts").await;
    assert_eq!(contacts.expect(200)["contacts"][0]["username"], "bob");

    alice.delete("/api/v1/blocks/bob").await.expect(204);
    send(&bob, &conv, "b-4").await.expect(201);
}

/// The blocker's other devices hear of changes; the blocked user's
/// presence of the blocker goes offline, and comes back on unblocking.
#[tokio::test]
async fn blocks_reach_other_devices_and_presence_over_both_transports() {
    let server = TestServer::start().await;
    // Users of their own per transport, so that no presence of one round
    // reaches the next.
    for (round, transport) in [Transport::WebSocket, Transport::LongPoll]
        .into_iter()
        .enumerate()
    {
        let (a, b, c) = (
            format!("alice{round}"),
            format!("bob{round}"),
            format!("carol{round}"),
        );
        let alice = server.user(&a).await;
        let bob = server.user(&b).await;
        server.user(&c).await;
        alice
            .put(&format!("/api/v1/contacts/{b}"), json!({}))
            .await
            .expect(201);
        bob.put(&format!("/api/v1/contacts/{a}"), json!({}))
            .await
            .expect(201);
        let mut bobs = Realtime::connect(&bob, transport, None).await;
        let alice_phone = alice.log_in(&a, PASSWORD).await;
        let mut phone = Realtime::connect(&alice_phone, transport, None).await;
        // A long-poll session's queue exists from its first poll with a
        // cursor; ephemeral items before it are not kept. One short poll
        // each (WebSocket streams have theirs at once).
        for stream in [&mut bobs, &mut phone] {
            stream.try_next_event(Duration::from_secs(1)).await;
        }
        let presence = |status: &'static str| {
            let a = a.clone();
            move |e: &serde_json::Value| {
                e["event"] == "presence" && e["data"]["user"] == a && e["data"]["status"] == status
            }
        };

        alice
            .put(&format!("/api/v1/blocks/{b}"), json!({}))
            .await
            .expect(201);
        let e = phone.expect_event("block.added").await;
        assert_eq!(e["data"]["user"], b.as_str());
        assert!(e.get("cursor").is_none(), "ephemeral");
        bobs.expect("alice offline", presence("offline")).await;

        alice
            .delete(&format!("/api/v1/blocks/{b}"))
            .await
            .expect(204);
        let e = phone.expect_event("block.removed").await;
        assert_eq!(e["data"]["user"], b.as_str());
        bobs.expect("alice back", presence("online")).await;

        alice
            .put(&format!("/api/v1/blocks/{c}"), json!({}))
            .await
            .expect(201);
        phone.expect_event("block.added").await;
        alice.delete("/api/v1/blocks").await.expect(204);
        phone.expect_event("block.cleared").await;
        phone.close().await;
        bobs.close().await;
    }
}
