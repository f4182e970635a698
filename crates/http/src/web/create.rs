//! The **+ Create request** wizard (SPEC §4, §12): `GET /credential-requests/new`
//! shows the form, `POST` either re-renders it (search the catalog, show an
//! app's versions and modules, Select all, + Add app, remove an app) or sends
//! the request through `service::requests::create` and redirects to its
//! details, which show the link once (post-redirect-get: a refresh sends
//! nothing again; the link rides in a cookie sealed for the creator).
//!
//! Everything works without JavaScript: every step is a submit button whose
//! `action` value says what to do, and the form comes back with every value
//! entered. `credence.js` only saves round trips (the counters, Select all,
//! showing a chosen app's modules, Copy link). The rules (lengths, who may
//! ask whom, the terms) are the service's: its `ValidationError`s name a
//! field, and each is shown next to the field it names, with status 400.
//!
//! The first submit button of the form is row 1's "Search": pressing Enter
//! in a text field re-renders the form rather than sending a request.

use super::layout::Nav;
use super::session::{redirect_with_flash, FlashKind, SignedIn, WebError};
use super::team;
use super::CsrfForm;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, SameSite};
use credence_catalog::{App, AppVersion};
use credence_domain::{
    ConnectionName, Description, Note, OrgRole, RequestName, TeamRole, MAX_CREDENTIALS_PER_REQUEST,
};
use credence_service::requests::{
    self, CreateRequestInput, CredentialInput, NewUserInput, ProviderInput,
};
use credence_service::{self as service};
use credence_store::User;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// Apps shown in one row's select at most (a search narrows them).
const APPS_LISTED: usize = 200;

/// Whom the request is for: someone of the organization, or an outsider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecipientChoice {
    Member,
    External,
}

/// One app row of the form, as entered.
#[derive(Debug, Clone, Default)]
struct Row {
    search: String,
    app: String,
    version: String,
    /// `app@version` whose modules the form showed: the ticks belong to it.
    shown: String,
    modules: Vec<String>,
    note: String,
    connection: String,
}

/// The whole form, as entered.
#[derive(Debug, Clone)]
struct Draft {
    name: String,
    description: String,
    recipient: RecipientChoice,
    member: String,
    external_name: String,
    external_email: String,
    terms: bool,
    rows: Vec<Row>,
}

impl Draft {
    fn empty() -> Draft {
        Draft {
            name: String::new(),
            description: String::new(),
            recipient: RecipientChoice::Member,
            member: String::new(),
            external_name: String::new(),
            external_email: String::new(),
            terms: false,
            rows: vec![Row::default()],
        }
    }

    /// Reads the posted pairs (repeated keys for the ticked modules).
    fn from_pairs(pairs: &[(String, String)]) -> (Draft, String) {
        let mut fields: HashMap<&str, &str> = HashMap::new();
        let mut ticked: HashMap<&str, Vec<String>> = HashMap::new();
        for (key, value) in pairs {
            if let Some(row) = key.strip_prefix("modules_") {
                ticked.entry(row).or_default().push(value.clone());
            } else {
                fields.entry(key.as_str()).or_insert(value.as_str());
            }
        }
        let text = |key: &str| fields.get(key).map(|v| v.to_string()).unwrap_or_default();
        let count = fields
            .get("rows")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, MAX_CREDENTIALS_PER_REQUEST);
        let rows = (0..count)
            .map(|i| Row {
                search: text(&format!("app_search_{i}")),
                app: text(&format!("app_{i}")),
                version: text(&format!("version_{i}")),
                shown: text(&format!("shown_{i}")),
                modules: ticked.remove(i.to_string().as_str()).unwrap_or_default(),
                note: text(&format!("note_{i}")),
                connection: text(&format!("connection_{i}")),
            })
            .collect();
        let draft = Draft {
            name: text("name"),
            description: text("description"),
            recipient: if text("recipient") == "external" {
                RecipientChoice::External
            } else {
                RecipientChoice::Member
            },
            member: text("member"),
            external_name: text("external_name"),
            external_email: text("external_email"),
            terms: fields.contains_key("terms"),
            rows,
        };
        (draft, text("action"))
    }
}

