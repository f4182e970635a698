//! Who may send a credential request to whom (SPEC §3), decided from the
//! requester's roles in the sending team and the organization.
//!
//! Where the table is silent:
//! * a guest never sends, whatever team role it may hold;
//! * an organization owner or admin may send from any team of the organization,
//!   member of it or not (they manage every team);
//! * anyone else must be a member of the sending team.

use crate::{OrgRole, TeamRole};

/// Who the recipient is, relative to the requester. The caller picks the
/// narrowest kind that fits: a user of the sending team (guests included, as
/// an external recipient joins the team) is `SameTeamMember`, another user of
/// the organization is `OrganizationMember`, anyone else (name + email) is
/// `External`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientKind {
    SameTeamMember,
    OrganizationMember,
    External,
}

impl RecipientKind {
    pub const ALL: &'static [RecipientKind] = &[
        RecipientKind::SameTeamMember,
        RecipientKind::OrganizationMember,
        RecipientKind::External,
    ];
}

/// Why a request may not be sent (HTTP 403; nothing is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    #[error("a guest may not send credential requests; guests only receive them")]
    GuestMayNotSend,
    #[error(
        "only members of a team may send requests from it; ask a team admin to add you to the team"
    )]
    NotATeamMember,
    #[error(
        "a team member may only request from members of the same team; \
         a team admin may request from anyone in the organization"
    )]
    OnlyFromTheSameTeam,
    #[error(
        "only organization admins and owners may request from people outside the organization"
    )]
    ExternalNeedsOrganizationAdmin,
}

/// Whether a requester with these roles may send a request to `recipient`.
/// `requester_team_role` is the role in the sending team (`None`: not a member).
pub fn may_request(
    requester_team_role: Option<TeamRole>,
    requester_org_role: OrgRole,
    recipient: RecipientKind,
) -> Result<(), RequestRefusal> {
    if requester_org_role == OrgRole::Guest {
        return Err(RequestRefusal::GuestMayNotSend);
    }
    if requester_org_role.manages_organization() {
        return Ok(());
    }
    match (requester_team_role, recipient) {
        (None, _) => Err(RequestRefusal::NotATeamMember),
        (Some(_), RecipientKind::External) => Err(RequestRefusal::ExternalNeedsOrganizationAdmin),
        (Some(TeamRole::Admin), _) => Ok(()),
        (Some(TeamRole::Member), RecipientKind::SameTeamMember) => Ok(()),
        (Some(TeamRole::Member), RecipientKind::OrganizationMember) => {
            Err(RequestRefusal::OnlyFromTheSameTeam)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RecipientKind::{External, OrganizationMember as Org, SameTeamMember as Team};
    use RequestRefusal::*;

    /// (team role, organization role, recipient, expected answer)
    type Case = (
        Option<TeamRole>,
        OrgRole,
        RecipientKind,
        Result<(), RequestRefusal>,
    );

    #[test]
    fn every_role_combination_against_every_recipient_kind() {
        let ok = Ok(());
        let admin = Some(TeamRole::Admin);
        let member = Some(TeamRole::Member);
        #[rustfmt::skip]
        let expected: [Case; 36] = [
            (None,   OrgRole::Owner,  Team,     ok),
            (None,   OrgRole::Owner,  Org,      ok),
            (None,   OrgRole::Owner,  External, ok),
            (admin,  OrgRole::Owner,  Team,     ok),
            (admin,  OrgRole::Owner,  Org,      ok),
            (admin,  OrgRole::Owner,  External, ok),
            (member, OrgRole::Owner,  Team,     ok),
            (member, OrgRole::Owner,  Org,      ok),
            (member, OrgRole::Owner,  External, ok),

            (None,   OrgRole::Admin,  Team,     ok),
            (None,   OrgRole::Admin,  Org,      ok),
            (None,   OrgRole::Admin,  External, ok),
            (admin,  OrgRole::Admin,  Team,     ok),
            (admin,  OrgRole::Admin,  Org,      ok),
            (admin,  OrgRole::Admin,  External, ok),
            (member, OrgRole::Admin,  Team,     ok),
            (member, OrgRole::Admin,  Org,      ok),
            (member, OrgRole::Admin,  External, ok),

            (None,   OrgRole::Member, Team,     Err(NotATeamMember)),
            (None,   OrgRole::Member, Org,      Err(NotATeamMember)),
            (None,   OrgRole::Member, External, Err(NotATeamMember)),
            (admin,  OrgRole::Member, Team,     ok),
            (admin,  OrgRole::Member, Org,      ok),
            (admin,  OrgRole::Member, External, Err(ExternalNeedsOrganizationAdmin)),
            (member, OrgRole::Member, Team,     ok),
            (member, OrgRole::Member, Org,      Err(OnlyFromTheSameTeam)),
            (member, OrgRole::Member, External, Err(ExternalNeedsOrganizationAdmin)),

            (None,   OrgRole::Guest,  Team,     Err(GuestMayNotSend)),
            (None,   OrgRole::Guest,  Org,      Err(GuestMayNotSend)),
            (None,   OrgRole::Guest,  External, Err(GuestMayNotSend)),
            (admin,  OrgRole::Guest,  Team,     Err(GuestMayNotSend)),
            (admin,  OrgRole::Guest,  Org,      Err(GuestMayNotSend)),
            (admin,  OrgRole::Guest,  External, Err(GuestMayNotSend)),
            (member, OrgRole::Guest,  Team,     Err(GuestMayNotSend)),
            (member, OrgRole::Guest,  Org,      Err(GuestMayNotSend)),
            (member, OrgRole::Guest,  External, Err(GuestMayNotSend)),
        ];
        // The table covers every combination exactly once.
        for team_role in [None, admin, member] {
            for org_role in OrgRole::ALL {
                for kind in RecipientKind::ALL {
                    let rows = expected
                        .iter()
                        .filter(|(t, o, k, _)| *t == team_role && o == org_role && k == kind)
                        .count();
                    assert_eq!(rows, 1, "({team_role:?}, {org_role}, {kind:?})");
                }
            }
        }
        for (team_role, org_role, kind, outcome) in expected {
            assert_eq!(
                may_request(team_role, org_role, kind),
                outcome,
                "team role {team_role:?}, organization role {org_role}, recipient {kind:?}"
            );
        }
    }

    #[test]
    fn refusals_explain_themselves_in_lowercase() {
        let err = may_request(Some(TeamRole::Member), OrgRole::Member, Org).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("a team member may only request from members of the same team"));
        for refusal in [
            GuestMayNotSend,
            NotATeamMember,
            OnlyFromTheSameTeam,
            ExternalNeedsOrganizationAdmin,
        ] {
            let text = refusal.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
        }
    }
}
