//! Health, readiness, metrics and the API description.

use natter_testkit::TestServer;

#[tokio::test]
async fn health_readiness_metrics() {
    let server = TestServer::start().await;
    let anon = server.client();
    assert_eq!(anon.get("/healthz").await.expect(200)["status"], "ok");
    let ready = anon.get("/readyz").await;
    assert_eq!(ready.expect(200)["checks"][0]["name"], "database");
    assert_eq!(ready.body["checks"][0]["ok"], true);
    // A node working alone has its in-process bus, always up.
    assert_eq!(ready.body["checks"][1]["name"], "bus");
    assert_eq!(ready.body["checks"][1]["ok"], true);
    assert_eq!(ready.body["status"], "ok");
    server.user("alice").await;
    let metrics = anon.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("natter_http_requests_total"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("route=\"/api/v1/accounts\""));
}

#[tokio::test]
async fn openapi_document_and_page() {
    let server = TestServer::start().await;
    let anon = server.client();
    let doc = anon.get("/api/v1/openapi.json").await;
    let doc = doc.expect(200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/accounts",
        "/api/v1/sessions",
        "/api/v1/sessions/current",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/users",
        "/api/v1/contacts/{username}",
        "/api/v1/conversations",
        "/api/v1/conversations/{id}",
        "/api/v1/conversations/{id}/members/{username}",
        "/api/v1/conversations/{id}/messages",
        "/api/v1/conversations/{id}/messages/{seq}",
        "/api/v1/conversations/{id}/read",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorResponse"].is_object());
    // the interactive page is served locally, with its assets
    let page = reqwest::get(server.url("/api/docs/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    assert!(
        !html.contains("https://"),
        "the API page must not load anything from the internet"
    );
    let js = reqwest::get(server.url("/api/docs/swagger-ui-bundle.js"))
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
}
