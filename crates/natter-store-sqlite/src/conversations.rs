//! SQL for conversations and their members, including the conversation
//! list, which is one query: the viewer's memberships joined with each
//! conversation, its last message and sender, the peer of a direct
//! conversation and the member count, paged by keyset. Each write that
//! changes something appends its events in the same job.

use natter_store::event_codec;
use natter_store::{ConversationCursor, NewGroup, StoreError, StoreResult};
use natter_types::{
    Conversation, ConversationId, ConversationKind, ConversationSummary, GroupTitle, Member, Role,
    Timestamp, UserId, UserRef, Username,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::accounts::require_user;
use crate::codec::{
    DbResultExt, conversation_at, conversation_cols, direct_key, last_seq_of, message_cols, micros,
    opt_message_at, opt_user_ref_at, parsed, truncate, ts, user_ref_at, user_ref_cols, username,
};
use crate::events;

pub(crate) fn conversation(
    c: &Connection,
    id: ConversationId,
) -> StoreResult<Option<Conversation>> {
    c.prepare_cached(concat!(
        "SELECT ",
        conversation_cols!("c"),
        " FROM conversations c WHERE c.id = ?1"
    ))
    .db()?
    .query_row([id.0.as_bytes()], |r| conversation_at(r, 0))
    .optional()
    .db()
}

/// The direct conversation of `a` and `b`, if there is one. Also read
/// outside the writer first, since nearly every call finds one: a session's
/// first message to a peer looks its conversation up.
pub(crate) fn existing_direct(
    c: &Connection,
    a: UserId,
    b: UserId,
) -> StoreResult<Option<Conversation>> {
    c.prepare_cached(concat!(
        "SELECT ",
        conversation_cols!("c"),
        " FROM conversations c WHERE c.direct_key = ?1"
    ))
    .db()?
    .query_row([direct_key(a, b)], |r| conversation_at(r, 0))
    .optional()
    .db()
}

pub(crate) fn direct_conversation(
    c: &Connection,
    a: UserId,
    b: UserId,
    now: Timestamp,
) -> StoreResult<(Conversation, bool)> {
    if a == b {
        return Err(StoreError::Backend(
            "a direct conversation needs two distinct users".into(),
        ));
    }
    // Writes are serial and this runs inside the write transaction, so the
    // look-up cannot race with another creation; the unique index on
    // direct_key backs that up should another process share the file.
    if let Some(conv) = existing_direct(c, a, b)? {
        return Ok((conv, false));
    }
    let key = direct_key(a, b);
    require_user(c, a)?;
    require_user(c, b)?;
    let conv = Conversation {
        id: ConversationId::new(),
        kind: ConversationKind::Direct,
        title: None,
        created_at: truncate(now),
        last_seq: 0,
        last_activity_at: truncate(now),
    };
    insert_conversation(c, &conv, Some(&key))?;
    for user in [a, b] {
        insert_member(c, conv.id, user, Role::Member, now, 0)?;
    }
    events::append(c, conv.id, &event_codec::conversation_created(), now)?;
    Ok((conv, true))
}

pub(crate) fn create_group(c: &Connection, new: &NewGroup) -> StoreResult<Conversation> {
    require_user(c, new.owner)?;
    for &user in &new.members {
        require_user(c, user)?;
    }
    let conv = Conversation {
        id: new.id,
        kind: ConversationKind::Group,
        title: Some(new.title.as_str().to_owned()),
        created_at: truncate(new.now),
        last_seq: 0,
        last_activity_at: truncate(new.now),
    };
    insert_conversation(c, &conv, None)?;
    insert_member(c, conv.id, new.owner, Role::Owner, new.now, 0)?;
    // the owner and repeated names are already members: ignored
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq, delivered_seq)
             VALUES (?1, ?2, 'member', ?3, 0, 0)
             ON CONFLICT (conversation_id, user_id) DO NOTHING",
        )
        .db()?;
    for &user in &new.members {
        stmt.execute(params![conv.id.0.as_bytes(), user.0, micros(new.now)])
            .db()?;
    }
    // the members come with the record: no member.added events
    events::append(c, conv.id, &event_codec::conversation_created(), new.now)?;
    Ok(conv)
}

fn insert_conversation(c: &Connection, conv: &Conversation, key: Option<&str>) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO conversations (id, kind, title, direct_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .db()?
    .execute(params![
        conv.id.0.as_bytes(),
        conv.kind.as_str(),
        conv.title,
        key,
        micros(conv.created_at),
    ])
    .db()?;
    Ok(())
}

