//! Who is looking at a page of the app: the `SignedIn` extractor (the user,
//! their organizations and the teams they may act for, the team chosen in the
//! switcher, the form token and the flash message), `WebError` for a page that
//! failed, and flash messages carried over a redirect.
//!
//! The chosen team is a cookie holding a team id; it is only a preference:
//! every page checks it against the teams the user may see, and falls back to
//! the first of those. The flash message is a short-lived cookie read and
//! removed by the next page shown; its text is escaped like any other.

use super::{csrf, internal, problem, requests::sign_in_first, session_cookie_name};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use credence_domain::{OrgRole, TeamId, TeamRole};
use credence_service::{self as service, access, auth};
use credence_store::{Membership, Organization, Team, User};
use maud::Markup;

pub const TEAM_COOKIE: &str = "credence_team";
pub const FLASH_COOKIE: &str = "credence_flash";
/// A flash message is cut to this many characters.
const FLASH_LIMIT: usize = 300;

/// A team the user may act for, with its organization and the user's role there.
#[derive(Debug, Clone)]
pub struct TeamChoice {
    pub team: Team,
    pub organization: Organization,
    pub role: OrgRole,
}

/// Whether a flash message reports a success or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    Done,
    Failed,
}

#[derive(Debug, Clone)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
}

/// The signed-in user of a page. Without a session, the page answers a
/// redirect to sign-in that comes back to the same path.
pub struct SignedIn {
    pub user: User,
    pub memberships: Vec<Membership>,
    /// The teams whose requests and connections the user may act on, in
    /// organization then team order.
    pub teams: Vec<TeamChoice>,
    /// The team the switcher shows; `None` when the user acts for no team
    /// (a guest, or a member of no team).
    pub team: Option<TeamChoice>,
    /// Whether the user manages `team`'s settings (its webhooks): an owner or
    /// admin of its organization, or an admin of the team.
    pub manages_team: bool,
    pub csrf: String,
    pub flash: Option<Flash>,
    /// The path of the page (for the switcher to come back to).
    pub path: String,
    jar: CookieJar,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().chars().take(512).collect::<String>())
            .unwrap_or_else(|| "/".to_string());
        let user = match jar.get(&session_cookie_name(state)) {
            Some(cookie) if cookie.value().len() <= 128 => {
                auth::session_user(&state.store, cookie.value())
                    .await
                    .map_err(internal)?
            }
            _ => None,
        };
        let Some(user) = user else {
            return Err(sign_in_first(&path));
        };
        // An organization of theirs requires two-factor sign-in and they
        // have none: its enrolment before any other page.
        if let Some(redirect) = super::two_factor::gate(state, &user, &path)
            .await
            .map_err(internal)?
        {
            return Err(redirect);
        }
        let (memberships, teams) = teams_of(state, &user).await.map_err(internal)?;
        let chosen = jar
            .get(&state.settings.cookie_name(TEAM_COOKIE))
            .and_then(|c| c.value().parse::<i64>().ok());
        let team = teams
            .iter()
            .find(|t| Some(t.team.id.0) == chosen)
            .or(teams.first())
            .cloned();
        let manages_team = manages(state, &user, team.as_ref())
            .await
            .map_err(internal)?;
        let flash = jar
            .get(&state.settings.cookie_name(FLASH_COOKIE))
            .and_then(|c| parse_flash(c.value()));
        let (jar, csrf) = csrf::ensure(state, jar);
        Ok(SignedIn {
            user,
            memberships,
            teams,
            team,
            manages_team,
            csrf,
            flash,
            path,
            jar,
        })
    }
}

impl SignedIn {
    /// The page in the app shell, 200.
    pub fn page(
        self,
        state: &AppState,
        title: &str,
        nav: super::layout::Nav,
        body: Markup,
    ) -> Response {
        self.page_with(state, StatusCode::OK, title, nav, body)
    }

    /// The page in the app shell with `status` (a form shown again with its
    /// errors answers 400 or 409), removing the flash message it shows.
    pub fn page_with(
        self,
        state: &AppState,
        status: StatusCode,
        title: &str,
        nav: super::layout::Nav,
        body: Markup,
    ) -> Response {
        let html = super::layout::app(&self, title, nav, body);
        let jar = if self.flash.is_some() {
            let name = state.settings.cookie_name(FLASH_COOKIE);
            self.jar.remove(Cookie::build(name).path("/").build())
        } else {
            self.jar
        };
        (status, jar, html).into_response()
    }
}

