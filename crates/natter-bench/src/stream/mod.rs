//! `natter-bench stream <scenario>`: the whole server under load, measured
//! from the outside as its users would see it.
//!
//! The harness starts the real `natter` binary (the release build by
//! default) on a fresh data directory, pins it and itself to separate
//! cores when it can, sets up users and conversations over REST and then
//! drives WebSockets:
//!
//! - `chat`: users in direct pairs send at a fixed total rate, open-loop
//!   (a send never waits for an earlier reply); latency is measured from
//!   the send to the `message.created` event on the recipient's socket.
//! - `fanout`: a few senders in one large group; every other member's
//!   socket measures every message.
//! - `idle`: many authenticated idle sockets; the server's resident memory
//!   per connection.
//!
//! Each run prints its parameters, a Markdown table row and (with
//! `--json`) a JSON object, and exits non-zero if a message was lost, a
//! command failed or a connection dropped, so that a tiny run doubles as
//! a CI smoke test.

pub(crate) mod conn;
pub(crate) mod hist;
mod history;
pub(crate) mod setup;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Subcommand;
use serde::Serialize;

use crate::proc::{self, Server};
use conn::{Conn, Shared};
use hist::Hist;
use setup::Api;

#[derive(Subcommand)]
pub enum Scenario {
    /// Users in direct pairs sending at a fixed total rate.
    Chat(ChatArgs),
    /// Senders in one large group; every member receives every message.
    Fanout(FanoutArgs),
    /// Idle authenticated connections: server memory per connection.
    Idle(IdleArgs),
    /// Log-in rate: password log-ins, or token log-ins on the stream.
    Login(LoginArgs),
    /// Reconnect storm: every connection drops at once and comes back.
    Storm(StormArgs),
    /// History pages from one long conversation over REST.
    History(HistoryArgs),
}

