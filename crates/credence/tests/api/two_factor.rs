//! Two-factor sign-in with TOTP (issue 14): enrolment confirmed by a code the
//! test computes from the setup key the page shows (as an authenticator app
//! would), the second sign-in step that is not a session, codes refused when
//! wrong or replayed in their time step, recovery codes used once,
//! organizations that require it (members sent to enrolment before any other
//! page, API tokens unaffected), every change audited, and the secret sealed,
//! bound to its user and never shown again. Time is the sign-in's injected
//! clock: a test moves it to the next 30-second step instead of waiting.

use crate::on_both_backends;
use crate::support::{
    assert_error, browser, captured_logs, contacts_app, csrf_of, form_page, location, page,
    post_form, register_secret, set_cookie, sign_in, signed_in, spawn_app_with_limits, Agency,
    ContactsApi, ManualClock, Person, TestApp,
};
use chrono::{DateTime, Utc};
use credence::http::web::SignInLimits;
use credence::service::{auth, secrets, two_factor};
use credence_store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use totp_rs::{Algorithm, Secret, TOTP};

const SETTINGS: &str = "/settings/two-factor";
const CHALLENGE: &str = "/sign-in/two-factor";
const STEP: Duration = Duration::from_secs(30);

/// Credence whose sign-in (limits and codes) runs on a clock the test moves.
async fn clocked(backend: Backend) -> (TestApp, ManualClock) {
    let clock = ManualClock::starting_now();
    let time = clock.clone();
    let app = spawn_app_with_limits(
        backend,
        |_| {},
        SignInLimits::default().with_clock(move || time.now()),
    )
    .await;
    (app, clock)
}

/// The code an authenticator app shows for `secret` (base32) at `at`.
fn code_at(secret: &str, at: DateTime<Utc>) -> String {
    let bytes = Secret::Encoded(secret.to_string()).to_bytes().unwrap();
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes)
        .unwrap()
        .generate(u64::try_from(at.timestamp()).unwrap())
}

/// A six-digit code that is not `code` (each digit moved by one).
fn not(code: &str) -> String {
    code.chars()
        .map(|c| char::from_digit((c.to_digit(10).unwrap() + 1) % 10, 10).unwrap())
        .collect()
}

/// The value of the field with `id` on a page.
fn value_of_id(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("the page has #{id}: {html}"));
    let rest = &html[at..];
    let start = rest.find("value=\"").expect("the field has a value") + "value=\"".len();
    rest[start..].split('"').next().unwrap().to_string()
}

/// The recovery codes a page shows.
fn recovery_codes_of(html: &str) -> Vec<String> {
    let list = html
        .split("class=\"recovery-codes\"")
        .nth(1)
        .unwrap_or_else(|| panic!("the page lists recovery codes: {html}"));
    let list = list.split("</ol>").next().unwrap();
    list.split("<li><code>")
        .skip(1)
        .map(|item| item.split("</code>").next().unwrap().to_string())
        .collect()
}

/// Starts enrolment in the signed-in `client` and reads the setup key the
/// page shows (with its QR code beside it).
async fn start_enrolment(app: &TestApp, client: &reqwest::Client) -> String {
    let csrf = form_page(client, &app.url(SETTINGS)).await;
    let (status, to, _) = post_form(
        client,
        &app.url("/settings/two-factor/start"),
        Some(&csrf),
        &[],
    )
    .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, SETTINGS));
    // The page of a waiting enrolment is the one that shows the secret.
    let html = client
        .get(app.url(SETTINGS))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<svg") && html.contains("role=\"img\"") && html.contains("<path d=\"M"),
        "the QR code is drawn inline: {html}"
    );
    assert!(
        !html.contains("data:"),
        "no data: URL (the CSP refuses them)"
    );
    let key = value_of_id(&html, "setup-key");
    assert_eq!(key.len(), 32, "160 bits in base32: {key}");
    key
}

