//! Browser sign-in: the one-time setup link, password sign-in with cookie
//! sessions, sign-out, CSRF on every form and rate limits on attempts.

use crate::on_both_backends;
use crate::support::{
    browser, csrf_of, form_page, set_cookie, sign_in, spawn_app, spawn_app_with, TestApp,
};
use credence_store::Backend;
use reqwest::StatusCode;

async fn home_shows(app: &TestApp, client: &reqwest::Client) -> Option<String> {
    let response = client.get(app.url("/")).send().await.unwrap();
    match response.status() {
        StatusCode::OK => Some(response.text().await.unwrap()),
        StatusCode::SEE_OTHER | StatusCode::TEMPORARY_REDIRECT | StatusCode::FOUND => None,
        other => panic!("unexpected status {other} for /"),
    }
}

async fn the_setup_link_sets_a_password_once_and_signs_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = browser();
    let link = app.url(&format!("/setup/{}", app.setup_token));
    let csrf = form_page(&client, &link).await;
    let password = "a long enough password";

    let response = client
        .post(&link)
        .form(&[
            ("password", password),
            ("password_again", "different one here"),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "mismatched passwords are refused"
    );
    let response = client
        .post(&link)
        .form(&[
            ("password", "short"),
            ("password_again", "short"),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("at least 12"));

    let response = client
        .post(&link)
        .form(&[
            ("password", password),
            ("password_again", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = home_shows(&app, &client)
        .await
        .expect("signed in after setup");
    assert!(page.contains(&app.admin_email), "{page}");
    // Signed in now, the browser's forms carry its new session's CSRF token.
    let csrf = csrf_of(&page);

    // Used once, the link is gone, for anyone.
    let response = browser().get(&link).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client
        .post(&link)
        .form(&[
            ("password", password),
            ("password_again", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // And the password works for a normal sign-in.
    let fresh = browser();
    let response = sign_in(&app, &fresh, &app.admin_email.to_uppercase(), password).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "email is matched without regard to case"
    );
    app.stop().await;
}

async fn sign_in_issues_a_new_http_only_session_and_sign_out_ends_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let client = browser();

    let response = sign_in(&app, &client, &ann.email, &ann.password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let first = set_cookie(&response, "credence_session").expect("a session cookie");
    assert!(
        first.contains("HttpOnly") && first.contains("SameSite=Lax"),
        "{first}"
    );
    assert!(
        !first.contains("Secure"),
        "plain http public URL: no Secure flag"
    );

    // Signing in again gives another session id, never the old one.
    let response = sign_in(&app, &client, &ann.email, &ann.password).await;
    let second = set_cookie(&response, "credence_session").unwrap();
    assert_ne!(first.split(';').next(), second.split(';').next());
    assert!(home_shows(&app, &client).await.is_some());

    // Sign out; replaying the old cookie afterwards does not work.
    let session = second.split(';').next().unwrap().to_string();
    let csrf = csrf_of(&home_shows(&app, &client).await.unwrap());
    let response = client
        .post(app.url("/sign-out"))
        .form(&[("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(home_shows(&app, &client).await.is_none());
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = replay
        .get(app.url("/"))
        .header("Cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "an ended session stays ended"
    );
    app.stop().await;
}

async fn wrong_password_and_unknown_email_get_the_same_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let wrong = sign_in(&app, &browser(), &ann.email, "not the password at all").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, "credence_session").is_none());
    let wrong_text = wrong.text().await.unwrap();
    let unknown = sign_in(
        &app,
        &browser(),
        "nobody@corp.example",
        "not the password at all",
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown_text = unknown.text().await.unwrap();
    assert!(wrong_text.contains("The email or password is wrong."));
    assert!(unknown_text.contains("The email or password is wrong."));
    // A user who never chose a password cannot sign in with any.
    let admin = sign_in(&app, &browser(), &app.admin_email, "").await;
    assert_eq!(admin.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn form_posts_without_a_matching_csrf_token_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    // No CSRF cookie at all (a cross-site post).
    let response = browser()
        .post(app.url("/sign-in"))
        .form(&[
            ("email", ann.email.as_str()),
            ("password", ann.password.as_str()),
            ("csrf_token", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A cookie, but another token in the form.
    let client = browser();
    let csrf = form_page(&client, &app.url("/sign-in")).await;
    let response = client
        .post(app.url("/sign-in"))
        .form(&[
            ("email", ann.email.as_str()),
            ("password", ann.password.as_str()),
            ("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&response, "credence_session").is_none());
    // Sign-out too.
    let response = client
        .post(app.url("/sign-out"))
        .form(&[("csrf_token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // An incomplete form is a 400 page, not a crash.
    let response = client
        .post(app.url("/sign-in"))
        .body(format!("csrf_token={csrf}&garbage=%%%"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Without the token, the same post is refused before its fields are read.
    let response = client
        .post(app.url("/sign-in"))
        .body("garbage=%%%")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

async fn repeated_attempts_on_one_account_are_rate_limited(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let client = browser();
    for attempt in 1..=5 {
        let response = sign_in(&app, &client, &ann.email, "wrong password here").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    // Even the right password waits now at this source on a browser the account
    // never signed in on (sign_in_limits.rs has the rest), whatever the case.
    let response = sign_in(&app, &client, &ann.email.to_uppercase(), &ann.password).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    assert!(set_cookie(&response, "credence_session").is_none());
    app.stop().await;
}

async fn many_attempts_from_one_address_are_rate_limited(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = browser();
    let mut limited = false;
    for attempt in 1..=21 {
        let response = sign_in(
            &app,
            &client,
            &format!("guess{attempt}@corp.example"),
            "wrong password here",
        )
        .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(attempt, 21, "the address limit is 20 attempts");
            limited = true;
        }
    }
    assert!(limited, "21 attempts from one address were not limited");
    app.stop().await;
}

async fn cookies_are_secure_when_the_public_url_is_https(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.public_url = Some("https://credence.example".into())
    })
    .await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let client = browser();
    let response = client.get(app.url("/sign-in")).send().await.unwrap();
    let csrf_cookie = set_cookie(&response, "__Host-credence_csrf").unwrap();
    assert!(
        csrf_cookie.contains("Secure") && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );
    let csrf = csrf_of(&response.text().await.unwrap());
    let cookie = csrf_cookie.split(';').next().unwrap().to_string();
    // reqwest will not send a Secure cookie over http, so send it by hand.
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url("/sign-in"))
        .header("Cookie", cookie)
        .form(&[
            ("email", ann.email.as_str()),
            ("password", ann.password.as_str()),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // The session cookie too is `__Host-`: a sibling subdomain can neither
    // plant a session of its choosing nor shadow ours.
    assert!(set_cookie(&response, "credence_session").is_none());
    let session = set_cookie(&response, "__Host-credence_session").unwrap();
    assert!(
        session.contains("Secure") && session.contains("HttpOnly") && session.contains("Path=/"),
        "{session}"
    );
    let home = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/"))
        .header("Cookie", session.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        home.status(),
        StatusCode::OK,
        "the prefixed session signs in"
    );
    app.stop().await;
}

async fn expired_sessions_do_not_sign_in_and_are_swept(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let token = credence::service::random_token();
    let hash = credence::service::token_hash(&token);
    let mut db = app.db().await;
    db.insert_session(
        &hash,
        ann.id,
        credence_store::now() - chrono::Duration::minutes(1),
    )
    .await
    .unwrap();
    let response = app
        .client
        .get(app.url("/"))
        .header("Cookie", format!("credence_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "an expired session does not sign in"
    );
    assert_eq!(db.delete_expired_sessions().await.unwrap(), 1);
    assert_eq!(db.delete_expired_sessions().await.unwrap(), 0);
    drop(db);
    app.stop().await;
}

on_both_backends!(
    expired_sessions_do_not_sign_in_and_are_swept,
    the_setup_link_sets_a_password_once_and_signs_in,
    sign_in_issues_a_new_http_only_session_and_sign_out_ends_it,
    wrong_password_and_unknown_email_get_the_same_answer,
    form_posts_without_a_matching_csrf_token_are_refused,
    repeated_attempts_on_one_account_are_rate_limited,
    many_attempts_from_one_address_are_rate_limited,
    cookies_are_secure_when_the_public_url_is_https,
);