/// Adds a member whose read and delivered markers both start at
/// `read_seq` (reading implies delivery).
fn insert_member(
    c: &Connection,
    id: ConversationId,
    user: UserId,
    role: Role,
    now: Timestamp,
    read_seq: i64,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq, delivered_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .db()?
    .execute(params![
        id.0.as_bytes(),
        user.0,
        role.as_str(),
        micros(now),
        read_seq
    ])
    .db()?;
    Ok(())
}

/// Renames a group. Renaming to the current title changes nothing and so
/// appends no event.
pub(crate) fn rename_group(
    c: &Connection,
    id: ConversationId,
    title: &GroupTitle,
) -> StoreResult<Conversation> {
    let conv = c
        .prepare_cached(concat!(
            "SELECT ",
            conversation_cols!("c"),
            " FROM conversations c WHERE c.id = ?1 AND c.kind = 'group'"
        ))
        .db()?
        .query_row([id.0.as_bytes()], |r| conversation_at(r, 0))
        .optional()
        .db()?
        .ok_or(StoreError::NotFound("conversation"))?;
    if conv.title.as_deref() == Some(title.as_str()) {
        return Ok(conv);
    }
    c.prepare_cached("UPDATE conversations SET title = ?2 WHERE id = ?1")
        .db()?
        .execute(params![id.0.as_bytes(), title.as_str()])
        .db()?;
    events::append(c, id, &event_codec::renamed(title.as_str()), events::now())?;
    Ok(Conversation {
        title: Some(title.as_str().to_owned()),
        ..conv
    })
}

pub(crate) fn members(c: &Connection, id: ConversationId) -> StoreResult<Vec<Member>> {
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT ",
            user_ref_cols!("u"),
            ", m.role, m.joined_at, m.read_seq, m.delivered_seq
               FROM members m JOIN users u ON u.id = m.user_id
              WHERE m.conversation_id = ?1
              ORDER BY m.joined_at, u.username"
        ))
        .db()?;
    stmt.query_map([id.0.as_bytes()], |r| {
        Ok(Member {
            user: user_ref_at(r, 0)?,
            role: parsed(r, 2)?,
            joined_at: ts(r, 3)?,
            read_seq: r.get(4)?,
            delivered_seq: r.get(5)?,
        })
    })
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}

pub(crate) fn member_role(
    c: &Connection,
    id: ConversationId,
    user: UserId,
) -> StoreResult<Option<Role>> {
    c.prepare_cached("SELECT role FROM members WHERE conversation_id = ?1 AND user_id = ?2")
        .db()?
        .query_row(params![id.0.as_bytes(), user.0], |r| parsed(r, 0))
        .optional()
        .db()
}

pub(crate) fn set_member(
    c: &Connection,
    id: ConversationId,
    user: UserId,
    role: Role,
    now: Timestamp,
) -> StoreResult<bool> {
    let (last_seq, current): (i64, Option<Role>) = c
        .prepare_cached(concat!(
            "SELECT ",
            last_seq_of!("c"),
            ", m.role
               FROM conversations c
               LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = ?2
              WHERE c.id = ?1"
        ))
        .db()?
        .query_row(params![id.0.as_bytes(), user.0], |r| {
            let role = match r.get_ref(1)? {
                rusqlite::types::ValueRef::Null => None,
                _ => Some(parsed(r, 1)?),
            };
            Ok((r.get(0)?, role))
        })
        .optional()
        .db()?
        .ok_or(StoreError::NotFound("conversation"))?;
    match current {
        Some(current) if current == role => Ok(false),
        Some(_) => {
            c.prepare_cached(
                "UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
            )
            .db()?
            .execute(params![id.0.as_bytes(), user.0, role.as_str()])
            .db()?;
            let name = username_of(c, user)?;
            events::append(c, id, &event_codec::role_changed(&name, role), now)?;
            Ok(false)
        }
        None => {
            let who: UserRef = c
                .prepare_cached(concat!(
                    "SELECT ",
                    user_ref_cols!("u"),
                    " FROM users u WHERE u.id = ?1"
                ))
                .db()?
                .query_row([user.0], |r| user_ref_at(r, 0))
                .optional()
                .db()?
                .ok_or(StoreError::NotFound("user"))?;
            // a newcomer has nothing to catch up on: the markers start at
            // the end
            insert_member(c, id, user, role, now, last_seq)?;
            events::append(c, id, &event_codec::member_added(&who, role), now)?;
            Ok(true)
        }
    }
}

