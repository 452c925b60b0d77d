//! Direct and group conversations, members, roles and the list.

use natter_testkit::{TestServer, json};

#[tokio::test]
async fn direct_conversations_are_unique_per_pair() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let r = alice
        .post(
            "/api/v1/conversations",
            json!({"kind": "direct", "with": "bob"}),
        )
        .await;
    let c = r.expect(201).clone();
    assert_eq!(c["kind"], "direct");
    assert_eq!(c["members"].as_array().unwrap().len(), 2);
    let r = bob
        .post(
            "/api/v1/conversations",
            json!({"kind": "direct", "with": "Alice"}),
        )
        .await;
    assert_eq!(
        r.expect(200)["id"],
        c["id"],
        "the existing conversation, with 200"
    );
    alice
        .post(
            "/api/v1/conversations",
            json!({"kind": "direct", "with": "alice"}),
        )
        .await
        .expect_error(400, "invalid_field");
    alice
        .post(
            "/api/v1/conversations",
            json!({"kind": "direct", "with": "nobody"}),
        )
        .await
        .expect_error(404, "user_not_found");
    alice
        .post(
            "/api/v1/conversations",
            json!({"kind": "channel", "with": "bob"}),
        )
        .await
        .expect_error(400, "invalid_field");
    let id = c["id"].as_str().unwrap();
    alice
        .put(
            &format!("/api/v1/conversations/{id}/members/bob"),
            json!({}),
        )
        .await
        .expect_error(409, "not_a_group");
    alice
        .delete(&format!("/api/v1/conversations/{id}/members/alice"))
        .await
        .expect_error(409, "not_a_group");
}

#[tokio::test]
async fn groups_members_and_roles() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    let eve = server.user("eve").await;

    alice
        .post(
            "/api/v1/conversations",
            json!({"kind": "group", "title": "T", "members": ["bob", "ghost"]}),
        )
        .await
        .expect_error(400, "invalid_field");
    let g = alice.group("Team", &["bob", "carol"]).await;
    let path = |rest: &str| format!("/api/v1/conversations/{g}{rest}");
    let c = alice.get(&path("")).await.expect(200).clone();
    assert_eq!(c["title"], "Team");
    let role = |c: &serde_json::Value, who: &str| {
        c["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["username"] == who)
            .map(|m| m["role"].as_str().unwrap().to_owned())
    };
    assert_eq!(role(&c, "alice").as_deref(), Some("owner"));
    assert_eq!(role(&c, "bob").as_deref(), Some("member"));

    // outsiders see nothing
    dave.get(&path("")).await.expect_error(403, "not_member");
    dave.get(&path("/messages"))
        .await
        .expect_error(403, "not_member");
    // members cannot add; owners make admins; admins add plain members only
    bob.put(&path("/members/dave"), json!({}))
        .await
        .expect_error(403, "insufficient_role");
    let r = alice
        .put(&path("/members/bob"), json!({"role": "admin"}))
        .await;
    assert_eq!(role(r.expect(200), "bob").as_deref(), Some("admin"));
    let r = bob.put(&path("/members/dave"), json!({})).await;
    assert_eq!(role(r.expect(201), "dave").as_deref(), Some("member"));
    bob.put(&path("/members/eve"), json!({"role": "admin"}))
        .await
        .expect_error(403, "insufficient_role");
    bob.put(&path("/members/carol"), json!({"role": "admin"}))
        .await
        .expect_error(403, "insufficient_role");
    // admins remove plain members but not owners
    bob.delete(&path("/members/dave")).await.expect(204);
    bob.delete(&path("/members/alice"))
        .await
        .expect_error(403, "insufficient_role");
    carol
        .delete(&path("/members/bob"))
        .await
        .expect_error(403, "insufficient_role");
    bob.delete(&path("/members/dave"))
        .await
        .expect_error(404, "member_not_found");
    // rename: admins and owners
    carol
        .patch(&path(""), json!({"title": "Mine"}))
        .await
        .expect_error(403, "insufficient_role");
    assert_eq!(
        bob.patch(&path(""), json!({"title": "Renamed"}))
            .await
            .expect(200)["title"],
        "Renamed"
    );
    // the last owner cannot step down, but can leave: the admin takes over
    alice
        .put(&path("/members/alice"), json!({"role": "member"}))
        .await
        .expect_error(409, "last_owner");
    alice.delete(&path("/members/alice")).await.expect(204);
    alice.get(&path("")).await.expect_error(403, "not_member");
    let c = bob.get(&path("")).await.expect(200).clone();
    assert_eq!(role(&c, "bob").as_deref(), Some("owner"));
    assert_eq!(role(&c, "alice"), None);
    // members leave on their own
    carol.delete(&path("/members/carol")).await.expect(204);
    eve.get(&path("")).await.expect_error(403, "not_member");
    let unknown = uuid::Uuid::now_v7();
    bob.get(&format!("/api/v1/conversations/{unknown}"))
        .await
        .expect_error(404, "conversation_not_found");
}

