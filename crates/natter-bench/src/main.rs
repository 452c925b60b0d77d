//! `natter-bench`: benchmarks that are measured, never asserted in tests.
//!
//! Two families, so that a slowdown can be placed:
//!
//! - `natter-bench store` measures the storage layer alone (see
//!   [`store`]).
//! - `natter-bench stream <chat|fanout|idle>` starts the real release
//!   `natter` binary and drives it over HTTP and WebSocket like real
//!   clients would, measuring end-to-end latency, throughput, server CPU
//!   and memory (see [`stream`]).
//! - `natter-bench cluster --nodes URL,URL` drives nodes you started
//!   (one, or several of a cluster) and reports delivered messages per
//!   second with every message crossing nodes (see [`cluster`]).
//! - `natter-bench xmpp <chat|idle|login|storm>` runs XMPP scenarios
//!   against natter or any other XMPP server (Prosody, ejabberd), so that
//!   they can be compared on one machine (see [`xmpp`] and
//!   `scripts/bench-peers`).
//!
//! Results print as a Markdown table and, with `--json`, as JSON, so that
//! `BENCHMARKS.md` can quote them.

mod burst;
mod cluster;
mod proc;
mod store;
mod stream;
mod xmpp;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Natter benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Store throughput and history latency.
    Store(store::StoreArgs),
    /// Whole-server scenarios against a real `natter` process.
    #[command(subcommand)]
    Stream(stream::Scenario),
    /// Delivered messages per second through already running nodes, each
    /// message crossing nodes when there are several.
    Cluster(cluster::ClusterArgs),
    /// The same XMPP scenarios against natter or another XMPP server.
    #[command(subcommand)]
    Xmpp(xmpp::Scenario),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Store(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(store::bench_store(args))
        }
        // The stream scenarios pin the process before building their
        // runtime, so that its threads inherit the pinning.
        Cmd::Stream(scenario) => stream::main(scenario),
        Cmd::Cluster(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(cluster::run(args))
        }
        Cmd::Xmpp(scenario) => xmpp::main(scenario),
    }
}
