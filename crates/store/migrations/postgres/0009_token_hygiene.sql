-- Token hygiene: an API token may carry an expiry (NULL: it never expires), and
-- an invitation remembers the credential request it was sent for, so that
-- deleting the request withdraws the invitation. Older invitations keep a NULL
-- request and expire by their age (see `Db::find_open_invitation`).
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE invitations ADD COLUMN request_id TEXT;
CREATE INDEX invitations_request ON invitations (request_id);
