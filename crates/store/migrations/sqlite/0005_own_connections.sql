-- A user's own connections (SPEC §5 "Add connection"): an OAuth flow may now
-- create a connection for a team (`connect`) or renew one in place
-- (`reconnect`), besides authorizing a requested credential (`authorize`,
-- `reauthorize`). Flows live ten minutes and nothing points at them, so the
-- table is rebuilt rather than altered (SQLite cannot relax NOT NULL).
DROP TABLE oauth_flows;
CREATE TABLE oauth_flows (
    id               TEXT    PRIMARY KEY,
    state_hash       TEXT    NOT NULL UNIQUE,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose          TEXT    NOT NULL CHECK (purpose IN ('authorize', 'reauthorize', 'connect', 'reconnect')),
    credential_id    TEXT    REFERENCES requested_credentials (id) ON DELETE CASCADE,
    connection_id    INTEGER REFERENCES connections (id) ON DELETE CASCADE,
    team_id          INTEGER REFERENCES teams (id) ON DELETE CASCADE,
    -- For `connect`: the connection to create (name, app, version, modules, scopes) as JSON.
    target           TEXT,
    verifier_sealed  TEXT,
    -- For `connect` with the connection's own OAuth client: its id and secret, sealed.
    client_sealed    TEXT,
    created_at       TEXT    NOT NULL,
    expires_at       TEXT    NOT NULL,
    used_at          TEXT
);
CREATE INDEX oauth_flows_expires ON oauth_flows (expires_at);

-- The connection's own OAuth client ("advanced settings"), when it has one: the
-- id is shown, the secret is sealed with the tokens. NULL: the configured client.
ALTER TABLE connections ADD COLUMN oauth_client_id TEXT;

-- One OAuth refresh per connection at a time across instances, without
-- holding a database lock while the provider answers: a refresh claims the
-- lease with a guarded UPDATE and clears it when done; a crashed instance's
-- lease runs out.
ALTER TABLE connections ADD COLUMN refresh_lease_until TEXT;
