-- The key under which sign-in counters are named: each counter's key is an
-- HMAC of what it counts (a source, an email), so a password typed into the
-- email field is not one dictionary lookup away from its counter, as it was
-- with a plain SHA-256. One row, made at first use and shared by every
-- instance on this database (they must name a counter alike).
CREATE TABLE sign_in_key (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    key  TEXT    NOT NULL
);

-- Counters named by the plain hash are dropped; their windows last minutes.
DELETE FROM sign_in_counters;
