//! The `natter` command: `natter serve` runs the server; the client
//! subcommands (`natter login`, `send`, `tail`, …), `natter admin …` and
//! `natter completions` come from the `natter-cli` crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
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
        /// XMPP c2s listen address (STARTTLS).
        #[arg(long, value_name = "ADDR")]
        xmpp: Option<SocketAddr>,
        /// XMPP c2s listen address with direct TLS (XEP-0368).
        #[arg(long, value_name = "ADDR")]
        xmpps: Option<SocketAddr>,
        /// Join a cluster: nats://HOST:PORT of the NATS servers the nodes share
        /// (with PostgreSQL as the database). Without it the node works alone.
        #[arg(long, value_name = "URL")]
        bus: Option<String>,
    },
    /// Print the OpenAPI document of the REST API.
    Openapi,
    #[command(flatten)]
    Client(natter_cli::Command),
    /// Administer accounts in a server's database (with the server stopped or running).
    Admin {
        /// TOML configuration file (see natter.example.toml).
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// Directory for the server's files.
        #[arg(long, value_name = "DIR", global = true)]
        data_dir: Option<PathBuf>,
        /// sqlite://PATH or postgres://USER@HOST/DB.
        #[arg(long, value_name = "URL", global = true)]
        database: Option<String>,
        #[command(subcommand)]
        command: natter_cli::AdminCommand,
    },
    /// Print a shell completion script, e.g. `natter completions bash > /etc/bash_completion.d/natter`.
    Completions {
        #[arg(value_enum)]
        shell: natter_cli::Shell,
    },
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("NATTER_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: logs piped to files or journald stay
    // plain text (and `NO_COLOR` is honoured too).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            http,
            database,
            domain,
            xmpp,
            xmpps,
            bus,
        } => {
            init_logging();
            let config = Config::load(
                config.as_deref(),
                Overrides {
                    domain,
                    data_dir,
                    database,
                    http,
                    xmpp: natter_server::config::XmppOverrides {
                        listen: xmpp,
                        tls_listen: xmpps,
                    },
                    bus,
                },
            )?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listeners = natter_server::Listeners::bind(&config).await?;
                natter_server::serve(config, listeners, natter_server::shutdown_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            let doc = natter_http::openapi();
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(natter_cli::run(command)))
        }
        Command::Admin {
            config,
            data_dir,
            database,
            command,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            Ok(runtime.block_on(async move {
                let hub = async {
                    let config = Config::load(
                        config.as_deref(),
                        Overrides {
                            data_dir,
                            database,
                            ..Overrides::default()
                        },
                    )?;
                    let store = natter_server::open_store(&config).await?;
                    // With the cluster's bus configured, what the command
                    // revokes closes streams on every node at once.
                    anyhow::Ok(match natter_server::open_bus(&config).await? {
                        Some(bus) => natter_core::Hub::with_bus(store, config.core(), bus),
                        None => natter_core::Hub::new(store, config.core()),
                    })
                }
                .await;
                let flush = hub.as_ref().ok().cloned();
                let code = natter_cli::admin::run(command, hub.map_err(|e| format!("{e:#}"))).await;
                if let Some(hub) = flush {
                    hub.flush_bus().await;
                }
                code
            }))
        }
        Command::Completions { shell } => {
            natter_cli::print_completions(shell, &mut Cli::command());
            Ok(ExitCode::SUCCESS)
        }
    }
}
