//! SQL for accounts, sessions and contact lists. Each function is one
//! store operation on a connection: the writer runs the ones that write
//! (inside its batch transaction), the read pool the others.

use natter_store::{NewSession, NewUser, StoreError, StoreResult};
use natter_types::{
    Contact, ContactGroups, ContactName, Credentials, DisplayName, Session, SessionId, Timestamp,
    User, UserId, UserRef, Username,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::codec::{
    DbResultExt, credentials_at, credentials_cols, micros, opt_ts, session_at, session_cols,
    truncate, ts, user_at, user_cols, user_ref_at, user_ref_cols,
};

// --- users ----------------------------------------------------------------

pub(crate) fn create_user(c: &Connection, new: &NewUser) -> StoreResult<User> {
    let creds = &new.credentials;
    let id: i64 = c
        .prepare_cached(
            "INSERT INTO users (username, display_name, created_at, salt, iterations,
                 sha1_stored_key, sha1_server_key, sha256_stored_key, sha256_server_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             RETURNING id",
        )
        .db()?
        .query_row(
            params![
                new.username.as_str(),
                new.display_name.as_ref().map(DisplayName::as_str),
                micros(new.now),
                creds.salt,
                creds.iterations,
                creds.sha1.stored_key,
                creds.sha1.server_key,
                creds.sha256.stored_key,
                creds.sha256.server_key,
            ],
            |r| r.get(0),
        )
        .db()?;
    Ok(User {
        id: UserId(id),
        username: new.username.clone(),
        display_name: new.display_name.as_ref().map(|d| d.as_str().to_owned()),
        created_at: truncate(new.now),
    })
}

pub(crate) fn user_by_username(c: &Connection, username: &str) -> StoreResult<Option<User>> {
    c.prepare_cached(concat!(
        "SELECT ",
        user_cols!("u"),
        " FROM users u WHERE u.username = ?1"
    ))
    .db()?
    .query_row([username], |r| user_at(r, 0))
    .optional()
    .db()
}

pub(crate) fn user_by_id(c: &Connection, id: UserId) -> StoreResult<Option<User>> {
    c.prepare_cached(concat!(
        "SELECT ",
        user_cols!("u"),
        " FROM users u WHERE u.id = ?1"
    ))
    .db()?
    .query_row([id.0], |r| user_at(r, 0))
    .optional()
    .db()
}

/// Whether the account exists, for operations that name users by id.
pub(crate) fn require_user(c: &Connection, id: UserId) -> StoreResult<()> {
    let found = c
        .prepare_cached("SELECT 1 FROM users WHERE id = ?1")
        .db()?
        .exists([id.0])
        .db()?;
    if found {
        Ok(())
    } else {
        Err(StoreError::NotFound("user"))
    }
}

pub(crate) fn users_by_username(c: &Connection, usernames: &[Username]) -> StoreResult<Vec<User>> {
    // One statement whatever the number of names: they travel as one JSON
    // array parameter, unpacked by json_each.
    let names: Vec<&str> = usernames.iter().map(Username::as_str).collect();
    let names = serde_json::to_string(&names).map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT ",
            user_cols!("u"),
            " FROM users u
              WHERE u.username IN (SELECT value FROM json_each(?1))
              ORDER BY u.username"
        ))
        .db()?;
    stmt.query_map([names], |r| user_at(r, 0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

pub(crate) fn credentials(c: &Connection, id: UserId) -> StoreResult<Option<Credentials>> {
    c.prepare_cached(concat!(
        "SELECT ",
        credentials_cols!(),
        " FROM users WHERE id = ?1"
    ))
    .db()?
    .query_row([id.0], |r| credentials_at(r, 0))
    .optional()
    .db()
}

pub(crate) fn set_disabled(c: &Connection, id: UserId, at: Option<Timestamp>) -> StoreResult<()> {
    let changed = c
        .prepare_cached("UPDATE users SET disabled_at = ?2 WHERE id = ?1")
        .db()?
        .execute(params![id.0, at.map(micros)])
        .db()?;
    if changed == 0 {
        return Err(StoreError::NotFound("user"));
    }
    if at.is_some() {
        c.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")
            .db()?
            .execute([id.0])
            .db()?;
    }
    Ok(())
}

pub(crate) fn disabled_at(c: &Connection, id: UserId) -> StoreResult<Option<Timestamp>> {
    c.prepare_cached("SELECT disabled_at FROM users WHERE id = ?1")
        .db()?
        .query_row([id.0], |r| opt_ts(r, 0))
        .optional()
        .db()?
        .ok_or(StoreError::NotFound("user"))
}

pub(crate) fn set_display_name(
    c: &Connection,
    id: UserId,
    name: Option<&DisplayName>,
) -> StoreResult<User> {
    c.prepare_cached(
        "UPDATE users SET display_name = ?2 WHERE id = ?1
         RETURNING id, username, display_name, created_at",
    )
    .db()?
    .query_row(params![id.0, name.map(DisplayName::as_str)], |r| {
        user_at(r, 0)
    })
    .optional()
    .db()?
    .ok_or(StoreError::NotFound("user"))
}

pub(crate) fn set_credentials(
    c: &Connection,
    id: UserId,
    creds: &Credentials,
    keep: Option<SessionId>,
) -> StoreResult<()> {
    let changed = c
        .prepare_cached(
            "UPDATE users SET salt = ?2, iterations = ?3,
                 sha1_stored_key = ?4, sha1_server_key = ?5,
                 sha256_stored_key = ?6, sha256_server_key = ?7
             WHERE id = ?1",
        )
        .db()?
        .execute(params![
            id.0,
            creds.salt,
            creds.iterations,
            creds.sha1.stored_key,
            creds.sha1.server_key,
            creds.sha256.stored_key,
            creds.sha256.server_key,
        ])
        .db()?;
    if changed == 0 {
        return Err(StoreError::NotFound("user"));
    }
    // `id IS NOT NULL` holds for every row, so no `keep` revokes them all.
    c.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND id IS NOT ?2")
        .db()?
        .execute(params![id.0, keep.map(|k| *k.0.as_bytes())])
        .db()?;
    Ok(())
}

/// Usernames starting with the query, or display names containing it,
/// both without regard to case. Usernames are lowercase ASCII, so the
/// prefix test is a range scan of their unique index; display names are
/// folded by `natter_fold` (Unicode lowercase, see `conn.rs`) and searched
/// with `instr`, which takes the query literally: `%` and `_` are just
/// characters, with nothing to escape.
pub(crate) fn search_users(c: &Connection, query: &str, limit: u32) -> StoreResult<Vec<User>> {
    let folded = query.to_lowercase();
    // every string with the prefix sorts below prefix + U+10FFFF (the
    // largest code point, whose UTF-8 is above any ASCII byte)
    let upper = format!("{folded}\u{10FFFF}");
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT ",
            user_cols!("u"),
            " FROM users u
              WHERE (u.username >= ?1 AND u.username < ?2)
                 OR instr(natter_fold(u.display_name), ?1) > 0
              ORDER BY u.username
              LIMIT ?3"
        ))
        .db()?;
    stmt.query_map(params![folded, upper, limit], |r| user_at(r, 0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

// --- sessions -------------------------------------------------------------

pub(crate) fn create_session(c: &Connection, new: &NewSession) -> StoreResult<Session> {
    require_user(c, new.user_id)?;
    c.prepare_cached(
        "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .db()?
    .execute(params![
        new.id.0.as_bytes(),
        new.user_id.0,
        new.token_hash,
        micros(new.created_at),
        micros(new.expires_at),
        new.user_agent,
    ])
    .db()?;
    Ok(Session {
        id: new.id,
        user_id: new.user_id,
        created_at: truncate(new.created_at),
        expires_at: truncate(new.expires_at),
        user_agent: new.user_agent.clone(),
    })
}

pub(crate) fn session_by_token(
    c: &Connection,
    token_hash: &[u8; 32],
) -> StoreResult<Option<(Session, User)>> {
    c.prepare_cached(concat!(
        "SELECT ",
        session_cols!("s"),
        ", ",
        user_cols!("u"),
        " FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.token_hash = ?1"
    ))
    .db()?
    .query_row([token_hash], |r| Ok((session_at(r, 0)?, user_at(r, 5)?)))
    .optional()
    .db()
}

pub(crate) fn list_sessions(
    c: &Connection,
    user: UserId,
    now: Timestamp,
) -> StoreResult<Vec<Session>> {
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT ",
            session_cols!("s"),
            " FROM sessions s
              WHERE s.user_id = ?1 AND s.expires_at > ?2
              ORDER BY s.created_at DESC, s.id DESC"
        ))
        .db()?;
    stmt.query_map(params![user.0, micros(now)], |r| session_at(r, 0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

pub(crate) fn session_valid(c: &Connection, id: SessionId, now: Timestamp) -> StoreResult<bool> {
    c.prepare_cached("SELECT 1 FROM sessions WHERE id = ?1 AND expires_at > ?2")
        .db()?
        .exists(params![id.0.as_bytes(), micros(now)])
        .db()
}

pub(crate) fn revoke_session(c: &Connection, user: UserId, id: SessionId) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM sessions WHERE id = ?1 AND user_id = ?2")
        .db()?
        .execute(params![id.0.as_bytes(), user.0])
        .db()?;
    Ok(n > 0)
}

pub(crate) fn purge_expired_sessions(c: &Connection, now: Timestamp) -> StoreResult<u64> {
    let n = c
        .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")
        .db()?
        .execute([micros(now)])
        .db()?;
    Ok(n as u64)
}

// --- contacts -------------------------------------------------------------

pub(crate) fn put_contact(
    c: &Connection,
    owner: UserId,
    contact: UserId,
    name: Option<&ContactName>,
    groups: &ContactGroups,
    now: Timestamp,
) -> StoreResult<(Contact, bool)> {
    require_user(c, owner)?;
    let user: UserRef = c
        .prepare_cached(concat!(
            "SELECT ",
            user_ref_cols!("u"),
            " FROM users u WHERE u.id = ?1"
        ))
        .db()?
        .query_row([contact.0], |r| user_ref_at(r, 0))
        .optional()
        .db()?
        .ok_or(StoreError::NotFound("user"))?;
    let groups_json =
        serde_json::to_string(groups.as_slice()).map_err(|e| StoreError::Backend(e.to_string()))?;
    let name = name.map(ContactName::as_str);

    let existing: Option<i64> = c
        .prepare_cached("SELECT added_at FROM contacts WHERE owner_id = ?1 AND contact_id = ?2")
        .db()?
        .query_row([owner.0, contact.0], |r| r.get(0))
        .optional()
        .db()?;
    let added_at = match existing {
        Some(added_at) => {
            c.prepare_cached(
                "UPDATE contacts SET name = ?3, groups = ?4
                 WHERE owner_id = ?1 AND contact_id = ?2",
            )
            .db()?
            .execute(params![owner.0, contact.0, name, groups_json])
            .db()?;
            chrono::DateTime::from_timestamp_micros(added_at)
                .ok_or_else(|| StoreError::Backend("contact date out of range".into()))?
        }
        None => {
            c.prepare_cached(
                "INSERT INTO contacts (owner_id, contact_id, name, groups, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .db()?
            .execute(params![owner.0, contact.0, name, groups_json, micros(now)])
            .db()?;
            truncate(now)
        }
    };
    let contact = Contact {
        user,
        name: name.map(str::to_owned),
        groups: groups.as_slice().to_vec(),
        added_at,
    };
    Ok((contact, existing.is_none()))
}

pub(crate) fn remove_contact(c: &Connection, owner: UserId, contact: UserId) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM contacts WHERE owner_id = ?1 AND contact_id = ?2")
        .db()?
        .execute([owner.0, contact.0])
        .db()?;
    Ok(n > 0)
}

pub(crate) fn list_contacts(c: &Connection, owner: UserId) -> StoreResult<Vec<Contact>> {
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT ",
            user_ref_cols!("u"),
            ", k.name, k.groups, k.added_at
               FROM contacts k JOIN users u ON u.id = k.contact_id
              WHERE k.owner_id = ?1
              ORDER BY u.username"
        ))
        .db()?;
    stmt.query_map([owner.0], contact_at)
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

fn contact_at(r: &Row<'_>) -> rusqlite::Result<Contact> {
    let groups: String = r.get(3)?;
    let groups = serde_json::from_str(&groups)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Text, e.into()))?;
    Ok(Contact {
        user: user_ref_at(r, 0)?,
        name: r.get(2)?,
        groups,
        added_at: ts(r, 4)?,
    })
}
