//! End-to-end tests of the command-line client: the real `natter` binary,
//! run as a process with its own configuration directory against
//! in-process servers, checking what it prints and how it exits — for
//! every subcommand, and for what goes wrong (unreachable server, wrong
//! password, expired or revoked session, unknown user or conversation,
//! empty input, bad usage).
//!
//! Processes are run with `tokio::process`, never blocking: the servers
//! they talk to share the test's runtime.

use std::process::Stdio;
use std::time::Duration;

use natter_testkit::{PASSWORD, TestServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Exit codes, as documented by `natter send --help`.
const USAGE: i32 = 2;
const NETWORK: i32 = 3;
const AUTH: i32 = 4;
const PERMISSION: i32 = 5;
const NOT_FOUND: i32 = 6;
const INVALID: i32 = 7;
const RATE_LIMITED: i32 = 8;

/// One user's command line: a configuration directory and a server.
struct Cli {
    dir: tempfile::TempDir,
    server: Option<String>,
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "failed: {self:#?}");
        &self.stdout
    }

    #[track_caller]
    fn fails(&self, code: i32, stderr_has: &str) {
        assert_eq!(self.code, code, "unexpected exit: {self:#?}");
        assert!(
            self.stderr.contains(stderr_has),
            "stderr lacks {stderr_has:?}: {self:#?}"
        );
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok().trim()).expect("JSON output")
    }

    fn json_lines(&self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

impl Cli {
    fn new(server: &TestServer) -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
            server: Some(server.url("")),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.args(args)
            .env("NATTER_CONFIG_DIR", self.dir.path())
            .env_remove("NATTER_PASSWORD")
            .env_remove("NATTER_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(s) = &self.server {
            cmd.env("NATTER_SERVER", s);
        }
        cmd
    }

    /// Runs `natter ARGS` with `stdin` as its standard input.
    async fn run_with(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = self.command(args).spawn().expect("spawn natter");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("natter finished in time")
            .unwrap();
        Out {
            code: out.status.code().expect("exited"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, "").await
    }

    /// Signs `name` up (password [`PASSWORD`]) and stays logged in.
    async fn signup(&self, name: &str) {
        self.run_with(&["signup", name, "--password-stdin"], PASSWORD)
            .await
            .ok();
    }
}

fn admin_args<'a>(server: &'a TestServer, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "admin",
        "--data-dir",
        server.config.data_dir.to_str().unwrap(),
    ];
    if let Some(db) = &server.config.database {
        args.extend(["--database", db.as_str()]);
    }
    args.extend(rest);
    args
}

#[tokio::test]
async fn accounts_log_in_and_out() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);

    let out = cli
        .run_with(
            &[
                "signup",
                "alice",
                "--display-name",
                "Alice",
                "--password-stdin",
            ],
            PASSWORD,
        )
        .await;
    assert!(out.ok().contains("created account alice and logged in"));
    let file = cli.dir.path().join("client.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }
    assert!(std::fs::read_to_string(&file).unwrap().contains("token"));

    let out = cli.run(&["whoami"]).await;
    assert!(
        out.ok().starts_with("alice (Alice) on http://127.0.0.1:"),
        "{out:?}"
    );
    let me = cli.run(&["whoami", "--json"]).await.json();
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["server"], server.url(""));

    // taken, invalid, no password
    cli.run_with(&["signup", "alice", "--password-stdin"], PASSWORD)
        .await
        .fails(INVALID, "already exists");
    cli.run_with(&["signup", "Not Valid", "--password-stdin"], PASSWORD)
        .await
        .fails(INVALID, "username");
    cli.run_with(&["signup", "bob", "--password-stdin"], "short")
        .await
        .fails(INVALID, "password");
    cli.run_with(&["signup", "bob", "--password-stdin"], "")
        .await
        .fails(INVALID, "no password");
    cli.run(&["login", "alice"])
        .await
        .fails(USAGE, "no password");

    let out = cli.run(&["logout"]).await;
    assert!(out.ok().contains("logged out of"));
    cli.run(&["whoami"]).await.fails(AUTH, "not logged in");
    cli.run(&["logout"]).await.fails(AUTH, "not logged in");

    cli.run_with(&["login", "alice", "--password-stdin"], "wrong password")
        .await
        .fails(AUTH, "invalid username or password");
    cli.run_with(&["login", "nobody", "--password-stdin"], PASSWORD)
        .await
        .fails(AUTH, "invalid username or password");
    let out = cli
        .run_with(&["login", "alice", "--password-stdin", "--json"], PASSWORD)
        .await;
    assert_eq!(out.json()["user"]["username"], "alice");
    cli.run(&["whoami"]).await.ok();

    // NATTER_PASSWORD works too, and --server beats the stored server
    let other = TestServer::start().await;
    let mut cmd = cli.command(&["signup", "carol", "--server", &other.url("")]);
    cmd.env("NATTER_PASSWORD", PASSWORD).stdin(Stdio::null());
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    // the last login is the default server now; each server keeps its session
    let mut cmd = cli.command(&["whoami"]);
    cmd.env_remove("NATTER_SERVER");
    let out = cmd.output().await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("carol"),
        "{out:?}"
    );
    let out = cli.run(&["whoami"]).await;
    assert!(out.ok().starts_with("alice"), "{out:?}");
}

