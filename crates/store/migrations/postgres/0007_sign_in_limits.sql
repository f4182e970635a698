-- Sign-in limits shared by every instance on this database (they were kept in
-- each process's memory). One row per key — a hash naming a source, an account
-- at a source, an account, or an account on a known browser — with the start of
-- its current window (Unix seconds) and the attempts counted in it. The counting
-- upsert restarts the window when it is over.
CREATE TABLE sign_in_counters (
    key           TEXT        PRIMARY KEY,
    window_start  BIGINT      NOT NULL,
    attempts      BIGINT      NOT NULL
);
CREATE INDEX sign_in_counters_window ON sign_in_counters (window_start);

-- Browsers on which an account signed in: the `credence_browser` cookie's
-- token, stored only as its hash. An attacker's attempts on an account do not
-- keep its owner out on such a browser.
CREATE TABLE known_browsers (
    token_hash  TEXT        NOT NULL,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (token_hash, user_id)
);
CREATE INDEX known_browsers_user ON known_browsers (user_id);
CREATE INDEX known_browsers_expires ON known_browsers (expires_at);
