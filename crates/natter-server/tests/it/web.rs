//! The embedded web client and JavaScript SDK: served by the binary with
//! content types, ETags and a strict Content-Security-Policy, without
//! shadowing the API's JSON errors. And the presence snapshot the client
//! asks for when it starts a conversation.

use natter_testkit::stream::{Realtime, Transport};
use natter_testkit::{TestServer, json};

#[tokio::test]
async fn the_web_client_is_served_with_a_strict_policy() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let page = http.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("/app.js"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    // a file, then the same file revalidated by its ETag
    let js = http.get(server.url("/app.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.headers()["cache-control"], "no-cache");
    let etag = js.headers()["etag"].clone();
    let again = http
        .get(server.url("/app.js"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);
    let other = http
        .get(server.url("/app.js"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    // the SDK at a stable URL, with its types
    let sdk = http.get(server.url("/sdk/natter.js")).send().await.unwrap();
    assert_eq!(sdk.status(), 200);
    assert!(
        sdk.text()
            .await
            .unwrap()
            .contains("export class NatterClient")
    );
    let dts = http
        .get(server.url("/sdk/natter.d.ts"))
        .send()
        .await
        .unwrap();
    assert_eq!(dts.status(), 200);
}

#[tokio::test]
async fn the_api_keeps_its_json_errors() {
    let server = TestServer::start().await;
    let anon = server.client();
    anon.get("/api/v1/nothing-here")
        .await
        .expect_error(404, "not_found");
    anon.get("/api/index.html")
        .await
        .expect_error(404, "not_found");
    anon.get("/no-such-file.js")
        .await
        .expect_error(404, "not_found");
    anon.post("/app.js", json!({}))
        .await
        .expect_error(405, "method_not_allowed");
}

#[tokio::test]
async fn presence_snapshot_includes_a_new_direct_peer() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let events = |v: &serde_json::Value| v["events"].as_array().unwrap().clone();
    assert!(events(alice.get("/api/v1/presence").await.expect(200)).is_empty());
    alice.direct("bob").await;
    let _bob_online = Realtime::connect(&bob, Transport::WebSocket, None).await;
    let snapshot = events(alice.get("/api/v1/presence").await.expect(200));
    assert_eq!(snapshot.len(), 1, "{snapshot:?}");
    assert_eq!(snapshot[0]["type"], "event");
    assert_eq!(snapshot[0]["event"], "presence");
    assert_eq!(snapshot[0]["data"]["user"], "bob");
    assert_eq!(snapshot[0]["data"]["status"], "online");
    server
        .client()
        .get("/api/v1/presence")
        .await
        .expect_error(401, "unauthenticated");
}
