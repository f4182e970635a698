//! The recipient's page of a received request over HTTP: authorizing with an
//! app's fields (verified by the app; a refusal next to the field, 400, and
//! the secret never back in a page, a flash or a log), declining with a
//! reason within its limit, revoking, reauthorizing when asked, and "What was
//! done with my access". Forged forms get 403; whoever is not the recipient,
//! and a credential of another request, get 404.

use crate::on_both_backends;
use crate::support::{
    assert_no_secret, captured_logs, credential_path, csrf_of, register_secret, signed_in,
    wait_until, Agency,
};
use crate::support::{page, post_form as post};
use credence_domain::CredentialState;
use credence_store::Backend;
use reqwest::StatusCode;

async fn state_of(agency: &Agency, credential: &str) -> CredentialState {
    agency.app.stored_credential(credential).await.state
}

async fn the_recipient_authorizes_declines_and_revokes_on_the_page(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let (acme, beta) = (&credentials[0], &credentials[1]);
    let base = |credential: &str, action: &str| {
        app.url(&format!(
            "/received/{request}/credentials/{credential}/{action}"
        ))
    };
    let tom = signed_in(app, &agency.teammate).await;
    let received = app.url(&format!("/received/{request}"));
    let (status, html) = page(&tom, &received).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for expected in [
        "Onboarding Acme",
        "Requested by",
        r#"aria-current="page""#,
        "Authorize Acme CRM",
        r#"name="field.apiKey""#,
        r#"type="password""#,
        r#"autocomplete="off""#,
        "Decline Beta Desk",
        "What was done with my access",
    ] {
        assert!(html.contains(expected), "{expected}: {html}");
    }
    assert!(!html.contains("Revoke access"), "nothing to revoke yet");
    let csrf = csrf_of(&html);

    // Nobody else sees the page or may act: the requester, another team.
    for person in [&agency.requester, &agency.outsider] {
        let other = signed_in(app, person).await;
        let (status, _) = page(&other, &received).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, other_page) = page(&other, &app.url("/credential-requests/received")).await;
        let (status, _, _) = post(
            &other,
            &base(acme, "revoke"),
            Some(&csrf_of(&other_page)),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = page(&tom, &app.url("/received/not-an-id")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A forged form (no token) is refused before anything is read.
    let typed = "web-key-forged-7781";
    register_secret(typed);
    let (status, _, _) = post(
        &tom,
        &base(acme, "authorize"),
        None,
        &[("field.apiKey", typed)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(&agency, acme).await, CredentialState::Pending);

    // An empty key: 400, the message next to the field, nothing changed.
    let (status, _, html) = post(
        &tom,
        &base(acme, "authorize"),
        Some(&csrf),
        &[("field.apiKey", "  ")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("field-error"), "{html}");
    assert!(html.contains(r#"aria-invalid="true""#), "{html}");
    assert!(html.contains("is required"), "{html}");
    assert_eq!(state_of(&agency, acme).await, CredentialState::Pending);

    // A key the app refuses: 400 saying so, and the key is not in the page.
    let wrong = "web-key-wrong-5512";
    register_secret(wrong);
    let (status, _, html) = post(
        &tom,
        &base(acme, "authorize"),
        Some(&csrf),
        &[("field.apiKey", wrong)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("were not accepted"), "{html}");
    assert_eq!(state_of(&agency, acme).await, CredentialState::Invalid);

    // A key the app accepts: authorized, said once.
    let key = "web-key-right-9034";
    agency.upstream.accept(key);
    let (status, to, _) = post(
        &tom,
        &base(acme, "authorize"),
        Some(&csrf),
        &[("field.apiKey", key)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to, format!("/received/{request}"));
    assert_eq!(state_of(&agency, acme).await, CredentialState::Authorized);
    let (_, html) = page(&tom, &received).await;
    assert!(html.contains("Acme CRM: authorized"), "{html}");
    assert!(html.contains("Revoke access to Acme CRM"), "{html}");
    let (_, again) = page(&tom, &received).await;
    assert!(
        !again.contains("Acme CRM: authorized"),
        "the flash is shown once"
    );

    // A credential of another request under this request's path: 404.
    let (other_request, other_credentials, _) = agency
        .create_request(agency.teammate.id, &["beta-desk"])
        .await;
    let (status, _, _) = post(
        &tom,
        &base(&other_credentials[0], "decline"),
        Some(&csrf),
        &[("reason", "wrong path")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        state_of(&agency, &other_credentials[0]).await,
        CredentialState::Pending,
        "{other_request}"
    );

    // Decline: a reason is asked for, and kept within its limit.
    let long = "x".repeat(257);
    for reason in ["", long.as_str()] {
        let (status, _, html) = post(
            &tom,
            &base(beta, "decline"),
            Some(&csrf),
            &[("reason", reason)],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
        assert!(html.contains("field-error"), "{html}");
        assert_eq!(state_of(&agency, beta).await, CredentialState::Pending);
    }
    let (status, _, html) = post(
        &tom,
        &base(beta, "decline"),
        Some(&csrf),
        &[("reason", &long)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("256"), "the limit is named: {html}");
    assert!(html.contains(&long), "what was typed is kept: {html}");
    let (status, _, _) = post(
        &tom,
        &base(beta, "decline"),
        Some(&csrf),
        &[("reason", "We do not use Beta Desk <any more>")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&agency, beta).await, CredentialState::Declined);
    let (_, html) = page(&tom, &received).await;
    assert!(html.contains("Beta Desk: declined"), "{html}");
    let rita = signed_in(app, &agency.requester).await;
    let (_, details) = page(&rita, &app.url(&format!("/credential-requests/{request}"))).await;
    assert!(
        details.contains("Declined: We do not use Beta Desk &lt;any more&gt;"),
        "the requester sees the reason, escaped: {details}"
    );

    // Revoke: the connection stops working.
    let (status, _, _) = post(&tom, &base(acme, "revoke"), Some(&csrf), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&agency, acme).await, CredentialState::Revoked);
    let (_, html) = page(&tom, &received).await;
    assert!(html.contains("Acme CRM: revoked"), "{html}");
    // Revoking twice is refused with a message, not an error page.
    let (status, to, _) = post(&tom, &base(acme, "revoke"), Some(&csrf), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to, format!("/received/{request}"));
    let (_, html) = page(&tom, &received).await;
    assert!(html.contains("flash bad"), "{html}");

    for event in [
        "credential.authorized",
        "credential.declined",
        "credential.revoked",
    ] {
        assert!(
            agency.audit_events().await.contains(&event.to_string()),
            "{event}"
        );
    }
    assert_no_secret("the logs", &captured_logs());
    agency.app.stop().await;
}

async fn the_recipient_reauthorizes_when_asked_and_sees_the_usage_log(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let acme = &credentials[0];
    let first = "web-key-first-1188";
    agency.upstream.accept(first);
    let (status, body) = agency.authorize_with(acme, "authorize", first).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A call through the broker, with a consumer label.
    let connection = app.team_connections().await[0].id;
    let use_token = app.token(agency.requester.id, "connections:use").await;
    app.client
        .get(app.url(&format!(
            "/api/v2/connections/{connection}/proxy/v1/contacts"
        )))
        .header("Authorization", format!("Token {use_token}"))
        .header("X-Credence-Consumer", "crm-sync")
        .send()
        .await
        .unwrap();
    let tom = signed_in(app, &agency.teammate).await;
    let usage = app.url(&format!("/received/{request}/usage"));
    wait_until("the call is on the usage page", || async {
        page(&tom, &usage).await.1.contains("crm-sync")
    })
    .await;
    let (status, html) = page(&tom, &usage).await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "What was done with my access",
        "crm-sync",
        "GET",
        "/v1/contacts",
        r#"th scope="col""#,
    ] {
        assert!(html.contains(expected), "{expected}: {html}");
    }
    for person in [&agency.requester, &agency.outsider] {
        let other = signed_in(app, person).await;
        assert_eq!(page(&other, &usage).await.0, StatusCode::NOT_FOUND);
    }

    // The key stops working; the requester asks; the page offers Reauthorize.
    agency.upstream.reject(first);
    let (status, body) = agency
        .post(
            &credential_path(acme, "request-reauthorize"),
            &agency.requester_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        state_of(&agency, acme).await,
        CredentialState::Reauthorizing
    );
    let received = app.url(&format!("/received/{request}"));
    let (_, html) = page(&tom, &received).await;
    assert!(html.contains("Reauthorize Acme CRM"), "{html}");
    let csrf = csrf_of(&html);
    let second = "web-key-second-6620";
    agency.upstream.accept(second);
    let (status, _, _) = tom
        .post(app.url(&format!("/received/{request}/credentials/{acme}/authorize")))
        .form(&[("csrf_token", csrf.as_str()), ("field.apiKey", second)])
        .send()
        .await
        .map(|r| (r.status(), (), ()))
        .unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&agency, acme).await, CredentialState::Authorized);
    let (_, html) = page(&tom, &received).await;
    assert!(html.contains("Acme CRM: reauthorized"), "{html}");
    assert!(agency
        .audit_events()
        .await
        .contains(&"credential.reauthorized".to_string()));
    assert_no_secret("the logs", &captured_logs());
    agency.app.stop().await;
}

on_both_backends!(
    the_recipient_authorizes_declines_and_revokes_on_the_page,
    the_recipient_reauthorizes_when_asked_and_sees_the_usage_log,
);
