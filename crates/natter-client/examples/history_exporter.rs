//! A history exporter: writes every message of the user's conversations
//! (or of one) as JSON Lines, one message per line, oldest first. Shows
//! paging through a long history with [`Client::messages_after`], which
//! fetches pages of 100 as the output is written, so memory stays flat
//! whatever the history's length.
//!
//! ```sh
//! cargo run -p natter-client --example history_exporter -- \
//!     --server http://127.0.0.1:8080 --username alice --password '…' > alice.jsonl
//! ```

use std::io::Write;

use clap::Parser;
use futures::TryStreamExt;
use natter_client::Client;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Export Natter conversations as JSON Lines")]
struct Args {
    #[arg(long, env = "NATTER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(long)]
    username: String,
    /// The password (or NATTER_PASSWORD).
    #[arg(long, env = "NATTER_PASSWORD", hide_env_values = true)]
    password: String,
    /// Only this conversation (default: all of the user's).
    #[arg(long)]
    conversation: Option<Uuid>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::new(&args.server)?;
    client.login(&args.username, &args.password).await?;
    let ids = match args.conversation {
        Some(id) => vec![id],
        None => client
            .conversations()
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for id in ids {
        let mut messages = std::pin::pin!(client.messages_after(id, 0));
        let mut n = 0u64;
        while let Some(m) = messages.try_next().await? {
            serde_json::to_writer(&mut out, &m)?;
            out.write_all(b"\n")?;
            n += 1;
        }
        eprintln!("{id}: {n} messages");
    }
    out.flush()?;
    client.logout().await?;
    Ok(())
}
