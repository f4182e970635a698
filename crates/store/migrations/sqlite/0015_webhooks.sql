-- Webhook endpoints and their deliveries, SQLite dialect (SPEC §10; crates/jobs/src/webhooks.rs).
--
-- An endpoint belongs to a team (team_id set) or to a whole organization
-- (team_id NULL) and receives the audit events it chose. Its signing secret
-- (`whsec_…`) lives sealed in `secrets` (purpose 'webhook_signing'), never
-- here; during a rotation the previous one signs too until
-- previous_secret_until.
CREATE TABLE webhook_endpoints (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id        INTEGER     NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    team_id                INTEGER     REFERENCES teams (id) ON DELETE CASCADE,
    url                    TEXT    NOT NULL,
    -- Event names separated by spaces, or '*' for every event.
    events                 TEXT    NOT NULL,
    enabled                INTEGER     NOT NULL,
    secret_id              TEXT    NOT NULL,
    previous_secret_id     TEXT,
    previous_secret_until  TEXT,
    created_by             INTEGER     REFERENCES users (id) ON DELETE SET NULL,
    created_at             TEXT    NOT NULL,
    updated_at             TEXT    NOT NULL,
    -- The first failed attempt since the last success: three days of it
    -- disable the endpoint.
    failing_since          TEXT,
    disabled_at            TEXT,
    disabled_reason        TEXT
);
CREATE INDEX webhook_endpoints_organization ON webhook_endpoints (organization_id, team_id);

-- One message to one endpoint, written in the transaction of the audited
-- change (so a change that rolls back delivers nothing), then claimed under a
-- lease like the outbox (0013). The payload is the audit entry as JSON, which
-- holds no secret. The last attempt's outcome is the delivery log.
CREATE TABLE webhook_deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id        INTEGER     NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- `webhook-id`: the same for every attempt and replay of one message.
    message_id         TEXT    NOT NULL,
    event              TEXT    NOT NULL,
    payload            TEXT    NOT NULL,
    created_at         TEXT    NOT NULL,
    replay_of          INTEGER,
    attempts           INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at    TEXT,
    lease_until        TEXT,
    lease_token        TEXT,
    last_attempt_at    TEXT,
    last_status        INTEGER,
    last_latency_ms    INTEGER,
    last_response      TEXT,
    last_error         TEXT,
    delivered_at       TEXT,
    failed_at          TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
