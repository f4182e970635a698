//! Journeys through the web UI in a real headless Chromium (support::chrome):
//! a person clicks and types, every page they see is screenshotted and checked
//! with axe-core (no serious or critical violation). Also the harness's own
//! promises: page scripts are blocked by our CSP while the harness's run, and
//! a failing journey leaves its page behind and no process.

use crate::on_both_backends;
use crate::support::chrome::{accessibility_report, processes_mentioning, Browser};
use crate::support::{spawn_app, Agency};
use credence_store::Backend;
use fantoccini::key::Key;
use serde_json::json;

/// Asserts that no process of a dropped browser is left.
fn assert_no_process_left(profile: &std::path::Path) {
    let left = processes_mentioning(&profile.display().to_string());
    assert!(
        left.is_empty(),
        "processes of the browser outlived it: {left:?}"
    );
}

async fn the_setup_link_sets_a_password_then_the_admin_signs_out_and_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::start(&format!("setup_link_then_sign_in/{backend:?}")).await;
    let password = "correct horse battery staple";

    browser
        .open(&app, &format!("/setup/{}", app.setup_token))
        .await;
    browser.wait_for_text("Choose a password for").await;
    browser.step("setup link").await;

    // Two different passwords: said in plain words, nothing set.
    browser.fill("Password", password).await;
    browser
        .fill("Password again", "correct horse battery stapler")
        .await;
    browser.click_button("Save and sign in").await;
    browser.wait_for_text("The two passwords differ.").await;
    browser.step("passwords differ").await;

    browser.fill("Password", password).await;
    browser.fill("Password again", password).await;
    browser.click_button("Save and sign in").await;
    browser.wait_for_path("/").await;
    browser.wait_for_text("Signed in as").await;
    assert!(browser.text().await.contains(&app.admin_email));
    browser.step("home after setup").await;

    browser.click_button("Sign out").await;
    browser.wait_for_path("/sign-in").await;
    browser.step("signed out").await;
    // The session is over: home sends back to the sign-in page.
    browser.open(&app, "/").await;
    browser.wait_for_path("/sign-in").await;

    browser.fill("Email", &app.admin_email).await;
    browser.fill("Password", "not the password at all").await;
    browser.click_button("Sign in").await;
    browser
        .wait_for_text("The email or password is wrong.")
        .await;
    assert_eq!(
        browser.value_of("Email").await,
        app.admin_email,
        "the email stays filled in"
    );
    browser.step("wrong password").await;

    browser.fill("Password", password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;
    browser.wait_for_text(&app.admin_email).await;
    browser.step("home after sign-in").await;

    let profile = browser.profile_dir();
    drop(browser);
    assert_no_process_left(&profile);
    app.stop().await;
}

async fn an_invited_client_signs_up_and_sees_the_request_in_the_browser(backend: Backend) {
    let agency = Agency::start(backend).await;
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.admin_token,
            Some(json!({
                "name": "Client onboarding",
                "teamId": agency.app.team,
                "description": "Access for the weekly sync",
                "credentials": [{ "appName": "acme-crm", "appModules": ["searchContacts"] }],
                "provider": { "newUser": { "name": "Cleo Client", "email": "cleo@client.example" } },
            })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let request = created["request"]["id"].as_str().unwrap().to_string();
    let invitation = agency.invitation_link("cleo@client.example").await;
    let browser = Browser::start(&format!("invited_client/{backend:?}")).await;

    browser.goto(&invitation).await;
    browser.wait_for_text("You are invited").await;
    assert_eq!(browser.value_of("Your name").await, "Cleo Client");
    browser.step("invitation").await;
    browser.fill("Your name", "Cleo C.").await;
    browser.fill("Password", "cleo's long password").await;
    browser.fill("Password again", "cleo's long password").await;
    browser.click_button("Create account and continue").await;
    browser.wait_for_text("Requests you received").await;
    browser.step("home of the guest").await;

    browser.click_link("Client onboarding").await;
    browser.wait_for_path(&format!("/received/{request}")).await;
    let page = browser.text().await;
    assert!(
        page.contains("Acme CRM") && page.contains("Search contacts"),
        "{page}"
    );
    assert!(
        !page.contains("Create a contact"),
        "only the requested module is shown: {page}"
    );
    browser.step("received request").await;

    drop(browser);
    agency.app.stop().await;
}

async fn page_scripts_are_blocked_but_the_harness_runs(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::start(&format!("content_security_policy/{backend:?}")).await;
    browser.open(&app, "/sign-in").await;
    browser.wait_for_text("Sign in to Credence").await;
    // A script the page itself would run (an injected inline one) is refused
    // by our Content-Security-Policy, and the browser says so.
    let outcome = browser
        .wait_for_script(
            "the browser's verdict on an inline script",
            r#"if (!window.__verdict) {
                window.__verdict = 'pending';
                document.addEventListener('securitypolicyviolation',
                    e => { window.__verdict = 'refused: ' + e.violatedDirective; });
                const script = document.createElement('script');
                script.textContent = "window.__verdict = 'ran';";
                document.body.appendChild(script);
            }
            return window.__verdict === 'pending' ? null : window.__verdict;"#,
            vec![],
        )
        .await;
    assert!(
        outcome
            .as_str()
            .is_some_and(|v| v.starts_with("refused: script-src")),
        "the page's CSP let an inline script run: {outcome}"
    );
    // The harness's own scripts run regardless: axe-core loads and checks.
    browser.step("sign-in").await;
    drop(browser);
    app.stop().await;
}

