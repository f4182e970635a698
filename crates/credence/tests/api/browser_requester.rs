//! The requester's journeys in a real headless Chromium (support::chrome),
//! each page screenshotted and checked with axe-core: (a) a request for two
//! apps with Select all, and the link copied; (e) a request deleted after its
//! confirmation listed who used its connection; (g) the wizard with the
//! keyboard only. The same pages without a browser are in `web_requester.rs`.

use crate::on_both_backends;
use crate::support::chrome::Browser;
use crate::support::{Agency, Person};
use credence_store::Backend;
use fantoccini::key::Key;
use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::Value;

async fn sign_in(browser: &Browser, agency: &Agency, person: &Person) {
    browser.open(&agency.app, "/sign-in").await;
    browser.fill("Email", &person.email).await;
    browser.fill("Password", &person.password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Signed in as").await;
}

/// The one request Rita's team sent, with its credentials, as the API reads it.
async fn the_sent_request(agency: &Agency) -> Value {
    let (status, list) = agency
        .app
        .get_json(
            &format!(
                "/api/v2/credential-requests/requests?teamId={}",
                agency.app.team
            ),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let requests = list["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{list}");
    let id = requests[0]["id"].as_str().unwrap();
    let (_, detail) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{id}/detail"),
            &agency.requester_token,
        )
        .await;
    detail["requestDetail"].clone()
}

async fn css(browser: &Browser, selector: &str) -> fantoccini::elements::Element {
    browser.wait_for(selector).await;
    browser
        .client()
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no element {selector:?}: {e}"))
}

async fn a_requester_asks_for_two_apps_with_select_all_and_copies_the_link(backend: Backend) {
    let agency = Agency::start(backend).await;
    let browser = Browser::start(&format!("requester_two_apps/{backend:?}")).await;
    sign_in(&browser, &agency, &agency.requester).await;
    browser.open(&agency.app, "/credential-requests/sent").await;
    browser.step("sent list").await;
    browser.click_link("+ Create request").await;
    browser.wait_for_text("Create a credential request").await;
    browser.step("wizard").await;

    browser.fill("Name", "Onboarding Acme").await;
    browser
        .fill("Description", "Access for the weekly sync")
        .await;
    // The counter follows the typing (credence.js).
    browser.wait_for_text("26/256").await;
    browser
        .select("Person", "Person tom@agency.example (tom@agency.example)")
        .await;
    // Choosing an app shows its modules (the script presses "Show versions and modules").
    browser.select("App", "Acme CRM").await;
    browser.wait_for_text("Modules of Acme CRM").await;
    assert_eq!(browser.value_of("Name").await, "Onboarding Acme");
    browser.click_button_in_place("Select all").await;
    for module in ["#module-0-searchContacts", "#module-0-createContact"] {
        assert!(
            css(&browser, module).await.is_selected().await.unwrap(),
            "{module}"
        );
    }
    browser.step("first app, all modules").await;

    browser.click_button("+ Add app").await;
    browser.wait_for("#app_1").await;
    assert!(
        css(&browser, "#module-0-createContact")
            .await
            .is_selected()
            .await
            .unwrap(),
        "the ticks survive + Add app"
    );
    css(&browser, "#app_1")
        .await
        .select_by_label("Beta Desk")
        .await
        .unwrap();
    browser.wait_for_text("Modules of Beta Desk").await;
    css(&browser, r#"button[data-select-all="modules_1"]"#)
        .await
        .click()
        .await
        .unwrap();
    assert!(css(&browser, "#module-1-searchContacts")
        .await
        .is_selected()
        .await
        .unwrap());
    browser.step("second app, all modules").await;

    browser.check("I agree to the terms and conditions").await;
    browser.click_button("Submit request").await;
    browser.wait_for_text("Request sent").await;
    let link = browser.value_of("Link to the request").await;
    assert!(
        link.starts_with(&agency.app.url("/requests/")),
        "the link: {link}"
    );
    browser.click_button_in_place("Copy link").await;
    let said = browser
        .wait_for_script(
            "the copy's outcome",
            "const t = document.getElementById('request-link-status').innerText; return t || null;",
            vec![],
        )
        .await;
    assert!(
        said == "Link copied." || said == "Select the link and copy it.",
        "{said}"
    );
    browser.step("request sent").await;

    let request = the_sent_request(&agency).await;
    let credentials = request["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 2, "{request}");
    assert_eq!(credentials[0]["appName"], "acme-crm");
    assert_eq!(
        credentials[0]["appModules"],
        serde_json::json!(["createContact", "searchContacts"])
    );
    assert_eq!(credentials[1]["appName"], "beta-desk");
    assert_eq!(request["makeProvider"]["email"], "tom@agency.example");

    // The answer was a redirect to the details (post-redirect-get): a
    // refresh sends nothing again, and the link is not shown twice.
    assert!(
        browser.path().await.starts_with("/credential-requests/"),
        "{}",
        browser.path().await
    );
    browser.wait_for_text("Beta Desk").await;
    browser.client().refresh().await.unwrap();
    browser.wait_for_text("Beta Desk").await;
    assert!(!browser.text().await.contains("Link to the request"));
    assert_eq!(
        the_sent_request(&agency).await["credentials"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    browser.step("details").await;
    drop(browser);
    agency.app.stop().await;
}

async fn a_requester_deletes_a_request_after_seeing_who_used_it(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let key = "acme-key-for-browser-4c1d";
    agency.upstream.accept(key);
    let (status, body) = agency
        .authorize_with(&credentials[0], "authorize", key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = app
        .team_connections()
        .await
        .into_iter()
        .find(|c| c.app_key == "acme-crm")
        .expect("the authorized connection")
        .id;
    let use_token = app.token(agency.requester.id, "connections:use").await;
    let response = app
        .client
        .get(app.url(&format!(
            "/api/v2/connections/{connection}/proxy/v1/contacts"
        )))
        .header("Authorization", format!("Token {use_token}"))
        .header("X-Credence-Consumer", "weekly-sync agent")
        .send()
        .await
        .unwrap();
    assert!(response.status().as_u16() < 500, "{}", response.status());

    let browser = Browser::start(&format!("requester_delete/{backend:?}")).await;
    sign_in(&browser, &agency, &agency.requester).await;
    browser
        .open(app, &format!("/credential-requests/{request}"))
        .await;
    browser.wait_for_text("Request reauthorization").await;
    browser.step("details").await;
    browser.click_link("Delete request…").await;
    browser
        .wait_for_text("These connections will be destroyed")
        .await;
    browser.wait_for_text("weekly-sync agent").await;
    let page = browser.text().await;
    assert!(page.contains("Onboarding Acme — Acme CRM"), "{page}");
    assert!(!page.contains("Onboarding Acme — Beta Desk"), "{page}");
    browser.step("confirmation with usages").await;
    browser.click_button("Delete request").await;
    browser.wait_for_path("/credential-requests/sent").await;
    browser
        .wait_for_text("Deleted Onboarding Acme and its connection.")
        .await;
    browser.step("deleted").await;
    assert!(app
        .team_connections()
        .await
        .iter()
        .all(|c| c.id != connection));
    drop(browser);
    agency.app.stop().await;
}

/// Presses Tab until the focus is on `wanted` (as [`Browser::focused`] names it).
async fn tab_to(browser: &Browser, wanted: &str) {
    let mut seen = Vec::new();
    for _ in 0..120 {
        let focused = browser.focused().await;
        if focused == wanted {
            return;
        }
        seen.push(focused);
        browser.press(Key::Tab).await;
    }
    panic!("Tab never reached {wanted}; it went through {seen:?}");
}

async fn type_keys(browser: &Browser, text: &str) {
    browser
        .client()
        .active_element()
        .await
        .expect("a focused element")
        .send_keys(text)
        .await
        .expect("typing");
}

async fn the_wizard_works_with_the_keyboard_only(backend: Backend) {
    let agency = Agency::start(backend).await;
    let browser = Browser::start(&format!("requester_keyboard/{backend:?}")).await;
    sign_in(&browser, &agency, &agency.requester).await;
    browser.open(&agency.app, "/credential-requests/new").await;
    browser.wait_for_text("Create a credential request").await;
    browser.step("wizard").await;

    tab_to(&browser, r#"input "Name""#).await;
    type_keys(&browser, "Keyboard request").await;
    tab_to(&browser, r#"select "Person""#).await;
    // "Choose a person", "Admin (…)", then Tom.
    browser.press(Key::Down).await;
    browser.press(Key::Down).await;
    tab_to(&browser, r#"select "App""#).await;
    // The first app is Acme CRM; choosing it brings its modules.
    browser.press(Key::Down).await;
    browser.wait_for_text("Modules of Acme CRM").await;
    browser.step("modules shown").await;
    tab_to(&browser, r#"button "Select all""#).await;
    browser.press(Key::Enter).await;
    assert!(css(&browser, "#module-0-createContact")
        .await
        .is_selected()
        .await
        .unwrap());
    tab_to(
        &browser,
        r#"input "I agree to the terms and conditions: the recipient's credentials are used only as the notes say.""#,
    )
    .await;
    browser.press(Key::Space).await;
    tab_to(&browser, r#"button "Submit request""#).await;
    browser.step("ready to send").await;
    browser.press(Key::Enter).await;
    browser.wait_for_text("Request sent").await;
    browser.step("request sent").await;

    let request = the_sent_request(&agency).await;
    assert_eq!(request["name"], "Keyboard request");
    assert_eq!(request["makeProvider"]["email"], "tom@agency.example");
    assert_eq!(
        request["credentials"][0]["appModules"],
        serde_json::json!(["createContact", "searchContacts"])
    );
    drop(browser);
    agency.app.stop().await;
}

on_both_backends!(
    a_requester_asks_for_two_apps_with_select_all_and_copies_the_link,
    a_requester_deletes_a_request_after_seeing_who_used_it,
    the_wizard_works_with_the_keyboard_only,
);
