-- TOTP two-factor sign-in (RFC 6238), SQLite dialect (crates/service/src/two_factor.rs).
--
-- One row per user who started or finished enrolling. The TOTP secret is
-- sealed by the vault (store::SealedColumn::TwoFactorSecret), bound to the
-- row and its user; confirmed_at is NULL until a first code was typed, and
-- only then does sign-in ask for codes. last_used_step is the RFC 6238 time
-- step of the last code accepted: a code is accepted only for a later step,
-- so none is used twice.
CREATE TABLE two_factor (
    id              TEXT    PRIMARY KEY,
    user_id         INTEGER NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed   TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    confirmed_at    TEXT,
    last_used_step  INTEGER
);

-- Recovery codes: random (80 bits), stored only as SHA-256 hashes, each used
-- at most once (used_at).
CREATE TABLE two_factor_recovery_codes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    used_at     TEXT,
    UNIQUE (user_id, code_hash)
);

-- The second step of a sign-in: the password was right, the code is still to
-- come. Not a session: it opens only the code form, for a few minutes and a
-- few tries; its token is stored as a hash like a session's.
CREATE TABLE sign_in_challenges (
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    next_path   TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL
);
CREATE INDEX sign_in_challenges_expiry ON sign_in_challenges (expires_at);

-- Whether the organization's owners require two-factor sign-in of everyone in it.
ALTER TABLE organizations ADD COLUMN two_factor_required INTEGER NOT NULL DEFAULT 0 CHECK (two_factor_required IN (0, 1));
