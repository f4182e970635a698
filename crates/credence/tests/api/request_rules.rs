//! The rules of credential requests, over HTTP against the real server on both
//! backends: who may ask whom (SPEC §3), the feature gate and its plans (§2),
//! every limit of a request (§4), who sees and does what (§4.4), the state
//! machine of one requested credential (§4.1) and two actions racing each other.
//!
//! Each refusal is checked for its exact status and for what it names (the field,
//! the feature, the plan, the current state), and for having stored nothing:
//! rows are counted straight in the database, across every organization.

use crate::on_both_backends;
use crate::support::{assert_error, Person, TestApp};
use crate::support::{credential_path, Agency, SCOPES};
use credence::service::{features, identity};
use credence_domain::{
    Actor, CredentialAction, CredentialState, Feature, OrganizationId, RequestRefusal, TeamId,
    UserId,
};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const CREATE: &str = "/api/v2/credential-requests/requests/v2";
const FEATURE: &str = "/api/v2/credential-requests/feature";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// How many rows `table` holds, counted in the database itself.
async fn rows(app: &TestApp, table: &str) -> i64 {
    app.sql()
        .await
        .value(&format!("SELECT COUNT(*) FROM {table}"))
        .await
}

/// What a request can leave behind, in every organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    requests: i64,
    credentials: i64,
    connections: i64,
    invitations: i64,
    outbox: i64,
    audit: i64,
}

async fn stored(app: &TestApp) -> Stored {
    Stored {
        requests: rows(app, "credential_requests").await,
        credentials: rows(app, "requested_credentials").await,
        connections: rows(app, "connections").await,
        invitations: rows(app, "invitations").await,
        outbox: rows(app, "outbox").await,
        audit: rows(app, "audit_log").await,
    }
}

