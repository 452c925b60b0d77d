//! The event stream survives what real networks do: a server restart
//! (WebSocket and long-poll alike resume without loss or repetition), a
//! proxy that refuses or keeps cutting WebSockets (fallback to
//! long-polling), an application restart (resume from a saved cursor),
//! and it ends, with a typed error, only when the session is gone.

use std::time::Duration;

use futures::StreamExt;
use natter_client::{Error, Event, Transport};
use natter_testkit::TestServer;

use crate::proxy::Proxy;
use crate::{bodies, next, sdk, sdk_user, until};

fn is_connected(t: Transport) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Connected(c) if c.transport == t)
}

/// Reads events until the `message.created` bodies seen reach `want`,
/// and returns everything read.
async fn collect_messages(events: &mut natter_client::EventStream, want: usize) -> Vec<Event> {
    let mut seen = Vec::new();
    while bodies(&seen).len() < want {
        seen.push(
            next(events)
                .await
                .unwrap_or_else(|e| panic!("{e}; saw {seen:#?}")),
        );
    }
    seen
}

/// Nothing more than what was seen arrives within a short while.
async fn no_more_messages(events: &mut natter_client::EventStream) {
    let quiet = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            match events.next().await {
                Some(Ok(Event::MessageCreated(m))) => return m,
                Some(_) => continue,
                None => std::future::pending().await,
            }
        }
    })
    .await;
    if let Ok(m) = quiet {
        panic!("an unexpected (duplicate?) message arrived: {m:?}");
    }
}

async fn resume_across_restart(transport: Transport) {
    let server = TestServer::start().await;
    let alice = sdk_user(&server, "alice", transport).await;
    let bob = server.user("bob").await;
    let conv = bob.direct("alice").await;

    let mut events = alice.events();
    let (first, _) = until(&mut events, "connected", is_connected(transport)).await;
    let Event::Connected(c) = first else {
        unreachable!()
    };
    assert!(!c.resumed);

    for i in 1..=3 {
        bob.say(&conv, &format!("b{i}"), &format!("m{i}")).await;
    }
    let mut seen = collect_messages(&mut events, 3).await;

    let server = server.restart().await;
    // sent while alice is still reconnecting
    for i in 4..=6 {
        bob.say(&conv, &format!("b{i}"), &format!("m{i}")).await;
    }
    seen.extend(collect_messages(&mut events, 3).await);
    assert_eq!(bodies(&seen), ["m1", "m2", "m3", "m4", "m5", "m6"]);
    if transport == Transport::WebSocket {
        // (a long-poll may fall between two polls and notice nothing)
        assert!(
            seen.iter().any(|e| matches!(e, Event::Disconnected(_))),
            "the restart was noticed: {seen:#?}"
        );
        assert!(
            seen.iter()
                .any(|e| matches!(e, Event::Connected(c) if c.resumed && c.transport == transport)),
            "and the stream resumed: {seen:#?}"
        );
    }
    // the cursor is the last durable event handed out
    let last = seen.iter().rev().find_map(|e| e.cursor()).unwrap();
    assert_eq!(events.cursor(), Some(last));
    no_more_messages(&mut events).await;
    drop(server);
}

#[tokio::test]
async fn websocket_resumes_across_a_server_restart_without_loss() {
    resume_across_restart(Transport::WebSocket).await;
}

#[tokio::test]
async fn long_poll_resumes_across_a_server_restart_without_loss() {
    resume_across_restart(Transport::LongPoll).await;
}

