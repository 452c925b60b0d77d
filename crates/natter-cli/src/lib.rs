//! Natter's command-line client, as subcommands of the `natter` binary:
//! `natter login`, `natter send @bob hi`, `natter tail`, … — a chat client
//! for the terminal and for scripts, built on the Rust SDK
//! (`natter-client`), plus `natter admin …` for accounts, working on a
//! server's database directly.
//!
//! This is a library so that the server binary can offer these
//! subcommands without this crate depending on the server (the server
//! depends on it): [`Command`] and [`AdminCommand`] are clap subcommands
//! the binary embeds, [`run`] and [`admin::run`] execute them and return
//! the process exit code (see [`exit`] for their meaning).
//!
//! Output is a table or a line for people by default, and compact JSON
//! with `--json` (one JSON document per line for `history` and `tail`).
//! The server is `--server URL`, else `NATTER_SERVER`, else the one of
//! the last `natter login`; the session token is kept per server in the
//! configuration file (see [`config`]).

pub mod admin;
mod commands;
pub mod config;
pub mod exit;
mod output;
mod password;

use std::fmt;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Args, Subcommand, ValueEnum};
pub use clap_complete::Shell;
use uuid::Uuid;

pub use admin::AdminCommand;

/// Options every client subcommand takes.
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// The server, e.g. http://127.0.0.1:8080 (default: NATTER_SERVER,
    /// else the server of the last login).
    #[arg(long, env = "NATTER_SERVER", value_name = "URL", global = true)]
    pub server: Option<String>,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A conversation named on the command line: `@username` for the direct
/// conversation with that user, or a conversation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Direct(String),
    Id(Uuid),
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(user) = s.strip_prefix('@') {
            if user.is_empty() {
                return Err("`@` needs a username after it".into());
            }
            return Ok(Target::Direct(user.to_owned()));
        }
        Uuid::parse_str(s).map(Target::Id).map_err(|_| {
            format!(
                "{s:?} is neither @username nor a conversation id (see `natter conversations list`)"
            )
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Direct(u) => write!(f, "@{u}"),
            Target::Id(id) => write!(f, "{id}"),
        }
    }
}

/// The exit codes, shown by `--help` (see [`exit`]).
pub const EXIT_CODES: &str = "\
Exit codes: 0 ok, 1 other failure, 2 usage, 3 network (server unreachable or unavailable), \
4 authentication (not logged in, wrong password, expired or revoked session), 5 permission, \
6 not found, 7 invalid input or conflict, 8 rate limited.";

