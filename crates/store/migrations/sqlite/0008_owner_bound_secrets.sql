-- Which associated data a sealed value is bound by (SPEC §7). 1: the scheme
-- before this migration (a secret named only its own row, an outbox payload
-- only its kind and recipient); 2: its owner record (a connection's secret
-- names the connection and its team as well, an outbox payload its row id).
-- Every start and every `credence keys rotate` re-seal the values still on 1;
-- the code opens values only under scheme 2.
ALTER TABLE secrets ADD COLUMN aad_scheme INTEGER NOT NULL DEFAULT 1;
ALTER TABLE outbox ADD COLUMN aad_scheme INTEGER NOT NULL DEFAULT 1;
