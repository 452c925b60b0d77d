-- Natter's initial PostgreSQL schema.
--
-- Applied by refinery (see src/migrate.rs) inside one transaction, under an
-- advisory lock, into the first schema of the connection's search_path.
-- Tables are unqualified on purpose so that one database can hold several
-- Natter schemas (tests, staging).
--
-- Conventions: timestamps are TIMESTAMPTZ (microsecond precision, which is
-- the precision the store contract promises); users have a compact BIGINT
-- identity; conversations, messages and sessions have UUIDs chosen by the
-- application (version 7, so B-tree inserts stay local).

CREATE TABLE users (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username          TEXT        NOT NULL UNIQUE,
    display_name      TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    salt              BYTEA       NOT NULL,
    iterations        INT         NOT NULL CHECK (iterations > 0),
    sha1_stored_key   BYTEA       NOT NULL,
    sha1_server_key   BYTEA       NOT NULL,
    sha256_stored_key BYTEA       NOT NULL,
    sha256_server_key BYTEA       NOT NULL
);

-- Bearer tokens are stored only as their SHA-256.
CREATE TABLE sessions (
    id         UUID        PRIMARY KEY,
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash BYTEA       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    user_agent TEXT
);
CREATE INDEX sessions_user_created ON sessions (user_id, created_at DESC);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- The roster: one-way entries, groups kept in the order given.
CREATE TABLE contacts (
    owner_id   BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_id BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT,
    groups     TEXT[]      NOT NULL DEFAULT '{}',
    added_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (owner_id, contact_id)
);
CREATE INDEX contacts_contact ON contacts (contact_id);

-- direct_key is 'min_user_id:max_user_id' for direct conversations and NULL
-- for groups; its unique constraint is what makes concurrent first calls
-- for one pair agree on a single conversation (INSERT .. ON CONFLICT).
-- last_seq is the per-conversation message counter: appends increment it
-- under the row lock, so numbers are gap-free whatever the number of nodes.
CREATE TABLE conversations (
    id               UUID        PRIMARY KEY,
    kind             TEXT        NOT NULL CHECK (kind IN ('direct', 'group')),
    title            TEXT,
    direct_key       TEXT        UNIQUE,
    created_at       TIMESTAMPTZ NOT NULL,
    last_seq         BIGINT      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_activity_at TIMESTAMPTZ NOT NULL,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL)),
    CHECK (kind = 'group' OR title IS NULL)
);

CREATE TABLE members (
    conversation_id UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at       TIMESTAMPTZ NOT NULL,
    read_seq        BIGINT      NOT NULL DEFAULT 0 CHECK (read_seq >= 0),
    PRIMARY KEY (conversation_id, user_id)
);
-- A user's conversation list starts from here.
CREATE INDEX members_user ON members (user_id);

-- A deleted message stays as a tombstone: body NULL, deleted_at set.
-- UNIQUE (sender_id, client_id) is the retry deduplication key.
CREATE TABLE messages (
    conversation_id UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT      NOT NULL CHECK (seq > 0),
    id              UUID        NOT NULL UNIQUE,
    sender_id       BIGINT      NOT NULL REFERENCES users (id),
    client_id       TEXT        NOT NULL,
    body            TEXT,
    sent_at         TIMESTAMPTZ NOT NULL,
    edited_at       TIMESTAMPTZ,
    deleted_at      TIMESTAMPTZ,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (sender_id, client_id),
    CHECK ((body IS NULL) = (deleted_at IS NOT NULL))
);
