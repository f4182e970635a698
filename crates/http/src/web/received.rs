//! The recipient's page of a request they received (SPEC §4.1, §4.4, §12):
//! per app its modules and permissions, and the actions its state allows —
//! Authorize (an OAuth app through the consent form of `oauth.rs`, any other
//! with the app's fields, verified by the app before they are accepted),
//! Reauthorize (the same, when the requester asked), Decline with a reason,
//! Revoke — and "What was done with my access", the broker's usage log of the
//! request's credentials.
//!
//! A refusal is the page again with status 400 and the message next to the
//! field it is about; what was typed into a non-secret field is kept, a
//! secret never comes back into a page. Whoever is not the recipient gets
//! the 404 of a request that does not exist.

use super::layout::Nav;
use super::sent::{credential_facts, credential_heading, request_facts};
use super::session::{redirect_with_flash, FlashKind, SignedIn, WebError};
use super::CsrfForm;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use credence_catalog::AuthKind;
use credence_domain::{
    CredentialAction, CredentialId, CredentialState, DeclineReason, RequestId, ValidationError,
};
use credence_provider::SecretJson;
use credence_service::{self as service, access::Viewer, credentials, requests::Opened};
use credence_store::RequestedCredential;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The form field prefix of an app's fields (`field.apiKey`), so that no
/// app field can be taken for the form's own (`csrf_token`).
const FIELD: &str = "field.";

/// What a form shown again after a refusal carries: for one credential, the
/// messages by field (the app's field name, `reason`, or `""` for the form)
/// and the non-secret values typed.
#[derive(Default)]
struct Refusal {
    credential: Option<CredentialId>,
    errors: BTreeMap<String, String>,
    kept: BTreeMap<String, String>,
}

impl Refusal {
    fn of(&self, credential: &RequestedCredential) -> Option<&Self> {
        (self.credential == Some(credential.id)).then_some(self)
    }
}

