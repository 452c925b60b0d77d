//! The real-time stream: the same scenarios over WebSocket and long-poll,
//! resumption, slow consumers and bad input.

use std::collections::BTreeMap;
use std::time::Duration;

use natter_testkit::stream::{RawSocket, Realtime, Transport};
use natter_testkit::{TestServer, json};
use serde_json::Value;

macro_rules! both_transports {
    ($($scenario:ident),* $(,)?) => {
        mod over_websocket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(natter_testkit::stream::Transport::WebSocket).await;
                }
            )*
        }
        mod over_long_poll {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(natter_testkit::stream::Transport::LongPoll).await;
                }
            )*
        }
    };
}

both_transports!(
    two_users_chat,
    two_devices_of_one_user,
    group_of_three,
    resume_after_a_dropped_connection
);

fn is_message(e: &Value, body: &str) -> bool {
    e["event"] == "message.created" && e["data"]["message"]["body"] == body
}

/// Alice and Bob: messages both ways, delivery and read receipts, typing
/// and presence.
async fn two_users_chat(t: Transport) {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let conv = alice.direct("bob").await;
    let mut a = Realtime::connect(&alice, t, None).await;
    let mut b = Realtime::connect(&bob, t, None).await;

    // bob sees alice online (she is a direct peer)
    if t == Transport::WebSocket {
        a.expect("bob online", |e| {
            e["event"] == "presence"
                && e["data"]["user"] == "bob"
                && e["data"]["status"] == "online"
        })
        .await;
    }

    let sent = a.send(&conv, "a1", "hello bob").await;
    assert_eq!(sent["seq"], 1);
    let got = b
        .expect("alice's message", |e| is_message(e, "hello bob"))
        .await;
    assert_eq!(got["data"]["message"]["id"], sent["id"]);
    assert!(got["cursor"].is_string(), "durable events carry a cursor");
    // bob's device received it: alice sees it delivered, then read
    let d = a.expect_event("receipt.delivered").await;
    assert_eq!(
        (d["data"]["user"].as_str(), d["data"]["seq"].as_i64()),
        (Some("bob"), Some(1))
    );
    let r = b
        .command(json!({"type": "read", "conversation_id": conv, "seq": 1}))
        .await;
    assert_eq!(r["data"]["read_seq"], 1);
    let r = a.expect_event("receipt.read").await;
    assert_eq!(
        (r["data"]["user"].as_str(), r["data"]["seq"].as_i64()),
        (Some("bob"), Some(1))
    );

    // typing starts and stops; the typist does not see their own typing
    let r = b
        .command(json!({"type": "typing", "conversation_id": conv, "active": true}))
        .await;
    assert_eq!(r["ok"], true);
    let ty = a.expect_event("typing").await;
    assert_eq!(
        (ty["data"]["user"].as_str(), ty["data"]["active"].as_bool()),
        (Some("bob"), Some(true))
    );
    assert!(ty["data"]["expires_in_ms"].as_u64().unwrap() > 0);
    assert!(ty["cursor"].is_null(), "typing is ephemeral");
    b.command(json!({"type": "typing", "conversation_id": conv, "active": false}))
        .await;
    let ty = a.expect_event("typing").await;
    assert_eq!(ty["data"]["active"], false);

    // bob answers; alice gets it, and bob's own stream shows his message
    b.send(&conv, "b1", "hi alice").await;
    a.expect("bob's reply", |e| is_message(e, "hi alice")).await;
    b.expect("own message echoed", |e| is_message(e, "hi alice"))
        .await;

    // away, then offline with a last-seen time when bob leaves
    b.command(json!({"type": "presence", "status": "away"}))
        .await;
    a.expect("bob away", |e| {
        e["event"] == "presence" && e["data"]["status"] == "away"
    })
    .await;
    if t == Transport::WebSocket {
        b.close().await;
        let off = a
            .expect("bob offline", |e| {
                e["event"] == "presence" && e["data"]["status"] == "offline"
            })
            .await;
        assert!(off["data"]["last_seen_at"].is_string());
    }

    // commands have errors like REST
    let r = a.command(json!({"type": "send", "conversation_id": uuid::Uuid::now_v7(), "client_id": "x", "body": "void"})).await;
    assert_eq!(
        (r["ok"].as_bool(), r["error"]["code"].as_str()),
        (Some(false), Some("conversation_not_found"))
    );
    let r = a.command(json!({"type": "ping"})).await;
    assert_eq!(r["ok"], true);
}

