//! Test harness: starts the real server in-process on `127.0.0.1:0` with a
//! fresh database, and gives tests a small JSON client.
//!
//! The backend is SQLite in a temporary directory by default. With
//! `NATTER_TEST_BACKEND=postgres` every server gets a fresh schema in the
//! PostgreSQL named by `NATTER_TEST_POSTGRES_URL` (default
//! `postgres://root@127.0.0.1:5432/test`), so the same tests prove both
//! backends.

use std::net::SocketAddr;
use std::sync::Arc;

use natter_server::Config;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use serde_json::json;

pub mod stream;
pub mod xmpp;

/// Password used by [`TestServer::user`].
pub const PASSWORD: &str = "correct horse battery";

const DEFAULT_PG: &str = "postgres://root@127.0.0.1:5432/test";

/// A running server. Dropping it stops the server without waiting; call
/// [`TestServer::stop`] to wait for a graceful shutdown.
pub struct TestServer {
    pub addr: SocketAddr,
    /// XMPP c2s (STARTTLS) and direct-TLS addresses.
    pub xmpp_addr: SocketAddr,
    pub xmpps_addr: SocketAddr,
    pub config: Config,
    dir: Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The database backend the tests run on, from `NATTER_TEST_BACKEND`.
pub fn backend() -> &'static str {
    match std::env::var("NATTER_TEST_BACKEND").as_deref() {
        Ok("postgres") => "postgres",
        _ => "sqlite",
    }
}

/// A fresh PostgreSQL schema, and the database URL that selects it.
pub async fn fresh_postgres_url() -> String {
    let base = std::env::var("NATTER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.into());
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("NATTER_TEST_BACKEND=postgres but {base} is unreachable: {e}"));
    tokio::spawn(conn);
    drop_stale_schemas(&client).await;
    let schema = format!("natter_t_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// Schemas of earlier runs are dropped once they are an hour old (their
/// names carry a v7 UUID, hence their creation time), so the test database
/// does not fill up while concurrent runs keep theirs.
async fn drop_stale_schemas(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'natter\\_t\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for row in rows {
        let name: String = row.get(0);
        let created = uuid::Uuid::parse_str(&name["natter_t_".len()..])
            .ok()
            .and_then(|id| id.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
            });
        if created.is_some_and(|t| t < cutoff) {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
}

impl TestServer {
    /// A server with default settings and a fresh database.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with a fresh database and settings changed by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        config.xmpp.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.xmpp.tls_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        // The RFC minimum keeps tests fast; production uses more.
        config.accounts.scram_iterations = 4096;
        if backend() == "postgres" {
            config.database = Some(fresh_postgres_url().await);
        }
        tune(&mut config);
        Self::launch(config, dir).await
    }

    async fn launch(mut config: Config, dir: Arc<tempfile::TempDir>) -> Self {
        let listeners = natter_server::Listeners::bind(&config).await.expect("bind");
        let addr = listeners.http.local_addr().expect("local addr");
        let xmpp_addr = listeners
            .xmpp
            .as_ref()
            .map(|l| l.local_addr().expect("local addr"))
            .unwrap_or(config.xmpp.listen);
        let xmpps_addr = listeners
            .xmpps
            .as_ref()
            .map(|l| l.local_addr().expect("local addr"))
            .unwrap_or(config.xmpp.tls_listen);
        // A restart binds the same ports again.
        config.http = addr;
        config.xmpp.listen = xmpp_addr;
        config.xmpp.tls_listen = xmpps_addr;
        let (tx, rx) = oneshot::channel::<()>();
        let run_config = config.clone();
        let task = tokio::spawn(async move {
            natter_server::serve(run_config, listeners, async {
                let _ = rx.await;
            })
            .await
            .expect("server failed");
        });
        let server = Self {
            addr,
            xmpp_addr,
            xmpps_addr,
            config,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("server at {} did not become ready", self.addr);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A client without credentials.
    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: format!("http://{}", self.addr),
            token: None,
        }
    }

    /// Signs up `username` (password [`PASSWORD`]) and returns a client
    /// logged in as them.
    pub async fn user(&self, username: &str) -> Client {
        let c = self.client();
        let r = c
            .post(
                "/api/v1/accounts",
                json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201, "sign-up of {username}: {}", r.body);
        c.log_in(username, PASSWORD).await
    }

    /// Stops gracefully: in-flight requests finish and the store closes.
    pub async fn stop(mut self) -> (Config, Arc<tempfile::TempDir>) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
        (self.config.clone(), self.dir.clone())
    }

    /// Stops gracefully and starts again on the same database and port.
    pub async fn restart(self) -> Self {
        let (config, dir) = self.stop().await;
        Self::launch(config, dir).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A JSON-over-HTTP client for tests, optionally holding a bearer token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

/// A response: status, headers and the body parsed as JSON (or `Null`).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected response: {}", self.text);
        &self.body
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected response: {}",
            self.text
        );
    }
}

impl Client {
    /// A client for the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            token: None,
        }
    }

    /// The same credentials against another server (another node, or the
    /// same database after a restart on a new port).
    pub fn with_base(&self, base: &str) -> Client {
        Client {
            base: base.to_owned(),
            ..self.clone()
        }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// Logs in and returns a client holding the new token.
    pub async fn log_in(&self, username: &str, password: &str) -> Client {
        let r = self
            .post(
                "/api/v1/sessions",
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(r.status, 201, "log-in of {username}: {}", r.text);
        self.with_token(r.body["token"].as_str().expect("token"))
    }

    /// Sends any request; `body` as JSON when given.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::finish(req).await
    }

    /// Sends a raw body with a content type, for malformed-input tests.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        Self::finish(req).await
    }

    /// Like [`Client::post`], but `None` when the server could not be
    /// reached or the connection broke, for tests that kill servers.
    pub async fn try_post(&self, path: &str, body: Value) -> Option<Response> {
        let mut req = self.http.post(format!("{}{}", self.base, path)).json(&body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.ok()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Some(Response {
            status,
            headers,
            body,
            text,
        })
    }

    async fn finish(req: reqwest::RequestBuilder) -> Response {
        let resp = req.send().await.expect("request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.send(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.send(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.send(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Response {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates (or finds) the direct conversation with `with`; returns its id.
    pub async fn direct(&self, with: &str) -> String {
        let r = self
            .post(
                "/api/v1/conversations",
                json!({"kind": "direct", "with": with}),
            )
            .await;
        assert!(r.status == 201 || r.status == 200, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// The member `username` of a conversation, as the conversation's
    /// details show it (role, `read_seq`, `delivered_seq`, …).
    pub async fn member(&self, conversation: &str, username: &str) -> Value {
        let r = self
            .get(&format!("/api/v1/conversations/{conversation}"))
            .await;
        r.expect(200)["members"]
            .as_array()
            .expect("a members array")
            .iter()
            .find(|m| m["username"] == username)
            .unwrap_or_else(|| panic!("{username} is not a member: {}", r.text))
            .clone()
    }

    /// Creates a group with the given members; returns its id.
    pub async fn group(&self, title: &str, members: &[&str]) -> String {
        let r = self
            .post(
                "/api/v1/conversations",
                json!({"kind": "group", "title": title, "members": members}),
            )
            .await;
        r.expect(201);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Sends a message and returns the stored message.
    pub async fn say(&self, conversation: &str, client_id: &str, body: &str) -> Value {
        let r = self
            .post(
                &format!("/api/v1/conversations/{conversation}/messages"),
                json!({"client_id": client_id, "body": body}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["message"].clone()
    }
}