#[derive(clap::Args, Clone, Serialize)]
pub struct HistoryArgs {
    /// Messages in the conversation (written through the store before the
    /// measured server starts, which is much faster than sending them).
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Pages to fetch, at random positions.
    #[arg(long, default_value_t = 10_000)]
    pages: usize,
    /// Messages per page.
    #[arg(long, default_value_t = 50)]
    page_size: usize,
    /// Page requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum LoginMode {
    /// `POST /api/v1/sessions` with the password (a password hash each).
    Password,
    /// An existing token: open the stream (or the first poll) and
    /// authenticate, then leave.
    Token,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct LoginArgs {
    /// What a log-in is.
    #[arg(long, value_enum, default_value = "password")]
    mode: LoginMode,
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
    common: Common,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct StormArgs {
    /// Connections that drop and come back with their token.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connections per user (sharing its token).
    #[arg(long, default_value_t = 10)]
    per_user: usize,
    /// Reconnections in flight at once (all of them by default).
    #[arg(long)]
    concurrency: Option<usize>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct Common {
    /// The natter binary to start.
    #[arg(long, default_value = "target/release/natter")]
    natter: PathBuf,
    /// Also print the results as JSON.
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    /// Do not pin the server and the generator to separate cores.
    #[arg(long)]
    no_pin: bool,
    /// REST requests in flight during setup.
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
    /// WebSocket handshakes (or first polls) in flight while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// How clients receive and send in real time.
    #[arg(long, value_enum, default_value = "websocket")]
    transport: setup::Transport,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct LoadArgs {
    /// Seconds of sending.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds to wait after the last send for outstanding replies and
    /// deliveries before counting the rest as lost.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Bytes of each message body.
    #[arg(long, default_value_t = 60)]
    body_bytes: usize,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct ChatArgs {
    /// Users, in users/2 direct pairs (even).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Messages per second, all users together (round-robin over users).
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct FanoutArgs {
    /// Members of the group, owner included (up to 1001 join at creation,
    /// the rest are added one by one).
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Members that send, round-robin.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Clone, Serialize)]
pub struct IdleArgs {
    /// Idle connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connections per user; they share the user's one log-in token
    /// (log-ins cost a password hash each).
    #[arg(long, default_value_t = 10)]
    per_user: usize,
    /// Seconds to let the server settle after the last connection opened
    /// before measuring its memory.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    #[command(flatten)]
    common: Common,
}

impl Scenario {
    fn common(&self) -> &Common {
        match self {
            Scenario::Chat(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Idle(a) => &a.common,
            Scenario::Login(a) => &a.common,
            Scenario::Storm(a) => &a.common,
            Scenario::History(a) => &a.common,
        }
    }
}

/// How the run was set up, for the report.
#[derive(Serialize, Clone)]
pub(crate) struct Environment {
    /// The server under test: the natter binary, or a peer's name.
    pub server: String,
    pub server_pid: u32,
    /// Whether server and generator ran on separate cores.
    pub pinned: bool,
    pub server_cpu: Option<usize>,
    pub generator_cpu: Option<usize>,
    pub cpus: usize,
    pub runtime: &'static str,
    pub nofile_limit: u64,
}

impl Environment {
    pub fn describe(&self) -> String {
        let pin = if self.pinned {
            format!(
                "pinned: server on cpu {}, generator on cpu {}",
                self.server_cpu.unwrap_or(0),
                self.generator_cpu.unwrap_or(0)
            )
        } else {
            "not pinned".to_owned()
        };
        format!(
            "server {} (pid {}); {pin}; {} cpus; generator runtime {}; open-file limit {}",
            self.server, self.server_pid, self.cpus, self.runtime, self.nofile_limit
        )
    }
}

pub fn main(scenario: Scenario) -> anyhow::Result<()> {
    let common = scenario.common().clone();
    let nofile_limit = proc::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    let cpus = proc::allowed_cpus();
    let (server_cpu, generator_cpu) =
        if !common.no_pin && cpus.len() >= 2 && proc::which("taskset").is_some() {
            // Before the runtime exists, so that all its threads inherit it.
            proc::pin_current_thread(cpus[1]).context("pinning the generator")?;
            (Some(cpus[0]), Some(cpus[1]))
        } else {
            (None, None)
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
    let mut server = Server::start(&common.natter, server_cpu)?;
    if let Scenario::History(a) = &scenario {
        // The long conversation is written through the store while no
        // server runs, then the server is started again on it.
        server = rt.block_on(history::fill(a, server, server_cpu))?;
    }
    let env = Environment {
        server: common.natter.display().to_string(),
        server_pid: server.pid,
        pinned: server_cpu.is_some(),
        server_cpu,
        generator_cpu,
        cpus: cpus.len(),
        runtime,
        nofile_limit,
    };
    eprintln!("{}", env.describe());
    let outcome = rt.block_on(async {
        match &scenario {
            Scenario::Chat(a) => chat(a, &server, &env).await,
            Scenario::Fanout(a) => fanout(a, &server, &env).await,
            Scenario::Idle(a) => idle(a, &server, &env).await,
            Scenario::Login(a) => login(a, &server, &env).await,
            Scenario::Storm(a) => storm(a, &server, &env).await,
            Scenario::History(a) => history::run(a, &server, &env).await,
        }
    });
    let problems = server.problems.clone();
    let during = problems.load(Ordering::Relaxed);
    let stopped = server.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
    let after = problems.load(Ordering::Relaxed) - during;
    if during + after > 0 {
        eprintln!(
            "note: the server logged {during} warning/error lines during the run and {after} while shutting down"
        );
    }
    let failures = outcome?;
    stopped?;
    if !failures.is_empty() {
        bail!("the run was not clean: {}", failures.join("; "));
    }
    Ok(())
}

/// CPU counters at one instant: the server's and the generator's own
/// time, and the busy time of the machine and of the two cores.
#[derive(Clone)]
pub(crate) struct CpuSnapshot {
    pub at: Instant,
    server: f64,
    server_threads: HashMap<u32, (String, f64)>,
    server_written: Option<u64>,
    generator: f64,
    machine: proc::Busy,
    server_core: Option<proc::Busy>,
    generator_core: Option<proc::Busy>,
}

/// CPU use between two snapshots, in % of one core.
#[derive(Serialize, Clone, Default)]
pub(crate) struct CpuUse {
    pub server_percent: f64,
    /// The server's CPU by thread name, busiest first (those under 0.5 %
    /// left out): which thread limited the run.
    pub server_threads: Vec<ThreadUse>,
    /// What the server wrote to storage meanwhile (its write
    /// amplification: WAL frames, checkpoints), in MiB.
    pub server_written_mib: Option<f64>,
    pub generator_percent: f64,
    /// Other processes (user + system time not of the server or the
    /// generator): anything but noise means the figures are disturbed.
    pub other_percent: f64,
    /// irq + softirq on all cores (mostly loopback networking, which the
    /// kernel does not charge to the processes).
    pub irq_percent: f64,
    /// How busy the server's and the generator's cores were, whoever
    /// used them (when pinned): near 100 means that side was saturated.
    pub server_core_busy_percent: Option<f64>,
    pub generator_core_busy_percent: Option<f64>,
}

impl CpuSnapshot {
    pub fn take(pid: u32, env: &Environment) -> anyhow::Result<Self> {
        Ok(Self {
            at: Instant::now(),
            server: proc::cpu_seconds(Some(pid))?,
            server_threads: proc::thread_cpu_seconds(pid)?,
            server_written: proc::written_bytes(pid),
            generator: proc::cpu_seconds(None)?,
            machine: proc::busy(None)?,
            server_core: env.server_cpu.map(|c| proc::busy(Some(c))).transpose()?,
            generator_core: env.generator_cpu.map(|c| proc::busy(Some(c))).transpose()?,
        })
    }

    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUse {
        let wall = (self.at - earlier.at).as_secs_f64().max(1e-9);
        let pct = |secs: f64| 100.0 * secs / wall;
        let server = self.server - earlier.server;
        let generator = self.generator - earlier.generator;
        let machine = self.machine.since(earlier.machine);
        let core = |now: Option<proc::Busy>, then: Option<proc::Busy>| {
            Some(pct(now?.since(then?).total()))
        };
        // Threads alive at both instants, by name; the time of those that
        // started or ended in between is the rest of the server's.
        let mut by_name: BTreeMap<&str, f64> = BTreeMap::new();
        for (tid, (name, now)) in &self.server_threads {
            if let Some((_, then)) = earlier.server_threads.get(tid) {
                *by_name.entry(name).or_default() += now - then;
            }
        }
        let rest = server - by_name.values().sum::<f64>();
        let mut server_threads: Vec<ThreadUse> = by_name
            .into_iter()
            .map(|(name, secs)| ThreadUse {
                name: name.to_owned(),
                percent: pct(secs),
            })
            .collect();
        server_threads.push(ThreadUse {
            name: "(threads that started or ended)".to_owned(),
            percent: pct(rest.max(0.0)),
        });
        server_threads.retain(|t| t.percent >= 0.5);
        server_threads.sort_by(|a, b| b.percent.total_cmp(&a.percent));
        CpuUse {
            server_threads,
            server_written_mib: match (self.server_written, earlier.server_written) {
                (Some(now), Some(then)) => Some(now.saturating_sub(then) as f64 / (1 << 20) as f64),
                _ => None,
            },
            server_percent: pct(server),
            generator_percent: pct(generator),
            other_percent: pct(machine.tasks - server - generator).max(0.0),
            irq_percent: pct(machine.irq),
            server_core_busy_percent: core(self.server_core, earlier.server_core),
            generator_core_busy_percent: core(self.generator_core, earlier.generator_core),
        }
    }
}

/// One thread name's share of the server's CPU.
#[derive(Serialize, Clone, Default)]
pub(crate) struct ThreadUse {
    pub name: String,
    pub percent: f64,
}

impl CpuUse {
    /// The per-thread and storage figures as one line of a report.
    pub fn server_detail(&self, sent: u64) -> String {
        let threads = self
            .server_threads
            .iter()
            .map(|t| format!("{} {:.0} %", t.name, t.percent))
            .collect::<Vec<_>>()
            .join(", ");
        let written = match self.server_written_mib {
            Some(mib) if sent > 0 => format!(
                "{mib:.0} MiB, {:.1} KiB per message sent",
                mib * 1024.0 / sent as f64
            ),
            Some(mib) => format!("{mib:.0} MiB"),
            None => "not reported by the kernel".to_owned(),
        };
        format!("server threads while sending: {threads}; server storage writes: {written}")
    }
}

pub(crate) fn opt_pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}"))
        .unwrap_or_else(|| "-".to_owned())
}

/// Setup common to chat and fanout: the connections, one per user.
async fn connect_users(
    server: &Server,
    common: &Common,
    names: &[String],
    shared: &Arc<Shared>,
) -> anyhow::Result<(Api, Vec<String>, Vec<Conn>)> {
    let api = Api::new(server.addr)?;
    let t = Instant::now();
    let tokens = setup::users(&api, names, common.setup_concurrency).await?;
    eprintln!(
        "setup: {} users signed up and logged in in {:.1} s",
        names.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let conns = setup::connections(
        server.addr,
        common.transport,
        &refs,
        shared,
        common.connect_concurrency,
    )
    .await?;
    eprintln!(
        "setup: {} WebSockets authenticated in {:.1} s",
        conns.len(),
        t.elapsed().as_secs_f64()
    );
    Ok((api, tokens, conns))
}

pub(crate) fn messages_for(rate: f64, seconds: f64) -> anyhow::Result<usize> {
    ensure!(
        rate > 0.0 && seconds > 0.0,
        "--rate and --seconds must be positive"
    );
    Ok(((rate * seconds).round() as usize).max(1))
}

async fn chat(args: &ChatArgs, server: &Server, env: &Environment) -> anyhow::Result<Vec<String>> {
    ensure!(
        args.users >= 2 && args.users.is_multiple_of(2),
        "--users must be even and at least 2"
    );
    println!(
        "parameters: stream chat --users {} ({} direct pairs) --rate {} msg/s --seconds {} --drain {} s --body-bytes {}",
        args.users,
        args.users / 2,
        args.rate,
        args.load.seconds,
        args.load.drain,
        args.load.body_bytes
    );
    println!("environment: {}", env.describe());
    let messages = messages_for(args.rate, args.load.seconds)?;
    let shared = Shared::new(messages);
    let setup_start = Instant::now();
    let names: Vec<String> = (0..args.users).map(|i| format!("u{i}")).collect();
    let (api, tokens, conns) = connect_users(server, &args.common, &names, &shared).await?;
    let t = Instant::now();
    let convs: Vec<String> = {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(
            (0..args.users / 2).map(|p| api.direct(&tokens[2 * p], &names[2 * p + 1])),
        )
        .buffered(args.common.setup_concurrency)
        .try_collect()
        .await?
    };
    eprintln!(
        "setup: {} direct conversations in {:.1} s",
        convs.len(),
        t.elapsed().as_secs_f64()
    );
    // Let presence and other start-up events settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let setup_seconds = setup_start.elapsed().as_secs_f64();
    let plan = Plan {
        senders: (0..args.users).map(|u| (u, convs[u / 2].clone())).collect(),
        expected: 1,
        rate: args.rate,
        messages,
        drain: Duration::from_secs_f64(args.load.drain),
        body_bytes: args.load.body_bytes,
        replies: true,
    };
    let params = serde_json::to_value(args)?;
    let report = run_load(
        "chat",
        params,
        conns.len(),
        &stream_sender(&conns, &plan),
        &shared,
        &plan,
        &server.watched(),
        env,
        setup_seconds,
    )
    .await?;
    Ok(report.print(args.common.json))
}

async fn fanout(
    args: &FanoutArgs,
    server: &Server,
    env: &Environment,
) -> anyhow::Result<Vec<String>> {
    ensure!(args.members >= 2, "--members must be at least 2");
    ensure!(
        (1..=args.members).contains(&args.senders),
        "--senders must be between 1 and --members"
    );
    println!(
        "parameters: stream fanout --members {} --senders {} --rate {} msg/s --seconds {} --drain {} s --body-bytes {}",
        args.members,
        args.senders,
        args.rate,
        args.load.seconds,
        args.load.drain,
        args.load.body_bytes
    );
    println!("environment: {}", env.describe());
    let messages = messages_for(args.rate, args.load.seconds)?;
    let shared = Shared::new(messages);
    let setup_start = Instant::now();
    let names: Vec<String> = (0..args.members).map(|i| format!("m{i}")).collect();
    let (api, tokens, conns) = connect_users(server, &args.common, &names, &shared).await?;
    let t = Instant::now();
    // The server takes at most 1000 named members at creation (plus the
    // owner); any more join one by one.
    let at_creation = (args.members - 1).min(1000);
    let group = api
        .group(&tokens[0], "fanout", &names[1..=at_creation])
        .await?;
    {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(
            names[at_creation + 1..]
                .iter()
                .map(|n| api.add_member(&tokens[0], &group, n)),
        )
        .buffered(args.common.setup_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    }
    eprintln!(
        "setup: a group of {} members in {:.1} s",
        args.members,
        t.elapsed().as_secs_f64()
    );
    // The conversation.created / member.added events reach every socket;
    // let them pass before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let setup_seconds = setup_start.elapsed().as_secs_f64();
    let plan = Plan {
        senders: (0..args.senders).map(|u| (u, group.clone())).collect(),
        expected: (args.members - 1) as u32,
        rate: args.rate,
        messages,
        drain: Duration::from_secs_f64(args.load.drain),
        body_bytes: args.load.body_bytes,
        replies: true,
    };
    let params = serde_json::to_value(args)?;
    let report = run_load(
        "fanout",
        params,
        conns.len(),
        &stream_sender(&conns, &plan),
        &shared,
        &plan,
        &server.watched(),
        env,
        setup_seconds,
    )
    .await?;
    Ok(report.print(args.common.json))
}

/// What to send: message `k` goes from `senders[k % len]` (connection
/// index, and where to: a conversation id or a JID); each is expected at
/// `expected` recipients.
pub(crate) struct Plan {
    pub senders: Vec<(usize, String)>,
    pub expected: u32,
    pub rate: f64,
    pub messages: usize,
    pub drain: Duration,
    pub body_bytes: usize,
    /// Whether the server answers each send (the JSON stream's `reply`
    /// after the durable commit). XMPP has no such answer: a message
    /// counts as acknowledged once handed to its socket, so loss is
    /// measured against everything sent.
    pub replies: bool,
}

/// The process whose CPU and memory a load run watches.
pub(crate) struct Watched<'a> {
    pub pid: u32,
    /// Warning and error lines it logged, where the harness reads its log.
    pub problems: Option<&'a std::sync::atomic::AtomicU64>,
}

impl Server {
    pub(crate) fn watched(&self) -> Watched<'_> {
        Watched {
            pid: self.pid,
            problems: Some(&self.problems),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct LoadReport {
    scenario: &'static str,
    parameters: serde_json::Value,
    environment: Environment,
    connections: usize,
    setup_seconds: f64,
    /// Messages the schedule called for.
    planned: u64,
    /// Messages handed to their sockets.
    sent: u64,
    /// Sends answered `ok: true`.
    acknowledged: u64,
    /// Sends answered `ok: false` (and `error` frames).
    errors: u64,
    /// Sends without any reply by the end of the drain.
    unanswered: u64,
    /// Recipient deliveries expected for the acknowledged messages.
    expected_deliveries: u64,
    /// `message.created` events on recipients' sockets (echoes excluded).
    delivered: u64,
    /// Expected deliveries of acknowledged messages that never arrived.
    lost: u64,
    /// Acknowledged messages with at least one lost delivery.
    lost_messages: u64,
    duplicates: u64,
    send_seconds: f64,
    sent_per_second: f64,
    /// Deliveries over the time from the first send to the last delivery.
    delivered_per_second: f64,
    latency_p50_ms: f64,
    latency_p90_ms: f64,
    latency_p99_ms: f64,
    latency_p999_ms: f64,
    latency_max_ms: f64,
    /// Send to `ok` reply (the durable commit).
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    ack_max_ms: f64,
    /// How late the generator handed messages to their sockets compared
    /// with the schedule: large values mean the generator was the limit.
    schedule_lag_p99_ms: f64,
    schedule_lag_max_ms: f64,
    /// CPU use while sending.
    cpu: CpuUse,
    /// Server CPU from the first send to the end of the drain, per
    /// delivered message (echoes, replies and receipts are paid from it).
    server_cpu_us_per_delivery: f64,
    /// Server CPU over the same time per message sent: when a server
    /// falls behind and deliveries are lost, the per-delivery figure
    /// overstates what each message cost it.
    server_cpu_us_per_sent: f64,
    server_rss_before_mib: f64,
    server_rss_after_mib: f64,
    server_rss_peak_mib: f64,
    frames_received: u64,
    /// Frames that were neither our messages, echoes nor replies
    /// (receipts, presence…).
    other_frames: u64,
    echoes: u64,
    disconnects: u64,
    close_reasons: std::collections::BTreeMap<String, u64>,
    error_samples: Vec<String>,
    server_log_problems: u64,
}

impl LoadReport {
    /// Prints the table (and JSON); returns what made the run unclean.
    pub fn print(&self, json: bool) -> Vec<String> {
        println!(
            "| scenario | conns | target msg/s | sent | acked | errors | lost | delivered/s | p50 ms | p90 ms | p99 ms | max ms | ack p99 ms | sched lag max ms | server CPU % (core busy) | server µs/delivery | server RSS MiB | generator CPU % (core busy) | other CPU % | irq % |"
        );
        println!(
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let rate = self.parameters["rate"].as_f64().unwrap_or(0.0);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} ({}) | {:.1} | {:.1} | {:.0} ({}) | {:.0} | {:.0} |",
            self.scenario,
            self.connections,
            rate,
            self.sent,
            self.acknowledged,
            self.errors + self.unanswered,
            self.lost,
            self.delivered_per_second,
            self.latency_p50_ms,
            self.latency_p90_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.ack_p99_ms,
            self.schedule_lag_max_ms,
            self.cpu.server_percent,
            opt_pct(self.cpu.server_core_busy_percent),
            self.server_cpu_us_per_delivery,
            self.server_rss_after_mib,
            self.cpu.generator_percent,
            opt_pct(self.cpu.generator_core_busy_percent),
            self.cpu.other_percent,
            self.cpu.irq_percent,
        );
        println!(
            "details: {} deliveries expected, {} delivered, {} duplicates, {} echoes, {} other frames, {} disconnects, server RSS {:.1} → {:.1} MiB (peak {:.1}), p99.9 {:.2} ms, ack p50 {:.2} ms, schedule lag p99 {:.2} ms",
            self.expected_deliveries,
            self.delivered,
            self.duplicates,
            self.echoes,
            self.other_frames,
            self.disconnects,
            self.server_rss_before_mib,
            self.server_rss_after_mib,
            self.server_rss_peak_mib,
            self.latency_p999_ms,
            self.ack_p50_ms,
            self.schedule_lag_p99_ms,
        );
        println!("{}", self.cpu.server_detail(self.sent));
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(self).expect("report JSON")
            );
        }
        let mut failures = Vec::new();
        if self.lost > 0 {
            failures.push(format!(
                "{} deliveries lost ({} messages)",
                self.lost, self.lost_messages
            ));
        }
        if self.errors > 0 {
            failures.push(format!(
                "{} error replies: {:?}",
                self.errors, self.error_samples
            ));
        }
        if self.unanswered > 0 {
            failures.push(format!("{} sends unanswered", self.unanswered));
        }
        if self.disconnects > 0 {
            failures.push(format!(
                "{} connections dropped: {:?}",
                self.disconnects, self.close_reasons
            ));
        }
        if self.sent < self.planned {
            failures.push(format!(
                "only {} of {} messages sent",
                self.sent, self.planned
            ));
        }
        failures
    }
}

/// Sends the messages of `conns` over the JSON stream.
fn stream_sender<'a>(conns: &'a [Conn], plan: &Plan) -> impl Fn(usize, usize, &str) -> bool + 'a {
    // Frames up to the body, per sender: only the id and body vary.
    let prefixes: Vec<String> = plan
        .senders
        .iter()
        .map(|(_, conv)| format!(r#"{{"type":"send","conversation_id":"{conv}","ref":""#))
        .collect();
    let conns_of: Vec<usize> = plan.senders.iter().map(|(c, _)| *c).collect();
    move |k, s, body| {
        let frame = format!(
            r#"{}{k}","client_id":"c{k}","body":"{body}"}}"#,
            prefixes[s]
        );
        conns[conns_of[s]].send(frame)
    }
}

/// Sends `plan` open-loop and waits for the drain; measures everything.
/// `send(k, s, body)` hands message `k` of sender `s` to its socket and
/// says whether the connection was still there.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_load(
    scenario: &'static str,
    parameters: serde_json::Value,
    connections: usize,
    send: &dyn Fn(usize, usize, &str) -> bool,
    shared: &Arc<Shared>,
    plan: &Plan,
    server: &Watched<'_>,
    env: &Environment,
    setup_seconds: f64,
) -> anyhow::Result<LoadReport> {
    let lag = Hist::new();
    let rss_before = proc::rss_mib(server.pid)?;
    eprintln!(
        "load: {} messages at {} msg/s from {} senders, each expected at {} recipient(s)",
        plan.messages,
        plan.rate,
        plan.senders.len(),
        plan.expected
    );
    let cpu0 = CpuSnapshot::take(server.pid, env)?;
    let start = Instant::now();
    let first_send_ns = shared.now_ns();
    // `next` is the next message of the schedule; `sent` those that could
    // be handed to a live connection (a dropped sender's are skipped and
    // reported, so that one disconnect does not end the measurement).
    let (mut next, mut sent, mut unsent) = (0usize, 0usize, 0u64);
    while next < plan.messages {
        let due = ((start.elapsed().as_secs_f64() * plan.rate) as usize + 1).min(plan.messages);
        while next < due {
            let k = next;
            next += 1;
            let scheduled = start + Duration::from_secs_f64(k as f64 / plan.rate);
            lag.record(scheduled.elapsed().as_micros() as u64);
            let s = k % plan.senders.len();
            let (conn, _) = plan.senders[s];
            let sent_ns = shared.now_ns();
            shared.slots[k].sent_ns.store(sent_ns, Ordering::Relaxed);
            let body = conn::body(k as u64, sent_ns, conn as u32, plan.body_bytes);
            if send(k, s, &body) {
                sent += 1;
                if !plan.replies {
                    shared.slots[k].state.store(1, Ordering::Relaxed);
                    shared.replies_ok.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                shared.slots[k]
                    .state
                    .store(conn::NOT_SENT, Ordering::Relaxed);
                unsent += 1;
            }
        }
        if next < plan.messages {
            let at = start + Duration::from_secs_f64(next as f64 / plan.rate);
            tokio::time::sleep_until(at.into()).await;
        }
    }
    if unsent > 0 {
        eprintln!("load: {unsent} messages not sent: their sender's connection was gone");
    }
    let send_wall = start.elapsed().as_secs_f64();
    let cpu1 = CpuSnapshot::take(server.pid, env)?;
    eprintln!("load: {sent} sent in {send_wall:.2} s; draining");

    let deadline = Instant::now() + plan.drain;
    loop {
        let ok = shared.replies_ok.load(Ordering::Relaxed);
        let err = shared.replies_err.load(Ordering::Relaxed);
        let delivered = shared.deliveries.load(Ordering::Relaxed);
        if ok + err >= sent as u64 && delivered >= ok * plan.expected as u64 {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "load: drain timed out with {} replies of {sent} and {delivered} deliveries of {}",
                ok + err,
                ok * plan.expected as u64
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let server_cpu2 = proc::cpu_seconds(Some(server.pid))?;
    let rss_after = proc::rss_mib(server.pid)?;
    let rss_peak = proc::status_kib(server.pid, "VmHWM")? as f64 / 1024.0;
    // From here on, closes are the harness's doing.
    shared.closing.store(true, Ordering::Relaxed);

    let (mut lost, mut lost_messages, mut duplicates, mut unanswered, mut acked) = (0, 0, 0, 0, 0);
    for slot in &shared.slots[..next] {
        let received = slot.received.load(Ordering::Relaxed) as u64;
        match slot.state.load(Ordering::Relaxed) {
            1 => {
                acked += 1;
                let expected = plan.expected as u64;
                if received < expected {
                    lost += expected - received;
                    lost_messages += 1;
                }
                duplicates += received.saturating_sub(expected);
            }
            0 => unanswered += 1,
            _ => {}
        }
    }
    let delivered = shared.deliveries.load(Ordering::Relaxed);
    let last_delivery_ns = shared.last_delivery_ns.load(Ordering::Relaxed);
    let delivery_span = last_delivery_ns.saturating_sub(first_send_ns) as f64 / 1e9;
    Ok(LoadReport {
        scenario,
        parameters,
        environment: env.clone(),
        connections,
        setup_seconds,
        planned: plan.messages as u64,
        sent: sent as u64,
        acknowledged: acked,
        errors: shared.replies_err.load(Ordering::Relaxed),
        unanswered,
        expected_deliveries: acked * plan.expected as u64,
        delivered,
        lost,
        lost_messages,
        duplicates,
        send_seconds: send_wall,
        sent_per_second: sent as f64 / send_wall,
        delivered_per_second: if delivery_span > 0.0 {
            delivered as f64 / delivery_span
        } else {
            0.0
        },
        latency_p50_ms: shared.latency.quantile_ms(0.50),
        latency_p90_ms: shared.latency.quantile_ms(0.90),
        latency_p99_ms: shared.latency.quantile_ms(0.99),
        latency_p999_ms: shared.latency.quantile_ms(0.999),
        latency_max_ms: shared.latency.max_ms(),
        ack_p50_ms: shared.ack.quantile_ms(0.50),
        ack_p99_ms: shared.ack.quantile_ms(0.99),
        ack_max_ms: shared.ack.max_ms(),
        schedule_lag_p99_ms: lag.quantile_ms(0.99),
        schedule_lag_max_ms: lag.max_ms(),
        cpu: cpu1.since(&cpu0),
        server_cpu_us_per_delivery: if delivered > 0 {
            (server_cpu2 - cpu0.server) * 1e6 / delivered as f64
        } else {
            0.0
        },
        server_cpu_us_per_sent: if sent > 0 {
            (server_cpu2 - cpu0.server) * 1e6 / sent as f64
        } else {
            0.0
        },
        server_rss_before_mib: rss_before,
        server_rss_after_mib: rss_after,
        server_rss_peak_mib: rss_peak,
        frames_received: shared.frames.load(Ordering::Relaxed),
        other_frames: shared.other_frames.load(Ordering::Relaxed),
        echoes: shared.echoes.load(Ordering::Relaxed),
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        close_reasons: shared.close_reasons.lock().expect("close reasons").clone(),
        error_samples: shared.error_samples.lock().expect("error samples").clone(),
        server_log_problems: server.problems.map_or(0, |p| p.load(Ordering::Relaxed)),
    })
}

#[derive(Serialize)]
struct IdleReport {
    scenario: &'static str,
    parameters: serde_json::Value,
    environment: Environment,
    connections: usize,
    users: usize,
    setup_seconds: f64,
    open_seconds: f64,
    server_rss_before_mib: f64,
    server_rss_after_mib: f64,
    server_kib_per_connection: f64,
    /// CPU use while the connections sat idle.
    idle_cpu: CpuUse,
    generator_rss_mib: f64,
    disconnects: u64,
    close_reasons: std::collections::BTreeMap<String, u64>,
    server_log_problems: u64,
}

async fn idle(args: &IdleArgs, server: &Server, env: &Environment) -> anyhow::Result<Vec<String>> {
    ensure!(
        args.connections >= 1 && args.per_user >= 1,
        "--connections and --per-user must be positive"
    );
    let users = args.connections.div_ceil(args.per_user);
    println!(
        "parameters: stream idle --connections {} ({} users, {} connections sharing each user's token) --settle {} s",
        args.connections, users, args.per_user, args.settle
    );
    println!("environment: {}", env.describe());
    let shared = Shared::new(0);
    let api = Api::new(server.addr)?;
    let t = Instant::now();
    let names: Vec<String> = (0..users).map(|i| format!("i{i}")).collect();
    let tokens = setup::users(&api, &names, args.common.setup_concurrency).await?;
    let setup_seconds = t.elapsed().as_secs_f64();
    eprintln!("setup: {users} users signed up and logged in in {setup_seconds:.1} s");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = proc::rss_mib(server.pid)?;
    let t = Instant::now();
    let refs: Vec<&str> = (0..args.connections)
        .map(|c| tokens[c / args.per_user].as_str())
        .collect();
    let conns = setup::connections(
        server.addr,
        args.common.transport,
        &refs,
        &shared,
        args.common.connect_concurrency,
    )
    .await?;
    let open_seconds = t.elapsed().as_secs_f64();
    eprintln!(
        "idle: {} connections open in {open_seconds:.1} s; settling {} s",
        conns.len(),
        args.settle
    );
    // Settle: let the presence events of the new connections pass first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu0 = CpuSnapshot::take(server.pid, env)?;
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let cpu1 = CpuSnapshot::take(server.pid, env)?;
    let rss_after = proc::rss_mib(server.pid)?;
    shared.closing.store(true, Ordering::Relaxed);
    let report = IdleReport {
        scenario: "idle",
        parameters: serde_json::to_value(args)?,
        environment: env.clone(),
        connections: conns.len(),
        users,
        setup_seconds,
        open_seconds,
        server_rss_before_mib: rss_before,
        server_rss_after_mib: rss_after,
        server_kib_per_connection: (rss_after - rss_before) * 1024.0 / conns.len() as f64,
        idle_cpu: cpu1.since(&cpu0),
        generator_rss_mib: proc::status_kib(std::process::id(), "VmRSS")? as f64 / 1024.0,
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        close_reasons: shared.close_reasons.lock().expect("close reasons").clone(),
        server_log_problems: server.problems.load(Ordering::Relaxed),
    };
    println!(
        "| scenario | connections | users | open s | server RSS before MiB | server RSS after MiB | server KiB/connection | server idle CPU % | generator RSS MiB | other CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| idle | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
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
    if args.common.json {
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
    server: &Server,
    env: &Environment,
) -> anyhow::Result<Vec<String>> {
    ensure!(
        args.users >= 1 && args.logins >= 1,
        "--users and --logins must be positive"
    );
    println!(
        "parameters: stream login --mode {:?} --transport {:?} --users {} --logins {} --concurrency {}",
        args.mode, args.common.transport, args.users, args.logins, args.concurrency
    );
    println!("environment: {}", env.describe());
    let api = Api::new(server.addr)?;
    let names: Vec<String> = (0..args.users).map(|i| format!("l{i}")).collect();
    let tokens = setup::users(&api, &names, args.common.setup_concurrency).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Closes are the harness's doing throughout.
    let shared = Shared::new(0);
    shared.closing.store(true, Ordering::Relaxed);
    let scenario = match args.mode {
        LoginMode::Password => "login password",
        LoginMode::Token => "login token",
    };
    let report = crate::burst::burst(
        scenario,
        serde_json::to_value(args)?,
        server.pid,
        env,
        args.logins,
        args.concurrency,
        None,
        |i| {
            let (api, shared) = (&api, &shared);
            let (name, token) = (&names[i % names.len()], &tokens[i % tokens.len()]);
            async move {
                match args.mode {
                    LoginMode::Password => api.login(name).await.map(drop),
                    LoginMode::Token => setup::connections(
                        server.addr,
                        args.common.transport,
                        &[token.as_str()],
                        shared,
                        1,
                    )
                    .await
                    .map(drop),
                }
            }
        },
    )
    .await?;
    report.print(args.common.json)
}

async fn storm(
    args: &StormArgs,
    server: &Server,
    env: &Environment,
) -> anyhow::Result<Vec<String>> {
    ensure!(
        args.connections >= 1 && args.per_user >= 1,
        "--connections and --per-user must be positive"
    );
    let concurrency = args.concurrency.unwrap_or(args.connections);
    println!(
        "parameters: stream storm --transport {:?} --connections {} --per-user {} --concurrency {concurrency}",
        args.common.transport, args.connections, args.per_user
    );
    println!("environment: {}", env.describe());
    let api = Api::new(server.addr)?;
    let users = args.connections.div_ceil(args.per_user);
    let names: Vec<String> = (0..users).map(|i| format!("s{i}")).collect();
    let tokens = setup::users(&api, &names, args.common.setup_concurrency).await?;
    let refs: Vec<&str> = (0..args.connections)
        .map(|c| tokens[c / args.per_user].as_str())
        .collect();
    let shared = Shared::new(0);
    let conns = setup::connections(
        server.addr,
        args.common.transport,
        &refs,
        &shared,
        args.common.connect_concurrency,
    )
    .await?;
    eprintln!("storm: {} connections up; dropping them all", conns.len());
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.closing.store(true, Ordering::Relaxed);
    let dropped = Instant::now();
    drop(conns);
    let back = Shared::new(0);
    let kept = std::sync::Mutex::new(Vec::with_capacity(refs.len()));
    let report = crate::burst::burst(
        "storm",
        serde_json::to_value(args)?,
        server.pid,
        env,
        refs.len(),
        concurrency,
        Some(dropped),
        |i| {
            let (refs, back, kept) = (&refs, &back, &kept);
            async move {
                let mut c =
                    setup::connections(server.addr, args.common.transport, &refs[i..=i], back, 1)
                        .await?;
                kept.lock().expect("kept").append(&mut c);
                Ok(())
            }
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    back.closing.store(true, Ordering::Relaxed);
    let mut failures = report.print(args.common.json)?;
    let dropped_after = back.disconnects.load(Ordering::Relaxed);
    if dropped_after > 0 {
        failures.push(format!(
            "{dropped_after} reconnected connections dropped: {:?}",
            back.close_reasons.lock().expect("close reasons")
        ));
    }
    Ok(failures)
}