/// Enrols the person signed in on `client`: answers the secret and the ten
/// recovery codes, all registered as secrets from then on.
async fn enrol(
    app: &TestApp,
    client: &reqwest::Client,
    clock: &ManualClock,
) -> (String, Vec<String>) {
    let secret = start_enrolment(app, client).await;
    let html = client
        .get(app.url(SETTINGS))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&html);
    let (status, _, html) = post_form(
        client,
        &app.url("/settings/two-factor/confirm"),
        Some(&csrf),
        &[("code", &code_at(&secret, clock.now()))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!html.contains(&secret), "the secret is not shown again");
    let codes = recovery_codes_of(&html);
    assert_eq!(codes.len(), 10, "{html}");
    register_secret(&secret);
    for code in &codes {
        register_secret(code);
    }
    (secret, codes)
}

/// Posts the password in a fresh browser: answers it, at the second step.
async fn password_step(app: &TestApp, person: &Person) -> reqwest::Client {
    let client = browser();
    let response = sign_in(app, &client, &person.email, &person.password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), CHALLENGE);
    assert!(
        set_cookie(&response, "credence_session").is_none(),
        "no session before the second factor"
    );
    client
}

/// Answers the second step with `code`: the status, where it went, the page.
async fn answer(
    app: &TestApp,
    client: &reqwest::Client,
    code: &str,
) -> (StatusCode, String, String) {
    let csrf = form_page(client, &app.url(CHALLENGE)).await;
    post_form(client, &app.url(CHALLENGE), Some(&csrf), &[("code", code)]).await
}

async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    app.send(Method::PUT, path, token, Some(body)).await
}

async fn someone(app: &TestApp, email: &str) -> Person {
    app.add_person(
        email,
        app.organization,
        "member",
        Some((app.team, "member")),
    )
    .await
}