/// The errors of a form: by the id of the field they belong to, and those
/// that belong to no field.
#[derive(Debug, Default)]
struct Errors {
    by_field: Vec<(String, String)>,
    general: Vec<String>,
}

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        let message = message.into();
        if !self
            .by_field
            .iter()
            .any(|(f, m)| *f == field && *m == message)
        {
            self.by_field.push((field, message));
        }
    }

    fn of(&self, field: &str) -> Vec<&str> {
        self.by_field
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
            .collect()
    }

    fn has(&self, field: &str) -> bool {
        self.by_field.iter().any(|(f, _)| f == field)
    }

    fn is_empty(&self) -> bool {
        self.by_field.is_empty() && self.general.is_empty()
    }
}

/// The form field (its element id) a service field name points at, and the
/// words for it: `credentials[1].description` → (`note_1`, "Note").
fn form_field(field: &str) -> Option<(String, &'static str)> {
    let simple = match field {
        "name" => Some(("name", "Name")),
        "description" => Some(("description", "Description")),
        "provider" => Some(("recipient", "Recipient")),
        "provider.providerMakeUserId" => Some(("member", "Person")),
        "provider.newUser.name" => Some(("external_name", "Name")),
        "provider.newUser.email" => Some(("external_email", "Email")),
        "termsAccepted" => Some(("terms", "Terms")),
        "credentials" => Some(("apps", "Apps")),
        _ => None,
    };
    if let Some((id, label)) = simple {
        return Some((id.to_string(), label));
    }
    let rest = field.strip_prefix("credentials[")?;
    let (index, part) = rest.split_once("].")?;
    let index: usize = index.parse().ok()?;
    let (prefix, label) = match part {
        "appName" => ("app", "App"),
        "appVersion" => ("version", "Version"),
        "appModules" => ("modules", "Modules"),
        "description" => ("note", "Note"),
        "nameOverride" => ("connection", "Connection name"),
        _ => return None,
    };
    Some((format!("{prefix}_{index}"), label))
}

/// A service message in the form's words: the field's API name becomes its label.
fn plain_words(field: &str, label: &str, message: &str) -> String {
    let last = field.rsplit('.').next().unwrap_or(field);
    let text = message.replace(field, label).replace(last, label);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => text,
    }
}

/// The people of the organization the viewer may pick: no guests (they are
/// outside the organization and are asked as such), not the viewer; a team
/// member (not admin) may ask only the members of the sending team.
async fn pickable_people(state: &AppState, viewer: &SignedIn) -> Result<Vec<User>, WebError> {
    let Some(team) = &viewer.team else {
        return Ok(Vec::new());
    };
    let mut db = state.store.db().await?;
    let team_role = db.team_role(team.team.id, viewer.user.id).await?;
    let people: Vec<User> =
        if team.role.manages_organization() || team_role == Some(TeamRole::Admin) {
            db.list_organization_members(team.organization.id)
                .await?
                .into_iter()
                .filter(|(_, role)| *role != OrgRole::Guest)
                .map(|(user, _)| user)
                .collect()
        } else {
            db.list_team_members(team.team.id)
                .await?
                .into_iter()
                .filter(|member| member.organization_role != OrgRole::Guest)
                .map(|member| member.user)
                .collect()
        };
    Ok(people
        .into_iter()
        .filter(|user| user.id != viewer.user.id)
        .collect())
}

/// The app and version a row names, if the catalog has them.
fn chosen<'a>(state: &'a AppState, row: &Row) -> Option<(&'a App, &'a AppVersion)> {
    let app = state.catalog.get(row.app.trim())?;
    let version = row
        .version
        .parse::<u32>()
        .ok()
        .and_then(|n| app.version(n))
        .unwrap_or_else(|| app.latest());
    Some((app, version))
}

fn shown_key(app: &App, version: &AppVersion) -> String {
    format!("{}@{}", app.key, version.version)
}

