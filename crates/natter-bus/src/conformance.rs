//! The conformance suite: what every [`Bus`] implementation must do. An
//! implementation's test crate runs it with [`bus_conformance_tests!`],
//! giving a [`Harness`] that makes a fresh cluster and joins nodes to it.
//!
//! The checks use only the [`Bus`] trait.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use natter_types::{ConversationId, SessionId, UserId, Username};

use crate::*;

/// Makes clusters for the suite.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    /// A new cluster that shares nothing with any other.
    async fn fresh() -> Option<Self>;
    /// A new node's bus on this cluster. Each call is a separate node (a
    /// separate connection where the implementation has connections).
    async fn node(&self) -> Arc<dyn Bus>;
}

/// How long a notice may take to arrive in a check.
const ARRIVAL: Duration = Duration::from_secs(10);
/// How long a check waits to conclude that a notice does not arrive.
const SILENCE: Duration = Duration::from_millis(300);

async fn next(sub: &mut Subscription) -> Envelope {
    tokio::time::timeout(ARRIVAL, sub.next())
        .await
        .expect("a notice arrives in time")
        .expect("the subscription stays open")
}

async fn nothing(sub: &mut Subscription) {
    if let Ok(Some(e)) = tokio::time::timeout(SILENCE, sub.next()).await {
        panic!("unexpected notice {e:?}");
    }
}

fn name(s: &str) -> Username {
    Username::parse(s).unwrap()
}

/// One of every notice, with every optional part both set and unset.
pub fn every_notice() -> Vec<Notice> {
    let session = SessionId::new();
    let conversation = ConversationId::new();
    let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
    vec![
        Notice::Wake,
        Notice::Presence {
            full: true,
            users: vec![
                NodePresence {
                    user: UserId(1),
                    username: name("alice"),
                    status: Status::Online,
                },
                NodePresence {
                    user: UserId(i64::MAX),
                    username: name("b.o_b-2"),
                    status: Status::Away,
                },
            ],
        },
        Notice::Presence {
            full: false,
            users: vec![NodePresence {
                user: UserId(3),
                username: name("carol"),
                status: Status::Offline,
            }],
        },
        Notice::Presence {
            full: true,
            users: vec![],
        },
        Notice::Typing {
            conversation,
            user: name("alice"),
            active: true,
        },
        Notice::Typing {
            conversation,
            user: name("alice"),
            active: false,
        },
        Notice::Revoke {
            user: UserId(7),
            scope: RevokeScope::One(session),
        },
        Notice::Revoke {
            user: UserId(7),
            scope: RevokeScope::AllBut(Some(session)),
        },
        Notice::Revoke {
            user: UserId(7),
            scope: RevokeScope::AllBut(None),
        },
        Notice::Deliver {
            user: UserId(8),
            session: Some(session),
            item: Ephemeral::SessionRevoked,
        },
        Notice::Deliver {
            user: UserId(8),
            session: None,
            item: Ephemeral::Presence {
                user: name("dave"),
                status: Status::Offline,
                last_seen_at: Some(at),
            },
        },
        Notice::Deliver {
            user: UserId(8),
            session: None,
            item: Ephemeral::Presence {
                user: name("dave"),
                status: Status::Online,
                last_seen_at: None,
            },
        },
        Notice::Deliver {
            user: UserId(8),
            session: None,
            item: Ephemeral::Typing {
                conversation,
                user: name("erin"),
                active: true,
            },
        },
    ]
}

/// Every notice arrives on another node exactly as it was sent, with its
/// origin.
pub async fn every_notice_round_trips<H: Harness>(h: H) {
    let (a, b) = (h.node().await, h.node().await);
    let mut subs = Vec::new();
    for topic in Topic::ALL {
        subs.push((topic, b.subscribe(topic).await.unwrap()));
    }
    let origin = NodeId::random();
    for notice in every_notice() {
        let sent = Envelope {
            origin,
            notice: notice.clone(),
        };
        a.publish(sent.clone()).await.unwrap();
        let (_, sub) = subs.iter_mut().find(|(t, _)| *t == notice.topic()).unwrap();
        assert_eq!(next(sub).await, sent);
    }
}

