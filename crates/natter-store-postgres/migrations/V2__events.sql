-- The event log, delivered markers and last-seen times.
--
-- Every change that clients follow in real time is appended to `events` in
-- the same transaction as the change itself (see natter-store's "events").
--
-- Positions follow commit order across connections and nodes: a row's
-- position is (xid, id), the 64-bit id of the transaction that wrote it
-- (filled in by the default, never by the application) and a sequence
-- number that orders the rows of one transaction. Readers only return rows
-- whose xid is below the xmin of their snapshot, i.e. rows of transactions
-- that have all finished; src/events.rs explains why that never skips a
-- row, which a plain BIGSERIAL position would.
--
-- Rows hold what natter_store::event_codec writes: the kind name, for
-- message events the message's seq (the message is joined in on reading,
-- so it shows its current state), otherwise a small JSON payload, and for
-- member.removed the removed user, who receives that one event of a
-- conversation they no longer belong to.
--
-- No foreign keys, as in the SQLite backend: the log is history,
-- conversations and users are never deleted, and a parent look-up per
-- append would buy nothing.

CREATE TABLE events (
    xid             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id              BIGINT      GENERATED ALWAYS AS IDENTITY,
    conversation_id UUID        NOT NULL,
    kind            TEXT        NOT NULL, -- EventKind::name, e.g. 'message.created'
    seq             BIGINT,               -- message events: the message, joined on read
    payload         JSONB       NOT NULL, -- event_codec::Payload
    target_user_id  BIGINT,               -- member.removed: the removed user
    created_at      TIMESTAMPTZ NOT NULL,
    -- The position order: the tail of the whole log (events_after) and its
    -- head (event_head) are range scans of this index.
    PRIMARY KEY (xid, id)
);

-- A user's catch-up (user_events_after) reads each of their conversations
-- from a position: one short index-only range scan per conversation.
CREATE INDEX events_conversation ON events (conversation_id, xid, id);

-- ... and their own removals; only member.removed rows have a target, so
-- the index holds those rows only.
CREATE INDEX events_target ON events (target_user_id, xid, id)
    WHERE target_user_id IS NOT NULL;

-- Reading implies delivery, so delivered_seq >= read_seq always; existing
-- members start with what they have read.
ALTER TABLE members ADD COLUMN delivered_seq BIGINT NOT NULL DEFAULT 0;
UPDATE members SET delivered_seq = read_seq WHERE delivered_seq <> read_seq;
ALTER TABLE members
    ADD CONSTRAINT members_delivered_covers_read CHECK (delivered_seq >= read_seq);

ALTER TABLE users ADD COLUMN last_seen_at TIMESTAMPTZ;

-- presence_audience and presence_subjects find a user's direct peers
-- through members_user and the members and conversations primary keys;
-- contacts_contact (V1) serves "who lists this user".