/// Applies a re-rendering action to the draft. Whatever the action, ticks
/// made for another app than the one now chosen are dropped, and a version
/// change keeps the ticks its modules share.
fn apply(state: &AppState, draft: &mut Draft, action: &str) {
    for row in &mut draft.rows {
        match chosen(state, row) {
            Some((app, version)) => {
                let shown_app = row.shown.split('@').next().unwrap_or("");
                if shown_app != app.key {
                    row.modules.clear();
                } else {
                    row.modules
                        .retain(|key| version.modules.iter().any(|m| m.key == *key));
                }
                row.version = version.version.to_string();
                row.shown = shown_key(app, version);
            }
            None => {
                row.modules.clear();
                row.shown.clear();
                row.version.clear();
            }
        }
    }
    let index = |prefix: &str| {
        action
            .strip_prefix(prefix)
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < draft.rows.len())
    };
    if action == "add_app" && draft.rows.len() < MAX_CREDENTIALS_PER_REQUEST {
        draft.rows.push(Row::default());
    } else if let Some(i) = index("select_all:") {
        if let Some((_, version)) = chosen(state, &draft.rows[i]) {
            draft.rows[i].modules = version.modules.iter().map(|m| m.key.clone()).collect();
        }
    } else if let Some(i) = index("remove:") {
        if draft.rows.len() > 1 {
            draft.rows.remove(i);
        }
    }
}

#[derive(Deserialize, Default)]
pub struct NewQuery {
    /// Narrows the first row's app list.
    q: Option<String>,
    /// Chooses the first row's app.
    app: Option<String>,
}

/// `GET /credential-requests/new`: the wizard, or the feature gate.
pub async fn form(
    State(state): State<AppState>,
    viewer: SignedIn,
    Query(query): Query<NewQuery>,
) -> Result<Response, WebError> {
    if viewer.team.is_none() {
        return Err(WebError::NotFound);
    }
    let (has_feature, latest) = team::feature_of(&state, &viewer.user).await?;
    if !has_feature {
        let body = team::feature_gate(&viewer, latest.as_ref());
        return Ok(viewer.page(&state, "Create request", Nav::Sent, body));
    }
    let mut draft = Draft::empty();
    draft.rows[0].search = query.q.unwrap_or_default().chars().take(100).collect();
    draft.rows[0].app = query.app.unwrap_or_default().chars().take(64).collect();
    apply(&state, &mut draft, "");
    let people = pickable_people(&state, &viewer).await?;
    let body = wizard(&state, &viewer, &draft, &people, &Errors::default());
    Ok(viewer.page(&state, "Create request", Nav::Sent, body))
}

