//! The recipient's side and the Connections pages in a real browser (issue 11
//! journeys b, c, d and f): an outside client signs up from the invitation,
//! authorizes an OAuth app at the real oidc-provider (its login and consent
//! pages clicked) and types an API key for the other app, and the requester
//! sees both authorized; a recipient types an API key and declines the other
//! app with a reason, and the requester sees the red label and the reason;
//! the recipient revokes, authorizes again, and reauthorizes when the
//! requester asks; a requester adds, renames, verifies and deletes an own
//! connection. Every page visited is checked with axe-core.

use crate::on_both_backends;
use crate::support::chrome::Browser;
use crate::support::{register_secret, world, Agency, APP};
use credence_store::Backend;
use reqwest::StatusCode;

async fn sign_in(browser: &Browser, agency: &Agency, email: &str, password: &str) {
    browser.open(&agency.app, "/sign-in").await;
    browser.fill("Email", email).await;
    browser.fill("Password", password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Signed in as").await;
}

/// A screenshot and the accessibility check of the page the browser is on.
async fn checked(browser: &Browser, step: &str) {
    // `step` takes the screenshot and runs axe-core.
    browser.step(step).await;
}

async fn a_recipient_authorizes_declines_revokes_and_reauthorizes(backend: Backend) {
    let agency = Agency::start(backend).await;
    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let key = "browser-key-first-3301";
    agency.upstream.accept(key);
    let tom = Browser::start(&format!("recipient/{backend:?}")).await;
    sign_in(
        &tom,
        &agency,
        &agency.teammate.email,
        &agency.teammate.password,
    )
    .await;
    tom.click_link("Received").await;
    tom.wait_for_text("Received credential requests").await;
    checked(&tom, "received list").await;
    tom.click_link("Onboarding Acme").await;
    tom.wait_for_path(&format!("/received/{request}")).await;
    checked(&tom, "received request").await;

    // (c) An API key for one app, a decline with a reason for the other.
    tom.fill("API key for Acme CRM", key).await;
    tom.click_button("Authorize Acme CRM").await;
    tom.wait_for_text("Acme CRM: authorized").await;
    checked(&tom, "acme authorized").await;
    assert!(
        !tom.html().await.contains(key),
        "the key is never shown again"
    );
    tom.client()
        .find(fantoccini::Locator::XPath(
            "//summary[normalize-space()='Decline Beta Desk']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    tom.fill("Why do you decline Beta Desk?", "We moved off Beta Desk")
        .await;
    tom.click_button("Decline Beta Desk").await;
    tom.wait_for_text("Beta Desk: declined").await;
    checked(&tom, "beta declined").await;

    let rita = Browser::start(&format!("recipient-requester/{backend:?}")).await;
    sign_in(
        &rita,
        &agency,
        &agency.requester.email,
        &agency.requester.password,
    )
    .await;
    rita.click_link("Sent").await;
    rita.click_link("Onboarding Acme").await;
    rita.wait_for_text("Declined: We moved off Beta Desk").await;
    let declined = rita
        .script(
            "return [...document.querySelectorAll('.state.declined')].map(e => getComputedStyle(e).color)",
            vec![],
        )
        .await;
    assert_eq!(
        declined,
        serde_json::json!(["rgb(165, 29, 29)"]),
        "one red label"
    );
    checked(&rita, "requester sees the decline").await;

    // (d) Revoke, authorize again; the key stops working, the requester asks
    // for reauthorization, the recipient reauthorizes with a new key.
    tom.click_button("Revoke access to Acme CRM").await;
    tom.wait_for_text("Acme CRM: revoked").await;
    checked(&tom, "acme revoked").await;
    tom.fill("API key for Acme CRM", key).await;
    tom.click_button("Authorize Acme CRM").await;
    tom.wait_for_text("Acme CRM: authorized").await;
    agency.upstream.reject(key);
    // The requester asks in the browser: the button on the request's details.
    rita.open(&agency.app, &format!("/credential-requests/{request}"))
        .await;
    rita.wait_for_text("Request reauthorization").await;
    rita.click_button("Request reauthorization").await;
    rita.wait_for_text("to reauthorize Acme CRM").await;
    checked(&rita, "reauthorization requested").await;
    let (status, asked) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/credentials/{}", credentials[0]),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    assert_eq!(asked["credential"]["state"], "reauthorizing", "{asked}");
    tom.open(&agency.app, &format!("/received/{request}")).await;
    tom.wait_for_text("Reauthorize Acme CRM").await;
    checked(&tom, "asked to reauthorize").await;
    let second = "browser-key-second-7720";
    agency.upstream.accept(second);
    tom.fill("API key for Acme CRM", second).await;
    tom.click_button("Reauthorize Acme CRM").await;
    tom.wait_for_text("Acme CRM: reauthorized").await;
    checked(&tom, "acme reauthorized").await;
    tom.click_link("What was done with my access").await;
    tom.wait_for_text("Nothing was done with it yet").await;
    checked(&tom, "usage").await;
    drop((tom, rita));
    agency.app.stop().await;
}

async fn a_requester_adds_renames_verifies_and_deletes_an_own_connection(backend: Backend) {
    let agency = Agency::start(backend).await;
    let key = "browser-conn-key-5120";
    agency.upstream.accept(key);
    let wrong = "browser-conn-wrong-0917";
    register_secret(wrong);
    let rita = Browser::start(&format!("own-connection/{backend:?}")).await;
    sign_in(
        &rita,
        &agency,
        &agency.requester.email,
        &agency.requester.password,
    )
    .await;
    rita.click_link("Connections").await;
    rita.wait_for_text("no connections yet").await;
    checked(&rita, "no connections").await;
    rita.click_link("+ Add connection").await;
    rita.select("App", "Acme CRM").await;
    checked(&rita, "pick an app").await;
    rita.click_button("Continue").await;
    rita.wait_for_text("Add a Acme CRM connection").await;
    checked(&rita, "add form").await;
    rita.fill("API key", wrong).await;
    rita.click_button("Add connection").await;
    rita.wait_for_text("were not accepted").await;
    checked(&rita, "key refused").await;
    assert!(!rita.html().await.contains(wrong));
    rita.fill("Connection name", "Acme main").await;
    rita.fill("API key", key).await;
    rita.click_button("Add connection").await;
    rita.wait_for_text("Acme main was added and verified").await;
    checked(&rita, "connection added").await;

    rita.fill("Name", "Acme production").await;
    rita.click_button("Rename").await;
    rita.wait_for_text("Renamed to Acme production.").await;
    rita.click_button("Verify").await;
    rita.wait_for_text("Acme production works").await;
    checked(&rita, "verified").await;
    agency.upstream.reject(key);
    rita.click_button("Verify").await;
    rita.wait_for_text("Acme production does not work").await;
    checked(&rita, "verify fails").await;

    rita.click_link("Delete…").await;
    rita.wait_for_text("Delete Acme production?").await;
    checked(&rita, "confirm delete").await;
    rita.click_button("Delete connection").await;
    rita.wait_for_text("Acme production was deleted.").await;
    checked(&rita, "deleted").await;
    assert!(agency.app.team_connections().await.is_empty());
    drop(rita);
    agency.app.stop().await;
}

async fn an_outside_client_signs_up_and_authorizes_an_oauth_app_and_an_api_key(backend: Backend) {
    let world = world(backend, true).await;
    let agency = &world.agency;
    let body = serde_json::json!({
        "name": "Client onboarding",
        "teamId": agency.app.team,
        "credentials": [
            { "appName": APP, "appModules": ["*"] },
            { "appName": "acme-crm", "appModules": ["*"] },
        ],
        "provider": { "newUser": { "name": "Cleo Client", "email": "cleo@client.example" } },
    });
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.admin_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let request = created["request"]["id"].as_str().unwrap().to_string();
    let key = "browser-oauth-scene-key-2290";
    agency.upstream.accept(key);

    let cleo = Browser::start(&format!("outside-client/{backend:?}")).await;
    cleo.goto(&agency.invitation_link("cleo@client.example").await)
        .await;
    cleo.wait_for_text("You are invited").await;
    checked(&cleo, "invitation").await;
    cleo.fill("Your name", "Cleo Client").await;
    cleo.fill("Password", "a long guest password").await;
    cleo.fill("Password again", "a long guest password").await;
    cleo.click_button("Create account and continue").await;
    cleo.wait_for_text("Signed in as").await;
    checked(&cleo, "signed up").await;
    cleo.click_link("Client onboarding").await;
    cleo.wait_for_path(&format!("/received/{request}")).await;
    checked(&cleo, "received request").await;

    // The OAuth app: to the provider, its login and consent pages, and back.
    cleo.click_button("Authorize with Local OAuth").await;
    let client = cleo.client();
    let login = cleo.wait_for("input[name=login]").await;
    login.send_keys("cleo").await.unwrap();
    client
        .find(fantoccini::Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("any password")
        .await
        .unwrap();
    // The provider's dev pages are not ours: a screenshot, no axe check.
    cleo.screenshot("provider login").await;
    cleo.click_button("Sign-in").await;
    cleo.wait_for("input[name=prompt][value=consent]").await;
    cleo.screenshot("provider consent").await;
    cleo.click_button("Continue").await;
    cleo.wait_for_path(&format!("/received/{request}")).await;
    cleo.wait_for_text("Revoke access to Local OAuth").await;
    checked(&cleo, "oauth authorized").await;

    // The API key for the other app.
    cleo.fill("API key for Acme CRM", key).await;
    cleo.click_button("Authorize Acme CRM").await;
    cleo.wait_for_text("Acme CRM: authorized").await;
    checked(&cleo, "both authorized").await;

    // The admin sent it from the Default team: its members see it in Sent.
    let rita = Browser::start(&format!("outside-client-requester/{backend:?}")).await;
    sign_in(
        &rita,
        agency,
        &agency.requester.email,
        &agency.requester.password,
    )
    .await;
    rita.click_link("Sent").await;
    rita.wait_for_text("Client onboarding").await;
    let status = rita
        .script(
            "return [...document.querySelectorAll('tbody tr')].find(r => r.innerText.includes('Client onboarding')).querySelector('.state').innerText",
            vec![],
        )
        .await;
    assert_eq!(status, serde_json::json!("Authorized"));
    checked(&rita, "sent list").await;
    rita.click_link("Client onboarding").await;
    let labels = rita
        .script(
            "return [...document.querySelectorAll('h2 .state')].map(e => e.innerText)",
            vec![],
        )
        .await;
    assert_eq!(labels, serde_json::json!(["Authorized", "Authorized"]));
    checked(&rita, "details").await;
    drop((cleo, rita));
    world.agency.app.stop().await;
}

on_both_backends!(
    an_outside_client_signs_up_and_authorizes_an_oauth_app_and_an_api_key,
    a_recipient_authorizes_declines_revokes_and_reauthorizes,
    a_requester_adds_renames_verifies_and_deletes_an_own_connection,
);