fn username_of(c: &Connection, user: UserId) -> StoreResult<Username> {
    c.prepare_cached("SELECT username FROM users WHERE id = ?1")
        .db()?
        .query_row([user.0], |r| username(r, 0))
        .optional()
        .db()?
        .ok_or(StoreError::NotFound("user"))
}

/// Removes a member: `member.removed` (which the removed user receives
/// too), then `member.role_changed` for a member promoted to owner.
pub(crate) fn remove_member(c: &Connection, id: ConversationId, user: UserId) -> StoreResult<bool> {
    let removed: Option<Role> = c
        .prepare_cached(
            "DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2 RETURNING role",
        )
        .db()?
        .query_row(params![id.0.as_bytes(), user.0], |r| parsed(r, 0))
        .optional()
        .db()?;
    let Some(role) = removed else {
        return Ok(false);
    };
    let at = events::now();
    let name = username_of(c, user)?;
    events::append(c, id, &event_codec::member_removed(user, &name), at)?;
    if role == Role::Owner {
        // A group with members always has an owner: if that was the last
        // one, the longest-standing admin, or else member, takes over
        // (ties on join time go to the username, for a stable choice).
        let promoted: Option<Username> = c
            .prepare_cached(
                "UPDATE members SET role = 'owner'
                  WHERE conversation_id = ?1
                    AND user_id = (SELECT m.user_id
                                     FROM members m JOIN users u ON u.id = m.user_id
                                    WHERE m.conversation_id = ?1
                                    ORDER BY m.role = 'admin' DESC, m.joined_at, u.username
                                    LIMIT 1)
                    AND NOT EXISTS (SELECT 1 FROM members
                                     WHERE conversation_id = ?1 AND role = 'owner')
                    AND EXISTS (SELECT 1 FROM conversations
                                 WHERE id = ?1 AND kind = 'group')
                 RETURNING (SELECT u.username FROM users u WHERE u.id = members.user_id)",
            )
            .db()?
            .query_row([id.0.as_bytes()], |r| username(r, 0))
            .optional()
            .db()?;
        if let Some(name) = promoted {
            events::append(c, id, &event_codec::role_changed(&name, Role::Owner), at)?;
        }
    }
    Ok(true)
}

pub(crate) fn list_conversations(
    c: &Connection,
    user: UserId,
    after: Option<ConversationCursor>,
    limit: u32,
) -> StoreResult<Vec<ConversationSummary>> {
    // Columns: conversation 0..=5, role 6, read_seq 7, member count 8,
    // peer 9..=10, last message 11..=19. The conversation's last seq and
    // activity come from its last message `lm`, found with one seek, rather
    // than from `conversation_cols!`, which would seek again for each.
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT c.id, c.kind, c.title, c.created_at, coalesce(lm.seq, 0), ",
            "coalesce(lm.sent_at, c.created_at), m.role, m.read_seq,
               (SELECT count(*) FROM members mc WHERE mc.conversation_id = c.id), ",
            user_ref_cols!("pu"),
            ", ",
            message_cols!("lm", "lu"),
            " FROM members m
               JOIN conversations c ON c.id = m.conversation_id
               LEFT JOIN users pu
                 ON c.kind = 'direct'
                AND pu.id = (SELECT pm.user_id FROM members pm
                              WHERE pm.conversation_id = c.id AND pm.user_id <> m.user_id
                              LIMIT 1)
               LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = ",
            last_seq_of!("c"),
            "
               LEFT JOIN users lu ON lu.id = lm.sender_id
              WHERE m.user_id = ?1
                AND (?2 IS NULL OR (coalesce(lm.sent_at, c.created_at), c.id) < (?2, ?3))
              ORDER BY coalesce(lm.sent_at, c.created_at) DESC, c.id DESC
              LIMIT ?4"
        ))
        .db()?;
    let (at, id) = match after {
        Some(cur) => (
            Some(micros(cur.last_activity_at)),
            Some(*cur.id.0.as_bytes()),
        ),
        None => (None, None),
    };
    stmt.query_map(params![user.0, at, id, limit], |r| {
        let conversation = conversation_at(r, 0)?;
        let read_seq: i64 = r.get(7)?;
        Ok(ConversationSummary {
            unread: (conversation.last_seq - read_seq).max(0),
            role: parsed(r, 6)?,
            read_seq,
            member_count: r.get(8)?,
            peer: opt_user_ref_at(r, 9)?,
            last_message: opt_message_at(r, 11)?,
            conversation,
        })
    })
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}
