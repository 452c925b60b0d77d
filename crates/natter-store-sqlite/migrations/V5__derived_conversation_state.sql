-- A conversation's last sequence number and last activity are read from
-- its newest message (one seek at the end of its range of the messages'
-- primary key) instead of being kept in its row. Keeping them meant an
-- extra write per message to a page shared by no other message of the
-- batch: a fifth of the pages each append wrote to the log.
--
-- Nothing is lost: sequence numbers are gap-free and messages are never
-- deleted (a deleted message stays as a tombstone), so the newest
-- message's seq is the old last_seq, and its sent_at the old
-- last_activity_at (the conversation's creation time before any message).
ALTER TABLE conversations DROP COLUMN last_seq;
ALTER TABLE conversations DROP COLUMN last_activity_at;
