//! The app shell's pages over HTTP (the journeys in a real browser are in
//! `browser_journeys.rs`): the Sent list shows the chosen team's requests and
//! no other's, a request's details are a 404 to whoever may not see it, the
//! recipient is sent to their own page, and the team switcher accepts only a
//! team the user may act for and says so once.

use crate::on_both_backends;
use crate::support::page;
use crate::support::{browser, csrf_of, location, signed_in, Agency};
use credence_store::Backend;
use reqwest::StatusCode;

async fn the_sent_list_and_details_show_the_teams_requests_to_the_team_only(backend: Backend) {
    let agency = Agency::start(backend).await;
    let (request, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let app = &agency.app;

    let requester = signed_in(app, &agency.requester).await;
    let (status, sent) = page(&requester, &app.url("/credential-requests/sent")).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert!(sent.contains("Onboarding Acme"), "{sent}");
    assert!(
        sent.contains(&format!("/credential-requests/{request}")),
        "{sent}"
    );
    assert!(
        sent.contains(r#"aria-current="page""#),
        "the sidebar marks Sent: {sent}"
    );

    let (status, detail) = page(
        &requester,
        &app.url(&format!("/credential-requests/{request}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    for expected in [
        "Acme CRM",
        "Beta Desk",
        "Connection name",
        "state pending",
        "tip-body",
    ] {
        assert!(detail.contains(expected), "{expected}: {detail}");
    }

    // Filters narrow the list: no request is declined.
    let (_, declined) = page(
        &requester,
        &app.url("/credential-requests/sent?status=declined&page=1"),
    )
    .await;
    assert!(
        !declined.contains(&format!("/credential-requests/{request}")),
        "{declined}"
    );
    let (status, _) = page(
        &requester,
        &app.url("/credential-requests/sent?status=nonsense&page=-3&q=%00"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a filter it does not know is ignored"
    );
    // A NUL in a name filter matches nothing, and PostgreSQL is never asked it.
    let (status, body) = app
        .get_json(
            &format!(
                "/api/v2/credential-requests/requests?teamId={}&name=a%00b",
                app.team
            ),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requests"], serde_json::json!([]), "{body}");
    for path in [
        "/api/v2/credential-requests/requests?teamId={team}&client=%00",
        "/api/v2/credential-requests/requests?teamId={team}&project=x%00",
        "/api/v2/credential-requests/projects?teamId={team}&client=%00",
    ] {
        let path = path.replace("{team}", &app.team.to_string());
        let (status, body) = app.get_json(&path, &agency.requester_token).await;
        assert!(
            status.is_success() || status == StatusCode::BAD_REQUEST,
            "{path}: {status} {body}"
        );
    }

    // A member of another team sees neither the request in a list nor its page.
    let outsider = signed_in(app, &agency.outsider).await;
    let (status, sent) = page(&outsider, &app.url("/credential-requests/sent")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!sent.contains("Onboarding Acme"), "{sent}");
    let (status, _) = page(
        &outsider,
        &app.url(&format!("/credential-requests/{request}")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = page(&outsider, &app.url("/credential-requests/not-a-request-id")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The recipient is sent to their own page of it, and finds it received.
    let recipient = signed_in(app, &agency.teammate).await;
    let response = recipient
        .get(app.url(&format!("/credential-requests/{request}")))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), format!("/received/{request}"));
    let (status, received) = page(&recipient, &app.url("/credential-requests/received")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        received.contains(&format!("/received/{request}")),
        "{received}"
    );

    // Nobody signed in is sent to sign in, and comes back to the same page.
    let response = browser()
        .get(app.url("/credential-requests/sent"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        location(&response),
        "/sign-in?next=%2Fcredential-requests%2Fsent"
    );
    agency.app.stop().await;
}

async fn the_team_switcher_takes_only_a_team_the_user_may_act_for(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let (request, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    // An organization admin acts for every team; the Default team comes first.
    let admin = app
        .add_person("ada@agency.example", app.organization, "admin", None)
        .await;
    let admin = signed_in(app, &admin).await;
    let (_, sent) = page(&admin, &app.url("/credential-requests/sent")).await;
    assert!(sent.contains("team-switcher"), "{sent}");
    assert!(sent.contains("Onboarding Acme"), "{sent}");

    let csrf = csrf_of(&sent);
    let switch = |team: String| {
        let admin = admin.clone();
        let csrf = csrf.clone();
        let url = app.url("/team");
        async move {
            admin
                .post(url)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("team", team.as_str()),
                    ("back", "/credential-requests/sent"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let response = switch(agency.other_team.0.to_string()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/credential-requests/sent");
    let (_, sent) = page(&admin, &app.url("/credential-requests/sent")).await;
    assert!(
        sent.contains("Now working in"),
        "the switch is confirmed once: {sent}"
    );
    assert!(
        !sent.contains("Onboarding Acme"),
        "the other team sent nothing: {sent}"
    );
    let (_, again) = page(&admin, &app.url("/credential-requests/sent")).await;
    assert!(
        !again.contains("Now working in"),
        "the flash is shown once: {again}"
    );
    // The details stay reachable: the switcher is a view, not a permission.
    let (status, _) = page(&admin, &app.url(&format!("/credential-requests/{request}"))).await;
    assert_eq!(status, StatusCode::OK);

    // A team that does not exist is refused like one the user may not see.
    assert_eq!(
        switch("987654".into()).await.status(),
        StatusCode::NOT_FOUND
    );
    let requester = signed_in(app, &agency.requester).await;
    let (_, sent) = page(&requester, &app.url("/credential-requests/sent")).await;
    let response = requester
        .post(app.url("/team"))
        .form(&[
            ("csrf_token", csrf_of(&sent).as_str()),
            ("team", &agency.other_team.0.to_string()),
            ("back", "https://elsewhere.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "not the requester's team"
    );
    // Without the form's token nothing is switched.
    let response = admin
        .post(app.url("/team"))
        .form(&[("team", agency.other_team.0.to_string().as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    agency.app.stop().await;
}

on_both_backends!(
    the_sent_list_and_details_show_the_teams_requests_to_the_team_only,
    the_team_switcher_takes_only_a_team_the_user_may_act_for,
);
