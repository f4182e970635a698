//! Who sees what in every list (SPEC §1, §4.4, §4.5): a caller who sends from no
//! team (an owner of an organization without teams, a member of no team, a
//! guest), a guest who joined the team through an invitation, and the people of
//! another organization see nothing of a team's requests, connections, audit
//! entries, members or the team itself — not even when they name a recipient
//! with `makeProviderId`, whose ids are sequential. And repeated query
//! parameters are capped, so a long query is a 400, never a 500.

use crate::on_both_backends;
use crate::support::Agency;
use crate::support::{accept_invitation_link, assert_error};
use credence::service::identity;
use credence_domain::{OrganizationId, UserId};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Every scope a reader could hold, so that only the roles refuse.
const EVERY_READ_SCOPE: &str =
    "credential-requests:read,credential-requests:write,connections:read,\
    organization:read,organizations:read,teams:read,user:read";

/// The API key the recipient authorizes with.
const ACME_KEY: &str = "acme-scoping-key-41d9";

/// Someone who looks at organization A's Default team from where they should
/// see nothing of it.
struct Caller {
    label: &'static str,
    token: String,
    /// The organizations they belong to (what `/organizations` may show).
    organizations: Vec<OrganizationId>,
    /// The request sent to them, when there is one (a guest's own).
    received: Option<String>,
}

/// Organization A (the agency) with a request from Rita to Tom, authorized, so
/// that it has a connection and audit entries; organization B with an owner
/// and no team at first, and the callers who must see none of A's team.
struct Scene {
    agency: Agency,
    request: String,
    credential: String,
    connection: i64,
    audit_entry: i64,
    callers: Vec<Caller>,
    /// Strings of the Default team's request that no caller may be shown.
    markers: Vec<String>,
}

