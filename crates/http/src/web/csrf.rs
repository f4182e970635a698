//! CSRF protection by a double submit bound to the session: a random value in a
//! SameSite=Strict cookie, and in every form the HMAC of that value keyed by the
//! browser's session cookie. A post whose token is not the HMAC of its own
//! cookie under its own session is refused: a token copied from another session
//! (or planted together with a cookie, e.g. by a sibling subdomain) is useless,
//! because nobody else can read the session cookie it is keyed by.
//!
//! Over https the cookie is named `__Host-credence_csrf`: browsers accept such a
//! cookie only `Secure`, with `Path=/` and no `Domain`, so a subdomain cannot set
//! or shadow it.

use super::{problem, session_cookie_name, AppState};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const CSRF_COOKIE: &str = "credence_csrf";

/// The name of the CSRF cookie under this configuration (`__Host-` over https).
pub fn cookie_name(state: &AppState) -> String {
    state.settings.cookie_name(CSRF_COOKIE)
}

/// The token a form carries: the HMAC-SHA256 of the cookie's random value,
/// keyed by the session cookie (empty before sign-in), base64url.
fn token_for(state: &AppState, cookie_value: &str, jar: &CookieJar) -> String {
    let session = jar
        .get(&session_cookie_name(state))
        .map(|cookie| cookie.value())
        .filter(|value| value.len() <= 128)
        .unwrap_or("");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(session.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(b"credence-csrf:");
    mac.update(cookie_value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The form token for this browser and session, minting the cookie's random
/// value (and the cookie) when absent.
pub fn ensure(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    let name = cookie_name(state);
    if let Some(existing) = jar
        .get(&name)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() == 43)
    {
        let token = token_for(state, &existing, &jar);
        return (jar, token);
    }
    let value = credence_service::random_token();
    let token = token_for(state, &value, &jar);
    let cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.secure_cookies)
        .path("/")
        .build();
    (jar.add(cookie), token)
}

/// Whether the form's token is the one of this cookie and this session,
/// compared in constant time.
pub fn matches(state: &AppState, jar: &CookieJar, submitted: &str) -> bool {
    match jar.get(&cookie_name(state)) {
        Some(cookie) if cookie.value().len() == 43 && !submitted.is_empty() => {
            let expected = token_for(state, cookie.value(), jar);
            bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
        }
        _ => false,
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

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
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
        if !matches(state, &jar, field.csrf_token.as_deref().unwrap_or("")) {
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
