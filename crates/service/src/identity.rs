//! Organizations, teams, users and feature grants, as the operator and the
//! first start create them.

use super::password_hashing::HashingGate;
use super::{auth, Error, Result};
use credence_domain::{
    EmailAddress, EntityName, Feature, NewPassword, OrgRole, OrganizationId, PersonName, Plan,
    TeamId, TeamRole,
};
use credence_store::{Organization, Store, Team, User};

/// What the first start created, to be printed once.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub organization: Organization,
    pub team: Team,
    pub admin: User,
    /// The one-time setup link token for the admin.
    pub setup_token: String,
}

/// On an empty database, creates the "Default" organization (enterprise), its
/// "Default" team and an owner who has the credential-requests feature, with a
/// setup link. Does nothing when any user exists. Safe when several instances
/// start at once: the transaction holds the bootstrap lock.
pub async fn bootstrap_if_empty(store: &Store, admin_email: &str) -> Result<Option<Bootstrap>> {
    let email = EmailAddress::parse("admin_email", admin_email)?;
    let mut tx = store.begin().await?;
    tx.lock_bootstrap().await?;
    if tx.count_users().await? > 0 {
        return Ok(None);
    }
    let organization = tx
        .insert_organization(
            &EntityName::parse("name", "Default")?,
            Plan::Enterprise,
            false,
        )
        .await?;
    let team = tx
        .insert_team(organization.id, &EntityName::parse("name", "Default")?)
        .await?;
    let admin = tx
        .insert_user(&email, &PersonName::parse("name", "Admin")?, None)
        .await?;
    tx.add_organization_member(organization.id, admin.id, OrgRole::Owner)
        .await?;
    tx.add_team_member(team.id, admin.id, TeamRole::Admin)
        .await?;
    tx.grant_feature(admin.id, Feature::CredentialRequests, "bootstrap")
        .await?;
    let setup_token = auth::create_setup_link(&mut tx, admin.id).await?;
    tx.commit().await?;
    tracing::info!(organization_id = %organization.id, user_id = %admin.id, "bootstrapped an empty database");
    Ok(Some(Bootstrap {
        organization,
        team,
        admin,
        setup_token,
    }))
}

pub async fn create_organization(
    store: &Store,
    name: &str,
    plan: &str,
    partner: bool,
) -> Result<Organization> {
    let name = EntityName::parse("name", name)?;
    let plan = Plan::parse("plan", plan)?;
    Ok(store
        .db()
        .await?
        .insert_organization(&name, plan, partner)
        .await?)
}

pub async fn create_team(store: &Store, organization: OrganizationId, name: &str) -> Result<Team> {
    let name = EntityName::parse("name", name)?;
    let mut tx = store.begin().await?;
    if tx.get_organization(organization).await?.is_none() {
        return Err(Error::NotFound(format!(
            "organization {organization} does not exist"
        )));
    }
    let team = tx.insert_team(organization, &name).await?;
    tx.commit().await?;
    Ok(team)
}

/// A user to create, as the operator describes them.
pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub organization: OrganizationId,
    pub organization_role: &'a str,
    pub team: Option<(TeamId, &'a str)>,
    /// Without a password, the user gets a setup link instead.
    pub password: Option<String>,
}

/// The created user and, when no password was given, their setup link token.
pub struct CreatedUser {
    pub user: User,
    pub setup_token: Option<String>,
}

