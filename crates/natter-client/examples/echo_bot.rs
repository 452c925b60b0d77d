//! An echo bot: the smallest complete real-time client, and the example to
//! copy when writing a bot. It answers every message it sees with the same
//! text, and saves its stream cursor so that, restarted, it answers what
//! arrived while it was away (once) instead of missing it.
//!
//! ```sh
//! cargo run -p natter-client --example echo_bot -- \
//!     --server http://127.0.0.1:8080 --username bot --password 'correct horse battery'
//! ```
//!
//! Then, as anyone else, start a conversation with `bot` and say something.

use std::path::PathBuf;

use clap::Parser;
use futures::StreamExt;
use natter_client::{Client, Cursor, Event, Outgoing};

#[derive(Parser)]
#[command(about = "A Natter bot that echoes every message back")]
struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "NATTER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(long)]
    username: String,
    /// The bot's password (or NATTER_PASSWORD).
    #[arg(long, env = "NATTER_PASSWORD", hide_env_values = true)]
    password: String,
    /// Create the account first if it does not exist.
    #[arg(long)]
    signup: bool,
    /// Where to keep the stream cursor between runs.
    #[arg(long, default_value = "echo_bot.cursor")]
    cursor_file: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::new(&args.server)?;
    if args.signup {
        match client
            .signup(&args.username, &args.password, Some("Echo bot"))
            .await
        {
            Ok(_) | Err(natter_client::Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let me = client.login(&args.username, &args.password).await?.user;
    eprintln!("logged in as {}", me.username);

    // resume after the last event handled in an earlier run
    let saved = std::fs::read_to_string(&args.cursor_file)
        .ok()
        .map(|s| Cursor::new(s.trim()));
    let mut events = client.events_from(saved);
    while let Some(event) = events.next().await {
        match event? {
            Event::MessageCreated(m) if m.message.sender != me.username => {
                if let Some(body) = &m.message.body {
                    // a client_id derived from the message answered, so
                    // that an echo is sent once even if this bot crashes
                    // and replays the event
                    let reply = Outgoing {
                        conversation_id: m.conversation_id,
                        client_id: format!("echo-{}", m.message.id),
                        body: body.clone(),
                    };
                    client.send_outgoing(&reply).await?;
                    client.mark_read(m.conversation_id, m.message.seq).await?;
                    eprintln!("echoed #{} from {}", m.message.seq, m.message.sender);
                }
            }
            Event::Connected(c) => eprintln!("connected ({}) at {}", c.transport, c.cursor),
            Event::Disconnected(d) => {
                eprintln!("disconnected: {}; retrying in {:?}", d.reason, d.retry_in)
            }
            _ => {}
        }
        if let Some(cursor) = events.cursor() {
            std::fs::write(&args.cursor_file, cursor.as_str())?;
        }
    }
    Ok(())
}