#[tokio::test]
async fn network_usage_and_rate_limit_failures() {
    let server = TestServer::start_with(|c| c.limits.login_failures_per_minute = 1).await;
    let cli = Cli::new(&server);
    cli.signup("alice").await;

    // a dead server
    let mut dead = Cli::new(&server);
    dead.server = Some("http://127.0.0.1:1".into());
    dead.run_with(&["login", "alice", "--password-stdin"], PASSWORD)
        .await
        .fails(NETWORK, "network error");
    dead.run_with(&["signup", "x", "--password-stdin"], PASSWORD)
        .await
        .fails(NETWORK, "refused");

    // usage
    let mut nowhere = Cli::new(&server);
    nowhere.server = None;
    nowhere
        .run(&["whoami"])
        .await
        .fails(USAGE, "no server given");
    cli.run(&["whoami", "--server", "ftp://127.0.0.1"])
        .await
        .fails(USAGE, "unsupported scheme");
    cli.run(&["send"]).await.fails(USAGE, "required");
    cli.run(&["send", "bob", "hi"])
        .await
        .fails(USAGE, "neither @username nor a conversation id");
    cli.run(&["conversations", "create", "--direct", "bob", "--group", "G"])
        .await
        .fails(USAGE, "cannot be used with");
    cli.run(&["history", "@bob", "--all", "--before", "3"])
        .await
        .fails(USAGE, "cannot be used with");
    cli.run(&["frobnicate"]).await.fails(USAGE, "unrecognized");

    // too many failed log-ins
    let mut last = cli
        .run_with(&["login", "alice", "--password-stdin"], "wrong password")
        .await;
    for _ in 0..3 {
        if last.code == RATE_LIMITED {
            break;
        }
        last = cli
            .run_with(&["login", "alice", "--password-stdin"], "wrong password")
            .await;
    }
    last.fails(RATE_LIMITED, "retry in");

    // the server goes away under a logged-in user
    server.stop().await;
    cli.run(&["whoami"]).await.fails(NETWORK, "network error");
    cli.run(&["conversations", "list"])
        .await
        .fails(NETWORK, "network error");
}

#[tokio::test]
async fn an_expired_session_asks_to_log_in_again() {
    let server = TestServer::start_with(|c| c.accounts.session_ttl_secs = 1).await;
    let cli = Cli::new(&server);
    cli.signup("alice").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cli.run(&["whoami"]).await.fails(AUTH, "natter login");
    cli.run(&["send", "@alice", "hi"])
        .await
        .fails(AUTH, "expired");
    cli.run(&["tail"]).await.fails(AUTH, "log in again");
    // Logging in again works. (A command after it is not checked: with a
    // one-second session it would race the clock on a loaded machine.)
    cli.run_with(&["login", "alice", "--password-stdin"], PASSWORD)
        .await
        .ok();
}

