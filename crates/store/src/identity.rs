//! Organizations, teams, users, memberships and feature grants.

use crate::{now, Db, Error, Membership, Organization, Result, Team, TeamMember, User};
use credence_domain::{
    EmailAddress, EntityName, Feature, OrgRole, OrganizationId, PersonName, Plan, RequestId,
    TeamId, TeamRole, UserId,
};
use sqlx::FromRow;

const USER_COLUMNS: &str = "id, email, name, password_hash, language, timezone, created_at";

/// Reads a stored role or feature name back into its type.
fn parse_stored<T: TryFrom<String>>(value: String) -> Result<T> {
    let shown = value.clone();
    T::try_from(value).map_err(|_| Error::Corrupt(format!("unexpected stored value {shown:?}")))
}

impl Db {
    pub async fn count_users(&mut self) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM users";
        Ok(on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await)?)
    }

    pub async fn insert_organization(
        &mut self,
        name: &EntityName,
        plan: Plan,
        partner: bool,
    ) -> Result<Organization> {
        let sql =
            "INSERT INTO organizations (name, plan, partner, created_at) VALUES ($1, $2, $3, $4) \
                   RETURNING id, name, plan, partner, created_at";
        Ok(on_conn!(self, c => sqlx::query_as::<_, Organization>(sql)
            .bind(name.as_str()).bind(plan.as_str()).bind(partner).bind(now())
            .fetch_one(c).await)?)
    }

    pub async fn get_organization(&mut self, id: OrganizationId) -> Result<Option<Organization>> {
        let sql = "SELECT id, name, plan, partner, created_at FROM organizations WHERE id = $1";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Organization>(sql).bind(id.0).fetch_optional(c).await)?,
        )
    }

    /// The organizations `user` belongs to, with their role in each, by id.
    pub async fn list_memberships(&mut self, user: UserId) -> Result<Vec<Membership>> {
        let sql = "SELECT o.id, o.name, o.plan, o.partner, o.created_at, m.role \
                   FROM organization_members m JOIN organizations o ON o.id = m.organization_id \
                   WHERE m.user_id = $1 ORDER BY o.id";
        let rows = on_conn!(self, c => sqlx::query(sql).bind(user.0).fetch_all(c).await.and_then(|rows| {
            rows.iter().map(|row| {
                use sqlx::Row;
                Ok((Organization::from_row(row)?, row.try_get::<String, _>("role")?))
            }).collect::<Result<Vec<_>, sqlx::Error>>()
        }))?;
        rows.into_iter()
            .map(|(organization, role)| {
                Ok(Membership {
                    organization,
                    role: parse_stored(role)?,
                })
            })
            .collect()
    }

    pub async fn organization_role(
        &mut self,
        organization: OrganizationId,
        user: UserId,
    ) -> Result<Option<OrgRole>> {
        let sql =
            "SELECT role FROM organization_members WHERE organization_id = $1 AND user_id = $2";
        let role = on_conn!(self, c => sqlx::query_scalar::<_, String>(sql).bind(organization.0).bind(user.0).fetch_optional(c).await)?;
        role.map(parse_stored).transpose()
    }

    /// The members of `organization` with their role there, by name (the web
    /// form's recipient picker).
    pub async fn list_organization_members(
        &mut self,
        organization: OrganizationId,
    ) -> Result<Vec<(User, OrgRole)>> {
        let sql = "SELECT u.id, u.email, u.name, u.password_hash, u.language, u.timezone, u.created_at, m.role \
                   FROM organization_members m JOIN users u ON u.id = m.user_id \
                   WHERE m.organization_id = $1 ORDER BY u.name, u.id";
        let rows = on_conn!(self, c => sqlx::query(sql).bind(organization.0).fetch_all(c).await.and_then(|rows| {
            rows.iter().map(|row| {
                use sqlx::Row;
                Ok((User::from_row(row)?, row.try_get::<String, _>("role")?))
            }).collect::<Result<Vec<_>, sqlx::Error>>()
        }))?;
        rows.into_iter()
            .map(|(user, role)| Ok((user, parse_stored(role)?)))
            .collect()
    }

    pub async fn add_organization_member(
        &mut self,
        organization: OrganizationId,
        user: UserId,
        role: OrgRole,
    ) -> Result<()> {
        let sql = "INSERT INTO organization_members (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)";
        on_conn!(self, c => sqlx::query(sql).bind(organization.0).bind(user.0).bind(role.as_str()).bind(now()).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|e| Error::unique_as_conflict(e, || format!("user {user} is already a member of organization {organization}")))?;
        Ok(())
    }

    pub async fn insert_team(
        &mut self,
        organization: OrganizationId,
        name: &EntityName,
    ) -> Result<Team> {
        let sql = "INSERT INTO teams (organization_id, name, created_at) VALUES ($1, $2, $3) \
                   RETURNING id, organization_id, name, created_at";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Team>(sql).bind(organization.0).bind(name.as_str()).bind(now()).fetch_one(c).await)?,
        )
    }

    pub async fn get_team(&mut self, id: TeamId) -> Result<Option<Team>> {
        let sql = "SELECT id, organization_id, name, created_at FROM teams WHERE id = $1";
        Ok(on_conn!(self, c => sqlx::query_as::<_, Team>(sql).bind(id.0).fetch_optional(c).await)?)
    }

    pub async fn list_teams(&mut self, organization: OrganizationId) -> Result<Vec<Team>> {
        let sql = "SELECT id, organization_id, name, created_at FROM teams WHERE organization_id = $1 ORDER BY id";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Team>(sql).bind(organization.0).fetch_all(c).await)?,
        )
    }

    /// The teams of `organization` that `user` is a member of.
    pub async fn list_teams_of_member(
        &mut self,
        organization: OrganizationId,
        user: UserId,
    ) -> Result<Vec<Team>> {
        let sql = "SELECT t.id, t.organization_id, t.name, t.created_at FROM teams t \
                   JOIN team_members m ON m.team_id = t.id \
                   WHERE t.organization_id = $1 AND m.user_id = $2 ORDER BY t.id";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Team>(sql).bind(organization.0).bind(user.0).fetch_all(c).await)?,
        )
    }

    /// Whether `team` exists, and `user`'s roles in its organization and in
    /// it, in one query (what seeing a team depends on).
    pub async fn roles_in_team(
        &mut self,
        team: TeamId,
        user: UserId,
    ) -> Result<Option<(Option<OrgRole>, Option<TeamRole>)>> {
        let sql = "SELECT om.role, tm.role FROM teams t \
                   LEFT JOIN organization_members om ON om.organization_id = t.organization_id AND om.user_id = $2 \
                   LEFT JOIN team_members tm ON tm.team_id = t.id AND tm.user_id = $2 \
                   WHERE t.id = $1";
        let row = on_conn!(self, c => sqlx::query_as::<_, (Option<String>, Option<String>)>(sql).bind(team.0).bind(user.0).fetch_optional(c).await)?;
        let Some((organization, team)) = row else {
            return Ok(None);
        };
        Ok(Some((
            organization.map(parse_stored).transpose()?,
            team.map(parse_stored).transpose()?,
        )))
    }

    pub async fn team_role(&mut self, team: TeamId, user: UserId) -> Result<Option<TeamRole>> {
        let sql = "SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2";
        let role = on_conn!(self, c => sqlx::query_scalar::<_, String>(sql).bind(team.0).bind(user.0).fetch_optional(c).await)?;
        role.map(parse_stored).transpose()
    }

    pub async fn add_team_member(
        &mut self,
        team: TeamId,
        user: UserId,
        role: TeamRole,
    ) -> Result<()> {
        let sql =
            "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)";
        on_conn!(self, c => sqlx::query(sql).bind(team.0).bind(user.0).bind(role.as_str()).bind(now()).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|e| Error::unique_as_conflict(e, || format!("user {user} is already a member of team {team}")))?;
        Ok(())
    }

    /// The members of `team` with their roles and features, by name.
    pub async fn list_team_members(&mut self, team: TeamId) -> Result<Vec<TeamMember>> {
        let sql = "SELECT u.id, u.email, u.name, u.password_hash, u.language, u.timezone, u.created_at, \
                          tm.role AS team_role, om.role AS organization_role \
                   FROM team_members tm \
                   JOIN teams t ON t.id = tm.team_id \
                   JOIN users u ON u.id = tm.user_id \
                   JOIN organization_members om ON om.organization_id = t.organization_id AND om.user_id = u.id \
                   WHERE tm.team_id = $1 ORDER BY u.name, u.id";
        let rows = on_conn!(self, c => sqlx::query(sql).bind(team.0).fetch_all(&mut *c).await.and_then(|rows| {
            rows.iter().map(|row| {
                use sqlx::Row;
                Ok((User::from_row(row)?, row.try_get::<String, _>("team_role")?, row.try_get::<String, _>("organization_role")?))
            }).collect::<Result<Vec<_>, sqlx::Error>>()
        }))?;
        let features_sql = "SELECT g.user_id, g.feature FROM feature_grants g \
                            JOIN team_members tm ON tm.user_id = g.user_id WHERE tm.team_id = $1";
        let grants = on_conn!(self, c => sqlx::query_as::<_, (i64, String)>(features_sql).bind(team.0).fetch_all(c).await)?;
        rows.into_iter()
            .map(|(user, team_role, organization_role)| {
                let features = grants
                    .iter()
                    .filter(|(user_id, _)| *user_id == user.id.0)
                    .map(|(_, feature)| parse_stored(feature.clone()))
                    .collect::<Result<Vec<Feature>>>()?;
                Ok(TeamMember {
                    user,
                    team_role: parse_stored(team_role)?,
                    organization_role: parse_stored(organization_role)?,
                    features,
                })
            })
            .collect()
    }

    pub async fn insert_user(
        &mut self,
        email: &EmailAddress,
        name: &PersonName,
        password_hash: Option<&str>,
    ) -> Result<User> {
        let sql = format!(
            "INSERT INTO users (email, name, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}"
        );
        on_conn!(self, c => sqlx::query_as::<_, User>(&sql)
            .bind(email.as_str()).bind(name.as_str()).bind(password_hash).bind(now())
            .fetch_one(c).await)
        .map_err(|e| {
            Error::unique_as_conflict(e, || format!("a user with email {email} already exists"))
        })
    }

    pub async fn get_user(&mut self, id: UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        Ok(on_conn!(self, c => sqlx::query_as::<_, User>(&sql).bind(id.0).fetch_optional(c).await)?)
    }

    /// Several users at once, in no particular order; unknown ids are skipped.
    pub async fn get_users(&mut self, ids: &[UserId]) -> Result<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN ({})",
            marks.join(", ")
        );
        let binds: Vec<crate::Bind> = ids.iter().map(|id| crate::Bind::Int(id.0)).collect();
        Ok(
            on_conn!(self, c => bind_all!(sqlx::query_as::<_, User>(&sql), &binds).fetch_all(c).await)?,
        )
    }

    /// Finds a user by email, without regard to case.
    pub async fn find_user_by_email(&mut self, email: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, User>(&sql).bind(email).fetch_optional(c).await)?,
        )
    }

    pub async fn set_password_hash(&mut self, user: UserId, password_hash: &str) -> Result<()> {
        let sql = "UPDATE users SET password_hash = $1 WHERE id = $2";
        let done = on_conn!(self, c => sqlx::query(sql).bind(password_hash).bind(user.0).execute(c).await.map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(Error::NotFound(format!("user {user}")));
        }
        Ok(())
    }

    /// Records that `user` has `feature`; returns false when they already had it.
    pub async fn grant_feature(
        &mut self,
        user: UserId,
        feature: Feature,
        granted_by: &str,
    ) -> Result<bool> {
        let sql = "INSERT INTO feature_grants (user_id, feature, granted_at, granted_by) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (user_id, feature) DO NOTHING";
        let done = on_conn!(self, c => sqlx::query(sql).bind(user.0).bind(feature.as_str()).bind(now()).bind(granted_by)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    pub async fn user_features(&mut self, user: UserId) -> Result<Vec<Feature>> {
        let sql = "SELECT feature FROM feature_grants WHERE user_id = $1 ORDER BY feature";
        let names = on_conn!(self, c => sqlx::query_scalar::<_, String>(sql).bind(user.0).fetch_all(c).await)?;
        names.into_iter().map(parse_stored).collect()
    }
}

impl Db {
    /// Serializes first-start bootstrapping across instances sharing a database:
    /// an advisory lock on PostgreSQL; on SQLite the write transaction already
    /// excludes every other writer.
    pub async fn lock_bootstrap(&mut self) -> Result<()> {
        if let crate::Conn::Postgres(c) = self.conn() {
            sqlx::query("SELECT pg_advisory_xact_lock(7209431)")
                .execute(c)
                .await?;
        }
        Ok(())
    }
}

/// An invitation to join an organization (and a team), by email.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Invitation {
    pub id: i64,
    pub organization_id: i64,
    pub team_id: Option<i64>,
    pub email: String,
    pub name: String,
    pub organization_role: String,
    pub team_role: Option<String>,
    pub invited_by: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// After this the invitation is refused; `None` only for invitations made
    /// before invitations expired, which expire by their age instead.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub accepted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The credential request it was sent for, if any: deleting the request
    /// withdraws the invitation.
    pub request_id: Option<String>,
}

