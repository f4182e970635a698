//! Email over SMTP to a real server (MailDev, read back through its API): the
//! external recipient's request email leads to their page, each kind of
//! change sends its email with who, what and the link, and no email holds a
//! secret; without SMTP, mail stays in the local mailbox (`credence mail`).

use crate::on_both_backends;
use crate::support::{
    accept_invitation_in, browser, fast, register_secret, Agency, Maildev, ReceivedEmail,
};
use credence::service::clock::Clock;
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::json;

/// An agency whose Credence sends mail through `maildev`, from `credence@agency.example`.
async fn agency_mailing_to(backend: Backend, maildev: &Maildev) -> Agency {
    let smtp = maildev.smtp();
    Agency::start_with(backend, &[], move |config| {
        config.jobs = credence::jobs::Settings {
            mail: credence::jobs::MailSettings {
                from: "Credence <credence@agency.example>".into(),
                smtp: Some(smtp),
                ..Default::default()
            },
            ..fast(Clock::system())
        };
    })
    .await
}

/// The URL on the line `label: URL` of a text body.
fn link_after(email: &ReceivedEmail, label: &str) -> String {
    email
        .text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{label}: ")))
        .unwrap_or_else(|| panic!("no {label:?} line in {:?}", email.text))
        .trim()
        .to_string()
}