/// Creates a user who belongs to an organization (and optionally one of its
/// teams), all or nothing.
pub async fn create_user(store: &Store, new: NewUser<'_>) -> Result<CreatedUser> {
    let mut problems = Vec::new();
    let email = EmailAddress::parse("email", new.email)
        .map_err(|e| problems.push(e))
        .ok();
    let name = PersonName::parse("name", new.name)
        .map_err(|e| problems.push(e))
        .ok();
    let organization_role = OrgRole::parse("org-role", new.organization_role)
        .map_err(|e| problems.push(e))
        .ok();
    let team = match new.team {
        Some((team, role)) => TeamRole::parse("team-role", role)
            .map_err(|e| problems.push(e))
            .ok()
            .map(|role| Some((team, role))),
        None => Some(None),
    };
    let password = match new.password {
        Some(raw) => NewPassword::parse("password", raw)
            .map_err(|e| problems.push(e))
            .ok()
            .map(Some),
        None => Some(None),
    };
    let (Some(email), Some(name), Some(organization_role), Some(team), Some(password)) =
        (email, name, organization_role, team, password)
    else {
        return Err(Error::Invalid(problems));
    };
    let password_hash = match password {
        Some(password) => Some(auth::hash_password(&HashingGate::shared(), password).await?),
        None => None,
    };

    let mut tx = store.begin().await?;
    if tx.get_organization(new.organization).await?.is_none() {
        return Err(Error::NotFound(format!(
            "organization {} does not exist",
            new.organization
        )));
    }
    if let Some((team, _)) = team {
        match tx.get_team(team).await? {
            Some(found) if found.organization_id == new.organization => {}
            Some(_) => {
                return Err(Error::Invalid(vec![credence_domain::ValidationError::new(
                    "team",
                    format!(
                        "team {team} belongs to another organization than {}",
                        new.organization
                    ),
                )]))
            }
            None => return Err(Error::NotFound(format!("team {team} does not exist"))),
        }
    }
    let user = tx
        .insert_user(&email, &name, password_hash.as_deref())
        .await?;
    tx.add_organization_member(new.organization, user.id, organization_role)
        .await?;
    if let Some((team, role)) = team {
        tx.add_team_member(team, user.id, role).await?;
    }
    let setup_token = match password_hash {
        Some(_) => None,
        None => Some(auth::create_setup_link(&mut tx, user.id).await?),
    };
    tx.commit().await?;
    Ok(CreatedUser { user, setup_token })
}

/// Adds an existing user to an organization (and optionally a team). When they
/// may send credential requests and the organization qualifies, its owners are
/// told (SPEC §2).
pub async fn add_membership(
    store: &Store,
    vault: &credence_vault::Vault,
    email: &str,
    organization: OrganizationId,
    organization_role: &str,
    team: Option<(TeamId, &str)>,
) -> Result<User> {
    let role = OrgRole::parse("org-role", organization_role)?;
    let team = match team {
        Some((team, role)) => Some((team, TeamRole::parse("team-role", role)?)),
        None => None,
    };
    let mut tx = store.begin().await?;
    let Some(user) = tx.find_user_by_email(email).await? else {
        return Err(Error::NotFound(format!("no user has the email {email:?}")));
    };
    let Some(found) = tx.get_organization(organization).await? else {
        return Err(Error::NotFound(format!(
            "organization {organization} does not exist"
        )));
    };
    tx.add_organization_member(organization, user.id, role)
        .await?;
    if let Some((team, team_role)) = team {
        match tx.get_team(team).await? {
            Some(t) if t.organization_id == organization => {
                tx.add_team_member(team, user.id, team_role).await?
            }
            Some(_) => {
                return Err(credence_domain::ValidationError::new(
                    "team",
                    format!("team {team} belongs to another organization than {organization}"),
                )
                .into())
            }
            None => return Err(Error::NotFound(format!("team {team} does not exist"))),
        }
    }
    let membership = credence_store::Membership {
        organization: found,
        role,
    };
    super::features::on_joined_organization(&mut tx, vault, user.id, &membership).await?;
    tx.commit().await?;
    Ok(user)
}

/// A new setup link for an existing user (when the printed one was lost).
pub async fn new_setup_link(store: &Store, email: &str) -> Result<(User, String)> {
    let mut tx = store.begin().await?;
    let Some(user) = tx.find_user_by_email(email).await? else {
        return Err(Error::NotFound(format!("no user has the email {email:?}")));
    };
    let token = auth::create_setup_link(&mut tx, user.id).await?;
    tx.commit().await?;
    Ok((user, token))
}