/// The user's memberships and the teams they may act for: every team of an
/// organization they own or administer, their own teams in one where they
/// are a member, none where they are a guest.
async fn teams_of(
    state: &AppState,
    user: &User,
) -> Result<(Vec<Membership>, Vec<TeamChoice>), service::Error> {
    let mut db = state.store.db().await?;
    let memberships = db.list_memberships(user.id).await?;
    let mut teams = Vec::new();
    for membership in &memberships {
        let visible = access::sender_teams(&mut db, user, membership.organization.id).await?;
        if visible.is_empty() {
            continue;
        }
        for team in db.list_teams(membership.organization.id).await? {
            if visible.contains(&team.id) {
                teams.push(TeamChoice {
                    team,
                    organization: membership.organization.clone(),
                    role: membership.role,
                });
            }
        }
    }
    Ok((memberships, teams))
}

/// Whether `user` manages the settings of `team`: an owner or admin of its
/// organization (no query), or an admin of the team itself.
async fn manages(
    state: &AppState,
    user: &User,
    team: Option<&TeamChoice>,
) -> Result<bool, service::Error> {
    Ok(match team {
        None => false,
        Some(choice) if choice.role.manages_organization() => true,
        Some(choice) => {
            state
                .store
                .db()
                .await?
                .team_role(choice.team.id, user.id)
                .await?
                == Some(TeamRole::Admin)
        }
    })
}

fn parse_flash(value: &str) -> Option<Flash> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(value).ok()?;
    let kind = match pairs.iter().find(|(k, _)| k == "k")?.1.as_str() {
        "done" => FlashKind::Done,
        "failed" => FlashKind::Failed,
        _ => return None,
    };
    let message = pairs.into_iter().find(|(k, _)| k == "m")?.1;
    Some(Flash {
        kind,
        message: message.chars().take(FLASH_LIMIT).collect(),
    })
}

/// A 303 to `to` that shows `message` on the next page (after a form post).
pub fn redirect_with_flash(state: &AppState, to: &str, kind: FlashKind, message: &str) -> Response {
    let kind = match kind {
        FlashKind::Done => "done",
        FlashKind::Failed => "failed",
    };
    let message: String = message.chars().take(FLASH_LIMIT).collect();
    let value =
        serde_urlencoded::to_string([("k", kind), ("m", message.as_str())]).unwrap_or_default();
    let cookie = Cookie::build((state.settings.cookie_name(FLASH_COOKIE), value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.secure_cookies)
        .path("/")
        .max_age(time::Duration::seconds(120))
        .build();
    let mut response = Redirect::to(to).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The team cookie choosing `team` (checked by the caller).
pub fn team_cookie(state: &AppState, team: TeamId) -> Cookie<'static> {
    Cookie::build((state.settings.cookie_name(TEAM_COOKIE), team.0.to_string()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.secure_cookies)
        .path("/")
        .max_age(time::Duration::days(365))
        .build()
}

/// A page that failed: the service's error as a page a person can act on.
/// What the viewer may not know exists is a 404, like what does not exist.
#[derive(Debug)]
pub enum WebError {
    NotFound,
    Service(service::Error),
}

impl From<service::Error> for WebError {
    fn from(error: service::Error) -> Self {
        WebError::Service(error)
    }
}

impl From<credence_store::Error> for WebError {
    fn from(error: credence_store::Error) -> Self {
        WebError::Service(error.into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let not_found = || {
            problem(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or you may not see it. Check the link, or sign in as someone who may.",
            )
        };
        match self {
            WebError::NotFound | WebError::Service(service::Error::NotFound(_)) => not_found(),
            WebError::Service(service::Error::Forbidden(message)) => {
                problem(StatusCode::FORBIDDEN, "Not allowed", &message)
            }
            WebError::Service(service::Error::Conflict(message)) => {
                problem(StatusCode::CONFLICT, "Not possible now", &message)
            }
            WebError::Service(service::Error::Invalid(problems)) => problem(
                StatusCode::BAD_REQUEST,
                "Check the form",
                &problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            WebError::Service(error) => internal(error),
        }
    }
}
