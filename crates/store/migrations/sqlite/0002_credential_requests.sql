-- Credential requests, their credentials, connections, the outbox, feature
-- requests and the audit log (SQLite dialect).

CREATE TABLE feature_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    feature       TEXT    NOT NULL,
    requested_at  TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'granted', 'refused')),
    decided_at    TEXT,
    decided_by    TEXT
);
CREATE UNIQUE INDEX feature_requests_open ON feature_requests (user_id, feature) WHERE status = 'pending';

CREATE TABLE credential_requests (
    id                 TEXT    PRIMARY KEY,
    organization_id    INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    team_id            INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    requester_id       INTEGER NOT NULL REFERENCES users (id),
    name               TEXT    NOT NULL,
    description        TEXT,
    recipient_kind     TEXT    NOT NULL CHECK (recipient_kind IN ('internal', 'external')),
    recipient_user_id  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    recipient_name     TEXT    NOT NULL,
    recipient_email    TEXT    NOT NULL,
    link_hash          TEXT    NOT NULL UNIQUE,
    client             TEXT,
    project            TEXT,
    owner_id           INTEGER REFERENCES users (id) ON DELETE SET NULL,
    status             TEXT    NOT NULL CHECK (status IN ('pending', 'incomplete', 'authorized', 'partially_authorized', 'declined', 'invalid', 'revoked')),
    terms_accepted_at  TEXT    NOT NULL,
    opened_at          TEXT,
    expires_at         TEXT,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
);
-- `status` caches domain::derive_status over the request's credentials; it is
-- recomputed in the transaction of every credential change, never set by hand.
CREATE INDEX credential_requests_team ON credential_requests (team_id, created_at);
CREATE INDEX credential_requests_recipient ON credential_requests (recipient_user_id, created_at);
CREATE INDEX credential_requests_recipient_email ON credential_requests (lower(recipient_email));

CREATE TABLE connections (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    team_id          INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    provided_by      INTEGER REFERENCES users (id) ON DELETE SET NULL,
    name             TEXT    NOT NULL,
    app_key          TEXT    NOT NULL,
    app_version      INTEGER NOT NULL,
    auth_kind        TEXT    NOT NULL,
    modules          TEXT    NOT NULL,
    scopes           TEXT    NOT NULL,
    secret_id        TEXT    REFERENCES secrets (id) ON DELETE SET NULL,
    state            TEXT    NOT NULL CHECK (state IN ('valid', 'invalid')),
    verified_at      TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX connections_team ON connections (team_id);

CREATE TABLE requested_credentials (
    id              TEXT    PRIMARY KEY,
    request_id      TEXT    NOT NULL REFERENCES credential_requests (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    app_key         TEXT    NOT NULL,
    app_version     INTEGER NOT NULL,
    modules         TEXT    NOT NULL,
    scopes          TEXT    NOT NULL,
    note            TEXT,
    connection_name TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'authorized', 'invalid', 'declined', 'revoked', 'reauthorizing')),
    decline_reason  TEXT,
    invalid_reason  TEXT,
    connection_id   INTEGER REFERENCES connections (id) ON DELETE SET NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX requested_credentials_request ON requested_credentials (request_id, position);
CREATE INDEX requested_credentials_state ON requested_credentials (state);

-- Notifications to deliver; written in the transaction of the change that
-- caused them, delivered later (at least once).
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,
    recipient_email  TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    sent_at          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;

-- Append-only: no update ever, no delete of an entry younger than 12 months.
CREATE TABLE audit_log (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at      TEXT    NOT NULL,
    organization_id  INTEGER NOT NULL,
    team_id          INTEGER,
    actor_user_id    INTEGER,
    actor_label      TEXT    NOT NULL,
    event            TEXT    NOT NULL,
    target_kind      TEXT    NOT NULL,
    target_id        TEXT    NOT NULL,
    details          TEXT    NOT NULL
);
CREATE INDEX audit_log_organization ON audit_log (organization_id, occurred_at);
CREATE INDEX audit_log_team ON audit_log (team_id, occurred_at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_keeps_a_year BEFORE DELETE ON audit_log
-- An unreadable time counts as young: nothing is deleted on a guess.
WHEN julianday(OLD.occurred_at) IS NULL OR julianday(OLD.occurred_at) > julianday('now', '-12 months')
BEGIN
    SELECT RAISE(ABORT, 'audit entries younger than 12 months are kept');
END;
