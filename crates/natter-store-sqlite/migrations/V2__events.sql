-- The event log, delivered markers and last-seen times.
--
-- Every change that clients follow in real time is appended to `events` in
-- the same transaction as the change itself (see natter-store's "events").
-- A row's position is its rowid: the store has one writer thread, and
-- SQLite one write transaction at a time even across processes, so rowid
-- order is commit order and a reader that has seen position p has seen
-- every position below it. AUTOINCREMENT because positions are cursors
-- held by clients: a position must never be handed out twice, even if the
-- newest rows were ever deleted (plain rowids would reuse max + 1).
--
-- No foreign keys: the log is history, conversations and users are never
-- deleted today, and a parent look-up per append would buy nothing.

CREATE TABLE events (
    pos             INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id BLOB    NOT NULL,
    kind            TEXT    NOT NULL, -- EventKind::name, e.g. 'message.created'
    seq             INTEGER,          -- message events: the message, joined on read
    payload         TEXT    NOT NULL, -- JSON, natter_store::event_codec::Payload
    target_user_id  INTEGER,          -- member.removed: the removed user
    created_at      INTEGER NOT NULL
) STRICT;

-- A user's catch-up reads their conversations' events after a position:
-- each index entry ends with the rowid, so this is (conversation_id, pos).
CREATE INDEX events_by_conversation ON events (conversation_id);

-- ... and their own removals; only member.removed rows have a target, so
-- the index holds those rows only.
CREATE INDEX events_by_target ON events (target_user_id)
    WHERE target_user_id IS NOT NULL;

-- Reading implies delivery, so delivered_seq >= read_seq always; existing
-- members start with what they have read.
ALTER TABLE members ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;
UPDATE members SET delivered_seq = read_seq;

ALTER TABLE users ADD COLUMN last_seen_at INTEGER;

-- presence_audience and presence_subjects look up a user's direct
-- conversations through members_by_user and conversations' primary key;
-- contacts_by_contact (V1) serves "who lists this user".
