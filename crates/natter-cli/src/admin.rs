//! `natter admin …`: account administration on a server's own database,
//! for the operator of the machine (no HTTP, no admin account needed):
//! create an account whatever the registration mode, reset a forgotten
//! password, list the accounts.
//!
//! The binary opens the store with the server's configuration (the same
//! `--config`, `--data-dir`, `--database` and `NATTER_*` layers as
//! `natter serve`) and hands [`run`] a [`Hub`] on it, so the rules are the
//! hub's own (username and password validation, SCRAM derivation, session
//! revocation). It works with the server stopped or running: SQLite
//! allows a second process (WAL, busy timeout) and PostgreSQL is shared
//! anyway. A password reset deletes the user's sessions in the database,
//! so a running server refuses their tokens from the next request on, and
//! closes their open event streams at the next heartbeat.
//!
//! `disable-user` marks the account disabled and deletes its sessions in
//! one transaction: log-ins are refused (`account_disabled`) and its
//! tokens stop working at once; event streams already open on a running
//! server are told and closed at their next heartbeat (the server checks
//! each stream's session then). `enable-user` undoes it.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use natter_core::{CoreError, Hub};
use natter_types::{DisplayName, Password, User, Username, ValidationError};
use serde_json::json;

use crate::exit::{CliResult, Failure, GENERIC, INVALID, NETWORK, NOT_FOUND, PERMISSION};
use crate::output::{self, Table, or_dash, when};
use crate::password::{self, Source};

/// Administration subcommands (`natter admin …`).
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account, even when registration is closed.
    CreateUser(CreateUserArgs),
    /// Set a new password for an account and end all of its sessions.
    ResetPassword(ResetPasswordArgs),
    /// List every account.
    ListUsers(ListUsersArgs),
    /// Disable an account: it can no longer log in and its sessions end.
    DisableUser(UserArgs),
    /// Let a disabled account log in again.
    EnableUser(UserArgs),
}