/// A subscriber sees only its topic.
pub async fn topics_are_separate<H: Harness>(h: H) {
    let (a, b) = (h.node().await, h.node().await);
    let mut typing = b.subscribe(Topic::Typing).await.unwrap();
    let origin = NodeId::random();
    a.publish(Envelope {
        origin,
        notice: Notice::Wake,
    })
    .await
    .unwrap();
    nothing(&mut typing).await;
    let notice = every_notice()
        .into_iter()
        .find(|n| n.topic() == Topic::Typing)
        .unwrap();
    a.publish(Envelope {
        origin,
        notice: notice.clone(),
    })
    .await
    .unwrap();
    assert_eq!(next(&mut typing).await.notice, notice);
}

/// Every subscriber of every node gets each notice once, the publishing
/// node's own included.
pub async fn every_node_gets_each_notice_once<H: Harness>(h: H) {
    let nodes = [h.node().await, h.node().await, h.node().await];
    let mut subs = Vec::new();
    for n in &nodes {
        subs.push(n.subscribe(Topic::Wake).await.unwrap());
    }
    let origin = NodeId::random();
    nodes[0]
        .publish(Envelope {
            origin,
            notice: Notice::Wake,
        })
        .await
        .unwrap();
    for sub in &mut subs {
        assert_eq!(next(sub).await.origin, origin);
        nothing(sub).await;
    }
}

/// A subscription is in place once `subscribe` returns: another node's
/// notice published right after reaches it. Repeated with fresh
/// subscriptions, because a subscription only handed to the network
/// loses this race now and then, not every time.
pub async fn a_new_subscription_hears_the_next_notice<H: Harness>(h: H) {
    let (a, b) = (h.node().await, h.node().await);
    for round in 0..100 {
        let mut sub = b.subscribe(Topic::Wake).await.unwrap();
        let origin = NodeId::random();
        a.publish(Envelope {
            origin,
            notice: Notice::Wake,
        })
        .await
        .unwrap();
        let heard = tokio::time::timeout(ARRIVAL, sub.next()).await;
        assert!(
            matches!(heard, Ok(Some(ref e)) if e.origin == origin),
            "round {round}: the notice published after subscribing was not heard: {heard:?}"
        );
    }
}

/// Notices of one publisher arrive in the order sent.
pub async fn one_publisher_keeps_order<H: Harness>(h: H) {
    let (a, b) = (h.node().await, h.node().await);
    let mut sub = b.subscribe(Topic::Control).await.unwrap();
    let origin = NodeId::random();
    for i in 0..200 {
        a.publish(Envelope {
            origin,
            notice: Notice::Revoke {
                user: UserId(i),
                scope: RevokeScope::AllBut(None),
            },
        })
        .await
        .unwrap();
    }
    for i in 0..200 {
        match next(&mut sub).await.notice {
            Notice::Revoke { user, .. } => assert_eq!(user, UserId(i)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Clusters do not hear each other.
pub async fn clusters_are_separate<H: Harness>(h: H) {
    let other = H::fresh().await.expect("a second cluster");
    let mut sub = other.node().await.subscribe(Topic::Wake).await.unwrap();
    h.node()
        .await
        .publish(Envelope {
            origin: NodeId::random(),
            notice: Notice::Wake,
        })
        .await
        .unwrap();
    nothing(&mut sub).await;
}

/// A connected bus says it is up.
pub async fn reports_health<H: Harness>(h: H) {
    let bus = h.node().await;
    let mut health = bus.health();
    tokio::time::timeout(ARRIVAL, health.wait_for(Health::is_up))
        .await
        .expect("the bus comes up")
        .unwrap();
    assert!(!bus.describe().is_empty());
}

/// Runs the whole suite for a [`Harness`]:
///
/// ```ignore
/// natter_bus::bus_conformance_tests!(MyHarness);
/// ```
#[macro_export]
macro_rules! bus_conformance_tests {
    ($harness:ty) => {
        $crate::bus_conformance_tests!(@each $harness;
            every_notice_round_trips topics_are_separate
            every_node_gets_each_notice_once a_new_subscription_hears_the_next_notice
            one_publisher_keeps_order
            clusters_are_separate reports_health);
    };
    (@each $harness:ty; $($check:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                use $crate::conformance::Harness as _;
                let Some(h) = <$harness>::fresh().await else { return };
                $crate::conformance::$check(h).await;
            }
        )*
    };
}