/// `POST /credential-requests/new`: re-renders the form for any action but
/// `send`; `send` creates the request and shows its link.
pub async fn submit(
    State(state): State<AppState>,
    viewer: SignedIn,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let Some(team) = viewer.team.clone() else {
        return Err(WebError::NotFound);
    };
    let (has_feature, latest) = team::feature_of(&state, &viewer.user).await?;
    if !has_feature {
        let body = team::feature_gate(&viewer, latest.as_ref());
        return Ok(viewer.page_with(
            &state,
            StatusCode::FORBIDDEN,
            "Create request",
            Nav::Sent,
            body,
        ));
    }
    let (mut draft, action) = Draft::from_pairs(&pairs);
    // Which rows showed the modules of the app they now name: only those
    // ticks may be sent.
    let modules_shown: Vec<bool> = draft
        .rows
        .iter()
        .map(|row| chosen(&state, row).is_some_and(|(app, v)| row.shown == shown_key(app, v)))
        .collect();
    apply(&state, &mut draft, &action);
    let people = pickable_people(&state, &viewer).await?;
    if action != "send" {
        let body = wizard(&state, &viewer, &draft, &people, &Errors::default());
        return Ok(viewer.page(&state, "Create request", Nav::Sent, body));
    }

    let mut errors = Errors::default();
    for (i, row) in draft.rows.iter().enumerate() {
        if let Some((app, _)) = chosen(&state, row) {
            if !modules_shown[i] {
                errors.add(
                    format!("modules_{i}"),
                    format!(
                        "Choose the modules of {} (or Select all), then submit again.",
                        app.label
                    ),
                );
            } else if row.modules.is_empty() {
                errors.add(
                    format!("modules_{i}"),
                    format!("Tick at least one module of {}, or Select all.", app.label),
                );
            }
        }
    }
    if draft.recipient == RecipientChoice::Member && draft.member.trim().is_empty() {
        errors.add("member", "Choose the person to ask.");
    }
    let input = CreateRequestInput {
        name: Some(draft.name.clone()),
        team_id: Some(team.team.id.0),
        description: Some(draft.description.clone()),
        credentials: Some(
            draft
                .rows
                .iter()
                .enumerate()
                .map(|(i, row)| CredentialInput {
                    app_name: Some(row.app.clone()),
                    app_modules: Some(if modules_shown[i] {
                        row.modules.clone()
                    } else {
                        Vec::new()
                    }),
                    app_version: (!row.version.is_empty())
                        .then(|| Value::String(row.version.clone())),
                    name_override: Some(row.connection.clone()).filter(|c| !c.trim().is_empty()),
                    description: Some(row.note.clone()),
                })
                .collect(),
        ),
        provider: Some(match draft.recipient {
            RecipientChoice::Member => ProviderInput {
                provider_make_user_id: Some(Value::String(draft.member.clone())),
                new_user: None,
            },
            RecipientChoice::External => ProviderInput {
                provider_make_user_id: None,
                new_user: Some(NewUserInput {
                    name: Some(draft.external_name.clone()),
                    email: Some(draft.external_email.clone()),
                }),
            },
        }),
        terms_accepted: Some(draft.terms),
        ..CreateRequestInput::default()
    };
    if !draft.terms {
        errors.add(
            "terms",
            "Tick the terms and conditions to send the request.",
        );
    }
    // The service checks everything again, and nothing is stored unless all is well.
    let status = match requests::create(&state.ctx(), &viewer.user, input).await {
        Ok(created) if errors.is_empty() => {
            // Post-redirect-get: the details show the link once, from a sealed cookie.
            let sealed = service::secrets::seal_shown_link(
                &state.vault,
                created.request.id,
                viewer.user.id,
                &created.public_uri,
            )?;
            let mut response = redirect_with_flash(
                &state,
                &format!("/credential-requests/{}", created.request.id),
                FlashKind::Done,
                "Request sent.",
            );
            let cookie = Cookie::build((state.settings.cookie_name(NEW_LINK_COOKIE), sealed))
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(state.settings.secure_cookies)
                .path("/")
                .max_age(time::Duration::seconds(300))
                .build();
            if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            return Ok(response);
        }
        Ok(created) => {
            // Cannot happen (the service refuses what the form refuses), but
            // were it to, the request must not stay behind the user's back.
            service::requests::delete(&state.ctx(), &viewer.user, created.request.id, true).await?;
            StatusCode::BAD_REQUEST
        }
        Err(service::Error::Invalid(problems)) => {
            for problem in problems {
                match form_field(&problem.field) {
                    Some((id, _)) if errors.has(&id) => {}
                    Some((id, label)) => {
                        errors.add(id, plain_words(&problem.field, label, &problem.message))
                    }
                    None => errors.general.push(problem.message),
                }
            }
            StatusCode::BAD_REQUEST
        }
        Err(service::Error::Forbidden(message)) => {
            errors.general.push(message);
            StatusCode::FORBIDDEN
        }
        Err(service::Error::NotFound(message)) => {
            errors.general.push(message);
            StatusCode::NOT_FOUND
        }
        Err(error) => return Err(error.into()),
    };
    let body = wizard(&state, &viewer, &draft, &people, &errors);
    Ok(viewer.page_with(&state, status, "Create request", Nav::Sent, body))
}

/// The field's errors as `.field-error` paragraphs, with ids for `aria-describedby`.
fn field_errors(errors: &Errors, field: &str) -> Markup {
    html! {
        @for (n, message) in errors.of(field).iter().enumerate() {
            p.field-error id=(format!("{field}-error-{n}")) { (message) }
        }
    }
}

