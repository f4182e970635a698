//! `/mailbox`: the local mailbox, where mail stays while no SMTP server is
//! configured (SPEC §13) — the same emails `credence mail list|show` prints,
//! read through [`LocalMailbox`], which `credence` implements with
//! `credence_jobs::mailbox` (this crate does not know the job runner). With
//! SMTP configured there is none, and the pages are a 404.
//!
//! The CLI reads the whole instance's mailbox (it is the operator's); the
//! web shows a viewer only the mail of the organizations they own or
//! administer (each outbox row names its organization, migration 0018).
//! Anyone who manages none gets a 404 for the pages, and an email of another
//! organization, or of none (written before 0018), is a 404 too: one
//! organization's admins never read another's request links or invitations.
//! An email's HTML part is shown as escaped source, never rendered into our
//! page (the CSP forbids its inline styles, and it must run nothing).

use super::layout::Nav;
use super::session::{SignedIn, WebError};
use super::settings;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use credence_domain::OrganizationId;
use futures_util::future::BoxFuture;
use maud::html;

/// The most emails the list shows.
const LISTED: i64 = 100;

/// One email of the local mailbox, rendered as it was delivered.
#[derive(Debug, Clone)]
pub struct MailboxEmail {
    pub id: i64,
    pub to: String,
    pub subject: String,
    pub delivered_at: DateTime<Utc>,
    pub text: String,
    pub html: String,
}

/// What a [`LocalMailbox`] read answers, later.
pub type Answer<'a, T> = BoxFuture<'a, anyhow::Result<T>>;

/// The local mailbox, newest first, as the organizations see it.
pub trait LocalMailbox: Send + Sync {
    /// The newest `limit` emails of `organizations`.
    fn list<'a>(
        &'a self,
        organizations: &'a [OrganizationId],
        limit: i64,
    ) -> Answer<'a, Vec<MailboxEmail>>;
    /// Email `id`, if there is one and it belongs to one of `organizations`.
    fn get<'a>(
        &'a self,
        organizations: &'a [OrganizationId],
        id: i64,
    ) -> Answer<'a, Option<MailboxEmail>>;
}

/// The organizations `viewer` owns or administers: whose mail they read.
fn managed(viewer: &SignedIn) -> Vec<OrganizationId> {
    viewer
        .memberships
        .iter()
        .filter(|m| m.role.manages_organization())
        .map(|m| m.organization.id)
        .collect()
}

/// Whether `viewer` reads the local mailbox: there is one, and they own or
/// administer an organization (whose mail they then read).
pub fn may_read(state: &AppState, viewer: &SignedIn) -> bool {
    state.mailbox.is_some() && !managed(viewer).is_empty()
}

/// The mailbox and the organizations whose mail `viewer` reads in it.
fn mailbox_of<'a>(
    state: &'a AppState,
    viewer: &SignedIn,
) -> Result<(&'a dyn LocalMailbox, Vec<OrganizationId>), WebError> {
    let organizations = managed(viewer);
    match &state.mailbox {
        Some(mailbox) if !organizations.is_empty() => Ok((mailbox.as_ref(), organizations)),
        _ => Err(WebError::NotFound),
    }
}

fn failed(error: anyhow::Error) -> WebError {
    WebError::Service(credence_service::Error::Internal(error))
}

/// `GET /mailbox`.
pub async fn list(State(state): State<AppState>, viewer: SignedIn) -> Result<Response, WebError> {
    let (mailbox, organizations) = mailbox_of(&state, &viewer)?;
    let emails = mailbox.list(&organizations, LISTED).await.map_err(failed)?;
    let body = html! {
        h1 { "Settings" }
        (settings::tabs(&state, &viewer, settings::Tab::Mailbox))
        section.card aria-labelledby="mailbox-heading" {
            h2 id="mailbox-heading" { "Local mailbox" }
            p.muted { "No SMTP server is configured, so Credence keeps the mail it sends here: the mail of the organizations you own or administer (the operator's credence mail list shows all of it). Configure SMTP to send it for real." }
            @if emails.is_empty() {
                p.muted { "The local mailbox is empty." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "To" } th scope="col" { "Subject" } th scope="col" { "Time" } } }
                        tbody {
                            @for email in &emails {
                                tr {
                                    td { (email.to) }
                                    td { a href=(format!("/mailbox/{}", email.id)) { (email.subject) } }
                                    td { (email.delivered_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(viewer.page(&state, "Mailbox", Nav::Settings, body))
}

/// `GET /mailbox/{id}`: one email, its text part and its HTML part's source.
pub async fn show(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let (mailbox, organizations) = mailbox_of(&state, &viewer)?;
    let id = id.parse::<i64>().map_err(|_| WebError::NotFound)?;
    let email = mailbox
        .get(&organizations, id)
        .await
        .map_err(failed)?
        .ok_or(WebError::NotFound)?;
    let body = html! {
        h1 { (email.subject) }
        (settings::tabs(&state, &viewer, settings::Tab::Mailbox))
        section.card aria-labelledby="email-heading" {
            h2 id="email-heading" { "Email " (email.id) }
            dl.facts {
                dt { "To" } dd { (email.to) }
                dt { "Time" } dd { (email.delivered_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                dt { "Subject" } dd { (email.subject) }
            }
            h3 { "Text" }
            pre.mail-text tabindex="0" role="region" aria-label="Text part" { (email.text) }
            details {
                summary { "HTML part (source)" }
                pre.mail-source tabindex="0" role="region" aria-label="HTML part source" { code { (email.html) } }
            }
        }
        p { a href="/mailbox" { "All emails" } }
    };
    Ok(viewer.page(&state, "Email", Nav::Settings, body))
}
