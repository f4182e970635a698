//! Intake tracking (SPEC §9): client, project and owner set at creation and
//! changed later (audited), refused with the field and the limit when bad;
//! the Sent list's tracking views and filters; the rollups per project.

use crate::on_both_backends;
use crate::support::{assert_error, Agency, Person};
use credence_store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const REQUESTS: &str = "/api/v2/credential-requests/requests";

/// Another member of the requesting team, who may own requests.
async fn paula(agency: &Agency) -> Person {
    agency
        .app
        .add_person(
            "paula@agency.example",
            agency.app.organization,
            "member",
            Some((agency.app.team, "member")),
        )
        .await
}

/// Creates a request of the requester's asked of the teammate, with `extra`
/// fields merged into the body; answers the created request.
async fn create_tracked(agency: &Agency, apps: &[&str], extra: Value) -> Value {
    let mut body = agency.body_for(agency.teammate.id, apps);
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let (status, created) = agency
        .post(
            &format!("{REQUESTS}/v2"),
            &agency.requester_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["request"].clone()
}

async fn patch(agency: &Agency, id: &str, token: &str, body: Value) -> (StatusCode, Value) {
    agency
        .app
        .send(
            Method::PATCH,
            &format!("{REQUESTS}/{id}"),
            token,
            Some(body),
        )
        .await
}

async fn get_request(agency: &Agency, id: &str) -> Value {
    let (status, body) = agency
        .app
        .get_json(&format!("{REQUESTS}/{id}"), &agency.requester_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["request"].clone()
}

/// The ids of the Sent list with `query`, as the requester sees it.
async fn sent_ids(agency: &Agency, query: &str) -> Vec<String> {
    let (status, body) = agency
        .app
        .get_json(&format!("{REQUESTS}?{query}"), &agency.requester_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let mut ids: Vec<String> = body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&Value]) -> Vec<String> {
    let mut ids: Vec<String> = ids
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn tracking_is_set_at_creation_changed_later_and_audited(backend: Backend) {
    let agency = Agency::start(backend).await;
    let paula = paula(&agency).await;

    // Make's clients send none of it: the owner is then the requester.
    let plain = create_tracked(&agency, &["acme-crm"], json!({})).await;
    assert_eq!(plain["client"], Value::Null);
    assert_eq!(plain["ownerId"], json!(agency.requester.id));
    assert_eq!(plain["nudgeCount"], json!(0));
    assert!(plain["nextNudgeAt"].is_string(), "{plain}");
    assert!(plain["slaDueAt"].is_string(), "{plain}");

    let request = create_tracked(
        &agency,
        &["acme-crm"],
        json!({ "client": " Client Co ", "project": "Onboarding", "owner": paula.id }),
    )
    .await;
    let id = request["id"].as_str().unwrap();
    assert_eq!(request["client"], "Client Co");
    assert_eq!(request["project"], "Onboarding");
    assert_eq!(request["ownerId"], json!(paula.id));

    // A teammate of the sending team changes the client, clears the
    // project and gives the request back to its requester.
    let (status, body) = patch(
        &agency,
        id,
        &agency.requester_token,
        json!({ "client": "Client Two", "project": null, "owner": null }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["request"]["client"], "Client Two");
    assert_eq!(body["request"]["project"], Value::Null);
    assert_eq!(body["request"]["ownerId"], json!(agency.requester.id));
    // An absent field keeps its value.
    let (status, body) = patch(
        &agency,
        id,
        &agency.requester_token,
        json!({ "project": "Q3" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let read = get_request(&agency, id).await;
    assert_eq!(
        (&read["client"], &read["project"], &read["ownerId"]),
        (
            &json!("Client Two"),
            &json!("Q3"),
            &json!(agency.requester.id)
        )
    );

    let entries = agency
        .app
        .audit_entries(&["credential_request.tracking_changed"])
        .await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let details: Value = serde_json::from_str(&entries[0].details).unwrap();
    assert_eq!(
        details["client"],
        json!({ "from": "Client Co", "to": "Client Two" })
    );
    assert_eq!(
        details["project"],
        json!({ "from": "Onboarding", "to": null })
    );
    assert_eq!(
        details["ownerId"],
        json!({ "from": paula.id, "to": agency.requester.id })
    );
    assert_eq!(entries[0].target_id, id);

    // The recipient may not track it; another team does not see it.
    let (status, body) = patch(
        &agency,
        id,
        &agency.teammate_token,
        json!({ "client": "X" }),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = patch(
        &agency,
        id,
        &agency.outsider_token,
        json!({ "client": "X" }),
    )
    .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(get_request(&agency, id).await["client"], "Client Two");
    agency.app.stop().await;
}

async fn bad_tracking_input_is_refused_naming_the_field_and_the_limit(backend: Backend) {
    let agency = Agency::start(backend).await;
    let long = "é".repeat(101);
    let body = |extra: Value| {
        let mut body = agency.body_for(agency.teammate.id, &["acme-crm"]);
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let field_messages = |body: &Value| -> Vec<(String, String)> {
        body["suberrors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };

    // At creation: a label past 100 characters, an owner outside the team.
    let (status, answer) = agency
        .post(
            &format!("{REQUESTS}/v2"),
            &agency.requester_token,
            Some(body(
                json!({ "client": long, "project": "ok", "owner": agency.outsider.id }),
            )),
        )
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST);
    let problems = field_messages(&answer);
    assert!(
        problems
            .iter()
            .any(|(f, m)| f == "client" && m.contains("101 characters") && m.contains("100")),
        "{answer}"
    );
    assert!(
        problems.iter().any(|(f, m)| f == "owner"
            && m.contains(&agency.outsider.id.to_string())
            && m.contains("team")),
        "{answer}"
    );
    assert_eq!(sent_ids(&agency, "").await.len(), 0, "nothing was created");

    let request = create_tracked(&agency, &["acme-crm"], json!({ "client": "Keep" })).await;
    let id = request["id"].as_str().unwrap();
    for (change, field) in [
        (json!({ "project": long }), "project"),
        (json!({ "client": "two\nlines" }), "client"),
        (json!({ "owner": agency.outsider.id }), "owner"),
        (json!({ "owner": 99_999_999 }), "owner"),
    ] {
        let (status, answer) = patch(&agency, id, &agency.requester_token, change.clone()).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
        assert!(
            field_messages(&answer).iter().any(|(f, _)| f == field),
            "{change}: {answer}"
        );
    }
    // Shapes that do not fit: an unknown field, an owner that is not a number.
    for change in [
        json!({ "clent": "typo" }),
        json!({ "owner": "paula" }),
        json!([1]),
    ] {
        let (status, answer) = patch(&agency, id, &agency.requester_token, change.clone()).await;
        assert!(status.is_client_error(), "{change}: {status} {answer}");
        assert!(answer["message"].is_string(), "{answer}");
    }
    let read = get_request(&agency, id).await;
    assert_eq!(
        (&read["client"], &read["project"], &read["ownerId"]),
        (&json!("Keep"), &Value::Null, &json!(agency.requester.id)),
        "nothing changed"
    );
    assert!(agency
        .app
        .audit_entries(&["credential_request.tracking_changed"])
        .await
        .is_empty());

    // Filters of the list are checked too.
    for (query, field) in [
        (format!("client={}", "x".repeat(101)), "client"),
        (format!("project={}", "x".repeat(101)), "project"),
        ("view=someday".to_string(), "view"),
        ("ownerId=paula".to_string(), "ownerId"),
    ] {
        let (status, answer) = agency
            .app
            .get_json(&format!("{REQUESTS}?{query}"), &agency.requester_token)
            .await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
        assert!(
            field_messages(&answer).iter().any(|(f, _)| f == field),
            "{query}: {answer}"
        );
        let (status, _) = agency
            .app
            .get_json(
                &format!("/api/v2/credential-requests/projects?{query}"),
                &agency.requester_token,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    agency.app.stop().await;
}

async fn the_sent_list_filters_by_client_owner_project_and_tracking_views(backend: Backend) {
    let agency = Agency::start(backend).await;
    let paula = paula(&agency).await;
    let key = "sk-tracking-view-41c9";
    agency.upstream.accept(key);
    let acme = create_tracked(
        &agency,
        &["acme-crm"],
        json!({ "client": "Acme", "project": "Launch" }),
    )
    .await;
    let beta = create_tracked(
        &agency,
        &["beta-desk"],
        json!({ "client": "Beta", "project": "Launch", "owner": paula.id }),
    )
    .await;
    let gamma = create_tracked(&agency, &["acme-crm"], json!({ "client": "Acme" })).await;

    assert_eq!(
        sent_ids(&agency, "client=Acme").await,
        sorted(&[&acme, &gamma])
    );
    assert_eq!(
        sent_ids(&agency, "project=Launch").await,
        sorted(&[&acme, &beta])
    );
    assert_eq!(
        sent_ids(&agency, &format!("ownerId={}", paula.id)).await,
        sorted(&[&beta])
    );
    assert_eq!(
        sent_ids(&agency, "client=Acme&project=Launch").await,
        sorted(&[&acme])
    );
    assert_eq!(
        sent_ids(&agency, "view=active").await,
        sorted(&[&acme, &beta, &gamma])
    );
    assert!(sent_ids(&agency, "view=due-for-nudge").await.is_empty());
    assert!(sent_ids(&agency, "view=sla-breach").await.is_empty());
    assert!(sent_ids(&agency, "view=authorized-this-week")
        .await
        .is_empty());

    // Acme's one app is authorized: no longer active, authorized this week.
    let credential = acme["credentials"][0]["id"].as_str().unwrap();
    let (status, body) = agency.authorize_with(credential, "authorize", key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        sent_ids(&agency, "view=active").await,
        sorted(&[&beta, &gamma])
    );
    assert_eq!(
        sent_ids(&agency, "view=authorized-this-week").await,
        sorted(&[&acme])
    );
    let read = get_request(&agency, acme["id"].as_str().unwrap()).await;
    assert!(read["authorizedAt"].is_string(), "{read}");
    assert_eq!(
        read["nextNudgeAt"],
        Value::Null,
        "nothing pending, no reminder: {read}"
    );

    // Deadlines as if time had passed: Beta's reminder is due, and it and
    // Acme are past their SLA; the authorized one is not in breach.
    let mut sql = agency.app.sql().await;
    for request in [&acme, &beta] {
        sql.execute(&format!(
            "UPDATE credential_requests SET sla_due_at = created_at WHERE id = '{}'",
            request["id"].as_str().unwrap()
        ))
        .await;
    }
    sql.execute(&format!(
        "UPDATE credential_requests SET next_nudge_at = created_at WHERE id = '{}'",
        beta["id"].as_str().unwrap()
    ))
    .await;
    sql.close().await;
    assert_eq!(
        sent_ids(&agency, "view=due-for-nudge").await,
        sorted(&[&beta])
    );
    assert_eq!(sent_ids(&agency, "view=sla-breach").await, sorted(&[&beta]));
    assert_eq!(
        sent_ids(&agency, "view=sla-breach&client=Acme").await,
        Vec::<String>::new()
    );

    // Another team's member sees none of them, whatever the filter.
    let (status, body) = agency
        .app
        .get_json(&format!("{REQUESTS}?client=Acme"), &agency.outsider_token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["requests"], json!([]));
    agency.app.stop().await;
}

async fn rollups_per_project_count_total_authorized_pending_breaches_and_rate(backend: Backend) {
    let agency = Agency::start(backend).await;
    let key = "sk-tracking-rollup-77d0";
    agency.upstream.accept(key);
    let launch = [
        create_tracked(&agency, &["acme-crm"], json!({ "project": "Launch" })).await,
        create_tracked(&agency, &["acme-crm"], json!({ "project": "Launch" })).await,
        create_tracked(
            &agency,
            &["beta-desk"],
            json!({ "project": "Launch", "client": "Beta" }),
        )
        .await,
        create_tracked(&agency, &["acme-crm"], json!({ "project": "Launch" })).await,
    ];
    create_tracked(&agency, &["acme-crm"], json!({ "project": "Audit" })).await;
    create_tracked(&agency, &["acme-crm"], json!({})).await;
    let credential = launch[0]["credentials"][0]["id"].as_str().unwrap();
    let (status, body) = agency.authorize_with(credential, "authorize", key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // One of Launch's pending requests is past its deadline.
    let mut sql = agency.app.sql().await;
    sql.execute(&format!(
        "UPDATE credential_requests SET sla_due_at = created_at WHERE id = '{}'",
        launch[1]["id"].as_str().unwrap()
    ))
    .await;
    sql.close().await;

    let rollups = |query: &'static str| {
        let agency = &agency;
        async move {
            let (status, body) = agency
                .app
                .get_json(
                    &format!("/api/v2/credential-requests/projects{query}"),
                    &agency.requester_token,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["projects"].as_array().unwrap().clone()
        }
    };
    let all = rollups("").await;
    let of = |name: Value| {
        all.iter()
            .find(|p| p["project"] == name)
            .unwrap_or_else(|| panic!("no rollup for {name}: {all:?}"))
            .clone()
    };
    let team = json!(agency.app.team);
    assert_eq!(
        of(json!("Launch")),
        json!({ "teamId": team, "project": "Launch", "total": 4, "authorized": 1, "pending": 3, "breaches": 1, "slaRate": 0.25 })
    );
    assert_eq!(
        of(json!("Audit")),
        json!({ "teamId": team, "project": "Audit", "total": 1, "authorized": 0, "pending": 1, "breaches": 0, "slaRate": 0.0 })
    );
    assert_eq!(
        of(Value::Null)["total"],
        json!(1),
        "requests without a project are rolled up too"
    );
    assert_eq!(all.len(), 3, "{all:?}");

    // The Sent list's filters narrow the rollups.
    let beta = rollups("?client=Beta").await;
    assert_eq!(beta.len(), 1);
    assert_eq!(beta[0]["total"], json!(1));
    assert_eq!(beta[0]["slaRate"], json!(0.0));
    assert_eq!(rollups("?client=Nobody").await, Vec::<Value>::new());
    // Another team sees none of them.
    let (status, body) = agency
        .app
        .get_json(
            "/api/v2/credential-requests/projects",
            &agency.outsider_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["projects"], json!([]));
    let (status, body) = agency
        .app
        .get_json(
            &format!(
                "/api/v2/credential-requests/projects?teamId={}",
                agency.app.team
            ),
            &agency.outsider_token,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    agency.app.stop().await;
}

on_both_backends!(
    tracking_is_set_at_creation_changed_later_and_audited,
    bad_tracking_input_is_refused_naming_the_field_and_the_limit,
    the_sent_list_filters_by_client_owner_project_and_tracking_views,
    rollups_per_project_count_total_authorized_pending_breaches_and_rate,
);
