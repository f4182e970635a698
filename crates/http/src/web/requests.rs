//! The recipient's way in: the request link and accepting an invitation as a
//! guest (the received request's page is `received.rs`). The link grants nothing by itself: whoever is not
//! signed in is sent to sign in, and whoever is signed in but not the recipient
//! gets the same 404 as for a link that does not exist.

use super::{
    busy_or_internal, csrf, internal, pages, problem, signed_in_user,
    start_session_on_new_known_browser, CsrfForm,
};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use credence_service::invitations::{self, Acceptance};
use credence_service::{self as service, token_hash};
use serde::Deserialize;

fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing here. Check the link, or sign in as the person it was sent to.",
    )
}

pub(super) fn sign_in_first(next: &str) -> Response {
    if next == "/" {
        return Redirect::to("/sign-in").into_response();
    }
    let encoded: String = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Redirect::to(&format!("/sign-in?{encoded}")).into_response()
}

/// `GET /requests/{token}`: the link in the recipient's email.
pub async fn open_link(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    let user = match signed_in_user(&state, &jar).await {
        Ok(Some(user)) => user,
        Ok(None) => return sign_in_first(&format!("/requests/{token}")),
        Err(error) => return internal(error),
    };
    if token.len() > 128 {
        return not_found();
    }
    let found = match state.store.db().await {
        Ok(mut db) => db.find_request_by_link(&token_hash(&token)).await,
        Err(error) => Err(error),
    };
    match found {
        Ok(Some(request)) if request.recipient_user_id == Some(user.id) => {
            Redirect::to(&format!("/received/{}", request.id)).into_response()
        }
        Ok(_) => not_found(),
        Err(error) => internal(error.into()),
    }
}

/// `GET /invitations/{token}`: accept an invitation as a guest.
pub async fn invitation_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    let found = match invitations::find(&state.ctx(), &token).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                "Invitation not valid",
                "This invitation is unknown, expired, withdrawn or was already accepted.",
            )
        }
        Err(error) => return internal(error),
    };
    let (invitation, existing) = found;
    let user = match signed_in_user(&state, &jar).await {
        Ok(user) => user,
        Err(error) => return internal(error),
    };
    let (jar, csrf) = csrf::ensure(&state, jar);
    match (user, existing) {
        (Some(user), _) if user.email.eq_ignore_ascii_case(&invitation.email) => {
            (jar, pages::accept_invitation(&invitation, &csrf, None, false)).into_response()
        }
        (Some(user), _) => problem(
            StatusCode::FORBIDDEN,
            "Another account",
            &format!("This invitation is for {}, and you are signed in as {}. Sign out and open the link again.", invitation.email, user.email),
        ),
        (None, Some(_)) => sign_in_first(&format!("/invitations/{token}")),
        (None, None) => (jar, pages::accept_invitation(&invitation, &csrf, None, true)).into_response(),
    }
}

#[derive(Deserialize)]
pub struct AcceptForm {
    name: Option<String>,
    password: Option<String>,
    password_again: Option<String>,
}

/// `POST /invitations/{token}`.
pub async fn accept_invitation(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
    CsrfForm(form): CsrfForm<AcceptForm>,
) -> Response {
    let ctx = state.ctx();
    let signed_in = match signed_in_user(&state, &jar).await {
        Ok(user) => user,
        Err(error) => return internal(error),
    };
    let acceptance = match signed_in {
        Some(user) => Acceptance::SignedIn(user),
        None => {
            let (password, again) = (
                form.password.unwrap_or_default(),
                form.password_again.unwrap_or_default(),
            );
            if password != again {
                return retry(&state, jar, &token, "The two passwords differ.").await;
            }
            Acceptance::NewAccount {
                name: form.name.unwrap_or_default(),
                password,
            }
        }
    };
    let new_account = matches!(acceptance, Acceptance::NewAccount { .. });
    match invitations::accept(&ctx, state.limits.hashing_gate(), &token, acceptance).await {
        Ok(user) => {
            if new_account {
                match start_session_on_new_known_browser(&state, jar, user).await {
                    Ok(jar) => (jar, Redirect::to("/")).into_response(),
                    Err(error) => internal(error),
                }
            } else {
                Redirect::to("/").into_response()
            }
        }
        Err(service::Error::Invalid(problems)) => {
            let message = problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            retry(&state, jar, &token, &format!("The {message}.")).await
        }
        Err(service::Error::NotFound(message)) => {
            problem(StatusCode::NOT_FOUND, "Invitation not valid", &message)
        }
        Err(service::Error::Forbidden(message)) => {
            problem(StatusCode::FORBIDDEN, "Another account", &message)
        }
        Err(service::Error::Conflict(message)) => {
            problem(StatusCode::CONFLICT, "Account exists", &message)
        }
        Err(error) => busy_or_internal(error),
    }
}

async fn retry(state: &AppState, jar: CookieJar, token: &str, message: &str) -> Response {
    match invitations::find(&state.ctx(), token).await {
        Ok(Some((invitation, _))) => {
            let (jar, csrf) = csrf::ensure(state, jar);
            (
                StatusCode::BAD_REQUEST,
                jar,
                pages::accept_invitation(&invitation, &csrf, Some(message), true),
            )
                .into_response()
        }
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "Invitation not valid",
            "This invitation is unknown or was already accepted.",
        ),
        Err(error) => internal(error),
    }
}
