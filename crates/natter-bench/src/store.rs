//! `natter-bench store`: the storage layer measured through the same
//! `Store` trait the server uses, without HTTP in the way: durable appends
//! per second with many concurrent senders, and history page latency in a
//! very long conversation. Kept apart from the stream scenarios so that a
//! regression can be pinned on the store or on everything above it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DurationRound, TimeDelta, Utc};
use clap::ValueEnum;
use natter_store::{HistoryQuery, NewGroup, NewMessage, NewUser, Store};
use natter_types::*;
use serde::Serialize;

#[derive(Clone, Copy, ValueEnum, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(clap::Args)]
pub struct StoreArgs {
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// PostgreSQL URL (a fresh schema is created in it and dropped after).
    #[arg(long, default_value = "postgres://root@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Concurrent senders, each in its own direct conversation.
    #[arg(long, default_value_t = 100)]
    senders: usize,
    /// Messages each sender appends in the throughput phase.
    #[arg(long, default_value_t = 500)]
    per_sender: usize,
    /// Messages in the long conversation for the history phase (0 skips).
    #[arg(long, default_value_t = 1_000_000)]
    history_size: usize,
    /// History pages fetched (50 messages each).
    #[arg(long, default_value_t = 10_000)]
    pages: usize,
    /// Also print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct StoreReport {
    backend: Backend,
    senders: usize,
    appends: usize,
    append_seconds: f64,
    appends_per_second: f64,
    append_p50_ms: f64,
    append_p99_ms: f64,
    history_size: usize,
    history_fill_seconds: f64,
    pages: usize,
    page_p50_ms: f64,
    page_p99_ms: f64,
    page_max_ms: f64,
}

fn now() -> Timestamp {
    Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn open(
    args: &StoreArgs,
) -> anyhow::Result<(Arc<dyn Store>, Option<tempfile::TempDir>, Option<String>)> {
    match args.backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let store = natter_store_sqlite::SqliteStore::open(&dir.path().join("bench.db"))?;
            Ok((Arc::new(store), Some(dir), None))
        }
        Backend::Postgres => {
            let schema = format!("natter_bench_{}", uuid::Uuid::now_v7().simple());
            let store = natter_store_postgres::PgStore::connect_with(
                &args.postgres_url,
                natter_store_postgres::PgOptions {
                    schema: Some(schema.clone()),
                    ..Default::default()
                },
            )
            .await?;
            Ok((Arc::new(store), None, Some(schema)))
        }
    }
}

async fn user(store: &dyn Store, name: &str) -> anyhow::Result<User> {
    // Benchmark accounts never log in; their keys need not be real.
    let keys = ScramKeys {
        stored_key: vec![0; 32],
        server_key: vec![0; 32],
    };
    Ok(store
        .create_user(NewUser {
            username: Username::parse(name)?,
            display_name: None,
            credentials: Credentials {
                salt: vec![0; 16],
                iterations: 4096,
                sha1: keys.clone(),
                sha256: keys,
            },
            now: now(),
        })
        .await?)
}

fn message(conv: ConversationId, sender: UserId, client_id: String) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        conversation_id: conv,
        sender,
        client_id: ClientId::from_trusted(client_id),
        body: Body::from_trusted("a benchmark message of typical length, about sixty bytes".into()),
        now: now(),
    }
}

/// Appends `per_task` messages from each (sender, conversation) pair
/// concurrently; returns every append's latency and the wall time.
pub(crate) async fn append_load(
    store: &Arc<dyn Store>,
    pairs: Vec<(UserId, ConversationId)>,
    per_task: usize,
    tag: &str,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let start = Instant::now();
    let tasks: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (sender, conv))| {
            let store = store.clone();
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                for j in 0..per_task {
                    let t = Instant::now();
                    store
                        .append_message(message(conv, sender, format!("{tag}-{i}-{j}")))
                        .await?;
                    lat.push(t.elapsed());
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start.elapsed()))
}

pub async fn bench_store(args: StoreArgs) -> anyhow::Result<()> {
    let (store, _dir, schema) = open(&args).await?;
    eprintln!(
        "backend {:?}: creating {} senders",
        args.backend, args.senders
    );
    let hub_user = user(&*store, "receiver").await?;
    let mut pairs = Vec::new();
    for i in 0..args.senders {
        let u = user(&*store, &format!("sender{i}")).await?;
        let (c, _) = store.direct_conversation(u.id, hub_user.id, now()).await?;
        pairs.push((u.id, c.id));
    }

    eprintln!("throughput: {} x {} appends", args.senders, args.per_sender);
    let (mut lat, wall) = append_load(&store, pairs.clone(), args.per_sender, "t").await?;
    lat.sort();
    let appends = lat.len();

    let mut fill = Duration::ZERO;
    let mut pages = Vec::new();
    if args.history_size > 0 {
        eprintln!(
            "history: filling one conversation with {} messages",
            args.history_size
        );
        let owner = user(&*store, "historian").await?;
        let group = store
            .create_group(NewGroup {
                id: ConversationId::new(),
                title: GroupTitle::parse("history")?,
                owner: owner.id,
                members: vec![],
                now: now(),
            })
            .await?;
        // Many concurrent appends from one sender fill it fastest; each
        // task uses its own client ids.
        let tasks = 64;
        let per = args.history_size.div_ceil(tasks);
        let t0 = Instant::now();
        append_load(&store, vec![(owner.id, group.id); tasks], per, "h").await?;
        fill = t0.elapsed();
        let last = store
            .conversation(group.id)
            .await?
            .context("group")?
            .last_seq;
        eprintln!(
            "history: {last} messages in {:.1} s; fetching {} pages",
            fill.as_secs_f64(),
            args.pages
        );
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..args.pages {
            // xorshift: a cheap, reproducible spread of page positions
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let before = 51 + (x % (last as u64 - 50)) as i64;
            let t = Instant::now();
            let page = store
                .messages(
                    group.id,
                    HistoryQuery {
                        before: Some(before),
                        after: None,
                        limit: 50,
                    },
                )
                .await?;
            pages.push(t.elapsed());
            anyhow::ensure!(page.len() == 50, "short page at {before}");
        }
        pages.sort();
    }

    let report = StoreReport {
        backend: args.backend,
        senders: args.senders,
        appends,
        append_seconds: wall.as_secs_f64(),
        appends_per_second: appends as f64 / wall.as_secs_f64(),
        append_p50_ms: percentile(&lat, 0.50),
        append_p99_ms: percentile(&lat, 0.99),
        history_size: args.history_size,
        history_fill_seconds: fill.as_secs_f64(),
        pages: pages.len(),
        page_p50_ms: percentile(&pages, 0.50),
        page_p99_ms: percentile(&pages, 0.99),
        page_max_ms: pages
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0),
    };
    println!(
        "| backend | senders | appends/s | append p50 | append p99 | history msgs | page p50 | page p99 | page max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {:?} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.3} ms | {:.3} ms | {:.3} ms |",
        report.backend,
        report.senders,
        report.appends_per_second,
        report.append_p50_ms,
        report.append_p99_ms,
        report.history_size,
        report.page_p50_ms,
        report.page_p99_ms,
        report.page_max_ms
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    drop(store);
    if let Some(schema) = schema {
        let (client, conn) =
            tokio_postgres::connect(&args.postgres_url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await?;
    }
    Ok(())
}
