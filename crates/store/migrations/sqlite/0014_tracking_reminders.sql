-- Intake tracking and reminders (SPEC §9). A request carries its reminder
-- schedule: how many nudges were sent, the last one, and when the next is
-- due (NULL: none is — the maximum was reached, or nothing is pending). Its
-- SLA deadline is fixed at creation from the team's policy; the scan records
-- when it looked at the deadline (once) and whether it told the owner.
-- Requests made before this migration have no schedule and no deadline.
ALTER TABLE credential_requests ADD COLUMN nudge_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credential_requests ADD COLUMN last_nudge_at TEXT;
ALTER TABLE credential_requests ADD COLUMN next_nudge_at TEXT;
ALTER TABLE credential_requests ADD COLUMN sla_due_at TEXT;
ALTER TABLE credential_requests ADD COLUMN sla_checked_at TEXT;
ALTER TABLE credential_requests ADD COLUMN sla_notified_at TEXT;
-- When the request last became authorized (NULL while it is not): "authorized
-- this week". Kept by Db::refresh_request_status with the status.
ALTER TABLE credential_requests ADD COLUMN authorized_at TEXT;
-- What the reminder scan reads: only rows with something due are indexed.
CREATE INDEX credential_requests_nudge_due ON credential_requests (next_nudge_at) WHERE next_nudge_at IS NOT NULL;
CREATE INDEX credential_requests_sla_due ON credential_requests (sla_due_at) WHERE sla_checked_at IS NULL AND sla_due_at IS NOT NULL;
CREATE INDEX credential_requests_project ON credential_requests (team_id, project);

-- A team's reminder policy; a team without a row has the defaults
-- (service::reminders::Policy::default). The Slack incoming-webhook URL acts
-- as a key, so it is sealed in `secrets` and only referenced here.
CREATE TABLE reminder_policies (
    team_id            INTEGER PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    first_after_hours  INTEGER NOT NULL,
    every_hours        INTEGER NOT NULL,
    max_count          INTEGER NOT NULL,
    sla_hours          INTEGER NOT NULL,
    email              INTEGER NOT NULL CHECK (email IN (0, 1)),
    sponsor_cc         TEXT,
    slack_secret_id    TEXT REFERENCES secrets (id) ON DELETE SET NULL,
    updated_at         TEXT    NOT NULL,
    updated_by         INTEGER REFERENCES users (id) ON DELETE SET NULL
);
