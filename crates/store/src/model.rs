//! The rows the store hands out, already turned into domain types.

use chrono::{DateTime, Utc};
use credence_domain::{
    ApiTokenId, Feature, OrgRole, OrganizationId, Plan, Scopes, TeamId, TeamRole, UserId,
};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Organization {
    #[sqlx(try_from = "i64")]
    pub id: OrganizationId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub plan: Plan,
    pub partner: bool,
    pub created_at: DateTime<Utc>,
}

impl Organization {
    /// Whether members with the feature may send credential requests here (SPEC §2).
    pub fn qualifies_for_credential_requests(&self) -> bool {
        self.plan.qualifies_for_credential_requests(self.partner)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Team {
    #[sqlx(try_from = "i64")]
    pub id: TeamId,
    #[sqlx(try_from = "i64")]
    pub organization_id: OrganizationId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A user. The password hash is an argon2id PHC string; its `Debug` is redacted
/// all the same, because it is still guessable offline.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    #[sqlx(try_from = "i64")]
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub language: String,
    pub timezone: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// An organization as one of its members sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub organization: Organization,
    pub role: OrgRole,
}

/// A member of a team, with what the team members list shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMember {
    pub user: User,
    pub team_role: TeamRole,
    pub organization_role: OrgRole,
    pub features: Vec<Feature>,
}

/// An API token's record: never its value, which only the holder has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub user_id: UserId,
    pub name: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// After this the token is refused; `None`: it never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A sealed secret as stored: the vault's text and the purpose it was sealed for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredSecret {
    pub id: String,
    pub purpose: String,
    pub sealed: String,
    pub updated_at: DateTime<Utc>,
}