/// `aria-describedby` for a field: its hint and its errors.
fn described_by(errors: &Errors, field: &str, hint: Option<&str>) -> Option<String> {
    let mut ids: Vec<String> = hint.map(|h| vec![h.to_string()]).unwrap_or_default();
    ids.extend((0..errors.of(field).len()).map(|n| format!("{field}-error-{n}")));
    (!ids.is_empty()).then(|| ids.join(" "))
}

fn invalid(errors: &Errors, field: &str) -> Option<&'static str> {
    errors.has(field).then_some("true")
}

/// The wizard: request, recipient, apps, terms.
fn wizard(
    state: &AppState,
    viewer: &SignedIn,
    draft: &Draft,
    people: &[User],
    errors: &Errors,
) -> Markup {
    let organization = viewer
        .team
        .as_ref()
        .map(|t| t.organization.name.as_str())
        .unwrap_or("the organization");
    let manages = viewer
        .team
        .as_ref()
        .is_some_and(|t| t.role.manages_organization());
    let count = draft.description.chars().count();
    html! {
        h1 { "Create a credential request" }
        @if !errors.is_empty() {
            div.card.error-summary role="alert" aria-labelledby="error-summary-heading" {
                h2 id="error-summary-heading" { "The request was not sent" }
                ul {
                    @for message in &errors.general { li { (message) } }
                    @for (field, message) in &errors.by_field {
                        li { a href=(format!("#{field}")) { (message) } }
                    }
                }
            }
        }
        form.wizard method="post" action="/credential-requests/new" novalidate {
            input type="hidden" name="csrf_token" value=(viewer.csrf);
            input type="hidden" name="rows" value=(draft.rows.len());
            section.card aria-labelledby="step-request" {
                h2 id="step-request" { "1. The request" }
                label for="name" { "Name" }
                input id="name" name="name" type="text" maxlength=(RequestName::MAX) required value=(draft.name)
                    aria-invalid=[invalid(errors, "name")] aria-describedby=[described_by(errors, "name", None)];
                (field_errors(errors, "name"))
                label for="description" { "Description " span.muted { "(optional)" } }
                textarea id="description" name="description" maxlength=(Description::MAX) data-limit=(Description::MAX)
                    aria-invalid=[invalid(errors, "description")]
                    aria-describedby=[described_by(errors, "description", Some("description-count"))] { (draft.description) }
                p.hint id="description-count" aria-live="polite" { (count) "/" (Description::MAX) }
                (field_errors(errors, "description"))
            }
            section.card aria-labelledby="step-recipient" {
                h2 id="step-recipient" { "2. Who is asked" }
                fieldset id="recipient" aria-describedby=[described_by(errors, "recipient", None)] {
                    legend { "Recipient" }
                    (field_errors(errors, "recipient"))
                    label.check for="recipient-member" {
                        input type="radio" id="recipient-member" name="recipient" value="member" checked[draft.recipient == RecipientChoice::Member];
                        "Part of " (organization)
                    }
                    div.indent {
                        label for="member" { "Person" }
                        select id="member" name="member" aria-invalid=[invalid(errors, "member")] aria-describedby=[described_by(errors, "member", None)] {
                            option value="" { "Choose a person" }
                            @for person in people {
                                option value=(person.id.0) selected[draft.member == person.id.0.to_string()] { (person.name) " (" (person.email) ")" }
                            }
                        }
                        (field_errors(errors, "member"))
                    }
                    label.check for="recipient-external" {
                        input type="radio" id="recipient-external" name="recipient" value="external" checked[draft.recipient == RecipientChoice::External];
                        "Not part of " (organization)
                    }
                    div.indent {
                        @if !manages { p.hint id="external-hint" { "Only organization admins and owners may ask people outside the organization." } }
                        p.hint { "They are invited to join as a guest and go straight to the request." }
                        label for="external_name" { "Their name" }
                        input id="external_name" name="external_name" type="text" maxlength="100" autocomplete="off" value=(draft.external_name)
                            aria-invalid=[invalid(errors, "external_name")] aria-describedby=[described_by(errors, "external_name", None)];
                        (field_errors(errors, "external_name"))
                        label for="external_email" { "Their email" }
                        input id="external_email" name="external_email" type="email" maxlength="254" autocomplete="off" value=(draft.external_email)
                            aria-invalid=[invalid(errors, "external_email")] aria-describedby=[described_by(errors, "external_email", None)];
                        (field_errors(errors, "external_email"))
                    }
                }
            }
            section.card aria-labelledby="step-apps" id="apps" {
                h2 id="step-apps" { "3. Apps" }
                (field_errors(errors, "apps"))
                @for (i, row) in draft.rows.iter().enumerate() {
                    (app_row(state, draft, i, row, errors))
                }
                @if draft.rows.len() < MAX_CREDENTIALS_PER_REQUEST {
                    button.secondary type="submit" name="action" value="add_app" { "+ Add app" }
                } @else {
                    p.hint { "A request asks for at most " (MAX_CREDENTIALS_PER_REQUEST) " apps." }
                }
            }
            section.card aria-labelledby="step-terms" {
                h2 id="step-terms" { "4. Send" }
                label.check for="terms" {
                    input type="checkbox" id="terms" name="terms" value="yes" checked[draft.terms]
                        aria-invalid=[invalid(errors, "terms")] aria-describedby=[described_by(errors, "terms", None)];
                    "I agree to the terms and conditions: the recipient's credentials are used only as the notes say."
                }
                (field_errors(errors, "terms"))
                button type="submit" name="action" value="send" { "Submit request" }
            }
        }
    }
}