async fn scene(backend: Backend) -> Scene {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    agency.upstream.accept(ACME_KEY);
    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let (status, body) = agency
        .authorize_with(&credentials[0], "authorize", ACME_KEY)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = body["credential"]["remoteId"]
        .as_str()
        .and_then(|id| id.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("the authorized credential names its connection: {body}"));
    let (entries, _) = app
        .db()
        .await
        .list_audit(&credence_store::AuditFilter {
            organization: Some(app.organization),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let audit_entry = entries[0].id;

    // Organization C has no team at all, so its owner sends from none.
    let cirrus = identity::create_organization(&app.store, "Cirrus", "enterprise", false)
        .await
        .unwrap()
        .id;
    let c_owner = app
        .add_person("cora@cirrus.example", cirrus, "owner", None)
        .await;
    // Organization B: its owner (of no team), a member of no team, a guest,
    // and a member of B's own team.
    let borealis = identity::create_organization(&app.store, "Borealis", "enterprise", false)
        .await
        .unwrap()
        .id;
    let b_owner = app
        .add_person("bea@borealis.example", borealis, "owner", None)
        .await;
    let b_member = app
        .add_person("ben@borealis.example", borealis, "member", None)
        .await;
    let b_guest = app
        .add_person("bob@client.example", borealis, "guest", None)
        .await;
    let b_team = identity::create_team(&app.store, borealis, "Borealis team")
        .await
        .unwrap()
        .id;
    let b_team_member = app
        .add_person(
            "bianca@borealis.example",
            borealis,
            "member",
            Some((b_team, "member")),
        )
        .await;
    // In A: a member of no team, and a guest who is a member of the Default
    // team, as accepting an invitation leaves them, with a request of their own.
    let a_member = app
        .add_person("nadia@agency.example", app.organization, "member", None)
        .await;
    let a_guest = app
        .add_person(
            "gina@client.example",
            app.organization,
            "guest",
            Some((app.team, "member")),
        )
        .await;
    let (status, body) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.admin_token,
            Some(json!({
                "name": "Gina's own request",
                "teamId": app.team,
                "credentials": [{ "appName": "beta-desk", "appModules": ["*"], "nameOverride": "Gina desk" }],
                "provider": { "providerMakeUserId": a_guest.id },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let guest_request = body["request"]["id"].as_str().unwrap().to_string();

    let mut callers = Vec::new();
    for (label, person, organization, received) in [
        (
            "the owner of an organization without teams",
            &c_owner,
            cirrus,
            None,
        ),
        (
            "the owner of another organization",
            &b_owner,
            borealis,
            None,
        ),
        (
            "a member of no team in another organization",
            &b_member,
            borealis,
            None,
        ),
        ("a guest of another organization", &b_guest, borealis, None),
        (
            "a member of another organization's team",
            &b_team_member,
            borealis,
            None,
        ),
        (
            "a member of no team in the organization",
            &a_member,
            app.organization,
            None,
        ),
        (
            "a guest in the team",
            &a_guest,
            app.organization,
            Some(guest_request.clone()),
        ),
    ] {
        callers.push(Caller {
            label,
            token: app.token(person.id, EVERY_READ_SCOPE).await,
            organizations: vec![organization],
            received,
        });
    }
    let markers = vec![
        request.clone(),
        credentials[0].clone(),
        agency.requester.email.clone(),
        agency.teammate.email.clone(),
        "Onboarding Acme".to_string(),
    ];
    Scene {
        request,
        credential: credentials[0].clone(),
        connection,
        audit_entry,
        callers,
        markers,
        agency,
    }
}

/// A refusal that says nothing: 403 or 404 in our error shape.
fn assert_refused(label: &str, path: &str, status: StatusCode, body: &Value) {
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
        "{label}: GET {path} answered {status}: {body}"
    );
    for key in ["message", "code", "detail", "suberrors"] {
        assert!(body.get(key).is_some(), "{label}: GET {path}: {body}");
    }
}

/// The ids of the items listed under `key`.
fn listed(body: &Value, key: &str) -> Vec<Value> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} list in {body}"))
        .iter()
        .map(|item| item["id"].clone())
        .collect()
}

async fn a_caller_without_sender_teams_cannot_list_another_organizations_requests_by_make_provider_id(
    backend: Backend,
) {
    let scene = scene(backend).await;
    let app = &scene.agency.app;
    let recipient = scene.agency.teammate.id;
    let path = format!("/api/v2/credential-requests/requests?makeProviderId={recipient}");
    for caller in &scene.callers {
        let (status, body) = app.get_json(&path, &caller.token).await;
        if status == StatusCode::OK {
            assert_eq!(
                listed(&body, "requests"),
                Vec::<Value>::new(),
                "{}: GET {path} shows another team's requests",
                caller.label
            );
            assert_eq!(body["pg"]["total"], 0, "{}: {body}", caller.label);
        } else {
            assert_refused(caller.label, &path, status, &body);
        }
    }
    // The narrowing still works for the sending team: the request to Tom, and
    // nothing asked of Rita.
    let (status, body) = app.get_json(&path, &scene.agency.requester_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(listed(&body, "requests"), vec![json!(scene.request)]);
    let rita = scene.agency.requester.id;
    let (_, body) = app
        .get_json(
            &format!("/api/v2/credential-requests/requests?makeProviderId={rita}"),
            &scene.agency.requester_token,
        )
        .await;
    assert_eq!(listed(&body, "requests"), Vec::<Value>::new());
    // A user id that does not exist is no different.
    let (status, body) = app
        .get_json(
            "/api/v2/credential-requests/requests?makeProviderId=999999",
            &scene.callers[0].token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(listed(&body, "requests"), Vec::<Value>::new());
    scene.agency.app.stop().await;
}

async fn a_guest_who_accepted_an_invitation_reads_neither_the_team_nor_its_members(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.admin_token,
            Some(json!({
                "name": "Client onboarding",
                "teamId": app.team,
                "credentials": [{ "appName": "acme-crm", "appModules": ["*"] }],
                "provider": { "newUser": { "name": "Cleo Client", "email": "cleo@client.example" } },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let request = created["request"]["id"].as_str().unwrap().to_string();
    let cleo = accept_invitation(&agency, "cleo@client.example").await;
    let token = app.token(cleo, EVERY_READ_SCOPE).await;
    let team = app.team;

    // Joining made Cleo a member of the team; she still reads none of it.
    for path in [
        format!("/api/v2/users?teamId={team}"),
        format!("/api/v2/teams/{team}"),
        format!("/api/v2/connections?teamId={team}"),
        format!("/api/v2/audit-logs/team/{team}"),
    ] {
        let (status, body) = app.get_json(&path, &token).await;
        assert_refused("a guest", &path, status, &body);
        assert!(
            !body.to_string().contains(&agency.requester.email),
            "GET {path} names a team member to a guest: {body}"
        );
    }
    let (status, body) = app
        .get_json(
            &format!("/api/v2/teams?organizationId={}", app.organization),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(listed(&body, "teams"), Vec::<Value>::new(), "{body}");
    // What she received stays hers to see.
    let (status, body) = app
        .get_json("/api/v2/credential-requests/received", &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(listed(&body, "requests"), vec![json!(request)]);
    let (status, body) = app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}/detail"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The team's members still see one another.
    let (status, body) = app
        .get_json(
            &format!("/api/v2/users?teamId={team}"),
            &app.token(agency.requester.id, EVERY_READ_SCOPE).await,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|user| user["id"] == json!(agency.teammate.id)));
    agency.app.stop().await;
}

/// Accepts the invitation the outbox holds for `email` in a browser (sign up
/// with a password) and answers the new user's id.
async fn accept_invitation(agency: &Agency, email: &str) -> UserId {
    let invitation = agency.invitation_link(email).await;
    let (page, post) = accept_invitation_link(&invitation).await;
    assert_eq!(page, StatusCode::OK, "the invitation page opens");
    assert_eq!(post, StatusCode::SEE_OTHER);
    agency
        .app
        .db()
        .await
        .find_user_by_email(email)
        .await
        .unwrap()
        .expect("the guest exists")
        .id
}

async fn every_list_shows_callers_without_a_team_guests_and_other_organizations_nothing_of_a_team(
    backend: Backend,
) {
    let scene = scene(backend).await;
    let app = &scene.agency.app;
    let (organization, team, other_team) = (app.organization, app.team, scene.agency.other_team);
    let (tom, rita) = (scene.agency.teammate.id, scene.agency.requester.id);
    let (request, credential, connection, entry) = (
        &scene.request,
        &scene.credential,
        scene.connection,
        scene.audit_entry,
    );
    // Each path, and the list its answer holds when it is not refused.
    let reads: Vec<(String, Option<&str>)> = vec![
        (
            "/api/v2/credential-requests/requests".into(),
            Some("requests"),
        ),
        (
            format!("/api/v2/credential-requests/requests?makeProviderId={tom}"),
            Some("requests"),
        ),
        (
            format!("/api/v2/credential-requests/requests?userId={rita}"),
            Some("requests"),
        ),
        (
            format!("/api/v2/credential-requests/requests?teamId={team}"),
            Some("requests"),
        ),
        (
            format!("/api/v2/credential-requests/requests?teamId={team}&makeProviderId={tom}"),
            Some("requests"),
        ),
        (
            format!("/api/v2/credential-requests/requests/{request}"),
            None,
        ),
        (
            format!("/api/v2/credential-requests/requests/{request}/detail"),
            None,
        ),
        (
            format!("/api/v2/credential-requests/credentials/{credential}"),
            None,
        ),
        (
            format!("/api/v2/connections?teamId={team}"),
            Some("connections"),
        ),
        (
            format!("/api/v2/connections?teamId={team}&type=acme-crm"),
            Some("connections"),
        ),
        (format!("/api/v2/connections/{connection}"), None),
        (
            format!("/api/v2/audit-logs/organization/{organization}"),
            Some("auditLogs"),
        ),
        (
            format!("/api/v2/audit-logs/organization/{organization}?team={team}"),
            Some("auditLogs"),
        ),
        (
            format!("/api/v2/audit-logs/organization/{organization}?author={rita}"),
            Some("auditLogs"),
        ),
        (
            format!("/api/v2/audit-logs/organization/{organization}/filters"),
            None,
        ),
        (
            format!("/api/v2/audit-logs/organization/{organization}/export"),
            None,
        ),
        (format!("/api/v2/audit-logs/team/{team}"), Some("auditLogs")),
        (format!("/api/v2/audit-logs/team/{team}/filters"), None),
        (format!("/api/v2/audit-logs/team/{team}/export"), None),
        (format!("/api/v2/audit-logs/{entry}"), None),
        (format!("/api/v2/users?teamId={team}"), Some("users")),
        (format!("/api/v2/users?teamId={other_team}"), Some("users")),
        (
            format!("/api/v2/teams?organizationId={organization}"),
            Some("teams"),
        ),
        (format!("/api/v2/teams/{team}"), None),
        (format!("/api/v2/teams/{other_team}"), None),
    ];
    for caller in &scene.callers {
        for (path, list) in &reads {
            let (status, body) = app.get_json(path, &caller.token).await;
            match (status, list) {
                (StatusCode::OK, Some(key)) => assert_eq!(
                    listed(&body, key),
                    Vec::<Value>::new(),
                    "{}: GET {path} lists what they may not see",
                    caller.label
                ),
                _ => assert_refused(caller.label, path, status, &body),
            }
            let text = body.to_string();
            // An error may repeat what the path named, nothing more.
            for marker in scene.markers.iter().filter(|m| !path.contains(m.as_str())) {
                assert!(
                    !text.contains(marker.as_str()),
                    "{}: GET {path} shows {marker:?}: {text}",
                    caller.label
                );
            }
        }

        // Their own organizations, and what they received, they do see.
        let (status, body) = app.get_json("/api/v2/organizations", &caller.token).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", caller.label);
        let expected: Vec<Value> = caller.organizations.iter().map(|o| json!(o)).collect();
        assert_eq!(listed(&body, "organizations"), expected, "{}", caller.label);
        let (status, body) = app
            .get_json(
                &format!("/api/v2/organizations/{organization}"),
                &caller.token,
            )
            .await;
        if caller.organizations.contains(&organization) {
            assert_eq!(status, StatusCode::OK, "{}: {body}", caller.label);
        } else {
            assert_refused(caller.label, "/api/v2/organizations/{A}", status, &body);
        }
        let (status, body) = app
            .get_json("/api/v2/credential-requests/received", &caller.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", caller.label);
        let expected: Vec<Value> = caller.received.iter().map(|r| json!(r)).collect();
        assert_eq!(listed(&body, "requests"), expected, "{}", caller.label);
    }
    scene.agency.app.stop().await;
}

async fn thousands_of_repeated_query_parameters_are_refused_with_a_400_naming_the_parameter(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let owner = app.token(app.admin_id().await, EVERY_READ_SCOPE).await;
    // As many distinct events as a URI holds (64 KiB): each was a bind in the
    // query, and each was compared with all before it.
    let events: Vec<String> = (0..6_000u32)
        .map(|i| format!("event={}", base36(i)))
        .collect();
    let path = format!(
        "/api/v2/audit-logs/organization/{}?{}",
        app.organization,
        events.join("&")
    );
    let (status, body) = app.get_json(&path, &owner).await;
    let body = assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["suberrors"][0]["field"], "event", "{body}");
    assert!(
        body["suberrors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("6000") && m.contains("50")),
        "{body}"
    );
    // Someone who may not read the log at all is refused as cleanly.
    let (status, body) = app.get_json(&path, &agency.requester_token).await;
    assert!(status.is_client_error(), "{status}: {body}");

    // cols[] and event[] too, on every list; fifty of one are still fine.
    let cols = vec!["cols[]=id"; 51].join("&");
    for list in [
        "/api/v2/credential-requests/requests".to_string(),
        "/api/v2/credential-requests/received".to_string(),
        format!("/api/v2/audit-logs/organization/{}", app.organization),
    ] {
        let (status, body) = app.get_json(&format!("{list}?{cols}"), &owner).await;
        let body = assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["suberrors"][0]["field"], "cols[]", "{list}: {body}");
    }
    let fifty_events = (0..50)
        .map(|i| format!("event[]=credential_request.e{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let (status, body) = app
        .get_json(
            &format!(
                "/api/v2/audit-logs/organization/{}?{fifty_events}",
                app.organization
            ),
            &owner,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .get_json(
            &format!(
                "/api/v2/audit-logs/organization/{}?{fifty_events}&event[]=one.more",
                app.organization
            ),
            &owner,
        )
        .await;
    let body = assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["suberrors"][0]["field"], "event[]", "{body}");
    agency.app.stop().await;
}

fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

on_both_backends!(
    a_caller_without_sender_teams_cannot_list_another_organizations_requests_by_make_provider_id,
    a_guest_who_accepted_an_invitation_reads_neither_the_team_nor_its_members,
    every_list_shows_callers_without_a_team_guests_and_other_organizations_nothing_of_a_team,
    thousands_of_repeated_query_parameters_are_refused_with_a_400_naming_the_parameter,
);