/// Every session of a user gets the user's events, including messages the
/// user sent from another device.
async fn two_devices_of_one_user(t: Transport) {
    let server = TestServer::start().await;
    let alice_phone = server.user("alice").await;
    let alice_laptop = server
        .client()
        .log_in("alice", natter_testkit::PASSWORD)
        .await;
    let bob = server.user("bob").await;
    let conv = bob.direct("alice").await;
    let mut phone = Realtime::connect(&alice_phone, t, None).await;
    let mut laptop = Realtime::connect(&alice_laptop, t, None).await;
    bob.say(&conv, "b1", "to both devices").await;
    phone
        .expect("on the phone", |e| is_message(e, "to both devices"))
        .await;
    laptop
        .expect("on the laptop", |e| is_message(e, "to both devices"))
        .await;
    phone.send(&conv, "p1", "sent from the phone").await;
    laptop
        .expect("own message from the phone", |e| {
            is_message(e, "sent from the phone")
        })
        .await;
    phone
        .expect("own message, on the sending device too", |e| {
            is_message(e, "sent from the phone")
        })
        .await;
    // a retry from the other device is the same message, not a new one
    let again = laptop.send(&conv, "p1", "sent from the phone").await;
    assert_eq!(again["seq"], 2);
}

async fn group_of_three(t: Transport) {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    let mut b = Realtime::connect(&bob, t, None).await;
    let mut c = Realtime::connect(&carol, t, None).await;
    let mut d = Realtime::connect(&dave, t, None).await;
    let g = alice.group("Trio", &["bob", "carol"]).await;
    let created = b.expect_event("conversation.created").await;
    assert_eq!(created["data"]["conversation_id"], g.as_str());
    assert_eq!(created["data"]["title"], "Trio");
    c.expect_event("conversation.created").await;

    alice.say(&g, "a1", "hello group").await;
    b.expect("group message", |e| is_message(e, "hello group"))
        .await;
    c.expect("group message", |e| is_message(e, "hello group"))
        .await;
    c.send(&g, "c1", "hi all").await;
    b.expect("carol's message", |e| is_message(e, "hi all"))
        .await;

    alice
        .patch(
            &format!("/api/v1/conversations/{g}"),
            json!({"title": "Quartet"}),
        )
        .await
        .expect(200);
    let renamed = b.expect_event("conversation.renamed").await;
    assert_eq!(renamed["data"]["title"], "Quartet");
    alice
        .put(
            &format!("/api/v1/conversations/{g}/members/dave"),
            json!({}),
        )
        .await
        .expect(201);
    let added = b.expect_event("member.added").await;
    assert_eq!(
        (
            added["data"]["user"].as_str(),
            added["data"]["role"].as_str()
        ),
        (Some("dave"), Some("member"))
    );
    d.expect_event("member.added").await;
    alice
        .delete(&format!("/api/v1/conversations/{g}/members/carol"))
        .await
        .expect(204);
    let removed = c.expect_event("member.removed").await;
    assert_eq!(
        removed["data"]["user"], "carol",
        "the removed member is told"
    );
    b.expect_event("member.removed").await;
    alice.say(&g, "a2", "carol is gone").await;
    d.expect("new member gets messages", |e| {
        is_message(e, "carol is gone")
    })
    .await;
    assert!(
        c.try_next_event(Duration::from_millis(700))
            .await
            .is_none_or(|e| e["event"] != "message.created"),
        "a removed member gets no more messages"
    );
    // nothing of the group reached outsiders
    let eve = server.user("eve").await;
    let mut e = Realtime::connect(&eve, t, None).await;
    alice.say(&g, "a3", "secret").await;
    while let Some(ev) = e.try_next_event(Duration::from_millis(700)).await {
        assert_eq!(ev["event"], "presence", "only her own presence: {ev}");
    }
}