/// One app of the form: search, app, version, modules, note, connection name.
fn app_row(state: &AppState, draft: &Draft, i: usize, row: &Row, errors: &Errors) -> Markup {
    let needle = row.search.trim().to_lowercase();
    let picked = chosen(state, row);
    let mut apps: Vec<&App> = state
        .catalog
        .apps()
        .filter(|app| {
            needle.is_empty()
                || app.label.to_lowercase().contains(&needle)
                || app.key.contains(&needle)
                || picked.is_some_and(|(p, _)| p.key == app.key)
        })
        .collect();
    apps.sort_by_key(|app| app.label.to_lowercase());
    let shown_all = apps.len() <= APPS_LISTED;
    apps.truncate(APPS_LISTED);
    let note_count = row.note.chars().count();
    let app_field = format!("app_{i}");
    let version_field = format!("version_{i}");
    let modules_field = format!("modules_{i}");
    let note_field = format!("note_{i}");
    let connection_field = format!("connection_{i}");
    let default_connection = picked
        .map(|(app, _)| {
            RequestName::parse("name", &draft.name)
                .map(|n| {
                    ConnectionName::default_for(&n, &app.label)
                        .as_str()
                        .to_string()
                })
                .unwrap_or_else(|_| format!("<Request name> — {}", app.label))
        })
        .unwrap_or_else(|| "<Request name> — <App>".to_string());
    html! {
        fieldset.app-row id=(format!("app-row-{i}")) {
            legend { "App " (i + 1) @if let Some((app, _)) = picked { ": " (app.label) } }
            div.search-row {
                div {
                    label for=(format!("app_search_{i}")) { "Search the catalog" }
                    input id=(format!("app_search_{i}")) name=(format!("app_search_{i}")) type="search" maxlength="100" value=(row.search);
                }
                button.secondary.small type="submit" name="action" value=(format!("search:{i}")) { "Search" }
            }
            label for=(app_field) { "App" }
            select id=(app_field) name=(app_field) data-refresh=(format!("show-{i}"))
                aria-invalid=[invalid(errors, &app_field)] aria-describedby=[described_by(errors, &app_field, None)] {
                option value="" { @if apps.is_empty() { "No app matches the search" } @else { "Choose an app" } }
                @for app in &apps {
                    option value=(app.key) selected[picked.is_some_and(|(p, _)| p.key == app.key)] { (app.label) }
                }
            }
            @if !shown_all { p.hint { "Showing the first " (APPS_LISTED) "; search to narrow the list." } }
            (field_errors(errors, &app_field))
            button.secondary.small id=(format!("show-{i}")) type="submit" name="action" value=(format!("show:{i}")) {
                "Show versions and modules"
            }
            @if let Some((app, version)) = picked {
                input type="hidden" name=(format!("shown_{i}")) value=(shown_key(app, version));
                label for=(version_field) { "Version" }
                select id=(version_field) name=(version_field) data-refresh=(format!("show-{i}"))
                    aria-invalid=[invalid(errors, &version_field)] aria-describedby=[described_by(errors, &version_field, None)] {
                    @for v in app.versions.iter().rev() {
                        option value=(v.version) selected[v.version == version.version] {
                            "v" (v.version) @if v.version == app.latest().version { " (latest)" }
                        }
                    }
                }
                (field_errors(errors, &version_field))
                fieldset.modules id=(modules_field) aria-describedby=[described_by(errors, &modules_field, None)] {
                    legend { "Modules of " (app.label) }
                    (field_errors(errors, &modules_field))
                    button.secondary.small type="submit" name="action" value=(format!("select_all:{i}")) data-select-all=(modules_field) {
                        "Select all"
                    }
                    @for module in &version.modules {
                        @let id = format!("module-{i}-{}", module.key);
                        label.check for=(id) {
                            input type="checkbox" id=(id) name=(modules_field) value=(module.key)
                                checked[row.modules.contains(&module.key)];
                            (module.label) " " span.muted { "(" (format!("{:?}", module.access).to_lowercase()) ")" }
                        }
                    }
                }
            }
            label for=(note_field) { "Note " span.muted { "(optional: why and how it will be used)" } }
            textarea id=(note_field) name=(note_field) maxlength=(Note::MAX) data-limit=(Note::MAX)
                aria-invalid=[invalid(errors, &note_field)]
                aria-describedby=[described_by(errors, &note_field, Some(&format!("{note_field}-count")))] { (row.note) }
            p.hint id=(format!("{note_field}-count")) aria-live="polite" { (note_count) "/" (Note::MAX) }
            (field_errors(errors, &note_field))
            label for=(connection_field) { "Connection name " span.muted { "(optional)" } }
            input id=(connection_field) name=(connection_field) type="text" maxlength=(ConnectionName::MAX) value=(row.connection)
                aria-invalid=[invalid(errors, &connection_field)]
                aria-describedby=[described_by(errors, &connection_field, Some(&format!("{connection_field}-hint")))];
            p.hint id=(format!("{connection_field}-hint")) { "Default: " (default_connection) }
            (field_errors(errors, &connection_field))
            @if draft.rows.len() > 1 {
                button.secondary.small type="submit" name="action" value=(format!("remove:{i}")) { "Remove this app" }
            }
        }
    }
}

