//! Sending is idempotent: a message keeps its `client_id` across retries,
//! so a lost acknowledgement or an outage never loses or duplicates it,
//! and errors that retrying cannot fix fail at once.

use std::time::{Duration, Instant};

use natter_client::{Error, HistoryQuery, Options, Outgoing, Transport};
use natter_testkit::TestServer;
use uuid::Uuid;

use crate::proxy::Proxy;
use crate::{fast_backoff, sdk, sdk_user};

async fn count_messages(client: &natter_client::Client, conv: Uuid) -> usize {
    client
        .history(
            conv,
            HistoryQuery {
                limit: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .messages
        .len()
}

#[tokio::test]
async fn a_lost_acknowledgement_is_retried_without_a_duplicate() {
    let server = TestServer::start().await;
    let alice = sdk_user(&server, "alice", Transport::Auto).await;
    sdk_user(&server, "bob", Transport::Auto).await;
    let conv = alice.direct("bob").await.unwrap().id;

    let proxy = Proxy::start(server.addr).await;
    proxy.drop_send_answers(2);
    let flaky = sdk(&proxy.url(), Transport::Auto);
    flaky.set_token(alice.token());
    let sent = flaky.send(conv, "exactly once").await.unwrap();
    assert_eq!(proxy.dropped_answers(), 2, "two answers were lost");
    assert_eq!(sent.attempts, 3);
    assert!(!sent.created, "the first attempt had stored it");
    assert_eq!(sent.message.seq, 1);
    assert_eq!(count_messages(&alice, conv).await, 1);
}

#[tokio::test]
async fn the_same_outgoing_message_is_stored_once() {
    let server = TestServer::start().await;
    let alice = sdk_user(&server, "alice", Transport::Auto).await;
    sdk_user(&server, "bob", Transport::Auto).await;
    let conv = alice.direct("bob").await.unwrap().id;

    let out = Outgoing::new(conv, "hello");
    let first = alice.send_outgoing(&out).await.unwrap();
    assert!(first.created);
    // e.g. after the application restarted without knowing it went through
    let again = alice.send_outgoing(&out).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.message.id, first.message.id);
    assert_eq!(count_messages(&alice, conv).await, 1);

    // a client_id belongs to one conversation
    let other = alice.create_group("G", &[]).await.unwrap().id;
    let moved = Outgoing {
        conversation_id: other,
        ..out
    };
    let e = alice.send_outgoing(&moved).await.unwrap_err();
    assert!(
        matches!(&e, Error::Conflict { code, .. } if code == "client_id_reused"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_send_waits_out_an_outage() {
    let server = TestServer::start().await;
    let alice = sdk_user(&server, "alice", Transport::Auto).await;
    sdk_user(&server, "bob", Transport::Auto).await;
    let conv = alice.direct("bob").await.unwrap().id;

    let proxy = Proxy::start(server.addr).await;
    let flaky = sdk(&proxy.url(), Transport::Auto);
    flaky.set_token(alice.token());
    proxy.set_down(true);
    let sending = tokio::spawn({
        let flaky = flaky.clone();
        async move { flaky.send(conv, "patience").await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!sending.is_finished());
    proxy.set_down(false);
    let sent = tokio::time::timeout(Duration::from_secs(10), sending)
        .await
        .expect("sent once the server is back")
        .unwrap()
        .unwrap();
    assert!(sent.created);
    assert!(sent.attempts > 1);
    assert_eq!(count_messages(&alice, conv).await, 1);
}

#[tokio::test]
async fn retrying_stops_at_the_deadline_and_on_errors_it_cannot_fix() {
    let server = TestServer::start().await;
    let alice = sdk_user(&server, "alice", Transport::Auto).await;
    sdk_user(&server, "bob", Transport::Auto).await;
    let conv = alice.direct("bob").await.unwrap().id;

    let impatient = natter_client::Client::builder("http://127.0.0.1:1")
        .options(Options {
            send_retry_for: Some(Duration::from_millis(600)),
            backoff: fast_backoff(),
            ..Options::default()
        })
        .token(alice.token().unwrap())
        .build()
        .unwrap();
    let start = Instant::now();
    let e = impatient.send(conv, "nowhere").await.unwrap_err();
    assert!(matches!(e, Error::Network { .. }), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(3));

    // not retried: the body is empty
    let start = Instant::now();
    let e = alice.send(conv, "").await.unwrap_err();
    assert!(
        matches!(&e, Error::Invalid { field: Some(f), .. } if f == "body"),
        "{e:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}
