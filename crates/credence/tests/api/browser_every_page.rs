//! Every page a person reaches by a link, checked by axe-core in a real
//! Chromium: the requester's (lists, details, the wizard's first step,
//! connections, tracker, team, each Settings tab), an admin's (the audit log,
//! webhooks, the mailbox), the
//! recipient's (the received list, a request, its usage page), the API's
//! documentation page and the sign-in page. The journeys check the pages
//! along their way; this one keeps a page that no journey passes from
//! escaping the check (0 serious or critical violations, as in `step`).

use crate::on_both_backends;
use crate::support::chrome::Browser;
use crate::support::Agency;
use credence_store::Backend;

async fn sign_in(browser: &Browser, agency: &Agency, email: &str, password: &str) {
    browser.open(&agency.app, "/sign-in").await;
    browser.fill("Email", email).await;
    browser.fill("Password", password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Signed in as").await;
}

/// Opens `path` and checks it; a page that answers an error fails too.
async fn check(browser: &Browser, agency: &Agency, path: &str, name: &str) {
    browser.open(&agency.app, path).await;
    browser.wait_for("main, body").await;
    let title = browser.title().await;
    assert!(
        !["Not found", "Not allowed", "went wrong"]
            .iter()
            .any(|refusal| title.contains(refusal)),
        "{path} answered {title:?}"
    );
    browser.step(name).await;
}

async fn every_page_passes_the_accessibility_check(backend: Backend) {
    let agency = Agency::start(backend).await;
    let (request, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let browser = Browser::start(&format!("every-page/{backend:?}")).await;
    check(&browser, &agency, "/sign-in", "sign-in").await;
    check(&browser, &agency, "/api/v2/docs", "API documentation").await;

    sign_in(
        &browser,
        &agency,
        &agency.requester.email,
        &agency.requester.password,
    )
    .await;
    for (path, name) in [
        ("/".to_string(), "overview"),
        ("/credential-requests/sent".to_string(), "sent"),
        ("/credential-requests/new".to_string(), "wizard"),
        (format!("/credential-requests/{request}"), "request details"),
        (
            format!("/credential-requests/{request}/delete"),
            "delete confirmation",
        ),
        ("/connections".to_string(), "connections"),
        ("/connections/new".to_string(), "add a connection"),
        ("/tracker".to_string(), "tracker"),
        ("/team".to_string(), "team"),
        ("/settings".to_string(), "API tokens"),
        ("/settings/two-factor".to_string(), "two-factor"),
        ("/settings/reminders".to_string(), "reminder policy"),
    ] {
        check(&browser, &agency, &path, name).await;
    }
    browser.click_button("Sign out").await;

    // The audit log is the organization admins' (and team admins').
    let admin = agency
        .app
        .add_person("ada@agency.example", agency.app.organization, "admin", None)
        .await;
    sign_in(&browser, &agency, &admin.email, &admin.password).await;
    check(&browser, &agency, "/audit", "audit log").await;
    check(&browser, &agency, "/settings/webhooks", "webhooks").await;
    check(&browser, &agency, "/mailbox", "mailbox").await;
    browser.click_button("Sign out").await;

    sign_in(
        &browser,
        &agency,
        &agency.teammate.email,
        &agency.teammate.password,
    )
    .await;
    for (path, name) in [
        ("/credential-requests/received".to_string(), "received"),
        (format!("/received/{request}"), "received request"),
        (format!("/received/{request}/usage"), "usage"),
    ] {
        check(&browser, &agency, &path, name).await;
    }
    agency.app.stop().await;
}

on_both_backends!(every_page_passes_the_accessibility_check);
