//! The credential-requests feature gate (SPEC §2): users ask, Credence checks
//! eligibility (a corporate email and a qualifying organization), the operator
//! grants, and the owners of every qualifying organization are told.

use super::audit::{self, Actor, Event};
use super::{Error, Result};
use credence_domain::{EmailAddress, Feature, UserId};
use credence_store::{Db, Membership, Store, User};
use credence_vault::Vault;
use serde::Serialize;
use serde_json::json;

const FREE_MAIL_DOMAINS: &str = include_str!("data/free_mail_domains.txt");

/// Whether `domain` (lowercase) is a free-mail domain or a subdomain of one.
pub fn is_free_mail(domain: &str) -> bool {
    FREE_MAIL_DOMAINS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .any(|free| domain == free || domain.ends_with(&format!(".{free}")))
}

/// The eligibility check Credence performs and shows (SPEC §2).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Eligibility {
    pub corporate_email: bool,
    pub qualifying_organizations: Vec<i64>,
    pub eligible: bool,
    /// Why not, in words; empty when eligible.
    pub reasons: Vec<String>,
}

pub fn eligibility(user: &User, memberships: &[Membership]) -> Eligibility {
    let domain = EmailAddress::parse("email", &user.email)
        .map(|e| e.domain())
        .unwrap_or_default();
    let corporate_email = !domain.is_empty() && !is_free_mail(&domain);
    let qualifying_organizations: Vec<i64> = qualifying(memberships)
        .map(|m| m.organization.id.0)
        .collect();
    let mut reasons = Vec::new();
    if !corporate_email {
        reasons.push(format!(
            "{} is a free-mail address; a corporate email is needed",
            user.email
        ));
    }
    if qualifying_organizations.is_empty() {
        reasons.push(
            "no organization of this user is on the enterprise plan or a partner on a paid plan"
                .to_string(),
        );
    }
    Eligibility {
        eligible: reasons.is_empty(),
        corporate_email,
        qualifying_organizations,
        reasons,
    }
}

/// The memberships in organizations that qualify, guests excluded (a guest
/// never sends requests).
fn qualifying(memberships: &[Membership]) -> impl Iterator<Item = &Membership> {
    memberships.iter().filter(|m| {
        m.organization.qualifies_for_credential_requests()
            && m.role != credence_domain::OrgRole::Guest
    })
}

/// A user asks for the feature; returns the eligibility check and whether a new
/// request was recorded.
pub async fn request_feature(store: &Store, user: &User) -> Result<(Eligibility, bool)> {
    let mut tx = store.begin().await?;
    if tx
        .user_features(user.id)
        .await?
        .contains(&Feature::CredentialRequests)
    {
        return Err(Error::Conflict(
            "you already have the credential-requests feature".into(),
        ));
    }
    let memberships = tx.list_memberships(user.id).await?;
    let check = eligibility(user, &memberships);
    let (_, created) = tx
        .request_feature(user.id, Feature::CredentialRequests)
        .await?;
    if created {
        for membership in memberships.iter() {
            audit::record(&mut tx, &Actor::user(user), Event {
                organization: membership.organization.id,
                team: None,
                name: "feature.requested",
                target_kind: "user",
                target_id: user.id.to_string(),
                details: json!({ "feature": "credential-requests", "eligible": check.eligible }),
            })
            .await?;
        }
    }
    tx.commit().await?;
    Ok((check, created))
}

/// The operator grants the feature after the eligibility check; an ineligible
/// user is refused with the reasons. Every owner of each qualifying organization
/// is notified. Returns false when the user already had it.
pub async fn grant(store: &Store, vault: &Vault, email: &str) -> Result<(User, bool)> {
    let mut tx = store.begin().await?;
    let Some(user) = tx.find_user_by_email(email).await? else {
        return Err(Error::NotFound(format!("no user has the email {email:?}")));
    };
    if tx
        .user_features(user.id)
        .await?
        .contains(&Feature::CredentialRequests)
    {
        return Ok((user, false));
    }
    let memberships = tx.list_memberships(user.id).await?;
    let check = eligibility(&user, &memberships);
    if !check.eligible {
        return Err(Error::Forbidden(format!(
            "{} is not eligible: {}",
            user.email,
            check.reasons.join("; ")
        )));
    }
    tx.grant_feature(user.id, Feature::CredentialRequests, "operator")
        .await?;
    tx.decide_feature_request(user.id, Feature::CredentialRequests, "granted", "operator")
        .await?;
    for membership in qualifying(&memberships) {
        announce_to_owners(&mut tx, vault, &user, membership).await?;
        audit::record(
            &mut tx,
            &Actor::operator(),
            Event {
                organization: membership.organization.id,
                team: None,
                name: "feature.granted",
                target_kind: "user",
                target_id: user.id.to_string(),
                details: json!({ "feature": "credential-requests", "email": user.email }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok((user, true))
}

/// Tells every owner of `membership`'s organization that `user` may now send
/// credential requests there.
async fn announce_to_owners(
    tx: &mut Db,
    vault: &Vault,
    user: &User,
    membership: &Membership,
) -> Result<()> {
    for owner in tx
        .list_organization_owners(membership.organization.id)
        .await?
    {
        audit::notify(
            tx,
            vault,
            Some(membership.organization.id),
            "feature.granted",
            &owner.email,
            json!({
                "organizationId": membership.organization.id,
                "organizationName": membership.organization.name,
                "userId": user.id,
                "userName": user.name,
                "userEmail": user.email,
            }),
        )
        .await?;
    }
    Ok(())
}

/// Called in the transaction that adds `user` to an organization: when they have
/// the feature and the organization qualifies, its owners are told.
pub async fn on_joined_organization(
    tx: &mut Db,
    vault: &Vault,
    user: UserId,
    membership: &Membership,
) -> Result<()> {
    if !membership.organization.qualifies_for_credential_requests()
        || membership.role == credence_domain::OrgRole::Guest
    {
        return Ok(());
    }
    if !tx
        .user_features(user)
        .await?
        .contains(&Feature::CredentialRequests)
    {
        return Ok(());
    }
    let Some(found) = tx.get_user(user).await? else {
        return Ok(());
    };
    announce_to_owners(tx, vault, &found, membership).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_mail_domains_and_their_subdomains_are_not_corporate() {
        assert!(is_free_mail("gmail.com"));
        assert!(is_free_mail("eu.mail.yahoo.com") || is_free_mail("yahoo.com"));
        assert!(is_free_mail("mx.outlook.com"));
        assert!(!is_free_mail("agency.example"));
        assert!(!is_free_mail("notgmail.com"), "a suffix is not a subdomain");
    }
}
