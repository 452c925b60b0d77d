//! The client subcommands: each resolves the server and session, makes one
//! or a few SDK calls, and prints the result as a table or line (people)
//! or JSON (scripts). Failures travel as [`Failure`]s to one place that
//! prints them and picks the exit code.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Read, Write};

use futures::StreamExt;
use natter_client::proto::PutContactRequest;
use natter_client::{
    Client, ConversationKind, ConversationSummary, Cursor, Event, HistoryQuery, Message, Outgoing,
    Transport,
};
use serde_json::json;
use uuid::Uuid;

use crate::config::{ClientConfig, StoredSession};
use crate::exit::{AUTH, CliResult, Failure, NOT_FOUND};
use crate::output::{self, Progress, Table, or_dash, short, when};
use crate::password::{self, Source};
use crate::{
    Command, Common, ContactsCommand, ConversationsCommand, CreateArgs, HistoryArgs, SendArgs,
    TailArgs, Target, TransportArg, UsersCommand,
};

pub async fn run(command: Command) -> CliResult {
    match command {
        Command::Signup(a) => {
            let pw = password::read(
                Source {
                    stdin: a.password_stdin,
                    confirm: true,
                },
                "Password: ",
            )?;
            let (client, mut cfg) = anonymous(&a.common)?;
            let user = client
                .signup(&a.username, &pw, a.display_name.as_deref())
                .await?;
            if a.no_login {
                if a.common.json {
                    output::json(&json!({"server": client.server(), "user": user}));
                } else {
                    println!("created account {} on {}", user.username, client.server());
                }
                return Ok(());
            }
            let out = client.login(&user.username, &pw).await?;
            remember(&mut cfg, &client, &out)?;
            if a.common.json {
                output::json(
                    &json!({"server": client.server(), "user": out.user, "expires_at": out.expires_at}),
                );
            } else {
                println!(
                    "created account {} and logged in on {}",
                    out.user.username,
                    client.server()
                );
            }
            Ok(())
        }
        Command::Login(a) => {
            let pw = password::read(
                Source {
                    stdin: a.password_stdin,
                    confirm: false,
                },
                &format!("Password for {}: ", a.username),
            )?;
            let (client, mut cfg) = anonymous(&a.common)?;
            let out = client.login(&a.username, &pw).await?;
            remember(&mut cfg, &client, &out)?;
            if a.common.json {
                output::json(
                    &json!({"server": client.server(), "user": out.user, "expires_at": out.expires_at}),
                );
            } else {
                println!(
                    "logged in as {} on {} (until {})",
                    out.user.username,
                    client.server(),
                    when(out.expires_at)
                );
            }
            Ok(())
        }
        Command::Logout(a) => {
            let (client, mut cfg, _) = logged_in(&a.common)?;
            let result = client.logout().await;
            cfg.sessions.remove(client.server());
            cfg.save()?;
            match result {
                Ok(()) | Err(natter_client::Error::Unauthenticated { .. }) => {
                    if a.common.json {
                        output::json(&json!({"server": client.server(), "logged_out": true}));
                    } else {
                        println!("logged out of {}", client.server());
                    }
                    Ok(())
                }
                Err(e) => Err(Failure::from(e).with_hint(
                    "the session was forgotten here, but the server could not be told to end it",
                )),
            }
        }
        Command::Whoami(a) => {
            let (client, _, session) = logged_in(&a.common)?;
            let me = client.me().await?;
            if a.common.json {
                output::json(
                    &json!({"server": client.server(), "user": me, "expires_at": session.expires_at}),
                );
            } else {
                let name = me
                    .display_name
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                println!("{}{name} on {}", me.username, client.server());
                if let Some(t) = session.expires_at {
                    println!("session valid until {}", when(t));
                }
            }
            Ok(())
        }
        Command::Users(a) => {
            let (client, _, _) = logged_in(&a.common)?;
            match a.command {
                UsersCommand::Search { query, limit } => {
                    let users = client.search_users(&query, Some(limit)).await?;
                    if a.common.json {
                        output::json(&json!({ "users": users }));
                    } else if users.is_empty() {
                        eprintln!("no users match {query:?}");
                    } else {
                        let mut t = Table::new(&["USERNAME", "DISPLAY NAME", "JOINED"]);
                        for u in users {
                            t.row(vec![
                                u.username,
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
        Command::Contacts(a) => {
            let (client, _, _) = logged_in(&a.common)?;
            let json = a.common.json;
            match a.command {
                ContactsCommand::List => {
                    let contacts = client.contacts().await?;
                    if json {
                        output::json(&json!({ "contacts": contacts }));
                    } else if contacts.is_empty() {
                        eprintln!("no contacts yet: add one with `natter contacts add USERNAME`");
                    } else {
                        let mut t =
                            Table::new(&["USERNAME", "DISPLAY NAME", "NAME", "GROUPS", "ADDED"]);
                        for c in contacts {
                            t.row(vec![
                                c.username,
                                or_dash(c.display_name.as_deref()),
                                or_dash(c.name.as_deref()),
                                or_dash(Some(&c.groups.join(", "))),
                                when(c.added_at),
                            ]);
                        }
                        t.print();
                    }
                }
                ContactsCommand::Add {
                    username,
                    name,
                    groups,
                } => {
                    let (contact, created) = client
                        .put_contact(&username, &PutContactRequest { name, groups })
                        .await?;
                    if json {
                        output::json(&json!({"contact": contact, "created": created}));
                    } else if created {
                        println!("added {} to your contacts", contact.username);
                    } else {
                        println!("updated {} in your contacts", contact.username);
                    }
                }
                ContactsCommand::Remove { username } => {
                    client.remove_contact(&username).await?;
                    if json {
                        output::json(&json!({ "removed": username }));
                    } else {
                        println!("removed {username} from your contacts");
                    }
                }
            }
            Ok(())
        }
        Command::Conversations(a) => {
            let (client, _, _) = logged_in(&a.common)?;
            let json = a.common.json;
            match a.command {
                ConversationsCommand::List => {
                    let list = client.conversations().await?;
                    if json {
                        output::json(&json!({ "conversations": list }));
                    } else if list.is_empty() {
                        eprintln!(
                            "no conversations yet: start one with `natter send @USERNAME hello`"
                        );
                    } else {
                        let mut t = Table::new(&[
                            "ID",
                            "TYPE",
                            "NAME",
                            "UNREAD",
                            "LAST ACTIVITY",
                            "LAST MESSAGE",
                        ]);
                        for c in &list {
                            let last = c
                                .last_message
                                .as_ref()
                                .map(|m| {
                                    format!(
                                        "{}: {}",
                                        m.sender,
                                        m.body.as_deref().unwrap_or("(deleted)")
                                    )
                                })
                                .unwrap_or_default();
                            t.row(vec![
                                c.id.to_string(),
                                kind(c.kind).into(),
                                label(c),
                                c.unread.to_string(),
                                when(c.last_activity_at),
                                short(&last, 40),
                            ]);
                        }
                        t.print();
                    }
                }
                ConversationsCommand::Create(c) => create(&client, c, json).await?,
                ConversationsCommand::Members { conversation } => {
                    let (id, _) = resolve(&client, &conversation).await?;
                    let conv = client.conversation(id).await?;
                    if json {
                        output::json(&json!({"conversation_id": id, "members": conv.members}));
                    } else {
                        let mut t = Table::new(&[
                            "USERNAME",
                            "DISPLAY NAME",
                            "ROLE",
                            "READ",
                            "DELIVERED",
                            "JOINED",
                        ]);
                        for m in conv.members {
                            t.row(vec![
                                m.username,
                                or_dash(m.display_name.as_deref()),
                                format!("{:?}", m.role).to_lowercase(),
                                m.read_seq.to_string(),
                                m.delivered_seq.to_string(),
                                when(m.joined_at),
                            ]);
                        }
                        t.print();
                    }
                }
            }
            Ok(())
        }
        Command::Send(a) => send(a).await,
        Command::History(a) => history(a).await,
        Command::Tail(a) => tail(a).await,
        Command::Read(a) => {
            let (client, _, _) = logged_in(&a.common)?;
            let (id, name) = resolve(&client, &a.conversation).await?;
            let seq = match a.seq {
                Some(s) => s,
                None => client.conversation(id).await?.last_seq,
            };
            let read = client.mark_read(id, seq).await?;
            if a.common.json {
                output::json(&json!({"conversation_id": id, "read_seq": read}));
            } else {
                println!("{name}: read up to #{read}");
            }
            Ok(())
        }
    }
}

// ----- sessions ---------------------------------------------------------

/// The server to talk to: `--server`/`NATTER_SERVER`, else the last one
/// logged in to.
fn server(common: &Common, cfg: &ClientConfig) -> CliResult<String> {
    common
        .server
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| cfg.current.clone())
        .ok_or_else(|| {
            Failure::usage("no server given")
                .with_hint("pass --server http://HOST:PORT or set NATTER_SERVER")
        })
}

fn build(server: &str, token: Option<String>, transport: Transport) -> CliResult<Client> {
    let mut b = Client::builder(server)
        .user_agent(format!("natter-cli/{}", env!("CARGO_PKG_VERSION")))
        .transport(transport);
    if let Some(t) = token {
        b = b.token(t);
    }
    Ok(b.build()?)
}

/// A client without a session, and the configuration.
fn anonymous(common: &Common) -> CliResult<(Client, ClientConfig)> {
    let cfg = ClientConfig::load()?;
    let client = build(&server(common, &cfg)?, None, Transport::Auto)?;
    Ok((client, cfg))
}

/// A client with the stored session for the server.
fn logged_in(common: &Common) -> CliResult<(Client, ClientConfig, StoredSession)> {
    logged_in_with(common, Transport::Auto)
}

fn logged_in_with(
    common: &Common,
    transport: Transport,
) -> CliResult<(Client, ClientConfig, StoredSession)> {
    let cfg = ClientConfig::load()?;
    let server = server(common, &cfg)?;
    // the key is the normalised URL
    let key = build(&server, None, transport)?.server().to_owned();
    let Some(session) = cfg.sessions.get(&key).cloned() else {
        return Err(Failure::new(AUTH, format!("not logged in to {key}"))
            .with_hint("log in with `natter login USERNAME`"));
    };
    let client = build(&key, Some(session.token.clone()), transport)?;
    Ok((client, cfg, session))
}

fn remember(
    cfg: &mut ClientConfig,
    client: &Client,
    out: &natter_client::LogInResponse,
) -> CliResult {
    let key = client.server().to_owned();
    cfg.sessions.insert(
        key.clone(),
        StoredSession {
            username: out.user.username.clone(),
            token: out.token.clone(),
            expires_at: Some(out.expires_at),
        },
    );
    cfg.current = Some(key);
    cfg.save()
}

// ----- conversations ----------------------------------------------------

fn kind(k: ConversationKind) -> &'static str {
    match k {
        ConversationKind::Direct => "direct",
        ConversationKind::Group => "group",
    }
}

/// How a conversation is named to people: `@peer` or the group's title.
fn label(c: &ConversationSummary) -> String {
    match (&c.peer, &c.title) {
        (Some(p), _) => format!("@{}", p.username),
        (None, Some(t)) => t.clone(),
        (None, None) => c.id.to_string(),
    }
}

/// The conversation named by `target` and a label for it, without creating
/// anything.
async fn resolve(client: &Client, target: &Target) -> CliResult<(Uuid, String)> {
    match target {
        Target::Id(id) => Ok((*id, id.to_string())),
        Target::Direct(user) => {
            let user = user.to_ascii_lowercase();
            let list = client.conversations().await?;
            list.iter()
                .find(|c| {
                    c.kind == ConversationKind::Direct
                        && c.peer.as_ref().is_some_and(|p| p.username == user)
                })
                .map(|c| (c.id, format!("@{user}")))
                .ok_or_else(|| {
                    Failure::new(NOT_FOUND, format!("no conversation with @{user}")).with_hint(
                        format!("start one with `natter send @{user} TEXT` or `natter conversations create --direct {user}`"),
                    )
                })
        }
    }
}

async fn create(client: &Client, args: CreateArgs, json: bool) -> CliResult {
    let conv = match (&args.direct, &args.group) {
        (Some(user), _) => client.direct(user).await?,
        (None, Some(title)) => client.create_group(title, &args.members).await?,
        (None, None) => return Err(Failure::usage("give --direct USER or --group TITLE")),
    };
    if json {
        output::json(&conv);
    } else if let Some(user) = &args.direct {
        println!("{}  direct conversation with @{user}", conv.id);
    } else {
        println!(
            "{}  group {:?} with {} members",
            conv.id,
            conv.title.as_deref().unwrap_or_default(),
            conv.members.len()
        );
    }
    Ok(())
}

// ----- messages ---------------------------------------------------------

async fn send(a: SendArgs) -> CliResult {
    let body = if a.text.is_empty() {
        if std::io::stdin().is_terminal() {
            eprintln!("(type the message; end it with Ctrl-D)");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::invalid(format!("cannot read standard input: {e}")))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        text.strip_suffix('\r').unwrap_or(text).to_owned()
    } else {
        a.text.join(" ")
    };
    if body.trim().is_empty() {
        return Err(Failure::invalid("the message is empty")
            .with_hint("give the text as arguments or on standard input"));
    }
    let (client, _, _) = logged_in(&a.common)?;
    let (id, name) = match &a.to {
        Target::Id(id) => (*id, id.to_string()),
        // sending to someone starts the conversation if need be
        Target::Direct(user) => (client.direct(user).await?.id, format!("@{user}")),
    };
    let out = Outgoing {
        conversation_id: id,
        client_id: a.client_id.unwrap_or_else(|| Uuid::now_v7().to_string()),
        body,
    };
    let sent = client.send_outgoing(&out).await?;
    if a.common.json {
        output::json(&json!({"message": sent.message, "created": sent.created}));
    } else if sent.created {
        println!("sent #{} to {name}", sent.message.seq);
    } else {
        println!(
            "#{} in {name} was already sent with this client id",
            sent.message.seq
        );
    }
    Ok(())
}

/// Writes one line to standard output; `false` when the reader went away
/// (`natter history … | head`), which ends the command quietly.
fn emit(out: &mut impl Write, line: &str) -> CliResult<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn message_text(m: &Message, json: bool) -> String {
    if json {
        serde_json::to_string(m).expect("messages serialise")
    } else {
        output::message_line(m)
    }
}

async fn history(a: HistoryArgs) -> CliResult {
    let (client, _, _) = logged_in(&a.common)?;
    let (id, name) = resolve(&client, &a.conversation).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !a.all {
        let page = client
            .history(
                id,
                HistoryQuery {
                    before: a.before,
                    after: a.after,
                    limit: a.limit,
                },
            )
            .await?;
        for m in &page.messages {
            if !emit(&mut out, &message_text(m, a.common.json))? {
                return Ok(());
            }
        }
        out.flush()?;
        if page.messages.is_empty() && !a.common.json {
            eprintln!("no messages");
        }
        if page.has_more && !a.common.json {
            let more = match (a.after, page.messages.first(), page.messages.last()) {
                (Some(_), _, Some(last)) => format!("--after {}", last.seq),
                (None, Some(first), _) => format!("--before {}", first.seq),
                _ => String::new(),
            };
            eprintln!("(more with {more}, or everything with --all)");
        }
        return Ok(());
    }
    let start = a.after.unwrap_or(0).max(0);
    let last_seq = client.conversation(id).await?.last_seq;
    let forced = if a.progress {
        Some(true)
    } else if a.no_progress {
        Some(false)
    } else {
        None
    };
    let progress = Progress::new(
        format!("exporting {name}"),
        (last_seq - start).max(0) as u64,
        forced,
    );
    let mut after = start;
    let mut done = 0u64;
    loop {
        let page = client
            .history(
                id,
                HistoryQuery {
                    after: Some(after),
                    limit: Some(100),
                    ..Default::default()
                },
            )
            .await?;
        for m in &page.messages {
            if !emit(&mut out, &message_text(m, a.common.json))? {
                return Ok(());
            }
            after = m.seq;
            done += 1;
        }
        out.flush()?;
        progress.update(done);
        if !page.has_more || page.messages.is_empty() {
            break;
        }
    }
    progress.finish(done);
    Ok(())
}

// ----- tail ---------------------------------------------------------------

/// Names of conversations for `tail`'s lines, fetched as they appear.
struct Labels {
    me: String,
    known: HashMap<Uuid, String>,
}

impl Labels {
    async fn get(&mut self, client: &Client, id: Uuid) -> String {
        if let Some(l) = self.known.get(&id) {
            return l.clone();
        }
        let l = match client.conversation(id).await {
            Ok(c) => match (c.kind, c.title) {
                (ConversationKind::Group, Some(t)) => t,
                _ => c
                    .members
                    .iter()
                    .find(|m| m.username != self.me)
                    .map(|m| format!("@{}", m.username))
                    .unwrap_or_else(|| id.to_string()),
            },
            Err(_) => id.to_string()[..8].to_owned(),
        };
        self.known.insert(id, l.clone());
        l
    }
}

/// The human line of an event (without the conversation label).
fn describe(e: &Event) -> Option<(Option<chrono::DateTime<chrono::Utc>>, String)> {
    let m = |e: &natter_client::MessageEvent| e.message.clone();
    Some(match e {
        Event::MessageCreated(x) => {
            let msg = m(x);
            let body = msg.body.unwrap_or_else(|| "(deleted)".into());
            (
                Some(msg.sent_at),
                format!(
                    "#{} {}: {}",
                    msg.seq,
                    msg.sender,
                    body.replace('\n', "\n    ")
                ),
            )
        }
        Event::MessageEdited(x) => (
            x.message.edited_at,
            format!(
                "#{} {} edited: {}",
                x.message.seq,
                x.message.sender,
                x.message.body.as_deref().unwrap_or("(deleted)")
            ),
        ),
        Event::MessageDeleted(x) => (
            x.message.deleted_at,
            format!("#{} {} deleted a message", x.message.seq, x.message.sender),
        ),
        Event::Read(r) => (None, format!("{} read up to #{}", r.user, r.seq)),
        Event::Delivered(r) => (None, format!("delivered to {} up to #{}", r.user, r.seq)),
        Event::ConversationCreated(c) => (
            Some(c.created_at),
            format!(
                "conversation created ({}{})",
                kind(c.kind),
                c.title
                    .as_deref()
                    .map(|t| format!(": {t}"))
                    .unwrap_or_default()
            ),
        ),
        Event::ConversationRenamed(r) => (None, format!("renamed to {:?}", r.title)),
        Event::MemberAdded(x) => (
            None,
            format!(
                "{} joined as {}",
                x.user,
                format!("{:?}", x.role).to_lowercase()
            ),
        ),
        Event::MemberRoleChanged(x) => (
            None,
            format!(
                "{} is now {}",
                x.user,
                format!("{:?}", x.role).to_lowercase()
            ),
        ),
        Event::MemberRemoved(x) => (None, format!("{} left", x.user)),
        Event::Typing(t) if t.active => (None, format!("{} is typing…", t.user)),
        Event::Typing(t) => (None, format!("{} stopped typing", t.user)),
        Event::Presence(p) => (
            None,
            format!("{} is {}", p.user, format!("{:?}", p.status).to_lowercase()),
        ),
        Event::SessionRevoked => (None, "this session was revoked".into()),
        Event::Unknown(u) => (None, format!("{} {}", u.name, u.data)),
        _ => return None,
    })
}

async fn tail(a: TailArgs) -> CliResult {
    let transport = match a.transport {
        TransportArg::Auto => Transport::Auto,
        TransportArg::Websocket => Transport::WebSocket,
        TransportArg::LongPoll => Transport::LongPoll,
    };
    let (client, _, session) = logged_in_with(&a.common, transport)?;
    let mut labels = Labels {
        me: session.username.clone(),
        known: HashMap::new(),
    };
    let mut only = HashSet::new();
    for t in &a.conversations {
        let (id, name) = resolve(&client, t).await?;
        labels.known.insert(id, name);
        only.insert(id);
    }
    if a.count == Some(0) {
        return Ok(());
    }
    // also checks the session before following, so that a stale one
    // fails now rather than at the first connection
    for c in &client.conversations().await? {
        labels.known.insert(c.id, label(c));
    }
    let mut events = client.events_from(a.from.map(Cursor::new));
    let stdout = std::io::stdout();
    let mut printed = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let result = loop {
        let next = tokio::select! {
            n = events.next() => n,
            _ = &mut ctrl_c => break Ok(()),
        };
        let event = match next {
            None => break Ok(()),
            Some(Err(e)) => break Err(Failure::from(e)),
            Some(Ok(e)) => e,
        };
        match &event {
            Event::Connected(c) => {
                eprintln!(
                    "natter: {} ({}) from {}",
                    if c.resumed { "resumed" } else { "following" },
                    c.transport,
                    c.cursor
                );
                continue;
            }
            Event::Disconnected(d) => {
                eprintln!(
                    "natter: disconnected: {}; reconnecting in {:.1} s",
                    d.reason,
                    d.retry_in.as_secs_f64()
                );
                continue;
            }
            _ => {}
        }
        let conv = event.conversation_id();
        if !only.is_empty() && !conv.is_some_and(|c| only.contains(&c)) {
            continue;
        }
        if let Event::ConversationRenamed(r) = &event {
            labels.known.insert(r.conversation_id, r.title.clone());
        }
        let line = if a.common.json {
            serde_json::to_string(&event).expect("events serialise")
        } else {
            let Some((at, text)) = describe(&event) else {
                continue;
            };
            let at = output::clock(at.unwrap_or_else(chrono::Utc::now));
            match conv {
                Some(id) => format!("{at} [{}] {text}", labels.get(&client, id).await),
                None => format!("{at} {text}"),
            }
        };
        if !emit(&mut stdout.lock(), &line)? {
            break Ok(());
        }
        printed += 1;
        if a.count.is_some_and(|n| printed >= n) {
            break Ok(());
        }
    };
    if !a.common.json
        && let Some(c) = events.cursor()
    {
        eprintln!("natter: to continue from here: natter tail --from {c}");
    }
    result
}
