//! SQL for presence: when users were last online, and who sees whose
//! presence. Presence is shared along contact lists (a user's contacts see
//! them) and between the two members of a direct conversation; groups
//! alone share none, and a block (either way) shares none.

use natter_store::{PresencePeer, StoreError, StoreResult};
use natter_types::{Timestamp, UserId};
use rusqlite::{Connection, params};

use crate::codec::{DbResultExt, micros, opt_ts, username};

/// Records when the user was last online. The time only moves forward, so
/// that two devices going offline at once, whose writes may arrive in
/// either order, leave the later time.
pub(crate) fn set_last_seen(c: &Connection, user: UserId, at: Timestamp) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "UPDATE users SET last_seen_at = max(coalesce(last_seen_at, ?2), ?2) WHERE id = ?1",
        )
        .db()?
        .execute(params![user.0, micros(at)])
        .db()?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

/// The other members of `?1`'s direct conversations: `members_by_user`
/// gives the conversations, the primary keys their kind and members.
macro_rules! direct_peers {
    () => {
        "SELECT p.user_id
           FROM members m
           JOIN conversations c ON c.id = m.conversation_id AND c.kind = 'direct'
           JOIN members p ON p.conversation_id = m.conversation_id AND p.user_id <> m.user_id
          WHERE m.user_id = ?1"
    };
}

/// The users with a block between them and `?1`, either way: blocked
/// pairs share no presence.
macro_rules! blocked_pairs {
    () => {
        "SELECT target_id FROM blocks WHERE owner_id = ?1
         UNION SELECT owner_id FROM blocks WHERE target_id = ?1"
    };
}

/// Users who see `user`'s presence: `user`'s contacts and direct peers,
/// each once (`UNION` removes the duplicates), in id order, but for
/// blocked pairs.
const AUDIENCE: &str = concat!(
    "SELECT contact_id FROM contacts WHERE owner_id = ?1 AND contact_id NOT IN (",
    blocked_pairs!(),
    ") UNION ",
    direct_peers!(),
    " AND p.user_id NOT IN (",
    blocked_pairs!(),
    ") ORDER BY 1"
);

pub(crate) fn audience(c: &Connection, user: UserId) -> StoreResult<Vec<UserId>> {
    let mut stmt = c.prepare_cached(AUDIENCE).db()?;
    stmt.query_map([user.0], |r| r.get(0).map(UserId))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

/// Users whose presence `user` sees, the reverse relation: those who list
/// `user` as a contact (`contacts_by_contact`) and `user`'s direct peers,
/// each once, ordered by username, but for blocked pairs.
const SUBJECTS: &str = concat!(
    "SELECT u.id, u.username, u.last_seen_at
       FROM users u
      WHERE u.id IN (SELECT owner_id FROM contacts WHERE contact_id = ?1
                     UNION ",
    direct_peers!(),
    ")
        AND u.id NOT IN (",
    blocked_pairs!(),
    ")
      ORDER BY u.username"
);

pub(crate) fn subjects(c: &Connection, user: UserId) -> StoreResult<Vec<PresencePeer>> {
    let mut stmt = c.prepare_cached(SUBJECTS).db()?;
    stmt.query_map([user.0], |r| {
        Ok(PresencePeer {
            id: UserId(r.get(0)?),
            username: username(r, 1)?,
            last_seen_at: opt_ts(r, 2)?,
        })
    })
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both relations start from the user's own rows (their contacts, the
    /// contacts naming them, their memberships), never a scan of all users.
    #[test]
    fn presence_reads_seek() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::migrate::run(&mut c).unwrap();
        for sql in [AUDIENCE, SUBJECTS] {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan = stmt
                .query_map([0], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!plan.contains("SCAN"), "{plan}");
            assert!(
                plan.contains("SEARCH m USING COVERING INDEX members_by_user (user_id=?)"),
                "{plan}"
            );
        }
    }
}
