//! SQL for blocked lists. A block is a row `(owner, target)` with the
//! pair's key in the form of `conversations.direct_key`, so that appending
//! to a direct conversation finds a block with one index probe on the key
//! it already has (`messages::append_message`).

use natter_store::{Blocks, StoreResult};
use natter_types::{BlockedUser, ConversationId, Timestamp, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::accounts::require_user;
use crate::codec::{DbResultExt, direct_key, micros, ts, user_ref_at, user_ref_cols};

pub(crate) fn block(
    c: &Connection,
    owner: UserId,
    target: UserId,
    now: Timestamp,
) -> StoreResult<bool> {
    require_user(c, owner)?;
    require_user(c, target)?;
    let n = c
        .prepare_cached(
            "INSERT INTO blocks (owner_id, target_id, pair_key, blocked_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (owner_id, target_id) DO NOTHING",
        )
        .db()?
        .execute(params![
            owner.0,
            target.0,
            direct_key(owner, target),
            micros(now)
        ])
        .db()?;
    Ok(n > 0)
}

pub(crate) fn unblock(c: &Connection, owner: UserId, target: UserId) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM blocks WHERE owner_id = ?1 AND target_id = ?2")
        .db()?
        .execute([owner.0, target.0])
        .db()?;
    Ok(n > 0)
}

pub(crate) fn unblock_all(c: &Connection, owner: UserId) -> StoreResult<u64> {
    let n = c
        .prepare_cached("DELETE FROM blocks WHERE owner_id = ?1")
        .db()?
        .execute([owner.0])
        .db()?;
    Ok(n as u64)
}

pub(crate) fn list(c: &Connection, owner: UserId) -> StoreResult<Vec<BlockedUser>> {
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT ",
            user_ref_cols!("u"),
            ", b.blocked_at
               FROM blocks b JOIN users u ON u.id = b.target_id
              WHERE b.owner_id = ?1
              ORDER BY u.username"
        ))
        .db()?;
    stmt.query_map([owner.0], |r| {
        Ok(BlockedUser {
            user: user_ref_at(r, 0)?,
            blocked_at: ts(r, 2)?,
        })
    })
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}

pub(crate) fn between(c: &Connection, a: UserId, b: UserId) -> StoreResult<Blocks> {
    let mut stmt = c
        .prepare_cached("SELECT owner_id FROM blocks WHERE pair_key = ?1")
        .db()?;
    let owners = stmt
        .query_map([direct_key(a, b)], |r| r.get::<_, i64>(0))
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(Blocks {
        by_first: a != b && owners.contains(&a.0),
        by_second: a != b && owners.contains(&b.0),
    })
}

pub(crate) fn direct_blocked(c: &Connection, id: ConversationId) -> StoreResult<bool> {
    c.prepare_cached(
        "SELECT 1 FROM conversations c
          WHERE c.id = ?1
            AND EXISTS (SELECT 1 FROM blocks b WHERE b.pair_key = c.direct_key)",
    )
    .db()?
    .query_row([id.0.as_bytes()], |_| Ok(()))
    .optional()
    .db()
    .map(|found| found.is_some())
}

/// Why an append matched no row, if it was a block: the sender is a
/// member of a direct conversation where someone blocked someone (the
/// sender's own block first). `None` otherwise.
pub(crate) fn append_refusal(
    c: &Connection,
    id: ConversationId,
    sender: UserId,
) -> StoreResult<Option<natter_store::StoreError>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT b.owner_id FROM conversations c JOIN blocks b ON b.pair_key = c.direct_key
              WHERE c.id = ?1
                AND EXISTS (SELECT 1 FROM members WHERE conversation_id = ?1 AND user_id = ?2)",
        )
        .db()?;
    let owners = stmt
        .query_map(params![id.0.as_bytes(), sender.0], |r| r.get::<_, i64>(0))
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(if owners.contains(&sender.0) {
        Some(natter_store::StoreError::SenderBlocked)
    } else if owners.is_empty() {
        None
    } else {
        Some(natter_store::StoreError::RecipientBlocked)
    })
}