#[tokio::test]
async fn users_and_contacts() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    cli.signup("alice").await;
    server.user("bob").await;
    server.user("bobby").await;

    let out = cli.run(&["users", "search", "bob"]).await;
    let text = out.ok();
    assert!(text.starts_with("USERNAME"), "{text}");
    assert!(text.contains("bob ") && text.contains("bobby"), "{text}");
    let found = cli.run(&["users", "search", "bobb", "--json"]).await.json();
    assert_eq!(found["users"].as_array().unwrap().len(), 1);
    let out = cli.run(&["users", "search", "zed"]).await;
    assert!(out.ok().is_empty() && out.stderr.contains("no users"));
    cli.run(&["users", "search", " "])
        .await
        .fails(INVALID, "must not be empty");

    let out = cli
        .run(&[
            "contacts", "add", "bob", "--name", "Bobby", "--group", "friends",
        ])
        .await;
    assert!(out.ok().contains("added bob"));
    let out = cli
        .run(&["contacts", "add", "bob", "--group", "work"])
        .await;
    assert!(out.ok().contains("updated bob"));
    let out = cli.run(&["contacts", "list"]).await;
    assert!(out.ok().contains("work"), "{out:?}");
    let list = cli.run(&["contacts", "list", "--json"]).await.json();
    assert_eq!(list["contacts"][0]["username"], "bob");
    cli.run(&["contacts", "add", "nobody"])
        .await
        .fails(NOT_FOUND, "not found");
    cli.run(&["contacts", "add", "alice"])
        .await
        .fails(INVALID, "yourself");
    cli.run(&["contacts", "remove", "bob"]).await.ok();
    cli.run(&["contacts", "remove", "bob"])
        .await
        .fails(NOT_FOUND, "contact not found");
    let out = cli.run(&["contacts", "list"]).await;
    assert!(out.ok().is_empty() && out.stderr.contains("no contacts"));
}