/// The fields an error names, in order.
fn fields(body: &Value) -> Vec<String> {
    body["suberrors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

/// POSTs a raw body as JSON (for bodies `serde_json` would not write).
async fn post_raw(agency: &Agency, path: &str, token: &str, raw: &str) -> (StatusCode, Value) {
    let response = agency
        .app
        .with_token(reqwest::Method::POST, path, token)
        .header("Content-Type", "application/json")
        .body(raw.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn key_body(key: &str) -> Value {
    json!({ "data": { "apiKey": key } })
}

/// A request body from `team` to the internal user `recipient`.
fn body_to(team: TeamId, recipient: UserId, apps: &[&str]) -> Value {
    json!({
        "name": "Onboarding Acme",
        "teamId": team,
        "description": "Access for the weekly sync",
        "credentials": apps.iter().map(|app| json!({ "appName": app, "appModules": ["*"] })).collect::<Vec<_>>(),
        "provider": { "providerMakeUserId": recipient },
    })
}

/// A user's features, read from the store.
async fn has_feature(app: &TestApp, user: UserId) -> bool {
    app.db()
        .await
        .user_features(user)
        .await
        .unwrap()
        .contains(&Feature::CredentialRequests)
}

/// The credential as its requester sees it: (state, remote connection id).
async fn credential_of(agency: &Agency, id: &str) -> (CredentialState, Option<i64>, Value) {
    let (status, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/credentials/{id}"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let credential = body["credential"].clone();
    let state = CredentialState::parse("state", credential["state"].as_str().unwrap()).unwrap();
    let remote = credential["remoteId"]
        .as_str()
        .map(|id| id.parse::<i64>().unwrap());
    (state, remote, credential)
}

async fn connection_exists(app: &TestApp, id: i64) -> bool {
    app.db().await.get_connection(id).await.unwrap().is_some()
}

/// An organization with a team, an owner and a team member to ask.
struct OtherOrganization {
    id: OrganizationId,
    team: TeamId,
    owner: Person,
    member: Person,
}

async fn other_organization(
    app: &TestApp,
    name: &str,
    slug: &str,
    plan: &str,
    partner: bool,
) -> OtherOrganization {
    let organization = identity::create_organization(&app.store, name, plan, partner)
        .await
        .unwrap();
    let team = identity::create_team(&app.store, organization.id, "Delivery")
        .await
        .unwrap()
        .id;
    let owner = app
        .add_person(
            &format!("owner@{slug}.example"),
            organization.id,
            "owner",
            None,
        )
        .await;
    let member = app
        .add_person(
            &format!("rae@{slug}.example"),
            organization.id,
            "member",
            Some((team, "member")),
        )
        .await;
    OtherOrganization {
        id: organization.id,
        team,
        owner,
        member,
    }
}

// ---------------------------------------------------------------------------
// 1. Who may request from whom (SPEC §3)
// ---------------------------------------------------------------------------

async fn who_may_request_from_whom_follows_the_role_table_of_the_spec(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let (organization, team) = (app.organization, app.team);

    // Recipients: a member of the sending team, a member of another team, and
    // someone outside the organization.
    let tom = &agency.teammate;
    let olga = &agency.outsider;
    let external =
        json!({ "newUser": { "name": "Xena External", "email": "xena@client.example" } });

    // Requesters, one per role; every one of them has the feature.
    let tina = app
        .add_person(
            "tina@agency.example",
            organization,
            "member",
            Some((team, "admin")),
        )
        .await;
    let nora = app
        .add_person(
            "nora@agency.example",
            organization,
            "member",
            Some((agency.other_team, "member")),
        )
        .await;
    let adam = app
        .add_person("adam@agency.example", organization, "admin", None)
        .await;
    let gus = app
        .add_person(
            "gus@agency.example",
            organization,
            "guest",
            Some((team, "member")),
        )
        .await;
    for person in [&tina, &nora, &adam] {
        features::grant(&app.store, &app.vault(), &person.email)
            .await
            .unwrap();
    }
    // The operator cannot grant it to a guest-only user, so it is put in the
    // store directly: only the role may decide below.
    let refused = features::grant(&app.store, &app.vault(), &gus.email)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not eligible"), "{refused}");
    app.db()
        .await
        .grant_feature(gus.id, Feature::CredentialRequests, "test")
        .await
        .unwrap();
    let owner = app.admin_id().await;
    for user in [
        agency.requester.id,
        tina.id,
        nora.id,
        adam.id,
        owner,
        gus.id,
    ] {
        assert!(
            has_feature(app, user).await,
            "user {user} lacks the feature"
        );
    }

    let ok = None;
    let no = Some;
    #[rustfmt::skip]
    let matrix: Vec<(&str, String, [Option<RequestRefusal>; 3])> = vec![
        // requester                           same team   other team                                  external
        ("team member",                agency.requester_token.clone(),
            [ok, no(RequestRefusal::OnlyFromTheSameTeam), no(RequestRefusal::ExternalNeedsOrganizationAdmin)]),
        ("team admin",                 app.token(tina.id, SCOPES).await,
            [ok, ok, no(RequestRefusal::ExternalNeedsOrganizationAdmin)]),
        ("org member not in the team", app.token(nora.id, SCOPES).await,
            [no(RequestRefusal::NotATeamMember), no(RequestRefusal::NotATeamMember), no(RequestRefusal::NotATeamMember)]),
        ("org admin not in the team",  app.token(adam.id, SCOPES).await,
            [ok, ok, ok]),
        ("org owner",                  agency.admin_token.clone(),
            [ok, ok, ok]),
        ("guest in the team",          app.token(gus.id, SCOPES).await,
            [no(RequestRefusal::GuestMayNotSend), no(RequestRefusal::GuestMayNotSend), no(RequestRefusal::GuestMayNotSend)]),
    ];
    let recipients = [
        (
            "member of the same team",
            json!({ "providerMakeUserId": tom.id }),
        ),
        (
            "member of another team",
            json!({ "providerMakeUserId": olga.id }),
        ),
        ("external person", external.clone()),
    ];

    let mut created = 0;
    for (role, token, outcomes) in &matrix {
        for ((kind, provider), outcome) in recipients.iter().zip(outcomes) {
            let mut body = body_to(team, tom.id, &["acme-crm"]);
            body["provider"] = provider.clone();
            let before = stored(app).await;
            let (status, answer) = agency.post(CREATE, token, Some(body)).await;
            match outcome {
                None => {
                    assert_eq!(
                        status,
                        StatusCode::CREATED,
                        "a {role} asking a {kind}: {answer}"
                    );
                    created += 1;
                    assert_eq!(answer["request"]["teamId"], team.0);
                    let expected_kind = if *kind == "external person" {
                        "external"
                    } else {
                        "internal"
                    };
                    assert_eq!(answer["request"]["recipient"]["kind"], expected_kind);
                    let after = stored(app).await;
                    assert_eq!(after.requests, before.requests + 1, "{role} → {kind}");
                    assert_eq!(after.credentials, before.credentials + 1, "{role} → {kind}");
                    assert_eq!(
                        after.invitations,
                        before.invitations + i64::from(expected_kind == "external"),
                        "{role} → {kind}"
                    );
                }
                Some(refusal) => {
                    assert_error(status, &answer, StatusCode::FORBIDDEN);
                    assert_eq!(
                        detail(&answer),
                        refusal.to_string(),
                        "a {role} asking a {kind}"
                    );
                    assert_eq!(
                        stored(app).await,
                        before,
                        "a refused {role} → {kind} stored something"
                    );
                }
            }
        }
    }
    assert_eq!(created, 9);

    // The sending team's list holds exactly the nine requests, by requester.
    let (status, body) = app
        .get_json(
            &format!("/api/v2/credential-requests/requests?teamId={team}"),
            &agency.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pg"]["total"], 9, "{body}");
    let by = |user: UserId| {
        body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["userId"] == user.0)
            .count()
    };
    assert_eq!(by(agency.requester.id), 1);
    assert_eq!(by(tina.id), 2);
    assert_eq!(by(adam.id), 3);
    assert_eq!(by(owner), 3);
    assert_eq!(by(nora.id) + by(gus.id), 0);
    let (status, body) = app
        .get_json(
            &format!(
                "/api/v2/credential-requests/requests?teamId={}",
                agency.other_team
            ),
            &agency.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pg"]["total"], 0, "{body}");
    agency.app.stop().await;
}

// ---------------------------------------------------------------------------
// 2. The feature gate (SPEC §2)
// ---------------------------------------------------------------------------

async fn a_team_member_without_the_feature_is_refused_naming_the_feature(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let fay = app
        .add_person(
            "fay@agency.example",
            app.organization,
            "member",
            Some((app.team, "member")),
        )
        .await;
    assert!(!has_feature(app, fay.id).await);
    let token = app.token(fay.id, SCOPES).await;
    let before = stored(app).await;
    let (status, body) = agency
        .post(
            CREATE,
            &token,
            Some(body_to(app.team, agency.teammate.id, &["acme-crm"])),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(
        detail(&body).contains("credential-requests feature"),
        "{body}"
    );
    assert!(
        detail(&body).contains(FEATURE.trim_start_matches("/api/v2")),
        "{body}"
    );
    assert_eq!(stored(app).await, before);
    agency.app.stop().await;
}

async fn only_organizations_on_a_qualifying_plan_let_the_feature_be_used(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let rita = &agency.requester;
    // (name, slug, plan, partner, the refusal's words or None when it qualifies)
    let cases = [
        (
            "Freebies",
            "freebies",
            "free",
            false,
            Some("is on the free plan;"),
        ),
        (
            "Free Partner",
            "freepartner",
            "free",
            true,
            Some("is on the free plan as a partner;"),
        ),
        (
            "Teamwork",
            "teamwork",
            "teams",
            false,
            Some("is on the teams plan;"),
        ),
        ("Partner Pro", "partnerpro", "pro", true, None),
        ("Partner Core", "partnercore", "core", true, None),
        ("Big Corp", "bigcorp", "enterprise", false, None),
    ];
    for (name, slug, plan, partner, refusal) in cases {
        let other = other_organization(app, name, slug, plan, partner).await;
        // Rita, who has the feature, joins the organization and its team.
        let outbox_before = agency.outbox().await.len();
        identity::add_membership(
            &app.store,
            &app.vault(),
            &rita.email,
            other.id,
            "member",
            Some((other.team, "member")),
        )
        .await
        .unwrap();
        let told = agency.outbox().await.split_off(outbox_before);
        if refusal.is_some() {
            assert!(told.is_empty(), "{name} does not qualify, yet: {told:?}");
        } else {
            assert_eq!(told.len(), 1, "{name}: {told:?}");
            let (kind, to, payload) = &told[0];
            assert_eq!(kind, "feature.granted");
            assert_eq!(to, &other.owner.email);
            assert_eq!(payload["organizationId"], other.id.0);
            assert_eq!(payload["userEmail"], rita.email.as_str());
        }

        let before = stored(app).await;
        let (status, body) = agency
            .post(
                CREATE,
                &agency.requester_token,
                Some(body_to(other.team, other.member.id, &["acme-crm"])),
            )
            .await;
        match refusal {
            Some(words) => {
                assert_error(status, &body, StatusCode::FORBIDDEN);
                assert!(
                    detail(&body).contains(&format!("organization {} {words}", other.id)),
                    "{name}: {body}"
                );
                assert!(detail(&body).contains("enterprise plan"), "{body}");
                assert_eq!(stored(app).await, before, "{name}");
            }
            None => {
                assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
                assert_eq!(body["request"]["organizationId"], other.id.0);
                assert_eq!(body["request"]["teamId"], other.team.0);
                assert_eq!(stored(app).await.requests, before.requests + 1);
            }
        }
    }
    agency.app.stop().await;
}

async fn the_operator_grants_the_feature_only_to_eligible_users_with_reasons(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let free = identity::create_organization(&app.store, "Freebies", "free", false)
        .await
        .unwrap();
    let freemail = app
        .add_person(
            "someone@gmail.com",
            app.organization,
            "member",
            Some((app.team, "member")),
        )
        .await;
    let unqualified = app
        .add_person("nobody@freebies.example", free.id, "member", None)
        .await;
    let guest_only = app
        .add_person("gail@client.example", app.organization, "guest", None)
        .await;
    let both = app
        .add_person("lone@yahoo.com", free.id, "member", None)
        .await;
    const FREE_MAIL: &str = "is a free-mail address; a corporate email is needed";
    const NO_ORGANIZATION: &str =
        "no organization of this user is on the enterprise plan or a partner on a paid plan";
    let cases: [(&Person, &[&str], &[&str]); 4] = [
        (&freemail, &[FREE_MAIL], &[NO_ORGANIZATION]),
        (&unqualified, &[NO_ORGANIZATION], &[FREE_MAIL]),
        (&guest_only, &[NO_ORGANIZATION], &[FREE_MAIL]),
        (&both, &[FREE_MAIL, NO_ORGANIZATION], &[]),
    ];
    let before = stored(app).await;
    for (person, reasons, not_reasons) in cases {
        let error = features::grant(&app.store, &app.vault(), &person.email)
            .await
            .unwrap_err();
        let credence::service::Error::Forbidden(message) = &error else {
            panic!("{}: expected a refusal, got {error:?}", person.email);
        };
        assert!(
            message.starts_with(&format!("{} is not eligible: ", person.email)),
            "{message}"
        );
        for reason in reasons {
            assert!(message.contains(reason), "{message}");
        }
        for reason in not_reasons {
            assert!(!message.contains(reason), "{message}");
        }
        assert!(!has_feature(app, person.id).await, "{}", person.email);

        // The user sees the same check.
        let token = app.token(person.id, SCOPES).await;
        let (status, body) = app.get_json(FEATURE, &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let eligibility = &body["feature"]["eligibility"];
        assert_eq!(body["feature"]["enabled"], false);
        assert_eq!(eligibility["eligible"], false, "{body}");
        assert_eq!(
            eligibility["reasons"].as_array().unwrap().len(),
            reasons.len(),
            "{body}"
        );
        assert_eq!(
            eligibility["corporateEmail"],
            !reasons.contains(&FREE_MAIL),
            "{body}"
        );
    }
    // Nothing was granted, announced or audited (tokens aside).
    let after = stored(app).await;
    assert_eq!(after.outbox, before.outbox);
    assert_eq!(after.audit, before.audit);
    agency.app.stop().await;
}

async fn asking_for_the_feature_is_recorded_once_audited_and_shows_eligibility(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let fay = app
        .add_person(
            "fay@agency.example",
            app.organization,
            "member",
            Some((app.team, "member")),
        )
        .await;
    let token = app.token(fay.id, SCOPES).await;

    let (status, body) = app.get_json(FEATURE, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let feature = &body["feature"];
    assert_eq!(feature["name"], "credential-requests");
    assert_eq!(feature["enabled"], false);
    assert_eq!(feature["request"], Value::Null);
    assert_eq!(feature["eligibility"]["eligible"], true, "{body}");
    assert_eq!(feature["eligibility"]["corporateEmail"], true);
    assert_eq!(
        feature["eligibility"]["qualifyingOrganizations"],
        json!([app.organization.0])
    );
    assert_eq!(feature["eligibility"]["reasons"], json!([]));
    assert_eq!(
        feature["organizations"],
        json!([{ "id": app.organization.0, "name": "Default", "qualifies": true }])
    );

    let requested_before = count(&agency.audit_events().await, "feature.requested");
    assert_eq!(requested_before, 0);
    let (status, body) = agency.post(FEATURE, &token, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["featureRequest"]["status"], "pending");
    assert_eq!(body["featureRequest"]["eligibility"]["eligible"], true);
    let (status, body) = agency.post(FEATURE, &token, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "asking twice records one request: {body}"
    );
    assert_eq!(body["featureRequest"]["status"], "pending");
    assert_eq!(
        count(&agency.audit_events().await, "feature.requested"),
        1,
        "one audit entry for one request"
    );
    let (_, body) = app.get_json(FEATURE, &token).await;
    assert_eq!(body["feature"]["request"]["status"], "pending", "{body}");
    assert_eq!(body["feature"]["enabled"], false);

    // Someone who has it already has nothing to ask for.
    let (status, body) = agency.post(FEATURE, &agency.requester_token, None).await;
    assert_error(status, &body, StatusCode::CONFLICT);

    // An ineligible user may ask; the answer shows why it will not be granted.
    let freemail = app
        .add_person(
            "someone@gmail.com",
            app.organization,
            "member",
            Some((app.team, "member")),
        )
        .await;
    let freemail_token = app.token(freemail.id, SCOPES).await;
    let (status, body) = agency.post(FEATURE, &freemail_token, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["featureRequest"]["eligibility"]["eligible"], false);
    assert_eq!(
        body["featureRequest"]["eligibility"]["corporateEmail"],
        false
    );
    assert_eq!(count(&agency.audit_events().await, "feature.requested"), 2);

    // Granted: the request is decided and the feature enabled.
    features::grant(&app.store, &app.vault(), &fay.email)
        .await
        .unwrap();
    let (_, body) = app.get_json(FEATURE, &token).await;
    assert_eq!(body["feature"]["enabled"], true, "{body}");
    assert_eq!(body["feature"]["request"]["status"], "granted", "{body}");
    agency.app.stop().await;
}

fn count(events: &[String], name: &str) -> usize {
    events.iter().filter(|e| *e == name).count()
}

async fn granting_the_feature_tells_every_owner_of_each_qualifying_organization(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let vault = app.vault();
    let owen = app
        .add_person("owen@agency.example", app.organization, "owner", None)
        .await;
    let partner = other_organization(app, "Partner Pro", "partnerpro", "pro", true).await;
    let free = other_organization(app, "Freebies", "freebies", "free", false).await;
    let fay = app
        .add_person(
            "fay@agency.example",
            app.organization,
            "member",
            Some((app.team, "member")),
        )
        .await;
    // Joining before the grant tells nobody.
    let start = agency.outbox().await.len();
    for organization in [partner.id, free.id] {
        identity::add_membership(&app.store, &vault, &fay.email, organization, "member", None)
            .await
            .unwrap();
    }
    assert_eq!(agency.outbox().await.len(), start);

    let (_, newly) = features::grant(&app.store, &vault, &fay.email)
        .await
        .unwrap();
    assert!(newly);
    let told = agency.outbox().await.split_off(start);
    let expected: BTreeSet<(String, i64)> = [
        (app.admin_email.clone(), app.organization.0),
        (owen.email.clone(), app.organization.0),
        (partner.owner.email.clone(), partner.id.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        told.len(),
        3,
        "one message per owner per qualifying org: {told:?}"
    );
    let got: BTreeSet<(String, i64)> = told
        .iter()
        .map(|(kind, to, payload)| {
            assert_eq!(kind, "feature.granted");
            assert_eq!(payload["userEmail"], fay.email.as_str());
            assert_eq!(payload["userId"], fay.id.0);
            (to.clone(), payload["organizationId"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(got, expected);
    assert!(told.iter().all(|(_, to, _)| to != &free.owner.email));

    // Granting again changes nothing and tells nobody.
    let (_, newly) = features::grant(&app.store, &vault, &fay.email)
        .await
        .unwrap();
    assert!(!newly);
    let mark = agency.outbox().await.len();
    assert_eq!(mark, start + 3);

    // Joining another qualifying organization tells its owners (each of them).
    let later = other_organization(app, "Later Corp", "latercorp", "enterprise", false).await;
    let later_second_owner = app
        .add_person("olive@latercorp.example", later.id, "owner", None)
        .await;
    identity::add_membership(
        &app.store,
        &vault,
        &fay.email,
        later.id,
        "member",
        Some((later.team, "member")),
    )
    .await
    .unwrap();
    let told = agency.outbox().await.split_off(mark);
    let got: BTreeSet<(String, String, i64)> = told
        .iter()
        .map(|(kind, to, payload)| {
            assert_eq!(payload["userEmail"], fay.email.as_str());
            (
                kind.clone(),
                to.clone(),
                payload["organizationId"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(
        got,
        [
            (
                "feature.granted".to_string(),
                later.owner.email.clone(),
                later.id.0
            ),
            (
                "feature.granted".to_string(),
                later_second_owner.email.clone(),
                later.id.0
            ),
        ]
        .into_iter()
        .collect()
    );

    // Joining a non-qualifying organization, or a qualifying one as a guest, does not.
    let mark = agency.outbox().await.len();
    let free_two = other_organization(app, "Free Two", "freetwo", "free", false).await;
    let guest_corp = other_organization(app, "Guest Corp", "guestcorp", "enterprise", false).await;
    identity::add_membership(&app.store, &vault, &fay.email, free_two.id, "member", None)
        .await
        .unwrap();
    identity::add_membership(&app.store, &vault, &fay.email, guest_corp.id, "guest", None)
        .await
        .unwrap();
    assert_eq!(agency.outbox().await.len(), mark);
    agency.app.stop().await;
}

// ---------------------------------------------------------------------------
// 3. The limits of a request (SPEC §4)
// ---------------------------------------------------------------------------

async fn every_limit_is_enforced_naming_the_field_and_nothing_is_stored(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let rita = &agency.requester_token;
    let tom = agency.teammate.id;
    let stranger_org = other_organization(app, "Elsewhere", "elsewhere", "enterprise", false).await;

    let (status, catalog) = app.get_json("/api/v2/credential-requests/apps", rita).await;
    assert_eq!(status, StatusCode::OK, "{catalog}");
    let app_names: Vec<String> = catalog["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        app_names.len() >= 21,
        "the catalog needs 21 apps: {app_names:?}"
    );
    let apps_json = |n: usize| -> Value {
        app_names[..n]
            .iter()
            .map(|name| json!({ "appName": name, "appModules": ["*"] }))
            .collect()
    };

    let base = body_to(app.team, tom, &["acme-crm"]);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = base.clone();
        change(&mut body);
        body
    };
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    // (what, body, the one field named, words of the detail)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "an empty name",
            with(&|b| b["name"] = json!("")),
            "name",
            "name is empty",
        ),
        (
            "a blank name",
            with(&|b| b["name"] = json!("   ")),
            "name",
            "name is empty",
        ),
        (
            "no name",
            with(&|b| {
                b.as_object_mut().unwrap().remove("name");
            }),
            "name",
            "name is empty",
        ),
        (
            "a name of 256 characters",
            with(&|b| b["name"] = json!("n".repeat(256))),
            "name",
            "the limit is 255",
        ),
        (
            "a description of 257 characters",
            with(&|b| b["description"] = json!("d".repeat(257))),
            "description",
            "the limit is 256",
        ),
        (
            "21 credentials",
            with(&|b| b["credentials"] = apps_json(21)),
            "credentials",
            "the limit is 20",
        ),
        (
            "no credentials",
            with(&|b| b["credentials"] = json!([])),
            "credentials",
            "credentials is empty",
        ),
        (
            "an unknown app",
            with(&|b| b["credentials"][0]["appName"] = json!("no-such-app")),
            "credentials[0].appName",
            "no-such-app",
        ),
        (
            "an unknown module",
            with(&|b| {
                b["credentials"][0]["appModules"] = json!(["searchContacts", "launchRockets"])
            }),
            "credentials[0].appModules",
            "launchRockets",
        ),
        (
            "a note of 257 characters",
            with(&|b| b["credentials"][0]["description"] = json!("w".repeat(257))),
            "credentials[0].description",
            "the limit is 256",
        ),
        (
            "a connection name of 256 characters",
            with(&|b| b["credentials"][0]["nameOverride"] = json!("c".repeat(256))),
            "credentials[0].nameOverride",
            "the limit is 255",
        ),
        (
            "the same app twice",
            with(&|b| {
                b["credentials"] = json!([
                    { "appName": "acme-crm", "appModules": ["*"] },
                    { "appName": "acme-crm", "appModules": ["searchContacts"] },
                ])
            }),
            "credentials[1].appName",
            "twice",
        ),
        (
            "no teamId",
            with(&|b| {
                b.as_object_mut().unwrap().remove("teamId");
            }),
            "teamId",
            "teamId is required",
        ),
        (
            "no provider",
            with(&|b| {
                b.as_object_mut().unwrap().remove("provider");
            }),
            "provider",
            "provider is required",
        ),
        (
            "an empty provider",
            with(&|b| b["provider"] = json!({})),
            "provider",
            "providerMakeUserId or newUser",
        ),
        (
            "a provider in both forms",
            with(&|b| {
                b["provider"] = json!({
                    "providerMakeUserId": tom,
                    "newUser": { "name": "Xena", "email": "xena@client.example" },
                })
            }),
            "provider",
            "not both",
        ),
        (
            "a new user with a bad email",
            with(&|b| {
                b["provider"] = json!({
                    "newUser": { "name": "Xena", "email": "xena-at-client" },
                })
            }),
            "provider.newUser.email",
            "",
        ),
        (
            "a recipient outside the organization",
            with(&|b| {
                b["provider"] = json!({
                    "providerMakeUserId": stranger_org.member.id,
                })
            }),
            "provider.providerMakeUserId",
            "is not a member of organization",
        ),
        (
            "a recipient id that is not a number",
            with(&|b| {
                b["provider"] = json!({
                    "providerMakeUserId": "tom",
                })
            }),
            "provider.providerMakeUserId",
            "must be a user id",
        ),
        (
            "terms not accepted",
            with(&|b| b["termsAccepted"] = json!(false)),
            "termsAccepted",
            "terms must be accepted",
        ),
        (
            "an expiry in the past",
            with(&|b| b["expiresAt"] = json!(past)),
            "expiresAt",
            "in the past",
        ),
        (
            "a request to oneself",
            with(&|b| {
                b["provider"] = json!({
                    "providerMakeUserId": agency.requester.id,
                })
            }),
            "provider",
            "yourself",
        ),
    ];
    for (what, body, field, words) in cases {
        let (status, answer) = agency.post(CREATE, rita, Some(body)).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
        assert_eq!(answer["code"], "invalid_input", "{what}: {answer}");
        assert_eq!(fields(&answer), vec![field.to_string()], "{what}: {answer}");
        assert!(detail(&answer).contains(words), "{what}: {answer}");
    }

    // Bodies that cannot be read at all.
    let unreadable = [
        (
            "malformed JSON",
            r#"{"name": "Onboarding", "teamId": "#.to_string(),
        ),
        ("not an object", "[1, 2, 3]".to_string()),
        (
            "a number for the name",
            with(&|b| b["name"] = json!(5)).to_string(),
        ),
        (
            "a string for teamId",
            with(&|b| b["teamId"] = json!("default")).to_string(),
        ),
        (
            "a string for credentials",
            with(&|b| b["credentials"] = json!("acme-crm")).to_string(),
        ),
        (
            "a string for a provider",
            with(&|b| b["provider"] = json!("tom")).to_string(),
        ),
        (
            "a string for termsAccepted",
            with(&|b| b["termsAccepted"] = json!("yes")).to_string(),
        ),
        (
            "a number for appModules",
            with(&|b| b["credentials"][0]["appModules"] = json!(7)).to_string(),
        ),
    ];
    for (what, raw) in unreadable {
        let (status, answer) = post_raw(&agency, CREATE, rita, &raw).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
        assert_eq!(answer["code"], "bad_request", "{what}: {answer}");
    }

    // Nothing of all that was stored, in any form.
    assert_eq!(rows(app, "credential_requests").await, 0);
    assert_eq!(rows(app, "requested_credentials").await, 0);
    assert_eq!(rows(app, "invitations").await, 0);
    let (status, list) = app
        .get_json(
            &format!("/api/v2/credential-requests/requests?teamId={}", app.team),
            &agency.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["pg"]["total"], 0, "{list}");
    assert_eq!(
        count(&agency.audit_events().await, "credential_request.created"),
        0
    );
    assert!(agency
        .outbox()
        .await
        .iter()
        .all(|(kind, _, _)| !kind.starts_with("credential_request.")));

    // Every value exactly at its limit is accepted.
    let mut at_limits = base.clone();
    at_limits["name"] = json!("n".repeat(255));
    at_limits["description"] = json!("d".repeat(256));
    at_limits["credentials"] = apps_json(20);
    at_limits["credentials"][0]["description"] = json!("w".repeat(256));
    at_limits["credentials"][0]["nameOverride"] = json!("c".repeat(255));
    at_limits["termsAccepted"] = json!(true);
    at_limits["expiresAt"] = json!((chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339());
    let (status, answer) = agency.post(CREATE, rita, Some(at_limits)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        answer["request"]["credentials"].as_array().unwrap().len(),
        20
    );
    assert_eq!(
        answer["request"]["credentials"][0]["nameOverride"],
        "c".repeat(255)
    );
    assert_eq!(rows(app, "credential_requests").await, 1);
    assert_eq!(rows(app, "requested_credentials").await, 20);
    agency.app.stop().await;
}

async fn a_decline_reason_longer_than_256_characters_is_refused_naming_reason(backend: Backend) {
    let agency = Agency::start(backend).await;
    let (_, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let path = credential_path(&credentials[0], "decline");
    let before = stored(&agency.app).await;
    let (status, body) = agency
        .post(
            &path,
            &agency.teammate_token,
            Some(json!({ "reason": "r".repeat(257) })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&body), vec!["reason".to_string()], "{body}");
    assert!(detail(&body).contains("the limit is 256"), "{body}");
    assert_eq!(stored(&agency.app).await, before);
    assert_eq!(
        credential_of(&agency, &credentials[0]).await.0,
        CredentialState::Pending
    );

    let (status, body) = agency
        .post(
            &path,
            &agency.teammate_token,
            Some(json!({ "reason": "r".repeat(256) })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "declined");
    assert_eq!(body["credential"]["declineReason"], "r".repeat(256));
    agency.app.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Who sees and does what (SPEC §4.4)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    GetRequest,
    GetDetail,
    GetCredential,
    TeamList,
    Received,
    Decline,
    Revoke,
    Authorize,
    Reauthorize,
    DeleteRemote,
    RequestReauthorize,
    Delete,
}

/// What an endpoint should answer one caller.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 200 with the request or credential.
    Reads,
    /// 200 with the detail, seen as `viewer`.
    ReadsAs(&'static str),
    /// 200: the list holds the request, or not.
    Lists(bool),
    /// An error of this status whose detail says these words.
    Refused(StatusCode, &'static str),
}

/// The request under test: from Rita's team to Tom, with an authorized
/// credential (acme-crm) and a pending one (beta-desk).
struct Target {
    request: String,
    authorized: String,
    pending: String,
    team: TeamId,
}

async fn hit(agency: &Agency, token: &str, endpoint: Endpoint, t: &Target) -> (StatusCode, Value) {
    let app = &agency.app;
    let any_key = Some(key_body("some-key"));
    match endpoint {
        Endpoint::GetRequest => {
            app.get_json(
                &format!("/api/v2/credential-requests/requests/{}", t.request),
                token,
            )
            .await
        }
        Endpoint::GetDetail => {
            app.get_json(
                &format!("/api/v2/credential-requests/requests/{}/detail", t.request),
                token,
            )
            .await
        }
        Endpoint::GetCredential => {
            app.get_json(
                &format!("/api/v2/credential-requests/credentials/{}", t.authorized),
                token,
            )
            .await
        }
        Endpoint::TeamList => {
            app.get_json(
                &format!("/api/v2/credential-requests/requests?teamId={}", t.team),
                token,
            )
            .await
        }
        Endpoint::Received => {
            app.get_json("/api/v2/credential-requests/received", token)
                .await
        }
        Endpoint::Decline => {
            agency
                .post(&credential_path(&t.pending, "decline"), token, None)
                .await
        }
        Endpoint::Revoke => {
            agency
                .post(&credential_path(&t.pending, "revoke"), token, None)
                .await
        }
        Endpoint::Authorize => {
            agency
                .post(&credential_path(&t.authorized, "authorize"), token, any_key)
                .await
        }
        Endpoint::Reauthorize => {
            agency
                .post(
                    &credential_path(&t.authorized, "reauthorize"),
                    token,
                    any_key,
                )
                .await
        }
        Endpoint::DeleteRemote => {
            agency
                .post(&credential_path(&t.pending, "delete-remote"), token, None)
                .await
        }
        Endpoint::RequestReauthorize => {
            agency
                .post(
                    &credential_path(&t.authorized, "request-reauthorize"),
                    token,
                    None,
                )
                .await
        }
        Endpoint::Delete => {
            agency
                .delete(
                    &format!("/api/v2/credential-requests/requests/{}", t.request),
                    token,
                )
                .await
        }
    }
}

fn lists(body: &Value, request: &str) -> bool {
    body["requests"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {body}"))
        .iter()
        .any(|r| r["id"] == request)
}

async fn check_view(
    agency: &Agency,
    who: &str,
    token: &str,
    target: &Target,
    table: &[(Endpoint, Expect)],
) {
    for (endpoint, expect) in table {
        let (status, body) = hit(agency, token, *endpoint, target).await;
        let context = format!("{who} → {endpoint:?}: {status} {body}");
        match expect {
            Expect::Reads => {
                assert_eq!(status, StatusCode::OK, "{context}");
                let id = if *endpoint == Endpoint::GetCredential {
                    &body["credential"]["id"]
                } else {
                    &body["request"]["id"]
                };
                let wanted = if *endpoint == Endpoint::GetCredential {
                    &target.authorized
                } else {
                    &target.request
                };
                assert_eq!(id, wanted.as_str(), "{context}");
            }
            Expect::ReadsAs(viewer) => {
                assert_eq!(status, StatusCode::OK, "{context}");
                assert_eq!(
                    body["requestDetail"]["id"],
                    target.request.as_str(),
                    "{context}"
                );
                assert_eq!(body["requestDetail"]["viewer"], *viewer, "{context}");
                assert_eq!(
                    body["requestDetail"]["credentials"]
                        .as_array()
                        .map(Vec::len),
                    Some(2),
                    "{context}"
                );
            }
            Expect::Lists(listed) => {
                assert_eq!(status, StatusCode::OK, "{context}");
                assert_eq!(lists(&body, &target.request), *listed, "{context}");
            }
            Expect::Refused(code, words) => {
                assert_error(status, &body, *code);
                assert!(detail(&body).contains(words), "{context}");
                if *code == StatusCode::NOT_FOUND {
                    // They learn nothing of the request.
                    let text = body.to_string();
                    assert!(!text.contains("Onboarding Acme"), "{context}");
                    assert!(!text.contains("tom@agency.example"), "{context}");
                    assert!(!text.contains("rita@agency.example"), "{context}");
                }
            }
        }
    }
}

fn sender_view() -> Vec<(Endpoint, Expect)> {
    use Endpoint::*;
    use Expect::*;
    vec![
        (GetRequest, Reads),
        (GetDetail, ReadsAs("sender")),
        (GetCredential, Reads),
        (TeamList, Lists(true)),
        (Received, Lists(false)),
        (
            Decline,
            Refused(StatusCode::FORBIDDEN, "only the recipient may decline"),
        ),
        (
            Revoke,
            Refused(StatusCode::FORBIDDEN, "only the recipient may revoke"),
        ),
        (
            Authorize,
            Refused(StatusCode::FORBIDDEN, "only the recipient may authorize"),
        ),
        (
            Reauthorize,
            Refused(StatusCode::FORBIDDEN, "only the recipient may reauthorize"),
        ),
        // Allowed, but the pending credential has no connection to delete.
        (
            DeleteRemote,
            Refused(
                StatusCode::CONFLICT,
                "cannot delete the remote connection of a credential that is pending",
            ),
        ),
        // Allowed, but the connection still works.
        (
            RequestReauthorize,
            Refused(
                StatusCode::CONFLICT,
                "connection is valid; nothing was sent",
            ),
        ),
        // Allowed, but a live connection needs confirmed=true.
        (Delete, Refused(StatusCode::CONFLICT, "confirmed=true")),
    ]
}

fn recipient_view() -> Vec<(Endpoint, Expect)> {
    use Endpoint::*;
    use Expect::*;
    vec![
        (GetRequest, Reads),
        (GetDetail, ReadsAs("recipient")),
        (GetCredential, Reads),
        // Tom is also a member of the sending team.
        (TeamList, Lists(true)),
        (Received, Lists(true)),
        // Declining is allowed from nearly every state: it is done below.
        (
            Revoke,
            Refused(
                StatusCode::CONFLICT,
                "cannot revoke a credential that is pending",
            ),
        ),
        (
            Authorize,
            Refused(
                StatusCode::CONFLICT,
                "cannot authorize a credential that is authorized",
            ),
        ),
        (
            Reauthorize,
            Refused(
                StatusCode::CONFLICT,
                "cannot reauthorize a credential that is authorized",
            ),
        ),
        (
            DeleteRemote,
            Refused(
                StatusCode::FORBIDDEN,
                "only the requesting team may delete the remote connection",
            ),
        ),
        (
            RequestReauthorize,
            Refused(
                StatusCode::FORBIDDEN,
                "only the requesting team may ask for reauthorization",
            ),
        ),
        (Delete, Refused(StatusCode::CONFLICT, "confirmed=true")),
    ]
}

fn stranger_view() -> Vec<(Endpoint, Expect)> {
    use Endpoint::*;
    use Expect::*;
    let gone = Refused(StatusCode::NOT_FOUND, "not found");
    vec![
        (GetRequest, gone),
        (GetDetail, gone),
        (GetCredential, gone),
        (TeamList, Refused(StatusCode::NOT_FOUND, "team")),
        (Received, Lists(false)),
        (Decline, gone),
        (Revoke, gone),
        (Authorize, gone),
        (Reauthorize, gone),
        (DeleteRemote, gone),
        (RequestReauthorize, gone),
        (Delete, gone),
    ]
}

async fn each_role_sees_and_does_exactly_what_the_spec_allows_on_every_endpoint(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let (organization, team) = (app.organization, app.team);
    let tess = app
        .add_person(
            "tess@agency.example",
            organization,
            "member",
            Some((team, "member")),
        )
        .await;
    let adam = app
        .add_person("adam@agency.example", organization, "admin", None)
        .await;
    let gwen = app
        .add_person(
            "gwen@client.example",
            organization,
            "guest",
            Some((team, "member")),
        )
        .await;
    let elsewhere = other_organization(app, "Elsewhere", "elsewhere", "enterprise", false).await;
    let tess_token = app.token(tess.id, SCOPES).await;
    let adam_token = app.token(adam.id, SCOPES).await;
    let gwen_token = app.token(gwen.id, SCOPES).await;
    let foreign_owner_token = app.token(elsewhere.owner.id, SCOPES).await;

    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let target = Target {
        request: request.clone(),
        authorized: credentials[0].clone(),
        pending: credentials[1].clone(),
        team,
    };
    agency.upstream.accept("tom-key");
    let (status, body) = agency
        .post(
            &credential_path(&target.authorized, "authorize"),
            &agency.teammate_token,
            Some(key_body("tom-key")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = credential_of(&agency, &target.authorized).await.1.unwrap();

    // Every caller against every endpoint; none of it may change anything.
    let before = stored(app).await;
    type View<'a> = (&'a str, &'a str, Vec<(Endpoint, Expect)>);
    let views: Vec<View> = vec![
        ("requester Rita", &agency.requester_token, sender_view()),
        ("teammate Tess", &tess_token, sender_view()),
        ("org owner", &agency.admin_token, sender_view()),
        ("org admin outside the team", &adam_token, sender_view()),
        ("recipient Tom", &agency.teammate_token, recipient_view()),
        (
            "Olga of another team",
            &agency.outsider_token,
            stranger_view(),
        ),
        ("guest Gwen", &gwen_token, stranger_view()),
        (
            "owner of another organization",
            &foreign_owner_token,
            stranger_view(),
        ),
    ];
    for (who, token, table) in &views {
        check_view(&agency, who, token, &target, table).await;
    }
    assert_eq!(
        stored(app).await,
        before,
        "a refused call changed something"
    );
    assert_eq!(
        credential_of(&agency, &target.authorized).await.0,
        CredentialState::Authorized
    );
    assert_eq!(
        credential_of(&agency, &target.pending).await.0,
        CredentialState::Pending
    );
    assert!(connection_exists(app, connection).await);

    // The recipient's own actions.
    let (status, body) = agency
        .post(
            &credential_path(&target.pending, "decline"),
            &agency.teammate_token,
            Some(json!({ "reason": "We do not use Beta Desk" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "declined");
    let (status, body) = agency
        .post(
            &credential_path(&target.pending, "decline"),
            &agency.teammate_token,
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    assert!(
        detail(&body).contains("cannot decline a credential that is declined"),
        "{body}"
    );
    // The senders see the reason.
    let (_, body) = app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{request}/detail"),
            &tess_token,
        )
        .await;
    let declined = body["requestDetail"]["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == target.pending.as_str())
        .unwrap()
        .clone();
    assert_eq!(declined["declineReason"], "We do not use Beta Desk");

    let (status, body) = agency
        .post(
            &credential_path(&target.authorized, "revoke"),
            &agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "revoked");
    assert!(!connection_exists(app, connection).await);
    let (status, body) = agency
        .post(
            &credential_path(&target.authorized, "authorize"),
            &agency.teammate_token,
            Some(key_body("tom-key")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The senders' own actions: a teammate deletes the remote connection, the
    // owner asks for reauthorization once the connection stopped working.
    let (status, body) = agency
        .post(
            &credential_path(&target.authorized, "delete-remote"),
            &tess_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "pending");
    assert_eq!(body["credential"]["remoteId"], Value::Null);
    let (status, body) = agency
        .post(
            &credential_path(&target.authorized, "authorize"),
            &agency.teammate_token,
            Some(key_body("tom-key")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    agency.upstream.reject("tom-key");
    let (status, body) = agency
        .post(
            &credential_path(&target.authorized, "request-reauthorize"),
            &agency.admin_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "reauthorizing");

    // The recipient deletes the whole request; afterwards nobody finds it.
    let (status, body) = agency
        .delete(
            &format!("/api/v2/credential-requests/requests/{request}?confirmed=true"),
            &agency.teammate_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["deletedConnections"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    for token in [
        &agency.requester_token,
        &agency.teammate_token,
        &agency.admin_token,
    ] {
        let (status, body) = hit(&agency, token, Endpoint::GetRequest, &target).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }

    // A guest sees only what they received, and may decline and delete it.
    let (guest_request, guest_credentials, _) = agency.create_request(gwen.id, &["acme-crm"]).await;
    let (status, body) = app
        .get_json("/api/v2/credential-requests/received", &gwen_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pg"]["total"], 1, "{body}");
    assert_eq!(body["requests"][0]["id"], guest_request.as_str());
    let (status, body) = app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{guest_request}/detail"),
            &gwen_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requestDetail"]["viewer"], "recipient");
    let (status, body) = app
        .get_json(
            &format!("/api/v2/credential-requests/requests?teamId={team}"),
            &gwen_token,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .get_json("/api/v2/credential-requests/requests", &gwen_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["pg"]["total"], 0,
        "a guest has no sent requests: {body}"
    );
    let (status, body) = agency
        .post(
            &credential_path(&guest_credentials[0], "decline"),
            &gwen_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = agency
        .delete(
            &format!("/api/v2/credential-requests/requests/{guest_request}"),
            &gwen_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(rows(app, "credential_requests").await, 0);
    agency.app.stop().await;
}

// ---------------------------------------------------------------------------
// 5. The state machine over HTTP (SPEC §4.1)
// ---------------------------------------------------------------------------

/// The credential actions the API offers, who calls them, and the domain action.
const HTTP_ACTIONS: [(&str, CredentialAction); 6] = [
    ("authorize", CredentialAction::Authorize),
    ("decline", CredentialAction::Decline),
    ("revoke", CredentialAction::Revoke),
    ("reauthorize", CredentialAction::Reauthorize),
    ("delete-remote", CredentialAction::DeleteRemote),
    (
        "request-reauthorize",
        CredentialAction::RequestReauthorization,
    ),
];

fn token_for(agency: &Agency, action: CredentialAction) -> &str {
    match action.actor() {
        Actor::Recipient => &agency.teammate_token,
        Actor::Requester => &agency.requester_token,
        Actor::System => unreachable!("{action} has no endpoint"),
    }
}

/// A new one-app request from Rita to Tom whose credential is in `state`,
/// reached through the API only. `key` is the API key used where one is needed.
async fn credential_in(agency: &Agency, state: CredentialState, key: &str) -> String {
    let (_, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let id = credentials[0].clone();
    let tom = &agency.teammate_token;
    let expect = |(status, body): (StatusCode, Value), wanted: StatusCode, step: &str| {
        assert_eq!(status, wanted, "reaching {state} ({step}): {body}");
    };
    match state {
        CredentialState::Pending => {}
        CredentialState::Invalid => expect(
            agency
                .post(&credential_path(&id, "authorize"), tom, Some(key_body(key)))
                .await,
            StatusCode::BAD_REQUEST,
            "authorize with a key the app refuses",
        ),
        CredentialState::Declined => expect(
            agency
                .post(&credential_path(&id, "decline"), tom, None)
                .await,
            StatusCode::OK,
            "decline",
        ),
        CredentialState::Authorized | CredentialState::Revoked | CredentialState::Reauthorizing => {
            agency.upstream.accept(key);
            expect(
                agency
                    .post(&credential_path(&id, "authorize"), tom, Some(key_body(key)))
                    .await,
                StatusCode::OK,
                "authorize",
            );
            if state == CredentialState::Revoked {
                expect(
                    agency
                        .post(&credential_path(&id, "revoke"), tom, None)
                        .await,
                    StatusCode::OK,
                    "revoke",
                );
            }
            if state == CredentialState::Reauthorizing {
                agency.upstream.reject(key);
                expect(
                    agency
                        .post(
                            &credential_path(&id, "request-reauthorize"),
                            &agency.requester_token,
                            None,
                        )
                        .await,
                    StatusCode::OK,
                    "request reauthorization of a broken connection",
                );
            }
        }
    }
    assert_eq!(credential_of(agency, &id).await.0, state);
    id
}

async fn every_action_from_every_state_follows_the_domain_table(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    // The endpoints cover every action a person performs on one credential
    // (closing a project is the project's teardown, tested in teardown.rs).
    let people_actions: BTreeSet<&str> = CredentialAction::ALL
        .iter()
        .filter(|a| a.actor() != Actor::System && **a != CredentialAction::Close)
        .map(|a| a.as_str())
        .collect();
    let offered: BTreeSet<&str> = HTTP_ACTIONS.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(people_actions, offered);
    assert_eq!(CredentialState::ALL.len(), 6);

    let mut transitions = 0;
    let mut refusals = 0;
    for &from in CredentialState::ALL {
        for (path, action) in HTTP_ACTIONS {
            let key = format!("key-{from}-{path}");
            let id = credential_in(&agency, from, &key).await;
            let (_, connection_before, _) = credential_of(&agency, &id).await;
            let token = token_for(&agency, action);
            let body = match action {
                CredentialAction::Authorize | CredentialAction::Reauthorize => {
                    let fresh = format!("{key}-fresh");
                    agency.upstream.accept(&fresh);
                    Some(key_body(&fresh))
                }
                _ => None,
            };
            if from == CredentialState::Authorized
                && action == CredentialAction::RequestReauthorization
            {
                // Credence tests the connection first: it works, so nothing is sent.
                let outbox = stored(app).await.outbox;
                let (status, answer) = agency.post(&credential_path(&id, path), token, None).await;
                assert_error(status, &answer, StatusCode::CONFLICT);
                assert_eq!(detail(&answer), "connection is valid; nothing was sent");
                assert_eq!(credential_of(&agency, &id).await.0, from);
                assert_eq!(stored(app).await.outbox, outbox, "nothing was sent");
                agency.upstream.reject(&key);
            }
            let (status, answer) = agency.post(&credential_path(&id, path), token, body).await;
            let (after, connection_after, _) = credential_of(&agency, &id).await;
            match from.apply(action) {
                Ok(to) => {
                    transitions += 1;
                    assert_eq!(
                        status,
                        StatusCode::OK,
                        "{from} --{action}--> {to}: {answer}"
                    );
                    assert_eq!(
                        answer["credential"]["state"],
                        to.as_str(),
                        "{from} --{action}-->"
                    );
                    assert_eq!(after, to, "{from} --{action}-->");
                    match to {
                        CredentialState::Authorized => {
                            let new = connection_after.unwrap_or_else(|| {
                                panic!("{from} --{action}--> has no connection")
                            });
                            assert!(connection_exists(app, new).await);
                            if let Some(old) = connection_before {
                                assert_ne!(
                                    old, new,
                                    "{from} --{action}--> kept the old connection"
                                );
                                assert!(
                                    !connection_exists(app, old).await,
                                    "{from} --{action}--> left {old}"
                                );
                            }
                        }
                        CredentialState::Pending
                        | CredentialState::Declined
                        | CredentialState::Revoked => {
                            assert_eq!(connection_after, None, "{from} --{action}-->");
                            if let Some(old) = connection_before {
                                assert!(
                                    !connection_exists(app, old).await,
                                    "{from} --{action}--> left {old}"
                                );
                            }
                        }
                        CredentialState::Reauthorizing => {
                            assert_eq!(connection_after, connection_before, "{from} --{action}-->");
                        }
                        CredentialState::Invalid => {}
                    }
                }
                Err(refusal) => {
                    refusals += 1;
                    assert_error(status, &answer, StatusCode::CONFLICT);
                    assert_eq!(detail(&answer), refusal.to_string(), "{from} --{action}-->");
                    assert!(
                        detail(&answer).contains(&format!("a credential that is {from}")),
                        "{answer}"
                    );
                    assert_eq!(after, from, "a refused {action} moved the credential");
                    assert_eq!(connection_after, connection_before);
                }
            }
        }
    }
    assert_eq!(transitions + refusals, 36);
    assert_eq!(
        transitions, 17,
        "the domain table allows 17 of these 36 pairs"
    );
    agency.app.stop().await;
}

/// The recipient enters a key the app refuses, from `from` via `path`; returns
/// the answer and the credential afterwards.
async fn refused_key(
    agency: &Agency,
    from: CredentialState,
    path: &str,
) -> (StatusCode, Value, CredentialState, Value) {
    let id = credential_in(agency, from, &format!("refused-{from}-{path}")).await;
    let before = stored(&agency.app).await;
    let (status, body) = agency
        .post(
            &credential_path(&id, path),
            &agency.teammate_token,
            Some(key_body("a-key-nobody-accepts")),
        )
        .await;
    let (after, _, credential) = credential_of(agency, &id).await;
    if after == from {
        let now = stored(&agency.app).await;
        assert_eq!(now.connections, before.connections, "{from} {path}");
        assert_eq!(now.outbox, before.outbox, "{from} {path}");
    }
    (status, body, after, credential)
}

async fn a_key_the_app_refuses_leaves_the_credential_invalid_with_the_reason(backend: Backend) {
    let agency = Agency::start(backend).await;
    let cases = [
        (CredentialState::Pending, "authorize"),
        (CredentialState::Invalid, "authorize"),
        (CredentialState::Invalid, "reauthorize"),
        (CredentialState::Reauthorizing, "reauthorize"),
    ];
    for (from, path) in cases {
        // The domain records a failed authorization from these states.
        assert_eq!(
            from.apply(CredentialAction::AuthorizationFailed),
            Ok(CredentialState::Invalid)
        );
        let (status, body, after, credential) = refused_key(&agency, from, path).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(
            fields(&body),
            vec!["data".to_string()],
            "{from} {path}: {body}"
        );
        assert!(
            detail(&body).contains("not accepted"),
            "{from} {path}: {body}"
        );
        assert!(
            !body.to_string().contains("a-key-nobody-accepts"),
            "the key is echoed: {body}"
        );
        assert_eq!(after, CredentialState::Invalid, "{from} {path}");
        assert!(credential["invalidReason"].is_string(), "{credential}");
    }
    agency.app.stop().await;
}

/// From `declined` or `revoked` the domain refuses to record a failed
/// authorization: the recipient's last decision stands, and the recipient is
/// shown why the key was refused (a 400 naming `data`), as from any other state.
async fn a_key_the_app_refuses_after_a_decline_or_revoke_is_reported_and_the_decision_stands(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    for from in [CredentialState::Declined, CredentialState::Revoked] {
        assert!(from.apply(CredentialAction::AuthorizationFailed).is_err());
        assert_eq!(
            from.apply(CredentialAction::Authorize),
            Ok(CredentialState::Authorized)
        );
        let (status, body, after, _) = refused_key(&agency, from, "authorize").await;
        assert_eq!(after, from, "the recipient's last decision stands");
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(fields(&body), vec!["data".to_string()], "{from}: {body}");
        assert!(detail(&body).contains("not accepted"), "{from}: {body}");
    }
    agency.app.stop().await;
}

// ---------------------------------------------------------------------------
// 6. Racing actions
// ---------------------------------------------------------------------------

async fn two_revokes_at_once_succeed_once_and_two_authorizes_make_one_connection(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let tom = &agency.teammate_token;
    let connections = || async { app.team_connections().await.len() };
    const ROUNDS: usize = 4;

    let mut authorized = Vec::new();
    for round in 0..ROUNDS {
        let (_, credentials, _) = agency
            .create_request(agency.teammate.id, &["acme-crm"])
            .await;
        let id = credentials[0].clone();
        let key = format!("race-key-{round}");
        agency.upstream.accept(&key);
        let path = credential_path(&id, "authorize");
        let (first, second) = tokio::join!(
            agency.post(&path, tom, Some(key_body(&key))),
            agency.post(&path, tom, Some(key_body(&key))),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}: {} / {}",
            first.1,
            second.1
        );
        let conflict = if first.0 == StatusCode::CONFLICT {
            &first.1
        } else {
            &second.1
        };
        assert_error(StatusCode::CONFLICT, conflict, StatusCode::CONFLICT);
        assert!(
            detail(conflict).contains("authorized"),
            "the refusal names the state: {conflict}"
        );
        assert_eq!(
            connections().await,
            round + 1,
            "round {round}: one connection per credential"
        );
        let (state, connection, _) = credential_of(&agency, &id).await;
        assert_eq!(state, CredentialState::Authorized);
        assert!(connection_exists(app, connection.unwrap()).await);
        authorized.push(id);
    }
    assert_eq!(rows(app, "connections").await, ROUNDS as i64);
    assert_eq!(
        count(&agency.audit_events().await, "credential.authorized"),
        ROUNDS
    );
    assert_eq!(
        count(&agency.audit_events().await, "connection.created"),
        ROUNDS
    );

    for (round, id) in authorized.iter().enumerate() {
        let path = credential_path(id, "revoke");
        let (first, second) =
            tokio::join!(agency.post(&path, tom, None), agency.post(&path, tom, None),);
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}: {} / {}",
            first.1,
            second.1
        );
        let conflict = if first.0 == StatusCode::CONFLICT {
            &first.1
        } else {
            &second.1
        };
        assert_eq!(
            detail(conflict),
            CredentialState::Revoked
                .apply(CredentialAction::Revoke)
                .unwrap_err()
                .to_string()
        );
        assert_eq!(credential_of(&agency, id).await.0, CredentialState::Revoked);
        assert_eq!(connections().await, ROUNDS - round - 1);
    }
    assert_eq!(
        count(&agency.audit_events().await, "credential.revoked"),
        ROUNDS
    );
    let revoked_notes = agency
        .outbox()
        .await
        .iter()
        .filter(|(kind, _, _)| kind == "credential.revoked")
        .count();
    assert_eq!(revoked_notes, ROUNDS, "one notification per revocation");
    agency.app.stop().await;
}

on_both_backends!(
    who_may_request_from_whom_follows_the_role_table_of_the_spec,
    a_team_member_without_the_feature_is_refused_naming_the_feature,
    only_organizations_on_a_qualifying_plan_let_the_feature_be_used,
    the_operator_grants_the_feature_only_to_eligible_users_with_reasons,
    asking_for_the_feature_is_recorded_once_audited_and_shows_eligibility,
    granting_the_feature_tells_every_owner_of_each_qualifying_organization,
    every_limit_is_enforced_naming_the_field_and_nothing_is_stored,
    a_decline_reason_longer_than_256_characters_is_refused_naming_reason,
    each_role_sees_and_does_exactly_what_the_spec_allows_on_every_endpoint,
    every_action_from_every_state_follows_the_domain_table,
    a_key_the_app_refuses_leaves_the_credential_invalid_with_the_reason,
    a_key_the_app_refuses_after_a_decline_or_revoke_is_reported_and_the_decision_stands,
    two_revokes_at_once_succeed_once_and_two_authorizes_make_one_connection,
);