#[tokio::test]
async fn conversation_list_with_unread_counts_and_pages() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    server.user("dave").await;
    let d_bob = alice.direct("bob").await;
    let d_carol = alice.direct("carol").await;
    let g = alice.group("Team", &["bob", "carol"]).await;
    let d_dave = alice.direct("dave").await;

    bob.say(&d_bob, "b1", "hi alice").await;
    bob.say(&d_bob, "b2", "are you there?").await;
    carol.say(&g, "c1", "team hello").await;

    let list = alice.get("/api/v1/conversations").await.expect(200).clone();
    let rows = list["conversations"].as_array().unwrap();
    let ids: Vec<_> = rows.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            g.as_str(),
            d_bob.as_str(),
            d_dave.as_str(),
            d_carol.as_str()
        ]
    );
    assert_eq!(rows[0]["unread"], 1);
    assert_eq!(rows[0]["member_count"], 3);
    assert_eq!(rows[0]["role"], "owner");
    assert_eq!(rows[0]["last_message"]["body"], "team hello");
    assert_eq!(rows[1]["unread"], 2);
    assert_eq!(rows[1]["peer"]["username"], "bob");
    assert_eq!(rows[1]["last_message"]["sender"], "bob");
    assert!(rows[3]["last_message"].is_null());
    assert!(list["next_cursor"].is_null());

    alice
        .post(
            &format!("/api/v1/conversations/{d_bob}/read"),
            json!({"seq": 1}),
        )
        .await
        .expect(200);
    let list = alice.get("/api/v1/conversations").await;
    assert_eq!(list.body["conversations"][1]["unread"], 1);
    // replying moves alice's own marker past what she answered
    alice.say(&d_bob, "a1", "yes").await;
    let list = alice.get("/api/v1/conversations").await;
    assert_eq!(list.body["conversations"][0]["id"], d_bob.as_str());
    assert_eq!(list.body["conversations"][0]["unread"], 0);

    // pages of two, then two, then nothing more
    let p1 = alice
        .get("/api/v1/conversations?limit=2")
        .await
        .expect(200)
        .clone();
    let cursor = p1["next_cursor"].as_str().expect("more pages");
    let p2 = alice
        .get(&format!("/api/v1/conversations?limit=2&cursor={cursor}"))
        .await
        .expect(200)
        .clone();
    let mut seen: Vec<_> = p1["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["conversations"].as_array().unwrap())
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen.len(), 4);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "no conversation twice");
    alice
        .get("/api/v1/conversations?cursor=garbage")
        .await
        .expect_error(400, "invalid_field");
    alice
        .get("/api/v1/conversations?limit=0")
        .await
        .expect_error(400, "invalid_field");
    alice
        .get("/api/v1/conversations?limit=101")
        .await
        .expect_error(400, "invalid_field");
    let bob_list = bob.get("/api/v1/conversations").await;
    assert_eq!(bob_list.body["conversations"].as_array().unwrap().len(), 2);
}