#[tokio::test]
async fn conversations_messages_and_read_markers() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    cli.signup("alice").await;
    let bob = server.user("bob").await;
    server.user("carol").await;

    // create
    let direct = cli
        .run(&["conversations", "create", "--direct", "bob", "--json"])
        .await
        .json();
    let direct_id = direct["id"].as_str().unwrap().to_owned();
    let out = cli
        .run(&[
            "conversations",
            "create",
            "--group",
            "Team",
            "--member",
            "bob",
            "--member",
            "carol",
        ])
        .await;
    assert!(
        out.ok().contains("group \"Team\" with 3 members"),
        "{out:?}"
    );
    cli.run(&[
        "conversations",
        "create",
        "--group",
        "X",
        "--member",
        "nobody",
    ])
    .await
    .fails(INVALID, "no such users: nobody");
    cli.run(&["conversations", "create", "--direct", "nobody"])
        .await
        .fails(NOT_FOUND, "user not found");

    // send: arguments, standard input, idempotent, failures
    let out = cli.run(&["send", "@bob", "hello", "bob"]).await;
    assert_eq!(out.ok().trim(), "sent #1 to @bob");
    let out = cli
        .run_with(&["send", &direct_id], "line one\nline two\n")
        .await;
    assert!(out.ok().contains("sent #2"));
    let args = ["send", "@bob", "once", "--client-id", "cli-1", "--json"];
    let first = cli.run(&args).await.json();
    assert_eq!(first["created"], true);
    let again = cli.run(&args).await.json();
    assert_eq!(again["created"], false);
    assert_eq!(again["message"]["id"], first["message"]["id"]);
    cli.run(&["send", "@bob"]).await.fails(INVALID, "empty");
    cli.run_with(&["send", "@bob"], "  \n")
        .await
        .fails(INVALID, "empty");
    cli.run(&["send", "@nobody", "hi"])
        .await
        .fails(NOT_FOUND, "user not found");
    let stranger_conv = bob.group("Private", &["carol"]).await;
    cli.run(&["send", &stranger_conv, "let me in"])
        .await
        .fails(PERMISSION, "not a member");
    let unknown = uuid::Uuid::now_v7().to_string();
    cli.run(&["send", &unknown, "hi"])
        .await
        .fails(NOT_FOUND, "conversation not found");

    // history
    let lines = cli.run(&["history", "@bob", "--json"]).await.json_lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["body"], "line one\nline two");
    let out = cli.run(&["history", "@bob"]).await;
    let text = out.ok();
    assert!(text.contains("#1  alice: hello bob"), "{text}");
    assert!(text.contains("line one\n"), "{text}");
    let out = cli.run(&["history", "@bob", "--limit", "1"]).await;
    assert!(
        out.ok().contains("#3") && out.stderr.contains("--before 3"),
        "{out:?}"
    );
    let page = cli
        .run(&["history", "@bob", "--after", "1", "--limit", "1", "--json"])
        .await
        .json_lines();
    assert_eq!(page[0]["seq"], 2);
    let page = cli
        .run(&["history", &direct_id, "--before", "2", "--json"])
        .await
        .json_lines();
    assert_eq!(page.len(), 1);
    cli.run(&["history", "@carol"])
        .await
        .fails(NOT_FOUND, "no conversation with @carol");
    cli.run(&["history", &unknown])
        .await
        .fails(NOT_FOUND, "not found");
    cli.run(&["history", &stranger_conv])
        .await
        .fails(PERMISSION, "not a member");
    cli.run(&["history", "@bob", "--limit", "1000"])
        .await
        .fails(INVALID, "limit");

    // list with unread counts, members, read
    for i in 0..4 {
        bob.say(&direct_id, &format!("b{i}"), "from bob").await;
    }
    let out = cli.run(&["conversations", "list"]).await;
    let text = out.ok();
    let row = text
        .lines()
        .find(|l| l.contains("@bob"))
        .expect("a row for @bob");
    assert!(
        row.contains(" 4 ") && row.contains("bob: from bob"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("Team")), "{text}");
    let list = cli.run(&["conversations", "list", "--json"]).await.json();
    let d = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == direct_id.as_str())
        .unwrap();
    assert_eq!(d["unread"], 4);

    let out = cli.run(&["read", "@bob", "--seq", "5"]).await;
    assert_eq!(out.ok().trim(), "@bob: read up to #5");
    let read = cli.run(&["read", "@bob", "--json"]).await.json();
    assert_eq!(read["read_seq"], 7);
    let list = cli.run(&["conversations", "list", "--json"]).await.json();
    assert!(
        list["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["unread"] == 0)
    );
    cli.run(&["read", &unknown])
        .await
        .fails(NOT_FOUND, "not found");

    let out = cli.run(&["conversations", "members", "@bob"]).await;
    let text = out.ok();
    assert!(text.starts_with("USERNAME"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("alice") && l.contains(" 7 ")),
        "{text}"
    );
    let members = cli
        .run(&["conversations", "members", &direct_id, "--json"])
        .await
        .json();
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    cli.run(&["conversations", "members", &stranger_conv])
        .await
        .fails(PERMISSION, "not a member");
}

#[tokio::test]
async fn history_exports_everything_with_progress() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    cli.signup("alice").await;
    let bob = server.user("bob").await;
    let conv = bob.direct("alice").await;
    for i in 1..=250 {
        bob.say(&conv, &format!("m{i}"), &format!("message {i}"))
            .await;
    }
    let out = cli
        .run(&["history", "@bob", "--all", "--progress", "--json"])
        .await;
    let lines = out.json_lines();
    assert_eq!(lines.len(), 250);
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, m)| m["seq"] == i as i64 + 1)
    );
    assert!(out.stderr.contains("250/250 messages (100%)"), "{out:?}");
    assert!(out.stderr.contains("100/250"), "{out:?}");
    let out = cli
        .run(&["history", "@bob", "--all", "--after", "200"])
        .await;
    assert_eq!(out.ok().lines().count(), 50);
    assert!(out.stderr.is_empty(), "no progress when not asked: {out:?}");
}

/// Reads the child's standard error until a line containing `what`.
async fn wait_for(
    stderr: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    what: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {what:?} from tail in time"))
            .unwrap()
            .unwrap_or_else(|| panic!("tail ended before {what:?}"));
        if line.contains(what) {
            return line;
        }
    }
}

/// Reads the child's standard output until `n` `message.created` events,
/// returning their bodies.
async fn read_messages(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    n: usize,
) -> Vec<String> {
    let mut bodies = Vec::new();
    while bodies.len() < n {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("tail printed in time")
            .unwrap()
            .expect("tail still running");
        let e: Value = serde_json::from_str(&line).expect("a JSON event");
        if e["event"] == "message.created" {
            bodies.push(e["message"]["body"].as_str().unwrap().to_owned());
        }
    }
    bodies
}

