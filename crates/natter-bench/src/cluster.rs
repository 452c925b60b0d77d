//! `natter-bench cluster`: delivered messages per second through one or
//! more **already running** nodes of one deployment (start them yourself:
//! one node, or several sharing PostgreSQL and NATS).
//!
//! Users come in direct pairs. With several nodes, each pair's sender
//! sends over REST through one node while the receiver follows over
//! WebSocket on the next node, so every message crosses nodes. Senders are
//! closed-loop (one request in flight each), so the figure is the
//! throughput the deployment sustains, not an offered rate. A message
//! counts as delivered when its `message.created` event reaches the
//! receiver; the run fails if an acknowledged message never arrives.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Base URLs of the running nodes, comma-separated
    /// (`http://127.0.0.1:8080,http://127.0.0.1:8081`).
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// Direct pairs (one sender and one receiver each).
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds to wait for the last deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
}

const PASSWORD: &str = "bench password 1";

async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    ensure!(args.pairs >= 1, "--pairs must be at least 1");
    let nodes = &args.nodes;
    let http = reqwest::Client::new();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    println!(
        "parameters: cluster --nodes {} ({} nodes) --pairs {} --seconds {} --drain {}",
        nodes.join(","),
        nodes.len(),
        args.pairs,
        args.seconds,
        args.drain
    );

    // Set-up: sign up, log in, one direct conversation per pair.
    let mut pairs = Vec::new();
    for p in 0..args.pairs {
        let send_node = &nodes[p % nodes.len()];
        let recv_node = &nodes[(p + 1) % nodes.len()];
        let (s, r) = (format!("b{run}s{p}"), format!("b{run}r{p}"));
        for name in [&s, &r] {
            post(
                &http,
                format!("{send_node}/api/v1/accounts"),
                None,
                json!({"username": name, "password": PASSWORD}),
            )
            .await?;
        }
        let st = post(
            &http,
            format!("{send_node}/api/v1/sessions"),
            None,
            json!({"username": s, "password": PASSWORD}),
        )
        .await?["token"]
            .as_str()
            .context("token")?
            .to_owned();
        let rt = post(
            &http,
            format!("{recv_node}/api/v1/sessions"),
            None,
            json!({"username": r, "password": PASSWORD}),
        )
        .await?["token"]
            .as_str()
            .context("token")?
            .to_owned();
        let conv = post(
            &http,
            format!("{send_node}/api/v1/conversations"),
            Some(&st),
            json!({"kind": "direct", "with": r}),
        )
        .await?;
        let conv = conv["conversation"]["id"]
            .as_str()
            .or_else(|| conv["id"].as_str())
            .context("conversation id")?
            .to_owned();
        pairs.push((send_node.clone(), st, recv_node.clone(), rt, conv));
    }

    // Receivers: one WebSocket each, counting message.created events.
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let mut receivers = Vec::new();
    for (_, _, node, token, _) in &pairs {
        let url = format!("{}/api/v1/stream", node.replacen("http", "ws", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        ws.send(Message::text(
            json!({"type": "auth", "ref": "a", "token": token}).to_string(),
        ))
        .await?;
        let (delivered, latencies) = (delivered.clone(), latencies.clone());
        receivers.push(tokio::spawn(async move {
            let mut seen = HashMap::<String, ()>::new();
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(t) = msg else { continue };
                let Ok(f) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                if f["event"] != "message.created" {
                    continue;
                }
                let body = f["data"]["message"]["body"].as_str().unwrap_or_default();
                if seen.insert(body.to_owned(), ()).is_none() {
                    delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some(sent) = body.split(':').nth(1).and_then(|t| t.parse::<u64>().ok()) {
                        latencies
                            .lock()
                            .unwrap()
                            .push(now_micros().saturating_sub(sent));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Senders: closed loop until the time is up.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for (p, (node, token, _, _, conv)) in pairs.iter().cloned().enumerate() {
        let (http, stop, acked) = (http.clone(), stop.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("{p}-{i}:{}", now_micros());
                let r = post(
                    &http,
                    format!("{node}/api/v1/conversations/{conv}/messages"),
                    Some(&token),
                    json!({"client_id": format!("{p}-{i}"), "body": body}),
                )
                .await;
                match r {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    let acked = acked.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while delivered.load(Ordering::Relaxed) < acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total_secs = started.elapsed().as_secs_f64();
    for r in receivers {
        r.abort();
    }
    let got = delivered.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .map(|v| format!("{:.1}", *v as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    println!();
    println!(
        "| nodes | pairs | acknowledged | delivered | delivered msg/s | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {:.0} | {} | {} | {} |",
        nodes.len(),
        args.pairs,
        acked,
        got,
        got as f64 / send_secs,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    let _ = total_secs;
    if got < acked {
        bail!("{} acknowledged messages were not delivered", acked - got);
    }
    Ok(())
}
