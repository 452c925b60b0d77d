//! The Rust SDK of Natter: a typed async client of the REST API and of the
//! real-time event stream, for bots, tools and applications.
//!
//! It exists so that a Rust program never has to know the wire format or
//! the failure modes of a chat connection: it calls typed methods, reads a
//! [`futures::Stream`] of typed [`Event`]s, and gets a typed [`Error`] that
//! says what went wrong. What it guarantees:
//!
//! - **Nothing lost, nothing twice.** The event stream reconnects by
//!   itself with exponential backoff and resumes from the cursor of the
//!   last durable event it received; [`EventStream::cursor`] is the cursor
//!   of the last one handed to the application, to save and resume from
//!   after a restart ([`Client::events_from`]).
//! - **WebSocket where possible, long-polling where not.** With
//!   [`Transport::Auto`] (the default) a WebSocket that is refused (HTTP
//!   4xx on the upgrade) or keeps failing is replaced by long-polling
//!   `GET /api/v1/events`, and WebSocket is tried again later.
//! - **Idempotent sends.** [`Client::send`] picks a `client_id` once and
//!   retries with it until the server acknowledges; the server stores a
//!   message once per `client_id`, so a lost answer never duplicates it.
//!
//! ```no_run
//! use futures::StreamExt;
//! use natter_client::{Client, Event};
//!
//! # async fn demo() -> Result<(), natter_client::Error> {
//! let client = Client::new("http://127.0.0.1:8080")?;
//! client.login("bot", "correct horse battery").await?;
//! let mut events = client.events();
//! while let Some(event) = events.next().await {
//!     if let Event::MessageCreated(m) = event? {
//!         println!("{}: {:?}", m.message.sender, m.message.body);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Servers are `http://` by default. `https://` needs the `tls` feature
//! (rustls with the ring provider; no OpenSSL, no aws-lc). It is off by
//! default because reqwest then requires a provider in every process that
//! builds a reqwest client, and cargo's feature unification would impose
//! that on every crate built alongside this one.
//!
//! The wire types are those of `natter-proto`, re-exported as [`proto`].

mod backoff;
mod client;
mod error;
mod events;
mod stream;
#[cfg(feature = "tls")]
mod tls;

pub use backoff::Backoff;
pub use client::{Client, ClientBuilder, HistoryQuery, Options, Outgoing, Sent};
pub use error::{Error, Result};
pub use events::{
    BlockEvent, Connected, ConversationCreatedEvent, Cursor, Disconnected, Event, MemberEvent,
    MemberRemovedEvent, MessageEvent, PresenceEvent, ReceiptEvent, RenamedEvent, Transport,
    TypingEvent, UnknownEvent,
};
pub use natter_proto as proto;
pub use natter_proto::stream::PresenceStatus;
pub use natter_proto::{
    Block, Contact, Conversation, ConversationKind, ConversationSummary, History, LogInResponse,
    Member, Message, Role, Session, User,
};
pub use stream::EventStream;
