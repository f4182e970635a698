//! Settings → Webhooks, Settings → Reminder policy and the local mailbox, in
//! a real browser (issue 11, item 5) and, for their refusals, over HTTP as a
//! browser without script: an owner adds a webhook endpoint, reads its
//! signing secret once (it verifies a real delivery with the official
//! Standard Webhooks library, and no later page holds it), sees the delivery
//! in the endpoint's log, disables, enables and deletes it; a team admin
//! saves a reminder policy, a bad value is refused next to its field naming
//! the limit, and the Slack URL is never drawn back; an owner reads the email
//! a request sent in the mailbox, and a team member gets a 404 for all of it;
//! on an instance with two organizations, each one's owner reads only its own
//! mail there (another's, or mail of none, is a 404), the operator's CLI all.

use crate::on_both_backends;
use crate::support::chrome::Browser;
use crate::support::{
    captured_logs, csrf_of, fast, page, post_form, register_secret, signed_in, wait_until, Agency,
    Person, WebhookSink, SCOPES,
};
use credence::service::identity;
use credence_store::Backend;
use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::json;

async fn sign_in(browser: &Browser, agency: &Agency, person: &Person) {
    browser.open(&agency.app, "/sign-in").await;
    browser.fill("Email", &person.email).await;
    browser.fill("Password", &person.password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Signed in as").await;
}

/// An agency whose job runner passes by itself (the outbox to the local
/// mailbox, webhooks to the sink on 127.0.0.1, which the operator allows).
async fn running_agency(backend: Backend) -> Agency {
    Agency::start_with(backend, &[], |config| {
        let mut jobs = fast(credence::service::clock::Clock::system());
        jobs.webhooks.allow_private_hosts = true;
        config.jobs = jobs;
        config.reminders.allow_private_hosts = true;
    })
    .await
}

/// An owner of the agency's organization, admin of its team.
async fn owner(agency: &Agency) -> Person {
    agency
        .app
        .add_person(
            "owen@agency.example",
            agency.app.organization,
            "owner",
            Some((agency.app.team, "admin")),
        )
        .await
}

/// An admin of the agency's team who is a plain member of the organization.
async fn team_admin(agency: &Agency) -> Person {
    agency
        .app
        .add_person(
            "ada@agency.example",
            agency.app.organization,
            "member",
            Some((agency.app.team, "admin")),
        )
        .await
}

async fn an_owner_adds_a_webhook_reads_its_secret_once_and_its_delivery_log_then_deletes_it(
    backend: Backend,
) {
    let agency = running_agency(backend).await;
    let owen = owner(&agency).await;
    let sink = WebhookSink::start().await;
    let browser = Browser::start(&format!("settings_webhooks/{backend:?}")).await;
    sign_in(&browser, &agency, &owen).await;
    browser.click_link("Settings").await;
    browser.click_link("Webhooks").await;
    browser.wait_for_text("Webhooks of the team").await;
    browser.step("webhooks").await;

    browser.fill("URL", &sink.url()).await;
    browser.check("credential_request.created").await;
    browser.click_button("Add endpoint").await;
    browser.wait_for_text("Webhook endpoint created").await;
    let secret = browser.value_of("Signing secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    register_secret(&secret);
    browser.step("secret shown once").await;

    // The secret is on no later page.
    let mut visited = Vec::new();
    browser.open(&agency.app, "/settings/webhooks").await;
    browser.wait_for_text("Webhooks of the team").await;
    visited.push(browser.html().await);
    browser.click_link(&sink.url()).await;
    browser.wait_for_text("Delivery log").await;
    assert!(browser.text().await.contains("Nothing was sent"));
    visited.push(browser.html().await);

    // An event: a request of the team. It reaches the sink, signed with the
    // secret the page showed, and the log shows it delivered.
    let (request, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    wait_until("the sink receives credential_request.created", || async {
        !sink.received_of("credential_request.created").is_empty()
    })
    .await;
    let message = sink.received_of("credential_request.created")[0].clone();
    let verified = message
        .verify_with_official_library(&secret)
        .await
        .expect("the secret shown verifies the delivery");
    assert_eq!(verified["data"]["target"]["id"], json!(request));
    let reader = agency.app.token(owen.id, "webhooks:read").await;
    let id = agency
        .app
        .db()
        .await
        .list_webhook_endpoints(agency.app.organization, Some(agency.app.team.0))
        .await
        .unwrap()[0]
        .id;
    wait_until("the delivery is logged as delivered", || async {
        let (_, log) = agency
            .app
            .get_json(&format!("/api/v2/webhooks/{id}/deliveries"), &reader)
            .await;
        log["deliveries"][0]["state"] == "delivered"
    })
    .await;
    browser.client().refresh().await.unwrap();
    browser.wait_for_text("Delivered").await;
    let text = browser.text().await;
    assert!(text.contains("credential_request.created"), "{text}");
    assert!(text.contains("200"), "{text}");
    browser.step("delivery log").await;
    visited.push(browser.html().await);

    browser.click_button("Disable endpoint").await;
    browser.wait_for_text("disabled.").await;
    browser.wait_for_text("Enable endpoint").await;
    visited.push(browser.html().await);
    browser.step("disabled").await;
    browser.click_button("Enable endpoint").await;
    browser.wait_for_text("enabled.").await;
    visited.push(browser.html().await);

    browser.click_link("Delete endpoint…").await;
    browser.wait_for_text("Delete this webhook endpoint?").await;
    browser.step("delete confirmation").await;
    visited.push(browser.html().await);
    browser.click_button("Delete endpoint").await;
    browser.wait_for_text("deleted.").await;
    browser.wait_for_text("No endpoints yet.").await;
    browser.step("deleted").await;
    visited.push(browser.html().await);
    for html in &visited {
        assert!(!html.contains(&secret), "a later page holds the secret");
        assert!(!html.contains("whsec_"), "a later page holds a secret");
    }
    assert!(
        !captured_logs().contains(&secret),
        "a log line holds the secret"
    );
    assert!(agency
        .app
        .db()
        .await
        .get_webhook_endpoint(id)
        .await
        .unwrap()
        .is_none());
    let events = agency.audit_events().await;
    for event in ["webhook.created", "webhook.updated", "webhook.deleted"] {
        assert!(events.contains(&event.to_string()), "{event}: {events:?}");
    }
    drop(browser);
    agency.app.stop().await;
}

async fn a_team_admin_saves_a_reminder_policy_and_the_slack_url_is_never_drawn_back(
    backend: Backend,
) {
    let agency = running_agency(backend).await;
    let ada = team_admin(&agency).await;
    let slack = "https://hooks.slack.test/services/T0001/B0001/first-slack-key";
    let other_slack = "https://hooks.slack.test/services/T0001/B0001/second-slack-key";
    register_secret(slack);
    register_secret(other_slack);
    let browser = Browser::start(&format!("settings_reminders/{backend:?}")).await;
    sign_in(&browser, &agency, &ada).await;
    browser.click_link("Settings").await;
    browser.click_link("Reminder policy").await;
    browser
        .wait_for_text("Reminder policy of the team Default")
        .await;
    assert_eq!(browser.value_of("First nudge after (hours)").await, "24");
    assert!(browser
        .text()
        .await
        .contains("Slack incoming webhook: not set"));
    browser.step("reminder policy").await;

    browser.fill("First nudge after (hours)", "12").await;
    browser
        .fill(
            "Sponsor copied on escalations (optional)",
            "sponsor@agency.example",
        )
        .await;
    browser.fill("Slack webhook URL (optional)", slack).await;
    browser.click_button("Save reminder policy").await;
    browser.wait_for_text("saved.").await;
    assert_eq!(browser.value_of("First nudge after (hours)").await, "12");
    assert!(browser.text().await.contains("Slack incoming webhook: set"));
    assert_eq!(
        browser
            .value_of("Replace the Slack webhook URL (optional)")
            .await,
        ""
    );
    assert!(!browser.html().await.contains("slack-key"));
    browser.step("saved").await;

    // Over the limit: refused next to the field, with the limit; nothing
    // changes, and the new Slack URL typed is not drawn back either.
    browser.fill("SLA threshold (hours)", "5000").await;
    browser
        .fill("Replace the Slack webhook URL (optional)", other_slack)
        .await;
    browser.click_button("Save reminder policy").await;
    browser.wait_for_text("between 1 and 2160").await;
    let error = browser
        .script(
            "const f = document.getElementById('sla_hours'); return [f.getAttribute('aria-invalid'), document.getElementById('slaHours-error').innerText, f.getAttribute('aria-describedby')];",
            vec![],
        )
        .await;
    assert_eq!(error[0], "true", "{error}");
    assert!(
        error[1]
            .as_str()
            .unwrap()
            .starts_with("SLA threshold is 5000"),
        "{error}"
    );
    assert!(
        error[2].as_str().unwrap().contains("slaHours-error"),
        "{error}"
    );
    assert_eq!(browser.value_of("SLA threshold (hours)").await, "5000");
    assert_eq!(
        browser
            .value_of("Replace the Slack webhook URL (optional)")
            .await,
        ""
    );
    assert!(!browser.html().await.contains("slack-key"));
    browser.step("refused").await;
    let token = agency.app.token(ada.id, "credential-requests:read").await;
    let path = format!(
        "/api/v2/credential-requests/teams/{}/reminder-policy",
        agency.app.team
    );
    let (status, policy) = agency.app.get_json(&path, &token).await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    assert_eq!(policy["reminderPolicy"]["slaHours"], 72, "{policy}");
    assert_eq!(policy["reminderPolicy"]["firstAfterHours"], 12, "{policy}");
    assert_eq!(
        policy["reminderPolicy"]["sponsorCc"],
        "sponsor@agency.example"
    );
    assert_eq!(policy["reminderPolicy"]["channels"]["slack"], true);

    // Fixed, with the Slack webhook removed.
    browser.fill("SLA threshold (hours)", "96").await;
    browser.check("Remove the Slack webhook").await;
    browser.click_button("Save reminder policy").await;
    browser.wait_for_text("saved.").await;
    assert!(browser
        .text()
        .await
        .contains("Slack incoming webhook: not set"));
    let (_, policy) = agency.app.get_json(&path, &token).await;
    assert_eq!(policy["reminderPolicy"]["slaHours"], 96, "{policy}");
    assert_eq!(policy["reminderPolicy"]["channels"]["slack"], false);
    let changes = agency.app.audit_entries(&["reminder_policy.changed"]).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(!format!("{changes:?}").contains("slack-key"));
    drop(browser);
    agency.app.stop().await;
}

async fn an_owner_reads_a_requests_email_in_the_mailbox_and_a_member_gets_404(backend: Backend) {
    let agency = running_agency(backend).await;
    let owen = owner(&agency).await;
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    agency.app.wait_for_outbox_delivered().await;

    let browser = Browser::start(&format!("mailbox/{backend:?}")).await;
    sign_in(&browser, &agency, &owen).await;
    browser.click_link("Settings").await;
    browser.click_link("Mailbox").await;
    browser.wait_for_text("Local mailbox").await;
    assert!(browser.text().await.contains("tom@agency.example"));
    browser.step("mailbox").await;
    let link = browser
        .client()
        .find(Locator::Css("a[href^='/mailbox/']"))
        .await
        .unwrap();
    link.click().await.unwrap();
    browser.wait_for_text("HTML part (source)").await;
    let text = browser.text().await;
    assert!(text.contains("tom@agency.example"), "{text}");
    assert!(text.contains("Onboarding Acme"), "the text part: {text}");
    browser.step("an email").await;
    browser
        .client()
        .find(Locator::XPath(
            "//summary[normalize-space()='HTML part (source)']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The HTML part is shown as its source: its tags are text, not elements.
    let shown = browser
        .script(
            "const s = document.querySelector('pre.mail-source'); return [s.innerText, s.querySelectorAll('*').length];",
            vec![],
        )
        .await;
    assert!(shown[0].as_str().unwrap().contains("<"), "{shown}");
    assert_eq!(shown[1], 1, "only the code element: {shown}");
    browser.step("the html source").await;
    let id = browser
        .path()
        .await
        .trim_start_matches("/mailbox/")
        .to_string();
    drop(browser);

    // A team member (and the requester) may not read it: 404.
    for person in [&agency.teammate, &agency.requester] {
        let client = signed_in(&agency.app, person).await;
        for path in ["/mailbox".to_string(), format!("/mailbox/{id}")] {
            let (status, html) = page(&client, &agency.app.url(&path)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {html}");
            assert!(!html.contains("Onboarding Acme"));
        }
        let (_, settings) = page(&client, &agency.app.url("/settings")).await;
        assert!(!settings.contains("href=\"/mailbox\""), "{settings}");
    }
    agency.app.stop().await;
}

/// One organization's request on an instance with two: its owner, admin of
/// its team, and the request's recipient; answers (owner, recipient email).
async fn a_second_organization_with_a_request(agency: &Agency) -> (Person, String) {
    let app = &agency.app;
    let borealis = identity::create_organization(&app.store, "Borealis", "enterprise", false)
        .await
        .unwrap()
        .id;
    let team = identity::create_team(&app.store, borealis, "Borealis team")
        .await
        .unwrap()
        .id;
    let bea = app
        .add_person(
            "bea@borealis.example",
            borealis,
            "owner",
            Some((team, "admin")),
        )
        .await;
    let ben = app
        .add_person(
            "ben@borealis.example",
            borealis,
            "member",
            Some((team, "member")),
        )
        .await;
    credence::service::features::grant(&app.store, &app.vault(), &bea.email)
        .await
        .unwrap();
    let token = app.token(bea.id, SCOPES).await;
    let (status, body) = app
        .post(
            "/api/v2/credential-requests/requests/v2",
            &token,
            Some(json!({
                "name": "Borealis rollout",
                "teamId": team,
                "credentials": [{ "appName": "beta-desk", "appModules": ["*"] }],
                "provider": { "providerMakeUserId": ben.id },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (bea, ben.email)
}

/// The ids the mailbox list page links to.
fn listed_ids(html: &str) -> std::collections::BTreeSet<i64> {
    html.split("href=\"/mailbox/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

async fn each_organizations_owner_reads_only_its_own_mail_in_the_mailbox(backend: Backend) {
    let agency = running_agency(backend).await;
    let app = &agency.app;
    let owen = owner(&agency).await;
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let (bea, ben) = a_second_organization_with_a_request(&agency).await;
    // Mail of no organization, as rows written before migration 0018 are.
    let mut tx = app.store.begin().await.unwrap();
    credence::service::audit::notify(
        &mut tx,
        &app.vault(),
        None,
        "credential.authorized",
        "nobody@clients.test",
        json!({ "requestName": "Orphan mail", "app": "acme-crm" }),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.wait_for_outbox_delivered().await;

    let entries = app.db().await.list_mailbox(None, i64::MAX).await.unwrap();
    let of = |organization: Option<i64>| -> std::collections::BTreeSet<i64> {
        entries
            .iter()
            .filter(|e| e.organization_id == organization)
            .map(|e| e.id)
            .collect()
    };
    let by_recipient = |to: &str| {
        entries
            .iter()
            .find(|e| e.recipient_email == to)
            .unwrap_or_else(|| panic!("an email to {to}: {entries:?}"))
    };
    let to_tom = by_recipient(&agency.teammate.email);
    let to_ben = by_recipient(&ben);
    let orphan = by_recipient("nobody@clients.test");
    assert_eq!(to_tom.organization_id, Some(app.organization.0));
    assert_ne!(to_ben.organization_id, to_tom.organization_id);
    assert!(to_ben.organization_id.is_some());
    assert_eq!(orphan.organization_id, None);

    let cases = [
        (&owen, to_tom, to_ben, "Onboarding Acme", "Borealis rollout"),
        (&bea, to_ben, to_tom, "Borealis rollout", "Onboarding Acme"),
    ];
    for (person, own, other, own_name, other_name) in cases {
        let client = signed_in(app, person).await;
        let (status, list) = page(&client, &app.url("/mailbox")).await;
        assert_eq!(status, StatusCode::OK, "{}: {list}", person.email);
        assert_eq!(listed_ids(&list), of(own.organization_id), "{list}");
        assert!(list.contains(&own.recipient_email), "{list}");
        assert!(!list.contains(&other.recipient_email), "{list}");
        assert!(!list.contains("nobody@clients.test"), "{list}");
        let (status, shown) = page(&client, &app.url(&format!("/mailbox/{}", own.id))).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert!(shown.contains(own_name), "{shown}");
        for id in [other.id, orphan.id] {
            let (status, refused) = page(&client, &app.url(&format!("/mailbox/{id}"))).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{}: {refused}", person.email);
            assert!(!refused.contains(other_name), "{refused}");
            assert!(!refused.contains("Orphan mail"), "{refused}");
        }
    }

    // The operator's CLI still reads the whole instance's mailbox.
    let (ok, listed, stderr) = app.operator(&["mail", "list"]).await;
    assert!(ok, "{stderr}");
    for to in [agency.teammate.email.as_str(), &ben, "nobody@clients.test"] {
        assert!(listed.contains(to), "{to}: {listed}");
    }
    let (ok, shown, stderr) = app
        .operator(&["mail", "show", &orphan.id.to_string()])
        .await;
    assert!(
        ok && shown.contains("To: nobody@clients.test"),
        "{stderr}{shown}"
    );
    agency.app.stop().await;
}

async fn webhook_and_reminder_forms_refuse_bad_input_by_field_and_hide_what_a_member_may_not_manage(
    backend: Backend,
) {
    let agency = running_agency(backend).await;
    let app = &agency.app;
    let owen = owner(&agency).await;
    let owner_browser = signed_in(app, &owen).await;
    let (status, hooks) = page(&owner_browser, &app.url("/settings/webhooks")).await;
    assert_eq!(status, StatusCode::OK, "{hooks}");
    assert!(
        hooks.contains("href=\"/settings/webhooks\""),
        "the tab: {hooks}"
    );
    let csrf = csrf_of(&hooks);

    // A bad URL and no event: both named next to their field; nothing made.
    let (status, _, refused) = post_form(
        &owner_browser,
        &app.url("/settings/webhooks"),
        Some(&csrf),
        &[("owner", "team"), ("url", "not a url"), ("enabled", "yes")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains(r#"id="events-error""#), "{refused}");
    assert!(refused.contains("events is empty"), "{refused}");
    assert!(refused.contains(r#"value="not a url""#), "kept: {refused}");
    let (status, _, refused) = post_form(
        &owner_browser,
        &app.url("/settings/webhooks"),
        Some(&csrf),
        &[
            ("owner", "team"),
            ("url", "not a url"),
            ("events", "credential.authorized"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains(r#"id="url-error""#), "{refused}");
    assert!(refused.contains("is not an absolute URL"), "{refused}");
    assert!(refused.contains(r#"aria-invalid="true""#), "{refused}");
    let (status, _, refused) = post_form(
        &owner_browser,
        &app.url("/settings/webhooks"),
        Some(&csrf),
        &[
            ("owner", "team"),
            ("url", "https://hooks.example/in"),
            ("events", "no.such_event"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains("is not one Credence sends"), "{refused}");
    // Without the form token, nothing either.
    let (status, _, _) = post_form(
        &owner_browser,
        &app.url("/settings/webhooks"),
        None,
        &[
            ("owner", "team"),
            ("url", "http://127.0.0.1:9/in"),
            ("events", "*"),
        ],
    )
    .await;
    assert!(status.is_client_error(), "{status}");
    let mut db = app.db().await;
    assert!(db
        .list_webhook_endpoints(app.organization, Some(app.team.0))
        .await
        .unwrap()
        .is_empty());
    drop(db);

    // An endpoint of the team, made by the owner.
    let (status, _, made) = post_form(
        &owner_browser,
        &app.url("/settings/webhooks"),
        Some(&csrf),
        &[
            ("owner", "team"),
            ("url", "http://127.0.0.1:9/in"),
            ("events", "*"),
            ("enabled", "yes"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    // The secret, shown this once, joins the suite's secrets: every page read
    // below (`page`, `post_form`) is checked not to hold it.
    let at = made
        .find(r#"id="webhook-secret""#)
        .expect("the secret's field");
    let value = &made[at..];
    let value = value[value.find("value=\"").unwrap() + 7..]
        .split('"')
        .next()
        .unwrap();
    assert!(value.starts_with("whsec_"), "{value}");
    register_secret(value);
    let endpoint = app
        .db()
        .await
        .list_webhook_endpoints(app.organization, Some(app.team.0))
        .await
        .unwrap()
        .remove(0);

    // A team member manages none of it: every page and post is a 404, and
    // the endpoint stays.
    let member = signed_in(app, &agency.requester).await;
    let (_, settings) = page(&member, &app.url("/settings")).await;
    let member_csrf = csrf_of(&settings);
    // Nor is the tab shown to them (the reminder policy, which they read, is).
    assert!(
        !settings.contains("href=\"/settings/webhooks\""),
        "{settings}"
    );
    assert!(
        settings.contains("href=\"/settings/reminders\""),
        "{settings}"
    );
    for path in [
        "/settings/webhooks".to_string(),
        format!("/settings/webhooks/{}", endpoint.id),
        format!("/settings/webhooks/{}/delete", endpoint.id),
    ] {
        let (status, _) = page(&member, &app.url(&path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    for (path, fields) in [
        (format!("/settings/webhooks/{}/delete", endpoint.id), vec![]),
        (
            format!("/settings/webhooks/{}/enabled", endpoint.id),
            vec![("enabled", "false")],
        ),
    ] {
        let (status, _, _) = post_form(&member, &app.url(&path), Some(&member_csrf), &fields).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let kept = app
        .db()
        .await
        .get_webhook_endpoint(endpoint.id)
        .await
        .unwrap()
        .unwrap();
    assert!(kept.enabled);

    // The reminder policy: a member reads it but may not change it; a word
    // where a number goes is refused by name; another team's is a 404.
    let (status, policy) = page(&member, &app.url("/settings/reminders")).await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    assert!(!policy.contains("Save reminder policy"), "{policy}");
    let form = |team: String, max: &'static str| {
        vec![
            ("team", team),
            ("first_after_hours", "24".to_string()),
            ("every_hours", "48".to_string()),
            ("max_count", max.to_string()),
            ("sla_hours", "72".to_string()),
            ("email", "yes".to_string()),
            ("sponsor_cc", String::new()),
            ("slack_webhook_url", String::new()),
        ]
    };
    let post = |client: &reqwest::Client, csrf: &str, fields: Vec<(&'static str, String)>| {
        let client = client.clone();
        let csrf = csrf.to_string();
        let url = app.url("/settings/reminders");
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(&client, &url, Some(&csrf), &fields).await
        }
    };
    let (status, _, _) = post(&member, &member_csrf, form(app.team.0.to_string(), "9")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post(
        &member,
        &member_csrf,
        form(agency.other_team.0.to_string(), "9"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, refused) =
        post(&owner_browser, &csrf, form(app.team.0.to_string(), "many")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains(r#"id="maxCount-error""#), "{refused}");
    assert!(refused.contains("is not a whole number"), "{refused}");
    let (status, _, refused) =
        post(&owner_browser, &csrf, form(app.team.0.to_string(), "21")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused.contains("Maximum nudges is 21; it must be between 0 and 20"),
        "{refused}"
    );
    assert!(app
        .audit_entries(&["reminder_policy.changed"])
        .await
        .is_empty());
    agency.app.stop().await;
}

on_both_backends!(
    an_owner_adds_a_webhook_reads_its_secret_once_and_its_delivery_log_then_deletes_it,
    a_team_admin_saves_a_reminder_policy_and_the_slack_url_is_never_drawn_back,
    an_owner_reads_a_requests_email_in_the_mailbox_and_a_member_gets_404,
    each_organizations_owner_reads_only_its_own_mail_in_the_mailbox,
    webhook_and_reminder_forms_refuse_bad_input_by_field_and_hide_what_a_member_may_not_manage,
);
