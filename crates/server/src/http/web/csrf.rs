//! CSRF protection by double submit: a random token in a SameSite=Strict cookie,
//! repeated in every form; a post whose two copies differ is refused.

use super::AppState;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
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
