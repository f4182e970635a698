-- The outbox becomes a queue of jobs (crates/jobs): every instance claims due
-- messages under a lease, delivers them and marks them sent; a failure is
-- retried with backoff, and a message that keeps failing is dead-lettered
-- (kept, visible to operators: `credence jobs list|retry`).
--
-- attempts (0002) counts claims: a worker that dies holding a message has
-- used an attempt too. A lease is held while lease_until is in the future and
-- names its holder by lease_token: only the holder marks the message sent or
-- failed, so a worker whose lease ran out cannot overwrite its successor.
ALTER TABLE outbox ADD COLUMN next_attempt_at TEXT;
ALTER TABLE outbox ADD COLUMN lease_until TEXT;
ALTER TABLE outbox ADD COLUMN lease_token TEXT;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
ALTER TABLE outbox ADD COLUMN dead_lettered_at TEXT;
-- How a sent message left: 'smtp' or 'mailbox' (the local mailbox, when no
-- SMTP server is configured).
ALTER TABLE outbox ADD COLUMN sent_via TEXT;
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE sent_at IS NULL AND dead_lettered_at IS NULL;

-- The local mailbox: one row per delivery of a message to it. The mail is
-- rendered from the outbox row (whose payload stays sealed) when it is read,
-- so no link that acts as a key is stored in plain text here.
CREATE TABLE mailbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id     INTEGER NOT NULL REFERENCES outbox (id),
    delivered_at  TEXT NOT NULL
);
CREATE INDEX mailbox_outbox ON mailbox (outbox_id);
