//! The NATS implementation of Natter's cluster [`Bus`]: each topic is a
//! core NATS subject `<prefix>.<topic>` (at most once, no server-side
//! storage; the store of record is PostgreSQL), notices are JSON
//! ([`codec`]), and the `async-nats` client reconnects by itself and
//! re-subscribes. Its connection events drive the bus health that `/readyz`
//! reports and that makes the hub poll the store more often while notices
//! may be lost.

pub mod codec;

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use natter_bus::{Bus, BusError, Envelope, Health, Subscription, Topic};
use tokio::sync::watch;

/// The subject prefix unless the URL names another (see [`NatsBus::connect`]).
pub const DEFAULT_PREFIX: &str = "natter";
/// Longest wait between reconnection attempts: a returning server is found
/// within about this long.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// A publish that cannot be handed to the client this fast is dropped:
/// notices are hints, and a stale one is worth nothing.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a new subscription waits for the server to confirm it (see
/// [`NatsBus::confirm`]); after that it fails, and the caller tries again.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// A node's connection to the NATS servers of its cluster.
pub struct NatsBus {
    client: async_nats::Client,
    prefix: String,
    health: watch::Sender<Health>,
    servers: String,
}

impl NatsBus {
    /// Connects to `url`: `nats://host:port`, several separated by commas
    /// for a NATS cluster, and optionally `?prefix=NAME` to keep several
    /// Natter clusters apart on one NATS server (default `natter`).
    ///
    /// Returns once the first connection is made or `initial` has passed;
    /// either way the client keeps reconnecting on its own, so a node can
    /// start while NATS is down and reports that in its health meanwhile.
    pub async fn connect(url: &str, initial: Duration) -> Result<Self, BusError> {
        let (servers, prefix) = match url.split_once("?prefix=") {
            Some((s, p)) => (s.to_owned(), p.to_owned()),
            None => (url.to_owned(), DEFAULT_PREFIX.to_owned()),
        };
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(BusError::Other(format!(
                "bus prefix {prefix:?} must be letters, digits, '-' or '_'"
            )));
        }
        let addrs: Vec<async_nats::ServerAddr> = servers
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| BusError::Other(format!("bad NATS URL {servers:?}: {e}")))?;
        let health = watch::Sender::new(Health::Down("connecting".into()));
        let events = health.clone();
        let client = async_nats::ConnectOptions::new()
            .name("natter")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                (Duration::from_millis(50) * attempt.min(10) as u32).min(MAX_RECONNECT_DELAY)
            })
            .ping_interval(Duration::from_secs(5))
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("bus connected");
                            events.send_replace(Health::Up);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("bus disconnected; reconnecting");
                            events.send_replace(Health::Down("disconnected from NATS".into()));
                        }
                        async_nats::Event::Closed => {
                            events.send_replace(Health::Down("connection closed".into()));
                        }
                        other => tracing::debug!(event = %other, "bus event"),
                    }
                }
            })
            .connect(addrs)
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let mut watch = health.subscribe();
        // The first connection is reported by the event callback.
        let _ = tokio::time::timeout(initial, watch.wait_for(Health::is_up)).await;
        Ok(Self {
            client,
            prefix,
            health,
            servers,
        })
    }

    fn subject(&self, topic: Topic) -> String {
        format!("{}.{}", self.prefix, topic.name())
    }

    /// Returns once the server has read every operation this client sent
    /// before it, subscriptions included.
    ///
    /// `Client::flush` is not that: it only hands the client's buffer to
    /// the socket, and the server reads each connection on its own, so
    /// another node's publish could still overtake a subscription flushed
    /// a moment earlier. The server handles one connection's operations in
    /// order, so a probe published to a subject only this client listens
    /// on comes back after all of them.
    async fn confirm(&self) -> Result<(), BusError> {
        let unavailable = |e: &dyn std::fmt::Display| BusError::Unavailable(e.to_string());
        let probe = self.client.new_inbox();
        let mut echo = self
            .client
            .subscribe(probe.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        self.client
            .publish(probe, Default::default())
            .await
            .map_err(|e| unavailable(&e))?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, echo.next()).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(BusError::Unavailable(
                "the NATS connection closed before confirming a subscription".into(),
            )),
            Err(_) => Err(BusError::Unavailable(
                "NATS did not confirm a subscription in time".into(),
            )),
        }
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, envelope: Envelope) -> Result<(), BusError> {
        if !matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        ) {
            // Queued notices would arrive stale after a reconnection; the
            // periodic reads of the store cover what they would have said.
            return Err(BusError::Unavailable("not connected to NATS".into()));
        }
        let subject = self.subject(envelope.notice.topic());
        let payload = codec::encode(&envelope);
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.client.publish(subject, payload.into()),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BusError::Unavailable(e.to_string())),
            Err(_) => Err(BusError::Unavailable("publish timed out".into())),
        }
    }

    async fn subscribe(&self, topic: Topic) -> Result<Subscription, BusError> {
        let sub = self
            .client
            .subscribe(self.subject(topic))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        // While disconnected the client subscribes again on reconnection
        // by itself; the notices published meanwhile are the ones the
        // at-most-once contract allows to lose. The client's own state,
        // not our health signal: the latter is set by an event that may
        // come after a fresh connection is usable.
        if self.client.connection_state() != async_nats::connection::State::Disconnected {
            self.confirm().await?;
        }
        Ok(Box::pin(sub.filter_map(|msg| async move {
            match codec::decode(&msg.payload) {
                Ok(envelope) => Some(envelope),
                Err(e) => {
                    tracing::warn!(error = %e, subject = %msg.subject, "undecodable bus notice skipped");
                    None
                }
            }
        })))
    }

    fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    fn describe(&self) -> String {
        format!("NATS {} (subjects {}.*)", self.servers, self.prefix)
    }

    async fn flush(&self) {
        let _ = tokio::time::timeout(PUBLISH_TIMEOUT, self.client.flush()).await;
    }
}
