-- Refreshing OAuth 2.0 connections (SPEC §5). When the access token expires is
-- not secret, so it is kept in the clear beside the sealed tokens: the
-- background refresher finds due connections without opening any secret.
-- After a provider outage the next attempt waits (`refresh_after`), doubling
-- with each failure (`refresh_failures`); a success resets both.
ALTER TABLE connections ADD COLUMN token_expires_at TEXT;
ALTER TABLE connections ADD COLUMN refreshed_at TEXT;
ALTER TABLE connections ADD COLUMN refresh_after TEXT;
ALTER TABLE connections ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
