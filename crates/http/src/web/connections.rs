//! The current team's connections (SPEC §5): the list (app, name, state,
//! permissions, last use), Add connection (an app's fields, verified by the
//! app before they are accepted, or its OAuth consent, with the advanced
//! settings `team_connections::add` takes: an own OAuth client and extra
//! scopes), and a connection's page: rename, verify, reauthorize (OAuth, the
//! confirmation page of `oauth.rs`), delete after a confirmation that names
//! who used it lately.
//!
//! A refusal is the form again with status 400 and the message next to the
//! field; non-secret values are kept, secrets never come back into a page.
//! A connection the viewer may not see is a 404, like one that does not exist.

use super::layout::{self, Nav};
use super::received::sentence;
use super::session::{redirect_with_flash, FlashKind, SignedIn, WebError};
use super::CsrfForm;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use credence_catalog::{App, AppVersion, AuthKind};
use credence_domain::ValidationError;
use credence_provider::SecretJson;
use credence_service::team_connections::{self, Added, NewOwnConnection};
use credence_service::{self as service, access, checks, connections as service_connections};
use credence_store::Connection;
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The form field prefix of an app's fields (`field.apiKey`).
const FIELD: &str = "field.";

/// Messages by form field (`""` for the form as a whole).
type Errors = BTreeMap<String, String>;

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn app_label<'a>(state: &'a AppState, key: &'a str) -> &'a str {
    state
        .catalog
        .get(key)
        .map(|a| a.label.as_str())
        .unwrap_or(key)
}

/// A connection's state label: valid (green) or invalid (red).
fn connection_state(connection: &Connection) -> Markup {
    if connection.state == "valid" {
        html! { span class="state authorized" { "Valid" } }
    } else {
        html! { span class="state invalid" { (layout::state_text(&connection.state)) } }
    }
}

/// The modules a connection holds, each with its permissions on hover and
/// focus, and its OAuth scopes.
fn permissions(state: &AppState, connection: &Connection) -> Markup {
    let modules = json_list(&connection.modules);
    let scopes = json_list(&connection.scopes);
    let version = state
        .catalog
        .get(&connection.app_key)
        .and_then(|a| a.version(connection.app_version as u32));
    html! {
        @if let Some(version) = version {
            (layout::granted_modules(version, &modules))
        }
        @if !scopes.is_empty() {
            p.muted { "Scopes: " @for (i, scope) in scopes.iter().enumerate() { @if i > 0 { " " } code { (scope) } } }
        }
    }
}

