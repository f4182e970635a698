-- Identity, sign-in, API tokens and sealed secrets (SQLite dialect).
-- Times are RFC 3339 text in UTC, written by the application.

CREATE TABLE organizations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    plan        TEXT    NOT NULL CHECK (plan IN ('free', 'core', 'pro', 'teams', 'enterprise')),
    partner     INTEGER NOT NULL DEFAULT 0 CHECK (partner IN (0, 1)),
    created_at  TEXT    NOT NULL
);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT NOT NULL,
    name           TEXT NOT NULL,
    password_hash  TEXT,
    language       TEXT NOT NULL DEFAULT 'en',
    timezone       TEXT NOT NULL DEFAULT 'UTC',
    created_at     TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE teams (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    created_at       TEXT    NOT NULL
);
CREATE INDEX teams_organization ON teams (organization_id);

CREATE TABLE organization_members (
    organization_id  INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role             TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'guest')),
    created_at       TEXT    NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_members_user ON organization_members (user_id);

CREATE TABLE team_members (
    team_id     INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE feature_grants (
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    feature     TEXT    NOT NULL,
    granted_at  TEXT    NOT NULL,
    granted_by  TEXT    NOT NULL,
    PRIMARY KEY (user_id, feature)
);

CREATE TABLE invitations (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id   INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    team_id           INTEGER REFERENCES teams (id) ON DELETE CASCADE,
    email             TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    organization_role TEXT    NOT NULL CHECK (organization_role IN ('owner', 'admin', 'member', 'guest')),
    team_role         TEXT    CHECK (team_role IN ('admin', 'member')),
    token_hash        TEXT    NOT NULL UNIQUE,
    invited_by        INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at        TEXT    NOT NULL,
    expires_at        TEXT,
    accepted_at       TEXT,
    accepted_user_id  INTEGER REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX invitations_organization ON invitations (organization_id);

CREATE TABLE sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE setup_links (
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL,
    used_at     TEXT
);

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    token_hash    TEXT    NOT NULL UNIQUE,
    scopes        TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    last_used_at  TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Every secret, sealed by the vault. `sealed` starts with its key version; the
-- vault binds it to `id` and `purpose`, so it cannot be moved to another row.
CREATE TABLE secrets (
    id          TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL,
    sealed      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
