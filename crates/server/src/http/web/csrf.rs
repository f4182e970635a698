//! CSRF protection by double submit: a random token in a SameSite=Strict cookie,
//! repeated in every form; a post whose two copies differ is refused.

use super::{problem, AppState};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub const CSRF_COOKIE: &str = "credence_csrf";

/// The jar's CSRF token, minting one (and its cookie) when absent.
pub fn ensure(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    if let Some(existing) = jar
        .get(CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() == 43)
    {
        return (jar, existing);
    }
    let token = crate::service::random_token();
    let cookie = Cookie::build((CSRF_COOKIE, token.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.secure_cookies())
        .path("/")
        .build();
    (jar.add(cookie), token)
}

/// Whether the form's token equals the cookie's, compared in constant time.
pub fn matches(jar: &CookieJar, submitted: &str) -> bool {
    match jar.get(CSRF_COOKIE) {
        Some(cookie) => {
            !submitted.is_empty()
                && bool::from(cookie.value().as_bytes().ct_eq(submitted.as_bytes()))
        }
        None => false,
    }
}

/// A form post whose `csrf_token` field matched the cookie, parsed into `T`.
/// A forged or stale post gets a 403 page before its fields are even read; an
/// unreadable or incomplete form a 400 page.
pub struct CsrfForm<T>(pub T);

#[derive(Deserialize)]
struct CsrfField {
    csrf_token: Option<String>,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(request.headers());
        let incomplete = || {
            problem(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The form was incomplete. Go back and try again.",
            )
        };
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    problem(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Form too large",
                        "The form was larger than this server accepts.",
                    )
                } else {
                    incomplete()
                }
            })?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes).map_err(|_| incomplete())?;
        if !matches(&jar, field.csrf_token.as_deref().unwrap_or("")) {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "Expired form",
                "This form expired or came from another site. Reload the page and try again.",
            ));
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(CsrfForm)
            .map_err(|_| incomplete())
    }
}
