//! Two-factor sign-in in the browser (`service::two_factor`):
//!
//! * `/settings/two-factor` — enrol (a new secret shown as a QR code drawn
//!   here as inline SVG — the CSP allows no `data:` image — and as base32
//!   text, confirmed by a current code), then the ten recovery codes, shown
//!   on the page answering the confirmation and never again; turn it off
//!   (a current code or a recovery code); new recovery codes (a current
//!   code); and, for an organization's owners, whether it requires two-factor
//!   sign-in of everyone in it.
//! * `/sign-in/two-factor` — the second step after a right password: a
//!   challenge cookie naming a `sign_in_challenges` row (not a session), and
//!   every answer admitted by the sign-in limits like a password.
//! * [`gate`] — what `SignedIn` asks on every page: someone in an
//!   organization that requires two-factor sign-in and without it is sent
//!   here before anything else.
//!
//! Codes, secrets and recovery codes never go into a log line or a flash
//! cookie; errors name the field, never its value. Codes are checked against
//! the sign-in's clock (`SignInLimits::clock`), which tests move by hand.

use super::layout::{self, Nav};
use super::session::{redirect_with_flash, FlashKind, SignedIn, WebError};
use super::{
    csrf, internal, known_browser_cookie, limits, session_cookie, try_again_later, CsrfForm,
    KNOWN_BROWSER_COOKIE,
};
use crate::AppState;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use credence_domain::{OrgRole, OrganizationId};
use credence_service::audit::Actor;
use credence_service::sign_in_limits::{self, Admission};
use credence_service::{self as service, two_factor};
use credence_store::User;
use maud::{html, Markup};
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::net::SocketAddr;

/// The settings page of two-factor sign-in (where the gate sends people).
pub const SETTINGS_PATH: &str = "/settings/two-factor";
/// The second step of a sign-in.
pub const CHALLENGE_PATH: &str = "/sign-in/two-factor";
/// The cookie naming the second step of a sign-in.
pub const CHALLENGE_COOKIE: &str = "credence_sign_in_challenge";

/// Paths a signed-in person may open while their organization waits for
/// them to turn on two-factor sign-in: this page and its forms (signing out
/// needs no session page, and the assets no session at all).
fn open_while_awaiting(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    path == SETTINGS_PATH || path.starts_with("/settings/two-factor/")
}

/// For `SignedIn`: a redirect to the enrolment page when `user` is in an
/// organization requiring two-factor sign-in, has none, and `path` is not
/// the enrolment itself; `None` to go on.
pub(super) async fn gate(
    state: &AppState,
    user: &User,
    path: &str,
) -> Result<Option<Response>, service::Error> {
    if open_while_awaiting(path) {
        return Ok(None);
    }
    let awaiting = two_factor::awaiting_enrolment(&state.store, user.id).await?;
    Ok((!awaiting.is_empty()).then(|| Redirect::to(SETTINGS_PATH).into_response()))
}

fn challenge_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((state.settings.cookie_name(CHALLENGE_COOKIE), value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.secure_cookies)
        .path("/")
        .max_age(time::Duration::seconds(
            two_factor::CHALLENGE_LIFETIME.num_seconds(),
        ))
        .build()
}

fn without_challenge(state: &AppState, jar: CookieJar) -> CookieJar {
    jar.remove(
        Cookie::build(state.settings.cookie_name(CHALLENGE_COOKIE))
            .path("/")
            .build(),
    )
}

/// After a right password (or a setup link) for `user`, who has two-factor
/// sign-in on: the second step instead of a session.
pub(super) async fn challenge_instead_of_session(
    state: &AppState,
    jar: CookieJar,
    user: &User,
    next: &str,
) -> Response {
    match two_factor::start_challenge(&state.store, user.id, next).await {
        Ok(token) => {
            tracing::info!(user_id = %user.id, "password right, second factor asked");
            (
                jar.add(challenge_cookie(state, token)),
                Redirect::to(CHALLENGE_PATH),
            )
                .into_response()
        }
        Err(error) => internal(error),
    }
}

