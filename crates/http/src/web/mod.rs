//! Server-rendered pages. For now: sign-in, sign-out, the one-time setup link
//! page and a home page; the full UI comes later on the same pieces.
//!
//! Every form post carries a CSRF token that must match the `credence_csrf`
//! cookie and the session (`csrf.rs`: double submit bound to the session; the
//! cookie is SameSite=Strict, so another site can neither read nor send it).
//! Sessions are a random cookie whose hash the store keeps; a new one is issued
//! at every sign-in. A sign-in — by the form, a setup link or an accepted
//! invitation — also marks the browser as known for the account
//! (`credence_browser`), which the sign-in limits honour
//! (`service::sign_in_limits`).

mod audit;
mod connections;
mod create;
mod csrf;
pub(crate) mod layout;
mod limits;
pub mod mailbox;
mod oauth;
mod pages;
mod received;
mod reminders;
mod requests;
mod sent;
mod session;
mod settings;
mod team;
mod tracker;
mod two_factor;
mod webhooks;

pub use credence_service::sign_in_limits::SignInLimits;
use csrf::CsrfForm;

use super::AppState;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use credence_domain::NewPassword;
use credence_service::sign_in_limits::{self, Admission};
use credence_service::{self as service, auth};
use secrecy::SecretString;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

pub const SESSION_COOKIE: &str = "credence_session";
/// Marks a browser on which an account signed in; only `POST /sign-in` reads it.
pub const KNOWN_BROWSER_COOKIE: &str = "credence_browser";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route(pages::STYLESHEET_PATH, get(pages::stylesheet))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route("/team", get(team::members).post(sent::switch_team))
        .route("/credential-requests/sent", get(sent::sent))
        .route("/credential-requests/received", get(sent::received_list))
        .route("/credential-requests/{id}", get(sent::detail))
        // The requester's side (ui-req): the wizard, the details' actions, the feature.
        .route(pages::SCRIPT_PATH, get(pages::script))
        .route(
            "/credential-requests/new",
            get(create::form).post(create::submit),
        )
        .route(
            "/credential-requests/{id}/delete",
            get(sent::delete_page).post(sent::delete),
        )
        .route(
            "/credential-requests/{id}/reauthorization/{credential}",
            axum::routing::post(sent::request_reauthorization),
        )
        .route(
            "/feature-request",
            axum::routing::post(team::request_feature),
        )
        // The audit log and the user's settings.
        .route("/tracker", get(tracker::page))
        .route("/audit", get(audit::page))
        .route("/audit/export", get(audit::export))
        .route("/settings", get(settings::page))
        .route(
            "/settings/tokens",
            axum::routing::post(settings::create_token),
        )
        .route(
            "/settings/tokens/{id}/delete",
            axum::routing::post(settings::delete_token),
        )
        // Two-factor sign-in: the second step, the settings (two_factor.rs).
        .route(
            two_factor::CHALLENGE_PATH,
            get(two_factor::challenge_form).post(two_factor::answer_challenge),
        )
        .route(two_factor::SETTINGS_PATH, get(two_factor::page))
        .route("/settings/two-factor/start", post(two_factor::start))
        .route("/settings/two-factor/confirm", post(two_factor::confirm))
        .route("/settings/two-factor/disable", post(two_factor::disable))
        .route(
            "/settings/two-factor/recovery-codes",
            post(two_factor::regenerate),
        )
        .route(
            "/settings/two-factor/organizations/{id}",
            post(two_factor::set_required),
        )
        // Settings → Webhooks, Reminder policy; the local mailbox.
        .route(
            "/settings/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route("/settings/webhooks/{id}", get(webhooks::detail))
        .route(
            "/settings/webhooks/{id}/enabled",
            post(webhooks::set_enabled),
        )
        .route(
            "/settings/webhooks/{id}/delete",
            get(webhooks::confirm_delete).post(webhooks::delete),
        )
        .route(
            "/settings/reminders",
            get(reminders::page).post(reminders::save),
        )
        .route("/mailbox", get(mailbox::list))
        .route("/mailbox/{id}", get(mailbox::show))
        .route("/setup/{token}", get(setup_page).post(setup))
        .route("/requests/{token}", get(requests::open_link))
        // The recipient's page of a request, its actions and its usage log.
        .route("/received/{id}", get(received::page))
        .route("/received/{id}/usage", get(received::usage))
        .route(
            "/received/{id}/credentials/{credential}/authorize",
            post(received::authorize),
        )
        .route(
            "/received/{id}/credentials/{credential}/decline",
            post(received::decline),
        )
        .route(
            "/received/{id}/credentials/{credential}/revoke",
            post(received::revoke),
        )
        // The current team's connections.
        .route(
            "/connections",
            get(connections::list).post(connections::add),
        )
        .route("/connections/new", get(connections::new_page))
        .route("/connections/{id}", get(connections::detail))
        .route("/connections/{id}/rename", post(connections::rename))
        .route("/connections/{id}/verify", post(connections::verify))
        .route(
            "/connections/{id}/delete",
            get(connections::confirm_delete).post(connections::delete),
        )
        .route(service::consent::CALLBACK_PATH, get(oauth::callback))
        .route(
            "/oauth/reauth/{id}",
            get(oauth::reauthorize_page).post(oauth::reauthorize),
        )
        .route(
            "/oauth/authorize/{id}",
            axum::routing::post(oauth::authorize),
        )
        .route(
            "/invitations/{token}",
            get(requests::invitation_page).post(requests::accept_invitation),
        )
}

