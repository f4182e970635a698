//! What the broker reads before a proxied call, in one query: the connection,
//! the caller's roles for its team, the state of the credentials it was
//! authorized for and its sealed secret. One round trip instead of six, and
//! still read fresh on every call, so an ending committed on any instance
//! stops the very next call (nothing here is cached).

use crate::{Connection, Db, Error, Result};
use credence_domain::{CredentialId, CredentialState, OrgRole, TeamRole, UserId};
use sqlx::{FromRow, Row};

/// One read of everything a proxied call is checked against.
#[derive(Debug, Clone)]
pub struct ConnectionForCall {
    pub connection: Connection,
    /// Whether the connection's team still exists.
    pub team_found: bool,
    /// The caller's role in the team's organization.
    pub organization_role: Option<OrgRole>,
    /// The caller's role in the connection's team.
    pub team_role: Option<TeamRole>,
    /// The requested credentials whose connection this is, by id (one, as
    /// created today; none for a connection the team added itself).
    pub credentials: Vec<(CredentialId, CredentialState)>,
    /// The sealed text of the connection's secret, if it has one; opened only
    /// by `service::secrets`.
    pub sealed: Option<String>,
}

impl Db {
    /// The connection `id` and what `user` may do with it, with its
    /// credentials' states and its sealed secret; `None` if there is no such
    /// connection. A join, so that the checks and the secret come from one
    /// statement (one snapshot on PostgreSQL, one read on SQLite).
    pub async fn connection_for_call(
        &mut self,
        id: i64,
        user: UserId,
    ) -> Result<Option<ConnectionForCall>> {
        let sql = "SELECT c.id, c.organization_id, c.team_id, c.provided_by, c.name, c.app_key, \
                    c.app_version, c.auth_kind, c.modules, c.scopes, c.secret_id, c.state, \
                    c.verified_at, c.created_at, c.updated_at, c.token_expires_at, c.refreshed_at, \
                    c.refresh_after, c.refresh_failures, c.oauth_client_id, \
                    t.id AS found_team_id, om.role AS organization_role, tm.role AS team_role, \
                    rc.id AS credential_id, rc.state AS credential_state, s.sealed AS sealed \
             FROM connections c \
             LEFT JOIN teams t ON t.id = c.team_id \
             LEFT JOIN organization_members om ON om.organization_id = t.organization_id AND om.user_id = $2 \
             LEFT JOIN team_members tm ON tm.team_id = t.id AND tm.user_id = $2 \
             LEFT JOIN requested_credentials rc ON rc.connection_id = c.id \
             LEFT JOIN secrets s ON s.id = c.secret_id \
             WHERE c.id = $1 ORDER BY rc.id";
        let rows = on_conn!(self, c => {
            let rows = sqlx::query(sql).bind(id).bind(user.0).fetch_all(c).await?;
            rows.iter().map(|row| {
                Ok::<_, Error>(Read {
                    connection: Connection::from_row(row)?,
                    found_team_id: row.try_get("found_team_id")?,
                    organization_role: row.try_get("organization_role")?,
                    team_role: row.try_get("team_role")?,
                    credential_id: row.try_get("credential_id")?,
                    credential_state: row.try_get("credential_state")?,
                    sealed: row.try_get("sealed")?,
                })
            }).collect::<Result<Vec<Read>>>()
        })?;
        let mut rows = rows.into_iter();
        let Some(first) = rows.next() else {
            return Ok(None);
        };
        let mut credentials = Vec::new();
        for row in std::iter::once(&first).chain(rows.as_slice()) {
            if let (Some(id), Some(state)) = (&row.credential_id, &row.credential_state) {
                let parsed_id = id
                    .parse()
                    .map_err(|_| Error::Corrupt(format!("credential id {id:?}")))?;
                let parsed_state = CredentialState::parse("state", state)
                    .map_err(|_| Error::Corrupt(format!("credential state {state:?}")))?;
                credentials.push((parsed_id, parsed_state));
            }
        }
        Ok(Some(ConnectionForCall {
            team_found: first.found_team_id.is_some(),
            organization_role: role(first.organization_role)?,
            team_role: role(first.team_role)?,
            credentials,
            sealed: first.sealed,
            connection: first.connection,
        }))
    }
}

/// A stored role read back into its type.
fn role<T: TryFrom<String>>(value: Option<String>) -> Result<Option<T>> {
    value
        .map(|value| {
            let shown = value.clone();
            T::try_from(value)
                .map_err(|_| Error::Corrupt(format!("unexpected stored value {shown:?}")))
        })
        .transpose()
}

/// One row of the join, before it is read into types.
struct Read {
    connection: Connection,
    found_team_id: Option<i64>,
    organization_role: Option<String>,
    team_role: Option<String>,
    credential_id: Option<String>,
    credential_state: Option<String>,
    sealed: Option<String>,
}
