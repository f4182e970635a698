//! The emails, compiled with the binary: a subject, a plain-text body and an
//! HTML body (maud, which escapes every value) for each kind of notification
//! the services write (`audit::notify`, `notices::tell`). Each says who asks or
//! acted, for which request and apps, what the recipient can do, and the
//! link where there is one. Payloads never hold a secret; the links they hold
//! (a request link, an invitation) are the point of the email.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Copied (`Cc`): the payload's `cc` (an escalation's owner and sponsor).
    pub cc: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("notifications of kind {0:?} have no email template")]
pub struct UnknownKind(pub String);

/// The kinds there is a template for.
pub const KINDS: &[&str] = &[
    "credential_request.received",
    "credential_request.invitation",
    "credential.authorized",
    "credential.reauthorized",
    "credential.declined",
    "credential.revoked",
    "credential.delete_remote",
    "credential.reauthorization_requested",
    "connection.invalid",
    "feature.granted",
    "credential_request.reminder",
    "credential_request.escalation",
    "credential_request.sla_breach",
    "webhook.disabled",
];

/// What an email says, before it is laid out as text and as HTML.
struct Content {
    subject: String,
    /// Paragraphs.
    lines: Vec<String>,
    /// (label, URL) of the buttons, in order.
    links: Vec<(String, String)>,
}