/// The session cookie's name under this configuration (`__Host-` over
/// https, so a sibling subdomain can neither plant nor shadow a session).
pub fn session_cookie_name(state: &AppState) -> String {
    state.settings.cookie_name(SESSION_COOKIE)
}

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((session_cookie_name(state), value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.secure_cookies)
        .path("/")
        .max_age(time_duration(auth::SESSION_LIFETIME.num_seconds()))
        .build()
}

fn known_browser_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((KNOWN_BROWSER_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.secure_cookies)
        .path("/sign-in")
        .max_age(time_duration(
            sign_in_limits::KNOWN_BROWSER_LIFETIME.num_seconds(),
        ))
        .build()
}

/// A page answering 429 or 503, with `Retry-After`.
fn try_again_later(status: StatusCode, title: &str, message: &str, wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut response = problem(
        status,
        title,
        &message.replace("{seconds}", &seconds.to_string()),
    );
    if let Ok(value) = seconds.to_string().parse() {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}

/// The answer when the hashing gate refused a new password's hash: 503 with
/// `Retry-After`, as a busy sign-in; anything else is a fault of ours.
fn busy_or_internal(error: service::Error) -> Response {
    if service::password_hashing::is_busy(&error) {
        return try_again_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Too many passwords are being checked right now. Try again in {seconds} seconds.",
            Duration::from_secs(1),
        );
    }
    internal(error)
}

/// Starts a session for `user` after a sign-in other than the form's (setup
/// link, invitation), marking the browser as known for them.
async fn start_session_on_new_known_browser(
    state: &AppState,
    jar: CookieJar,
    user: credence_domain::UserId,
) -> Result<CookieJar, service::Error> {
    let browser = sign_in_limits::new_known_browser(&state.store, user).await?;
    let session = auth::start_session(&state.store, user).await?;
    Ok(jar
        .add(session_cookie(state, session))
        .add(known_browser_cookie(state, browser)))
}

fn time_duration(seconds: i64) -> time::Duration {
    time::Duration::seconds(seconds)
}

/// A page for a failure a person can act on, with its status.
fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    (status, pages::problem(title, message)).into_response()
}

fn internal(error: service::Error) -> Response {
    tracing::error!(error = %error, "web request failed");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "It has been logged. Please try again.",
    )
}

async fn signed_in_user(
    state: &AppState,
    jar: &CookieJar,
) -> Result<Option<credence_store::User>, service::Error> {
    match jar.get(&session_cookie_name(state)) {
        Some(cookie) if cookie.value().len() <= 128 => {
            auth::session_user(&state.store, cookie.value()).await
        }
        _ => Ok(None),
    }
}

async fn home(
    State(state): State<AppState>,
    viewer: session::SignedIn,
) -> Result<Response, session::WebError> {
    let filter = credence_store::RequestFilter::within(credence_store::RequestScope::Received {
        recipient: viewer.user.id,
    });
    let (received, _) = state.store.db().await?.list_requests(&filter).await?;
    let body = pages::home(&viewer.memberships, &received);
    Ok(viewer.page(&state, "Overview", layout::Nav::Home, body))
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Where to go after signing in: a path on this site, never another host.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && path.len() <= 2048
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path
        }
        _ => "/",
    }
}

async fn sign_in_page(
    State(state): State<AppState>,
    jar: CookieJar,
    axum::extract::Query(query): axum::extract::Query<NextQuery>,
) -> Response {
    let (jar, csrf) = csrf::ensure(&state, jar);
    let next = safe_next(query.next.as_deref());
    (jar, pages::sign_in(&csrf, None, "", next)).into_response()
}