/// A service's message as a sentence for a page: "the key was refused" →
/// "The key was refused."
pub(super) fn sentence(message: &str) -> String {
    let message = message.trim();
    let mut chars = message.chars();
    let mut text = chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default();
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

fn request_id(id: &str) -> Result<RequestId, WebError> {
    RequestId::parse("id", id).map_err(|_| WebError::NotFound)
}

/// The request as its recipient opens it; anyone else gets a 404.
async fn opened(state: &AppState, viewer: &SignedIn, id: RequestId) -> Result<Opened, WebError> {
    let opened = service::requests::open(&state.ctx(), &viewer.user, id).await?;
    if opened.viewer != Viewer::Recipient {
        return Err(WebError::NotFound);
    }
    Ok(opened)
}

/// `GET /received/{id}`.
pub async fn page(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let opened = opened(&state, &viewer, request_id(&id)?).await?;
    Ok(draw(
        &state,
        viewer,
        &opened,
        &Refusal::default(),
        StatusCode::OK,
    ))
}

fn draw(
    state: &AppState,
    viewer: SignedIn,
    opened: &Opened,
    refusal: &Refusal,
    status: StatusCode,
) -> Response {
    let request = &opened.request;
    let requester = opened.requester.as_ref();
    let body = html! {
        div.topline {
            h1 { (request.name) " " (super::layout::state_label(request.status.as_str())) }
            a.button.secondary href=(format!("/received/{}/usage", request.id)) { "What was done with my access" }
        }
        @if let Some(requester) = requester {
            p { "Requested by " strong { (requester.name) } " (" (requester.email) ")" }
        }
        (request_facts(request, None))
        @for credential in &opened.credentials {
            section.card aria-labelledby=(format!("app-{}", credential.id)) {
                (credential_heading(&state.catalog, credential))
                (credential_facts(&state.catalog, credential))
                (actions(state, &viewer, request.id, credential, refusal.of(credential)))
            }
        }
    };
    let title = request.name.clone();
    viewer.page_with(state, status, &title, Nav::Received, body)
}

/// Whether `credential`'s state allows `action`.
fn allows(credential: &RequestedCredential, action: CredentialAction) -> bool {
    credential.state.apply(action).is_ok()
}

/// Authorize or reauthorize, whichever the state asks for (none when neither).
fn authorize_action(credential: &RequestedCredential) -> Option<(bool, &'static str)> {
    if credential.state == CredentialState::Reauthorizing {
        Some((true, "Reauthorize"))
    } else if allows(credential, CredentialAction::Authorize) {
        Some((false, "Authorize"))
    } else {
        None
    }
}

fn actions(
    state: &AppState,
    viewer: &SignedIn,
    request: RequestId,
    credential: &RequestedCredential,
    refusal: Option<&Refusal>,
) -> Markup {
    let app = state.catalog.get(&credential.app_key);
    let version = app.and_then(|a| a.version(credential.app_version as u32));
    let label = app.map(|a| a.label.as_str()).unwrap_or(&credential.app_key);
    let base = format!("/received/{request}/credentials/{}", credential.id);
    let error_of = |field: &str| refusal.and_then(|r| r.errors.get(field));
    let id = |field: &str| format!("c{}-{}", credential.id, field.replace('.', "-"));
    html! {
        @if let (Some(version), Some((_, action))) = (version, authorize_action(credential)) {
            @if version.auth.kind() == AuthKind::Oauth2 {
                // A form, not a link: another site must not be able to start
                // a consent that a provider may approve by itself.
                form method="post" action=(format!("/oauth/authorize/{}", credential.id)) {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    button type="submit" { (action) " with " (label) }
                }
            } @else {
                form method="post" action=(format!("{base}/authorize")) autocomplete="off" {
                    h3 { "Your " (label) " credentials" }
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    @if let Some(message) = error_of("") { p.error role="alert" id=(id("form-error")) { (message) } }
                    @for field in version.auth.fields() {
                        @let input_id = id(&field.name);
                        @let error = error_of(&field.name);
                        @let kept = refusal.and_then(|r| r.kept.get(&field.name)).map(String::as_str).unwrap_or("");
                        label for=(input_id) { (field.label) " for " (label) }
                        input id=(input_id) name=(format!("{FIELD}{}", field.name))
                            type=(if field.secret { "password" } else { "text" })
                            autocomplete="off" required maxlength="4096"
                            value=[(!field.secret).then_some(kept)]
                            aria-invalid=[error.map(|_| "true")]
                            aria-describedby=[error.map(|_| format!("{input_id}-error"))];
                        @if let Some(help) = &field.help { p.hint { (help) } }
                        @if let Some(message) = error { p.field-error id=(format!("{input_id}-error")) { (message) } }
                    }
                    p.hint { "Credence checks the values with " (label) " before it accepts them. Nobody — not you, not the requester — can read them back." }
                    button type="submit" { (action) " " (label) }
                }
            }
        }
        div.actions {
            @if allows(credential, CredentialAction::Revoke) {
                form.inline method="post" action=(format!("{base}/revoke")) {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    button.danger.small type="submit" { "Revoke access to " (label) }
                }
            }
        }
        @if allows(credential, CredentialAction::Decline) {
            @let reason_id = id("reason");
            @let error = error_of("reason");
            details open[error.is_some()] {
                summary { "Decline " (label) }
                form method="post" action=(format!("{base}/decline")) {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    label for=(reason_id) { "Why do you decline " (label) "? (at most " (DeclineReason::MAX) " characters; the requester sees it)" }
                    textarea id=(reason_id) name="reason" rows="2" maxlength=(DeclineReason::MAX)
                        aria-invalid=[error.map(|_| "true")]
                        aria-describedby=[error.map(|_| format!("{reason_id}-error"))] {
                        (refusal.and_then(|r| r.kept.get("reason")).map(String::as_str).unwrap_or(""))
                    }
                    @if let Some(message) = error { p.field-error id=(format!("{reason_id}-error")) { (message) } }
                    button.danger type="submit" { "Decline " (label) }
                }
            }
        }
    }
}

/// The credential `credential` of request `request`, if the viewer is its
/// recipient (else a 404).
async fn credential_of(
    state: &AppState,
    viewer: &SignedIn,
    request: &str,
    credential: &str,
) -> Result<(Opened, CredentialId), WebError> {
    let request = request_id(request)?;
    let credential = CredentialId::parse("id", credential).map_err(|_| WebError::NotFound)?;
    let opened = opened(state, viewer, request).await?;
    if !opened.credentials.iter().any(|c| c.id == credential) {
        return Err(WebError::NotFound);
    }
    Ok((opened, credential))
}

fn app_label(state: &AppState, opened: &Opened, credential: CredentialId) -> String {
    opened
        .credentials
        .iter()
        .find(|c| c.id == credential)
        .map(|c| {
            state
                .catalog
                .get(&c.app_key)
                .map(|a| a.label.clone())
                .unwrap_or_else(|| c.app_key.clone())
        })
        .unwrap_or_default()
}

/// Shows the page again with `problems` next to their fields (400), the
/// request read afresh (a refused key has made the credential `invalid`).
async fn refused(
    state: &AppState,
    viewer: SignedIn,
    request: RequestId,
    mut refusal: Refusal,
    problems: Vec<ValidationError>,
) -> Result<Response, WebError> {
    for problem in problems {
        let field = problem
            .field
            .strip_prefix("data.")
            .map(str::to_string)
            .unwrap_or_else(|| {
                if problem.field == "reason" {
                    "reason".to_string()
                } else {
                    String::new()
                }
            });
        let message = sentence(&problem.message);
        refusal
            .errors
            .entry(field)
            .and_modify(|m| {
                m.push(' ');
                m.push_str(&message)
            })
            .or_insert(message);
    }
    let opened = opened(state, &viewer, request).await?;
    Ok(draw(
        state,
        viewer,
        &opened,
        &refusal,
        StatusCode::BAD_REQUEST,
    ))
}

/// `POST /received/{id}/credentials/{credentialId}/authorize`: the app's
/// fields (`field.<name>`), verified by the app; authorizes, or reauthorizes
/// when the requester asked for it.
pub async fn authorize(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path((request, credential)): Path<(String, String)>,
    // The app's values, secrets among them: zeroized when dropped.
    CsrfForm(mut form): CsrfForm<SecretJson>,
) -> Result<Response, WebError> {
    let (opened, id) = credential_of(&state, &viewer, &request, &credential).await?;
    let current = opened
        .credentials
        .iter()
        .find(|c| c.id == id)
        .ok_or(WebError::NotFound)?;
    let version = state
        .catalog
        .get(&current.app_key)
        .and_then(|a| a.version(current.app_version as u32));
    let mut refusal = Refusal {
        credential: Some(id),
        ..Refusal::default()
    };
    // Keep what may be shown again: the values of the non-secret fields.
    if let Some(version) = version {
        for field in version.auth.fields().iter().filter(|f| !f.secret) {
            if let Some(Value::String(value)) = form.get(&format!("{FIELD}{}", field.name)) {
                refusal
                    .kept
                    .insert(field.name.clone(), value.chars().take(4096).collect());
            }
        }
    }
    let keys: Vec<String> = form
        .keys()
        .filter(|k| k.starts_with(FIELD))
        .cloned()
        .collect();
    let mut data = SecretJson::default();
    for key in keys {
        if let Some(value) = form.remove(&key) {
            data.insert(key[FIELD.len()..].to_string(), value);
        }
    }
    let Some((reauthorize, action)) = authorize_action(current) else {
        refusal.errors.insert(
            String::new(),
            format!(
                "This credential is {} and cannot be authorized now.",
                current.state
            ),
        );
        return Ok(draw(
            &state,
            viewer,
            &opened,
            &refusal,
            StatusCode::CONFLICT,
        ));
    };
    let label = app_label(&state, &opened, id);
    let request = opened.request.id;
    match credentials::authorize(&state.ctx(), &viewer.user, id, Some(data), reauthorize).await {
        Ok(credentials::Authorization::Authorized(_)) => Ok(redirect_with_flash(
            &state,
            &format!("/received/{request}"),
            FlashKind::Done,
            &format!(
                "{label}: {}d. The requester can use it now.",
                action.to_lowercase()
            ),
        )),
        // An OAuth app: its consent form posts elsewhere, but follow it anyway.
        Ok(credentials::Authorization::Redirect(url)) => Ok(Redirect::to(&url).into_response()),
        Err(service::Error::Invalid(problems)) => {
            refused(&state, viewer, request, refusal, problems).await
        }
        Err(service::Error::Conflict(message)) => {
            refusal.errors.insert(String::new(), sentence(&message));
            let opened = self::opened(&state, &viewer, request).await?;
            Ok(draw(
                &state,
                viewer,
                &opened,
                &refusal,
                StatusCode::CONFLICT,
            ))
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize)]
pub struct DeclineForm {
    reason: Option<String>,
}

/// `POST /received/{id}/credentials/{credentialId}/decline`.
pub async fn decline(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path((request, credential)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<DeclineForm>,
) -> Result<Response, WebError> {
    let (opened, id) = credential_of(&state, &viewer, &request, &credential).await?;
    let reason = form.reason.unwrap_or_default();
    let refusal = Refusal {
        credential: Some(id),
        kept: BTreeMap::from([("reason".to_string(), reason.chars().take(2048).collect())]),
        ..Refusal::default()
    };
    let label = app_label(&state, &opened, id);
    let request = opened.request.id;
    if reason.trim().is_empty() {
        let problem = ValidationError::new(
            "reason",
            "reason is required: tell the requester why you decline",
        );
        return refused(&state, viewer, request, refusal, vec![problem]).await;
    }
    match credentials::decline(&state.ctx(), &viewer.user, id, Some(&reason)).await {
        Ok(_) => Ok(redirect_with_flash(
            &state,
            &format!("/received/{request}"),
            FlashKind::Done,
            &format!("{label}: declined. The requester sees your reason."),
        )),
        Err(service::Error::Invalid(problems)) => {
            refused(&state, viewer, request, refusal, problems).await
        }
        Err(service::Error::Conflict(message)) => Ok(redirect_with_flash(
            &state,
            &format!("/received/{request}"),
            FlashKind::Failed,
            &sentence(&message),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `POST /received/{id}/credentials/{credentialId}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path((request, credential)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    let (opened, id) = credential_of(&state, &viewer, &request, &credential).await?;
    let label = app_label(&state, &opened, id);
    let to = format!("/received/{}", opened.request.id);
    match credentials::revoke(&state.ctx(), &viewer.user, id).await {
        Ok(_) => Ok(redirect_with_flash(
            &state,
            &to,
            FlashKind::Done,
            &format!(
                "{label}: revoked. The connection stopped working and its secret is destroyed."
            ),
        )),
        Err(service::Error::Conflict(message)) => Ok(redirect_with_flash(
            &state,
            &to,
            FlashKind::Failed,
            &sentence(&message),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `GET /received/{id}/usage`: what was done with each credential of the
/// request, newest first (the broker's usage log).
pub async fn usage(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let opened = opened(&state, &viewer, request_id(&id)?).await?;
    let mut logs = Vec::new();
    {
        let mut db = state.store.db().await?;
        for credential in &opened.credentials {
            let entries =
                service::usage::of_credential(&mut db, &viewer.user, credential.id).await?;
            logs.push((credential, entries));
        }
    }
    let request = &opened.request;
    let body = html! {
        div.topline {
            h1 { "What was done with my access" }
            a.button.secondary href=(format!("/received/{}", request.id)) { "Back to " (request.name) }
        }
        p.muted { "Every call made through Credence with what you gave for " strong { (request.name) } ", newest first (at most " (service::usage::READ_LIMIT) " per app)." }
        @for (credential, entries) in &logs {
            section.card aria-labelledby=(format!("app-{}", credential.id)) {
                (credential_heading(&state.catalog, credential))
                @if entries.is_empty() {
                    p.empty { "Nothing was done with it yet." }
                } @else {
                    div.table-wrap {
                        table {
                            caption.muted { (entries.len()) " calls" }
                            thead { tr {
                                th scope="col" { "Time (UTC)" } th scope="col" { "Consumer" }
                                th scope="col" { "Method" } th scope="col" { "Path" } th scope="col" { "Status" }
                            } }
                            tbody {
                                @for entry in entries {
                                    tr {
                                        td { (entry.occurred_at.format("%Y-%m-%d %H:%M:%S")) }
                                        td { (entry.consumer.as_deref().unwrap_or(&entry.actor_label)) }
                                        td { code { (entry.method) } }
                                        td { code { (entry.path_template.as_deref().unwrap_or("—")) } }
                                        td { (entry.status) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(viewer.page(&state, "What was done with my access", Nav::Received, body))
}