/// A client that reconnects with its last cursor gets what it missed, in
/// order, exactly once, then live events.
async fn resume_after_a_dropped_connection(t: Transport) {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let conv = alice.direct("bob").await;
    let mut b = Realtime::connect(&bob, t, None).await;
    alice.say(&conv, "m1", "one").await;
    b.expect("first", |e| is_message(e, "one")).await;
    let cursor = b.cursor();
    b.close().await;
    for i in 2..=6 {
        alice.say(&conv, &format!("m{i}"), &format!("n{i}")).await;
    }
    alice
        .delete(&format!("/api/v1/conversations/{conv}/messages/2"))
        .await
        .expect(200);
    let mut b = Realtime::connect(&bob, t, cursor).await;
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let e = b.next_event().await;
        if e["event"].as_str().unwrap().starts_with("message.") {
            seen.push((
                e["event"].as_str().unwrap().to_owned(),
                e["data"]["message"]["seq"].as_i64(),
            ));
        }
    }
    assert_eq!(
        seen,
        [
            ("message.created".to_owned(), Some(2)),
            ("message.created".to_owned(), Some(3)),
            ("message.created".to_owned(), Some(4)),
            ("message.created".to_owned(), Some(5)),
            ("message.created".to_owned(), Some(6)),
            ("message.deleted".to_owned(), Some(2)),
        ]
    );
    alice.say(&conv, "m7", "live again").await;
    let next = b
        .expect("live after catch-up", |e| e["event"] == "message.created")
        .await;
    assert_eq!(
        next["data"]["message"]["body"], "live again",
        "no event twice"
    );
}

/// A sender keeps sending (retrying with the same `client_id` until
/// acknowledged) while the server restarts twice; receivers on both
/// transports reconnect with their cursors. Each ends with every
/// acknowledged message exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_across_restarts_under_a_send_loop() {
    const MESSAGES: usize = 150;
    let mut server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let conv = alice.direct("bob").await;
    let mut ws = Realtime::connect(&bob, Transport::WebSocket, None).await;
    let mut lp = Realtime::connect(&bob, Transport::LongPoll, None).await;

    let sender = {
        let path = format!("/api/v1/conversations/{conv}/messages");
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..MESSAGES {
                loop {
                    let r = alice
                        .try_post(
                            &path,
                            json!({"client_id": format!("L{i}"), "body": format!("load {i}")}),
                        )
                        .await;
                    match r {
                        Some(r) if r.status == 201 || r.status == 200 => {
                            acked.push(r.body["message"]["seq"].as_i64().unwrap());
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        })
    };

    let mut got: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let message_seq = |e: &Value| e["data"]["message"]["seq"].as_i64().unwrap();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (name, rt) in [("ws", &mut ws), ("poll", &mut lp)] {
            let e = rt
                .expect("a message", |e| e["event"] == "message.created")
                .await;
            got.entry(name).or_default().push(message_seq(&e));
        }
        let (ws_cursor, lp_cursor) = (ws.cursor(), lp.cursor());
        ws.close().await;
        lp.close().await;
        server = server.restart().await;
        ws = Realtime::connect(&bob, Transport::WebSocket, ws_cursor).await;
        lp = Realtime::connect(&bob, Transport::LongPoll, lp_cursor).await;
    }
    let acked = sender.await.unwrap();
    assert_eq!(
        acked,
        (1..=MESSAGES as i64).collect::<Vec<_>>(),
        "one message per client_id"
    );
    for (name, rt) in [("ws", &mut ws), ("poll", &mut lp)] {
        let seqs = got.entry(name).or_default();
        while seqs.len() < acked.len() {
            let e = rt
                .expect("a message", |e| e["event"] == "message.created")
                .await;
            seqs.push(message_seq(&e));
        }
        assert_eq!(
            seqs, &acked,
            "{name}: every acknowledged message once, in order"
        );
        let extra = rt.try_next_event(Duration::from_millis(500)).await;
        assert!(
            extra.is_none_or(|e| e["event"] != "message.created"),
            "nothing twice"
        );
    }
}

