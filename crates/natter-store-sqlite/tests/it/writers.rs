//! The single-writer design under pressure: many concurrent writers, and
//! two stores (as two processes would) writing the same file at once.

use std::sync::Arc;
use std::time::Instant;

use natter_store::conformance::now;
use natter_store::{HistoryQuery, NewGroup, NewMessage, Store, StoreError};
use natter_types::{Conversation, ConversationId, GroupTitle, User};

use crate::Sqlite;

pub use natter_store::conformance::user;

pub async fn group(store: &dyn Store, owner: &User, members: &[User]) -> Conversation {
    store
        .create_group(NewGroup {
            id: ConversationId::new(),
            title: GroupTitle::parse("Load").unwrap(),
            owner: owner.id,
            members: members.iter().map(|u| u.id).collect(),
            now: now(),
        })
        .await
        .unwrap()
}

pub fn message(conv: &Conversation, sender: &User, client_id: &str) -> NewMessage {
    natter_store::conformance::new_message(conv.id, sender.id, client_id, "load test")
}

/// Starts `tasks` tasks per store, each appending `each` messages in turn,
/// and returns every sequence number handed out, or the first error.
async fn hammer(
    stores: &[Arc<dyn Store>],
    conv: &Conversation,
    senders: &[User],
    tasks: usize,
    each: usize,
) -> Result<Vec<i64>, StoreError> {
    let mut handles = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for t in 0..tasks {
            let store = store.clone();
            let conv = conv.clone();
            let sender = senders[s * tasks + t].clone();
            handles.push(tokio::spawn(async move {
                let mut seqs = Vec::with_capacity(each);
                for i in 0..each {
                    let a = store
                        .append_message(message(&conv, &sender, &format!("w{s}-{t}-{i}")))
                        .await?;
                    assert!(a.created);
                    seqs.push(a.message.seq);
                }
                Ok::<_, StoreError>(seqs)
            }));
        }
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap()?);
    }
    all.sort_unstable();
    Ok(all)
}

/// Two stores on one file are two writer threads competing for SQLite's
/// write lock, as two processes would. `BEGIN IMMEDIATE` takes the lock up
/// front and the busy timeout waits for it, so neither ever fails with
/// "database is locked", and sequence numbers stay gap-free across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_heavy_writers_never_see_a_locked_database() {
    const TASKS: usize = 8;
    const EACH: usize = 500;
    let h = Sqlite::temp();
    let a: Arc<dyn Store> = Arc::new(h.store());
    let b: Arc<dyn Store> = Arc::new(h.store());
    let owner = user(&*a, "owner").await;
    let mut senders = Vec::new();
    for i in 0..2 * TASKS {
        senders.push(user(&*a, &format!("w{i}")).await);
    }
    let conv = group(&*a, &owner, &senders).await;

    let started = Instant::now();
    let seqs = hammer(&[a.clone(), b.clone()], &conv, &senders, TASKS, EACH)
        .await
        .unwrap_or_else(|e| panic!("a writer failed: {e}"));
    let n = 2 * TASKS * EACH;
    eprintln!(
        "{n} appends from two stores in {:?} ({:.0}/s)",
        started.elapsed(),
        n as f64 / started.elapsed().as_secs_f64()
    );
    assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>());
    // and both stores read the same, complete history
    for store in [&a, &b] {
        let conv = store.conversation(conv.id).await.unwrap().unwrap();
        assert_eq!(conv.last_seq, n as i64);
        let page = store
            .messages(
                conv.id,
                HistoryQuery {
                    before: None,
                    after: Some(n as i64 - 10),
                    limit: 100,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.len(), 10);
    }
}

/// Many tasks on one store: failing appends (not a member) interleave with
/// good ones in the same batches and never leave a gap or take a good
/// append down with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_inside_a_batch_stay_inside_their_job() {
    let h = Sqlite::temp();
    let store: Arc<dyn Store> = Arc::new(h.store());
    let owner = user(&*store, "owner").await;
    let outsider = user(&*store, "outsider").await;
    let mut senders = Vec::new();
    for i in 0..20 {
        senders.push(user(&*store, &format!("m{i}")).await);
    }
    let conv = group(&*store, &owner, &senders).await;
    let mut handles = Vec::new();
    for (t, sender) in senders.iter().enumerate() {
        let (store, conv, sender, outsider) = (
            store.clone(),
            conv.clone(),
            sender.clone(),
            outsider.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                if i % 3 == 0 {
                    let r = store
                        .append_message(message(&conv, &outsider, &format!("x{t}-{i}")))
                        .await;
                    assert!(matches!(r, Err(StoreError::NotMember)), "{r:?}");
                }
                let a = store
                    .append_message(message(&conv, &sender, &format!("ok{i}")))
                    .await
                    .unwrap();
                seqs.push(a.message.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1000).collect::<Vec<_>>());
}

/// Throughput with 100 concurrent senders, for the record; run with
/// `cargo test -p natter-store-sqlite --release -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput_with_100_senders() {
    const SENDERS: usize = 100;
    const EACH: usize = 500;
    let h = Sqlite::temp();
    let store: Arc<dyn Store> = Arc::new(h.store());
    let owner = user(&*store, "owner").await;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(user(&*store, &format!("s{i}")).await);
    }
    // ten groups of ten, like a busy server rather than one hot room
    let mut convs = Vec::new();
    for chunk in senders.chunks(10) {
        convs.push(group(&*store, &owner, chunk).await);
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for (i, sender) in senders.iter().enumerate() {
        let (store, conv, sender) = (store.clone(), convs[i / 10].clone(), sender.clone());
        handles.push(tokio::spawn(async move {
            for j in 0..EACH {
                store
                    .append_message(message(&conv, &sender, &format!("b{j}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let n = SENDERS * EACH;
    let elapsed = started.elapsed();
    eprintln!(
        "{n} durable appends by {SENDERS} senders in {elapsed:?}: {:.0}/s",
        n as f64 / elapsed.as_secs_f64()
    );
}

/// The write connection does not checkpoint (SQLite's auto-checkpoint is
/// replaced by a hook that wakes the checkpointer thread), so the database
/// file grows only if that thread copies the log into it while writes go
/// on. Without it, a few megabytes of messages would stay in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_is_checkpointed_beside_the_writer() {
    let h = Sqlite::temp();
    let store: Arc<dyn Store> = Arc::new(h.store());
    let owner = user(&*store, "owner").await;
    let mut senders = Vec::new();
    for i in 0..20 {
        senders.push(user(&*store, &format!("c{i}")).await);
    }
    let conv = group(&*store, &owner, &senders).await;
    let file_size = || std::fs::metadata(&h.path).unwrap().len();
    let before = file_size();

    // 2,000 messages of 2 KB: about 4 MB of rows, well over the 1,000
    // log pages (4 MB) that wake the checkpointer
    let body = "x".repeat(2_000);
    let mut handles = Vec::new();
    for (t, sender) in senders.iter().enumerate() {
        let (store, conv, sender, body) =
            (store.clone(), conv.clone(), sender.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..100 {
                store
                    .append_message(natter_store::conformance::new_message(
                        conv.id,
                        sender.id,
                        &format!("k{t}-{i}"),
                        &body,
                    ))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }

    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while file_size() < before + (2 << 20) {
        assert!(
            Instant::now() < deadline,
            "the database file stayed at {} bytes (from {before}): nothing was checkpointed",
            file_size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // and what was copied reads back whole
    let page = store
        .messages(
            conv.id,
            HistoryQuery {
                before: None,
                after: None,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(page[0].seq, 2_000);
    assert_eq!(page[0].body.as_deref(), Some(body.as_str()));
}
