-- OAuth 2.0 authorization-code flows in progress: one row per consent page
-- opened. The state is kept only as a SHA-256 hash; the PKCE verifier only
-- sealed by the vault (bound to the row). A flow is spent once (used_at).
CREATE TABLE oauth_flows (
    id               TEXT    PRIMARY KEY,
    state_hash       TEXT    NOT NULL UNIQUE,
    credential_id    TEXT    NOT NULL REFERENCES requested_credentials (id) ON DELETE CASCADE,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reauthorize      INTEGER NOT NULL,
    verifier_sealed  TEXT,
    created_at       TEXT    NOT NULL,
    expires_at       TEXT    NOT NULL,
    used_at          TEXT
);
CREATE INDEX oauth_flows_credential ON oauth_flows (credential_id);
