//! `natter-bench xmpp <scenario>`: the same XMPP workload against any
//! c2s server, so that Natter can be compared with Prosody and ejabberd
//! on one machine.
//!
//! The target is either `natter` (the harness starts the binary with an
//! XMPP listener, creates the accounts over REST and watches the process)
//! or an `external` server already running (the peers script starts
//! Prosody or ejabberd, pinned to a core, and passes its address and
//! process id; accounts are registered in-band).
//!
//! - `chat`: users in pairs send `<message type='chat'>` at a fixed total
//!   rate, open-loop; each body carries the send time, so the receiver
//!   measures end-to-end latency. XMPP has no per-message answer, so a
//!   message is lost when it was handed to the sender's socket and never
//!   reached the recipient.
//! - `idle`: many authenticated, available connections; server memory
//!   per connection.
//! - `login`: SASL log-ins (connect, authenticate, bind, leave) with a
//!   fixed number in flight: log-ins per second and their latency.
//! - `storm`: every connection drops at once and logs in again: how long
//!   until all are back.
//!
//! The report is the same as the JSON stream's (`natter-bench stream`):
//! a Markdown row, and JSON with `--json`; the exit status is non-zero if
//! a message was lost or a connection failed.

pub mod client;
mod scram;
mod xml;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Subcommand;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::burst::burst;
use crate::proc::{self, Server};
use crate::stream::conn::{Shared, WARMUP_TAG};
use crate::stream::setup::{Api, PASSWORD};
use crate::stream::{CpuSnapshot, CpuUse, Environment, Plan, Watched, messages_for, run_load};
use client::{Login, Mechanism, XConn};