#[tokio::test]
async fn auto_falls_back_to_long_poll_when_websocket_is_refused() {
    let server = TestServer::start().await;
    sdk_user(&server, "alice", Transport::Auto).await;
    let proxy = Proxy::start(server.addr).await;
    proxy.refuse_websocket(true);
    let alice = natter_client::Client::builder(&proxy.url())
        .options(natter_client::Options {
            backoff: crate::fast_backoff(),
            retry_websocket_after: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
        .unwrap();
    alice
        .login("alice", natter_testkit::PASSWORD)
        .await
        .unwrap();
    let bob = server.user("bob").await;
    let conv = bob.direct("alice").await;

    let mut events = alice.events();
    let (_, before) = until(
        &mut events,
        "a long-poll connection",
        is_connected(Transport::LongPoll),
    )
    .await;
    assert!(
        before.iter().any(
            |e| matches!(e, Event::Disconnected(d) if d.reason.contains("403") && d.reason.contains("falling back"))
        ),
        "{before:#?}"
    );
    assert_eq!(proxy.websocket_attempts(), 1, "refused once is enough");
    bob.say(&conv, "b1", "through long-poll").await;
    let mut seen = collect_messages(&mut events, 1).await;
    assert_eq!(bodies(&seen), ["through long-poll"]);

    // once the path carries WebSocket again, the stream moves back to it
    proxy.refuse_websocket(false);
    let (_, more) = until(
        &mut events,
        "a WebSocket again",
        is_connected(Transport::WebSocket),
    )
    .await;
    seen.extend(more);
    bob.say(&conv, "b2", "through the WebSocket").await;
    seen.extend(collect_messages(&mut events, 1).await);
    assert_eq!(
        bodies(&seen),
        ["through long-poll", "through the WebSocket"]
    );
    no_more_messages(&mut events).await;
}

#[tokio::test]
async fn auto_falls_back_when_websockets_keep_breaking() {
    let server = TestServer::start().await;
    sdk_user(&server, "alice", Transport::Auto).await;
    let proxy = Proxy::start(server.addr).await;
    proxy.cut_websocket_after(Some(Duration::from_millis(300)));
    let alice = sdk(&proxy.url(), Transport::Auto);
    alice
        .login("alice", natter_testkit::PASSWORD)
        .await
        .unwrap();
    let bob = server.user("bob").await;
    let conv = bob.direct("alice").await;

    let mut events = alice.events();
    until(
        &mut events,
        "a WebSocket",
        is_connected(Transport::WebSocket),
    )
    .await;
    bob.say(&conv, "b1", "while it flaps").await;
    let (_, seen) = until(
        &mut events,
        "a long-poll connection",
        is_connected(Transport::LongPoll),
    )
    .await;
    assert_eq!(
        proxy.websocket_attempts(),
        3,
        "three failures, then fallback"
    );
    bob.say(&conv, "b2", "after the fallback").await;
    let mut all = seen;
    all.extend(collect_messages(&mut events, if bodies(&all).is_empty() { 2 } else { 1 }).await);
    assert_eq!(bodies(&all), ["while it flaps", "after the fallback"]);
    no_more_messages(&mut events).await;
}

#[tokio::test]
async fn a_saved_cursor_resumes_after_the_application_restarts() {
    let server = TestServer::start().await;
    let alice = sdk_user(&server, "alice", Transport::WebSocket).await;
    let bob = server.user("bob").await;
    let conv = bob.direct("alice").await;

    let mut events = alice.events();
    until(&mut events, "connected", is_connected(Transport::WebSocket)).await;
    bob.say(&conv, "b1", "one").await;
    bob.say(&conv, "b2", "two").await;
    let (m2, _) = until(
        &mut events,
        "two",
        |e| matches!(e, Event::MessageCreated(m) if m.message.body.as_deref() == Some("two")),
    )
    .await;
    let saved = events.cursor().cloned().expect("a cursor");
    assert_eq!(Some(&saved), m2.cursor());
    drop(events);

    bob.say(&conv, "b3", "three").await;
    bob.say(&conv, "b4", "four").await;
    for transport in [Transport::WebSocket, Transport::LongPoll] {
        let again = sdk(&server.url(""), transport);
        again.set_token(alice.token());
        let mut events = again.events_from(Some(saved.clone()));
        let (c, _) = until(&mut events, "connected", is_connected(transport)).await;
        assert!(matches!(c, Event::Connected(c) if c.resumed && c.cursor == saved));
        let seen = collect_messages(&mut events, 2).await;
        assert_eq!(bodies(&seen), ["three", "four"], "{transport}");
    }
}

#[tokio::test]
async fn a_revoked_session_ends_the_stream_with_a_typed_error() {
    let server = TestServer::start().await;
    for transport in [Transport::WebSocket, Transport::LongPoll] {
        let name = format!("u{}", transport.to_string().replace('-', ""));
        let alice = sdk_user(&server, &name, transport).await;
        let mut events = alice.events();
        until(&mut events, "connected", is_connected(transport)).await;
        alice.clone().logout().await.unwrap();
        let end = loop {
            match next(&mut events).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(end, Error::Unauthenticated { .. }),
            "{transport}: {end:?}"
        );
        assert!(events.next().await.is_none(), "the stream ends");
    }

    let stranger = sdk(&server.url(""), Transport::WebSocket);
    stranger.set_token(Some("not-a-token".into()));
    let mut events = stranger.events();
    let e = next(&mut events).await.unwrap_err();
    assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");

    let nobody = sdk(&server.url(""), Transport::Auto);
    let e = next(&mut nobody.events()).await.unwrap_err();
    assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");
}
