//! A cluster of real processes on loopback: three `natter` nodes sharing
//! a fresh PostgreSQL schema and a `nats-server` of the test's own (never
//! the machine's), which the tests kill and restart.
//!
//! These run in the PostgreSQL run (`NATTER_TEST_BACKEND=postgres`, as
//! `scripts/test` does when PostgreSQL answers); otherwise, or without a
//! `nats-server` binary, they print a notice and pass vacuously. With
//! `NATTER_TEST_REQUIRE_POSTGRES=1` or `NATTER_TEST_REQUIRE_NATS=1` a
//! PostgreSQL run without `nats-server` is a failure, not a skip.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use natter_testkit::stream::{Realtime, Transport};
use natter_testkit::xmpp::XmppClient;
use natter_testkit::{Client, PASSWORD, json};
use serde_json::Value;

/// The `nats-server` binary, or `None` with a notice.
fn nats_server_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NATTER_TEST_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Nats {
    binary: PathBuf,
    port: u16,
    proc: Option<Proc>,
}

impl Nats {
    fn start(binary: PathBuf) -> Self {
        let mut nats = Nats {
            binary,
            port: free_port(),
            proc: None,
        };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        self.proc = None;
    }

    fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server listens");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct Node {
    proc: Proc,
    base: String,
    /// The node's XMPP c2s address (plaintext allowed in these tests).
    xmpp: std::net::SocketAddr,
}

/// Three nodes, their database and their NATS.
struct Cluster {
    nats: Nats,
    database: String,
    dir: tempfile::TempDir,
    nodes: Vec<Option<Node>>,
}

impl Cluster {
    /// Starts a cluster, or `None` (with a notice) where it cannot run.
    async fn start() -> Option<Cluster> {
        if natter_testkit::backend() != "postgres" {
            eprintln!(
                "NOTICE: cluster tests run with NATTER_TEST_BACKEND=postgres (as in scripts/test); skipped"
            );
            return None;
        }
        let Some(binary) = nats_server_binary() else {
            let required = ["NATTER_TEST_REQUIRE_NATS", "NATTER_TEST_REQUIRE_POSTGRES"]
                .iter()
                .any(|v| std::env::var(v).as_deref() == Ok("1"));
            assert!(
                !required,
                "the cluster tests need nats-server (set NATTER_TEST_NATS_SERVER)"
            );
            eprintln!("NOTICE: nats-server not found; cluster tests skipped");
            return None;
        };
        let nats = Nats::start(binary);
        let database = natter_testkit::fresh_postgres_url().await;
        let mut cluster = Cluster {
            nats,
            database,
            dir: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
        };
        for _ in 0..3 {
            let node = cluster.spawn_node(&cluster.database);
            cluster.nodes.push(Some(node));
        }
        for i in 0..3 {
            wait_ready(&cluster.base(i)).await;
        }
        Some(cluster)
    }