/// The client subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account, then log in to it.
    #[command(after_long_help = EXIT_CODES)]
    Signup(SignupArgs),
    /// Log in and remember the session for this server.
    #[command(after_long_help = EXIT_CODES)]
    Login(LoginArgs),
    /// End the session on the server and forget it.
    #[command(after_long_help = EXIT_CODES)]
    Logout(CommonArgs),
    /// Show who you are logged in as, and where.
    #[command(after_long_help = EXIT_CODES)]
    Whoami(CommonArgs),
    /// Find people.
    #[command(after_long_help = EXIT_CODES)]
    Users(UsersArgs),
    /// Your contact list.
    #[command(after_long_help = EXIT_CODES)]
    Contacts(ContactsArgs),
    /// Your conversations, their members, new ones.
    #[command(after_long_help = EXIT_CODES)]
    Conversations(ConversationsArgs),
    /// Send a message to @user or a conversation (text from the arguments
    /// or standard input).
    #[command(after_long_help = EXIT_CODES)]
    Send(SendArgs),
    /// Show or export a conversation's messages.
    #[command(after_long_help = EXIT_CODES)]
    History(HistoryArgs),
    /// Follow events live, one line each; reconnects and resumes by itself.
    #[command(after_long_help = EXIT_CODES)]
    Tail(TailArgs),
    /// Mark a conversation read (up to its newest message by default).
    #[command(after_long_help = EXIT_CODES)]
    Read(ReadArgs),
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct SignupArgs {
    /// 1-32 of a-z 0-9 . _ -, starting with a letter or digit.
    pub username: String,
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Read the password from the first line of standard input (else
    /// NATTER_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_stdin: bool,
    /// Only create the account.
    #[arg(long)]
    pub no_login: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    pub username: String,
    /// Read the password from the first line of standard input (else
    /// NATTER_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Users whose name starts with QUERY or whose display name contains it.
    Search {
        query: String,
        /// At most this many (up to 50).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct ContactsArgs {
    #[command(subcommand)]
    pub command: ContactsCommand,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// List your contacts.
    List,
    /// Add a contact (or change its name and groups).
    Add {
        username: String,
        /// Your name for them.
        #[arg(long)]
        name: Option<String>,
        /// A group to file them under (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Remove a contact.
    Remove { username: String },
}

#[derive(Debug, Args)]
pub struct ConversationsArgs {
    #[command(subcommand)]
    pub command: ConversationsCommand,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum ConversationsCommand {
    /// Your conversations, most recent first, with unread counts.
    List,
    /// Start a direct conversation or create a group.
    Create(CreateArgs),
    /// The members of a conversation, with their read and delivered markers.
    Members {
        /// @username or a conversation id.
        conversation: Target,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The direct conversation with this user.
    #[arg(
        long,
        value_name = "USER",
        conflicts_with = "group",
        required_unless_present = "group"
    )]
    pub direct: Option<String>,
    /// A group with this title.
    #[arg(long, value_name = "TITLE")]
    pub group: Option<String>,
    /// A member of the new group (repeatable).
    #[arg(long = "member", value_name = "USER", requires = "group")]
    pub members: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// @username or a conversation id.
    pub to: Target,
    /// The text (joined by spaces); without it, standard input is sent.
    pub text: Vec<String>,
    /// Use this client_id: running the same command again never sends
    /// the message twice.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// @username or a conversation id.
    pub conversation: Target,
    /// Messages before this sequence number.
    #[arg(long, value_name = "SEQ", conflicts_with = "after")]
    pub before: Option<i64>,
    /// Messages after this sequence number.
    #[arg(long, value_name = "SEQ")]
    pub after: Option<i64>,
    /// At most this many messages (1-100; 50 by default).
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub limit: Option<u32>,
    /// Every message (after --after, if given), paging through the whole
    /// history.
    #[arg(long, conflicts_with = "before")]
    pub all: bool,
    /// Show progress on standard error during --all (default: when it is a
    /// terminal).
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    #[arg(long, hide = true)]
    pub no_progress: bool,
    #[command(flatten)]
    pub common: Common,
}

/// The transport of `tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Auto,
    Websocket,
    LongPoll,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only these conversations (@username or ids); default: all.
    pub conversations: Vec<Target>,
    /// Resume after this cursor (printed with each event in --json).
    #[arg(long, value_name = "CURSOR")]
    pub from: Option<String>,
    /// Exit after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    pub transport: TransportArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// @username or a conversation id.
    pub conversation: Target,
    /// Up to this sequence number (default: the newest message).
    #[arg(long, value_name = "SEQ")]
    pub seq: Option<i64>,
    #[command(flatten)]
    pub common: Common,
}

impl Command {
    /// The options shared by every subcommand.
    pub fn common(&self) -> &Common {
        match self {
            Command::Signup(a) => &a.common,
            Command::Login(a) => &a.common,
            Command::Logout(a) | Command::Whoami(a) => &a.common,
            Command::Users(a) => &a.common,
            Command::Contacts(a) => &a.common,
            Command::Conversations(a) => &a.common,
            Command::Send(a) => &a.common,
            Command::History(a) => &a.common,
            Command::Tail(a) => &a.common,
            Command::Read(a) => &a.common,
        }
    }
}

/// Runs a client subcommand; returns the exit code (see [`exit`]).
/// Errors are printed on standard error.
pub async fn run(command: Command) -> ExitCode {
    match commands::run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

/// Writes the completion script for `shell` of the command `cmd` (the
/// whole `natter` command, from `clap::CommandFactory`) to standard output.
pub fn print_completions(shell: Shell, cmd: &mut clap::Command) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, cmd, name, &mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("@bob".parse(), Ok(Target::Direct("bob".into())));
        let id = Uuid::now_v7();
        assert_eq!(id.to_string().parse(), Ok(Target::Id(id)));
        assert!("@".parse::<Target>().is_err());
        assert!("bob".parse::<Target>().is_err());
    }
}
