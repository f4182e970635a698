//! The team members page (`GET /team`): the current team's members, their
//! roles, who has the credential-requests feature, and the viewer's "Request
//! the feature" button when they lack it — the same button the wizard shows
//! in place of its form (`feature_gate`), posting to `POST /feature-request`.
//!
//! The feature is granted by the operator after the eligibility check of
//! SPEC §2 (`service::features`); asking only records the request.

use super::layout::{self, Nav};
use super::session::{redirect_with_flash, FlashKind, SignedIn, WebError};
use super::{safe_next, CsrfForm};
use crate::AppState;
use axum::extract::State;
use axum::response::Response;
use credence_domain::Feature;
use credence_service::{self as service, features};
use credence_store::FeatureRequest;
use maud::{html, Markup};
use serde::Deserialize;

/// Whether `user` has the credential-requests feature, and their latest
/// request for it.
pub async fn feature_of(
    state: &AppState,
    user: &credence_store::User,
) -> Result<(bool, Option<FeatureRequest>), WebError> {
    let mut db = state.store.db().await?;
    let has = db
        .user_features(user.id)
        .await?
        .contains(&Feature::CredentialRequests);
    let latest = db
        .latest_feature_request(user.id, Feature::CredentialRequests)
        .await?;
    Ok((has, latest))
}

/// The "Request the feature" form, or what became of the last request.
pub fn request_feature_form(
    viewer: &SignedIn,
    latest: Option<&FeatureRequest>,
    back: &str,
) -> Markup {
    html! {
        @if let Some(latest) = latest.filter(|r| r.status == "pending") {
            p.hint { "You asked for it on " (latest.requested_at.format("%Y-%m-%d")) "; the operator has not decided yet." }
        } @else {
            @if let Some(latest) = latest {
                p.hint { "Your request of " (latest.requested_at.format("%Y-%m-%d")) " was " (latest.status) "." }
            }
            form.inline method="post" action="/feature-request" {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                input type="hidden" name="back" value=(back);
                button type="submit" { "Request the feature" }
            }
        }
    }
}

/// What a user without the feature sees instead of the wizard.
pub fn feature_gate(viewer: &SignedIn, latest: Option<&FeatureRequest>) -> Markup {
    html! {
        h1 { "Create a credential request" }
        section.card aria-labelledby="feature-heading" {
            h2 id="feature-heading" { "Credential requests are a feature you ask for" }
            p {
                "Sending credential requests needs the credential-requests feature. "
                "The operator grants it to people with a corporate email in an organization on the enterprise plan, "
                "or in a partner organization on a paid plan."
            }
            p { "Receiving requests needs nothing: anyone can authorize what they are asked for." }
            (request_feature_form(viewer, latest, "/credential-requests/new"))
        }
    }
}

/// `GET /team`: the members of the team chosen in the switcher.
pub async fn members(
    State(state): State<AppState>,
    viewer: SignedIn,
) -> Result<Response, WebError> {
    let Some(team) = viewer.team.clone() else {
        return Err(WebError::NotFound);
    };
    let members = state
        .store
        .db()
        .await?
        .list_team_members(team.team.id)
        .await?;
    let (has_feature, latest) = feature_of(&state, &viewer.user).await?;
    let body = html! {
        h1 { "Team " (team.team.name) }
        p.muted { (team.organization.name) " · " (members.len()) " members" }
        @if !has_feature {
            section.card aria-labelledby="you-heading" {
                h2 id="you-heading" { "You cannot send credential requests yet" }
                p { "Sending requests needs the credential-requests feature." }
                (request_feature_form(&viewer, latest.as_ref(), "/team"))
            }
        }
        div.table-wrap {
            table {
                caption.muted { "Members of " (team.team.name) }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Email" }
                        th scope="col" { "Team role" }
                        th scope="col" { "Organization role" }
                        th scope="col" { "Credential requests" }
                    }
                }
                tbody {
                    @for member in &members {
                        @let has = member.features.contains(&Feature::CredentialRequests);
                        tr {
                            th scope="row" {
                                (member.user.name)
                                @if member.user.id == viewer.user.id { " " span.muted { "(you)" } }
                            }
                            td { (member.user.email) }
                            td { (layout::state_text(member.team_role.as_str())) }
                            td { (layout::state_text(member.organization_role.as_str())) }
                            td {
                                @if has { span.state.authorized { "Has the feature" } }
                                @else { span.state.pending { "No feature" } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(viewer.page(&state, "Team", Nav::Team, body))
}

#[derive(Deserialize)]
pub struct FeatureForm {
    back: Option<String>,
}

/// `POST /feature-request`: asks the operator for the feature, then goes back.
pub async fn request_feature(
    State(state): State<AppState>,
    viewer: SignedIn,
    CsrfForm(form): CsrfForm<FeatureForm>,
) -> Result<Response, WebError> {
    let back = safe_next(form.back.as_deref()).to_string();
    match features::request_feature(&state.store, &viewer.user).await {
        Ok((eligibility, _)) => {
            let message = if eligibility.eligible {
                "Asked for the credential-requests feature; the operator will review it."
                    .to_string()
            } else {
                format!(
                    "Asked for the credential-requests feature; the operator will review it, but: {}.",
                    eligibility.reasons.join("; ")
                )
            };
            Ok(redirect_with_flash(
                &state,
                &back,
                FlashKind::Done,
                &message,
            ))
        }
        Err(service::Error::Conflict(message)) => Ok(redirect_with_flash(
            &state,
            &back,
            FlashKind::Failed,
            &message,
        )),
        Err(error) => Err(error.into()),
    }
}
