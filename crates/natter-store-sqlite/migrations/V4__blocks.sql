-- Blocked users (XEP-0191): owner_id blocked target_id. No direct
-- messages, presence or typing pass between the two, either way.
CREATE TABLE blocks (
    owner_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- "<smaller user id>:<larger user id>", the form of
    -- conversations.direct_key: appending to a direct conversation checks
    -- for a block with one probe of blocks_by_pair on the key it has.
    pair_key   TEXT    NOT NULL,
    blocked_at INTEGER NOT NULL,
    PRIMARY KEY (owner_id, target_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX blocks_by_pair ON blocks (pair_key);
-- who blocked a user (presence), and foreign-key checks on deleting one
CREATE INDEX blocks_by_target ON blocks (target_id);
