//! The `natter` command: `natter serve` runs the server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use natter_server::{Config, Overrides};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "natter",
    version,
    about = "Natter: a chat server speaking JSON and XMPP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (SQLite in ./natter-data and HTTP on 127.0.0.1:8080 by default).
    Serve {
        /// TOML configuration file (see natter.example.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory for the server's files.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// HTTP listen address; port 0 picks a free port.
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// sqlite://PATH or postgres://USER@HOST/DB.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// The server's domain (the part after @ in JIDs).
        #[arg(long, value_name = "NAME")]
        domain: Option<String>,
    },
    /// Print the OpenAPI document of the REST API.
    Openapi,
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("NATTER_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            http,
            database,
            domain,
        } => {
            init_logging();
            let config = Config::load(
                config.as_deref(),
                Overrides {
                    domain,
                    data_dir,
                    database,
                    http,
                },
            )?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(config.http)
                    .await
                    .with_context(|| format!("binding HTTP to {}", config.http))?;
                natter_server::run(config, listener, natter_server::shutdown_signal()).await
            })
        }
        Command::Openapi => {
            let doc = natter_http::openapi();
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
    }
}