fn challenge_token(state: &AppState, jar: &CookieJar) -> Option<String> {
    jar.get(&state.settings.cookie_name(CHALLENGE_COOKIE))
        .map(|cookie| cookie.value().to_string())
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

/// A page outside the shell.
fn bare(title: &str, body: Markup) -> Html<String> {
    Html(layout::document(title, html! { main.narrow { (body) } }).into_string())
}

fn challenge_page(csrf: &str, error: Option<&str>) -> Html<String> {
    bare(
        "Two-factor authentication",
        html! {
            h1 { "Two-factor authentication" }
            p { "Type the 6-digit code your authenticator app shows for Credence, or one of your recovery codes." }
            form method="post" action=(CHALLENGE_PATH) {
                input type="hidden" name="csrf_token" value=(csrf);
                label for="code" { "Code" }
                input id="code" name="code" required maxlength=(two_factor::CODE_LIMIT)
                    autocomplete="one-time-code" inputmode="text" autocapitalize="off" spellcheck="false"
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "code-error")];
                @if let Some(error) = error { p.field-error id="code-error" { (error) } }
                button type="submit" { "Verify" }
            }
            p { a href="/sign-in" { "Start again" } }
        },
    )
}

fn sign_in_again(state: &AppState, jar: CookieJar, message: &str) -> Response {
    let (jar, csrf) = csrf::ensure(state, without_challenge(state, jar));
    (
        StatusCode::UNAUTHORIZED,
        jar,
        super::pages::sign_in(&csrf, Some(message), "", "/"),
    )
        .into_response()
}

/// `GET /sign-in/two-factor`.
pub async fn challenge_form(State(state): State<AppState>, jar: CookieJar) -> Response {
    let Some(token) = challenge_token(&state, &jar) else {
        return Redirect::to("/sign-in").into_response();
    };
    match two_factor::challenge_user(&state.store, &token).await {
        Ok(Some(_)) => {
            let (jar, csrf) = csrf::ensure(&state, jar);
            (jar, challenge_page(&csrf, None)).into_response()
        }
        Ok(None) => sign_in_again(
            &state,
            jar,
            "That sign-in expired. Type your email and password again.",
        ),
        Err(error) => internal(error),
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

/// `POST /sign-in/two-factor`: the code (or a recovery code), admitted by the
/// sign-in limits of the account; the session starts only when it is right.
pub async fn answer_challenge(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Response {
    let Some(token) = challenge_token(&state, &jar) else {
        return Redirect::to("/sign-in").into_response();
    };
    let user = match two_factor::challenge_user(&state.store, &token).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return sign_in_again(
                &state,
                jar,
                "That sign-in expired. Type your email and password again.",
            )
        }
        Err(error) => return internal(error),
    };
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
        &user.email,
        client,
        browser.as_deref(),
    )
    .await
    {
        Ok(Admission::Go(attempt)) => attempt,
        Ok(Admission::Wait(wait)) => {
            tracing::warn!(client = %sign_in_limits::Source::of(client), "sign-in rate limit reached at the second factor");
            return try_again_later(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Too many sign-in attempts. Try again in {seconds} seconds.",
                wait,
            );
        }
        Err(error) => return internal(error),
    };
    let now = state.limits.clock().now();
    let answer =
        two_factor::answer_challenge(&state.store, &state.vault, &token, &form.code, now).await;
    let retry = |jar: CookieJar, status: StatusCode, message: &str| {
        let (jar, csrf) = csrf::ensure(&state, jar);
        (status, jar, challenge_page(&csrf, Some(message))).into_response()
    };
    match answer {
        Ok(two_factor::Answer::Right {
            user,
            next,
            verified,
        }) => {
            let browser_token = match attempt
                .signed_in(&state.store, user.id, browser.as_deref())
                .await
            {
                Ok(token) => token,
                Err(error) => return internal(error),
            };
            match service::auth::start_session(&state.store, user.id).await {
                Ok(session) => {
                    tracing::info!(user_id = %user.id, recovery_code = (verified == two_factor::Verified::RecoveryCode), "signed in with a second factor");
                    let jar = without_challenge(&state, jar)
                        .add(session_cookie(&state, session))
                        .add(known_browser_cookie(&state, browser_token));
                    (jar, Redirect::to(super::safe_next(Some(&next)))).into_response()
                }
                Err(error) => internal(error),
            }
        }
        Ok(two_factor::Answer::Wrong { error, tries_left }) => {
            if tries_left == 0 {
                return sign_in_again(
                    &state,
                    jar,
                    "Too many wrong codes. Type your email and password again.",
                );
            }
            retry(
                jar,
                StatusCode::UNAUTHORIZED,
                &format!("{} ({tries_left} tries left)", sentence(&error)),
            )
        }
        Ok(two_factor::Answer::Gone) => {
            if let Err(error) = attempt.refund(&state.store).await {
                return internal(error);
            }
            sign_in_again(
                &state,
                jar,
                "That sign-in expired. Type your email and password again.",
            )
        }
        Err(error @ service::Error::Invalid(_)) => {
            // Nothing was checked: the attempt does not count.
            if let Err(error) = attempt.refund(&state.store).await {
                return internal(error);
            }
            retry(jar, StatusCode::BAD_REQUEST, &sentence(&error))
        }
        Err(error) => internal(error),
    }
}

