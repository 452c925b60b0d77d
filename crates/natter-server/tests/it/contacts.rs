//! The contact list.

use natter_testkit::{TestServer, json};

#[tokio::test]
async fn add_update_list_remove() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    server.user("bob").await;
    server.user("carol").await;

    let r = alice
        .put(
            "/api/v1/contacts/bob",
            json!({"name": "Bobby", "groups": ["Work", "Friends"]}),
        )
        .await;
    let c = r.expect(201);
    assert_eq!(
        (c["username"].as_str(), c["name"].as_str()),
        (Some("bob"), Some("Bobby"))
    );
    assert_eq!(c["groups"], json!(["Work", "Friends"]));
    // an empty body adds with no name and no groups
    let r = alice
        .send_raw(
            reqwest::Method::PUT,
            "/api/v1/contacts/carol",
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(r.expect(201)["groups"], json!([]));
    let r = alice
        .put("/api/v1/contacts/bob", json!({"groups": ["Family"]}))
        .await;
    let c = r.expect(200);
    assert!(c["name"].is_null());
    assert_eq!(c["groups"], json!(["Family"]));

    let list = alice.get("/api/v1/contacts").await.expect(200)["contacts"].clone();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "carol"]);

    alice.delete("/api/v1/contacts/bob").await.expect(204);
    alice
        .delete("/api/v1/contacts/bob")
        .await
        .expect_error(404, "contact_not_found");
    alice
        .put("/api/v1/contacts/nobody", json!({}))
        .await
        .expect_error(404, "user_not_found");
    alice
        .put("/api/v1/contacts/alice", json!({}))
        .await
        .expect_error(400, "invalid_field");
    alice
        .put("/api/v1/contacts/carol", json!({"groups": [""]}))
        .await
        .expect_error(400, "invalid_field");
    alice
        .put("/api/v1/contacts/carol", json!({"nickname": "x"}))
        .await
        .expect_error(400, "invalid_field");
    assert_eq!(
        alice.get("/api/v1/contacts").await.body["contacts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
