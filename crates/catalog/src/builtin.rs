//! The apps that ship with Credence, compiled into the binary so a deployment
//! needs no data directory. A test lists `apps/` and fails when this list and
//! the directory disagree, so a new file cannot be forgotten here.

/// `(file name, contents)` of every file in `crates/catalog/apps/`, sorted by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("airtable.toml", include_str!("../apps/airtable.toml")),
    ("asana.toml", include_str!("../apps/asana.toml")),
    ("calendly.toml", include_str!("../apps/calendly.toml")),
    ("dropbox.toml", include_str!("../apps/dropbox.toml")),
    ("github.toml", include_str!("../apps/github.toml")),
    ("gmail.toml", include_str!("../apps/gmail.toml")),
    (
        "google-calendar.toml",
        include_str!("../apps/google-calendar.toml"),
    ),
    (
        "google-drive.toml",
        include_str!("../apps/google-drive.toml"),
    ),
    (
        "google-sheets.toml",
        include_str!("../apps/google-sheets.toml"),
    ),
    ("hubspot.toml", include_str!("../apps/hubspot.toml")),
    ("intercom.toml", include_str!("../apps/intercom.toml")),
    ("jira.toml", include_str!("../apps/jira.toml")),
    ("mailchimp.toml", include_str!("../apps/mailchimp.toml")),
    (
        "microsoft-entra-id.toml",
        include_str!("../apps/microsoft-entra-id.toml"),
    ),
    ("notion.toml", include_str!("../apps/notion.toml")),
    ("outlook.toml", include_str!("../apps/outlook.toml")),
    ("pipedrive.toml", include_str!("../apps/pipedrive.toml")),
    ("salesforce.toml", include_str!("../apps/salesforce.toml")),
    ("shopify.toml", include_str!("../apps/shopify.toml")),
    ("slack.toml", include_str!("../apps/slack.toml")),
    ("stripe.toml", include_str!("../apps/stripe.toml")),
    ("trello.toml", include_str!("../apps/trello.toml")),
    ("typeform.toml", include_str!("../apps/typeform.toml")),
    ("webflow.toml", include_str!("../apps/webflow.toml")),
    ("zendesk.toml", include_str!("../apps/zendesk.toml")),
];
