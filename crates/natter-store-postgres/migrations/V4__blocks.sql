-- Blocked users (XEP-0191): owner_id blocked target_id. No direct
-- messages, presence or typing pass between the two, either way.
-- pair_key is 'min_user_id:max_user_id', the form of
-- conversations.direct_key: appending to a direct conversation checks for
-- a block with one probe of blocks_pair on the key it has.
CREATE TABLE blocks (
    owner_id   BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_id  BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pair_key   TEXT        NOT NULL,
    blocked_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (owner_id, target_id)
);
CREATE INDEX blocks_pair ON blocks (pair_key);
CREATE INDEX blocks_target ON blocks (target_id);
