//! The life of a credential request over the API: create, open, authorize with
//! a key the app verifies, reauthorization, decline, revoke, delete — with the
//! audit trail, the outbox, and no secret anywhere it should not be.

use crate::on_both_backends;
use crate::support::Agency;
use crate::support::{accept_invitation_in, assert_error, browser, csrf_of};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn a_request_goes_from_pending_to_authorized_and_back_with_every_step_audited(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let (first_key, second_key) = ("acme-key-0001-first", "acme-key-0002-second");
    agency.upstream.accept(first_key);
    let mut bodies = Vec::new();

    // Rita asks Tom for Acme CRM and Beta Desk.
    let (status, body) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.requester_token,
            Some(agency.body_for(agency.teammate.id, &["acme-crm", "beta-desk"])),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["publicUri"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/requests/", agency.app.address)));
    assert_eq!(body["request"]["status"], "pending");
    assert_eq!(
        body["request"]["appNames"],
        json!(["acme-crm", "beta-desk"])
    );
    assert_eq!(
        body["request"]["makeProviderId"],
        agency.teammate.id.0.to_string()
    );
    let request = body["request"]["id"].as_str().unwrap().to_string();
    let link = body["publicUri"].as_str().unwrap().to_string();
    let acme = body["request"]["credentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let beta = body["request"]["credentials"][1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        body["request"]["credentials"][0]["name"],
        "Onboarding Acme — Acme CRM"
    );
    bodies.push(body);

    // Tom got a review link by email (sealed in the outbox), and sees it in Received.
    let outbox = agency.outbox().await;
    let received = outbox
        .iter()
        .find(|(kind, _, _)| kind == "credential_request.received")
        .expect("a notification");
    assert_eq!(received.1, agency.teammate.email);
    assert!(received.2["link"].as_str().unwrap().contains("/requests/"));
    let (status, body) = agency
        .app
        .get_json(
            "/api/v2/credential-requests/received",
            &agency.teammate_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["requests"][0]["id"], request.as_str());
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}/detail"),
            &agency.teammate_token,
        )
        .await;
    assert_eq!(
        body["requestDetail"]["status"], "incomplete",
        "opened by the recipient: {body}"
    );
    assert_eq!(
        body["requestDetail"]["user"]["email"],
        agency.requester.email.as_str()
    );
    bodies.push(body);

    // A wrong key: the app refuses it, the credential is invalid with the reason.
    let authorize = format!("/api/v2/credential-requests/credentials/{acme}/authorize");
    let (status, body) = agency
        .post(
            &authorize,
            &agency.teammate_token,
            Some(json!({ "data": { "apiKey": "not-a-key-at-all" } })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("HTTP 401"),
        "{body}"
    );
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/credentials/{acme}"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(body["credential"]["state"], "invalid");
    assert!(body["credential"]["invalidReason"]
        .as_str()
        .unwrap()
        .contains("refused"));
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(body["request"]["status"], "invalid");

    // The right key: authorized, with a connection the requester can see but not read.
    let (status, body) = agency
        .post(
            &authorize,
            &agency.teammate_token,
            Some(json!({ "data": { "apiKey": first_key } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "authorized");
    bodies.push(body);
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}/detail"),
            &agency.requester_token,
        )
        .await;
    let credential = &body["requestDetail"]["credentials"][0];
    assert_eq!(credential["state"], "authorized");
    assert!(credential["remoteId"].is_string());
    assert_eq!(credential["permissions"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["requestDetail"]["status"], "incomplete",
        "beta-desk is still pending"
    );
    bodies.push(body);

    // Still working: asking for reauthorization sends nothing.
    let reauth = format!("/api/v2/credential-requests/credentials/{acme}/request-reauthorize");
    let (status, body) = agency.post(&reauth, &agency.requester_token, None).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    assert_eq!(body["detail"], "connection is valid; nothing was sent");

    // The key is revoked at the app: now reauthorization is asked for.
    agency.upstream.reject(first_key);
    let (status, body) = agency.post(&reauth, &agency.requester_token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "reauthorizing");
    assert!(agency.outbox().await.iter().any(|(kind, to, _)| kind
        == "credential.reauthorization_requested"
        && *to == agency.teammate.email));

    // Tom reauthorizes with a new key; both sides are told.
    agency.upstream.accept(second_key);
    let (status, body) = agency
        .post(
            &format!("/api/v2/credential-requests/credentials/{acme}/reauthorize"),
            &agency.teammate_token,
            Some(json!({ "data": { "apiKey": second_key } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "authorized");
    let reauthorized: Vec<String> = agency
        .outbox()
        .await
        .into_iter()
        .filter(|(k, _, _)| k == "credential.reauthorized")
        .map(|(_, to, _)| to)
        .collect();
    assert!(
        reauthorized.contains(&agency.requester.email)
            && reauthorized.contains(&agency.teammate.email),
        "{reauthorized:?}"
    );

    // Beta Desk declined with no body at all (Make's SDK sends none).
    let (status, body) = agency
        .post(
            &format!("/api/v2/credential-requests/credentials/{beta}/decline"),
            &agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "declined");
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(body["request"]["status"], "partially_authorized");

    // Revoking Acme destroys its connection and secret; Beta stays declined.
    let connection = {
        let mut db = agency.app.db().await;
        let credentials = db.list_credentials(request.parse().unwrap()).await.unwrap();
        credentials[0].connection_id.unwrap()
    };
    let secret = agency
        .app
        .db()
        .await
        .get_connection(connection)
        .await
        .unwrap()
        .unwrap()
        .secret_id
        .unwrap();
    let (status, body) = agency
        .post(
            &format!("/api/v2/credential-requests/credentials/{acme}/revoke"),
            &agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "revoked");
    let mut db = agency.app.db().await;
    assert!(
        db.get_connection(connection).await.unwrap().is_none(),
        "the connection is gone"
    );
    assert!(
        db.get_secret(&secret).await.unwrap().is_none(),
        "the secret is destroyed"
    );
    let credentials = db.list_credentials(request.parse().unwrap()).await.unwrap();
    assert_eq!(
        credentials[1].state,
        credence_domain::CredentialState::Declined
    );
    drop(db);
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(body["request"]["status"], "revoked");
    bodies.push(body);

    // Every step is in the audit log, in order.
    let events = agency.audit_events().await;
    let expected = [
        "credential_request.created",
        "credential.invalidated",
        "credential.authorized",
        "connection.created",
        "credential.reauthorization_requested",
        "credential.reauthorized",
        "connection.created",
        "credential.declined",
        "credential.revoked",
    ];
    let relevant: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| e.starts_with("credential") || e.starts_with("connection"))
        .collect();
    assert_eq!(relevant, expected);

    // No key in any answer, the database (audit log and outbox included) or
    // the logs; no request link in the logs either.
    let everything =
        bodies.iter().map(Value::to_string).collect::<String>() + &agency.app.database_text().await;
    let logs = crate::support::captured_logs();
    assert!(
        logs.contains("credential request created"),
        "the log capture works"
    );
    for key in [first_key, second_key] {
        assert!(
            !everything.contains(key),
            "{key} leaked into an answer or the database"
        );
        assert!(!logs.contains(key), "{key} leaked into the logs");
    }
    let link_token = link.rsplit('/').next().unwrap();
    assert!(
        !logs.contains(link_token),
        "the request link leaked into the logs"
    );
    agency.app.stop().await;
}

async fn deleting_a_request_with_live_connections_needs_confirmation(backend: Backend) {
    let agency = Agency::start(backend).await;
    agency.upstream.accept("delete-me-key-123");
    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let (status, _) = agency
        .authorize_with(&credentials[0], "authorize", "delete-me-key-123")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = agency
        .delete(
            &format!("/api/v2/credential-requests/requests/{request}"),
            &agency.requester_token,
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    assert!(
        body["detail"].as_str().unwrap().contains("confirmed=true"),
        "{body}"
    );
    let (status, body) = agency
        .delete(
            &format!("/api/v2/credential-requests/requests/{request}?confirmed=true"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deletedConnections"].as_array().unwrap().len(), 1);
    let (status, _) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let team_connections = agency.app.team_connections().await;
    assert!(
        team_connections.is_empty(),
        "no credential of a deleted request works"
    );
    assert!(
        agency
            .audit_events()
            .await
            .contains(&"credential_request.deleted".to_string()),
        "the audit trail stays"
    );

    // A request without connections is deleted without confirmation.
    let (request, _, _) = agency
        .create_request(agency.teammate.id, &["beta-desk"])
        .await;
    let (status, _) = agency
        .delete(
            &format!("/api/v2/credential-requests/requests/{request}"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    agency.app.stop().await;
}

async fn an_external_recipient_is_invited_as_a_guest_and_finds_the_request(backend: Backend) {
    let agency = Agency::start(backend).await;
    let body = json!({
        "name": "Client onboarding",
        "teamId": agency.app.team,
        "credentials": [{ "appName": "acme-crm", "appModules": ["searchContacts"], "description": "read-only sync" }],
        "provider": { "newUser": { "name": "Cleo Client", "email": "cleo@client.example" } },
        "client": "Client Co",
        "project": "Onboarding",
    });
    // A team member may not invite outsiders; the org owner may.
    let (status, _) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.requester_token,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.admin_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["request"]["recipient"]["kind"], "external");
    assert_eq!(created["request"]["client"], "Client Co");
    assert_eq!(created["request"]["credentials"][0]["scope"], json!([]));
    let request = created["request"]["id"].as_str().unwrap().to_string();
    let public_uri = created["publicUri"].as_str().unwrap().to_string();

    let outbox = agency.outbox().await;
    let (_, to, payload) = outbox
        .iter()
        .find(|(kind, _, _)| kind == "credential_request.invitation")
        .expect("an invitation");
    assert_eq!(to, "cleo@client.example");
    let invitation = payload["invitationLink"].as_str().unwrap().to_string();
    assert_ne!(
        invitation, public_uri,
        "the invitation link travels only by email"
    );
    assert!(!created
        .to_string()
        .contains(invitation.rsplit('/').next().unwrap()));

    // The request link alone grants nothing: sign in first; signed in as someone else, 404.
    let browser = browser();
    let response = browser.get(&public_uri).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/sign-in?next="));

    // Cleo accepts: chooses her name and password, becomes a guest, lands on her requests.
    let (page, accepted) = accept_invitation_in(&browser, &invitation).await;
    assert_eq!(page, StatusCode::OK, "the invitation page opens");
    assert_eq!(accepted, StatusCode::SEE_OTHER);
    let home = browser
        .get(agency.app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("Client onboarding"), "{home}");
    let response = browser.get(&public_uri).send().await.unwrap();
    assert_eq!(
        response.headers()["location"],
        format!("/received/{request}").as_str()
    );
    let page = browser
        .get(agency.app.url(&format!("/received/{request}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Acme CRM") && page.contains("Search contacts"),
        "{page}"
    );
    assert!(
        !page.contains("Create a contact"),
        "only the requested module is shown"
    );

    let cleo = agency
        .app
        .db()
        .await
        .find_user_by_email("cleo@client.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        agency
            .app
            .db()
            .await
            .organization_role(agency.app.organization, cleo.id)
            .await
            .unwrap(),
        Some(credence_domain::OrgRole::Guest)
    );
    // The invitation works once.
    let response = browser.get(&invitation).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Someone else signed in opens the link: 404, like a link that does not exist.
    let other = crate::support::browser();
    let page = other
        .get(agency.app.url("/sign-in"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    other
        .post(agency.app.url("/sign-in"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", agency.outsider.email.as_str()),
            ("password", agency.outsider.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.get(&public_uri).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other
            .get(agency.app.url(&format!("/received/{request}")))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let events = agency.audit_events().await;
    assert!(
        events.contains(&"member.invited".to_string())
            && events.contains(&"member.joined_as_guest".to_string()),
        "{events:?}"
    );
    agency.app.stop().await;
}

async fn lists_filter_page_and_select_columns_like_make(backend: Backend) {
    let agency = Agency::start(backend).await;
    for _ in 0..3 {
        agency
            .create_request(agency.teammate.id, &["acme-crm"])
            .await;
    }
    let team = agency.app.team;
    let (status, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests?teamId={team}&pg[limit]=2&pg[offset]=0"),
            &agency.teammate_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requests"].as_array().unwrap().len(), 2);
    assert_eq!(body["pg"]["total"], 3);
    let (_, body) = agency.app.get_json(&format!("/api/v2/credential-requests/requests?teamId={team}&cols[]=id&cols[]=status&status=pending"), &agency.teammate_token).await;
    assert_eq!(body["requests"].as_array().unwrap().len(), 3);
    assert_eq!(body["requests"][0].as_object().unwrap().len(), 2, "{body}");
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests?teamId={team}&status=authorized"),
            &agency.teammate_token,
        )
        .await;
    assert_eq!(body["requests"].as_array().unwrap().len(), 0);
    let (status, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests?teamId={team}&status=happy"),
            &agency.teammate_token,
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests?teamId={team}&name=onBOARD"),
            &agency.teammate_token,
        )
        .await;
    assert_eq!(
        body["requests"].as_array().unwrap().len(),
        3,
        "name filter ignores case"
    );
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests?teamId={team}&name=%25"),
            &agency.teammate_token,
        )
        .await;
    assert_eq!(
        body["requests"].as_array().unwrap().len(),
        0,
        "% is a literal, not a wildcard"
    );
    // The catalog endpoints.
    let (status, body) = agency
        .app
        .get_json(
            "/api/v2/credential-requests/apps/acme-crm/latest/modules-with-credentials",
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["appModules"][0]["id"], "searchContacts");
    assert_eq!(body["appModules"][0]["type"], "keychain:acme-crm");
    let (_, body) = agency
        .app
        .get_json(
            "/api/v2/credential-requests/apps/gmail/1/modules-with-credentials",
            &agency.requester_token,
        )
        .await;
    assert!(
        body["appModules"][0]["scope"][0]
            .as_str()
            .unwrap()
            .starts_with("https://www.googleapis.com/auth/gmail"),
        "{body}"
    );
    let (status, body) = agency
        .app
        .get_json("/api/v2/credential-requests/apps", &agency.requester_token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["apps"].as_array().unwrap().len() >= 22);
    agency.app.stop().await;
}

async fn oauth_apps_without_a_configured_client_name_the_variables_and_stay_pending(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let (request, credentials, _) = agency.create_request(agency.teammate.id, &["gmail"]).await;
    let (status, body) = agency
        .post(
            &format!(
                "/api/v2/credential-requests/credentials/{}/authorize",
                credentials[0]
            ),
            &agency.teammate_token,
            Some(json!({ "data": {} })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("CREDENCE_OAUTH_GMAIL_CLIENT_ID")
            && detail.contains("CREDENCE_OAUTH_GMAIL_CLIENT_SECRET"),
        "{body}"
    );
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}/detail"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(body["requestDetail"]["credentials"][0]["state"], "pending");
    assert_eq!(body["requestDetail"]["credentials"][0]["type"], "oauth");
    let scopes = body["requestDetail"]["credentials"][0]["scope"]
        .as_array()
        .unwrap();
    assert!(
        scopes.iter().all(|s| s
            .as_str()
            .unwrap()
            .starts_with("https://www.googleapis.com/auth/")),
        "{body}"
    );
    agency.app.stop().await;
}

/// An operator's app file with a mistake stops the start with an error naming
/// the file and the field.
#[tokio::test]
async fn a_bad_operator_app_file_stops_the_start_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    std::fs::write(
        apps.join("broken.toml"),
        "key = \"broken\"\nlabel = \"Broken\"\n[[versions]]\nversion = 1\nbase_url = \"https://api.broken.example\"\n\
         [versions.auth]\nkind = \"api_key\"\nfields = [{ name = \"apiKey\", label = \"Key\" }]\n\
         inject = { header = \"Authorization\", value = \"Bearer {apiKey}\" }\n\
         [[versions.modules]]\nkey = \"m\"\nlabel = \"M\"\nkind = \"search\"\naccess = \"read\"\noperations = [\"FETCH /x\"]\n",
    )
    .unwrap();
    let config = credence::Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        apps_dir: Some(apps.clone()),
        ..credence::Config::default()
    };
    let error = match credence::Application::build(config).await {
        Ok(_) => panic!("a broken app file was accepted"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("broken.toml") && error.contains("operations") && error.contains("FETCH"),
        "{error}"
    );
}

/// `pg.total` is exact on every page, whether the list counted it or the
/// page told it (a last, partial page is the end of the list, so no
/// `COUNT(*)` runs for it: `Db::list_requests`). Make's SDK (`@makehq/sdk`
/// 1.6.10, `tests/sdk`) does not read `pg.total` — its `Pagination` is
/// sortBy/sortDir/offset/limit — so the count is ours to keep cheap, and
/// this is what keeps it right.
async fn the_list_total_is_exact_on_every_page_counted_or_not(backend: Backend) {
    let agency = Agency::start(backend).await;
    for n in 0..7 {
        let name = if n < 2 {
            "Quarterly Beta"
        } else {
            "Onboarding Acme"
        };
        create_named(&agency, name).await;
    }
    let team = agency.app.team;
    // (filter, offset, limit, rows on the page, total)
    let pages = [
        ("", 0, 3, 3, 7),   // a full first page: counted
        ("", 3, 3, 3, 7),   // a full page in the middle: counted
        ("", 6, 3, 1, 7),   // the last, partial page: told by the page
        ("", 0, 7, 7, 7),   // exactly everything, a full page: counted
        ("", 0, 50, 7, 7),  // the only page: told by the page
        ("", 7, 3, 0, 7),   // just past the end: counted
        ("", 100, 3, 0, 7), // far past the end: counted
        ("&name=quarterly", 0, 50, 2, 2),
        ("&name=quarterly", 1, 1, 1, 2),
        ("&name=quarterly", 1, 5, 1, 2),
        ("&name=quarterly", 2, 1, 0, 2),
        ("&name=nothing-like-it", 0, 50, 0, 0),
        ("&name=nothing-like-it", 10, 50, 0, 0),
    ];
    for (filter, offset, limit, rows, total) in pages {
        let path = format!(
            "/api/v2/credential-requests/requests?teamId={team}{filter}&pg[offset]={offset}&pg[limit]={limit}"
        );
        let (status, body) = agency.app.get_json(&path, &agency.teammate_token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(
            body["requests"].as_array().unwrap().len(),
            rows,
            "{path}: {body}"
        );
        assert_eq!(body["pg"]["total"], total, "{path}: {body}");
    }
    agency.app.stop().await;
}

/// Creates a request named `name` from the requester to the teammate; its id.
async fn create_named(agency: &Agency, name: &str) -> String {
    let mut body = agency.body_for(agency.teammate.id, &["acme-crm"]);
    body["name"] = json!(name);
    let (status, answer) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.requester_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["request"]["id"].as_str().unwrap().to_string()
}

/// The ids of a page of the team's Sent list.
async fn page_ids(agency: &Agency, sort: &str, offset: usize, limit: usize) -> Vec<String> {
    page(agency, sort, offset, limit).await.0
}

/// A page of the team's Sent list: its ids, and `pg.total`.
async fn page(agency: &Agency, sort: &str, offset: usize, limit: usize) -> (Vec<String>, i64) {
    let path = format!(
        "/api/v2/credential-requests/requests?teamId={}{sort}&pg[offset]={offset}&pg[limit]={limit}",
        agency.app.team
    );
    let (status, body) = agency.app.get_json(&path, &agency.teammate_token).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    let ids = body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    (ids, body["pg"]["total"].as_i64().unwrap())
}

/// Paging on from the page just read is read from its last row (keyset,
/// `credence_store::seek`): in every sort, the pages of a pager are the
/// whole list in order, ties on the sort broken by id as one page has them;
/// a jump to an offset no page ended at is served by `OFFSET`. A request
/// written through this instance between two pages makes the next page the
/// one `OFFSET` reads, with the total counted again; one deleted through
/// another instance (another store on the database) is not seen, and the
/// next page goes on after the last row read — the bounded staleness the
/// README states.
async fn paging_on_reads_from_the_last_row_of_the_page_before(backend: Backend) {
    let agency = Agency::start(backend).await;
    let create = |name| create_named(&agency, name);
    // Equal names, so that the order within a name is the id's.
    for name in ["Beta", "Alpha", "Beta", "Gamma", "Alpha", "Beta", "Delta"] {
        create(name).await;
    }
    for sort in [
        "",
        "&pg[sortDir]=asc",
        "&pg[sortBy]=name",
        "&pg[sortBy]=name&pg[sortDir]=desc",
        "&pg[sortBy]=status&pg[sortDir]=asc",
    ] {
        let whole = page_ids(&agency, sort, 0, 50).await;
        assert_eq!(whole.len(), 7);
        let mut paged = Vec::new();
        for offset in (0..8).step_by(2) {
            paged.extend(page_ids(&agency, sort, offset, 2).await);
        }
        assert_eq!(paged, whole, "paged by 2 with {sort:?}");
        // A jump, then a page of another size from where it ended.
        assert_eq!(page_ids(&agency, sort, 3, 3).await, whole[3..6], "{sort:?}");
        assert_eq!(page_ids(&agency, sort, 6, 5).await, whole[6..], "{sort:?}");
    }

    // Newest first. Created through this instance between two pages: the
    // second page is the list's as it now is, from offset 3.
    // The total too: the one kept from before the create is not given after it.
    let (first, total) = page(&agency, "", 0, 3).await;
    assert_eq!(total, 7);
    let newest = create("Epsilon").await;
    let now = page_ids(&agency, "", 0, 50).await;
    assert_eq!(now[0], newest);
    assert_eq!(now[1..4], first);
    assert_eq!(page(&agency, "", 3, 3).await, (now[3..6].to_vec(), 8));

    // Deleted through another store on the same database: this instance
    // goes on after the row its pager saw last; `OFFSET` would skip one.
    let first = page_ids(&agency, "", 0, 3).await;
    let other = credence_store::Store::connect(&agency.app.database_url, false)
        .await
        .unwrap();
    let gone: credence_domain::RequestId = first[0].parse().unwrap();
    assert!(other
        .db()
        .await
        .unwrap()
        .delete_request(gone)
        .await
        .unwrap());
    other.close().await;
    assert_eq!(page_ids(&agency, "", 3, 3).await, now[3..6]);
    agency.app.stop().await;
}

on_both_backends!(
    oauth_apps_without_a_configured_client_name_the_variables_and_stay_pending,
    a_request_goes_from_pending_to_authorized_and_back_with_every_step_audited,
    deleting_a_request_with_live_connections_needs_confirmation,
    an_external_recipient_is_invited_as_a_guest_and_finds_the_request,
    lists_filter_page_and_select_columns_like_make,
    the_list_total_is_exact_on_every_page_counted_or_not,
    paging_on_reads_from_the_last_row_of_the_page_before,
);