#[tokio::test]
async fn tail_follows_and_resumes_across_a_restart() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    cli.signup("alice").await;
    let bob = server.user("bob").await;
    let conv = bob.direct("alice").await;

    let mut child = cli
        .command(&["tail", "@bob", "--json"])
        .spawn()
        .expect("spawn tail");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for(&mut stderr, "following").await;

    bob.say(&conv, "b1", "one").await;
    bob.say(&conv, "b2", "two").await;
    assert_eq!(read_messages(&mut lines, 2).await, ["one", "two"]);

    let server = server.restart().await;
    bob.say(&conv, "b3", "three").await;
    bob.say(&conv, "b4", "four").await;
    assert_eq!(read_messages(&mut lines, 2).await, ["three", "four"]);
    wait_for(&mut stderr, "resumed").await;

    // logging out elsewhere with the same session ends tail with code 4
    cli.run(&["logout"]).await.ok();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("tail ended")
        .unwrap();
    assert_eq!(status.code(), Some(AUTH));
    drop(server);
}

#[tokio::test]
async fn tail_prints_one_line_per_event_and_stops_after_count() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    cli.signup("alice").await;
    let bob = server.user("bob").await;
    let conv = bob.direct("alice").await;
    bob.say(&conv, "b1", "earlier").await;

    // from the start of the log: the catch-up is printed too
    let out = cli
        .run(&[
            "tail",
            "@bob",
            "--from",
            "0-0",
            "--count",
            "2",
            "--transport",
            "long-poll",
        ])
        .await;
    let text = out.ok();
    assert_eq!(text.lines().count(), 2, "{out:?}");
    assert!(
        text.contains("[@bob] conversation created (direct)"),
        "{text}"
    );
    assert!(text.contains("[@bob] #1 bob: earlier"), "{text}");
    assert!(out.stderr.contains("long-poll"), "{out:?}");
    cli.run(&["tail", "--from", "bogus"])
        .await
        .fails(INVALID, "cursor");
    cli.run(&["tail", "@nobody"])
        .await
        .fails(NOT_FOUND, "no conversation");
}

