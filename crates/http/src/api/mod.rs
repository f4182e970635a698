//! The JSON API under `/api/v2`, shaped like Make's public API where Make has the
//! operation (paths, query parameters, envelopes, field names), so Make's SDKs
//! and CLIs work against Credence unchanged.

mod actions;
mod audit;
mod connections;
pub mod doc;
mod doc_page;
mod organizations;
mod requests;
mod teams;
mod tokens;
mod tracking;
mod two_factor;
mod users;
mod webhooks;

use super::error::ApiError;
use super::routes::Routes;
use super::AppState;
use axum::routing::{get, post};
use axum::Router;
use credence_domain::{OrgRole, OrganizationId, TeamId, TeamRole, UserId};
use credence_store::{Db, Team};

pub fn router() -> Router<AppState> {
    routes()
        .into_router()
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) })
}

/// Every route of the API, its paths relative to `/api/v2` (see [`Routes`]).
pub fn routes() -> Routes {
    Routes::new()
        .route("/openapi.json", get(doc::openapi_json))
        .route("/docs", get(doc::docs_page))
        .route("/users/me", get(users::me))
        .route(
            "/users/me/current-authorization",
            get(users::current_authorization),
        )
        .route(
            "/users/me/api-tokens",
            get(tokens::list).post(tokens::create),
        )
        .route(
            "/users/me/api-tokens/{id}",
            axum::routing::delete(tokens::delete),
        )
        .route("/users", get(users::list_team_members))
        .route("/organizations", get(organizations::list))
        .route("/organizations/{id}", get(organizations::get))
        .route(
            "/organizations/{id}/two-factor",
            get(two_factor::get).put(two_factor::put),
        )
        .route("/teams", get(teams::list))
        .route("/teams/{id}", get(teams::get))
        .route("/credential-requests/apps", get(requests::apps))
        .route(
            "/credential-requests/apps/{app_name}/{app_version}/modules-with-credentials",
            get(requests::modules_with_credentials),
        )
        .route(
            "/credential-requests/feature",
            get(requests::feature_status).post(requests::request_feature),
        )
        .route(
            "/credential-requests/requests",
            get(requests::list).post(requests::create_deprecated),
        )
        .route("/credential-requests/requests/v2", post(requests::create))
        .route(
            "/credential-requests/requests/{id}",
            get(requests::get)
                .delete(requests::delete)
                .patch(tracking::update),
        )
        .route("/credential-requests/projects", get(tracking::projects))
        .route(
            "/credential-requests/projects/{name}/teardown",
            post(tracking::teardown),
        )
        .route(
            "/credential-requests/teams/{id}/reminder-policy",
            get(tracking::get_policy).put(tracking::put_policy),
        )
        .route(
            "/credential-requests/requests/{id}/detail",
            get(requests::detail),
        )
        .route("/credential-requests/received", get(requests::received))
        .route(
            "/credential-requests/credentials/{id}",
            get(requests::get_credential),
        )
        .route(
            "/credential-requests/credentials/{id}/decline",
            post(requests::decline),
        )
        .route(
            "/credential-requests/credentials/{id}/delete-remote",
            post(requests::delete_remote),
        )
        .route(
            "/credential-requests/credentials/{id}/request-reauthorize",
            post(requests::request_reauthorize),
        )
        .route(
            "/credential-requests/credentials/{id}/authorize",
            post(requests::authorize),
        )
        .route(
            "/credential-requests/credentials/{id}/reauthorize",
            post(requests::reauthorize),
        )
        .route(
            "/credential-requests/credentials/{id}/revoke",
            post(requests::revoke),
        )
        .route("/credential-requests/actions/create", post(actions::create))
        .route(
            "/credential-requests/actions/create-by-credentials",
            post(actions::create_by_credentials),
        )
        .route("/credential-requests/actions/extend", post(actions::extend))
        .route(
            "/audit-logs/organization/{id}",
            get(audit::organization_log),
        )
        .route(
            "/audit-logs/organization/{id}/filters",
            get(audit::organization_filters),
        )
        .route(
            "/audit-logs/organization/{id}/export",
            get(audit::organization_export),
        )
        .route("/audit-logs/team/{id}", get(audit::team_log))
        .route("/audit-logs/team/{id}/filters", get(audit::team_filters))
        .route("/audit-logs/team/{id}/export", get(audit::team_export))
        .route("/audit-logs/{id}", get(audit::get))
        .route(
            "/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/connections/{id}",
            get(connections::get)
                .patch(connections::rename)
                .delete(connections::delete),
        )
        .route("/connections/{id}/test", post(connections::test))
        .route("/connections/{id}/scoped", post(connections::scoped))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/webhooks/{id}/deliveries/{delivery}",
            get(webhooks::delivery),
        )
        .route(
            "/webhooks/{id}/deliveries/{delivery}/replay",
            post(webhooks::replay),
        )
        .route(
            "/webhooks/{id}/deliveries/{delivery}/attempts",
            get(webhooks::attempts),
        )
}

/// The caller's role in `organization`; a 404 when they are not a member, so
/// outsiders learn nothing of what exists.
pub(crate) async fn organization_role_or_404(
    db: &mut Db,
    organization: OrganizationId,
    user: UserId,
) -> Result<OrgRole, ApiError> {
    db.organization_role(organization, user)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("organization {organization} not found")))
}

/// The team, if the caller may see it: a member of it (not a guest), or an
/// owner or admin of its organization. Outsiders of the organization get a 404,
/// its other members a 403. A guest is refused even in a team they joined by
/// accepting an invitation: a guest sees only the requests they received
/// (SPEC §1), not the team's members or the team itself.
pub(crate) async fn visible_team(
    db: &mut Db,
    team: TeamId,
    user: UserId,
) -> Result<(Team, Option<TeamRole>), ApiError> {
    let not_found = || ApiError::NotFound(format!("team {team} not found"));
    let found = db.get_team(team).await?.ok_or_else(not_found)?;
    let organization_role = db
        .organization_role(found.organization_id, user)
        .await?
        .ok_or_else(not_found)?;
    if organization_role == OrgRole::Guest {
        return Err(ApiError::Forbidden(format!(
            "guests see only the requests they received, not team {team}"
        )));
    }
    let team_role = db.team_role(team, user).await?;
    if team_role.is_none() && !organization_role.manages_organization() {
        return Err(ApiError::Forbidden(format!(
            "you are not a member of team {team}; only its members and the organization's owners and admins see it"
        )));
    }
    Ok((found, team_role))
}
