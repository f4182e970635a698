//! The app shell in a real browser: a requester signs in, finds a sent
//! request in the Sent list, opens it and reads a module's permissions by
//! keyboard focus (not only on hover); an organization admin switches team,
//! reads the audit log and makes an API token that is shown once. Every page
//! is screenshotted and checked with axe-core.

use crate::on_both_backends;
use crate::support::chrome::Browser;
use crate::support::{register_secret, Agency};
use credence_store::Backend;
use fantoccini::key::Key;
use serde_json::json;

async fn sign_in(browser: &Browser, agency: &Agency, email: &str, password: &str) {
    browser.open(&agency.app, "/sign-in").await;
    browser.fill("Email", email).await;
    browser.fill("Password", password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Signed in as").await;
}

async fn the_shell_lists_sent_requests_shows_permissions_on_focus_and_makes_a_token(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let (request, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let browser = Browser::start(&format!("shell/{backend:?}")).await;
    sign_in(
        &browser,
        &agency,
        &agency.requester.email,
        &agency.requester.password,
    )
    .await;
    browser.step("overview").await;

    browser.click_link("Sent").await;
    browser.wait_for_text("Sent credential requests").await;
    browser.step("sent list").await;
    browser.click_link("Onboarding Acme").await;
    browser
        .wait_for_path(&format!("/credential-requests/{request}"))
        .await;
    browser.step("request details").await;

    // The permissions of a module show when it has keyboard focus.
    let hidden = browser
        .script(
            "return getComputedStyle(document.querySelector('.tip-body')).display",
            vec![],
        )
        .await;
    assert_eq!(hidden, json!("none"), "hidden until hovered or focused");
    browser
        .script("document.querySelector('main').focus()", vec![])
        .await;
    // Tab from the page's start until the first tip has focus.
    let mut reached = false;
    for _ in 0..20 {
        browser.press(Key::Tab).await;
        let focused = browser
            .script(
                "return document.activeElement.classList.contains('tip')",
                vec![],
            )
            .await;
        if focused == json!(true) {
            reached = true;
            break;
        }
    }
    assert!(reached, "a module's tip is reachable with Tab");
    let shown = browser
        .script(
            "return getComputedStyle(document.activeElement.querySelector('.tip-body')).display",
            vec![],
        )
        .await;
    assert_eq!(shown, json!("block"), "focus shows the permissions");
    browser.step("permissions on focus").await;
    drop(browser);

    // An organization admin: the switcher, the audit log, an API token.
    let admin = agency
        .app
        .add_person("ada@agency.example", agency.app.organization, "admin", None)
        .await;
    let browser = Browser::start(&format!("shell-admin/{backend:?}")).await;
    sign_in(&browser, &agency, &admin.email, &admin.password).await;
    browser.click_link("Audit log").await;
    browser.wait_for_text("credential_request.created").await;
    browser.step("audit log").await;
    browser.select("Team", "Default · Other").await;
    browser.click_button("Switch").await;
    browser.wait_for_text("Now working in").await;
    browser.step("switched team").await;

    browser.click_link("Settings").await;
    browser.fill("Label", "Nightly sync").await;
    browser.check("credential-requests:read").await;
    browser.click_button("Create token").await;
    browser.wait_for_text("shown only this once").await;
    let value = browser.value_of("Token").await;
    register_secret(&value);
    assert_eq!(value.len(), 36, "{value}");
    browser.step("token created").await;
    browser.click_link("Settings").await;
    browser.wait_for_text("Nightly sync").await;
    assert!(!browser.html().await.contains(&value), "shown once only");
    agency.app.stop().await;
}

on_both_backends!(the_shell_lists_sent_requests_shows_permissions_on_focus_and_makes_a_token);
