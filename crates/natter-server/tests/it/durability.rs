//! Nothing acknowledged is lost: across a graceful restart, and across a
//! `kill -9` of the real binary in the middle of a send load.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use natter_testkit::{Client, TestServer, json};

#[tokio::test]
async fn graceful_restart_keeps_everything() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    server.user("bob").await;
    let c = alice.direct("bob").await;
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(
            alice
                .say(&c, &format!("g{i}"), &format!("before restart {i}"))
                .await,
        );
    }
    let _server = server.restart().await;
    // same port: the session survives, history is whole, dedup still holds
    let r = alice
        .get(&format!("/api/v1/conversations/{c}/messages?limit=100"))
        .await;
    assert_eq!(r.expect(200)["messages"].as_array().unwrap(), &sent);
    let r = alice
        .post(
            &format!("/api/v1/conversations/{c}/messages"),
            json!({"client_id": "g0", "body": "x"}),
        )
        .await;
    assert_eq!(r.expect(200)["message"], sent[0]);
    assert_eq!(alice.say(&c, "after", "after restart").await["seq"], 31);
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `natter` binary on a free port and returns it with its
/// address, read from its log.
fn spawn_natter(data_dir: &std::path::Path, database: Option<&str>) -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
    cmd.args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--xmpp", "127.0.0.1:0", "--xmpps", "127.0.0.1:0"])
        .env("NATTER_LOG", "info")
        .env("NO_COLOR", "1")
        .env("NATTER_ACCOUNTS__SCRAM_ITERATIONS", "4096")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    let mut child = cmd.spawn().expect("spawn natter");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("natter exited before listening")
            .unwrap();
        if let Some(rest) = line.split("http=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // keep draining the log so the child never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), format!("http://{addr}"))
}

async fn wait_ready(base: &str) {
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{base} not ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_minus_nine_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let database = match natter_testkit::backend() {
        "postgres" => Some(natter_testkit::fresh_postgres_url().await),
        _ => None,
    };
    let (proc_, base) = spawn_natter(dir.path(), database.as_deref());
    wait_ready(&base).await;
    let anon = Client::new(&base);
    for name in ["alice", "bob", "carol", "dave"] {
        anon.post(
            "/api/v1/accounts",
            json!({"username": name, "password": natter_testkit::PASSWORD}),
        )
        .await
        .expect(201);
    }
    let owner = anon.log_in("alice", natter_testkit::PASSWORD).await;
    let g = owner.group("load", &["bob", "carol", "dave"]).await;
    let mut senders = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        senders.push(anon.log_in(name, natter_testkit::PASSWORD).await);
    }

    // Four senders loop until the server dies; each records what was
    // acknowledged (201) before the connection broke.
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let g = g.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for j in 0.. {
                    let sent = c
                        .try_post(
                            &format!("/api/v1/conversations/{g}/messages"),
                            json!({"client_id": format!("{i}-{j}"), "body": format!("{i}-{j}")}),
                        )
                        .await;
                    match sent {
                        Some(r) if r.status == 201 => acked.push(r.body["message"].clone()),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut child = proc_;
    child.0.kill().expect("kill -9");
    child.0.wait().unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "the load ran ({} acknowledged)",
        acked.len()
    );

    let (_proc2, base2) = spawn_natter(dir.path(), database.as_deref());
    wait_ready(&base2).await;
    let reader = owner.with_base(&base2);
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let r = reader
            .get(&format!(
                "/api/v1/conversations/{g}/messages?after={after}&limit=100"
            ))
            .await;
        let page = r.expect(200).clone();
        let msgs = page["messages"].as_array().unwrap().clone();
        if msgs.is_empty() {
            break;
        }
        after = msgs.last().unwrap()["seq"].as_i64().unwrap();
        stored.extend(msgs);
    }
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "gap-free after the crash"
    );
    for m in &acked {
        assert_eq!(
            &stored[(m["seq"].as_i64().unwrap() - 1) as usize],
            m,
            "acknowledged message lost or changed"
        );
    }
}
