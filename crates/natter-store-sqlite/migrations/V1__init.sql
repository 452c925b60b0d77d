-- The initial SQLite schema of Natter.
--
-- Conventions: timestamps are INTEGER microseconds since the Unix epoch (the
-- precision the store contract keeps, so values round-trip exactly); UUIDs
-- are 16-byte BLOBs (byte order = UUID order, as in PostgreSQL); tables are
-- STRICT so a wrongly typed bind fails loudly instead of being coerced.

CREATE TABLE users (
    id                INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
    username          TEXT    NOT NULL UNIQUE,
    display_name      TEXT,
    created_at        INTEGER NOT NULL,
    salt              BLOB    NOT NULL,
    iterations        INTEGER NOT NULL,
    sha1_stored_key   BLOB    NOT NULL,
    sha1_server_key   BLOB    NOT NULL,
    sha256_stored_key BLOB    NOT NULL,
    sha256_server_key BLOB    NOT NULL
) STRICT;

CREATE TABLE sessions (
    id         BLOB    NOT NULL PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash BLOB    NOT NULL UNIQUE, -- SHA-256 of the bearer token
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_agent TEXT
) STRICT, WITHOUT ROWID;

CREATE INDEX sessions_by_user ON sessions (user_id, created_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE contacts (
    owner_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT,
    groups     TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings, in order
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (owner_id, contact_id)
) STRICT, WITHOUT ROWID;

-- foreign-key checks on deleting a user look contacts up by contact_id
CREATE INDEX contacts_by_contact ON contacts (contact_id);

CREATE TABLE conversations (
    id               BLOB    NOT NULL PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('direct', 'group')),
    title            TEXT,
    -- "<smaller user id>:<larger user id>" for direct conversations, NULL
    -- for groups: the unique index makes one direct conversation per pair.
    direct_key       TEXT UNIQUE,
    created_at       INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_activity_at INTEGER NOT NULL,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
) STRICT, WITHOUT ROWID;

CREATE TABLE members (
    conversation_id BLOB    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT    NOT NULL CHECK (role IN ('member', 'admin', 'owner')),
    joined_at       INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) STRICT, WITHOUT ROWID;

-- a user's conversation list starts here
CREATE INDEX members_by_user ON members (user_id);

-- Messages are clustered by (conversation, seq), so a history page is one
-- contiguous range of the primary-key B-tree. Chat messages are small, which
-- is where WITHOUT ROWID pays off; long bodies spill to overflow pages.
CREATE TABLE messages (
    conversation_id BLOB    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    id              BLOB    NOT NULL UNIQUE,
    sender_id       INTEGER NOT NULL REFERENCES users (id),
    client_id       TEXT    NOT NULL,
    body            TEXT, -- NULL once deleted (a tombstone)
    sent_at         INTEGER NOT NULL,
    edited_at       INTEGER,
    deleted_at      INTEGER,
    PRIMARY KEY (conversation_id, seq),
    -- client ids deduplicate retries and are scoped by sender
    UNIQUE (sender_id, client_id)
) STRICT, WITHOUT ROWID;
