//! The operator's own email templates, overriding the built-in ones
//! (`mail.rs`) from a directory (`mail_templates_dir`): `<kind>.subject`,
//! `<kind>.txt` and `<kind>.html`, any of them, for the kinds of
//! `mail::KINDS`. A template is text with `{{name}}` placeholders
//! ([`PLACEHOLDERS`]); in the HTML one every value is escaped. Everything is
//! read and checked at start: an unknown file, kind or placeholder is an error
//! naming the file, so a typo never reaches a recipient.

use crate::mail::{self, Email, UnknownKind};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// What a template may say, and what each is.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("requester", "who asked: name (email)"),
    ("recipient", "the recipient's email"),
    ("request", "the request's name"),
    (
        "apps",
        "the requested apps, e.g. \"Acme CRM and Beta Desk\"",
    ),
    ("modules", "the modules asked for, per app"),
    ("app", "the app a credential event is about"),
    ("reason", "a decline's or a failure's reason (may be empty)"),
    ("organization", "the requesting organization"),
    ("team", "the requesting team"),
    ("user", "feature granted: who was given the feature"),
    ("link", "the request's link (request received, invitation)"),
    ("invitation_link", "the invitation's link (invitation)"),
    ("request_page", "the recipient's page of the request"),
    (
        "owner",
        "reminders: who follows the request up: name (email)",
    ),
    (
        "nudge_number",
        "reminders: which reminder this is (1, 2, …)",
    ),
    ("sla_hours", "SLA breach: the threshold in hours"),
];

/// One part of a template: literal text and placeholders, in order.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Value(String),
}

fn parse(file: &Path, text: &str) -> anyhow::Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        pieces.push(Piece::Text(rest[..open].to_string()));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| {
            anyhow::anyhow!("template {} has a {{{{ without its }}}}", file.display())
        })?;
        let name = after[..close].trim();
        if !PLACEHOLDERS.iter().any(|(known, _)| *known == name) {
            let known: Vec<&str> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
            anyhow::bail!(
                "template {} names {{{{{name}}}}}, which is not one of {}",
                file.display(),
                known.join(", ")
            );
        }
        pieces.push(Piece::Value(name.to_string()));
        rest = &after[close + 2..];
    }
    pieces.push(Piece::Text(rest.to_string()));
    Ok(pieces)
}

fn fill(pieces: &[Piece], values: &BTreeMap<&str, String>, escape: bool) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Value(name) => {
                let value = values.get(name.as_str()).map(String::as_str).unwrap_or("");
                if escape {
                    out.push_str(&maud::html! { (value) }.into_string());
                } else {
                    out.push_str(value);
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, Default)]
struct Overrides {
    subject: Option<Vec<Piece>>,
    text: Option<Vec<Piece>>,
    html: Option<Vec<Piece>>,
}

/// The built-in templates with the operator's overrides. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    overrides: std::sync::Arc<BTreeMap<String, Overrides>>,
}

impl Templates {
    /// The built-in templates, overridden by the files of `dir` when given.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Templates> {
        let Some(dir) = dir else {
            return Ok(Templates::default());
        };
        let entries = std::fs::read_dir(dir).map_err(|error| {
            anyhow::anyhow!(
                "cannot read the mail templates directory {}: {error}",
                dir.display()
            )
        })?;
        let mut overrides: BTreeMap<String, Overrides> = BTreeMap::new();
        for entry in entries {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let Some((kind, part)) = name.rsplit_once('.') else {
                anyhow::bail!(
                    "{} is not a template: name it <kind>.subject, <kind>.txt or <kind>.html",
                    path.display()
                );
            };
            if !mail::KINDS.contains(&kind) {
                anyhow::bail!(
                    "{} is for {kind:?}, which is not a kind of email; the kinds are {}",
                    path.display(),
                    mail::KINDS.join(", ")
                );
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
            let pieces = Some(parse(&path, &text)?);
            let slot = overrides.entry(kind.to_string()).or_default();
            match part {
                "subject" => slot.subject = pieces,
                "txt" => slot.text = pieces,
                "html" => slot.html = pieces,
                other => anyhow::bail!(
                    "{} ends in .{other}; a template ends in .subject, .txt or .html",
                    path.display()
                ),
            }
        }
        Ok(Templates {
            overrides: std::sync::Arc::new(overrides),
        })
    }

    /// The email of `kind` for `payload`: the built-in one, with each part the
    /// operator overrode replaced.
    pub fn render(
        &self,
        kind: &str,
        payload: &Value,
        public_url: &str,
    ) -> Result<Email, UnknownKind> {
        let mut email = mail::render(kind, payload, public_url)?;
        let Some(overrides) = self.overrides.get(kind) else {
            return Ok(email);
        };
        let values = mail::values(payload, public_url);
        if let Some(subject) = &overrides.subject {
            email.subject = fill(subject, &values, false)
                .trim()
                .replace(['\r', '\n'], " ");
        }
        if let Some(text) = &overrides.text {
            email.text = fill(text, &values, false);
        }
        if let Some(html) = &overrides.html {
            email.html = fill(html, &values, true);
        }
        Ok(email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_override_replaces_its_part_escapes_html_and_typos_are_refused() {
        let dir = tempfile_dir();
        std::fs::write(
            dir.join("credential.declined.subject"),
            "Declined: {{ app }}\n",
        )
        .unwrap();
        std::fs::write(dir.join("credential.declined.html"), "<p>{{reason}}</p>").unwrap();
        let templates = Templates::load(Some(&dir)).unwrap();
        let payload = json!({ "app": "acme", "reason": "<no>", "requestName": "R" });
        let email = templates
            .render("credential.declined", &payload, "http://x")
            .unwrap();
        assert_eq!(email.subject, "Declined: acme");
        assert_eq!(email.html, "<p>&lt;no&gt;</p>");
        assert!(
            email.text.contains("Reason: <no>"),
            "the built-in text stays"
        );

        std::fs::write(dir.join("credential.declined.txt"), "{{reasn}}").unwrap();
        let error = Templates::load(Some(&dir)).unwrap_err().to_string();
        assert!(
            error.contains("{{reasn}}") && error.contains("credential.declined.txt"),
            "{error}"
        );
        std::fs::remove_file(dir.join("credential.declined.txt")).unwrap();
        std::fs::write(dir.join("credential.declind.txt"), "x").unwrap();
        let error = Templates::load(Some(&dir)).unwrap_err().to_string();
        assert!(error.contains("not a kind of email"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("credence-templates-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