async fn enrolment_then_sign_in_asks_for_a_code_once_per_time_step(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let ada = someone(&app, "ada@agency.example").await;
    let client = signed_in(&app, &ada).await;
    let (status, html) = page(&client, &app.url(SETTINGS)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Two-factor authentication is off"), "{html}");

    let secret = start_enrolment(&app, &client).await;
    // A wrong code and a malformed one: the error beside the field, still off.
    let csrf = form_page(&client, &app.url(SETTINGS)).await;
    for (typed, says) in [
        (
            not(&code_at(&secret, clock.now())),
            "is not the current code",
        ),
        ("12ab".to_string(), "is neither a 6-digit code"),
        ("9".repeat(65), "the limit is 64"),
    ] {
        let (status, _, html) = post_form(
            &client,
            &app.url("/settings/two-factor/confirm"),
            Some(&csrf),
            &[("code", &typed)],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{typed}: {html}");
        assert!(html.contains(says), "{typed}: {html}");
        assert!(html.contains("aria-invalid=\"true\""), "{html}");
        assert!(!two_factor::is_enabled(&app.store, ada.id).await.unwrap());
    }
    let (secret, _) = {
        // The same enrolment goes on: the secret shown is the one confirmed.
        let csrf = form_page(&client, &app.url(SETTINGS)).await;
        let (status, _, html) = post_form(
            &client,
            &app.url("/settings/two-factor/confirm"),
            Some(&csrf),
            &[("code", &code_at(&secret, clock.now()))],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let codes = recovery_codes_of(&html);
        register_secret(&secret);
        codes.iter().for_each(|code| register_secret(code));
        (secret, codes)
    };
    assert!(two_factor::is_enabled(&app.store, ada.id).await.unwrap());
    let (_, html) = page(&client, &app.url(SETTINGS)).await;
    assert!(html.contains("Two-factor authentication is on"), "{html}");
    assert!(html.contains("10 of 10 recovery codes"), "{html}");
    let enabled = app.audit_entries(&["two_factor.enabled"]).await;
    assert_eq!(enabled.len(), 1);
    assert_eq!(enabled[0].target_id, ada.id.to_string());
    assert_eq!(enabled[0].actor_user_id, Some(ada.id.0));

    // The password alone opens only the code form: not a session.
    let other = password_step(&app, &ada).await;
    let response = other.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(location(&response).starts_with("/sign-in"));
    let response = other.get(app.url("/settings")).send().await.unwrap();
    assert!(location(&response).starts_with("/sign-in"), "no page opens");
    // The code that confirmed the enrolment is spent for its time step.
    let (status, _, html) = answer(&app, &other, &code_at(&secret, clock.now())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{html}");
    assert!(html.contains("was used already"), "{html}");
    let (status, _, html) = answer(&app, &other, "000000").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{html}");
    assert!(html.contains("3 tries left"), "{html}");
    // The next step's code signs in, to where the sign-in was going.
    clock.advance(STEP);
    let code = code_at(&secret, clock.now());
    let (status, to, _) = answer(&app, &other, &code).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    let (status, html) = page(&other, &app.url("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Signed in as"), "{html}");
    // The challenge is done: its cookie went with it.
    let response = other.get(app.url(CHALLENGE)).send().await.unwrap();
    assert_eq!(location(&response), "/sign-in");
    // And the code, seen over a shoulder, does not sign in again.
    let third = password_step(&app, &ada).await;
    let (status, _, html) = answer(&app, &third, &code).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{html}");
    assert!(html.contains("was used already"), "{html}");
    app.stop().await;
}

async fn a_challenge_takes_five_answers_then_the_password_again(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let ada = someone(&app, "ada@agency.example").await;
    let (secret, _) = enrol(&app, &signed_in(&app, &ada).await, &clock).await;
    clock.advance(STEP);
    let client = password_step(&app, &ada).await;
    let wrong = not(&code_at(&secret, clock.now()));
    for left in (1..5).rev() {
        let (status, _, html) = answer(&app, &client, &wrong).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(html.contains(&format!("{left} tries left")), "{html}");
    }
    let (status, _, html) = answer(&app, &client, &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Too many wrong codes"), "{html}");
    // Even the right code is too late for that challenge now.
    let response = client.get(app.url(CHALLENGE)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "the cookie went");
    let csrf = form_page(&client, &app.url("/sign-in")).await;
    let (status, _, _) = post_form(
        &client,
        &app.url(CHALLENGE),
        Some(&csrf),
        &[("code", &code_at(&secret, clock.now()))],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        client.get(app.url("/")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER,
        "still not signed in"
    );
    // The five wrong codes counted against the account's sign-in limits
    // too (five per account at one address): the next try waits.
    let response = sign_in(&app, &browser(), &ada.email, &ada.password).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

async fn recovery_codes_sign_in_once_and_new_ones_replace_them(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let ada = someone(&app, "ada@agency.example").await;
    let settings = signed_in(&app, &ada).await;
    let (secret, codes) = enrol(&app, &settings, &clock).await;

    let client = password_step(&app, &ada).await;
    let (status, to, _) = answer(&app, &client, &codes[0].to_uppercase()).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    let used = app.audit_entries(&["two_factor.recovery_code_used"]).await;
    assert_eq!(used.len(), 1);
    let details: Value = serde_json::from_str(&used[0].details).unwrap();
    assert_eq!(details["recoveryCodesLeft"], 9);
    // Once only.
    let client = password_step(&app, &ada).await;
    let (status, _, html) = answer(&app, &client, &codes[0]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        html.contains("not one of your unused recovery codes"),
        "{html}"
    );
    let (_, html) = page(&settings, &app.url(SETTINGS)).await;
    assert!(html.contains("9 of 10 recovery codes"), "{html}");

    // New codes take a code of the app, not a recovery code.
    let csrf = form_page(&settings, &app.url(SETTINGS)).await;
    let regenerate = app.url("/settings/two-factor/recovery-codes");
    let (status, _, html) =
        post_form(&settings, &regenerate, Some(&csrf), &[("code", &codes[1])]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("not a recovery code"), "{html}");
    clock.advance(STEP);
    let (status, _, html) = post_form(
        &settings,
        &regenerate,
        Some(&csrf),
        &[("code", &code_at(&secret, clock.now()))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let fresh = recovery_codes_of(&html);
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|code| !codes.contains(code)));
    fresh.iter().for_each(|code| register_secret(code));
    assert_eq!(
        app.audit_entries(&["two_factor.recovery_codes_regenerated"])
            .await
            .len(),
        1
    );
    // The old unused codes are gone; a new one works.
    let client = password_step(&app, &ada).await;
    let (status, _, _) = answer(&app, &client, &codes[1]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, to, _) = answer(&app, &client, &fresh[0]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    app.stop().await;
}

async fn turning_it_off_takes_a_code_and_deletes_the_secret(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let ada = someone(&app, "ada@agency.example").await;
    let settings = signed_in(&app, &ada).await;
    let (secret, codes) = enrol(&app, &settings, &clock).await;
    let csrf = form_page(&settings, &app.url(SETTINGS)).await;
    let disable = app.url("/settings/two-factor/disable");
    let (status, _, html) = post_form(
        &settings,
        &disable,
        Some(&csrf),
        &[("code", &not(&code_at(&secret, clock.now())))],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(two_factor::is_enabled(&app.store, ada.id).await.unwrap());
    let (status, _, html) = post_form(&settings, &disable, Some(&csrf), &[("code", "")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("Code is empty"), "{html}");

    let (status, to, _) = post_form(&settings, &disable, Some(&csrf), &[("code", &codes[3])]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, SETTINGS));
    assert!(!two_factor::is_enabled(&app.store, ada.id).await.unwrap());
    assert!(app
        .db()
        .await
        .get_two_factor(ada.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(app.db().await.recovery_codes_left(ada.id).await.unwrap(), 0);
    let events: Vec<String> = app
        .audit_entries(&[
            "two_factor.enabled",
            "two_factor.recovery_code_used",
            "two_factor.disabled",
        ])
        .await
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        events,
        [
            "two_factor.enabled",
            "two_factor.recovery_code_used",
            "two_factor.disabled"
        ]
    );
    // The password alone signs in again.
    let client = browser();
    let response = sign_in(&app, &client, &ada.email, &ada.password).await;
    assert_eq!(location(&response), "/");
    // Turning it off when it is off: a conflict page, nothing else.
    let (status, _, _) = post_form(&settings, &disable, Some(&csrf), &[("code", "123456")]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.stop().await;
}

async fn an_operator_resets_it_for_someone_who_lost_both_factors(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let ada = someone(&app, "ada@agency.example").await;
    enrol(&app, &signed_in(&app, &ada).await, &clock).await;
    // Half signed in when the reset comes: that second step is gone with it.
    let halfway = password_step(&app, &ada).await;

    let (ok, out, err) = app
        .operator(&["user", "reset-two-factor", "--email", &ada.email])
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("two-factor authentication of user") && out.contains(&ada.email),
        "{out}"
    );
    assert!(!two_factor::is_enabled(&app.store, ada.id).await.unwrap());
    assert_eq!(app.db().await.recovery_codes_left(ada.id).await.unwrap(), 0);
    let (status, _) = page(&halfway, &app.url(CHALLENGE)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the second step is gone");
    let reset = app.audit_entries(&["two_factor.reset"]).await;
    assert_eq!(reset.len(), 1, "{reset:?}");
    assert_eq!(
        (reset[0].actor_label.as_str(), reset[0].target_id.as_str()),
        ("operator", ada.id.to_string().as_str())
    );
    // The password alone signs in now.
    let client = browser();
    let response = sign_in(&app, &client, &ada.email, &ada.password).await;
    assert_eq!(location(&response), "/");

    // Nothing to reset, or nobody by that email: a failure naming why, and
    // no second audit entry.
    let (ok, _, err) = app
        .operator(&["user", "reset-two-factor", "--email", &ada.email])
        .await;
    assert!(
        !ok && err.contains("has no two-factor authentication to reset"),
        "{err}"
    );
    let (ok, _, err) = app
        .operator(&[
            "user",
            "reset-two-factor",
            "--email",
            "nobody@agency.example",
        ])
        .await;
    assert!(!ok && err.contains("nobody@agency.example"), "{err}");
    assert_eq!(app.audit_entries(&["two_factor.reset"]).await.len(), 1);
    app.stop().await;
}

async fn a_setup_link_resets_the_password_but_still_asks_for_the_code(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let ada = someone(&app, "ada@agency.example").await;
    let (secret, _) = enrol(&app, &signed_in(&app, &ada).await, &clock).await;
    let token = auth::create_setup_link(&mut app.db().await, ada.id)
        .await
        .unwrap();
    let client = browser();
    let csrf = form_page(&client, &app.url(&format!("/setup/{token}"))).await;
    let response = client
        .post(app.url(&format!("/setup/{token}")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("password", "a new long password"),
            ("password_again", "a new long password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), CHALLENGE);
    assert!(set_cookie(&response, "credence_session").is_none());
    clock.advance(STEP);
    let (status, to, _) = answer(&app, &client, &code_at(&secret, clock.now())).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    app.stop().await;
}

async fn owners_require_it_members_are_sent_to_enrolment_and_tokens_keep_working(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let org = app.organization;
    let owner = app
        .add_person("olga@agency.example", org, "owner", None)
        .await;
    let admin = app
        .add_person("ada@agency.example", org, "admin", None)
        .await;
    let member = someone(&app, "tim@agency.example").await;
    let scopes = "organizations:read,organizations:write,user:read,credential-requests:read";
    let owner_token = app.token(owner.id, scopes).await;
    let admin_token = app.token(admin.id, scopes).await;
    let member_token = app.token(member.id, scopes).await;
    let path = format!("/api/v2/organizations/{org}/two-factor");

    let (status, body) = app.get_json(&path, &member_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["twoFactor"]["required"], false);
    // Only owners, and only once they have it themselves.
    let (status, body) = put(&app, &path, &owner_token, json!({ "required": true })).await;
    let error = assert_error(status, &body, StatusCode::CONFLICT);
    assert!(
        error
            .to_string()
            .contains("turn on two-factor authentication for yourself"),
        "{error}"
    );
    for token in [&admin_token, &member_token] {
        let (status, body) = put(&app, &path, token, json!({ "required": true })).await;
        assert_error(status, &body, StatusCode::FORBIDDEN);
    }
    let owner_user = app.db().await.get_user(owner.id).await.unwrap().unwrap();
    let vault = app.context.vault.clone();
    two_factor::start_enrolment(&app.store, &vault, &owner_user)
        .await
        .unwrap();
    let enrolment = two_factor::pending_enrolment(&app.store, &vault, &owner_user)
        .await
        .unwrap()
        .unwrap();
    let secret = secrecy::ExposeSecret::expose_secret(&enrolment.secret).to_string();
    two_factor::confirm_enrolment(
        &app.store,
        &vault,
        &credence::service::audit::Actor::user(&owner_user),
        &owner_user,
        &code_at(&secret, clock.now()),
        clock.now(),
    )
    .await
    .unwrap();
    register_secret(&secret);
    // Bad input: a JSON error naming the field, nothing changed.
    for bad in [
        json!({ "required": "yes" }),
        json!({}),
        json!({ "required": true, "also": 1 }),
    ] {
        let (status, body) = put(&app, &path, &owner_token, bad.clone()).await;
        let error = assert_error(status, &body, StatusCode::BAD_REQUEST);
        let text = error.to_string();
        assert!(
            text.contains("required") || text.contains("also"),
            "{bad}: {text}"
        );
    }
    assert!(app
        .audit_entries(&["two_factor.enforcement_changed"])
        .await
        .is_empty());

    let (status, body) = put(&app, &path, &owner_token, json!({ "required": true })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["twoFactor"],
        json!({ "organizationId": org.0, "required": true })
    );
    let (status, _) = put(&app, &path, &owner_token, json!({ "required": true })).await;
    assert_eq!(status, StatusCode::OK);
    let changed = app.audit_entries(&["two_factor.enforcement_changed"]).await;
    assert_eq!(
        changed.len(),
        1,
        "a PUT that changes nothing is not audited"
    );
    assert_eq!(changed[0].target_id, org.to_string());
    assert_eq!(
        serde_json::from_str::<Value>(&changed[0].details).unwrap(),
        json!({ "required": true })
    );

    // The member signs in and is sent to enrolment from every page.
    let client = signed_in(&app, &member).await;
    for path in [
        "/",
        "/credential-requests/received",
        "/settings",
        "/team",
        "/audit",
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&response), SETTINGS, "{path}");
    }
    let (status, html) = page(&client, &app.url(SETTINGS)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("requires two-factor authentication"),
        "{html}"
    );
    // A form elsewhere is not carried out either.
    let csrf = csrf_of(&html);
    let tokens_before = app
        .db()
        .await
        .list_api_tokens(member.id)
        .await
        .unwrap()
        .len();
    let (status, to, _) = post_form(
        &client,
        &app.url("/settings/tokens"),
        Some(&csrf),
        &[("label", "sneaky"), ("scope", "user:read")],
    )
    .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, SETTINGS));
    assert_eq!(
        app.db()
            .await
            .list_api_tokens(member.id)
            .await
            .unwrap()
            .len(),
        tokens_before
    );
    // API tokens are unaffected.
    for path in ["/api/v2/users/me", "/api/v2/credential-requests/received"] {
        let (status, body) = app.get_json(path, &member_token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // The owner signs in with the code, and is not held up.
    clock.advance(STEP);
    let owner_client = password_step(&app, &owner).await;
    let (status, _, _) = answer(&app, &owner_client, &code_at(&secret, clock.now())).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(page(&owner_client, &app.url("/")).await.0, StatusCode::OK);

    // Once enrolled, the member's pages open.
    enrol(&app, &client, &clock).await;
    assert_eq!(page(&client, &app.url("/")).await.0, StatusCode::OK);
    assert_eq!(page(&client, &app.url("/settings")).await.0, StatusCode::OK);

    // The owner stops requiring it in the web UI.
    let csrf = form_page(&owner_client, &app.url(SETTINGS)).await;
    let (status, to, _) = post_form(
        &owner_client,
        &app.url(&format!("/settings/two-factor/organizations/{org}")),
        Some(&csrf),
        &[("required", "false")],
    )
    .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, SETTINGS));
    assert_eq!(
        app.get_json(&path, &member_token).await.1["twoFactor"]["required"],
        false
    );
    assert_eq!(
        app.audit_entries(&["two_factor.enforcement_changed"])
            .await
            .len(),
        2
    );
    // A member's post of that form: refused, nothing changed.
    let csrf = form_page(&client, &app.url(SETTINGS)).await;
    let (status, _, _) = post_form(
        &client,
        &app.url(&format!("/settings/two-factor/organizations/{org}")),
        Some(&csrf),
        &[("required", "true")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post_form(
        &owner_client,
        &app.url("/settings/two-factor/organizations/999999"),
        Some(&form_page(&owner_client, &app.url(SETTINGS)).await),
        &[("required", "true")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn the_secret_is_sealed_bound_to_its_user_and_never_shown_again(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let ada = someone(&app, "ada@agency.example").await;
    let settings = signed_in(&app, &ada).await;
    let (secret, codes) = enrol(&app, &settings, &clock).await;
    let row = app
        .db()
        .await
        .get_two_factor(ada.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.secret_sealed.starts_with("cv1.k1."),
        "{}",
        row.secret_sealed
    );
    assert!(
        !format!("{row:?}").contains(&row.secret_sealed),
        "Debug redacts it"
    );
    let bytes = Secret::Encoded(secret.clone()).to_bytes().unwrap();
    let dump = app.database_text().await;
    for plain in [secret.clone(), secret.to_lowercase(), hex_of(&bytes)] {
        assert!(
            !dump.contains(&plain),
            "the TOTP secret is in a column in plain text"
        );
    }
    for code in &codes {
        assert!(!dump.contains(code.as_str()) && !dump.contains(&code.replace('-', "")));
    }
    // Nowhere in a page or an answer after enrolment (`page` and `send` scan
    // for it), nor in a log line.
    for path in [SETTINGS, "/settings", "/audit"] {
        page(&settings, &app.url(path)).await;
    }
    let token = app.token(ada.id, "user:read,organization:read").await;
    app.get_json("/api/v2/users/me", &token).await;
    app.get_json(
        &format!("/api/v2/audit-logs/organization/{}", app.organization),
        &token,
    )
    .await;
    assert!(!captured_logs().contains(&secret));

    // Rotation renews it, and its codes still sign in.
    let version = credence_vault::rotate_key_file(&app.dir.path().join("credence.key")).unwrap();
    let vault = app.context.vault.clone();
    vault.reload().unwrap();
    let report = secrets::renew_all(&app.store, &vault).await.unwrap();
    let (_, renewed) = report
        .columns
        .iter()
        .find(|(column, _)| *column == credence_store::SealedColumn::TwoFactorSecret)
        .expect("the TOTP secrets are a sealed column");
    assert_eq!(renewed.rewrapped, 1, "{report:?}");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let row = app
        .db()
        .await
        .get_two_factor(ada.id)
        .await
        .unwrap()
        .unwrap();
    assert!(row.secret_sealed.starts_with(&format!("cv1.k{version}.")));
    clock.advance(STEP);
    let client = password_step(&app, &ada).await;
    let (status, _, _) = answer(&app, &client, &code_at(&secret, clock.now())).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Bound to its user: Ada's sealed secret copied into Bob's enrolment
    // does not open for Bob.
    let bob = someone(&app, "bob@agency.example").await;
    let bob_user = app.db().await.get_user(bob.id).await.unwrap().unwrap();
    two_factor::start_enrolment(&app.store, &vault, &bob_user)
        .await
        .unwrap();
    let mut sql = app.sql().await;
    sql.execute(&format!(
        "UPDATE two_factor SET secret_sealed = '{}' WHERE user_id = {}",
        row.secret_sealed, bob.id.0
    ))
    .await;
    sql.close().await;
    assert!(two_factor::pending_enrolment(&app.store, &vault, &bob_user)
        .await
        .is_err());
    app.stop().await;
}

/// The broker's session callers are held to the same rule as pages: a
/// session of someone who owes their organization a second factor may not use
/// a connection; an API token may.
async fn a_session_owing_a_second_factor_cannot_use_a_connection_but_a_token_can(backend: Backend) {
    let api = ContactsApi::start().await;
    let agency = Agency::start_with(
        backend,
        &[("contacts", contacts_app("contacts", &api))],
        |_| {},
    )
    .await;
    let body = json!({
        "name": "Contacts sync",
        "teamId": agency.app.team,
        "credentials": [{ "appName": "contacts", "appModules": ["searchContacts"] }],
        "provider": { "providerMakeUserId": agency.teammate.id },
    });
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.requester_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let credential = created["request"]["credentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = agency
        .authorize_with(&credential, "authorize", &api.key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = agency.app.team_connections().await[0].id;
    let url = agency.app.url(&format!(
        "/api/v2/connections/{connection}/proxy/v1/contacts"
    ));
    let token = agency
        .app
        .token(agency.requester.id, "connections:use")
        .await;
    let session = signed_in(&agency.app, &agency.requester).await;
    assert_eq!(
        session.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    // A fixture: the organization requires it (the API's own test is above).
    agency
        .app
        .db()
        .await
        .set_organization_two_factor(agency.app.organization, true)
        .await
        .unwrap();
    let response = session.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert!(
        body.to_string()
            .contains("requires two-factor authentication"),
        "{body}"
    );
    let response = agency
        .app
        .client
        .get(&url)
        .header("Authorization", format!("Token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "API tokens are unaffected"
    );
    agency.app.stop().await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

on_both_backends!(
    enrolment_then_sign_in_asks_for_a_code_once_per_time_step,
    a_challenge_takes_five_answers_then_the_password_again,
    recovery_codes_sign_in_once_and_new_ones_replace_them,
    turning_it_off_takes_a_code_and_deletes_the_secret,
    a_setup_link_resets_the_password_but_still_asks_for_the_code,
    an_operator_resets_it_for_someone_who_lost_both_factors,
    owners_require_it_members_are_sent_to_enrolment_and_tokens_keep_working,
    the_secret_is_sealed_bound_to_its_user_and_never_shown_again,
    a_session_owing_a_second_factor_cannot_use_a_connection_but_a_token_can,
);
