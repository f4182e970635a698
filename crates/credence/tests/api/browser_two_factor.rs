//! Two-factor sign-in in a real browser: a person turns it on in Settings —
//! scanning nothing, the test computes the code from the setup key the page
//! shows as text, as an authenticator app would from the QR code —, sees
//! their recovery codes once, signs out, and signs in again with the
//! password and then a code of the next time step. Every page is
//! screenshotted and checked with axe-core; the sign-in's clock is moved,
//! not waited for.

use crate::on_both_backends;
use crate::support::chrome::Browser;
use crate::support::{register_secret, spawn_app_with_limits, ManualClock};
use credence::http::web::SignInLimits;
use credence_store::Backend;
use totp_rs::{Algorithm, Secret, TOTP};

fn code_at(secret: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let bytes = Secret::Encoded(secret.to_string()).to_bytes().unwrap();
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes)
        .unwrap()
        .generate(u64::try_from(at.timestamp()).unwrap())
}

async fn turn_on_two_factor_sign_out_and_sign_in_with_a_code(backend: Backend) {
    let clock = ManualClock::starting_now();
    let time = clock.clone();
    let app = spawn_app_with_limits(
        backend,
        |_| {},
        SignInLimits::default().with_clock(move || time.now()),
    )
    .await;
    let ada = app
        .add_person(
            "ada@agency.example",
            app.organization,
            "member",
            Some((app.team, "member")),
        )
        .await;
    let browser = Browser::start(&format!("two_factor/{backend:?}")).await;
    browser.open(&app, "/sign-in").await;
    browser.fill("Email", &ada.email).await;
    browser.fill("Password", &ada.password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Signed in as").await;

    browser.click_link("Settings").await;
    browser.click_link("Two-factor authentication").await;
    browser
        .wait_for_text("Two-factor authentication is off")
        .await;
    browser.step("two-factor off").await;
    browser
        .click_button("Set up two-factor authentication")
        .await;
    browser.wait_for_text("Set up your authenticator app").await;
    browser.wait_for("svg[role=img]").await;
    let secret = browser.value_of("Setup key").await;
    assert_eq!(secret.len(), 32, "{secret}");
    browser.step("enrolment with its QR code").await;
    browser
        .fill(
            "Code from your authenticator app",
            &code_at(&secret, clock.now()),
        )
        .await;
    browser
        .click_button("Turn on two-factor authentication")
        .await;
    browser.wait_for_text("Your recovery codes").await;
    register_secret(&secret);
    let page = browser.html().await;
    assert!(!page.contains(&secret), "the secret is not shown again");
    assert_eq!(page.matches("<li><code>").count(), 10, "ten recovery codes");
    browser.step("recovery codes").await;

    browser.click_button("Sign out").await;
    browser.wait_for_text("Sign in to Credence").await;
    browser.fill("Email", &ada.email).await;
    browser.fill("Password", &ada.password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Type the 6-digit code").await;
    browser.step("second step").await;
    // Not signed in yet: another page sends back to sign-in.
    browser.open(&app, "/settings").await;
    browser.wait_for_text("Sign in to Credence").await;
    browser.open(&app, "/sign-in/two-factor").await;
    browser.wait_for_text("Type the 6-digit code").await;
    // The next time step's code (the enrolment spent this one).
    clock.advance(std::time::Duration::from_secs(30));
    browser.fill("Code", &code_at(&secret, clock.now())).await;
    browser.click_button("Verify").await;
    browser.wait_for_text("Signed in as").await;
    assert_eq!(browser.path().await, "/");
    browser.step("signed in with a code").await;
    app.stop().await;
}

on_both_backends!(turn_on_two_factor_sign_out_and_sign_in_with_a_code);
