-- The Sent and Received lists read a page in the order of one of these
-- indexes (the list's sort, then `id`, which breaks ties), so a page of 50
-- reads about 50 index entries instead of sorting the whole team; the
-- `COUNT(*)` of the list is answered from the same index. The two replaced
-- indexes are their prefixes. The plans are checked by the test
-- `query_plans` on both databases.
DROP INDEX credential_requests_team;
DROP INDEX credential_requests_recipient;
CREATE INDEX credential_requests_team ON credential_requests (team_id, created_at, id);
CREATE INDEX credential_requests_team_name ON credential_requests (team_id, name, id);
CREATE INDEX credential_requests_team_status ON credential_requests (team_id, status, id);
CREATE INDEX credential_requests_recipient ON credential_requests (recipient_user_id, created_at, id);
CREATE INDEX credential_requests_recipient_name ON credential_requests (recipient_user_id, name, id);
CREATE INDEX credential_requests_recipient_status ON credential_requests (recipient_user_id, status, id);