async fn an_external_recipient_follows_the_emailed_link_to_their_request(backend: Backend) {
    let maildev = Maildev::start().await;
    let agency = agency_mailing_to(backend, &maildev).await;
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.admin_token,
            Some(json!({
                "name": "Client onboarding",
                "teamId": agency.app.team,
                "credentials": [{ "appName": "acme-crm", "appModules": ["searchContacts"] }],
                "provider": { "newUser": { "name": "Cleo Client", "email": "cleo@client.example" } },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let request = created["request"]["id"].as_str().unwrap().to_string();

    let email = &maildev
        .wait_for_email("cleo@client.example", "Client onboarding")
        .await;
    assert!(email.from.contains("credence@agency.example"), "{email:?}");
    assert!(
        email.subject.contains("Client onboarding")
            && email.subject.contains("asks you for access"),
        "{}",
        email.subject
    );
    for body in [&email.text, &email.html] {
        assert!(body.contains("Acme CRM"), "the apps are named: {body}");
        assert!(
            body.contains("Acme CRM: Search contacts"),
            "and their modules: {body}"
        );
        assert!(body.contains(&agency.app.admin_email), "who asks: {body}");
        assert!(body.contains("guest account"), "what to do: {body}");
    }
    let invitation = link_after(email, "Accept the invitation");
    let request_link = link_after(email, "Open the request");
    assert!(email.html.contains(&format!("href=\"{invitation}\"")));
    assert!(invitation.starts_with(&format!("{}/invitations/", agency.app.address)));
    assert!(email.message_id.contains("@agency.example"), "{email:?}");

    // Cleo follows the links: she becomes a guest, and the request's link
    // takes her to her page of the request.
    let cleo = browser();
    let (page, accepted) = accept_invitation_in(&cleo, &invitation).await;
    assert_eq!((page, accepted), (StatusCode::OK, StatusCode::SEE_OTHER));
    let response = cleo.get(&request_link).send().await.unwrap();
    assert_eq!(
        response.headers()["location"],
        format!("/received/{request}").as_str()
    );
    let page = cleo
        .get(agency.app.url(&format!("/received/{request}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("Client onboarding") && page.contains("Acme CRM"),
        "{page}"
    );

    // Sent once, and marked sent via SMTP.
    agency.app.wait_for_outbox_delivered().await;
    let jobs = agency
        .app
        .outbox_jobs(credence_store::OutboxSelection::All)
        .await;
    assert!(
        jobs.iter()
            .all(|job| job.sent_via.as_deref() == Some("smtp")),
        "{jobs:?}"
    );
    let to_cleo = maildev.emails().await;
    let to_cleo = to_cleo
        .iter()
        .filter(|e| e.to.iter().any(|t| t == "cleo@client.example"));
    assert_eq!(to_cleo.count(), 1);
    agency.app.stop().await;
}

async fn each_change_emails_who_did_what_and_no_email_holds_a_secret(backend: Backend) {
    let maildev = Maildev::start().await;
    let agency = agency_mailing_to(backend, &maildev).await;
    let key = "sk-live-mail-test-8f2a91c7";
    register_secret(key);
    agency.upstream.accept(key);
    let (_, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let (acme, beta) = (&credentials[0], &credentials[1]);
    let (status, body) = agency.authorize_with(acme, "authorize", key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = agency
        .post(
            &format!("/api/v2/credential-requests/credentials/{beta}/decline"),
            &agency.teammate_token,
            Some(json!({ "reason": "we do not use <Beta> any more" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = agency
        .post(
            &format!("/api/v2/credential-requests/credentials/{acme}/revoke"),
            &agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let maildev = &maildev;
    let find =
        |to: String, subject: String| async move { maildev.wait_for_email(&to, &subject).await };
    let received = find(
        agency.teammate.email.clone(),
        format!("({}) asks you", agency.requester.email),
    )
    .await;
    assert!(
        received.text.contains("Acme CRM and Beta Desk"),
        "{}",
        received.text
    );
    assert!(
        received.text.contains("authorize or decline"),
        "{}",
        received.text
    );
    let authorized = find(agency.requester.email.clone(), "Acme CRM authorized".into()).await;
    assert!(
        authorized.text.contains(&agency.teammate.email),
        "{}",
        authorized.text
    );
    let declined = find(agency.requester.email.clone(), "Beta Desk declined".into()).await;
    assert!(declined
        .text
        .contains("Reason: we do not use <Beta> any more"));
    assert!(
        declined
            .html
            .contains("we do not use &lt;Beta&gt; any more"),
        "escaped in HTML: {}",
        declined.html
    );
    let revoked = find(agency.requester.email.clone(), "Acme CRM revoked".into()).await;
    assert!(
        revoked.text.contains("secret was destroyed"),
        "{}",
        revoked.text
    );

    agency.app.wait_for_outbox_delivered().await;
    let all = maildev.emails().await;
    let mut subjects: Vec<(String, String)> = all
        .iter()
        .map(|e| (e.to.join(","), e.subject.clone()))
        .collect();
    let count = subjects.len();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), count, "each sent once: {subjects:#?}");
    for email in maildev.emails().await {
        let raw = email.raw.to_string();
        assert!(
            !raw.contains(key),
            "a secret in the email {:?}",
            email.subject
        );
        crate::support::assert_no_secret("an email", &raw);
    }
    agency.app.stop().await;
}

async fn without_smtp_mail_stays_in_the_local_mailbox(backend: Backend) {
    let agency = Agency::start_with(backend, &[], |config| {
        config.jobs = fast(Clock::system());
    })
    .await;
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    agency.app.wait_for_outbox_delivered().await;

    let (ok, listed, stderr) = agency
        .app
        .operator(&["mail", "list", "--to", &agency.teammate.email])
        .await;
    assert!(ok, "{stderr}");
    assert!(
        listed.contains("asks you for access: Onboarding Acme"),
        "{listed}"
    );
    let id = listed.split_whitespace().next().unwrap().to_string();
    let (ok, shown, stderr) = agency.app.operator(&["mail", "show", &id]).await;
    assert!(ok, "{stderr}");
    assert!(
        shown.contains(&format!("To: {}", agency.teammate.email)),
        "{shown}"
    );
    assert!(shown.contains("Open the request: http://"), "{shown}");
    let (ok, html, _) = agency.app.operator(&["mail", "show", &id, "--html"]).await;
    assert!(ok && html.contains("<a href=\"http://"), "{html}");
    let (ok, _, stderr) = agency.app.operator(&["mail", "show", "424242"]).await;
    assert!(!ok && stderr.contains("no email 424242"), "{stderr}");
    let (ok, listed, _) = agency
        .app
        .operator(&["mail", "list", "--to", "nobody@clients.test"])
        .await;
    assert!(
        ok && listed.contains("the local mailbox is empty"),
        "{listed}"
    );

    // The operator's templates replace the built-in ones, values escaped in HTML.
    let templates = agency.app.dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("credential_request.received.subject"),
        "{{requester}} needs {{apps}} for {{request}}",
    )
    .unwrap();
    std::fs::write(
        templates.join("credential_request.received.html"),
        "<p>{{request}} <a href=\"{{link}}\">answer</a></p>",
    )
    .unwrap();
    let dir = templates.to_str().unwrap();
    let (ok, listed, stderr) = agency
        .app
        .operator(&["mail", "list", "--mail-templates-dir", dir])
        .await;
    assert!(ok, "{stderr}");
    assert!(
        listed.contains(&format!(
            "({}) needs Acme CRM for Onboarding Acme",
            agency.requester.email
        )),
        "{listed}"
    );
    let (ok, html, _) = agency
        .app
        .operator(&["mail", "show", &id, "--html", "--mail-templates-dir", dir])
        .await;
    assert!(
        ok && html.contains("<p>Onboarding Acme <a href=\"http://"),
        "{html}"
    );
    std::fs::write(
        templates.join("credential_request.received.txt"),
        "{{nope}}",
    )
    .unwrap();
    let (ok, _, stderr) = agency
        .app
        .operator(&["mail", "list", "--mail-templates-dir", dir])
        .await;
    assert!(
        !ok && stderr.contains("{{nope}}"),
        "a typo is refused: {stderr}"
    );
    agency.app.stop().await;
}

async fn three_instances_send_each_email_once_through_smtp(backend: Backend) {
    let count = 150;
    let maildev = Maildev::start().await;
    let smtp = maildev.smtp();
    let app = crate::support::spawn_app_with(backend, move |config| {
        config.jobs = credence::jobs::Settings {
            mail: credence::jobs::MailSettings {
                from: "Credence <credence@agency.example>".into(),
                smtp: Some(smtp),
                ..Default::default()
            },
            ..fast(Clock::system())
        };
    })
    .await;
    let second = crate::support::Instance::start(&app, |_| {}).await;
    let third = crate::support::Instance::start(&app, |_| {}).await;
    app.write_notifications("credential.authorized", count, 5)
        .await;
    app.wait_for_outbox_delivered().await;

    let emails = maildev.emails().await;
    let mut ids: Vec<&str> = emails.iter().map(|e| e.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(emails.len(), count, "one email per notification");
    assert_eq!(ids.len(), count, "no message sent twice");
    second.stop().await;
    third.stop().await;
    app.stop().await;
}

async fn mail_goes_over_tls_with_a_password_and_a_wrong_one_is_retried_not_leaked(
    backend: Backend,
) {
    let password = "smtp-pass-4c1e9b7d20";
    register_secret(password);
    let tls = crate::support::MaildevTls::new("credence", password);
    let maildev = Maildev::start_with(Some(&tls)).await;
    let app = crate::support::spawn_app_with(backend, |_| {}).await;
    app.write_notifications("credential.authorized", 2, 1).await;
    let smtp = |password: &str| credence::jobs::SmtpSettings {
        host: "127.0.0.1".into(),
        port: maildev.smtp_port,
        security: credence::jobs::Security::Tls,
        user: Some(tls.user.clone()),
        password: Some(password.to_string().into()),
        ca_file: Some(tls.ca_file.clone()),
    };
    let settings = |smtp| credence::jobs::Settings {
        every: None,
        mail: credence::jobs::MailSettings {
            from: "Credence <credence@agency.example>".into(),
            smtp: Some(smtp),
            ..Default::default()
        },
        ..fast(Clock::system())
    };

    // A wrong password: refused, kept for a retry, the error names no password.
    let wrong = "not-the-smtp-pass-77";
    register_secret(wrong);
    let pass = crate::support::runner(&app, settings(smtp(wrong)))
        .run_once()
        .await
        .unwrap();
    assert_eq!(pass.claimed, 2, "{pass:?}");
    assert_eq!(
        pass.retried, 2,
        "a refused login waits, it is not dead-lettered: {pass:?}"
    );
    for job in app
        .outbox_jobs(credence_store::OutboxSelection::Unsent)
        .await
    {
        let error = job.last_error.unwrap_or_default();
        assert!(error.contains("SMTP"), "{error}");
        assert!(
            !error.contains(wrong) && !error.contains(password),
            "{error}"
        );
    }
    assert!(maildev.emails().await.is_empty());

    // The right one, over TLS checked against the private CA.
    let jobs = crate::support::runner(&app, settings(smtp(password)));
    let outbox = app
        .outbox_jobs(credence_store::OutboxSelection::Unsent)
        .await;
    for job in &outbox {
        jobs_retry(&app, job.id).await;
    }
    let pass = jobs.run_once().await.unwrap();
    assert_eq!(pass.sent, 2, "{pass:?}");
    let emails = maildev.emails().await;
    assert_eq!(emails.len(), 2);
    for email in emails {
        assert!(!email.raw.to_string().contains(password));
    }
    app.stop().await;
}

/// The operator's retry (`credence jobs retry`), through the library it calls.
async fn jobs_retry(app: &crate::support::TestApp, id: i64) {
    credence::jobs::retry(&app.store, id).await.unwrap();
}

on_both_backends!(
    mail_goes_over_tls_with_a_password_and_a_wrong_one_is_retried_not_leaked,
    three_instances_send_each_email_once_through_smtp,
    an_external_recipient_follows_the_emailed_link_to_their_request,
    each_change_emails_who_did_what_and_no_email_holds_a_secret,
    without_smtp_mail_stays_in_the_local_mailbox,
);
