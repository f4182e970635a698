//! Settings → Reminder policy (SPEC §9) of the team the switcher chose: when
//! the first nudge goes, how often the next ones, how many, the SLA
//! threshold, the sponsor copied on escalations, and the channels (email, a
//! Slack incoming webhook). It reads and changes the policy through the calls
//! of `GET|PUT /credential-requests/teams/{id}/reminder-policy`
//! (`service::reminders`): whoever sees the team reads it, its admins and the
//! organization's owners and admins change it (audited by the service).
//!
//! The Slack URL is a key to the channel and sealed: the page says only
//! whether one is set, and offers to replace or remove it; a URL typed in is
//! never drawn back into the page, not even next to an error.

use super::layout::Nav;
use super::session::{redirect_with_flash, FlashKind, SignedIn, WebError};
use super::{settings, CsrfForm};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use credence_domain::TeamRole;
use credence_service::reminders::{self, Policy, PolicyInput};
use credence_service::{self as service};
use maud::{html, Markup};
use serde::Deserialize;

/// The form's fields: (form name, the service's field name, label, hint).
const NUMBERS: [(&str, &str, &str, &str); 4] = [
    (
        "first_after_hours",
        "firstAfterHours",
        "First nudge after (hours)",
        "Hours after the request is sent.",
    ),
    (
        "every_hours",
        "everyHours",
        "Interval (hours)",
        "Hours between two nudges.",
    ),
    (
        "max_count",
        "maxCount",
        "Maximum nudges",
        "0 sends no reminder.",
    ),
    (
        "sla_hours",
        "slaHours",
        "SLA threshold (hours)",
        "A request not authorized this long after it was sent is in breach.",
    ),
];

/// What the form had (never the Slack URL).
struct Entered {
    numbers: [String; 4],
    email: bool,
    sponsor_cc: String,
}

impl Entered {
    fn of(policy: &Policy) -> Entered {
        Entered {
            numbers: [
                policy.first_after_hours.to_string(),
                policy.every_hours.to_string(),
                policy.max_count.to_string(),
                policy.sla_hours.to_string(),
            ],
            email: policy.email,
            sponsor_cc: policy.sponsor_cc.clone().unwrap_or_default(),
        }
    }
}

/// Messages by the service's field name.
#[derive(Default)]
struct Errors(Vec<(String, String)>);

