//! Malformed requests get the documented JSON errors.

use natter_testkit::{TestServer, json};
use reqwest::Method;

#[tokio::test]
async fn malformed_and_mistyped_bodies() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let anon = server.client();
    // (content type, body, expected status, expected code)
    let raw: [(&str, &[u8], u16, &str); 4] = [
        (
            "application/json",
            b"{\"username\": ",
            400,
            "malformed_json",
        ),
        ("application/json", b"not json", 400, "malformed_json"),
        ("text/plain", b"{}", 415, "unsupported_media_type"),
        ("application/json", b"", 400, "invalid_field"),
    ];
    for (content_type, body, status, code) in raw {
        anon.send_raw(
            Method::POST,
            "/api/v1/accounts",
            content_type,
            body.to_vec(),
        )
        .await
        .expect_error(status, code);
    }
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