#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    jar: CookieJar,
    CsrfForm(form): CsrfForm<SignInForm>,
) -> Response {
    let email = form.email.trim().to_string();
    if email.len() > 254 || form.password.len() > 1024 {
        let (jar, csrf) = csrf::ensure(&state, jar);
        return (
            StatusCode::BAD_REQUEST,
            jar,
            pages::sign_in(
                &csrf,
                Some("The email or password is too long."),
                "",
                safe_next(form.next.as_deref()),
            ),
        )
            .into_response();
    }
    let client = limits::client_address(
        peer.ip(),
        &headers,
        &state.settings.trusted_proxies,
        state.settings.forwarded_header,
    );
    let browser = jar
        .get(KNOWN_BROWSER_COOKIE)
        .map(|cookie| cookie.value().to_string())
        .filter(|value| value.len() <= 128);
    let attempt = match sign_in_limits::admit(
        &state.store,
        &state.limits,
        &email,
        client,
        browser.as_deref(),
    )
    .await
    {
        Ok(Admission::Go(attempt)) => attempt,
        Ok(Admission::Wait(wait)) => {
            tracing::warn!(client = %sign_in_limits::Source::of(client), "sign-in rate limit reached");
            return try_again_later(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Too many sign-in attempts. Try again in {seconds} seconds.",
                wait,
            );
        }
        Err(error) => return internal(error),
    };
    match auth::check_password(
        &state.store,
        state.limits.hashing_gate(),
        &email,
        SecretString::from(form.password),
    )
    .await
    {
        Ok(auth::PasswordCheck::Right(user)) => {
            // With two-factor sign-in on, a right password opens only the
            // second step; the attempt is taken back like any right password
            // (each code is admitted on its own) and the browser becomes known
            // only after the code.
            match service::two_factor::is_enabled(&state.store, user.id).await {
                Ok(false) => {}
                Ok(true) => {
                    if let Err(error) = attempt.refund(&state.store).await {
                        return internal(error);
                    }
                    let next = safe_next(form.next.as_deref());
                    return two_factor::challenge_instead_of_session(&state, jar, &user, next)
                        .await;
                }
                Err(error) => return internal(error),
            }
            let browser_token = match attempt
                .signed_in(&state.store, user.id, browser.as_deref())
                .await
            {
                Ok(token) => token,
                Err(error) => return internal(error),
            };
            match auth::start_session(&state.store, user.id).await {
                Ok(token) => {
                    tracing::info!(user_id = %user.id, known_browser = attempt.from_known_browser(), "signed in");
                    let next = safe_next(form.next.as_deref());
                    let jar = jar
                        .add(session_cookie(&state, token))
                        .add(known_browser_cookie(&state, browser_token));
                    (jar, Redirect::to(next)).into_response()
                }
                Err(error) => internal(error),
            }
        }
        Ok(auth::PasswordCheck::Wrong) => {
            let (jar, csrf) = csrf::ensure(&state, jar);
            (
                StatusCode::UNAUTHORIZED,
                jar,
                pages::sign_in(
                    &csrf,
                    Some("The email or password is wrong."),
                    &email,
                    safe_next(form.next.as_deref()),
                ),
            )
                .into_response()
        }
        Ok(auth::PasswordCheck::Busy) => {
            // Nothing was checked, so the attempt does not count.
            if let Err(error) = attempt.refund(&state.store).await {
                return internal(error);
            }
            try_again_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "Too many people are signing in right now. Try again in {seconds} seconds.",
                Duration::from_secs(1),
            )
        }
        Err(error) => internal(error),
    }
}

async fn sign_out(
    State(state): State<AppState>,
    jar: CookieJar,
    _: CsrfForm<serde::de::IgnoredAny>,
) -> Response {
    let name = session_cookie_name(&state);
    if let Some(cookie) = jar.get(&name) {
        if let Err(error) = auth::end_session(&state.store, cookie.value()).await {
            return internal(error);
        }
    }
    let removal = Cookie::build((name, "")).path("/").build();
    (jar.remove(removal), Redirect::to("/sign-in")).into_response()
}

async fn setup_page(
    State(state): State<AppState>,
    jar: CookieJar,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match auth::setup_link_user(&state.store, &token).await {
        Ok(Some(user)) => {
            let (jar, csrf) = csrf::ensure(&state, jar);
            (jar, pages::setup(&user, &csrf, None)).into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "Link not valid", "This setup link is unknown, already used or expired. Ask your operator for a new one (credence user setup-link)."),
        Err(error) => internal(error),
    }
}

#[derive(Deserialize)]
pub struct SetupForm {
    password: String,
    password_again: String,
}

async fn setup(
    State(state): State<AppState>,
    jar: CookieJar,
    axum::extract::Path(token): axum::extract::Path<String>,
    CsrfForm(form): CsrfForm<SetupForm>,
) -> Response {
    let user = match auth::setup_link_user(&state.store, &token).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                "Link not valid",
                "This setup link is unknown, already used or expired.",
            )
        }
        Err(error) => return internal(error),
    };
    let retry = |message: &str| {
        let (jar, csrf) = csrf::ensure(&state, jar.clone());
        (
            StatusCode::BAD_REQUEST,
            jar,
            pages::setup(&user, &csrf, Some(message)),
        )
            .into_response()
    };
    if form.password != form.password_again {
        return retry("The two passwords differ.");
    }
    let password = match NewPassword::parse("password", form.password) {
        Ok(password) => password,
        Err(error) => return retry(&format!("The {}.", error.message)),
    };
    match auth::complete_setup(&state.store, state.limits.hashing_gate(), &token, password).await {
        // A setup link resets a password, not the second factor.
        Ok(user_id) => match service::two_factor::is_enabled(&state.store, user_id).await {
            Ok(true) => two_factor::challenge_instead_of_session(&state, jar, &user, "/").await,
            Ok(false) => match start_session_on_new_known_browser(&state, jar, user_id).await {
                Ok(jar) => (jar, Redirect::to("/")).into_response(),
                Err(error) => internal(error),
            },
            Err(error) => internal(error),
        },
        Err(service::Error::NotFound(message)) => {
            problem(StatusCode::NOT_FOUND, "Link not valid", &message)
        }
        Err(error) => busy_or_internal(error),
    }
}
