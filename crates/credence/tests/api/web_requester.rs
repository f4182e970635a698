//! The requester's pages over HTTP, as a browser without JavaScript uses
//! them: the Create request wizard (search, modules with Select all, + Add
//! app, the terms, the link), its errors next to the field they name with
//! nothing created, the feature gate, the team members page, and a request's
//! details with Request reauthorization and Delete (the confirmation lists the
//! connections and who used them). The same journeys in Chromium are in
//! `browser_requester.rs`.

use crate::on_both_backends;
use crate::support::page;
use crate::support::{csrf_of, location, signed_in, wait_until, Agency};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::Value;

async fn post(
    client: &reqwest::Client,
    url: &str,
    pairs: &[(String, String)],
) -> (StatusCode, String, String) {
    let response = client.post(url).form(pairs).send().await.unwrap();
    let status = response.status();
    let to = location(&response);
    (status, to, response.text().await.unwrap())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The requests Rita's team sent, as the API lists them.
async fn sent_requests(agency: &Agency) -> Vec<Value> {
    let (status, body) = agency
        .app
        .get_json(
            &format!(
                "/api/v2/credential-requests/requests?teamId={}",
                agency.app.team
            ),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["requests"].as_array().unwrap().clone()
}

/// The checkbox of module `key` in row `row` is ticked in `html`.
fn ticked(html: &str, row: usize, key: &str) -> bool {
    let id = format!(r#"id="module-{row}-{key}""#);
    html.split("<input")
        .find(|tag| tag.contains(&id))
        .map(|tag| tag.split('>').next().unwrap_or("").contains("checked"))
        .unwrap_or(false)
}

async fn the_wizard_creates_a_request_for_two_apps_without_javascript(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let rita = signed_in(app, &agency.requester).await;
    let new = app.url("/credential-requests/new");

    let (status, form) = page(&rita, &new).await;
    assert_eq!(status, StatusCode::OK, "{form}");
    for expected in [
        r#"maxlength="256""#,
        "0/256",
        "Part of Default",
        "Not part of Default",
        "tom@agency.example",
        "Acme CRM",
        "Beta Desk",
        "+ Add app",
        r#"name="terms""#,
    ] {
        assert!(form.contains(expected), "{expected}: {form}");
    }
    // A team member may ask only the team: not Olga of the Other team, not herself.
    let picker = &form[form.find(r#"id="member""#).unwrap()..];
    let picker = &picker[..picker.find("</select>").unwrap()];
    assert!(picker.contains("tom@agency.example"), "{picker}");
    assert!(!picker.contains("olga@agency.example"), "{picker}");
    assert!(!picker.contains("rita@agency.example"), "{picker}");
    let csrf = csrf_of(&form);

    // The catalog search is a GET parameter: it narrows the app list.
    let (_, searched) = page(&rita, &format!("{new}?q=beta")).await;
    assert!(searched.contains(r#"value="beta-desk""#), "{searched}");
    assert!(!searched.contains(r#"value="acme-crm""#), "{searched}");

    let base = |extra: &[(&str, &str)]| {
        let mut list = pairs(&[
            ("csrf_token", &csrf),
            ("name", "Onboarding Acme"),
            ("description", "Access for the weekly sync"),
            ("recipient", "member"),
            ("member", &agency.teammate.id.0.to_string()),
        ]);
        list.extend(pairs(extra));
        list
    };
    // Choosing an app shows its versions and modules, none ticked.
    let (status, _, shown) = post(
        &rita,
        &new,
        &base(&[("rows", "1"), ("app_0", "acme-crm"), ("action", "show:0")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(shown.contains("Modules of Acme CRM"), "{shown}");
    assert!(shown.contains(r#"value="acme-crm@1""#), "{shown}");
    assert!(!ticked(&shown, 0, "searchContacts"), "{shown}");
    assert!(
        shown.contains(r#"value="Onboarding Acme""#),
        "values are kept: {shown}"
    );
    assert!(shown.contains("26/256"), "the counter counts: {shown}");

    // Select all ticks every module of that row.
    let row0 = [
        ("app_0", "acme-crm"),
        ("version_0", "1"),
        ("shown_0", "acme-crm@1"),
        ("note_0", "For the CRM sync"),
    ];
    let mut list = base(&row0);
    list.extend(pairs(&[("rows", "1"), ("action", "select_all:0")]));
    let (_, _, selected) = post(&rita, &new, &list).await;
    assert!(ticked(&selected, 0, "searchContacts"), "{selected}");
    assert!(ticked(&selected, 0, "createContact"), "{selected}");

    // + Add app adds a row and keeps every value entered.
    let mut list = base(&row0);
    list.extend(pairs(&[
        ("modules_0", "searchContacts"),
        ("modules_0", "createContact"),
        ("rows", "1"),
        ("action", "add_app"),
    ]));
    let (_, _, added) = post(&rita, &new, &list).await;
    assert!(added.contains(r#"name="rows" value="2""#), "{added}");
    assert!(added.contains(r#"id="app_1""#), "{added}");
    assert!(added.contains("For the CRM sync"), "{added}");
    assert!(ticked(&added, 0, "createContact"), "{added}");

    // Without the terms ticked nothing is sent.
    let mut complete = base(&row0);
    complete.extend(pairs(&[
        ("modules_0", "searchContacts"),
        ("modules_0", "createContact"),
        ("rows", "2"),
        ("app_1", "beta-desk"),
        ("version_1", "1"),
        ("shown_1", "beta-desk@1"),
        ("modules_1", "searchContacts"),
        ("connection_1", "Beta for Acme"),
    ]));
    let mut unticked = complete.clone();
    unticked.push(("action".into(), "send".into()));
    let (status, _, refused) = post(&rita, &new, &unticked).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused.contains("Tick the terms and conditions"),
        "{refused}"
    );
    assert!(refused.contains(r#"value="Beta for Acme""#), "{refused}");
    assert!(sent_requests(&agency).await.is_empty());

    complete.extend(pairs(&[("terms", "yes"), ("action", "send")]));
    // Post-redirect-get: the answer is a redirect to the request's details,
    // which show the link once; shown again, they do not.
    let (status, to, _) = post(&rita, &new, &complete).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/credential-requests/"), "{to}");
    let (status, done) = page(&rita, &app.url(&to)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(done.contains("Request sent"), "{done}");
    assert!(done.contains("Copy link"), "{done}");
    let link_start = done.find(r#"id="request-link""#).expect("the link input");
    let link_tag = &done[link_start..done[link_start..].find('>').unwrap() + link_start];
    assert!(link_tag.contains("readonly"), "{link_tag}");
    assert!(
        link_tag.contains(&format!(r#"value="{}"#, app.url("/requests/"))),
        "{link_tag}"
    );
    let (status, again) = page(&rita, &app.url(&to)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(
        !again.contains(r#"id="request-link""#),
        "shown once: {again}"
    );
    assert!(again.contains("Onboarding Acme"), "{again}");
    assert_eq!(
        sent_requests(&agency).await.len(),
        1,
        "a refresh sent nothing"
    );

    let sent = sent_requests(&agency).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["name"], "Onboarding Acme");
    assert_eq!(sent[0]["description"], "Access for the weekly sync");
    let id = sent[0]["id"].as_str().unwrap();
    let (_, detail) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{id}/detail"),
            &agency.requester_token,
        )
        .await;
    let credentials = detail["requestDetail"]["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 2, "{detail}");
    assert_eq!(credentials[0]["appName"], "acme-crm");
    assert_eq!(
        credentials[0]["appModules"],
        serde_json::json!(["createContact", "searchContacts"])
    );
    assert_eq!(credentials[0]["description"], "For the CRM sync");
    assert_eq!(credentials[0]["name"], "Onboarding Acme — Acme CRM");
    assert_eq!(credentials[1]["appName"], "beta-desk");
    assert_eq!(
        credentials[1]["appModules"],
        serde_json::json!(["searchContacts"])
    );
    assert_eq!(credentials[1]["name"], "Beta for Acme");
    assert_eq!(
        detail["requestDetail"]["makeProvider"]["email"],
        "tom@agency.example"
    );
    agency.app.stop().await;
}

async fn bad_input_is_shown_next_to_its_field_and_creates_nothing(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let rita = signed_in(app, &agency.requester).await;
    let new = app.url("/credential-requests/new");
    let (_, form) = page(&rita, &new).await;
    let csrf = csrf_of(&form);
    let tom = agency.teammate.id.0.to_string();
    let long = "d".repeat(300);
    let send = |fields: &[(&str, &str)]| {
        let mut list = pairs(&[("csrf_token", &csrf), ("rows", "1"), ("terms", "yes")]);
        list.extend(pairs(fields));
        list.push(("action".into(), "send".into()));
        list
    };

    // A description over 256 characters (the browser's maxlength bypassed).
    let (status, _, body) = post(
        &rita,
        &new,
        &send(&[
            ("name", "Onboarding Acme"),
            ("description", &long),
            ("recipient", "member"),
            ("member", &tom),
            ("app_0", "acme-crm"),
            ("shown_0", "acme-crm@1"),
            ("version_0", "1"),
            ("modules_0", "searchContacts"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let field = body
        .find(r#"id="description""#)
        .expect("the description field");
    let error = body
        .rfind("Description is 300 characters; the limit is 256")
        .expect("the message");
    assert!(error > field, "the message follows the field: {body}");
    let tag = &body[body[..field].rfind('<').unwrap()..field + 400];
    assert!(tag.contains(r#"aria-invalid="true""#), "{tag}");
    assert!(tag.contains("description-error-0"), "{tag}");
    assert!(
        body.contains(r#"value="Onboarding Acme""#),
        "values are kept: {body}"
    );
    assert!(body.contains("300/256"), "{body}");
    assert!(ticked(&body, 0, "searchContacts"), "ticks are kept: {body}");
    assert!(sent_requests(&agency).await.is_empty());

    // Several problems at once, each by its field.
    let long_note = "n".repeat(257);
    let (status, _, body) = post(
        &rita,
        &new,
        &send(&[
            ("name", ""),
            ("recipient", "member"),
            ("member", ""),
            ("app_0", "acme-crm"),
            ("shown_0", "acme-crm@1"),
            ("version_0", "1"),
            ("modules_0", "searchContacts"),
            ("note_0", &long_note),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for expected in [
        "Name is empty; it needs 1 to 255 characters",
        "Choose the person to ask.",
        "Note is 257 characters; the limit is 256",
        "note_0-error-0",
    ] {
        assert!(body.contains(expected), "{expected}: {body}");
    }
    assert!(body.contains("The request was not sent"), "{body}");
    // No module ticked.
    let (status, _, body) = post(
        &rita,
        &new,
        &send(&[
            ("name", "Onboarding Acme"),
            ("recipient", "member"),
            ("member", &tom),
            ("app_0", "acme-crm"),
            ("shown_0", "acme-crm@1"),
            ("version_0", "1"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("Tick at least one module of Acme CRM, or Select all."),
        "{body}"
    );
    assert!(body.contains("modules_0-error-0"), "{body}");
    // An app chosen but never shown: its modules must be chosen first.
    let (status, _, body) = post(
        &rita,
        &new,
        &send(&[
            ("name", "Onboarding Acme"),
            ("recipient", "member"),
            ("member", &tom),
            ("app_0", "beta-desk"),
            ("shown_0", "acme-crm@1"),
            ("modules_0", "searchContacts"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("Choose the modules of Beta Desk"), "{body}");
    assert!(body.contains("Modules of Beta Desk"), "now shown: {body}");

    // A team member may not ask someone outside the organization: 403, said on the page.
    let (status, _, body) = post(
        &rita,
        &new,
        &send(&[
            ("name", "Onboarding Acme"),
            ("recipient", "external"),
            ("external_name", "Cleo Client"),
            ("external_email", "cleo@client.example"),
            ("app_0", "acme-crm"),
            ("shown_0", "acme-crm@1"),
            ("version_0", "1"),
            ("modules_0", "searchContacts"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("only organization admins and owners may request from people outside"),
        "{body}"
    );
    assert!(body.contains(r#"value="cleo@client.example""#), "{body}");
    // An email that is not one is named next to its field.
    let (status, _, body) = post(
        &rita,
        &new,
        &send(&[
            ("name", "Onboarding Acme"),
            ("recipient", "external"),
            ("external_name", "Cleo Client"),
            ("external_email", "not-an-email"),
            ("app_0", "acme-crm"),
            ("shown_0", "acme-crm@1"),
            ("version_0", "1"),
            ("modules_0", "searchContacts"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("external_email-error-0"), "{body}");

    // Without the form's token: 403, nothing created.
    let mut forged = send(&[
        ("name", "Onboarding Acme"),
        ("recipient", "member"),
        ("member", &tom),
        ("app_0", "acme-crm"),
        ("shown_0", "acme-crm@1"),
        ("version_0", "1"),
        ("modules_0", "searchContacts"),
    ]);
    forged.retain(|(k, _)| k != "csrf_token");
    let (status, _, _) = post(&rita, &new, &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(sent_requests(&agency).await.is_empty());
    assert!(
        !agency
            .audit_events()
            .await
            .iter()
            .any(|e| e == "credential_request.created"),
        "nothing was audited as created"
    );
    agency.app.stop().await;
}

async fn without_the_feature_the_wizard_offers_to_request_it(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let tom = signed_in(app, &agency.teammate).await;
    let new = app.url("/credential-requests/new");
    let (status, gate) = page(&tom, &new).await;
    assert_eq!(status, StatusCode::OK, "{gate}");
    assert!(gate.contains("Request the feature"), "{gate}");
    assert!(!gate.contains(r#"id="name""#), "no form: {gate}");
    let csrf = csrf_of(&gate);

    // Posting the wizard anyway is refused with the same explanation.
    let (status, _, body) = post(
        &tom,
        &new,
        &pairs(&[("csrf_token", &csrf), ("name", "x"), ("action", "send")]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("Request the feature"), "{body}");

    let (status, to, _) = post(
        &tom,
        &app.url("/feature-request"),
        &pairs(&[("csrf_token", &csrf), ("back", "/credential-requests/new")]),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to, "/credential-requests/new");
    let (_, after) = page(&tom, &new).await;
    assert!(
        after.contains("Asked for the credential-requests feature"),
        "{after}"
    );
    assert!(
        after.contains("the operator has not decided yet"),
        "{after}"
    );
    assert!(
        !after.contains(">Request the feature<"),
        "asked once: {after}"
    );
    assert!(agency
        .audit_events()
        .await
        .iter()
        .any(|e| e == "feature.requested"));

    // Without the token nothing is asked; an outside `back` is not followed.
    let (status, _, _) = post(&tom, &app.url("/feature-request"), &pairs(&[("back", "/")])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let rita = signed_in(app, &agency.requester).await;
    let (_, team) = page(&rita, &app.url("/team")).await;
    let (status, to, _) = post(
        &rita,
        &app.url("/feature-request"),
        &pairs(&[
            ("csrf_token", &csrf_of(&team)),
            ("back", "https://elsewhere.example/"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to, "/", "she has it already; the flash says so at home");
    let (_, home) = page(&rita, &app.url("/")).await;
    assert!(
        home.contains("you already have the credential-requests feature"),
        "{home}"
    );
    agency.app.stop().await;
}

async fn the_team_page_shows_who_has_the_feature(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let rita = signed_in(app, &agency.requester).await;
    let (status, team) = page(&rita, &app.url("/team")).await;
    assert_eq!(status, StatusCode::OK, "{team}");
    for expected in [
        "rita@agency.example",
        "tom@agency.example",
        "Has the feature",
        "No feature",
        "(you)",
        r#"scope="col""#,
        r#"aria-current="page""#,
    ] {
        assert!(team.contains(expected), "{expected}: {team}");
    }
    // Rita and the owner (Admin) have it; Tom does not.
    assert_eq!(team.matches("Has the feature").count(), 2, "{team}");
    assert!(
        !team.contains("olga@agency.example"),
        "another team: {team}"
    );
    assert!(!team.contains("Request the feature"), "Rita has it: {team}");

    let tom = signed_in(app, &agency.teammate).await;
    let (_, team) = page(&tom, &app.url("/team")).await;
    assert!(team.contains("Request the feature"), "{team}");
    let (status, to, _) = post(
        &tom,
        &app.url("/feature-request"),
        &pairs(&[("csrf_token", &csrf_of(&team)), ("back", "/team")]),
    )
    .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/team"));
    let (_, team) = page(&tom, &app.url("/team")).await;
    assert!(team.contains("the operator will review it"), "{team}");
    assert!(team.contains("has not decided yet"), "{team}");

    let olga = signed_in(app, &agency.outsider).await;
    let (_, other) = page(&olga, &app.url("/team")).await;
    assert!(other.contains("olga@agency.example"), "{other}");
    assert!(!other.contains("tom@agency.example"), "{other}");
    agency.app.stop().await;
}

async fn details_offer_reauthorization_and_delete_with_the_usage_list(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let key = "acme-key-for-web-9f3e";
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
    // A consumer uses the connection through the broker.
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

    let rita = signed_in(app, &agency.requester).await;
    let detail_url = app.url(&format!("/credential-requests/{request}"));
    let (status, detail) = page(&rita, &detail_url).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let reauthorize = format!(
        "/credential-requests/{request}/reauthorization/{}",
        credentials[0]
    );
    assert!(detail.contains(&reauthorize), "{detail}");
    assert!(
        !detail.contains(&format!("reauthorization/{}", credentials[1])),
        "a pending app has nothing to reauthorize: {detail}"
    );
    assert!(detail.contains("Delete request"), "{detail}");
    let csrf = csrf_of(&detail);

    // The connection still works: nothing is sent, and the flash says so.
    let (status, to, _) = post(
        &rita,
        &app.url(&reauthorize),
        &pairs(&[("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to, format!("/credential-requests/{request}"));
    let (_, detail) = page(&rita, &detail_url).await;
    assert!(detail.contains("flash bad"), "{detail}");
    assert!(
        detail.contains("connection is valid; nothing was sent"),
        "{detail}"
    );

    // Without the token nothing happens; another team cannot even see it.
    let (status, _, _) = post(&rita, &app.url(&reauthorize), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let olga = signed_in(app, &agency.outsider).await;
    let (_, olga_page) = page(&olga, &app.url("/team")).await;
    let olga_csrf = csrf_of(&olga_page);
    let (status, _, _) = post(
        &olga,
        &app.url(&reauthorize),
        &pairs(&[("csrf_token", &olga_csrf)]),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let delete_url = app.url(&format!("/credential-requests/{request}/delete"));
    assert_eq!(page(&olga, &delete_url).await.0, StatusCode::NOT_FOUND);
    let (status, _, _) = post(
        &olga,
        &delete_url,
        &pairs(&[
            ("csrf_token", &olga_csrf),
            ("connections", &connection.to_string()),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(page(&olga, &detail_url).await.0, StatusCode::NOT_FOUND);

    // The key stops working: the recipient is asked to reauthorize.
    agency.upstream.reject(key);
    let (status, _, _) = post(
        &rita,
        &app.url(&reauthorize),
        &pairs(&[("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, detail) = page(&rita, &detail_url).await;
    assert!(detail.contains("to reauthorize Acme CRM"), "{detail}");
    assert!(detail.contains("state reauthorizing"), "{detail}");

    // Authorized again, then deleted: the confirmation names the connection and its consumers.
    agency.upstream.accept(key);
    let (status, body) = agency
        .authorize_with(&credentials[0], "reauthorize", key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = app
        .team_connections()
        .await
        .into_iter()
        .find(|c| c.app_key == "acme-crm")
        .expect("the new connection")
        .id;
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
    wait_until("the call is in the usage log", || async {
        page(&rita, &delete_url)
            .await
            .1
            .contains("weekly-sync agent")
    })
    .await;
    let (status, confirm) = page(&rita, &delete_url).await;
    assert_eq!(status, StatusCode::OK, "{confirm}");
    for expected in [
        "These connections will be destroyed",
        "Acme CRM",
        "Onboarding Acme — Acme CRM",
        "weekly-sync agent",
        "Used in the last",
    ] {
        assert!(confirm.contains(expected), "{expected}: {confirm}");
    }
    assert!(
        !confirm.contains("Onboarding Acme — Beta Desk"),
        "no connection: {confirm}"
    );

    // A confirmation for another set of connections is shown again, nothing deleted.
    let (status, _, again) = post(
        &rita,
        &delete_url,
        &pairs(&[("csrf_token", &csrf), ("connections", "")]),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(
        again.contains("changed since this page was shown"),
        "{again}"
    );
    assert_eq!(page(&rita, &detail_url).await.0, StatusCode::OK);
    let (status, _, _) = post(
        &rita,
        &delete_url,
        &pairs(&[("connections", &connection.to_string())]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no token, no deletion");

    let (status, to, _) = post(
        &rita,
        &delete_url,
        &pairs(&[
            ("csrf_token", &csrf),
            ("connections", &connection.to_string()),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to, "/credential-requests/sent");
    let (_, sent) = page(&rita, &app.url("/credential-requests/sent")).await;
    assert!(
        sent.contains("Deleted Onboarding Acme and its connection."),
        "{sent}"
    );
    assert_eq!(page(&rita, &detail_url).await.0, StatusCode::NOT_FOUND);
    assert!(app
        .team_connections()
        .await
        .iter()
        .all(|c| c.id != connection));
    assert!(agency
        .audit_events()
        .await
        .iter()
        .any(|e| e == "credential_request.deleted"));
    agency.app.stop().await;
}

async fn an_organization_admin_asks_someone_outside_the_organization(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let ada = app
        .add_person("ada@agency.example", app.organization, "admin", None)
        .await;
    credence::service::features::grant(&app.store, &app.vault(), &ada.email)
        .await
        .unwrap();
    let ada_browser = signed_in(app, &ada).await;
    let new = app.url("/credential-requests/new");
    let (status, form) = page(&ada_browser, &new).await;
    assert_eq!(status, StatusCode::OK, "{form}");
    assert!(
        !form.contains("Only organization admins and owners may ask"),
        "no warning for an admin: {form}"
    );
    // An admin picks from the whole organization, Olga of the Other team too.
    assert!(form.contains("olga@agency.example"), "{form}");
    let (status, to, _) = post(
        &ada_browser,
        &new,
        &pairs(&[
            ("csrf_token", &csrf_of(&form)),
            ("rows", "1"),
            ("name", "Client onboarding"),
            ("recipient", "external"),
            ("external_name", "Cleo Client"),
            ("external_email", "cleo@client.example"),
            ("app_0", "acme-crm"),
            ("shown_0", "acme-crm@1"),
            ("version_0", "1"),
            ("modules_0", "searchContacts"),
            ("terms", "yes"),
            ("action", "send"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, done) = page(&ada_browser, &app.url(&to)).await;
    assert!(done.contains("an invitation to join as a guest"), "{done}");
    assert!(
        agency
            .invitation_link("cleo@client.example")
            .await
            .contains("/invitations/"),
        "the invitation is in the outbox"
    );
    agency.app.stop().await;
}

on_both_backends!(
    the_wizard_creates_a_request_for_two_apps_without_javascript,
    bad_input_is_shown_next_to_its_field_and_creates_nothing,
    without_the_feature_the_wizard_offers_to_request_it,
    the_team_page_shows_who_has_the_feature,
    details_offer_reauthorization_and_delete_with_the_usage_list,
    an_organization_admin_asks_someone_outside_the_organization,
);
