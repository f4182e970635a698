//! The browser's side of OAuth 2.0: `/oauth/callback`, where the provider
//! sends the browser back; `/oauth/authorize/{credentialId}`, which sends the
//! recipient to the provider's consent page; and `/oauth/reauth/{connectionId}`,
//! a page whose CSRF-checked form sends a team member there to renew a team's
//! connection (a script's `GET` with an API token is redirected at once, Make's route).
//!
//! Only the browser signed in as the person who started a flow may finish it;
//! one that is not signed in passes through sign-in first and comes back with
//! the same query, so a consent given in a fresh browser is not lost.

use super::layout::Nav;
use super::session::SignedIn;
use super::{csrf, internal, pages, problem, requests::sign_in_first, signed_in_user, CsrfForm};
use crate::error::ApiError;
use crate::extract::ApiCaller;
use crate::AppState;
use axum::extract::{FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use credence_domain::{CredentialId, CredentialState, Scope};
use credence_service::{self as service, access, callback, consent, credentials, team_connections};
use secrecy::SecretString;
use std::collections::HashMap;

/// `GET /oauth/callback`: `code` and `state` (or `error`) from the provider.
/// Anything refused gets a page that says why, and nothing changes.
pub async fn callback(
    State(state): State<AppState>,
    jar: CookieJar,
    viewer: Result<SignedIn, Response>,
    RawQuery(raw): RawQuery,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let signed_in = match &viewer {
        Ok(viewer) => Ok(Some(viewer.user.clone())),
        Err(_) => signed_in_user(&state, &jar).await,
    };
    let user = match signed_in {
        Ok(Some(user)) => user,
        Ok(None) => {
            let raw = raw.unwrap_or_default();
            if raw.len() > 1800 {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Sign in first",
                    "Sign in as the person who started this step, then start again.",
                );
            }
            return sign_in_first(&format!("{}?{raw}", consent::CALLBACK_PATH));
        }
        Err(error) => return internal(error),
    };
    let mut query = query;
    let params = callback::CallbackParams {
        state: query.remove("state"),
        code: query.remove("code").map(SecretString::from),
        error: query.remove("error"),
        error_description: query.remove("error_description"),
    };
    match callback::callback(&state.ctx(), &user, params).await {
        Ok(callback::Finished::Request(request)) => {
            Redirect::to(&format!("/received/{request}")).into_response()
        }
        Ok(callback::Finished::Connection { id, name, failure }) => {
            let status = if failure.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            match viewer {
                // In the shell, with the way back to the connection.
                Ok(viewer) => {
                    let (title, body) =
                        pages::connection_outcome_body(id, &name, failure.as_deref());
                    viewer.page_with(&state, status, title, Nav::Connections, body)
                }
                Err(_) => (
                    status,
                    pages::connection_outcome(id, &name, failure.as_deref()),
                )
                    .into_response(),
            }
        }
        Err(error) => refusal(error),
    }
}

/// A service error as a page a person can act on.
fn refusal(error: service::Error) -> Response {
    match error {
        service::Error::NotFound(message) | service::Error::Forbidden(message) => {
            problem(StatusCode::NOT_FOUND, "Not found", &message)
        }
        service::Error::Conflict(message) => problem(
            StatusCode::BAD_REQUEST,
            "This link cannot be used",
            &message,
        ),
        service::Error::Invalid(problems) => problem(
            StatusCode::BAD_REQUEST,
            "This link cannot be used",
            &service::Error::Invalid(problems).to_string(),
        ),
        error => internal(error),
    }
}

/// `GET /oauth/reauth/{connectionId}`: for a browser (its session; sent to
/// sign in without one), a page naming the connection with a button that
/// posts the CSRF-checked form below; a GET alone never starts a consent, since
/// another site can make a signed-in browser send one, and a provider may
/// approve a consent given before without asking. A script (its API token with
/// `connections:write`, errors as JSON) gets the 302 to the provider's consent
/// page (Make's route): a browser sends no `Authorization` header cross-site.
pub async fn reauthorize_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<String>,
    mut parts: Parts,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return no_such_connection();
    };
    if parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION)
    {
        let caller = match ApiCaller::from_request_parts(&mut parts, &state).await {
            Ok(caller) => caller,
            Err(error) => return error.into_response(),
        };
        if let Err(error) = caller.require(Scope::ConnectionsWrite) {
            return error.into_response();
        }
        return match team_connections::reauthorize(&state.ctx(), &caller.user, id).await {
            Ok(url) => Redirect::to(&url).into_response(),
            Err(error) => ApiError::from(error).into_response(),
        };
    }
    let user = match signed_in_user(&state, &jar).await {
        Ok(Some(user)) => user,
        Ok(None) => return sign_in_first(&format!("/oauth/reauth/{id}")),
        Err(error) => return internal(error),
    };
    let ctx = state.ctx();
    let connection = match team_connections::renewable(&ctx, &user, id).await {
        Ok(connection) => connection,
        Err(error) => return refusal(error),
    };
    let app = ctx
        .catalog
        .get(&connection.app_key)
        .map(|app| app.label.as_str())
        .unwrap_or(&connection.app_key);
    let (jar, csrf) = csrf::ensure(&state, jar);
    (
        jar,
        pages::renew_connection(connection.id, &connection.name, app, &csrf),
    )
        .into_response()
}

/// `POST /oauth/reauth/{connectionId}` (the form of the page above,
/// CSRF-checked): 303 to the provider's consent page to renew the signed-in
/// person's OAuth connection in place.
pub async fn reauthorize(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<HashMap<String, String>>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return no_such_connection();
    };
    let user = match signed_in_user(&state, &jar).await {
        Ok(Some(user)) => user,
        Ok(None) => return sign_in_first(&format!("/oauth/reauth/{id}")),
        Err(error) => return internal(error),
    };
    match team_connections::reauthorize(&state.ctx(), &user, id).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(error) => refusal(error),
    }
}

fn no_such_connection() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such connection.",
    )
}

/// `POST /oauth/authorize/{credentialId}` (the form on the recipient's page,
/// CSRF-checked): the signed-in recipient goes to the provider's consent page
/// for a requested OAuth credential (authorize, or reauthorize when the
/// requester asked for it). The same checks as the API's authorize; refusals
/// are pages.
pub async fn authorize(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<HashMap<String, String>>,
) -> Response {
    let user = match signed_in_user(&state, &jar).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return sign_in_first("/");
        }
        Err(error) => return internal(error),
    };
    let Ok(id) = CredentialId::parse("id", &id) else {
        return problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such credential.",
        );
    };
    let ctx = state.ctx();
    let current = match ctx.store.db().await {
        Ok(mut db) => access::credential(&mut db, &user, id).await,
        Err(error) => Err(error.into()),
    };
    let reauthorize = match current {
        Ok((credential, _, _)) => credential.state == CredentialState::Reauthorizing,
        Err(error) => return refusal(error),
    };
    match credentials::authorize(&ctx, &user, id, None, reauthorize).await {
        Ok(credentials::Authorization::Redirect(url)) => Redirect::to(&url).into_response(),
        Ok(credentials::Authorization::Authorized(_)) => problem(
            StatusCode::BAD_REQUEST,
            "Nothing to do",
            "This app is not authorized through a consent page.",
        ),
        Err(service::Error::Invalid(_)) => problem(
            StatusCode::BAD_REQUEST,
            "Enter the values",
            "This app takes its values in a form, not through a consent page.",
        ),
        Err(error) => refusal(error),
    }
}