/// The cookie that carries a new request's link, sealed for its creator,
/// from the wizard's answer to the one details page that shows it.
pub const NEW_LINK_COOKIE: &str = "credence_new_link";

/// After sending (on the request's details, once): the link for the
/// recipient, with Copy link.
pub fn sent_card(request: &credence_store::CredentialRequest, link: &str) -> Markup {
    html! {
        section.card aria-labelledby="link-heading" {
            h2 id="link-heading" { "Request sent" }
            @if request.recipient_kind == "external" {
                p { "We emailed " (request.recipient_name) " (" (request.recipient_email) ") an invitation to join as a guest; it leads straight to the request." }
            } @else {
                p { "We emailed " (request.recipient_name) " (" (request.recipient_email) ") a link to review the request." }
            }
            label for="request-link" { "Link to the request" }
            div.copy-row {
                input id="request-link" type="text" readonly value=(link) aria-describedby="request-link-hint";
                button.secondary type="button" data-copy="request-link" hidden { "Copy link" }
            }
            p.hint id="request-link-hint" { "Only " (request.recipient_name) ", signed in, can use it. Select it to copy it." }
            p id="request-link-status" role="status" aria-live="polite" {}
            p.hint { "This link is shown only now: Credence keeps only its hash." }
            p { a.button.secondary href="/credential-requests/new" { "Create another" } }
        }
    }
}
