-- The event log, delivered markers and last-seen times.
--
-- Every change that clients follow in real time is appended to `events` in
-- the same transaction as the change itself (see natter-store's "events").
-- A row's position is its rowid: the store has one writer thread, and
-- SQLite one write transaction at a time even across processes, so rowid
-- order is commit order and a reader that has seen position p has seen
-- every position below it.
--
-- Positions are cursors held by clients: one must never be handed out
-- twice. A new rowid is the largest one + 1, so that only happens if the
-- newest row is deleted, which the trigger below forbids (older rows may
-- go, for retention). AUTOINCREMENT would promise the same by updating
-- sqlite_sequence on every insert: a fifth B-tree page per append for the
-- savepoint journal and the WAL, some 5% of an append's work.
--
-- No foreign keys: the log is history, conversations and users are never
-- deleted today, and a parent look-up per append would buy nothing.

CREATE TABLE events (
    pos             INTEGER PRIMARY KEY,
    conversation_id BLOB    NOT NULL,
    kind            TEXT    NOT NULL, -- EventKind::name, e.g. 'message.created'
    seq             INTEGER,          -- message events: the message, joined on read
    payload         TEXT    NOT NULL, -- JSON, natter_store::event_codec::Payload
    target_user_id  INTEGER,          -- member.removed: the removed user
    created_at      INTEGER NOT NULL
) STRICT;

CREATE TRIGGER events_keep_the_newest BEFORE DELETE ON events
WHEN old.pos = (SELECT max(pos) FROM events)
BEGIN
    SELECT RAISE(ABORT, 'the newest event cannot be deleted: its position would be reused');
END;

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