const INVITATION_COLUMNS: &str =
    "id, organization_id, team_id, email, name, organization_role, team_role, invited_by, \
     created_at, expires_at, accepted_at, request_id";

impl Db {
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_invitation(
        &mut self,
        organization: OrganizationId,
        team: Option<TeamId>,
        email: &str,
        name: &str,
        organization_role: OrgRole,
        team_role: Option<TeamRole>,
        token_hash: &str,
        invited_by: UserId,
        request: Option<RequestId>,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64> {
        let sql = "INSERT INTO invitations (organization_id, team_id, email, name, organization_role, team_role, token_hash, \
                   invited_by, created_at, request_id, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";
        Ok(on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql)
            .bind(organization.0).bind(team.map(|t| t.0)).bind(email).bind(name).bind(organization_role.as_str())
            .bind(team_role.map(|r| r.as_str())).bind(token_hash).bind(invited_by.0).bind(now())
            .bind(request.map(|r| r.to_string())).bind(expires_at)
            .fetch_one(c).await)?)
    }

    /// An invitation not yet accepted nor expired, by its token's hash. One made
    /// before invitations carried an expiry counts as expired unless it was made
    /// after `undated_made_after`.
    pub async fn find_open_invitation(
        &mut self,
        token_hash: &str,
        undated_made_after: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Invitation>> {
        let sql = format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1 AND accepted_at IS NULL \
             AND (expires_at > $2 OR (expires_at IS NULL AND created_at > $3))"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Invitation>(&sql).bind(token_hash).bind(now()).bind(undated_made_after).fetch_optional(c).await)?,
        )
    }

    /// Withdraws the invitations sent for `request` that nobody accepted yet;
    /// returns how many. Accepted ones stay: they are the history of who joined.
    pub async fn delete_open_invitations_of_request(&mut self, request: RequestId) -> Result<u64> {
        let sql = "DELETE FROM invitations WHERE request_id = $1 AND accepted_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(request.to_string()).execute(c).await.map(|r| r.rows_affected()))?,
        )
    }

    /// Marks an invitation accepted by `user`; false when someone was first.
    pub async fn accept_invitation(&mut self, id: i64, user: UserId) -> Result<bool> {
        let sql = "UPDATE invitations SET accepted_at = $1, accepted_user_id = $2 WHERE id = $3 AND accepted_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(now()).bind(user.0).bind(id).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Gives the external requests of `organization` addressed to `email` their
    /// recipient, once that person has an account.
    pub async fn bind_external_requests(
        &mut self,
        organization: OrganizationId,
        email: &str,
        user: UserId,
    ) -> Result<u64> {
        let sql = "UPDATE credential_requests SET recipient_user_id = $1 \
                   WHERE organization_id = $2 AND lower(recipient_email) = lower($3) AND recipient_user_id IS NULL";
        let bound = on_conn!(self, c => sqlx::query(sql).bind(user.0).bind(organization.0).bind(email)
            .execute(c).await.map(|r| r.rows_affected()))?;
        self.requests_changed();
        Ok(bound)
    }
}