#[tokio::test]
async fn admin_manages_accounts_while_the_server_runs() {
    let server =
        TestServer::start_with(|c| c.registration = natter_server::config::Registration::Closed)
            .await;
    let cli = Cli::new(&server);
    cli.run_with(&["signup", "alice", "--password-stdin"], PASSWORD)
        .await
        .fails(PERMISSION, "registration is closed");

    let out = cli
        .run_with(
            &admin_args(
                &server,
                &[
                    "create-user",
                    "alice",
                    "--display-name",
                    "Alice",
                    "--password-stdin",
                ],
            ),
            PASSWORD,
        )
        .await;
    assert_eq!(out.ok().trim(), "created account alice");
    cli.run_with(&["login", "alice", "--password-stdin"], PASSWORD)
        .await
        .ok();
    cli.run(&["whoami"]).await.ok();

    cli.run_with(
        &admin_args(&server, &["create-user", "alice", "--password-stdin"]),
        PASSWORD,
    )
    .await
    .fails(INVALID, "already exists");
    cli.run_with(
        &admin_args(&server, &["create-user", "Bad Name", "--password-stdin"]),
        PASSWORD,
    )
    .await
    .fails(INVALID, "username");
    cli.run_with(
        &admin_args(&server, &["create-user", "dave", "--password-stdin"]),
        "short",
    )
    .await
    .fails(INVALID, "password");

    // a reset ends every session at once, also on the running server
    let out = cli
        .run_with(
            &admin_args(
                &server,
                &["reset-password", "alice", "--password-stdin", "--json"],
            ),
            "a brand new password",
        )
        .await;
    assert_eq!(out.json()["sessions_revoked"], true);
    cli.run(&["whoami"]).await.fails(AUTH, "log in again");
    cli.run_with(&["login", "alice", "--password-stdin"], PASSWORD)
        .await
        .fails(AUTH, "invalid username or password");
    cli.run_with(
        &["login", "alice", "--password-stdin"],
        "a brand new password",
    )
    .await
    .ok();
    cli.run_with(
        &admin_args(&server, &["reset-password", "nobody", "--password-stdin"]),
        PASSWORD,
    )
    .await
    .fails(NOT_FOUND, "user not found");

    // disabling ends the sessions and refuses log-ins, over REST too;
    // enabling lets the account back in
    let rest = server
        .client()
        .log_in("alice", "a brand new password")
        .await;
    let out = cli
        .run(&admin_args(&server, &["disable-user", "alice", "--json"]))
        .await;
    assert_eq!(out.json()["disabled"], true);
    cli.run(&["whoami"]).await.fails(AUTH, "log in again");
    rest.get("/api/v1/me")
        .await
        .expect_error(401, "unauthenticated");
    server
        .client()
        .post(
            "/api/v1/sessions",
            natter_testkit::json!({"username": "alice", "password": "a brand new password"}),
        )
        .await
        .expect_error(403, "account_disabled");
    // a wrong password does not learn that the account is disabled
    server
        .client()
        .post(
            "/api/v1/sessions",
            natter_testkit::json!({"username": "alice", "password": "not the password"}),
        )
        .await
        .expect_error(401, "invalid_credentials");
    cli.run_with(
        &["login", "alice", "--password-stdin"],
        "a brand new password",
    )
    .await
    .fails(PERMISSION, "disabled");
    cli.run(&admin_args(&server, &["disable-user", "nobody"]))
        .await
        .fails(NOT_FOUND, "user not found");
    let out = cli
        .run(&admin_args(&server, &["enable-user", "alice"]))
        .await;
    assert_eq!(out.ok().trim(), "enabled alice");
    cli.run_with(
        &["login", "alice", "--password-stdin"],
        "a brand new password",
    )
    .await
    .ok();

    let out = cli.run(&admin_args(&server, &["list-users"])).await;
    assert!(
        out.ok()
            .lines()
            .any(|l| l.starts_with("alice") && l.contains("Alice"))
    );

    // enough users that the listing must split its directory pages
    let big = TestServer::start().await;
    for i in 0..60 {
        big.user(&format!("u{i:02}")).await;
    }
    big.user("zed").await;
    let list = cli
        .run(&admin_args(&big, &["list-users", "--json"]))
        .await
        .json();
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 61, "{names:?}");
    assert_eq!((names[0], names[60]), ("u00", "zed"));
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );

    cli.run(&[
        "admin",
        "--config",
        "/nonexistent/natter.toml",
        "list-users",
    ])
    .await
    .fails(1, "does not exist");
}

#[tokio::test]
async fn completions_for_common_shells() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    for shell in ["bash", "zsh", "fish"] {
        let out = cli.run(&["completions", shell]).await;
        let text = out.ok();
        assert!(text.contains("natter") && text.contains("tail"), "{shell}");
    }
    cli.run(&["completions", "cmd.exe"])
        .await
        .fails(USAGE, "invalid value");
}

/// An administrator in another process disables a user: the running
/// server's open stream of that user is told and closed at its next
/// heartbeat, although the revocation never passed through that server.
#[tokio::test]
async fn admin_disable_closes_open_streams_of_a_running_server() {
    let server = TestServer::start_with(|c| c.stream.heartbeat_secs = 1).await;
    let alice = server.user("alice").await;
    let mut socket = natter_testkit::stream::RawSocket::open(&server.client().base, None)
        .await
        .unwrap();
    socket
        .send_json(serde_json::json!({"type": "auth", "token": alice.token.clone().unwrap()}))
        .await;
    assert_eq!(socket.recv_reply().await.unwrap()["type"], "hello");
    let cli = Cli::new(&server);
    cli.run(&admin_args(&server, &["disable-user", "alice"]))
        .await
        .ok();
    let mut revoked = false;
    let code = loop {
        match socket.recv().await {
            Ok(f) => revoked |= f["event"] == "session.revoked",
            Err(code) => break code,
        }
    };
    assert!(revoked, "the stream is told before it closes");
    assert_eq!(code, Some(4003));
}
