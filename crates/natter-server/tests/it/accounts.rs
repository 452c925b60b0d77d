//! Sign-up, log-in, sessions, profile, password and directory.

use natter_testkit::{PASSWORD, TestServer, json};

#[tokio::test]
async fn sign_up_log_in_profile_log_out() {
    let server = TestServer::start().await;
    let anon = server.client();
    let r = anon
        .post(
            "/api/v1/accounts",
            json!({"username": "Alice", "password": PASSWORD, "display_name": " Alice L. "}),
        )
        .await;
    let user = r.expect(201);
    assert_eq!(user["username"], "alice", "usernames are lowercased");
    assert_eq!(user["display_name"], "Alice L.");

    let r = anon
        .post(
            "/api/v1/sessions",
            json!({"username": "ALICE", "password": PASSWORD}),
        )
        .await;
    let login = r.expect(201);
    let token = login["token"].as_str().unwrap();
    // 32 random bytes, base64url: comfortably over 128 bits
    assert!(token.len() >= 43, "{token}");
    assert!(login["expires_at"].is_string());
    assert_eq!(login["user"]["username"], "alice");

    let alice = anon.with_token(token);
    assert_eq!(
        alice.get("/api/v1/me").await.expect(200)["username"],
        "alice"
    );
    let r = alice
        .patch("/api/v1/me", json!({"display_name": "Al"}))
        .await;
    assert_eq!(r.expect(200)["display_name"], "Al");
    let r = alice.patch("/api/v1/me", json!({})).await;
    assert_eq!(
        r.expect(200)["display_name"],
        "Al",
        "absent fields are unchanged"
    );
    let r = alice
        .patch("/api/v1/me", json!({"display_name": null}))
        .await;
    assert!(r.expect(200)["display_name"].is_null(), "null clears");
    alice
        .patch("/api/v1/me", json!({"display_name": "x".repeat(65)}))
        .await
        .expect_error(400, "invalid_field");

    alice.delete("/api/v1/sessions/current").await.expect(204);
    alice
        .get("/api/v1/me")
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn sign_up_validation() {
    let server = TestServer::start().await;
    let anon = server.client();
    let cases = [
        (
            json!({"username": "_bad", "password": PASSWORD}),
            "username",
        ),
        (json!({"username": "a b", "password": PASSWORD}), "username"),
        (
            json!({"username": "x".repeat(33), "password": PASSWORD}),
            "username",
        ),
        (json!({"username": "bob", "password": "short"}), "password"),
        (
            json!({"username": "bob", "password": PASSWORD, "display_name": ""}),
            "display_name",
        ),
        (json!({"password": PASSWORD}), "username"),
        (json!({"username": 5, "password": PASSWORD}), "username"),
    ];
    for (body, field) in cases {
        let r = anon.post("/api/v1/accounts", body.clone()).await;
        r.expect_error(400, "invalid_field");
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
    anon.post(
        "/api/v1/accounts",
        json!({"username": "bob", "password": PASSWORD}),
    )
    .await
    .expect(201);
    anon.post(
        "/api/v1/accounts",
        json!({"username": "BOB", "password": PASSWORD}),
    )
    .await
    .expect_error(409, "username_taken");
}

#[tokio::test]
async fn closed_registration() {
    let server =
        TestServer::start_with(|c| c.registration = natter_server::config::Registration::Closed)
            .await;
    server
        .client()
        .post(
            "/api/v1/accounts",
            json!({"username": "eve", "password": PASSWORD}),
        )
        .await
        .expect_error(403, "registration_closed");
}

#[tokio::test]
async fn wrong_passwords_and_throttling_per_ip() {
    let server = TestServer::start_with(|c| {
        c.limits.login_failures_per_minute = 3;
        c.trust_forwarded_for = true;
    })
    .await;
    server.user("alice").await;
    let anon = server.client();
    // Each attempt names its client IP, which this server trusts.
    let url = server.url("/api/v1/sessions");
    let attempt = |ip: &'static str, password: &'static str| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("x-forwarded-for", ip)
                .json(&json!({"username": "alice", "password": password}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = r.json().await.unwrap();
            (
                status,
                retry,
                body["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    // unknown users and wrong passwords get the same answer
    let r = anon
        .post(
            "/api/v1/sessions",
            json!({"username": "nobody", "password": "whatever1"}),
        )
        .await;
    r.expect_error(401, "invalid_credentials");
    for _ in 0..4 {
        let (status, _, code) = attempt("198.51.100.7", "wrong password").await;
        assert_eq!((status, code.as_str()), (401, "invalid_credentials"));
    }
    let (status, retry, code) = attempt("198.51.100.7", "wrong password").await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    // even the right password waits, from that IP ...
    let (status, _, _) = attempt("198.51.100.7", PASSWORD).await;
    assert_eq!(status, 429);
    // ... but the account is not locked: other IPs log in
    let (status, _, _) = attempt("203.0.113.9", PASSWORD).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn sessions_are_listed_and_revoked() {
    let server = TestServer::start().await;
    let phone = server.user("alice").await;
    let laptop = server.client().log_in("alice", PASSWORD).await;
    let list = phone.get("/api/v1/sessions").await.expect(200)["sessions"].clone();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let other = list.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap();

    phone
        .delete(&format!("/api/v1/sessions/{other}"))
        .await
        .expect(204);
    laptop
        .get("/api/v1/me")
        .await
        .expect_error(401, "unauthenticated");
    phone.get("/api/v1/me").await.expect(200);
    phone
        .delete(&format!("/api/v1/sessions/{other}"))
        .await
        .expect_error(404, "session_not_found");
    // another user's session cannot be revoked
    let bob = server.user("bob").await;
    let bobs = bob.get("/api/v1/sessions").await.body["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    phone
        .delete(&format!("/api/v1/sessions/{bobs}"))
        .await
        .expect_error(404, "session_not_found");
    bob.get("/api/v1/me").await.expect(200);
}

#[tokio::test]
async fn change_password_revokes_other_sessions() {
    let server = TestServer::start().await;
    let a1 = server.user("alice").await;
    let a2 = server.client().log_in("alice", PASSWORD).await;
    a1.put(
        "/api/v1/me/password",
        json!({"current_password": "not it at all", "new_password": "a new password"}),
    )
    .await
    .expect_error(403, "wrong_password");
    a1.put(
        "/api/v1/me/password",
        json!({"current_password": PASSWORD, "new_password": "short"}),
    )
    .await
    .expect_error(400, "invalid_field");
    a1.put(
        "/api/v1/me/password",
        json!({"current_password": PASSWORD, "new_password": "a new password"}),
    )
    .await
    .expect(204);
    a1.get("/api/v1/me").await.expect(200);
    a2.get("/api/v1/me")
        .await
        .expect_error(401, "unauthenticated");
    let anon = server.client();
    anon.post(
        "/api/v1/sessions",
        json!({"username": "alice", "password": PASSWORD}),
    )
    .await
    .expect_error(401, "invalid_credentials");
    anon.log_in("alice", "a new password").await;
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let server = TestServer::start_with(|c| c.accounts.session_ttl_secs = 1).await;
    let alice = server.user("alice").await;
    alice.get("/api/v1/me").await.expect(200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    alice
        .get("/api/v1/me")
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn directory_search() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    server.user("albert").await;
    let bob = server.user("bob").await;
    bob.patch("/api/v1/me", json!({"display_name": "Bob Alvarez"}))
        .await
        .expect(200);
    let r = alice.get("/api/v1/users?q=al").await;
    let names: Vec<_> = r.expect(200)["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["albert", "alice", "bob"]);
    let r = alice.get("/api/v1/users?q=al&limit=1").await;
    assert_eq!(r.expect(200)["users"].as_array().unwrap().len(), 1);
    alice
        .get("/api/v1/users?q=")
        .await
        .expect_error(400, "invalid_field");
    alice
        .get("/api/v1/users")
        .await
        .expect_error(400, "invalid_field");
    server
        .client()
        .get("/api/v1/users?q=al")
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(
        alice.get("/api/v1/users/bob").await.expect(200)["display_name"],
        "Bob Alvarez"
    );
    alice
        .get("/api/v1/users/nobody")
        .await
        .expect_error(404, "user_not_found");
}