#[derive(Subcommand)]
pub enum Scenario {
    /// Users in pairs exchanging chat messages at a fixed total rate.
    Chat(ChatArgs),
    /// Idle authenticated connections: server memory per connection.
    Idle(IdleArgs),
    /// Log-in rate: connect, SASL, bind and leave, a fixed number at once.
    Login(LoginArgs),
    /// Reconnect storm: every connection drops at once and logs in again.
    Storm(StormArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Kind {
    /// Start the natter binary with an XMPP listener.
    Natter,
    /// A server already running at --connect (Prosody, ejabberd…).
    External,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Register {
    /// Over Natter's REST API (`POST /api/v1/accounts`).
    Rest,
    /// In-band registration (XEP-0077); an existing account is fine.
    Ibr,
    /// The accounts exist already.
    None,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct Target {
    /// The server under test.
    #[arg(long, value_enum, default_value = "natter")]
    server: Kind,
    /// natter: the binary to start.
    #[arg(long, default_value = "target/release/natter")]
    natter: PathBuf,
    /// external: the server's client-to-server address.
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// external: its process id, for CPU time and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// external: a name for the report (e.g. prosody).
    #[arg(long, default_value = "external")]
    server_name: String,
    /// external: the core the server was pinned to, for the report.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// The XMPP domain of the accounts.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// SASL mechanism.
    #[arg(long, value_enum, default_value = "scram-sha-1")]
    mechanism: Mechanism,
    /// How accounts are created (default: rest for natter, ibr otherwise).
    #[arg(long, value_enum)]
    register: Option<Register>,
    /// Prefix of the user names.
    #[arg(long, default_value = "b")]
    user_prefix: String,
    /// Also print the results as JSON.
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    /// Do not pin the generator (and natter) to separate cores.
    #[arg(long)]
    no_pin: bool,
    /// Log-ins in flight while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds a log-in may take before it counts as failed.
    #[arg(long, default_value_t = 60.0)]
    login_timeout: f64,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct ChatArgs {
    /// Users, in users/2 pairs (even).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Messages per second, all users together.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds to wait after the last send for deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Bytes of each message body.
    #[arg(long, default_value_t = 60)]
    body_bytes: usize,
    /// Measure from each pair's very first message instead of after a
    /// warm-up round (see `warm_up`): the first messages then also create
    /// the pairs' conversations.
    #[arg(long)]
    cold: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct IdleArgs {
    /// Idle connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connections per user (each with its own resource).
    #[arg(long, default_value_t = 10)]
    per_user: usize,
    /// Seconds to let the server settle before measuring its memory.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct LoginArgs {
    /// Accounts the log-ins cycle through.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Log-ins in all.
    #[arg(long, default_value_t = 2000)]
    logins: usize,
    /// Log-ins in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct StormArgs {
    /// Connections (one per user) that drop and come back.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Reconnections in flight at once (all of them by default).
    #[arg(long)]
    concurrency: Option<usize>,
    #[command(flatten)]
    target: Target,
}

impl Scenario {
    fn target(&self) -> &Target {
        match self {
            Scenario::Chat(a) => &a.target,
            Scenario::Idle(a) => &a.target,
            Scenario::Login(a) => &a.target,
            Scenario::Storm(a) => &a.target,
        }
    }
}

/// The server under test, however it was started.
struct Running {
    addr: SocketAddr,
    pid: u32,
    /// Natter, when the harness started it.
    natter: Option<Server>,
    register: Register,
    login: Login,
    setup_concurrency: usize,
}

impl Running {
    fn watched(&self) -> Watched<'_> {
        match &self.natter {
            Some(s) => s.watched(),
            None => Watched {
                pid: self.pid,
                problems: None,
            },
        }
    }

    /// Creates the accounts `names` (all with the benchmark password).
    async fn accounts(&self, names: &[String]) -> anyhow::Result<()> {
        let t = Instant::now();
        match self.register {
            Register::None => return Ok(()),
            Register::Rest => {
                let natter = self
                    .natter
                    .as_ref()
                    .context("--register rest needs --server natter")?;
                let api = Api::new(natter.addr)?;
                futures::stream::iter(names.iter().map(|n| api.signup(n)))
                    .buffer_unordered(self.setup_concurrency)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            Register::Ibr => {
                let login = Login {
                    register: true,
                    presence: false,
                    ..self.login.clone()
                };
                futures::stream::iter(names.iter().map(|n| {
                    let login = &login;
                    async move { login.connect(n, PASSWORD, "register").await?.close().await }
                }))
                .buffer_unordered(self.setup_concurrency)
                .try_collect::<Vec<()>>()
                .await?;
            }
        }
        eprintln!(
            "setup: {} accounts ({:?}) in {:.1} s",
            names.len(),
            self.register,
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Logs in connection `i` as `users[i]` with resource `resources[i]`
    /// and starts its tasks.
    async fn connect_all(
        &self,
        users: &[&str],
        resources: &[String],
        shared: &Arc<Shared>,
        concurrency: usize,
    ) -> anyhow::Result<Vec<XConn>> {
        futures::stream::iter(users.iter().zip(resources).enumerate().map(
            |(i, (u, r))| async move {
                let s = self.login.connect(u, PASSWORD, r).await?;
                Ok::<_, anyhow::Error>(s.run(i as u32, shared.clone()))
            },
        ))
        .buffered(concurrency)
        .try_collect()
        .await
    }
}

pub fn main(scenario: Scenario) -> anyhow::Result<()> {
    let target = scenario.target().clone();
    let nofile_limit = proc::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    let cpus = proc::allowed_cpus();
    let pin = !target.no_pin && cpus.len() >= 2;
    let generator_cpu = if pin {
        proc::pin_current_thread(cpus[1]).context("pinning the generator")?;
        Some(cpus[1])
    } else {
        None
    };
    let workers = proc::allowed_cpus().len().max(1);
    let (rt, runtime) = if workers == 1 {
        (
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            "current_thread",
        )
    } else {
        (
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()?,
            "multi_thread",
        )
    };
    let (natter, addr, pid, server_cpu, name) = match target.server {
        Kind::Natter => {
            let server_cpu = if pin && proc::which("taskset").is_some() {
                Some(cpus[0])
            } else {
                None
            };
            // Natter's own XMPP listener (the harness starts every natter
            // with one on port 0), plaintext on loopback, without the
            // per-session stanza shaping and the connection limits meant
            // for the open internet, like the peers' configurations.
            let server = Server::start_with(
                &target.natter,
                server_cpu,
                &[],
                &[
                    ("NATTER_XMPP__ALLOW_PLAINTEXT", "true"),
                    ("NATTER_XMPP__STANZAS_PER_SECOND", "1000000"),
                    ("NATTER_XMPP__MAX_UNAUTHENTICATED_PER_IP", "100000"),
                    ("NATTER_XMPP__MAX_SESSIONS_PER_USER", "1000"),
                    ("NATTER_DOMAIN", &target.domain),
                ],
            )?;
            let xmpp = server
                .xmpp_addr
                .context("natter logged no XMPP listener (natter serve --xmpp)")?;
            let pid = server.pid;
            (
                Some(server),
                xmpp,
                pid,
                server_cpu,
                target.natter.display().to_string(),
            )
        }
        Kind::External => (
            None,
            target
                .connect
                .context("--server external needs --connect ADDR")?,
            target
                .server_pid
                .context("--server external needs --server-pid PID")?,
            target.server_cpu,
            target.server_name.clone(),
        ),
    };
    let register = target.register.unwrap_or(match target.server {
        Kind::Natter => Register::Rest,
        Kind::External => Register::Ibr,
    });
    let env = Environment {
        server: name,
        server_pid: pid,
        pinned: server_cpu.is_some() && generator_cpu.is_some(),
        server_cpu,
        generator_cpu,
        cpus: cpus.len(),
        runtime,
        nofile_limit,
    };
    eprintln!("{}; XMPP at {addr}", env.describe());
    let running = Running {
        addr,
        pid,
        natter,
        register,
        login: Login {
            addr,
            domain: target.domain.clone(),
            mechanism: target.mechanism,
            register: false,
            presence: true,
            timeout: Duration::from_secs_f64(target.login_timeout),
            salts: Arc::default(),
        },
        setup_concurrency: 32,
    };
    let outcome = rt.block_on(async {
        match &scenario {
            Scenario::Chat(a) => chat(a, &running, &env).await,
            Scenario::Idle(a) => idle(a, &running, &env).await,
            Scenario::Login(a) => login(a, &running, &env).await,
            Scenario::Storm(a) => storm(a, &running, &env).await,
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let stopped = match running.natter {
        Some(n) => n.stop(),
        None => Ok(()),
    };
    let failures = outcome?;
    stopped?;
    if !failures.is_empty() {
        bail!("the run was not clean: {}", failures.join("; "));
    }
    Ok(())
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn describe_target(t: &Target, running: &Running, env: &Environment) -> String {
    format!(
        "{}; XMPP {} domain {}, {:?}, accounts {:?}",
        env.describe(),
        running.addr,
        t.domain,
        t.mechanism,
        running.register
    )
}

async fn chat(
    args: &ChatArgs,
    running: &Running,
    env: &Environment,
) -> anyhow::Result<Vec<String>> {
    ensure!(
        args.users >= 2 && args.users.is_multiple_of(2),
        "--users must be even and at least 2"
    );
    let t = &args.target;
    println!(
        "parameters: xmpp chat --users {} ({} pairs) --rate {} msg/s --seconds {} --drain {} s --body-bytes {}",
        args.users,
        args.users / 2,
        args.rate,
        args.seconds,
        args.drain,
        args.body_bytes
    );
    println!("environment: {}", describe_target(t, running, env));
    let messages = messages_for(args.rate, args.seconds)?;
    let setup_start = Instant::now();
    let names = names(&t.user_prefix, args.users);
    running.accounts(&names).await?;
    let shared = Shared::new(messages);
    let users: Vec<&str> = names.iter().map(String::as_str).collect();
    let resources = vec!["bench".to_owned(); names.len()];
    let started = Instant::now();
    let conns = running
        .connect_all(&users, &resources, &shared, t.connect_concurrency)
        .await?;
    eprintln!(
        "setup: {} XMPP connections logged in in {:.1} s",
        conns.len(),
        started.elapsed().as_secs_f64()
    );
    let plan = Plan {
        senders: (0..args.users)
            .map(|u| (u, format!("{}@{}", names[u ^ 1], t.domain)))
            .collect(),
        expected: 1,
        rate: args.rate,
        messages,
        drain: Duration::from_secs_f64(args.drain),
        body_bytes: args.body_bytes,
        replies: false,
    };
    let send = |k: usize, s: usize, body: &str| {
        let (conn, to) = &plan.senders[s];
        conns[*conn].send(format!(
            "<message to='{to}' type='chat' id='m{k}'><body>{body}</body></message>"
        ))
    };
    if !args.cold {
        warm_up(&send, &shared, &plan).await?;
    }
    // Let presence settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let setup_seconds = setup_start.elapsed().as_secs_f64();
    let report = run_load(
        "xmpp chat",
        serde_json::to_value(args)?,
        conns.len(),
        &send,
        &shared,
        &plan,
        &running.watched(),
        env,
        setup_seconds,
    )
    .await?;
    Ok(report.print(t.json))
}

/// Before the clock starts, one message from every sender to its peer,
/// all delivered. A pair's first messages do one-off work: on Natter they
/// create the pair's direct conversation, and each session looks its peer's
/// conversation up once. That is set-up, like the accounts (the JSON API's
/// chat scenario creates its conversations over REST before measuring),
/// and counting it would make a run's p99 depend on its length. `--cold`
/// measures it instead.
async fn warm_up(
    send: &dyn Fn(usize, usize, &str) -> bool,
    shared: &Shared,
    plan: &Plan,
) -> anyhow::Result<()> {
    const WAIT: Duration = Duration::from_secs(60);
    let started = Instant::now();
    // Ids past the load's, so that no stanza id repeats.
    let sent = (0..plan.senders.len())
        .filter(|&s| send(plan.messages + s, s, &format!("{WARMUP_TAG}{s}")))
        .count() as u64;
    let want = sent * u64::from(plan.expected);
    loop {
        let got = shared.warmups.load(Ordering::Relaxed);
        if got >= want {
            break;
        }
        ensure!(
            started.elapsed() < WAIT,
            "warm-up: {got} of {want} messages delivered in {} s",
            WAIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "setup: warm-up, one message from each of {sent} senders, delivered in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Serialize)]
struct IdleReport {
    scenario: &'static str,
    parameters: serde_json::Value,
    environment: Environment,
    connections: usize,
    users: usize,
    open_seconds: f64,
    server_rss_before_mib: f64,
    server_rss_after_mib: f64,
    server_kib_per_connection: f64,
    idle_cpu: CpuUse,
    generator_rss_mib: f64,
    disconnects: u64,
    close_reasons: std::collections::BTreeMap<String, u64>,
}

async fn idle(
    args: &IdleArgs,
    running: &Running,
    env: &Environment,
) -> anyhow::Result<Vec<String>> {
    ensure!(
        args.connections >= 1 && args.per_user >= 1,
        "--connections and --per-user must be positive"
    );
    let t = &args.target;
    let users = args.connections.div_ceil(args.per_user);
    println!(
        "parameters: xmpp idle --connections {} ({users} users, {} resources each) --settle {} s",
        args.connections, args.per_user, args.settle
    );
    println!("environment: {}", describe_target(t, running, env));
    let names = names(&t.user_prefix, users);
    running.accounts(&names).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let shared = Shared::new(0);
    let rss_before = proc::rss_mib(running.pid)?;
    let opened = Instant::now();
    let conn_users: Vec<&str> = (0..args.connections)
        .map(|c| names[c / args.per_user].as_str())
        .collect();
    let resources: Vec<String> = (0..args.connections)
        .map(|c| format!("r{}", c % args.per_user))
        .collect();
    let conns = running
        .connect_all(&conn_users, &resources, &shared, t.connect_concurrency)
        .await?;
    let open_seconds = opened.elapsed().as_secs_f64();
    eprintln!(
        "idle: {} connections open in {open_seconds:.1} s; settling {} s",
        conns.len(),
        args.settle
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu0 = CpuSnapshot::take(running.pid, env)?;
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let cpu1 = CpuSnapshot::take(running.pid, env)?;
    let rss_after = proc::rss_mib(running.pid)?;
    shared.closing.store(true, Ordering::Relaxed);
    let report = IdleReport {
        scenario: "xmpp idle",
        parameters: serde_json::to_value(args)?,
        environment: env.clone(),
        connections: conns.len(),
        users,
        open_seconds,
        server_rss_before_mib: rss_before,
        server_rss_after_mib: rss_after,
        server_kib_per_connection: (rss_after - rss_before) * 1024.0 / conns.len() as f64,
        idle_cpu: cpu1.since(&cpu0),
        generator_rss_mib: proc::status_kib(std::process::id(), "VmRSS")? as f64 / 1024.0,
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        close_reasons: shared.close_reasons.lock().expect("close reasons").clone(),
    };
    println!(
        "| scenario | server | connections | users | open s | server RSS before MiB | server RSS after MiB | server KiB/connection | server idle CPU % | generator RSS MiB | other CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| xmpp idle | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
        env.server,
        report.connections,
        report.users,
        report.open_seconds,
        report.server_rss_before_mib,
        report.server_rss_after_mib,
        report.server_kib_per_connection,
        report.idle_cpu.server_percent,
        report.generator_rss_mib,
        report.idle_cpu.other_percent
    );
    if t.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    drop(conns);
    let mut failures = Vec::new();
    if report.disconnects > 0 {
        failures.push(format!(
            "{} connections dropped: {:?}",
            report.disconnects, report.close_reasons
        ));
    }
    Ok(failures)
}

async fn login(
    args: &LoginArgs,
    running: &Running,
    env: &Environment,
) -> anyhow::Result<Vec<String>> {
    ensure!(
        args.users >= 1 && args.logins >= 1,
        "--users and --logins must be positive"
    );
    let t = &args.target;
    println!(
        "parameters: xmpp login --users {} --logins {} --concurrency {}",
        args.users, args.logins, args.concurrency
    );
    println!("environment: {}", describe_target(t, running, env));
    let names = names(&t.user_prefix, args.users);
    running.accounts(&names).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let login = Login {
        presence: false,
        ..running.login.clone()
    };
    let report = burst(
        "xmpp login",
        serde_json::to_value(args)?,
        running.pid,
        env,
        args.logins,
        args.concurrency,
        None,
        |i| {
            let (login, name) = (&login, &names[i % names.len()]);
            async move {
                login
                    .connect(name, PASSWORD, &format!("l{i}"))
                    .await?
                    .close()
                    .await
            }
        },
    )
    .await?;
    report.print(t.json)
}

async fn storm(
    args: &StormArgs,
    running: &Running,
    env: &Environment,
) -> anyhow::Result<Vec<String>> {
    ensure!(args.connections >= 1, "--connections must be positive");
    let t = &args.target;
    let concurrency = args.concurrency.unwrap_or(args.connections);
    println!(
        "parameters: xmpp storm --connections {} --concurrency {concurrency}",
        args.connections
    );
    println!("environment: {}", describe_target(t, running, env));
    let names = names(&t.user_prefix, args.connections);
    running.accounts(&names).await?;
    let users: Vec<&str> = names.iter().map(String::as_str).collect();
    let resources = vec!["storm".to_owned(); names.len()];
    let shared = Shared::new(0);
    let conns = running
        .connect_all(&users, &resources, &shared, t.connect_concurrency)
        .await?;
    eprintln!("storm: {} connections up; dropping them all", conns.len());
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.closing.store(true, Ordering::Relaxed);
    let dropped = Instant::now();
    for c in &conns {
        c.abort();
    }
    // The new sessions replace the dropped ones (same resource), as a
    // client coming back after a network change would.
    let back = Shared::new(0);
    let kept = std::sync::Mutex::new(Vec::with_capacity(conns.len()));
    let report = burst(
        "xmpp storm",
        serde_json::to_value(args)?,
        running.pid,
        env,
        args.connections,
        concurrency,
        Some(dropped),
        |i| {
            let (users, resources, back, kept) = (&users, &resources, &back, &kept);
            async move {
                let s = running
                    .login
                    .connect(users[i], PASSWORD, &resources[i])
                    .await?;
                kept.lock()
                    .expect("kept")
                    .push(s.run(i as u32, back.clone()));
                Ok(())
            }
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    back.closing.store(true, Ordering::Relaxed);
    let mut failures = report.print(t.json)?;
    let dropped_after = back.disconnects.load(Ordering::Relaxed);
    if dropped_after > 0 {
        failures.push(format!(
            "{dropped_after} reconnected sessions dropped: {:?}",
            back.close_reasons.lock().expect("close reasons")
        ));
    }
    drop(conns);
    Ok(failures)
}
