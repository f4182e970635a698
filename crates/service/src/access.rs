//! Who may see and act on what: requests (as sender or recipient),
//! credentials, and a team's connections. Every read a caller makes passes
//! here first; what they may not see is a 404 that says nothing, not even that
//! it exists.
//!
//! The sending side of a team: its admins and members (never guests) and the
//! organization's owners and admins. The same people see the team's sent
//! requests and its connections, and may change its connections.

use super::{Error, Result};
use credence_domain::{CredentialId, OrgRole, OrganizationId, RequestId, TeamId, TeamRole, UserId};
use credence_store::{
    Connection, ConnectionForCall, CredentialRequest, Db, RequestedCredential, User,
};

/// How the caller relates to a request, which decides what they may see and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// In the sending team (not as a guest), or an owner or admin of the organization.
    Sender,
    /// The recipient.
    Recipient,
}

/// The request if the caller may see it (SPEC §4.4), and how they see it. An
/// outsider gets a 404: they learn nothing, not even that it exists.
pub async fn request(
    db: &mut Db,
    caller: &User,
    id: RequestId,
) -> Result<(CredentialRequest, Viewer)> {
    let not_found = || Error::NotFound(format!("credential request {id} not found"));
    let request = db.get_request(id).await?.ok_or_else(not_found)?;
    if request.recipient_user_id == Some(caller.id) {
        return Ok((request, Viewer::Recipient));
    }
    // A sender sees the requests of the teams they see (one query).
    match db.roles_in_team(request.team_id, caller.id).await? {
        Some((role, team_role)) if sees_team(role, team_role) => Ok((request, Viewer::Sender)),
        _ => Err(not_found()),
    }
}

/// The teams whose sent requests the caller sees in `organization`: all for its
/// owners and admins, their own otherwise, none for guests.
pub async fn sender_teams(
    db: &mut Db,
    caller: &User,
    organization: OrganizationId,
) -> Result<Vec<TeamId>> {
    Ok(match db.organization_role(organization, caller.id).await? {
        Some(OrgRole::Owner | OrgRole::Admin) => db
            .list_teams(organization)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect(),
        Some(OrgRole::Member) => db
            .list_teams_of_member(organization, caller.id)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect(),
        _ => Vec::new(),
    })
}

/// Whether the caller may list the sent requests of `team`.
pub async fn may_see_team(db: &mut Db, caller: &User, team: TeamId) -> Result<bool> {
    // One query: every list of a team's requests asks this first.
    Ok(match db.roles_in_team(team, caller.id).await? {
        Some((role, team_role)) => sees_team(role, team_role),
        None => false,
    })
}

/// The one rule of who sees a team: an owner or admin of its organization,
/// or a member of the organization who is in the team (guests never).
fn sees_team(role: Option<OrgRole>, team_role: Option<TeamRole>) -> bool {
    match role {
        Some(OrgRole::Owner | OrgRole::Admin) => true,
        Some(OrgRole::Member) => team_role.is_some(),
        _ => false,
    }
}

/// A sender who acts on a request must be a member of the sending team or an
/// owner or admin of its organization (guests never).
pub async fn require_sender(db: &mut Db, caller: &User, request: &CredentialRequest) -> Result<()> {
    match db
        .organization_role(request.organization_id, caller.id)
        .await?
    {
        Some(OrgRole::Owner | OrgRole::Admin) => Ok(()),
        Some(OrgRole::Member)
            if matches!(
                db.team_role(request.team_id, caller.id).await?,
                Some(TeamRole::Admin | TeamRole::Member)
            ) =>
        {
            Ok(())
        }
        _ => Err(Error::Forbidden(format!(
            "only the sending team may act on request {} as its sender",
            request.id
        ))),
    }
}

/// Checks that `owner` may own a request of `team`: a member of the team
/// (an admin or member of it, never a guest of the organization).
pub async fn check_owner(
    db: &mut Db,
    team: TeamId,
    organization: credence_domain::OrganizationId,
    owner: UserId,
) -> Result<Option<credence_domain::ValidationError>> {
    let role = db.organization_role(organization, owner).await?;
    let in_team = db.team_role(team, owner).await?.is_some();
    Ok(match role {
        Some(OrgRole::Owner | OrgRole::Admin | OrgRole::Member) if in_team => None,
        _ => Some(credence_domain::ValidationError::new(
            "owner",
            format!("user {owner} is not a member of team {team}; the owner must be one"),
        )),
    })
}

