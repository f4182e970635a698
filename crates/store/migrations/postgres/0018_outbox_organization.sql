-- The organization a notification belongs to (the request's, the team's,
-- the endpoint's), so that the web's local mailbox (`/mailbox`) shows an
-- organization's owners and admins only their organization's mail. The
-- mailbox table keeps pointing at the outbox row, so the column lives here
-- only. Rows written before this migration have none: the web shows them to
-- nobody, `credence mail list|show` (the operator's) still shows them.
ALTER TABLE outbox ADD COLUMN organization_id BIGINT REFERENCES organizations (id) ON DELETE SET NULL;
CREATE INDEX outbox_organization ON outbox (organization_id, id);