/// A client that stops reading is disconnected with 4008 once its queue
/// is full; others are unaffected, and it resumes without loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_consumer_is_cut_off_and_resumes() {
    let server = TestServer::start_with(|c| c.stream.queue = 16).await;
    // Big messages, so that the socket buffers fill and the queue behind
    // them overflows (loopback buffers hold several megabytes).
    let big = "x".repeat(60 * 1024);
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let g = alice.group("busy", &["bob", "carol"]).await;

    let mut slow = RawSocket::open(&server.client().base, None).await.unwrap();
    slow.send_json(json!({"type": "auth", "token": bob.token.clone().unwrap()}))
        .await;
    let hello = slow.recv().await.unwrap();
    let start = hello["cursor"].as_str().unwrap().to_owned();
    let mut fast = Realtime::connect(&carol, Transport::WebSocket, None).await;
    // carol reads each message as it comes (in lockstep, so that her
    // queue never holds a burst); bob reads nothing, so his TCP buffers
    // fill, then his queue, and the server cuts him off
    for i in 0..300 {
        alice.say(&g, &format!("s{i}"), &big).await;
        let e = fast
            .expect("message", |e| e["event"] == "message.created")
            .await;
        assert_eq!(
            e["data"]["message"]["seq"],
            i + 1,
            "the fast reader is unaffected"
        );
    }
    let mut code = None;
    loop {
        match slow.recv().await {
            Ok(_) => continue,
            Err(c) => {
                code = code.or(c);
                break;
            }
        }
    }
    assert_eq!(code, Some(4008), "closed as a slow consumer");
    // resuming from the start cursor yields all 300, once each, in order
    let mut again = Realtime::connect(&bob, Transport::WebSocket, Some(start)).await;
    for i in 0..300 {
        let e = again
            .expect("message", |e| e["event"] == "message.created")
            .await;
        assert_eq!(e["data"]["message"]["seq"], i + 1);
    }
}

