-- Project teardown and per-attempt webhook history, SQLite dialect (SPEC §9, §10).
--
-- A revoked credential keeps when it was revoked and, when it was the
-- sending team that ended it (a project closed), why: "project <name>
-- closed". Both are cleared when it leaves `revoked`.
ALTER TABLE requested_credentials ADD COLUMN revoked_at TEXT;
ALTER TABLE requested_credentials ADD COLUMN revoked_note TEXT;

-- One row per attempt of a webhook delivery (the delivery row keeps only the
-- last): when, the endpoint's status or why none answered (never the URL,
-- whose path may hold the receiver's token, nor a secret), and how long it
-- took. Written by the job runner with the delivery's bookkeeping.
CREATE TABLE webhook_delivery_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at  TEXT    NOT NULL,
    status        INTEGER,
    error         TEXT,
    latency_ms    INTEGER NOT NULL
);
CREATE INDEX webhook_delivery_attempts_delivery ON webhook_delivery_attempts (delivery_id, id);

-- Who else a mail of the local mailbox was copied to (Cc; an escalation's
-- owner and sponsor), lowercased, one address per line, so that
-- `credence mail list --to <owner>` finds the owner's copy too. NULL before
-- this migration and for mail copied to nobody.
ALTER TABLE mailbox ADD COLUMN copied_to TEXT;
