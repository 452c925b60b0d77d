//! `natter-bench stream history`: pages of one long conversation fetched
//! over REST, as clients scrolling back would.
//!
//! Sending a million messages through the server would take minutes of
//! the machine's time for no measurement, so the harness creates the
//! account and the group over REST, stops the server, appends the
//! messages through the SQLite store directly (the same code the server
//! runs), and starts the server again on the same data directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use natter_store::Store;
use natter_types::{ConversationId, Username};

use super::setup::Api;
use super::{Environment, HistoryArgs};
use crate::proc::Server;

/// What the fill left for the measurement.
struct Prepared {
    token: String,
    conversation: String,
    last_seq: i64,
}

static PREPARED: std::sync::OnceLock<Prepared> = std::sync::OnceLock::new();

/// Creates the historian and the group over REST, fills the group through
/// the store while the server is stopped, and restarts the server.
pub async fn fill(
    args: &HistoryArgs,
    server: Server,
    cpu: Option<usize>,
) -> anyhow::Result<Server> {
    ensure!(
        args.messages > args.page_size && args.page_size > 0,
        "--messages must exceed --page-size"
    );
    println!(
        "parameters: stream history --messages {} --pages {} --page-size {} --concurrency {}",
        args.messages, args.pages, args.page_size, args.concurrency
    );
    let api = Api::new(server.addr)?;
    let token = api.user("historian").await?;
    let conversation = api.group(&token, "history", &[]).await?;
    let natter = args.common.natter.clone();
    let data = server.stop_keeping_data()?;
    let t = Instant::now();
    let store: Arc<dyn Store> = Arc::new(natter_store_sqlite::SqliteStore::open(
        &data.path().join("natter.db"),
    )?);
    let owner = store
        .user_by_username(&Username::parse("historian")?)
        .await?
        .context("the historian is not in the store")?;
    let conv = ConversationId(uuid::Uuid::parse_str(&conversation)?);
    let tasks = 64;
    crate::store::append_load(
        &store,
        vec![(owner.id, conv); tasks],
        args.messages.div_ceil(tasks),
        "h",
    )
    .await?;
    let last_seq = store
        .conversation(conv)
        .await?
        .context("the group is not in the store")?
        .last_seq;
    drop(store);
    eprintln!(
        "history: {last_seq} messages written through the store in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let _ = PREPARED.set(Prepared {
        token,
        conversation,
        last_seq,
    });
    Server::start_in(&natter, cpu, &[], &[], data)
}

pub async fn run(
    args: &HistoryArgs,
    server: &Server,
    env: &Environment,
) -> anyhow::Result<Vec<String>> {
    let p = PREPARED.get().context("history was not filled")?;
    println!("environment: {}", env.describe());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?;
    let base = format!(
        "http://{}/api/v1/conversations/{}/messages",
        server.addr, p.conversation
    );
    // A reachable server and a valid token before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let span = (p.last_seq as u64)
        .saturating_sub(args.page_size as u64)
        .max(1);
    let report = crate::burst::burst(
        "history",
        serde_json::to_value(args)?,
        server.pid,
        env,
        args.pages,
        args.concurrency,
        None,
        |i| {
            let (client, base) = (&client, &base);
            // A cheap, reproducible spread of positions.
            let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let before = args.page_size as u64 + 1 + (x >> 11) % span;
            async move {
                let resp = client
                    .get(format!("{base}?before={before}&limit={}", args.page_size))
                    .bearer_auth(&p.token)
                    .send()
                    .await?;
                let status = resp.status();
                let body: serde_json::Value = resp.json().await?;
                ensure!(status.is_success(), "HTTP {status}: {body}");
                let n = body
                    .as_array()
                    .or_else(|| body["messages"].as_array())
                    .map_or(0, Vec::len);
                ensure!(
                    n == args.page_size,
                    "a page of {n} messages before {before}"
                );
                Ok(())
            }
        },
    )
    .await?;
    report.print(args.common.json)
}