/// The credential and its request, if the caller may see them.
pub async fn credential(
    db: &mut Db,
    caller: &User,
    id: CredentialId,
) -> Result<(RequestedCredential, CredentialRequest, Viewer)> {
    let credential = db.get_credential(id).await?;
    credential_as(db, caller, id, credential).await
}

/// Like [`visible`], inside a transaction that holds the credential until it
/// ends (`Db::lock_credential`): an action that destroys the credential's
/// connection destroys the one it names at commit, never one a concurrent
/// reauthorization has just replaced (that one would be left named by
/// nothing, its recipient unable to revoke it).
pub async fn credential_for_update(
    tx: &mut Db,
    caller: &User,
    id: CredentialId,
) -> Result<(RequestedCredential, CredentialRequest, Viewer)> {
    let credential = tx.lock_credential(id).await?;
    credential_as(tx, caller, id, credential).await
}

async fn credential_as(
    db: &mut Db,
    caller: &User,
    id: CredentialId,
    credential: Option<RequestedCredential>,
) -> Result<(RequestedCredential, CredentialRequest, Viewer)> {
    let not_found = || Error::NotFound(format!("credential {id} not found"));
    let credential = credential.ok_or_else(not_found)?;
    let (request, viewer) = request(db, caller, credential.request_id)
        .await
        .map_err(|error| match error {
            Error::NotFound(_) => not_found(),
            other => other,
        })?;
    Ok((credential, request, viewer))
}

pub fn require_recipient(viewer: Viewer, action: &str) -> Result<()> {
    match viewer {
        Viewer::Recipient => Ok(()),
        Viewer::Sender => Err(Error::Forbidden(format!(
            "only the recipient may {action} this credential"
        ))),
    }
}

/// The connection, if the caller may see it; otherwise a 404 that says nothing.
pub async fn connection(db: &mut Db, caller: &User, id: i64) -> Result<Connection> {
    let not_found = || Error::NotFound(format!("connection {id} not found"));
    let connection = db.get_connection(id).await?.ok_or_else(not_found)?;
    if may_see_team(db, caller, TeamId(connection.team_id)).await? {
        Ok(connection)
    } else {
        Err(not_found())
    }
}

/// What a proxied call needs, read in one query (`Db::connection_for_call`):
/// the connection if `caller` may see it (else a 404 that says nothing), its
/// credentials' states and its sealed secret. Read fresh on every call.
pub async fn connection_for_call(db: &mut Db, caller: &User, id: i64) -> Result<ConnectionForCall> {
    let not_found = || Error::NotFound(format!("connection {id} not found"));
    let found = db
        .connection_for_call(id, caller.id)
        .await?
        .ok_or_else(not_found)?;
    if found.team_found && sees_team(found.organization_role, found.team_role) {
        Ok(found)
    } else {
        Err(not_found())
    }
}

/// Checks that `caller` may change the connections of `team`; answers the
/// team's organization and the caller's role there.
pub async fn require_connection_writer(
    db: &mut Db,
    caller: &User,
    team: TeamId,
) -> Result<(OrganizationId, OrgRole)> {
    let not_found = || Error::NotFound(format!("team {team} not found"));
    let found = db.get_team(team).await?.ok_or_else(not_found)?;
    let role = db
        .organization_role(found.organization_id, caller.id)
        .await?;
    match role {
        Some(role @ (OrgRole::Owner | OrgRole::Admin)) => Ok((found.organization_id, role)),
        Some(OrgRole::Member) => match db.team_role(team, caller.id).await? {
            Some(TeamRole::Admin | TeamRole::Member) => {
                Ok((found.organization_id, OrgRole::Member))
            }
            None => Err(not_found()),
        },
        _ => Err(not_found()),
    }
}

/// The connection, if the caller may change it; otherwise a 404 that says nothing.
pub async fn manageable_connection(db: &mut Db, caller: &User, id: i64) -> Result<Connection> {
    let connection = connection(db, caller, id).await?;
    require_connection_writer(db, caller, TeamId(connection.team_id)).await?;
    Ok(connection)
}