    fn spawn_node(&self, database: &str) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir.path())
            .args(["--xmpp", "127.0.0.1:0", "--xmpps", "127.0.0.1:0"])
            .args(["--database", database, "--bus", &self.nats.url()])
            .env("NATTER_LOG", "info")
            .env("NO_COLOR", "1")
            .env("NATTER_ACCOUNTS__SCRAM_ITERATIONS", "4096")
            .env("NATTER_XMPP__ALLOW_PLAINTEXT", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn natter");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut xmpp = None;
        let addr = loop {
            let line = lines
                .next()
                .expect("natter exited before listening")
                .unwrap();
            if line.contains("XMPP listening") && line.contains("direct_tls=false") {
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next();
                xmpp = addr.map(|a| a.parse().expect("an address"));
            }
            if let Some(rest) = line.split("http=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Node {
            proc: Proc(child),
            base: format!("http://{addr}"),
            xmpp: xmpp.expect("an XMPP listener"),
        }
    }

    fn base(&self, i: usize) -> String {
        self.nodes[i].as_ref().expect("node running").base.clone()
    }

    /// `kill -9` of node `i`.
    fn kill(&mut self, i: usize) {
        let mut node = self.nodes[i].take().expect("node running");
        node.proc.0.kill().expect("kill -9");
        node.proc.0.wait().unwrap();
    }

    /// Signs up `name` through node `i` and logs in there.
    async fn user(&self, i: usize, name: &str) -> Client {
        let anon = Client::new(&self.base(i));
        anon.post(
            "/api/v1/accounts",
            json!({"username": name, "password": PASSWORD}),
        )
        .await
        .expect(201);
        anon.log_in(name, PASSWORD).await
    }

    /// Stops everything and drops the schema (also what dropping does,
    /// so a failing test cleans up too).
    async fn finish(self) {
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            *n = None;
        }
        self.nats.stop();
        let base = std::env::var("NATTER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
        let schema = self
            .database
            .rsplit("search_path%3D")
            .next()
            .unwrap()
            .to_owned();
        // Its own thread and runtime: this may run inside the test's.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&base, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn wait_ready(base: &str) {
    for _ in 0..400 {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{base} not ready");
}

async fn readyz(base: &str) -> Option<Value> {
    let r = reqwest::get(format!("{base}/readyz")).await.ok()?;
    r.json().await.ok()
}

/// Waits until `/readyz` of `base` says the bus is `up`.
async fn wait_bus(base: &str, up: bool, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(r) = readyz(base).await
            && r["checks"][1]["name"] == "bus"
            && r["checks"][1]["ok"] == up
        {
            assert_eq!(r["status"], if up { "ok" } else { "degraded" }, "{r}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base}: bus not {} in {within:?}",
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_message(e: &Value, body: &str) -> bool {
    e["event"] == "message.created" && e["data"]["message"]["body"] == body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn xmpp_clients_on_different_nodes_reach_each_other() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.user(0, "alice").await;
    cluster.user(1, "bob").await;
    let node = |i: usize| cluster.nodes[i].as_ref().expect("node running").xmpp;
    let mut alice = XmppClient::online_at(node(0), "localhost", "alice", PASSWORD).await;
    let mut bob = XmppClient::online_at(node(1), "localhost", "bob", PASSWORD).await;
    let (alice_jid, bob_jid) = (alice.jid.clone().unwrap(), bob.jid.clone().unwrap());

    // a chat message goes through the store to the other node
    alice
        .send("<message xmlns='jabber:client' type='chat' to='bob@localhost' id='x1'><body>across nodes</body></message>")
        .await;
    let m = bob
        .recv_where(|e| natter_testkit::xmpp::body(e).is_some())
        .await;
    assert_eq!(
        natter_testkit::xmpp::body(&m).as_deref(),
        Some("across nodes")
    );

    // an IQ to a full JID is routed to the node that has it, and back
    alice
        .send(&format!(
            "<iq xmlns='jabber:client' type='get' id='v1' to='{bob_jid}'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    let iq = bob
        .recv_where(|e| e.name() == "iq" && e.attr("id") == Some("v1"))
        .await;
    assert_eq!(
        iq.attr("from"),
        Some(alice_jid.as_str()),
        "the server stamps the sender"
    );
    bob.send(&format!(
        "<iq xmlns='jabber:client' type='result' id='v1' to='{alice_jid}'><query xmlns='jabber:iq:version'><name>test</name></query></iq>"
    ))
    .await;
    let reply = alice.iq_reply("v1").await;
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(reply.attr("from"), Some(bob_jid.as_str()));
    cluster.finish().await;
}

#[tokio::test]
async fn users_on_different_nodes_chat_over_every_transport() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // alice follows over WebSocket on node 0, bob over long-poll on node 1,
    // carol uses REST only on node 2.
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let carol = cluster.user(2, "carol").await;
    let group = alice.group("team", &["bob", "carol"]).await;
    let direct = alice.direct("bob").await;
    let mut alice_rt = Realtime::connect(&alice, Transport::WebSocket, None).await;
    let mut bob_rt = Realtime::connect(&bob, Transport::LongPoll, None).await;

    // Presence crosses nodes: bob, polling on node 1, is online for alice
    // on node 0 (they share a direct conversation).
    alice_rt
        .expect("bob online", |e| {
            e["event"] == "presence"
                && e["data"]["user"] == "bob"
                && e["data"]["status"] == "online"
        })
        .await;

    let a = alice_rt.send(&group, "a1", "from alice over ws").await;
    bob_rt
        .expect("alice's message", |e| is_message(e, "from alice over ws"))
        .await;
    let b = bob_rt.send(&group, "b1", "from bob over long-poll").await;
    alice_rt
        .expect("bob's message", |e| {
            is_message(e, "from bob over long-poll")
        })
        .await;
    let c = carol.say(&group, "c1", "from carol over rest").await;
    alice_rt
        .expect("carol's message", |e| is_message(e, "from carol over rest"))
        .await;
    bob_rt
        .expect("carol's message", |e| is_message(e, "from carol over rest"))
        .await;
    assert_eq!(
        [&a["seq"], &b["seq"], &c["seq"]],
        [&json!(1), &json!(2), &json!(3)]
    );

    // Receipts: bob reads on node 1, alice on node 0 sees it.
    let r = bob_rt
        .command(json!({"type": "read", "conversation_id": group, "seq": 3}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    alice_rt
        .expect("bob's read receipt", |e| {
            e["event"] == "receipt.read" && e["data"]["user"] == "bob" && e["data"]["seq"] == 3
        })
        .await;

    // Typing crosses nodes both ways, and a send through another node
    // ends it.
    let r = alice_rt
        .command(json!({"type": "typing", "conversation_id": direct, "active": true}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    bob_rt
        .expect("alice typing", |e| {
            e["event"] == "typing" && e["data"]["user"] == "alice" && e["data"]["active"] == true
        })
        .await;
    alice
        .with_base(&cluster.base(2))
        .say(&direct, "d1", "sent through node 2")
        .await;
    bob_rt
        .expect("alice stopped typing", |e| {
            e["event"] == "typing" && e["data"]["user"] == "alice" && e["data"]["active"] == false
        })
        .await;
    let r = bob_rt
        .command(json!({"type": "typing", "conversation_id": direct, "active": true}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    alice_rt
        .expect("bob typing", |e| {
            e["event"] == "typing" && e["data"]["user"] == "bob" && e["data"]["active"] == true
        })
        .await;

    // Away on node 1 shows on node 0.
    let r = bob_rt
        .command(json!({"type": "presence", "status": "away"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    alice_rt
        .expect("bob away", |e| {
            e["event"] == "presence" && e["data"]["user"] == "bob" && e["data"]["status"] == "away"
        })
        .await;

    // Revoking a session through node 2 closes its stream on node 0 at
    // once, not at the next heartbeat.
    let alice2 = Client::new(&cluster.base(2))
        .log_in("alice", PASSWORD)
        .await;
    let sessions = alice2.get("/api/v1/sessions").await;
    let token_session = sessions.expect(200)["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] != true)
        .expect("alice's first session")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    alice2
        .delete(&format!("/api/v1/sessions/{token_session}"))
        .await
        .expect(204);
    alice_rt.expect_event("session.revoked").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed by the bus, not by the 30 s heartbeat re-check"
    );

    // Every node is ready with its bus up.
    for i in 0..3 {
        wait_bus(&cluster.base(i), true, Duration::from_secs(5)).await;
    }
    cluster.finish().await;
}

/// A message as a client shows it: its conversation and sequence number.
type Shown = (String, i64);

/// Follows a user's events across reconnections to any node, resuming
/// from its cursor, and records every message shown, until it has shown
/// `target` messages.
async fn follow(
    client: Client,
    transport: Transport,
    bases: Arc<std::sync::Mutex<Vec<String>>>,
    target: Arc<AtomicUsize>,
) -> Vec<Shown> {
    let mut shown = Vec::new();
    let mut cursor = None;
    'connect: loop {
        let base = bases.lock().unwrap()[0].clone();
        let me = client.with_base(&base);
        let connected = tokio::spawn({
            let cursor = cursor.clone();
            async move { Realtime::connect(&me, transport, cursor).await }
        })
        .await;
        let Ok(mut rt) = connected else {
            // the node died while we connected: try the next one
            tokio::time::sleep(Duration::from_millis(100)).await;
            bases.lock().unwrap().rotate_left(1);
            continue;
        };
        loop {
            if shown.len() >= target.load(Ordering::SeqCst) {
                return shown;
            }
            // A dead node shows up as a panic of the test client (the
            // stream ended); catch it and move on to another node.
            let next = tokio::spawn(async move {
                let e = rt.try_next_event(Duration::from_millis(500)).await;
                (rt, e)
            })
            .await;
            let (back, event) = match next {
                Ok(x) => x,
                Err(_) => {
                    bases.lock().unwrap().rotate_left(1);
                    continue 'connect;
                }
            };
            rt = back;
            if let Some(e) = event {
                if e["event"] == "message.created" {
                    let m = &e["data"]["message"];
                    shown.push((
                        m["conversation_id"].as_str().unwrap().to_owned(),
                        m["seq"].as_i64().unwrap(),
                    ));
                }
                cursor = rt.cursor();
            }
        }
    }
}

/// Sends `prefix-0`, `prefix-1`, … until `stop`, retrying each with the
/// same `client_id` on the next node until acknowledged, as a real client
/// does; returns the acknowledged messages.
async fn send_load(
    client: Client,
    conversation: String,
    prefix: String,
    bases: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> Vec<Value> {
    let mut acked = Vec::new();
    let mut j = 0;
    while !stop.load(Ordering::SeqCst) {
        let id = format!("{prefix}-{j}");
        loop {
            let base = bases.lock().unwrap()[0].clone();
            let r = client
                .with_base(&base)
                .try_post(
                    &format!("/api/v1/conversations/{conversation}/messages"),
                    json!({"client_id": id, "body": id}),
                )
                .await;
            match r {
                Some(r) if r.status == 201 || r.status == 200 => {
                    acked.push(r.body["message"].clone());
                    break;
                }
                _ => {
                    bases.lock().unwrap().rotate_left(1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        j += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}

/// Every acknowledged message was shown exactly once, in sequence order.
fn check_shown(who: &str, shown: &[Shown], acked: &[Value]) {
    let mut seen = HashSet::new();
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (c, seq) in shown {
        assert!(
            seen.insert((c.clone(), *seq)),
            "{who}: {c}#{seq} shown twice"
        );
        let prev = last.insert(c, *seq).unwrap_or(0);
        assert!(*seq > prev, "{who}: {c}#{seq} after #{prev}: order broken");
    }
    for m in acked {
        let key = (
            m["conversation_id"].as_str().unwrap().to_owned(),
            m["seq"].as_i64().unwrap(),
        );
        assert!(seen.contains(&key), "{who}: acknowledged {m} never shown");
    }
}

fn node_list(cluster: &Cluster, order: &[usize]) -> Arc<std::sync::Mutex<Vec<String>>> {
    Arc::new(std::sync::Mutex::new(
        order.iter().map(|i| cluster.base(*i)).collect(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_minus_nine_of_a_node_under_load_loses_nothing() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let names = ["alice", "bob", "carol", "dave", "erin"];
    let mut users = Vec::new();
    for (i, n) in names.iter().enumerate() {
        users.push(cluster.user(i % 3, n).await);
    }
    let group = users[0].group("load", &names[1..]).await;
    // frank is connected only to node 2, which dies; alice on node 0 sees
    // him go offline once his node's presence lease runs out.
    let frank = cluster.user(2, "frank").await;
    users[0].direct("frank").await;
    let mut frank_rt = Realtime::connect(&frank, Transport::WebSocket, None).await;
    let _ = frank_rt.try_next_event(Duration::from_millis(100)).await;
    let mut watcher = Realtime::connect(&users[0], Transport::WebSocket, None).await;
    watcher
        .expect("frank online", |e| {
            e["event"] == "presence"
                && e["data"]["user"] == "frank"
                && e["data"]["status"] == "online"
        })
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicUsize::new(usize::MAX));
    // dave (WebSocket) and erin (long-poll) follow through node 2 first.
    let readers: Vec<_> = [(3, Transport::WebSocket), (4, Transport::LongPoll)]
        .into_iter()
        .map(|(u, t)| {
            tokio::spawn(follow(
                users[u].clone(),
                t,
                node_list(&cluster, &[2, 0, 1]),
                target.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // alice, bob and carol send through nodes 0, 1 and 2.
    let senders: Vec<_> = (0..3)
        .map(|u| {
            let order = [u, (u + 1) % 3, (u + 2) % 3];
            tokio::spawn(send_load(
                users[u].clone(),
                group.clone(),
                names[u].to_owned(),
                node_list(&cluster, &order),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill(2);
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(
        acked.len() > 30,
        "the load ran ({} acknowledged)",
        acked.len()
    );

    // Stored history: gap-free, and holds every acknowledged message.
    let stored = history(&users[0].with_base(&cluster.base(0)), &group).await;
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>());
    for m in &acked {
        assert_eq!(&stored[(m["seq"].as_i64().unwrap() - 1) as usize], m);
    }
    // The readers resumed on other nodes and showed all of it, once each,
    // in order.
    target.store(stored.len(), Ordering::SeqCst);
    for (r, who) in readers.into_iter().zip(["dave", "erin"]) {
        let shown = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .unwrap_or_else(|_| panic!("{who} did not catch up"))
            .unwrap();
        check_shown(who, &shown, &acked);
    }

    let offline = watcher
        .expect("frank offline", |e| {
            e["event"] == "presence"
                && e["data"]["user"] == "frank"
                && e["data"]["status"] == "offline"
        })
        .await;
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "offline after the lease: {offline}"
    );
    drop(frank_rt);
    cluster.finish().await;
}

async fn history(client: &Client, conversation: &str) -> Vec<Value> {
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let r = client
            .get(&format!(
                "/api/v1/conversations/{conversation}/messages?after={after}&limit=100"
            ))
            .await;
        let msgs = r.expect(200)["messages"].as_array().unwrap().clone();
        if msgs.is_empty() {
            return stored;
        }
        after = msgs.last().unwrap()["seq"].as_i64().unwrap();
        stored.extend(msgs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_nats_under_load_loses_nothing_and_nodes_converge() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut users = Vec::new();
    for (i, n) in names.iter().enumerate() {
        users.push(cluster.user(i % 3, n).await);
    }
    let group = users[0].group("load", &names[1..]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicUsize::new(usize::MAX));
    // dave, erin and frank follow on nodes 0, 1 and 2.
    let readers: Vec<_> = (3..6)
        .map(|u| {
            let t = if u == 4 {
                Transport::LongPoll
            } else {
                Transport::WebSocket
            };
            tokio::spawn(follow(
                users[u].clone(),
                t,
                node_list(&cluster, &[u % 3]),
                target.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let senders: Vec<_> = (0..3)
        .map(|u| {
            tokio::spawn(send_load(
                users[u].clone(),
                group.clone(),
                names[u].to_owned(),
                node_list(&cluster, &[u]),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.nats.stop();
    for i in 0..3 {
        wait_bus(&cluster.base(i), false, Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.nats.restart();
    let back = Instant::now();
    for i in 0..3 {
        wait_bus(&cluster.base(i), true, Duration::from_secs(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(
        acked.len() > 30,
        "the load ran ({} acknowledged)",
        acked.len()
    );
    let stored = history(&users[0], &group).await;
    for m in &acked {
        assert_eq!(&stored[(m["seq"].as_i64().unwrap() - 1) as usize], m);
    }
    // Every reader, on every node, has shown everything within 10 s of
    // NATS returning.
    target.store(stored.len(), Ordering::SeqCst);
    let converged = tokio::time::Instant::from_std(back + Duration::from_secs(10));
    for (r, who) in readers.into_iter().zip(["dave", "erin", "frank"]) {
        let shown = tokio::time::timeout_at(converged, r)
            .await
            .unwrap_or_else(|_| panic!("{who} did not converge within 10 s of NATS returning"))
            .unwrap();
        check_shown(who, &shown, &acked);
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_every_node_see_one_gap_free_order() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    const PER_SENDER: usize = 25;
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut users = Vec::new();
    for (i, n) in names.iter().enumerate() {
        users.push(cluster.user(i % 3, n).await);
    }
    let group = users[0].group("busy", &names[1..]).await;
    let mut streams = Vec::new();
    for u in &users {
        streams.push(Realtime::connect(u, Transport::WebSocket, None).await);
    }
    let sends: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let (u, group) = (u.clone(), group.clone());
            tokio::spawn(async move {
                for j in 0..PER_SENDER {
                    u.say(&group, &format!("{i}-{j}"), &format!("{i}-{j}"))
                        .await;
                }
            })
        })
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    let total = PER_SENDER * users.len();
    let mut orders = Vec::new();
    for (rt, name) in streams.iter_mut().zip(names) {
        let mut order = Vec::new();
        while order.len() < total {
            let e = rt.expect_event("message.created").await;
            let m = &e["data"]["message"];
            order.push((m["seq"].as_i64().unwrap(), m["body"].clone()));
        }
        let seqs: Vec<i64> = order.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=total as i64).collect::<Vec<_>>(),
            "{name}: gap-free, in order"
        );
        orders.push(order);
    }
    for o in &orders[1..] {
        assert_eq!(o, &orders[0], "every member sees the same order");
    }
    cluster.finish().await;
}

/// A TCP proxy to PostgreSQL that the test can cut (every connection
/// closed, new ones refused) and restore, to take the database away from
/// one node only.
struct DbProxy {
    port: u16,
    upstream: String,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DbProxy {
    async fn start(upstream: String) -> DbProxy {
        let proxy = DbProxy {
            port: free_port(),
            upstream,
            tasks: Arc::default(),
        };
        proxy.restore().await;
        proxy
    }

    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("proxy port");
        let (upstream, tasks) = (self.upstream.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_loses_postgresql_reports_it_keeps_its_streams_and_recovers() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // A fourth node reaches the same database through a proxy.
    let base_url = std::env::var("NATTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    let hostport = base_url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next_back())
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let upstream = if hostport.contains(':') {
        hostport.clone()
    } else {
        format!("{hostport}:5432")
    };
    let proxy = DbProxy::start(upstream).await;
    let proxied = cluster
        .database
        .replacen(&hostport, &format!("127.0.0.1:{}", proxy.port), 1);
    let node = cluster.spawn_node(&proxied);
    let base = node.base.clone();
    wait_ready(&base).await;

    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let direct = bob.direct("alice").await;
    let mut alice_rt = Realtime::connect(&alice.with_base(&base), Transport::WebSocket, None).await;
    bob.say(&direct, "m1", "before").await;
    alice_rt.expect("before", |e| is_message(e, "before")).await;

    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        if status == 503 {
            assert_eq!(body["status"], "unavailable", "{body}");
            assert_eq!(body["checks"][0]["name"], "database");
            assert_eq!(body["checks"][0]["ok"], false, "{body}");
            assert_eq!(body["checks"][1]["ok"], true, "the bus is fine: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "the loss is not reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Acknowledged elsewhere while this node cannot read the store.
    bob.say(&direct, "m2", "during").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.restore().await;
    wait_ready(&base).await;
    // The same connection, never closed, gets what was sent meanwhile.
    alice_rt.expect("during", |e| is_message(e, "during")).await;
    bob.say(&direct, "m3", "after").await;
    alice_rt.expect("after", |e| is_message(e, "after")).await;
    drop(node);
    drop(proxy);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_an_account_from_the_command_line_closes_its_streams_on_every_node() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let mut on_node0 = Realtime::connect(&alice, Transport::WebSocket, None).await;
    let on_node2_client = Client::new(&cluster.base(2))
        .log_in("alice", PASSWORD)
        .await;
    let mut on_node2 = Realtime::connect(&on_node2_client, Transport::WebSocket, None).await;
    // Streams re-check their session every 30 s heartbeat; the bus makes
    // this immediate.
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args([
            "admin",
            "--database",
            &cluster.database,
            "disable-user",
            "alice",
        ])
        .env("NATTER_BUS", cluster.nats.url())
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    on_node0.expect_event("session.revoked").await;
    on_node2.expect_event("session.revoked").await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "closed through the bus, not at a heartbeat"
    );
    cluster.finish().await;
}
