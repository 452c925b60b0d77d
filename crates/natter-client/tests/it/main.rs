//! Integration tests of the SDK against real in-process servers
//! (`natter-testkit`): typed errors, idempotent sends under lost answers
//! and outages, and the event stream across server restarts, blocked
//! WebSockets and application restarts.

mod proxy;
mod rest;
mod send;
mod stream;

use std::time::Duration;

use futures::StreamExt;
use natter_client::{Backoff, Client, Event, EventStream, Transport};
use natter_testkit::{PASSWORD, TestServer};

/// Quick reconnects keep the tests short.
pub fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        multiplier: 2.0,
        jitter: 0.2,
    }
}

/// An SDK client of `base` using `transport`, not logged in.
pub fn sdk(base: &str, transport: Transport) -> Client {
    Client::builder(base)
        .transport(transport)
        .backoff(fast_backoff())
        .build()
        .expect("client")
}

/// Signs `name` up through the SDK and returns a client logged in as them.
pub async fn sdk_user(server: &TestServer, name: &str, transport: Transport) -> Client {
    let c = sdk(&server.url(""), transport);
    c.signup(name, PASSWORD, None).await.expect("sign-up");
    c.login(name, PASSWORD).await.expect("log-in");
    c
}

/// How long a test waits for an expected event.
pub const WAIT: Duration = Duration::from_secs(15);

/// The next item of the stream, failing the test if none comes in time.
pub async fn next(events: &mut EventStream) -> natter_client::Result<Event> {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

/// Reads events until `pred` matches one, returning it and those before.
pub async fn until(
    events: &mut EventStream,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let item = tokio::time::timeout(left, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} in time; saw {seen:#?}"))
            .unwrap_or_else(|| panic!("the stream ended before {what}"));
        let e = item.unwrap_or_else(|e| panic!("stream failed before {what}: {e}"));
        if pred(&e) {
            return (e, seen);
        }
        seen.push(e);
    }
}

/// Bodies of the `message.created` events among `events`.
pub fn bodies(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::MessageCreated(m) => m.message.body.clone(),
            _ => None,
        })
        .collect()
}