fn text(payload: &Value, field: &str) -> String {
    match payload.get(field) {
        Some(Value::String(value)) => value.trim().to_string(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn joined(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn apps_of(payload: &Value) -> String {
    let apps: Vec<String> = payload
        .get("apps")
        .and_then(Value::as_array)
        .map(|apps| {
            apps.iter()
                .filter_map(Value::as_str)
                .filter(|label| !label.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if apps.is_empty() {
        "the apps it lists".into()
    } else {
        joined(&apps)
    }
}

/// "Acme CRM: Search contacts, Create a contact" per requested app, when the
/// payload names the modules.
fn modules_of(payload: &Value) -> Vec<String> {
    payload
        .get("appModules")
        .and_then(Value::as_array)
        .map(|apps| {
            apps.iter()
                .filter_map(|entry| {
                    let app = entry.get("app")?.as_str()?;
                    let modules: Vec<String> = entry
                        .get("modules")?
                        .as_array()?
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                    (!modules.is_empty()).then(|| format!("{app}: {}", modules.join(", ")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// "Ann Smith (ann@agency.test)", or whichever part is known.
fn person(name: &str, email: &str) -> String {
    match (name.is_empty(), email.is_empty()) {
        (false, false) => format!("{name} ({email})"),
        (false, true) => name.to_string(),
        (true, false) => email.to_string(),
        (true, true) => "someone".to_string(),
    }
}

/// The values a template's placeholders take (`templates::PLACEHOLDERS`).
pub(crate) fn values(
    payload: &Value,
    public_url: &str,
) -> std::collections::BTreeMap<&'static str, String> {
    let app = match text(payload, "appLabel") {
        label if label.is_empty() => text(payload, "app"),
        label => label,
    };
    let request_id = text(payload, "requestId");
    std::collections::BTreeMap::from([
        (
            "requester",
            person(
                &text(payload, "requesterName"),
                &text(payload, "requesterEmail"),
            ),
        ),
        ("recipient", text(payload, "recipientEmail")),
        ("request", text(payload, "requestName")),
        ("apps", apps_of(payload)),
        ("modules", modules_of(payload).join("; ")),
        ("app", app),
        ("reason", text(payload, "reason")),
        ("organization", text(payload, "organizationName")),
        ("team", text(payload, "teamName")),
        (
            "user",
            person(&text(payload, "userName"), &text(payload, "userEmail")),
        ),
        ("link", text(payload, "link")),
        ("invitation_link", text(payload, "invitationLink")),
        (
            "request_page",
            format!("{public_url}/received/{request_id}"),
        ),
        (
            "owner",
            person(&text(payload, "ownerName"), &text(payload, "ownerEmail")),
        ),
        ("nudge_number", text(payload, "nudgeNumber")),
        ("sla_hours", text(payload, "slaHours")),
    ])
}

/// What the email of `kind` says about `payload`; links are built on `public_url`.
fn content(kind: &str, payload: &Value, public_url: &str) -> Result<Content, UnknownKind> {
    let request = text(payload, "requestName");
    let request_id = text(payload, "requestId");
    let app = {
        let label = text(payload, "appLabel");
        if label.is_empty() {
            text(payload, "app")
        } else {
            label
        }
    };
    let requester = person(
        &text(payload, "requesterName"),
        &text(payload, "requesterEmail"),
    );
    let recipient = text(payload, "recipientEmail");
    let reason = text(payload, "reason");
    let received_page = format!("{public_url}/received/{request_id}");
    let organization = text(payload, "organizationName");
    let team = text(payload, "teamName");
    let from_where = match (organization.is_empty(), team.is_empty()) {
        (false, false) => format!(" of {organization} (team {team})"),
        (false, true) => format!(" of {organization}"),
        _ => String::new(),
    };
    let recipient_or = |fallback: &str| {
        if recipient.is_empty() {
            fallback.to_string()
        } else {
            recipient.clone()
        }
    };
    let modules = modules_of(payload);
    let what_for = if modules.is_empty() {
        String::new()
    } else {
        format!("Modules asked for — {}.", modules.join("; "))
    };
    let content = match kind {
        "credential_request.received" => Content {
            subject: format!("{requester} asks you for access: {request}"),
            lines: vec![
                format!("{requester}{from_where} asks you for access to {} with the credential request “{request}”.", apps_of(payload)),
                what_for.clone(),
                "Open the request to see what each app is for and which modules and permissions it includes; then authorize or decline each app. You can revoke access at any time later.".into(),
                "Nobody at the requesting side ever sees the secrets you enter.".into(),
            ],
            links: vec![("Open the request".into(), text(payload, "link"))],
        },
        "credential_request.invitation" => Content {
            subject: format!("{requester} asks you for access: {request}"),
            lines: vec![
                format!("{requester}{from_where} asks you for access to {} with the credential request “{request}”.", apps_of(payload)),
                what_for.clone(),
                "You do not have a Credence account yet: accept the invitation to create a guest account (it only lets you answer requests made to you), then open the request to authorize or decline each app. You can revoke access at any time later.".into(),
                "Nobody at the requesting side ever sees the secrets you enter.".into(),
            ],
            links: vec![
                ("Accept the invitation".into(), text(payload, "invitationLink")),
                ("Open the request".into(), text(payload, "link")),
            ],
        },
        "credential.authorized" => Content {
            subject: format!("{app} authorized: {request}"),
            lines: vec![
                format!("{} authorized {app} for your credential request “{request}”.", recipient_or("The recipient")),
                "The connection is ready: your team can use it now. The recipient may revoke it at any time; you will be told.".into(),
            ],
            links: vec![],
        },
        "credential.reauthorized" => Content {
            subject: format!("{app} reauthorized: {request}"),
            lines: vec![
                format!("{app} was authorized again for the credential request “{request}”.", ),
                "The connection works again; nothing else needs doing.".into(),
            ],
            links: vec![("Open the request".into(), received_page.clone())],
        },
        "credential.declined" => Content {
            subject: format!("{app} declined: {request}"),
            lines: vec![
                format!("{} declined {app} for your credential request “{request}”.", recipient_or("The recipient")),
                if reason.is_empty() { "No reason was given.".to_string() } else { format!("Reason: {reason}") },
                "You can delete the request, or send a new one once you have agreed on what is needed.".into(),
            ],
            links: vec![],
        },
        "credential.revoked" => Content {
            subject: format!("{app} revoked: {request}"),
            lines: vec![
                format!("{} revoked access to {app} given for your credential request “{request}”.", recipient_or("The recipient")),
                "The connection stopped working and its secret was destroyed. Scenarios using it will fail until access is given again; ask the recipient if you still need it.".into(),
            ],
            links: vec![],
        },
        "credential.delete_remote" => Content {
            subject: format!("Connection to {app} removed: {request}"),
            lines: vec![
                format!("{requester} removed the connection to {app} that you authorized for the credential request “{request}”; its secret was destroyed.", ),
                format!("{app} is pending again: you can authorize it anew from the request if you are asked to."),
            ],
            links: vec![("Open the request".into(), received_page.clone())],
        },
        "credential.reauthorization_requested" => Content {
            subject: format!("Please reauthorize {app}: {request}"),
            lines: vec![
                format!("{requester} asks you to authorize {app} again for the credential request “{request}”: the connection no longer works."),
                if reason.is_empty() { String::new() } else { format!("What happened: {reason}") },
                "Open the request and reauthorize the app, or decline it.".into(),
            ],
            links: vec![("Reauthorize".into(), received_page.clone())],
        },
        "connection.invalid" => Content {
            subject: format!("Connection to {app} stopped working: {request}"),
            lines: vec![
                format!("The connection to {app} given for the credential request “{request}” stopped working; Credence marked it invalid."),
                if reason.is_empty() { String::new() } else { format!("What the app said: {reason}") },
                "The recipient can reauthorize the app from the request; the requesting team can ask them to.".into(),
            ],
            links: vec![("Open the request".into(), received_page.clone())],
        },
        "feature.granted" => Content {
            subject: format!("{} may now send credential requests", person(&text(payload, "userName"), &text(payload, "userEmail"))),
            lines: vec![
                format!("{} of {organization} was given the credential-requests feature: they can now ask people inside and outside {organization} for access to their app accounts.", person(&text(payload, "userName"), &text(payload, "userEmail"))),
                "As an owner of the organization you are told of every grant. The audit log lists them.".into(),
            ],
            links: vec![],
        },
        "credential_request.reminder" => Content {
            subject: format!("Reminder: {requester} is waiting for your answer: {request}"),
            lines: vec![
                format!("{requester}{from_where} asked you for access to {} with the credential request “{request}”, and is still waiting for your answer.", apps_of(payload)),
                what_to_do(payload),
                "You can authorize or decline each app; if something is unclear, reply to the person who asked. You can revoke access at any time later.".into(),
            ],
            links: vec![("Open the request".into(), received_page.clone())],
        },
        "credential_request.escalation" => {
            let owner = person(&text(payload, "ownerName"), &text(payload, "ownerEmail"));
            Content {
                subject: format!("Reminder {}: {requester} still needs your answer: {request}", text(payload, "nudgeNumber")),
                lines: vec![
                    format!("{requester}{from_where} asked you for access to {} with the credential request “{request}”. This is reminder {} and the request is still not answered.", apps_of(payload), text(payload, "nudgeNumber")),
                    what_to_do(payload),
                    format!("{owner} follows this request up and is copied on this email: reply to them if you cannot answer, or decline the apps you will not give access to."),
                ],
                links: vec![("Open the request".into(), received_page.clone())],
            }
        }
        "credential_request.sla_breach" => {
            let recipient = person(&text(payload, "recipientName"), &text(payload, "recipientEmail"));
            Content {
                subject: format!("SLA breached: {request} is not authorized after {} h", text(payload, "slaHours")),
                lines: vec![
                    format!("The credential request “{request}” asked of {recipient} is not authorized {} hours after it was sent (status: {}).", text(payload, "slaHours"), text(payload, "status")),
                    if apps_of(payload) == "the apps it lists" { String::new() } else { format!("Still pending: {}.", apps_of(payload)) },
                    "You own this request: contact the recipient, or change the request. Credence goes on reminding them as the team's policy says.".into(),
                ],
                links: vec![],
            }
        }
        "webhook.disabled" => {
            let host = text(payload, "webhookHost");
            let owner = if team.is_empty() { format!("the organization {organization}") } else { format!("the team {team} of {organization}") };
            Content {
                subject: format!("Webhook endpoint {host} was disabled"),
                lines: vec![
                    format!("Credence disabled the webhook endpoint at {host} of {owner}: every delivery to it has failed since {}.", text(payload, "failingSince")),
                    "No more events are sent to it. Fix the receiver, then enable the endpoint again (PATCH /api/v2/webhooks/{id} with \"enabled\": true); its delivery log shows what it answered, and each failed delivery can be replayed.".replace("{id}", &text(payload, "webhookId")),
                    "You are told as an owner of the organization, or because you created the endpoint.".into(),
                ],
                links: vec![],
            }
        }
        other => return Err(UnknownKind(other.to_string())),
    };
    Ok(Content {
        lines: content
            .lines
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect(),
        links: content
            .links
            .into_iter()
            .filter(|(_, url)| !url.is_empty())
            .collect(),
        ..content
    })
}

/// What a reminder asks the recipient to do: open their page of the
/// request, after accepting the invitation when they have no account yet.
/// (The request's own link is stored only as a hash: a reminder cannot send
/// it again, and the invitation's link stays in the first email.)
fn what_to_do(payload: &Value) -> String {
    if payload.get("recipientJoined").and_then(Value::as_bool) == Some(false) {
        "You do not have a Credence account yet: accept the invitation in the first email we sent you (it creates a guest account that only answers requests made to you), then open the request below.".into()
    } else {
        "Sign in and open the request below to see what each app is for and which modules and permissions it includes.".into()
    }
}

/// The addresses a payload copies (`cc`), each one a single line.
fn cc_of(payload: &Value) -> Vec<String> {
    payload
        .get("cc")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|address| !address.is_empty() && !address.contains(['\r', '\n']))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Renders the email of `kind` for `payload`.
pub fn render(kind: &str, payload: &Value, public_url: &str) -> Result<Email, UnknownKind> {
    let content = content(kind, payload, public_url)?;
    let mut text = String::new();
    for line in &content.lines {
        text.push_str(line);
        text.push_str("\n\n");
    }
    for (label, url) in &content.links {
        text.push_str(&format!("{label}: {url}\n"));
    }
    text.push_str("\n-- \nCredence\n");
    let html = page(&content).into_string();
    Ok(Email {
        subject: content.subject.replace(['\r', '\n'], " "),
        text,
        html,
        cc: cc_of(payload),
    })
}

fn page(content: &Content) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (content.subject) }
            }
            body style="font-family: -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1f2937; background: #f3f4f6; margin: 0; padding: 24px;" {
                div style="max-width: 560px; margin: 0 auto; background: #ffffff; border-radius: 8px; padding: 32px;" {
                    @for line in &content.lines {
                        p style="font-size: 15px; line-height: 1.5;" { (line) }
                    }
                    @for (label, url) in &content.links {
                        p {
                            a href=(url) style="display: inline-block; background: #4f46e5; color: #ffffff; padding: 10px 18px; border-radius: 6px; text-decoration: none;" { (label) }
                        }
                        p style="font-size: 12px; color: #6b7280; word-break: break-all;" { (url) }
                    }
                    p style="font-size: 12px; color: #6b7280;" { (PreEscaped("&mdash; ")) "Credence" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_renders_and_values_are_escaped_in_html() {
        let payload = json!({
            "requestName": "<script>alert(1)</script>",
            "requesterName": "Ann & Co",
            "requesterEmail": "ann@agency.test",
            "apps": ["Acme CRM"],
            "appModules": [{ "app": "Acme CRM", "modules": ["Search contacts", "<b>Bold</b>"] }],
            "link": "http://credence.test/requests/abc",
            "invitationLink": "http://credence.test/invitations/def",
            "requestId": "r1",
            "app": "acme",
            "reason": "no",
            "userName": "Bo",
            "organizationName": "Org",
        });
        for kind in KINDS {
            let email = render(kind, &payload, "http://credence.test").unwrap();
            assert!(!email.subject.is_empty(), "{kind}");
            assert!(!email.html.contains("<script>"), "{kind}: {}", email.html);
        }
        let received = render("credential_request.received", &payload, "http://x").unwrap();
        assert!(received.text.contains("http://credence.test/requests/abc"));
        assert!(received
            .html
            .contains("href=\"http://credence.test/requests/abc\""));
        assert!(received.text.contains("Acme CRM"));
        assert!(received
            .text
            .contains("Acme CRM: Search contacts, <b>Bold</b>"));
        assert!(received.html.contains("&lt;b&gt;Bold&lt;/b&gt;"));
        assert!(received.html.contains("Ann &amp; Co"));
        assert!(render("nobody.knows", &payload, "http://x").is_err());
    }

    #[test]
    fn reminders_link_to_the_recipients_page_and_an_escalation_copies_the_owner() {
        let payload = json!({
            "requestId": "r1",
            "requestName": "Onboarding",
            "requesterName": "Rita",
            "apps": ["Acme CRM"],
            "recipientJoined": false,
            "nudgeNumber": 2,
            "ownerName": "Olive",
            "ownerEmail": "olive@agency.test",
            "cc": ["olive@agency.test", "bad\r\nBcc: x@evil.test", ""],
        });
        let mut friendly = payload.clone();
        friendly.as_object_mut().unwrap().remove("cc");
        let reminder = render("credential_request.reminder", &friendly, "http://c.test").unwrap();
        assert!(
            reminder.text.contains("http://c.test/received/r1"),
            "{}",
            reminder.text
        );
        assert!(reminder
            .text
            .contains("accept the invitation in the first email"));
        assert!(reminder.cc.is_empty());
        let escalation =
            render("credential_request.escalation", &payload, "http://c.test").unwrap();
        assert!(
            escalation.subject.starts_with("Reminder 2:"),
            "{}",
            escalation.subject
        );
        assert!(escalation.text.contains("Olive (olive@agency.test)"));
        assert_eq!(
            escalation.cc,
            ["olive@agency.test"],
            "a header break is never copied"
        );
    }
}
