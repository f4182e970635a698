//! Inviting an external recipient as a guest, and accepting: the invitation link
//! travels only by email (never to the requester), so only the owner of the
//! address can create the account it is for. An invitation lasts
//! [`INVITATION_LIFETIME`] and is withdrawn with the request it was sent for.

use super::audit::{self, Actor, Event};
use super::password_hashing::HashingGate;
use super::{random_token, token_hash, Context, Error, Result};
use credence_domain::{
    EmailAddress, NewPassword, OrgRole, OrganizationId, PersonName, RequestId, TeamId, TeamRole,
    UserId,
};
use credence_store::{Db, Invitation, User};
use serde_json::json;

/// How long an invitation stays usable.
pub const INVITATION_LIFETIME: chrono::Duration = chrono::Duration::days(14);

/// Invitations from before they carried an expiry count as expired once they
/// are older than an invitation lasts.
fn undated_made_after() -> chrono::DateTime<chrono::Utc> {
    credence_store::now() - INVITATION_LIFETIME
}

/// Invites `email` to join `organization` as a guest and `team` as a member,
/// for `request`; returns the invitation token (for the email only).
pub async fn invite_guest(
    db: &mut Db,
    organization: OrganizationId,
    team: TeamId,
    email: &EmailAddress,
    name: &PersonName,
    invited_by: UserId,
    request: RequestId,
) -> Result<String> {
    let token = random_token();
    db.insert_invitation(
        organization,
        Some(team),
        email.as_str(),
        name.as_str(),
        OrgRole::Guest,
        Some(TeamRole::Member),
        &token_hash(&token),
        invited_by,
        Some(request),
        credence_store::now() + INVITATION_LIFETIME,
    )
    .await?;
    Ok(token)
}

/// Withdraws the open invitations sent for `request`, as it is deleted: the
/// link in the email must not outlive what it invited to.
pub async fn withdraw_for_request(db: &mut Db, request: RequestId) -> Result<u64> {
    Ok(db.delete_open_invitations_of_request(request).await?)
}

/// The open invitation a token names, and whether an account with its email
/// exists already.
pub async fn find(ctx: &Context, token: &str) -> Result<Option<(Invitation, Option<User>)>> {
    let mut db = ctx.store.db().await?;
    let Some(invitation) = db
        .find_open_invitation(&token_hash(token), undated_made_after())
        .await?
    else {
        return Ok(None);
    };
    let existing = db.find_user_by_email(&invitation.email).await?;
    Ok(Some((invitation, existing)))
}

/// How the invitee accepts: as the signed-in owner of the address, or by
/// creating the account (name and password).
pub enum Acceptance {
    SignedIn(User),
    NewAccount { name: String, password: String },
}

/// Accepts an invitation: the account joins the organization as a guest and the
/// team, and the requests addressed to this email become theirs. Returns the user.
///
/// A new account's password is hashed (behind `gate`) only once the token names
/// an open invitation and the name and password are valid: an unknown token
/// costs no argon2 hash, so anonymous posts cannot queue hashes ahead of
/// sign-ins.
pub async fn accept(
    ctx: &Context,
    gate: &HashingGate,
    token: &str,
    acceptance: Acceptance,
) -> Result<UserId> {
    let unknown = || {
        Error::NotFound(
            "this invitation is unknown, expired, withdrawn or was already accepted".into(),
        )
    };
    let password_hash = match &acceptance {
        Acceptance::NewAccount { name, password } => {
            if find(ctx, token).await?.is_none() {
                return Err(unknown());
            }
            PersonName::parse("name", name)?;
            let password = NewPassword::parse("password", password.clone())?;
            Some(super::auth::hash_password(gate, password).await?)
        }
        Acceptance::SignedIn(_) => None,
    };
    let mut tx = ctx.store.begin().await?;
    let Some(invitation) = tx
        .find_open_invitation(&token_hash(token), undated_made_after())
        .await?
    else {
        return Err(unknown());
    };
    let organization = OrganizationId(invitation.organization_id);
    let user = match acceptance {
        Acceptance::SignedIn(user) => {
            if !user.email.eq_ignore_ascii_case(&invitation.email) {
                return Err(Error::Forbidden(format!(
                    "this invitation is for {}; sign in as that address",
                    invitation.email
                )));
            }
            user
        }
        Acceptance::NewAccount { name, .. } => {
            let name = PersonName::parse("name", &name)?;
            let email = EmailAddress::parse("email", &invitation.email)?;
            if tx.find_user_by_email(email.as_str()).await?.is_some() {
                return Err(Error::Conflict(format!(
                    "an account for {email} exists; sign in to accept"
                )));
            }
            tx.insert_user(&email, &name, password_hash.as_deref())
                .await?
        }
    };
    if !tx.accept_invitation(invitation.id, user.id).await? {
        return Err(Error::NotFound(
            "this invitation was already accepted".into(),
        ));
    }
    if tx.organization_role(organization, user.id).await?.is_none() {
        tx.add_organization_member(organization, user.id, OrgRole::Guest)
            .await?;
    }
    if let Some(team) = invitation.team_id.map(TeamId) {
        if tx.team_role(team, user.id).await?.is_none() {
            tx.add_team_member(team, user.id, TeamRole::Member).await?;
        }
    }
    let bound = tx
        .bind_external_requests(organization, &invitation.email, user.id)
        .await?;
    audit::record(
        &mut tx,
        &Actor::user(&user),
        Event {
            organization,
            team: invitation.team_id.map(TeamId),
            name: "member.joined_as_guest",
            target_kind: "user",
            target_id: user.id.to_string(),
            details: json!({ "email": user.email, "requests": bound }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(user.id)
}
