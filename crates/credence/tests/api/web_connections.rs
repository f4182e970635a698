//! The Connections pages over HTTP: the team's list, Add connection (an API
//! key verified by the app before it is accepted; an OAuth app's consent with
//! the advanced settings), rename, verify (ok, or not ok with the reason) and
//! delete after a confirmation naming who used the connection. Bad input is a
//! 400 with the message next to the field and nothing changed; a secret typed
//! in never comes back; a forged form is a 403; another team's connection a 404.

use crate::on_both_backends;
use crate::support::{
    assert_no_secret, captured_logs, csrf_of, register_secret, signed_in, wait_until, world,
    Agency, APP,
};
use crate::support::{page, post_form as post};
use credence_store::Backend;
use reqwest::StatusCode;

async fn a_team_adds_renames_verifies_and_deletes_a_connection(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let rita = signed_in(app, &agency.requester).await;
    let (status, html) = page(&rita, &app.url("/connections")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("no connections yet"), "{html}");
    assert!(html.contains(r#"href="/connections/new""#), "{html}");
    let csrf = csrf_of(&html);

    let (status, html) = page(&rita, &app.url("/connections/new")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(r#"<option value="acme-crm">Acme CRM</option>"#),
        "{html}"
    );
    let (status, html) = page(&rita, &app.url("/connections/new?app=acme-crm")).await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        r#"value="My Acme CRM connection""#,
        r#"name="field.apiKey""#,
        r#"type="password""#,
        r#"name="modules" value="searchContacts" checked"#,
        "<legend>",
    ] {
        assert!(html.contains(expected), "{expected}: {html}");
    }

    let add = app.url("/connections");
    let key = "web-conn-key-4471";
    let wrong = "web-conn-wrong-8830";
    register_secret(wrong);
    agency.upstream.accept(key);
    let good = [
        ("app", "acme-crm"),
        ("name", "CRM <main>"),
        ("modules", "searchContacts"),
        ("field.apiKey", key),
    ];
    // Forged: 403. No module, a name too long, a refused key: 400 at the field.
    assert_eq!(
        post(&rita, &add, None, &good).await.0,
        StatusCode::FORBIDDEN
    );
    let long = "n".repeat(256);
    let cases: [(Vec<(&str, &str)>, &str); 3] = [
        (
            vec![("app", "acme-crm"), ("name", "CRM"), ("field.apiKey", key)],
            "Choose at least one module",
        ),
        (
            vec![
                ("app", "acme-crm"),
                ("name", &long),
                ("modules", "searchContacts"),
                ("field.apiKey", key),
            ],
            "255",
        ),
        (
            vec![
                ("app", "acme-crm"),
                ("name", "CRM"),
                ("modules", "searchContacts"),
                ("field.apiKey", wrong),
            ],
            "were not accepted",
        ),
    ];
    for (fields, message) in cases {
        let (status, _, html) = post(&rita, &add, Some(&csrf), &fields).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
        assert!(html.contains(message), "{message}: {html}");
        assert!(
            html.contains("field-error") || html.contains("role=\"alert\""),
            "{html}"
        );
        assert!(app.team_connections().await.is_empty(), "nothing stored");
    }
    let (status, _, html) = post(
        &rita,
        &add,
        Some(&csrf),
        &[
            ("app", "acme-crm"),
            ("name", &long),
            ("modules", "searchContacts"),
            ("field.apiKey", key),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains(r#"id="name-error""#),
        "next to the name: {html}"
    );

    let (status, to, _) = post(&rita, &add, Some(&csrf), &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let connection = app.team_connections().await[0].clone();
    assert_eq!(to, format!("/connections/{}", connection.id));
    assert_eq!(connection.name, "CRM <main>");
    let detail = app.url(&to);
    let (_, html) = page(&rita, &detail).await;
    for expected in [
        "CRM &lt;main&gt; was added and verified",
        "Search contacts",
        "Valid",
        "Delete…",
    ] {
        assert!(html.contains(expected), "{expected}: {html}");
    }
    assert!(
        !html.contains("Create a contact"),
        "only the chosen module: {html}"
    );
    let (_, list) = page(&rita, &app.url("/connections")).await;
    for expected in [
        "CRM &lt;main&gt;",
        "Acme CRM",
        "Valid",
        "Search contacts",
        "Never",
    ] {
        assert!(list.contains(expected), "{expected}: {list}");
    }

    // Another team's member: not in their list, 404 on every page and form.
    let olga = signed_in(app, &agency.outsider).await;
    let (_, theirs) = page(&olga, &app.url("/connections")).await;
    assert!(!theirs.contains("CRM &lt;main&gt;"), "{theirs}");
    let olga_csrf = csrf_of(&theirs);
    assert_eq!(page(&olga, &detail).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        page(&olga, &format!("{detail}/delete")).await.0,
        StatusCode::NOT_FOUND
    );
    for action in ["rename", "verify", "delete"] {
        let (status, _, _) = post(
            &olga,
            &format!("{detail}/{action}"),
            Some(&olga_csrf),
            &[("name", "Mine")],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(
        page(&rita, &app.url("/connections/nope")).await.0,
        StatusCode::NOT_FOUND
    );

    // Rename: an empty name is refused at the field; a good one is taken.
    let (status, _, html) = post(
        &rita,
        &format!("{detail}/rename"),
        Some(&csrf),
        &[("name", " ")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains(r#"id="name-error""#), "{html}");
    assert_eq!(app.team_connections().await[0].name, "CRM <main>");
    assert_eq!(
        post(
            &rita,
            &format!("{detail}/rename"),
            None,
            &[("name", "Forged")]
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, _, _) = post(
        &rita,
        &format!("{detail}/rename"),
        Some(&csrf),
        &[("name", "CRM main")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, html) = page(&rita, &detail).await;
    assert!(html.contains("Renamed to CRM main."), "{html}");

    // A call through the broker, so the confirmation names its consumer.
    let use_token = app.token(agency.requester.id, "connections:use").await;
    app.client
        .get(app.url(&format!(
            "/api/v2/connections/{}/proxy/v1/contacts",
            connection.id
        )))
        .header("Authorization", format!("Token {use_token}"))
        .header("X-Credence-Consumer", "nightly-export")
        .send()
        .await
        .unwrap();

    // Verify: ok; then the app refuses the key: not ok, with the reason.
    let (status, _, _) = post(&rita, &format!("{detail}/verify"), Some(&csrf), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, html) = page(&rita, &detail).await;
    assert!(html.contains("CRM main works"), "{html}");
    agency.upstream.reject(key);
    post(&rita, &format!("{detail}/verify"), Some(&csrf), &[]).await;
    let (_, html) = page(&rita, &detail).await;
    assert!(
        html.contains("flash bad") && html.contains("does not work"),
        "{html}"
    );
    assert!(html.contains("state invalid"), "{html}");

    wait_until("the call is in the usage log", || async {
        page(&rita, &format!("{detail}/delete"))
            .await
            .1
            .contains("nightly-export")
    })
    .await;
    let (status, html) = page(&rita, &format!("{detail}/delete")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Delete connection"), "{html}");
    assert_eq!(
        post(&rita, &format!("{detail}/delete"), None, &[]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.team_connections().await.len(), 1);
    let (status, to, _) = post(&rita, &format!("{detail}/delete"), Some(&csrf), &[]).await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/connections")
    );
    assert!(app.team_connections().await.is_empty());
    let (_, list) = page(&rita, &app.url("/connections")).await;
    assert!(list.contains("CRM main was deleted."), "{list}");
    assert_eq!(page(&rita, &detail).await.0, StatusCode::NOT_FOUND);

    let events = agency.audit_events().await;
    for event in [
        "connection.created",
        "connection.renamed",
        "connection.verified",
        "connection.deleted",
    ] {
        assert!(events.contains(&event.to_string()), "{event}: {events:?}");
    }
    assert_no_secret("the logs", &captured_logs());
    agency.app.stop().await;
}

/// An OAuth app: the form has the advanced settings, a client id without its
/// secret is refused at the field, and the extra scopes go to the consent.
async fn an_oauth_connection_is_added_through_consent_with_extra_scopes(backend: Backend) {
    let world = world(backend, true).await;
    let agency = &world.agency;
    let app = &agency.app;
    let rita = signed_in(app, &agency.requester).await;
    let (status, html) = page(&rita, &app.url(&format!("/connections/new?app={APP}"))).await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "Advanced settings",
        r#"name="client_secret" type="password""#,
        r#"name="scopes""#,
        "Continue with Local OAuth",
    ] {
        assert!(html.contains(expected), "{expected}: {html}");
    }
    assert!(!html.contains("field.apiKey"), "{html}");
    let csrf = csrf_of(&html);
    let add = app.url("/connections");
    let (status, _, html) = post(
        &rita,
        &add,
        Some(&csrf),
        &[
            ("app", APP),
            ("name", "Mail"),
            ("modules", "searchContacts"),
            ("client_id", "own-client"),
            ("client_secret", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains(r#"id="client_secret-error""#), "{html}");
    assert!(
        html.contains(r#"value="own-client""#),
        "the client id is kept: {html}"
    );

    let (status, consent, _) = post(
        &rita,
        &add,
        Some(&csrf),
        &[
            ("app", APP),
            ("name", "Mail"),
            ("modules", "searchContacts"),
            ("scopes", "email profile"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        consent.starts_with(&world.provider.authorization_endpoint),
        "{consent}"
    );
    let scope = reqwest::Url::parse(&consent)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    for wanted in ["contacts.read", "email", "profile"] {
        assert!(scope.split(' ').any(|s| s == wanted), "{wanted} in {scope}");
    }
    assert!(!scope.contains("contacts.write"), "{scope}");
    let outcome = world.provider.consent(&consent, "rita", true).await;
    register_secret(outcome.code.as_deref().unwrap());
    let response = rita.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let connection = app
        .team_connections()
        .await
        .into_iter()
        .find(|c| c.name == "Mail")
        .expect("created after consent");
    let (_, html) = page(&rita, &app.url(&format!("/connections/{}", connection.id))).await;
    assert!(
        html.contains(&format!(r#"href="/oauth/reauth/{}""#, connection.id)),
        "{html}"
    );
    assert!(html.contains("email"), "the scopes are shown: {html}");
    world.agency.app.stop().await;
}

on_both_backends!(
    a_team_adds_renames_verifies_and_deletes_a_connection,
    an_oauth_connection_is_added_through_consent_with_extra_scopes,
);