async fn a_failing_journey_leaves_its_page_and_no_process(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.url("/sign-in");
    let name = format!("failing_journey/{backend:?}");
    let (profile_tx, profile_rx) = tokio::sync::oneshot::channel();
    let journey = tokio::spawn({
        let name = name.clone();
        async move {
            let browser = Browser::start(&name).await;
            let _ = profile_tx.send(browser.profile_dir());
            browser.goto(&url).await;
            browser.wait_for_text("Sign in to Credence").await;
            panic!("a deliberate failure, to see what the harness keeps");
        }
    });
    let outcome = journey.await;
    assert!(
        outcome.as_ref().is_err_and(|e| e.is_panic()),
        "the journey failed"
    );
    let profile = profile_rx.await.expect("the browser started");
    let dir = crate::support::chrome::journeys_dir().join(name.to_lowercase());
    let html = std::fs::read_to_string(dir.join("failure.html")).expect("the failing page's HTML");
    assert!(html.contains("Sign in to Credence"), "{html}");
    let png = std::fs::read(dir.join("failure.png")).expect("a screenshot of the failing page");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    let at = std::fs::read_to_string(dir.join("failure-url.txt")).unwrap();
    assert_eq!(at, app.url("/sign-in"));
    assert_no_process_left(&profile);
    app.stop().await;
}

async fn the_sign_in_form_works_with_the_keyboard_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let rita = app
        .add_person("rita@agency.example", app.organization, "member", None)
        .await;
    let browser = Browser::start(&format!("keyboard_sign_in/{backend:?}")).await;
    browser.open(&app, "/sign-in").await;
    browser.wait_for_text("Sign in to Credence").await;
    // From the top of the page, Tab reaches the fields in reading order.
    browser.press(Key::Tab).await;
    assert_eq!(browser.focused().await, r#"input "Email""#);
    browser
        .client()
        .active_element()
        .await
        .unwrap()
        .send_keys(&rita.email)
        .await
        .unwrap();
    browser.press(Key::Tab).await;
    assert_eq!(browser.focused().await, r#"input "Password""#);
    browser
        .client()
        .active_element()
        .await
        .unwrap()
        .send_keys(&rita.password)
        .await
        .unwrap();
    browser.press(Key::Tab).await;
    assert_eq!(browser.focused().await, r#"button "Sign in""#);
    browser.screenshot("focus on sign in").await;
    browser.press(Key::Enter).await;
    browser.wait_for_path("/").await;
    browser.wait_for_text(&rita.email).await;
    browser.step("home").await;
    drop(browser);
    app.stop().await;
}

/// A page of `html` (no server: the harness's own checks).
fn data_page(html: &str) -> String {
    let mut url = String::from("data:text/html;charset=utf-8,");
    url.extend(html.bytes().map(|b| match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
        _ => format!("%{b:02X}"),
    }));
    url
}

// The harness's own checks need no server, so no backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accessibility_check_names_each_serious_violation() {
    let browser = Browser::start("harness/accessibility_check").await;
    browser
        .goto(&data_page(
            r#"<!doctype html><html lang="en"><title>bad</title><main>
            <img src="logo.png"><button></button>
            <p style="color:#aaa;background:#fff">faint text</p></main></html>"#,
        ))
        .await;
    let violations = browser.accessibility_violations().await;
    let ids: Vec<&str> = violations.iter().map(|v| v.id.as_str()).collect();
    for expected in ["image-alt", "button-name", "color-contrast"] {
        assert!(
            ids.contains(&expected),
            "axe-core missed {expected}: {ids:?}"
        );
    }
    let report = accessibility_report("the page", &violations);
    assert!(
        report.contains("- image-alt (critical): Images must have alternative text"),
        "{report}"
    );
    assert!(report.contains("at `img`"), "{report}");
    assert!(
        report.contains("at `p`: Fix any of the following:"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helpers_fill_tick_pick_and_click_by_what_a_person_reads() {
    let browser = Browser::start("harness/helpers").await;
    browser
        .goto(&data_page(
            r#"<!doctype html><html lang="en"><title>Form</title><main>
            <label for="n">Name <small>(required)</small></label><input id="n">
            <label><input type="checkbox" id="t"> I accept the terms</label>
            <label for="v">Version</label><select id="v"><option>1</option><option>2</option></select>
            <button type="button" onclick="document.getElementById('out').textContent =
                [n.value, t.checked, v.value].join(' ')">Copy link</button>
            <output id="out"></output></main></html>"#,
        ))
        .await;
    assert_eq!(browser.title().await, "Form");
    browser.fill("Name", "Rita").await;
    browser.check("I accept the terms").await;
    browser.select("Version", "2").await;
    browser.click_button_in_place("Copy link").await;
    browser.wait_for_text("Rita true 2").await;
    assert_eq!(
        browser.wait_for("output").await.text().await.unwrap(),
        "Rita true 2"
    );
    assert!(browser.html().await.contains("I accept the terms"));
    assert!(browser.path().await.starts_with("text/html"));
    assert!(browser
        .screenshot("filled")
        .await
        .starts_with(browser.dir()));
}

on_both_backends!(
    the_sign_in_form_works_with_the_keyboard_alone,
    the_setup_link_sets_a_password_then_the_admin_signs_out_and_in,
    an_invited_client_signs_up_and_sees_the_request_in_the_browser,
    page_scripts_are_blocked_but_the_harness_runs,
    a_failing_journey_leaves_its_page_and_no_process,
);
