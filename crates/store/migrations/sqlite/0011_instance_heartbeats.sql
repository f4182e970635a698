-- Every running instance records, at each heartbeat, the newest key version it
-- seals under: `credence keys retire` counts the values in the database, and
-- needs this to see an instance still holding an older copy of the key file.
-- A row is deleted when its instance stops; one whose instance died is ignored
-- once three of its heartbeats are missed.
CREATE TABLE instance_heartbeats (
    id           TEXT PRIMARY KEY,
    key_version  BIGINT NOT NULL,
    every_ms     BIGINT NOT NULL,
    seen_at      TEXT NOT NULL
);
