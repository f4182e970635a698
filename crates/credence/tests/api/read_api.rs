//! The Make-compatible read endpoints: `/users/me`, `/organizations`, `/teams`
//! and the team members list, with who may see what.

use crate::on_both_backends;
use crate::support::{assert_error, spawn_app};
use credence::service::identity;
use credence_store::Backend;
use reqwest::StatusCode;

async fn users_me_answers_the_token_owner_with_features(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_id().await;
    let token = app.token(admin, "user:read").await;
    let (status, body) = app.get_json("/api/v2/users/me", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["authUser"]["email"], app.admin_email.as_str());
    assert_eq!(body["authUser"]["id"], admin.0);
    assert_eq!(body["authUser"]["features"]["credential-requests"], true);
    assert!(
        body["authUser"].get("password_hash").is_none() && !body.to_string().contains("argon2")
    );

    let (status, body) = app
        .get_json("/api/v2/users/me/current-authorization", &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["authorization"]["scope"],
        serde_json::json!(["user:read"])
    );
    app.stop().await;
}

async fn organizations_list_only_those_the_caller_belongs_to(backend: Backend) {
    let app = spawn_app(backend).await;
    let partner = identity::create_organization(&app.store, "Partner Agency", "pro", true)
        .await
        .unwrap();
    let other = identity::create_organization(&app.store, "Elsewhere", "free", false)
        .await
        .unwrap();
    let ann = app
        .add_person("ann@agency.example", partner.id, "member", None)
        .await;
    let token = app.token(ann.id, "organizations:read").await;

    let (status, body) = app.get_json("/api/v2/organizations", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let organizations = body["organizations"].as_array().unwrap();
    assert_eq!(organizations.len(), 1, "{body}");
    assert_eq!(organizations[0]["id"], partner.id.0);
    assert_eq!(organizations[0]["name"], "Partner Agency");
    assert_eq!(organizations[0]["plan"], "pro");
    assert_eq!(organizations[0]["partner"], true);
    assert_eq!(organizations[0]["userRole"], "member");
    assert_eq!(organizations[0]["credentialRequestsQualified"], true);
    assert_eq!(body["pg"]["sortBy"], "name");

    let (status, body) = app
        .get_json(&format!("/api/v2/organizations/{}", partner.id), &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["organization"]["name"], "Partner Agency");

    // Another organization, or none at all: the same 404, so nothing leaks.
    let (status, body) = app
        .get_json(&format!("/api/v2/organizations/{}", other.id), &token)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app.get_json("/api/v2/organizations/987654", &token).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn owners_see_every_team_and_members_only_their_own(backend: Backend) {
    let app = spawn_app(backend).await;
    let sales = identity::create_team(&app.store, app.organization, "Sales")
        .await
        .unwrap();
    let bob = app
        .add_person(
            "bob@corp.example",
            app.organization,
            "member",
            Some((sales.id, "member")),
        )
        .await;
    let admin_token = app.token(app.admin_id().await, "teams:read").await;
    let bob_token = app.token(bob.id, "teams:read").await;

    let (status, body) = app
        .get_json(
            &format!("/api/v2/teams?organizationId={}", app.organization),
            &admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Default", "Sales"]);
    assert_eq!(body["teams"][0]["organizationId"], app.organization.0);

    let (status, body) = app
        .get_json(
            &format!("/api/v2/teams?organizationId={}", app.organization),
            &bob_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Sales"]);

    let (status, body) = app
        .get_json(&format!("/api/v2/teams/{}", sales.id), &bob_token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["team"]["userRole"], "member");
    // A team of his organization that he is not in: he knows it exists, may not see it.
    let (status, body) = app
        .get_json(&format!("/api/v2/teams/{}", app.team), &bob_token)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);

    // Someone of another organization learns nothing.
    let elsewhere = identity::create_organization(&app.store, "Elsewhere", "core", false)
        .await
        .unwrap();
    let eve = app
        .add_person("eve@elsewhere.example", elsewhere.id, "owner", None)
        .await;
    let eve_token = app.token(eve.id, "teams:read").await;
    let (status, body) = app
        .get_json(&format!("/api/v2/teams/{}", sales.id), &eve_token)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .get_json(
            &format!("/api/v2/teams?organizationId={}", app.organization),
            &eve_token,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn team_members_list_shows_roles_and_who_has_the_feature(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.team;
    let carol = app
        .add_person(
            "carol@corp.example",
            app.organization,
            "admin",
            Some((team, "member")),
        )
        .await;
    let dave = app
        .add_person(
            "dave@corp.example",
            app.organization,
            "member",
            Some((team, "admin")),
        )
        .await;
    credence::service::features::grant(&app.store, &app.vault(), &dave.email)
        .await
        .unwrap();
    let token = app.token(carol.id, "teams:read").await;

    let (status, body) = app
        .get_json(
            &format!("/api/v2/users?teamId={team}&pg[sortBy]=email"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users = body["users"].as_array().unwrap();
    let summary: Vec<(String, String, String, bool)> = users
        .iter()
        .map(|u| {
            (
                u["email"].as_str().unwrap().to_string(),
                u["teamRole"].as_str().unwrap().to_string(),
                u["organizationRole"].as_str().unwrap().to_string(),
                u["features"]["credential-requests"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "admin@credence.local".to_string(),
                "admin".to_string(),
                "owner".to_string(),
                true
            ),
            (
                "carol@corp.example".to_string(),
                "member".to_string(),
                "admin".to_string(),
                false
            ),
            (
                "dave@corp.example".to_string(),
                "admin".to_string(),
                "member".to_string(),
                true
            ),
        ]
    );

    // Make's paging and column selection.
    let (status, body) =
        app.get_json(&format!("/api/v2/users?teamId={team}&pg[sortBy]=email&pg[sortDir]=desc&pg[limit]=1&pg[offset]=1&cols[]=email&cols[]=id"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["users"],
        serde_json::json!([{ "email": "carol@corp.example", "id": carol.id.0 }])
    );
    assert_eq!(body["pg"]["sortDir"], "desc");
    assert_eq!(body["pg"]["limit"], 1);

    // A member of another team of the organization may not list this one.
    let other = identity::create_team(&app.store, app.organization, "Other")
        .await
        .unwrap();
    let erin = app
        .add_person(
            "erin@corp.example",
            app.organization,
            "member",
            Some((other.id, "member")),
        )
        .await;
    let erin_token = app.token(erin.id, "teams:read").await;
    let (status, body) = app
        .get_json(&format!("/api/v2/users?teamId={team}"), &erin_token)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (status, _) = app
        .get_json(&format!("/api/v2/users?teamId={}", other.id), &erin_token)
        .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

on_both_backends!(
    users_me_answers_the_token_owner_with_features,
    organizations_list_only_those_the_caller_belongs_to,
    owners_see_every_team_and_members_only_their_own,
    team_members_list_shows_roles_and_who_has_the_feature,
);