impl Errors {
    fn of(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// The service's message in the form's words: its field name becomes the label.
fn plain_words(field: &str, label: &str, message: &str) -> String {
    let label = label.split(" (").next().unwrap_or(label);
    message.replacen(field, label, 1)
}

/// Whether `viewer` changes the current team's policy: an owner or admin of
/// its organization, or an admin of the team (the service checks it again).
async fn may_change(state: &AppState, viewer: &SignedIn) -> Result<bool, WebError> {
    let Some(team) = &viewer.team else {
        return Ok(false);
    };
    if team.role.manages_organization() {
        return Ok(true);
    }
    let role = state
        .store
        .db()
        .await?
        .team_role(team.team.id, viewer.user.id)
        .await?;
    Ok(role == Some(TeamRole::Admin))
}

fn body(
    state: &AppState,
    viewer: &SignedIn,
    policy: &Policy,
    entered: &Entered,
    errors: &Errors,
    changes: bool,
) -> Markup {
    let team = viewer.team.as_ref().expect("checked by the caller");
    let error = |field: &str| -> Markup {
        html! { @if let Some(message) = errors.of(field) { p.field-error id=(format!("{field}-error")) { (message) } } }
    };
    let described = |field: &str, hint: Option<&str>| -> Option<String> {
        let mut ids: Vec<String> = hint.map(|h| vec![h.to_string()]).unwrap_or_default();
        if errors.of(field).is_some() {
            ids.push(format!("{field}-error"));
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    };
    let invalid = |field: &str| errors.of(field).map(|_| "true");
    let slack_set = policy.slack_secret_id.is_some();
    html! {
        h1 { "Settings" }
        (settings::tabs(state, viewer, settings::Tab::Reminders))
        section.card aria-labelledby="policy-heading" {
            h2 id="policy-heading" { "Reminder policy of the team " (team.team.name) }
            p.muted { "While anything of a request is pending, its recipient is nudged on this schedule; the first nudge is friendly, later ones escalate (the owner copied). To change another team's policy, switch team in the sidebar." }
            @if !errors.0.is_empty() {
                p.error role="alert" { "Nothing was saved: check the fields marked below." }
            }
            form method="post" action="/settings/reminders" {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                input type="hidden" name="team" value=(team.team.id.0);
                fieldset disabled[!changes] {
                    legend { "Schedule" }
                    @for (i, (name, field, label, hint)) in NUMBERS.iter().enumerate() {
                        label for=(name) { (label) }
                        input id=(name) name=(name) type="number" step="1" required value=(entered.numbers[i])
                            aria-invalid=[invalid(field)] aria-describedby=[described(field, Some(&format!("{name}-hint")))];
                        p.hint id=(format!("{name}-hint")) { (hint) }
                        (error(field))
                    }
                }
                fieldset disabled[!changes] {
                    legend { "Channels" }
                    label.check {
                        input type="checkbox" name="email" value="yes" checked[entered.email];
                        "Email the recipient"
                    }
                    label for="sponsor_cc" { "Sponsor copied on escalations (optional)" }
                    input id="sponsor_cc" name="sponsor_cc" type="email" maxlength="254" value=(entered.sponsor_cc)
                        aria-invalid=[invalid("sponsorCc")] aria-describedby=[described("sponsorCc", None)];
                    (error("sponsorCc"))
                    p id="slack-status" {
                        "Slack incoming webhook: "
                        @if slack_set { strong { "set" } } @else { strong { "not set" } }
                    }
                    label for="slack_webhook_url" { @if slack_set { "Replace the Slack webhook URL (optional)" } @else { "Slack webhook URL (optional)" } }
                    input id="slack_webhook_url" name="slack_webhook_url" type="url" autocomplete="off" value=""
                        aria-invalid=[invalid("slackWebhookUrl")] aria-describedby=[described("slackWebhookUrl", Some("slack-hint"))];
                    p.hint id="slack-hint" { "Kept sealed and never shown again. Empty: keep what is set." }
                    (error("slackWebhookUrl"))
                    @if slack_set {
                        label.check {
                            input type="checkbox" name="slack_clear" value="yes";
                            "Remove the Slack webhook"
                        }
                    }
                }
                @if changes {
                    button type="submit" { "Save reminder policy" }
                } @else {
                    p.muted { "Only the team's admins and the organization's owners and admins change it." }
                }
            }
            @if let Some(at) = policy.updated_at {
                p.muted { "Last changed " (at.format("%Y-%m-%d %H:%M UTC")) "." }
            }
        }
    }
}

/// `GET /settings/reminders`.
pub async fn page(State(state): State<AppState>, viewer: SignedIn) -> Result<Response, WebError> {
    let Some(team) = viewer.team.clone() else {
        return Err(WebError::NotFound);
    };
    let policy = reminders::get_policy(&state.ctx(), &viewer.user, team.team.id).await?;
    let changes = may_change(&state, &viewer).await?;
    let body = body(
        &state,
        &viewer,
        &policy,
        &Entered::of(&policy),
        &Errors::default(),
        changes,
    );
    Ok(viewer.page(&state, "Reminder policy", Nav::Settings, body))
}

#[derive(Deserialize)]
pub struct PolicyForm {
    team: String,
    first_after_hours: String,
    every_hours: String,
    max_count: String,
    sla_hours: String,
    email: Option<String>,
    sponsor_cc: String,
    slack_webhook_url: String,
    slack_clear: Option<String>,
}

/// `POST /settings/reminders`: the whole form; the Slack URL only when one
/// was typed (or removed).
pub async fn save(
    State(state): State<AppState>,
    viewer: SignedIn,
    CsrfForm(form): CsrfForm<PolicyForm>,
) -> Result<Response, WebError> {
    // The team the page showed; the switcher may have changed since.
    let team = viewer
        .teams
        .iter()
        .find(|t| t.team.id.0.to_string() == form.team)
        .cloned()
        .ok_or(WebError::NotFound)?;
    let mut errors = Errors::default();
    let raw = [
        &form.first_after_hours,
        &form.every_hours,
        &form.max_count,
        &form.sla_hours,
    ];
    let mut numbers = [None; 4];
    for (i, (_, field, label, _)) in NUMBERS.iter().enumerate() {
        match raw[i].trim().parse::<i64>() {
            Ok(value) => numbers[i] = Some(value),
            Err(_) => errors.0.push((
                field.to_string(),
                format!(
                    "{} {:?} is not a whole number.",
                    label.split(" (").next().unwrap_or(label),
                    raw[i].chars().take(20).collect::<String>()
                ),
            )),
        }
    }
    let slack_webhook_url = if form.slack_clear.is_some() {
        Some(None)
    } else if form.slack_webhook_url.trim().is_empty() {
        None
    } else {
        Some(Some(form.slack_webhook_url.clone()))
    };
    let input = PolicyInput {
        first_after_hours: numbers[0],
        every_hours: numbers[1],
        max_count: numbers[2],
        sla_hours: numbers[3],
        email: Some(form.email.is_some()),
        sponsor_cc: Some(Some(form.sponsor_cc.trim().to_string())),
        slack_webhook_url,
    };
    let outcome = if errors.0.is_empty() {
        Some(
            reminders::put_policy(
                &state.ctx(),
                &viewer.user,
                team.team.id,
                input,
                state.settings.reminders_allow_private_hosts,
            )
            .await,
        )
    } else {
        None
    };
    match outcome {
        Some(Ok(_)) => {
            return Ok(redirect_with_flash(
                &state,
                "/settings/reminders",
                FlashKind::Done,
                &format!("Reminder policy of the team {} saved.", team.team.name),
            ))
        }
        Some(Err(service::Error::Invalid(problems))) => {
            for problem in problems {
                let label = NUMBERS
                    .iter()
                    .find(|(_, field, _, _)| *field == problem.field)
                    .map(|(_, _, label, _)| *label)
                    .unwrap_or(match problem.field.as_str() {
                        "sponsorCc" => "Sponsor",
                        "slackWebhookUrl" => "Slack webhook URL",
                        _ => "",
                    });
                let message = if label.is_empty() {
                    problem.message
                } else {
                    plain_words(&problem.field, label, &problem.message)
                };
                errors.0.push((problem.field, message));
            }
        }
        Some(Err(error)) => return Err(error.into()),
        None => {}
    }
    // Shown again as typed, for the team it was typed for; the Slack URL is not.
    let policy = reminders::get_policy(&state.ctx(), &viewer.user, team.team.id).await?;
    let entered = Entered {
        numbers: raw.map(|r| r.chars().take(20).collect()),
        email: form.email.is_some(),
        sponsor_cc: form.sponsor_cc.chars().take(254).collect(),
    };
    let mut viewer = viewer;
    viewer.team = Some(team);
    let changes = may_change(&state, &viewer).await?;
    let body = body(&state, &viewer, &policy, &entered, &errors, changes);
    Ok(viewer.page_with(
        &state,
        StatusCode::BAD_REQUEST,
        "Reminder policy",
        Nav::Settings,
        body,
    ))
}
