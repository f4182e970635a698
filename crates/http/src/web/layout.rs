//! The app shell every signed-in page is drawn in: a skip link, the sidebar
//! (the team switcher, the navigation of SPEC §12, who is signed in, sign
//! out) and the page with its flash message. Pieces pages share live here
//! too: state labels, the hover-and-focus tip.

use super::pages::{SCRIPT_PATH, STYLESHEET_PATH};
use super::session::{FlashKind, SignedIn};
use axum::response::Html;
use maud::{html, Markup, DOCTYPE};

/// Which entry of the sidebar a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Home,
    Connections,
    Sent,
    Received,
    Tracker,
    Audit,
    Team,
    Settings,
}

impl Nav {
    const ENTRIES: [(Nav, &'static str, &'static str); 8] = [
        (Nav::Home, "Overview", "/"),
        (Nav::Connections, "Connections", "/connections"),
        (Nav::Sent, "Sent", "/credential-requests/sent"),
        (Nav::Received, "Received", "/credential-requests/received"),
        (Nav::Tracker, "Tracker", "/tracker"),
        (Nav::Audit, "Audit log", "/audit"),
        (Nav::Team, "Team", "/team"),
        (Nav::Settings, "Settings", "/settings"),
    ];

    fn link(self, current: Nav) -> Markup {
        let (_, label, href) = Self::ENTRIES
            .iter()
            .find(|(nav, _, _)| *nav == self)
            .expect("every entry is listed");
        html! {
            li { a href=(href) aria-current=[(self == current).then_some("page")] { (label) } }
        }
    }
}

/// A whole page: `<head>` and `body`, no shell (sign-in, problems).
pub fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Credence" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
                script src=(SCRIPT_PATH) defer {}
            }
            body { (body) }
        }
    }
}

/// A signed-in page in the shell.
pub fn app(viewer: &SignedIn, title: &str, nav: Nav, body: Markup) -> Html<String> {
    let acts_for_team = !viewer.teams.is_empty();
    let page = document(
        title,
        html! {
            a.skip href="#content" { "Skip to content" }
            div.shell {
                aside.sidebar {
                    div.brand { "Credence" }
                    (switcher(viewer))
                    nav aria-label="Main" {
                        ul {
                            (Nav::Home.link(nav))
                            li {
                                span.group { "Credentials" }
                                ul {
                                    @if acts_for_team { (Nav::Connections.link(nav)) }
                                    li {
                                        span.group { "Credential requests" }
                                        ul {
                                            @if acts_for_team { (Nav::Sent.link(nav)) }
                                            (Nav::Received.link(nav))
                                        }
                                    }
                                }
                            }
                            @if acts_for_team {
                                (Nav::Tracker.link(nav))
                                (Nav::Audit.link(nav))
                                (Nav::Team.link(nav))
                            }
                            (Nav::Settings.link(nav))
                        }
                    }
                    div.who {
                        p {
                            "Signed in as " strong { (viewer.user.name) } br; (viewer.user.email)
                            @if let Some(team) = &viewer.team { br; (team.role) " of " (team.organization.name) }
                        }
                        form method="post" action="/sign-out" {
                            input type="hidden" name="csrf_token" value=(viewer.csrf);
                            button.secondary.small type="submit" { "Sign out" }
                        }
                    }
                }
                main.content id="content" tabindex="-1" {
                    @if let Some(flash) = &viewer.flash {
                        @let class = if flash.kind == FlashKind::Failed { "flash bad" } else { "flash" };
                        p class=(class) role="status" { (flash.message) }
                    }
                    (body)
                }
            }
        },
    );
    Html(page.into_string())
}

/// The organization/team switcher: a form (works without JavaScript).
fn switcher(viewer: &SignedIn) -> Markup {
    let Some(current) = &viewer.team else {
        return html! {};
    };
    if viewer.teams.len() == 1 {
        return html! {
            p.muted { (current.organization.name) " · " (current.team.name) }
        };
    }
    html! {
        form method="post" action="/team" {
            input type="hidden" name="csrf_token" value=(viewer.csrf);
            input type="hidden" name="back" value=(viewer.path);
            label for="team-switcher" { "Team" }
            select id="team-switcher" name="team" {
                @for choice in &viewer.teams {
                    option value=(choice.team.id.0) selected[choice.team.id == current.team.id] {
                        (choice.organization.name) " · " (choice.team.name)
                    }
                }
            }
            button.secondary.small type="submit" { "Switch" }
        }
    }
}

/// A state's or status's words: `partially_authorized` → "Partially authorized".
pub fn state_text(value: &str) -> String {
    let words = value.replace('_', " ");
    let mut chars = words.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

/// A state label (a credential's state or a request's status), coloured by
/// its CSS class and readable as text.
pub fn state_label(value: &str) -> Markup {
    html! { span class=(format!("state {value}")) { (state_text(value)) } }
}

/// `label` with `body` shown on hover and on keyboard focus.
pub fn tip(label: Markup, body: Markup) -> Markup {
    html! {
        span.tip tabindex="0" {
            (label)
            span.tip-body role="tooltip" { (body) }
        }
    }
}

/// The modules of `version` among `granted` (module keys, `*` for all), each
/// with its scopes and operations shown on hover and keyboard focus.
pub fn granted_modules(version: &credence_catalog::AppVersion, granted: &[String]) -> Markup {
    html! {
        ul.modules {
            @for module in version.modules.iter().filter(|m| granted.iter().any(|k| k == "*" || *k == m.key)) {
                li {
                    (tip(
                        html! { (module.label) " — " (format!("{:?}", module.access).to_lowercase()) },
                        html! {
                            p { "Permissions of " (module.label) ":" }
                            ul {
                                @for scope in &module.scopes { li { code { (scope) } } }
                                @for operation in &module.operations { li { (operation.to_string()) } }
                            }
                        },
                    ))
                }
            }
        }
    }
}
