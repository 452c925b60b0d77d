//! A fault-injecting TCP proxy in front of a test server, to reproduce
//! the networks the SDK must survive: a proxy that refuses WebSocket
//! upgrades, one that cuts upgraded connections, answers lost after the
//! server acted on a request, and the server being unreachable.
//!
//! It looks only at the first request line of each connection (clients
//! open a fresh connection for every WebSocket, and the tests give each
//! fault its own client), and otherwise copies bytes both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    upstream: SocketAddr,
    refuse_websocket: AtomicBool,
    /// Milliseconds after which upgraded connections are cut (0: never).
    cut_websocket_ms: AtomicU32,
    /// How many more answers to `POST …/messages` to swallow.
    drop_send_answers: AtomicU32,
    down: AtomicBool,
    dropped: AtomicU32,
    websocket_attempts: AtomicU32,
    kill: watch::Sender<u64>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.kill_connections();
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream,
            refuse_websocket: AtomicBool::new(false),
            cut_websocket_ms: AtomicU32::new(0),
            drop_send_answers: AtomicU32::new(0),
            down: AtomicBool::new(false),
            dropped: AtomicU32::new(0),
            websocket_attempts: AtomicU32::new(0),
            kill: watch::channel(0).0,
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(handle(conn, st.clone()));
            }
        });
        Proxy { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers WebSocket upgrades with 403, as proxies that block
    /// WebSocket do.
    pub fn refuse_websocket(&self, on: bool) {
        self.state.refuse_websocket.store(on, Ordering::SeqCst);
    }

    /// Cuts every upgraded connection this long after it opened.
    pub fn cut_websocket_after(&self, after: Option<Duration>) {
        let ms = after.map(|d| d.as_millis().max(1) as u32).unwrap_or(0);
        self.state.cut_websocket_ms.store(ms, Ordering::SeqCst);
    }

    /// Lets the next `n` sends reach the server but swallows their answers.
    pub fn drop_send_answers(&self, n: u32) {
        self.state.drop_send_answers.store(n, Ordering::SeqCst);
    }

    /// While down, connections are closed as soon as they open, and the
    /// open ones are cut.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        if down {
            self.kill_connections();
        }
    }

    pub fn kill_connections(&self) {
        self.state.kill.send_modify(|g| *g += 1);
    }

    pub fn dropped_answers(&self) -> u32 {
        self.state.dropped.load(Ordering::SeqCst)
    }

    pub fn websocket_attempts(&self) -> u32 {
        self.state.websocket_attempts.load(Ordering::SeqCst)
    }
}

const REFUSED: &str =
    r#"{"error":{"code":"websocket_blocked","message":"this proxy does not carry WebSocket"}}"#;

async fn handle(mut client: TcpStream, st: Arc<State>) {
    if st.down.load(Ordering::SeqCst) {
        return;
    }
    let mut kill = st.kill.subscribe();
    // the head of the first request
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::select! {
            r = client.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = kill.changed() => return,
        };
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > 64 * 1024 {
            break;
        }
    }
    let first_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let is_ws = first_line.starts_with("GET /api/v1/stream");
    if is_ws {
        st.websocket_attempts.fetch_add(1, Ordering::SeqCst);
        if st.refuse_websocket.load(Ordering::SeqCst) {
            let answer = format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{REFUSED}",
                REFUSED.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
            let _ = client.shutdown().await;
            return;
        }
    }
    let Ok(mut upstream) = TcpStream::connect(st.upstream).await else {
        return;
    };
    if upstream.write_all(&head).await.is_err() {
        return;
    }
    let is_send = first_line.starts_with("POST ") && first_line.contains("/messages");
    let swallow = is_send
        && st
            .drop_send_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if swallow {
        // the request goes through; the answer is read and thrown away
        let (mut client_read, _client_write) = client.split();
        let (mut up_read, mut up_write) = upstream.split();
        let forward = tokio::io::copy(&mut client_read, &mut up_write);
        let mut answer = [0u8; 1];
        tokio::select! {
            _ = forward => {}
            r = up_read.read(&mut answer) => {
                if matches!(r, Ok(n) if n > 0) {
                    st.dropped.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        return;
    }
    let cut_ms = st.cut_websocket_ms.load(Ordering::SeqCst);
    let cut = async {
        if is_ws && cut_ms > 0 {
            tokio::time::sleep(Duration::from_millis(cut_ms.into())).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cut => {}
        _ = kill.changed() => {}
    }
}