/// `GET /connections`: the current team's connections.
pub async fn list(State(state): State<AppState>, viewer: SignedIn) -> Result<Response, WebError> {
    let team = viewer.team.clone().ok_or(WebError::NotFound)?;
    let mut db = state.store.db().await?;
    let connections = db.list_connections(team.team.id).await?;
    let mut last_used = Vec::with_capacity(connections.len());
    for connection in &connections {
        let last = db.list_usage_of_connection(connection.id, 1).await?;
        last_used.push(last.first().map(|u| u.occurred_at));
    }
    drop(db);
    let body = html! {
        div.topline {
            h1 { "Connections" }
            a.button href="/connections/new" { "+ Add connection" }
        }
        @if connections.is_empty() {
            div.card { p.empty { "The team " (team.team.name) " has no connections yet. " a href="/connections/new" { "Add one" } " or ask a client with a credential request." } }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { (connections.len()) " connections of " (team.team.name) }
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "App" } th scope="col" { "State" }
                        th scope="col" { "Permissions" } th scope="col" { "Last used" }
                    } }
                    tbody {
                        @for (connection, last) in connections.iter().zip(&last_used) {
                            tr {
                                td { a href=(format!("/connections/{}", connection.id)) { (connection.name) } }
                                td { (app_label(&state, &connection.app_key)) }
                                td { (connection_state(connection)) }
                                td { (permissions(&state, connection)) }
                                td { @match last { Some(at) => { (at.format("%Y-%m-%d %H:%M")) }, None => { span.muted { "Never" } } } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(viewer.page(&state, "Connections", Nav::Connections, body))
}

#[derive(Deserialize)]
pub struct NewQuery {
    app: Option<String>,
}

/// `GET /connections/new[?app=key]`: pick an app, then its form.
pub async fn new_page(
    State(state): State<AppState>,
    viewer: SignedIn,
    Query(query): Query<NewQuery>,
) -> Result<Response, WebError> {
    viewer.team.as_ref().ok_or(WebError::NotFound)?;
    let chosen = query.app.as_deref().and_then(|key| state.catalog.get(key));
    let body = match chosen {
        Some(app) => add_form(&viewer, app, &Errors::new(), &Kept::default()),
        None => pick_app(&state, query.app.is_some()),
    };
    Ok(viewer.page(&state, "Add connection", Nav::Connections, body))
}

fn pick_app(state: &AppState, unknown: bool) -> Markup {
    html! {
        h1 { "Add connection" }
        form.card method="get" action="/connections/new" {
            label for="app" { "App" }
            select id="app" name="app" required aria-invalid=[unknown.then_some("true")]
                aria-describedby=[unknown.then_some("app-error")] {
                @for app in state.catalog.apps() {
                    option value=(app.key) { (app.label) }
                }
            }
            @if unknown { p.field-error id="app-error" { "There is no such app; pick one of the list." } }
            button type="submit" { "Continue" }
        }
    }
}

/// What a refused add form shows again (never a secret).
#[derive(Default)]
struct Kept {
    name: Option<String>,
    modules: Option<Vec<String>>,
    client_id: Option<String>,
    scopes: Option<String>,
    fields: BTreeMap<String, String>,
}

/// A labelled input with its error next to it.
fn error_of<'a>(errors: &'a Errors, field: &str) -> Option<&'a String> {
    errors.get(field)
}

fn field_error(id: &str, error: Option<&String>) -> Markup {
    html! { @if let Some(message) = error { p.field-error id=(format!("{id}-error")) { (message) } } }
}

fn add_form(viewer: &SignedIn, app: &App, errors: &Errors, kept: &Kept) -> Markup {
    let version: &AppVersion = app.latest();
    let oauth = version.auth.kind() == AuthKind::Oauth2;
    let default_name = format!("My {} connection", app.label);
    let name = kept.name.as_deref().unwrap_or(&default_name);
    let chosen = |key: &str| {
        kept.modules
            .as_ref()
            .is_none_or(|m| m.iter().any(|k| k == key || k == "*"))
    };
    let invalid = |field: &str| error_of(errors, field).map(|_| "true");
    let described = |field: &str, id: &str| error_of(errors, field).map(|_| format!("{id}-error"));
    html! {
        h1 { "Add a " (app.label) " connection" }
        p.muted { "For the team " @if let Some(team) = &viewer.team { strong { (team.team.name) } } ". "
            a href="/connections/new" { "Pick another app" } }
        form.card method="post" action="/connections" autocomplete="off" {
            input type="hidden" name="csrf_token" value=(viewer.csrf);
            input type="hidden" name="app" value=(app.key);
            @if let Some(message) = error_of(errors, "") { p.error role="alert" { (message) } }
            label for="name" { "Connection name" }
            input id="name" name="name" required maxlength="255" value=(name)
                aria-invalid=[invalid("name")] aria-describedby=[described("name", "name")];
            (field_error("name", error_of(errors, "name")))
            fieldset aria-describedby=[described("modules", "modules")] {
                legend { "Modules (what the connection may be used for)" }
                @for module in &version.modules {
                    @let id = format!("module-{}", module.key);
                    div.check {
                        input type="checkbox" id=(id) name="modules" value=(module.key) checked[chosen(&module.key)];
                        label for=(id) { (module.label) " — " (format!("{:?}", module.access).to_lowercase()) }
                    }
                }
                (field_error("modules", error_of(errors, "modules")))
            }
            @if oauth {
                p.hint { "You will sign in with " (app.label) " and grant exactly the scopes these modules need." }
                details open[["clientId", "clientSecret", "scopes"].iter().any(|f| errors.contains_key(*f))] {
                    summary { "Advanced settings" }
                    label for="client_id" { "Own OAuth client id (optional)" }
                    input id="client_id" name="client_id" maxlength=(team_connections::CLIENT_ID_MAX)
                        value=(kept.client_id.as_deref().unwrap_or(""))
                        aria-invalid=[invalid("clientId")] aria-describedby=[described("clientId", "client_id")];
                    (field_error("client_id", error_of(errors, "clientId")))
                    label for="client_secret" { "Own OAuth client secret" }
                    input id="client_secret" name="client_secret" type="password" autocomplete="off"
                        maxlength=(team_connections::CLIENT_SECRET_MAX)
                        aria-invalid=[invalid("clientSecret")] aria-describedby=[described("clientSecret", "client_secret")];
                    (field_error("client_secret", error_of(errors, "clientSecret")))
                    label for="scopes" { "Extra scopes (separated by spaces)" }
                    textarea id="scopes" name="scopes" rows="2"
                        aria-invalid=[invalid("scopes")] aria-describedby=[described("scopes", "scopes")] {
                        (kept.scopes.as_deref().unwrap_or(""))
                    }
                    (field_error("scopes", error_of(errors, "scopes")))
                }
                button type="submit" { "Continue with " (app.label) }
            } @else {
                @for field in version.auth.fields() {
                    @let id = format!("field-{}", field.name);
                    @let key = format!("{FIELD}{}", field.name);
                    label for=(id) { (field.label) }
                    input id=(id) name=(key) type=(if field.secret { "password" } else { "text" })
                        autocomplete="off" required maxlength="4096"
                        value=[(!field.secret).then(|| kept.fields.get(&field.name).map(String::as_str).unwrap_or(""))]
                        aria-invalid=[invalid(&key)] aria-describedby=[described(&key, &id)];
                    @if let Some(help) = &field.help { p.hint { (help) } }
                    (field_error(&id, error_of(errors, &key)))
                }
                p.hint { "Credence checks the values with " (app.label) " before it accepts them; nobody can read them back." }
                button type="submit" { "Add connection" }
            }
        }
    }
}

/// The form's field a service error names: `accountName` → `name`, …
fn form_field(field: &str) -> String {
    match field {
        "accountName" => "name".into(),
        "accountType" | "appVersion" | "data" => String::new(),
        other if other.starts_with("data.") => format!("{FIELD}{}", &other["data.".len()..]),
        other @ ("modules" | "scopes" | "clientId" | "clientSecret" | "name") => other.into(),
        _ => String::new(),
    }
}

fn errors_of(problems: Vec<ValidationError>) -> Errors {
    let mut errors = Errors::new();
    for problem in problems {
        let message = sentence(&problem.message);
        errors
            .entry(form_field(&problem.field))
            .and_modify(|m| {
                m.push(' ');
                m.push_str(&message)
            })
            .or_insert(message);
    }
    errors
}

/// `POST /connections`: adds the connection for the current team.
pub async fn add(
    State(state): State<AppState>,
    viewer: SignedIn,
    // The app's values and the client secret among them: moved into zeroized
    // holders at once.
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let team = viewer.team.clone().ok_or(WebError::NotFound)?;
    let mut kept = Kept::default();
    let mut data = SecretJson::default();
    let mut app_key = None;
    let mut modules = Vec::new();
    let mut client_secret = None;
    for (key, value) in form {
        match key.as_str() {
            "app" => app_key = Some(value),
            "name" => kept.name = Some(value),
            "modules" => modules.push(value),
            "client_id" => kept.client_id = Some(value),
            "client_secret" => client_secret = Some(SecretString::from(value)),
            "scopes" => kept.scopes = Some(value),
            field if field.starts_with(FIELD) => {
                data.insert(field[FIELD.len()..].to_string(), Value::String(value));
            }
            _ => {}
        }
    }
    let Some(app) = app_key.as_deref().and_then(|k| state.catalog.get(k)) else {
        let body = pick_app(&state, true);
        return Ok(viewer.page_with(
            &state,
            StatusCode::BAD_REQUEST,
            "Add connection",
            Nav::Connections,
            body,
        ));
    };
    for field in app.latest().auth.fields().iter().filter(|f| !f.secret) {
        if let Some(Value::String(value)) = data.get(&field.name) {
            kept.fields.insert(field.name.clone(), value.clone());
        }
    }
    kept.modules = Some(modules.clone());
    let oauth = app.latest().auth.kind() == AuthKind::Oauth2;
    let mut errors = Errors::new();
    if modules.is_empty() {
        errors.insert("modules".into(), "Choose at least one module.".into());
    }
    let scopes: Vec<String> = kept
        .scopes
        .as_deref()
        .unwrap_or("")
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !errors.is_empty() {
        let body = add_form(&viewer, app, &errors, &kept);
        return Ok(viewer.page_with(
            &state,
            StatusCode::BAD_REQUEST,
            "Add connection",
            Nav::Connections,
            body,
        ));
    }
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let client_secret = client_secret.filter(|s| {
        use secrecy::ExposeSecret;
        !s.expose_secret().trim().is_empty()
    });
    let input = NewOwnConnection {
        team: team.team.id,
        name: kept.name.clone(),
        app: Some(app.key.clone()),
        app_version: None,
        modules: Some(modules),
        scopes: (oauth && !scopes.is_empty()).then_some(scopes),
        client_id: if oauth {
            nonempty(&kept.client_id)
        } else {
            None
        },
        client_secret: if oauth { client_secret } else { None },
        data: if oauth { SecretJson::default() } else { data },
        data_prefix: "data.",
    };
    match team_connections::add(&state.ctx(), &viewer.user, input).await {
        Ok(Added::Connection(connection)) => Ok(redirect_with_flash(
            &state,
            &format!("/connections/{}", connection.id),
            FlashKind::Done,
            &format!("{} was added and verified.", connection.name),
        )),
        Ok(Added::Redirect(url)) => Ok(Redirect::to(&url).into_response()),
        Err(service::Error::Invalid(problems)) => {
            let errors = errors_of(problems);
            let body = add_form(&viewer, app, &errors, &kept);
            Ok(viewer.page_with(
                &state,
                StatusCode::BAD_REQUEST,
                "Add connection",
                Nav::Connections,
                body,
            ))
        }
        Err(error) => Err(error.into()),
    }
}

async fn visible(state: &AppState, viewer: &SignedIn, id: &str) -> Result<Connection, WebError> {
    let id: i64 = id.parse().map_err(|_| WebError::NotFound)?;
    Ok(access::connection(&mut state.store.db().await?, &viewer.user, id).await?)
}

/// `GET /connections/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let connection = visible(&state, &viewer, &id).await?;
    draw_detail(
        &state,
        viewer,
        &connection,
        &Errors::new(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn draw_detail(
    state: &AppState,
    viewer: SignedIn,
    connection: &Connection,
    errors: &Errors,
    typed_name: Option<&str>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let last = state
        .store
        .db()
        .await?
        .list_usage_of_connection(connection.id, 1)
        .await?;
    let oauth = state
        .catalog
        .get(&connection.app_key)
        .and_then(|a| a.version(connection.app_version as u32))
        .is_some_and(|v| v.auth.kind() == AuthKind::Oauth2);
    let label = app_label(state, &connection.app_key);
    let id = connection.id;
    let name_error = errors.get("name");
    let body = html! {
        div.topline {
            h1 { (connection.name) " " (connection_state(connection)) }
            a.button.secondary href="/connections" { "All connections" }
        }
        dl.facts {
            dt { "App" } dd { (label) " " span.muted { "v" (connection.app_version) } }
            dt { "Added" } dd { (connection.created_at.format("%Y-%m-%d %H:%M UTC")) }
            dt { "Last verified" } dd { @match connection.verified_at { Some(at) => { (at.format("%Y-%m-%d %H:%M UTC")) }, None => { "never" } } }
            dt { "Last used" } dd { @match last.first() { Some(u) => { (u.occurred_at.format("%Y-%m-%d %H:%M UTC")) }, None => { "never" } } }
            @if let Some(client) = &connection.oauth_client_id { dt { "Own OAuth client" } dd { code { (client) } } }
        }
        section.card aria-labelledby="permissions" {
            h2 id="permissions" { "Permissions" }
            (permissions(state, connection))
        }
        section.card aria-labelledby="manage" {
            h2 id="manage" { "Manage" }
            form method="post" action=(format!("/connections/{id}/rename")) {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                label for="name" { "Name" }
                input id="name" name="name" required maxlength="255" value=(typed_name.unwrap_or(&connection.name))
                    aria-invalid=[name_error.map(|_| "true")] aria-describedby=[name_error.map(|_| "name-error")];
                (field_error("name", name_error))
                button.secondary type="submit" { "Rename" }
            }
            div.actions {
                form.inline method="post" action=(format!("/connections/{id}/verify")) {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    button.secondary type="submit" { "Verify" }
                }
                @if oauth { a.button.secondary href=(format!("/oauth/reauth/{id}")) { "Reauthorize" } }
                a.button.secondary href=(format!("/connections/{id}/delete")) { "Delete…" }
            }
        }
    };
    let title = connection.name.clone();
    Ok(viewer.page_with(state, status, &title, Nav::Connections, body))
}

#[derive(Deserialize)]
pub struct RenameForm {
    name: Option<String>,
}

/// `POST /connections/{id}/rename`.
pub async fn rename(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RenameForm>,
) -> Result<Response, WebError> {
    let connection = visible(&state, &viewer, &id).await?;
    match team_connections::rename(
        &state.ctx(),
        &viewer.user,
        connection.id,
        form.name.as_deref(),
    )
    .await
    {
        Ok(renamed) => Ok(redirect_with_flash(
            &state,
            &format!("/connections/{}", renamed.id),
            FlashKind::Done,
            &format!("Renamed to {}.", renamed.name),
        )),
        Err(service::Error::Invalid(problems)) => {
            let mut errors = Errors::new();
            for problem in problems {
                errors.insert("name".into(), sentence(&problem.message));
            }
            let typed: String = form.name.unwrap_or_default().chars().take(2048).collect();
            draw_detail(
                &state,
                viewer,
                &connection,
                &errors,
                Some(&typed),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /connections/{id}/verify`: asks the app; ok, or why not.
pub async fn verify(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    let connection = visible(&state, &viewer, &id).await?;
    let to = format!("/connections/{}", connection.id);
    Ok(
        match checks::verify(&state.ctx(), &viewer.user, connection.id).await? {
            checks::Verdict::Works => redirect_with_flash(
                &state,
                &to,
                FlashKind::Done,
                &format!(
                    "{} works: {} accepted it.",
                    connection.name,
                    app_label(&state, &connection.app_key)
                ),
            ),
            checks::Verdict::Fails(reason) => redirect_with_flash(
                &state,
                &to,
                FlashKind::Failed,
                &format!("{} does not work: {}", connection.name, sentence(&reason)),
            ),
        },
    )
}

/// `GET /connections/{id}/delete`: what deleting destroys, and who used it.
pub async fn confirm_delete(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let connection = visible(&state, &viewer, &id).await?;
    let (consumers, used_by) = {
        let mut db = state.store.db().await?;
        let consumers =
            service_connections::recent_consumer_names(&mut db, &[connection.id]).await?;
        let used_by = db.credentials_using_connection(connection.id).await?.len();
        (consumers, used_by)
    };
    let id = connection.id;
    let body = html! {
        h1 { "Delete " (connection.name) "?" }
        div.card {
            p { "Deleting destroys the stored access to " (app_label(&state, &connection.app_key)) " at once"
                @if used_by > 0 { ", and " (used_by) " requested credential(s) that use it go back to pending" }
                ". Credence also revokes it at the provider where the provider supports that." }
            @if consumers.is_empty() {
                p.muted { "Nobody used it in the last " (service_connections::CONSUMERS_SEEN_FOR.num_days()) " days." }
            } @else {
                p { "Used in the last " (service_connections::CONSUMERS_SEEN_FOR.num_days()) " days by — these stop working:" }
                ul.consumers { @for consumer in &consumers { li { (consumer) } } }
            }
            div.actions {
                form.inline method="post" action=(format!("/connections/{id}/delete")) {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    button.danger type="submit" { "Delete connection" }
                }
                a.button.secondary href=(format!("/connections/{id}")) { "Cancel" }
            }
        }
    };
    Ok(viewer.page(&state, "Delete connection", Nav::Connections, body))
}

/// `POST /connections/{id}/delete` (after the confirmation page).
pub async fn delete(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    let connection = visible(&state, &viewer, &id).await?;
    team_connections::delete(&state.ctx(), &viewer.user, connection.id, true).await?;
    Ok(redirect_with_flash(
        &state,
        "/connections",
        FlashKind::Done,
        &format!("{} was deleted.", connection.name),
    ))
}
