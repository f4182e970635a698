-- The broker's usage log (SPEC §8): one row per proxied call that passed the
-- access check, forwarded or refused. Like the audit log it outlives what it
-- describes (a revoked credential's recipient still reads what was done with
-- it), so it has no foreign keys, and no row is ever updated.
CREATE TABLE connection_usage (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at      TEXT    NOT NULL,
    organization_id  INTEGER NOT NULL,
    team_id          INTEGER NOT NULL,
    connection_id    INTEGER NOT NULL,
    credential_id    TEXT,
    consumer         TEXT,
    actor_user_id    INTEGER,
    actor_label      TEXT    NOT NULL,
    method           TEXT    NOT NULL,
    -- The operation's path pattern; never the raw path or its query.
    path_template    TEXT,
    status           INTEGER NOT NULL,
    upstream_status  INTEGER,
    latency_ms       INTEGER NOT NULL
);
CREATE INDEX connection_usage_connection ON connection_usage (connection_id, occurred_at);
CREATE INDEX connection_usage_credential ON connection_usage (credential_id, occurred_at);

CREATE TRIGGER connection_usage_no_update BEFORE UPDATE ON connection_usage
BEGIN
    SELECT RAISE(ABORT, 'the usage log is append-only');
END;
