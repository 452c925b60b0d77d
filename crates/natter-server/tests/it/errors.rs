//! Malformed requests get the documented JSON errors.

use natter_testkit::{TestServer, json};
use reqwest::Method;

#[tokio::test]
async fn malformed_and_mistyped_bodies() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let anon = server.client();
    let r = anon
        .send_raw(
            Method::POST,
            "/api/v1/accounts",
            "application/json",
            b"{\"username\": ".to_vec(),
        )
        .await;
    r.expect_error(400, "malformed_json");
    let r = anon
        .send_raw(
            Method::POST,
            "/api/v1/accounts",
            "application/json",
            b"not json".to_vec(),
        )
        .await;
    r.expect_error(400, "malformed_json");
    let r = anon
        .send_raw(
            Method::POST,
            "/api/v1/accounts",
            "text/plain",
            b"{}".to_vec(),
        )
        .await;
    r.expect_error(415, "unsupported_media_type");
    let r = anon
        .send_raw(Method::POST, "/api/v1/accounts", "application/json", vec![])
        .await;
    r.expect_error(400, "invalid_field");
    let r = anon
        .post("/api/v1/sessions", json!({"username": "alice"}))
        .await;
    r.expect_error(400, "invalid_field");
    assert_eq!(r.body["error"]["field"], "password");
    let r = anon
        .post(
            "/api/v1/sessions",
            json!({"username": "alice", "password": 123}),
        )
        .await;
    r.expect_error(400, "invalid_field");
    assert_eq!(r.body["error"]["field"], "password");
    let r = anon.post("/api/v1/sessions", json!(["alice"])).await;
    r.expect_error(400, "invalid_field");
    // nothing of that was stored
    assert_eq!(
        alice.get("/api/v1/me").await.expect(200)["username"],
        "alice"
    );
}

#[tokio::test]
async fn unknown_ids_routes_and_methods() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    alice
        .get("/api/v1/conversations/not-a-uuid")
        .await
        .expect_error(404, "not_found");
    alice
        .get("/api/v1/conversations/not-a-uuid/messages")
        .await
        .expect_error(404, "not_found");
    alice
        .get("/api/v1/nothing-here")
        .await
        .expect_error(404, "not_found");
    alice
        .send(Method::PUT, "/api/v1/accounts", None)
        .await
        .expect_error(405, "method_not_allowed");
    let r = server.client().get("/api/v1/me").await;
    r.expect_error(401, "unauthenticated");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    server
        .client()
        .with_token("garbage")
        .get("/api/v1/me")
        .await
        .expect_error(401, "unauthenticated");
    let r = reqwest::Client::new()
        .get(server.url("/api/v1/me"))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/json");
}