/// A service error as a sentence (capital first letter, full stop).
fn sentence(error: &service::Error) -> String {
    let text = error.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// The message of a service error for `field`, or `None` when it is not
/// about that field (then it is shown as a page).
fn field_message(error: &service::Error, field: &str) -> Option<String> {
    match error {
        service::Error::Invalid(problems) => problems.iter().find(|p| p.field == field).map(|p| {
            let mut chars = p.message.chars();
            chars
                .next()
                .map(|first| format!("{}{}.", first.to_uppercase(), chars.as_str()))
                .unwrap_or_default()
        }),
        _ => None,
    }
}

/// A QR code of `text` as inline SVG (one path of dark modules, a quiet zone
/// of four), labelled for screen readers.
fn qr_svg(text: &str) -> Result<Markup, service::Error> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| service::Error::Internal(anyhow::anyhow!("cannot draw the QR code: {e}")))?;
    let width = code.width();
    let colors = code.to_colors();
    let quiet = 4;
    let size = width + 2 * quiet;
    let mut path = String::new();
    for (index, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = (index % width + quiet, index / width + quiet);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Ok(html! {
        svg.qr xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {size} {size}"))
            width="232" height="232" role="img" aria-label="QR code to scan with your authenticator app" shape-rendering="crispEdges" {
            rect width=(size) height=(size) fill="#ffffff" {}
            path d=(path) fill="#000000" {}
        }
    })
}

/// What the page shows besides the status: a form's error, or the codes
/// just made.
#[derive(Default)]
struct Shown<'a> {
    /// (form, message): `confirm`, `disable` or `regenerate`.
    error: Option<(&'a str, String)>,
    recovery_codes: Option<&'a two_factor::RecoveryCodes>,
}

