//! Health follows the connection, and subscriptions survive a restart of
//! the NATS server without being made again.

use std::time::Duration;

use futures::StreamExt;
use natter_bus::{Bus, Envelope, Health, NodeId, Notice, Topic};
use natter_bus_nats::NatsBus;

use crate::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_subscriptions_survive_a_server_restart() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let a = NatsBus::connect(&server.url(), Duration::from_secs(10))
        .await
        .unwrap();
    let b = NatsBus::connect(&server.url(), Duration::from_secs(10))
        .await
        .unwrap();
    let mut health = a.health();
    assert!(health.borrow_and_update().is_up());
    let mut sub = b.subscribe(Topic::Wake).await.unwrap();

    server.stop();
    tokio::time::timeout(Duration::from_secs(30), health.wait_for(|h| !h.is_up()))
        .await
        .expect("the loss is noticed")
        .unwrap();
    let wake = Envelope {
        origin: NodeId::random(),
        notice: Notice::Wake,
    };
    assert!(
        a.publish(wake.clone()).await.is_err(),
        "publishing while down fails fast instead of queueing"
    );

    server.restart();
    tokio::time::timeout(Duration::from_secs(10), health.wait_for(Health::is_up))
        .await
        .expect("reconnects on its own")
        .unwrap();
    let mut b_health = b.health();
    tokio::time::timeout(Duration::from_secs(10), b_health.wait_for(Health::is_up))
        .await
        .expect("the subscriber reconnects too")
        .unwrap();
    // The subscriber's re-subscription may land just after its reconnect
    // is reported; a notice then may be lost (at most once), so publish
    // until one arrives.
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            a.publish(wake.clone()).await.unwrap();
            if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                return e;
            }
        }
    })
    .await
    .expect("the old subscription receives again");
    assert_eq!(got, wake);
}

#[tokio::test]
async fn bad_urls_are_refused() {
    assert!(
        NatsBus::connect("nats://127.0.0.1:1?prefix=a.b", Duration::ZERO)
            .await
            .is_err()
    );
    assert!(NatsBus::connect("::::", Duration::ZERO).await.is_err());
}

#[tokio::test]
async fn prefixes_keep_clusters_apart_on_one_server() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let one = NatsBus::connect(
        &format!("{}?prefix=one", server.url()),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let two = NatsBus::connect(
        &format!("{}?prefix=two", server.url()),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut heard_by_two = two.subscribe(Topic::Wake).await.unwrap();
    let mut heard_by_one = one.subscribe(Topic::Wake).await.unwrap();
    let wake = Envelope {
        origin: NodeId::random(),
        notice: Notice::Wake,
    };
    one.publish(wake.clone()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), heard_by_one.next()).await;
    assert_eq!(got.unwrap(), Some(wake));
    let leaked = tokio::time::timeout(Duration::from_millis(300), heard_by_two.next()).await;
    assert!(leaked.is_err(), "another prefix hears nothing");
}