#[tokio::test]
async fn bad_frames_get_documented_errors() {
    let server = TestServer::start_with(|c| c.limits.max_body_bytes = 1024).await;
    let alice = server.user("alice").await;
    let base = server.client().base;
    let token = alice.token.clone().unwrap();

    // a command before auth: reply error, close 4001
    let mut s = RawSocket::open(&base, None).await.unwrap();
    s.send_json(json!({"type": "ping", "ref": "p"})).await;
    let r = s.recv().await.unwrap();
    assert_eq!(
        (r["ref"].as_str(), r["error"]["code"].as_str()),
        (Some("p"), Some("unauthenticated"))
    );
    assert_eq!(s.recv().await, Err(Some(4001)));
    // a bad token
    let mut s = RawSocket::open(&base, None).await.unwrap();
    s.send_json(json!({"type": "auth", "token": "nope"})).await;
    assert_eq!(s.recv().await.unwrap()["error"]["code"], "unauthenticated");
    assert_eq!(s.recv().await, Err(Some(4001)));
    // a bad cursor
    let mut s = RawSocket::open(&base, None).await.unwrap();
    s.send_json(json!({"type": "auth", "token": token, "cursor": "yesterday"}))
        .await;
    assert_eq!(s.recv().await.unwrap()["error"]["field"], "cursor");
    assert_eq!(s.recv().await, Err(Some(4001)));

    // after auth, bad frames get errors and the connection stays usable
    let mut s = RawSocket::open(&base, None).await.unwrap();
    s.send_json(json!({"type": "auth", "token": token})).await;
    assert_eq!(s.recv_reply().await.unwrap()["type"], "hello");
    s.send_text("{not json").await;
    let e = s.recv_reply().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["error"]["code"].as_str()),
        (Some("error"), Some("malformed_json"))
    );
    s.send_json(json!({"type": "shout", "ref": "u"})).await;
    let e = s.recv_reply().await.unwrap();
    assert_eq!(
        (e["ref"].as_str(), e["error"]["code"].as_str()),
        (Some("u"), Some("unknown_type"))
    );
    s.send_json(json!({"type": "read", "ref": "f", "conversation_id": "nope", "seq": 1}))
        .await;
    let e = s.recv_reply().await.unwrap();
    assert_eq!(
        (e["error"]["code"].as_str(), e["error"]["field"].as_str()),
        (Some("invalid_field"), Some("conversation_id"))
    );
    s.send_json(json!({"type": "auth", "ref": "again", "token": token}))
        .await;
    assert_eq!(
        s.recv_reply().await.unwrap()["error"]["code"],
        "already_authenticated"
    );
    s.send_json(json!({"type": "ping", "ref": "alive"})).await;
    let e = s.recv_reply().await.unwrap();
    assert_eq!(
        (e["ref"].as_str(), e["ok"].as_bool()),
        (Some("alive"), Some(true))
    );
    // an oversized frame closes with 1009
    s.send_text(&format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(64 * 1024)
    ))
    .await;
    let closed = loop {
        if let Err(code) = s.recv().await {
            break code;
        }
    };
    assert_eq!(closed, Some(1009));

    // a foreign origin is refused before the upgrade; the server's own is fine
    let err = RawSocket::open(&base, Some("https://evil.example"))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("403"), "{err}");
    let own = format!("http://{}", server.addr);
    assert!(RawSocket::open(&base, Some(&own)).await.is_ok());

    // long-poll: bad cursor, bad timeout, bad command, no token
    alice
        .get("/api/v1/events?cursor=zzz")
        .await
        .expect_error(400, "invalid_field");
    alice
        .get("/api/v1/events?cursor=0-0&timeout=600")
        .await
        .expect_error(400, "invalid_field");
    let r = alice
        .post("/api/v1/events", json!({"type": "shout", "ref": "x"}))
        .await;
    assert_eq!(r.expect(200)["error"]["code"], "unknown_type");
    server
        .client()
        .get("/api/v1/events")
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn expired_and_revoked_sessions() {
    let server = TestServer::start_with(|c| c.accounts.session_ttl_secs = 1).await;
    let alice = server.user("alice").await;
    let token = alice.token.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut s = RawSocket::open(&server.client().base, None).await.unwrap();
    s.send_json(json!({"type": "auth", "token": token})).await;
    assert_eq!(s.recv().await.unwrap()["error"]["code"], "unauthenticated");
    assert_eq!(s.recv().await, Err(Some(4001)));

    let server = TestServer::start().await;
    let phone = server.user("alice").await;
    let laptop = server
        .client()
        .log_in("alice", natter_testkit::PASSWORD)
        .await;
    let mut s = RawSocket::open(&server.client().base, None).await.unwrap();
    s.send_json(json!({"type": "auth", "token": laptop.token.clone().unwrap()}))
        .await;
    assert_eq!(s.recv().await.unwrap()["type"], "hello");
    // the phone changes the password: the laptop's stream is told and closed
    phone
        .put(
            "/api/v1/me/password",
            json!({"current_password": natter_testkit::PASSWORD, "new_password": "another secret"}),
        )
        .await
        .expect(204);
    let mut revoked = false;
    let code = loop {
        match s.recv().await {
            Ok(f) => revoked |= f["event"] == "session.revoked",
            Err(code) => break code,
        }
    };
    assert!(revoked);
    assert_eq!(code, Some(4003));
}

/// The server pings; a client that answers nothing for three heartbeats is
/// closed with 4009.
#[tokio::test]
async fn silent_clients_time_out() {
    let server = TestServer::start_with(|c| c.stream.heartbeat_secs = 1).await;
    let alice = server.user("alice").await;
    let mut s = RawSocket::open(&server.client().base, None).await.unwrap();
    s.send_json(json!({"type": "auth", "token": alice.token.clone().unwrap()}))
        .await;
    assert_eq!(s.recv_reply().await.unwrap()["type"], "hello");
    // not reading means not answering pings
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let code = loop {
        match s.recv().await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(4009));
}

/// A connection that does not authenticate in time is closed with 4001.
#[tokio::test]
async fn unauthenticated_connections_time_out() {
    let server = TestServer::start_with(|c| c.stream.auth_timeout_secs = 1).await;
    let mut s = RawSocket::open(&server.client().base, None).await.unwrap();
    assert_eq!(s.recv().await, Err(Some(4001)));
}