async fn settings_page(
    state: &AppState,
    viewer: SignedIn,
    status: StatusCode,
    shown: Shown<'_>,
) -> Result<Response, WebError> {
    let current = two_factor::status(&state.store, viewer.user.id).await?;
    let pending = if shown.recovery_codes.is_none() {
        two_factor::pending_enrolment(&state.store, &state.vault, &viewer.user).await?
    } else {
        None
    };
    let awaiting = two_factor::awaiting_enrolment(&state.store, viewer.user.id).await?;
    let mut owned = Vec::new();
    {
        let mut db = state.store.db().await?;
        for membership in viewer
            .memberships
            .iter()
            .filter(|m| m.role == OrgRole::Owner)
        {
            let required = db
                .organization_requires_two_factor(membership.organization.id)
                .await?;
            owned.push((membership.organization.clone(), required));
        }
    }
    let qr = match &pending {
        Some(enrolment) => Some(qr_svg(enrolment.url.expose_secret())?),
        None => None,
    };
    let error_of = |form: &str| -> Option<&str> {
        shown
            .error
            .as_ref()
            .filter(|(f, _)| *f == form)
            .map(|(_, m)| m.as_str())
    };
    let code_field = |form: &str, label: &str| -> Markup {
        let id = format!("{form}-code");
        let error_id = format!("{form}-code-error");
        let error = error_of(form);
        html! {
            label for=(id) { (label) }
            input id=(id) name="code" required maxlength=(two_factor::CODE_LIMIT)
                autocomplete="one-time-code" autocapitalize="off" spellcheck="false"
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| error_id.clone())];
            @if let Some(error) = error { p.field-error id=(error_id) { (error) } }
        }
    };
    let tabs = super::settings::tabs(state, &viewer, super::settings::Tab::TwoFactor);
    let body = html! {
        h1 { "Settings" }
        (tabs)
        h2 { "Two-factor authentication" }
        @if !awaiting.is_empty() {
            p.flash.bad role="alert" {
                (awaiting.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", "))
                " requires two-factor authentication. Set it up to go on using Credence."
            }
        }
        @if let Some(codes) = shown.recovery_codes {
            section.card aria-labelledby="recovery-codes" {
                h2 id="recovery-codes" { "Your recovery codes" }
                p { "Keep these somewhere safe, away from your phone. Each signs you in once when you cannot use your authenticator app. They are shown only this once: Credence keeps only their hashes." }
                ol.recovery-codes {
                    @for code in &codes.0 { li { code { (code.expose_secret()) } } }
                }
                p { a href="/" { "Continue to Credence" } }
            }
        }
        @if current.enabled() {
            section.card aria-labelledby="two-factor-on" {
                h2 id="two-factor-on" { "Two-factor authentication is on" }
                p { "Since " (current.enabled_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default())
                    ". Signing in asks for a code of your authenticator app after your password. "
                    (current.recovery_codes_left) " of " (two_factor::RECOVERY_CODES) " recovery codes are unused." }
                h3 { "New recovery codes" }
                p.hint { "Replaces every recovery code you have." }
                form method="post" action="/settings/two-factor/recovery-codes" {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    (code_field("regenerate", "Code from your authenticator app"))
                    button.secondary type="submit" { "Make new recovery codes" }
                }
                h3 { "Turn off" }
                form method="post" action="/settings/two-factor/disable" {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    (code_field("disable", "Code from your app, or a recovery code"))
                    button.danger type="submit" { "Turn off two-factor authentication" }
                }
            }
        } @else if let (Some(enrolment), Some(qr)) = (&pending, &qr) {
            section.card aria-labelledby="two-factor-set-up" {
                h2 id="two-factor-set-up" { "Set up your authenticator app" }
                ol {
                    li { "Scan this QR code with an authenticator app (Google Authenticator, 1Password, Aegis, …)." }
                    li { "Or type the setup key into it (time-based, 6 digits, 30 seconds)." }
                    li { "Type the code the app shows to finish." }
                }
                (qr)
                label for="setup-key" { "Setup key" }
                input id="setup-key" readonly value=(enrolment.secret.expose_secret()) autocomplete="off" spellcheck="false";
                form method="post" action="/settings/two-factor/confirm" {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    (code_field("confirm", "Code from your authenticator app"))
                    button type="submit" { "Turn on two-factor authentication" }
                }
            }
        } @else if shown.recovery_codes.is_none() {
            section.card aria-labelledby="two-factor-off" {
                h2 id="two-factor-off" { "Two-factor authentication is off" }
                p { "With it on, signing in asks for your password and a code from an authenticator app on your phone, so a stolen password alone does not open your account." }
                form method="post" action="/settings/two-factor/start" {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    button type="submit" { "Set up two-factor authentication" }
                }
            }
        }
        @if !owned.is_empty() {
            section.card aria-labelledby="two-factor-organizations" {
                h2 id="two-factor-organizations" { "Organizations you own" }
                p.hint { "Requiring it sends everyone in the organization who has no two-factor authentication to set it up before anything else. API tokens keep working." }
                @if let Some(message) = error_of("organization") { p.field-error role="alert" { (message) } }
                ul {
                    @for (organization, required) in &owned {
                        li {
                            strong { (organization.name) } ": "
                            @if *required { "requires two-factor authentication. " } @else { "does not require it. " }
                            form.inline method="post" action=(format!("/settings/two-factor/organizations/{}", organization.id.0)) {
                                input type="hidden" name="csrf_token" value=(viewer.csrf);
                                input type="hidden" name="required" value=(if *required { "false" } else { "true" });
                                button.secondary.small type="submit" {
                                    @if *required { "Stop requiring it in " (organization.name) } @else { "Require it in " (organization.name) }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/settings" { "Back to settings" } }
    };
    Ok(viewer.page_with(
        state,
        status,
        "Two-factor authentication",
        Nav::Settings,
        body,
    ))
}

/// `GET /settings/two-factor`.
pub async fn page(State(state): State<AppState>, viewer: SignedIn) -> Result<Response, WebError> {
    settings_page(&state, viewer, StatusCode::OK, Shown::default()).await
}

/// `POST /settings/two-factor/start`: a new secret, shown until confirmed.
pub async fn start(
    State(state): State<AppState>,
    viewer: SignedIn,
    _: CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    two_factor::start_enrolment(&state.store, &state.vault, &viewer.user).await?;
    Ok(Redirect::to(SETTINGS_PATH).into_response())
}

/// `POST /settings/two-factor/confirm`: the first code turns it on; the
/// answer shows the recovery codes, once.
pub async fn confirm(
    State(state): State<AppState>,
    viewer: SignedIn,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Result<Response, WebError> {
    let now = state.limits.clock().now();
    let made = two_factor::confirm_enrolment(
        &state.store,
        &state.vault,
        &Actor::user(&viewer.user),
        &viewer.user,
        &form.code,
        now,
    )
    .await;
    match made {
        Ok(codes) => {
            let shown = Shown {
                recovery_codes: Some(&codes),
                ..Shown::default()
            };
            settings_page(&state, viewer, StatusCode::OK, shown).await
        }
        Err(error) => code_error(&state, viewer, "confirm", error).await,
    }
}

/// The page again with the error of form `form`'s code field (400), or the
/// error as a page when it is not about the field.
async fn code_error(
    state: &AppState,
    viewer: SignedIn,
    form: &str,
    error: service::Error,
) -> Result<Response, WebError> {
    match field_message(&error, "code") {
        Some(message) => {
            let shown = Shown {
                error: Some((form, message)),
                ..Shown::default()
            };
            settings_page(state, viewer, StatusCode::BAD_REQUEST, shown).await
        }
        None => Err(error.into()),
    }
}

/// Admits a code typed on the settings page against the sign-in limits of
/// the account (a stolen session must not guess codes at leisure); `Err` is
/// the answer to give instead.
async fn admit_code(
    state: &AppState,
    viewer: &SignedIn,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<sign_in_limits::Attempt, Response> {
    let client = limits::client_address(
        peer.ip(),
        headers,
        &state.settings.trusted_proxies,
        state.settings.forwarded_header,
    );
    let jar = CookieJar::from_headers(headers);
    let browser = jar
        .get(KNOWN_BROWSER_COOKIE)
        .map(|cookie| cookie.value().to_string())
        .filter(|value| value.len() <= 128);
    match sign_in_limits::admit(
        &state.store,
        &state.limits,
        &viewer.user.email,
        client,
        browser.as_deref(),
    )
    .await
    {
        Ok(Admission::Go(attempt)) => Ok(attempt),
        Ok(Admission::Wait(wait)) => Err(try_again_later(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many codes tried. Try again in {seconds} seconds.",
            wait,
        )),
        Err(error) => Err(internal(error)),
    }
}

/// `POST /settings/two-factor/disable`.
pub async fn disable(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    viewer: SignedIn,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Result<Response, WebError> {
    let attempt = match admit_code(&state, &viewer, peer, &headers).await {
        Ok(attempt) => attempt,
        Err(response) => return Ok(response),
    };
    let now = state.limits.clock().now();
    match two_factor::disable(
        &state.store,
        &state.vault,
        &Actor::user(&viewer.user),
        &viewer.user,
        &form.code,
        now,
    )
    .await
    {
        Ok(_) => {
            attempt.refund(&state.store).await?;
            Ok(redirect_with_flash(
                &state,
                SETTINGS_PATH,
                FlashKind::Done,
                "Two-factor authentication is off.",
            ))
        }
        Err(error) => code_error(&state, viewer, "disable", error).await,
    }
}

/// `POST /settings/two-factor/recovery-codes`: new codes, shown once.
pub async fn regenerate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    viewer: SignedIn,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Result<Response, WebError> {
    let attempt = match admit_code(&state, &viewer, peer, &headers).await {
        Ok(attempt) => attempt,
        Err(response) => return Ok(response),
    };
    let now = state.limits.clock().now();
    match two_factor::regenerate_recovery_codes(
        &state.store,
        &state.vault,
        &Actor::user(&viewer.user),
        &viewer.user,
        &form.code,
        now,
    )
    .await
    {
        Ok(codes) => {
            attempt.refund(&state.store).await?;
            let shown = Shown {
                recovery_codes: Some(&codes),
                ..Shown::default()
            };
            settings_page(&state, viewer, StatusCode::OK, shown).await
        }
        Err(error) => code_error(&state, viewer, "regenerate", error).await,
    }
}

#[derive(Deserialize)]
pub struct RequiredForm {
    required: String,
}

/// `POST /settings/two-factor/organizations/{id}`: an owner requires
/// two-factor sign-in in their organization, or stops; anyone else's post
/// is a 404 (they may not know the organization) or a 403 (a member).
pub async fn set_required(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RequiredForm>,
) -> Result<Response, WebError> {
    let organization = OrganizationId(id.parse::<i64>().map_err(|_| WebError::NotFound)?);
    let required = match form.required.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(WebError::Service(service::Error::Invalid(vec![
                credence_domain::ValidationError::new("required", "required must be true or false"),
            ])))
        }
    };
    match two_factor::set_required(
        &state.store,
        &Actor::user(&viewer.user),
        &viewer.user,
        organization,
        required,
    )
    .await
    {
        Ok(_) => Ok(redirect_with_flash(
            &state,
            SETTINGS_PATH,
            FlashKind::Done,
            if required {
                "Two-factor authentication is now required in the organization."
            } else {
                "Two-factor authentication is no longer required in the organization."
            },
        )),
        Err(service::Error::Conflict(message)) => {
            let mut chars = message.chars();
            let message = chars
                .next()
                .map(|first| format!("{}{}.", first.to_uppercase(), chars.as_str()))
                .unwrap_or_default();
            let shown = Shown {
                error: Some(("organization", message)),
                ..Shown::default()
            };
            settings_page(&state, viewer, StatusCode::CONFLICT, shown).await
        }
        Err(error) => Err(error.into()),
    }
}
