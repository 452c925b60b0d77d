//! Setting the stage through the public REST API, as real clients would:
//! accounts, log-ins, conversations, then authenticated WebSockets. Every
//! step runs with bounded concurrency so that setup is quick without
//! hitting the server with thousands of simultaneous password hashes.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::conn::{Conn, Shared};

pub const PASSWORD: &str = "benchmark-password";

/// A small client of the REST API.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .build()?,
            base: format!("http://{addr}"),
        })
    }

    async fn post(&self, token: Option<&str>, path: &str, body: Value) -> anyhow::Result<Value> {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.answer(req, path).await
    }

    async fn answer(&self, req: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Value> {
        let resp = req.send().await.with_context(|| path.to_owned())?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{path}: {text}"))
    }

    /// Signs up `name` (with [`PASSWORD`]).
    pub async fn signup(&self, name: &str) -> anyhow::Result<()> {
        self.post(
            None,
            "/api/v1/accounts",
            json!({"username": name, "password": PASSWORD}),
        )
        .await?;
        Ok(())
    }

    /// Logs `name` in with its password; returns the token.
    pub async fn login(&self, name: &str) -> anyhow::Result<String> {
        let s = self
            .post(
                None,
                "/api/v1/sessions",
                json!({"username": name, "password": PASSWORD}),
            )
            .await?;
        Ok(s["token"].as_str().context("no token")?.to_owned())
    }

    /// Signs up `name` and logs in; returns the token.
    pub async fn user(&self, name: &str) -> anyhow::Result<String> {
        self.signup(name).await?;
        let s = self
            .post(
                None,
                "/api/v1/sessions",
                json!({"username": name, "password": PASSWORD}),
            )
            .await?;
        Ok(s["token"].as_str().context("no token")?.to_owned())
    }

    /// The direct conversation of the token's user with `with`.
    pub async fn direct(&self, token: &str, with: &str) -> anyhow::Result<String> {
        let c = self
            .post(
                Some(token),
                "/api/v1/conversations",
                json!({"kind": "direct", "with": with}),
            )
            .await?;
        Ok(c["id"].as_str().context("no id")?.to_owned())
    }

    /// A new group owned by the token's user with `members`.
    pub async fn group(
        &self,
        token: &str,
        title: &str,
        members: &[String],
    ) -> anyhow::Result<String> {
        let c = self
            .post(
                Some(token),
                "/api/v1/conversations",
                json!({"kind": "group", "title": title, "members": members}),
            )
            .await?;
        Ok(c["id"].as_str().context("no id")?.to_owned())
    }

    pub async fn add_member(
        &self,
        token: &str,
        conversation: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        let path = format!("/api/v1/conversations/{conversation}/members/{name}");
        let req = self
            .client
            .put(format!("{}{path}", self.base))
            .bearer_auth(token);
        self.answer(req, &path).await?;
        Ok(())
    }
}

/// Signs up and logs in every name, `concurrency` at a time; the tokens
/// come back in the order of `names`.
pub async fn users(api: &Api, names: &[String], concurrency: usize) -> anyhow::Result<Vec<String>> {
    futures::stream::iter(names.iter().map(|n| api.user(n)))
        .buffered(concurrency)
        .try_collect()
        .await
}

/// How the generator's clients talk to the server in real time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Transport {
    /// `/api/v1/stream`.
    Websocket,
    /// `GET` and `POST /api/v1/events`.
    Longpoll,
}

/// Opens one connection per token (connection `i` with `tokens[i]`),
/// `concurrency` handshakes at a time.
pub async fn connections(
    addr: SocketAddr,
    transport: Transport,
    tokens: &[&str],
    shared: &Arc<Shared>,
    concurrency: usize,
) -> anyhow::Result<Vec<Conn>> {
    // Long-polling: one client, its pool holding a connection per
    // waiting poll (and more while commands are posted).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?;
    let base = format!("http://{addr}");
    futures::stream::iter(tokens.iter().enumerate().map(|(i, t)| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            match transport {
                Transport::Websocket => Conn::open(addr, t, i as u32, shared.clone()).await,
                Transport::Longpoll => {
                    Conn::open_poll(client, base, t, i as u32, shared.clone()).await
                }
            }
        }
    }))
    .buffered(concurrency)
    .try_collect()
    .await
}