#[derive(Debug, Args)]
pub struct UserArgs {
    pub username: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    pub username: String,
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Read the password from the first line of standard input (else
    /// NATTER_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_stdin: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResetPasswordArgs {
    pub username: String,
    /// Read the new password from the first line of standard input (else
    /// NATTER_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_stdin: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListUsersArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs an administration command on the hub the binary opened (or the
/// error it got opening it). Returns the exit code.
pub async fn run<E: std::fmt::Display>(command: AdminCommand, hub: Result<Hub, E>) -> ExitCode {
    let hub = match hub {
        Ok(h) => h,
        Err(e) => {
            return Failure::new(GENERIC, format!("cannot open the server's database: {e}"))
                .with_hint(
                    "check --config, --data-dir and --database (the same as for `natter serve`)",
                )
                .report();
        }
    };
    match execute(command, &hub).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

fn core_failure(e: CoreError) -> Failure {
    let code = match &e {
        CoreError::Invalid(_) | CoreError::Conflict { .. } => INVALID,
        CoreError::NotFound { .. } => NOT_FOUND,
        CoreError::Forbidden { .. } | CoreError::RegistrationClosed => PERMISSION,
        CoreError::Unavailable(_) => NETWORK,
        _ => GENERIC,
    };
    Failure::new(code, e.to_string())
}

fn invalid(e: ValidationError) -> Failure {
    Failure::new(INVALID, format!("{}: {}", e.field, e.message))
}

fn user_json(u: &User) -> serde_json::Value {
    serde_json::to_value(natter_client::User::from(u.clone())).expect("users serialise")
}

async fn execute(command: AdminCommand, hub: &Hub) -> CliResult {
    match command {
        AdminCommand::CreateUser(a) => {
            let username = Username::parse(&a.username).map_err(invalid)?;
            let display = a
                .display_name
                .as_deref()
                .map(DisplayName::parse)
                .transpose()
                .map_err(invalid)?;
            let pw = password::read(
                Source {
                    stdin: a.password_stdin,
                    confirm: true,
                },
                &format!("Password for {username}: "),
            )?;
            let pw = Password::parse_new("password", &pw).map_err(invalid)?;
            let user = hub
                .create_account(username, pw, display)
                .await
                .map_err(core_failure)?;
            if a.json {
                output::json(&user_json(&user));
            } else {
                println!("created account {}", user.username);
            }
        }
        AdminCommand::ResetPassword(a) => {
            let username = Username::parse(&a.username).map_err(invalid)?;
            // a clear "no such user" before asking for a password
            hub.user(&username).await.map_err(core_failure)?;
            let pw = password::read(
                Source {
                    stdin: a.password_stdin,
                    confirm: true,
                },
                &format!("New password for {username}: "),
            )?;
            let pw = Password::parse_new("password", &pw).map_err(invalid)?;
            hub.reset_password(&username, pw)
                .await
                .map_err(core_failure)?;
            if a.json {
                output::json(&json!({"username": username.as_str(), "sessions_revoked": true}));
            } else {
                println!("new password set for {username}; all of its sessions were ended");
            }
        }
        AdminCommand::DisableUser(a) => {
            let username = Username::parse(&a.username).map_err(invalid)?;
            hub.disable_user(&username).await.map_err(core_failure)?;
            if a.json {
                output::json(&json!({"username": username.as_str(), "disabled": true}));
            } else {
                println!("disabled {username}; all of its sessions were ended");
            }
        }
        AdminCommand::EnableUser(a) => {
            let username = Username::parse(&a.username).map_err(invalid)?;
            hub.enable_user(&username).await.map_err(core_failure)?;
            if a.json {
                output::json(&json!({"username": username.as_str(), "disabled": false}));
            } else {
                println!("enabled {username}");
            }
        }
        AdminCommand::ListUsers(a) => {
            let users = all_users(hub).await?;
            if a.json {
                let list: Vec<_> = users.values().map(user_json).collect();
                output::json(&json!({ "users": list }));
            } else if users.is_empty() {
                eprintln!("no accounts yet: create one with `natter admin create-user NAME`");
            } else {
                let mut t = Table::new(&["USERNAME", "DISPLAY NAME", "CREATED"]);
                for u in users.values() {
                    t.row(vec![
                        u.username.to_string(),
                        or_dash(u.display_name.as_deref()),
                        when(u.created_at),
                    ]);
                }
                t.print();
            }
        }
    }
    Ok(())
}

/// Characters a username may continue with.
const NAME_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789._-";

/// Every account. The store offers a directory search (username prefix
/// or display name, a page at a time) rather than a listing, so this walks
/// the prefixes: a prefix whose page comes back full is split into its
/// one-character-longer prefixes, until every page is complete.
async fn all_users(hub: &Hub) -> CliResult<BTreeMap<String, User>> {
    let page = PAGE;
    let mut found = BTreeMap::new();
    // usernames start with a letter or digit
    let mut prefixes: Vec<String> = NAME_CHARS[..36].chars().map(String::from).collect();
    while let Some(prefix) = prefixes.pop() {
        let users = hub
            .search_users(&prefix, page)
            .await
            .map_err(core_failure)?;
        let full = users.len() as u32 >= page;
        for u in users {
            if u.username.as_str().starts_with(&prefix) {
                found.insert(u.username.to_string(), u);
            }
        }
        if full && prefix.len() < Username::MAX_LEN {
            // the prefix itself may be a username the full page left out
            if let Ok(name) = Username::parse(&prefix)
                && let Ok(u) = hub.user(&name).await
            {
                found.insert(u.username.to_string(), u);
            }
            prefixes.extend(NAME_CHARS.chars().map(|c| format!("{prefix}{c}")));
        }
    }
    Ok(found)
}

/// The largest page the hub's directory search returns
/// (`natter_core`'s `MAX_SEARCH_RESULTS`, which it does not export).
const PAGE: u32 = 50;
