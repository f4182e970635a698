//! The audit log (SPEC §4.5) over Make's `/audit-logs` API, its JSON-lines
//! export and `credence audit`: after a real request's life (created,
//! authorized with a key the app accepts, declined, revoked), owners see every
//! entry in order with its author and details, a team admin only their team's,
//! members, guests and outsiders nothing; every filter narrows; the export is
//! exactly the filtered entries and never holds a key; and the log is
//! append-only, keeps a year, and is written in the transaction of its change.

use crate::on_both_backends;
use crate::support::Agency;
use crate::support::{assert_error, Sql, TestApp};
use chrono::{DateTime, Duration, Months, SecondsFormat, Utc};
use credence_domain::{OrganizationId, TeamId};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Output;

/// The API key the recipient authorizes with; it must never appear in the log.
const ACME_KEY: &str = "acme-live-key-7f3c9d2e-audit";

/// A request's life in the Default team, one request in the Other team, and
/// the people who look at the log.
struct Scene {
    agency: Agency,
    /// Tokens with `organization:read`.
    owner: String,
    team_admin_token: String,
    member: String,
    guest: String,
    stranger: String,
    /// The Default team's request and its two credentials.
    request: String,
    acme: String,
    beta: String,
    /// The Other team's request.
    other_request: String,
}

impl Scene {
    async fn play(backend: Backend) -> Scene {
        let agency = Agency::start(backend).await;
        let app = &agency.app;
        let team_admin = app
            .add_person(
                "ada@agency.example",
                app.organization,
                "member",
                Some((agency.other_team, "admin")),
            )
            .await;
        let guest = app
            .add_person("gus@client.example", app.organization, "guest", None)
            .await;
        let elsewhere = credence::service::identity::create_organization(
            &app.store,
            "Elsewhere",
            "enterprise",
            false,
        )
        .await
        .unwrap();
        let stranger = app
            .add_person("sam@elsewhere.example", elsewhere.id, "owner", None)
            .await;
        let owner = app.token(app.admin_id().await, "organization:read").await;
        let team_admin_token = app.token(team_admin.id, "organization:read").await;
        let member = app.token(agency.teammate.id, "organization:read").await;
        let guest = app.token(guest.id, "organization:read").await;
        let stranger = app.token(stranger.id, "organization:read").await;

        // Rita asks Tom for two apps; Tom authorizes one with a key the app
        // accepts, declines the other, then revokes the first.
        agency.upstream.accept(ACME_KEY);
        let (request, credentials, _) = agency
            .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
            .await;
        let (acme, beta) = (credentials[0].clone(), credentials[1].clone());
        let (status, body) = agency
            .post(
                &format!("/api/v2/credential-requests/credentials/{acme}/authorize"),
                &agency.teammate_token,
                Some(json!({ "data": { "apiKey": ACME_KEY } })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = agency
            .post(
                &format!("/api/v2/credential-requests/credentials/{beta}/decline"),
                &agency.teammate_token,
                Some(json!({ "reason": "we do not use Beta Desk" })),
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

        // Olga, of the Other team, asks her team admin Ada for Acme CRM.
        credence::service::features::grant(&app.store, &app.vault(), &agency.outsider.email)
            .await
            .unwrap();
        let (status, body) = agency
            .post(
                "/api/v2/credential-requests/requests/v2",
                &agency.outsider_token,
                Some(json!({
                    "name": "Other team's sync",
                    "teamId": agency.other_team,
                    "credentials": [{ "appName": "acme-crm", "appModules": ["*"] }],
                    "provider": { "providerMakeUserId": team_admin.id },
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let other_request = body["request"]["id"].as_str().unwrap().to_string();
        Scene {
            agency,
            owner,
            team_admin_token,
            member,
            guest,
            stranger,
            request,
            acme,
            beta,
            other_request,
        }
    }

    fn app(&self) -> &TestApp {
        &self.agency.app
    }

    fn organization(&self) -> OrganizationId {
        self.agency.app.organization
    }

    fn default_team(&self) -> TeamId {
        self.agency.app.team
    }

    fn other_team(&self) -> TeamId {
        self.agency.other_team
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.app().get_json(&format!("/api/v2{path}"), token).await
    }

    /// The organization's log as the owner sees it with `query`, oldest first.
    async fn owner_log(&self, query: &str) -> Value {
        let (status, body) = self
            .get(
                &format!(
                    "/audit-logs/organization/{}?pg[sortDir]=asc&{query}",
                    self.organization()
                ),
                &self.owner,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        body
    }

    /// The raw body and content type of an export.
    async fn export(&self, path: &str, token: &str) -> (StatusCode, String, String) {
        let response = self
            .app()
            .with_token(reqwest::Method::GET, &format!("/api/v2{path}"), token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, content_type, response.text().await.unwrap())
    }

    /// Runs the real `credence` binary against this app's database and key file.
    async fn credence(&self, args: &[&str]) -> Output {
        self.app().operator_output(args).await
    }
}

fn events(log: &Value) -> Vec<String> {
    log["auditLogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["event"].as_str().unwrap().to_string())
        .collect()
}

fn ids(log: &Value) -> Vec<i64> {
    log["auditLogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect()
}

fn entry<'v>(log: &'v Value, event: &str) -> &'v Value {
    log["auditLogs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["event"] == event)
        .unwrap_or_else(|| panic!("no {event} in {log}"))
}

/// Every event of the scene, oldest first.
const SCENE_EVENTS: &[&str] = &[
    "feature.granted",
    "credential_request.created",
    "credential.authorized",
    "connection.created",
    "credential.declined",
    "credential.revoked",
    "feature.granted",
    "credential_request.created",
];

/// Inserts `n` entries of `event` at `at` with `raw`, a connection that
/// bypasses Credence (raw INSERT is what the log allows); returns the id of the last.
async fn insert_entries(
    raw: &mut Sql,
    organization: OrganizationId,
    at: DateTime<Utc>,
    event: &str,
    n: i64,
) -> i64 {
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $4) \
                   INSERT INTO audit_log (occurred_at, organization_id, team_id, actor_user_id, actor_label, \
                   event, target_kind, target_id, details) \
                   SELECT $1, $2, NULL, NULL, 'operator', $3, 'test', CAST(i AS TEXT), '{}' FROM n";
    let last = "SELECT MAX(id) FROM audit_log";
    match raw {
        Sql::Sqlite(c) => {
            sqlx::query(sql)
                .bind(at)
                .bind(organization.0)
                .bind(event)
                .bind(n)
                .execute(&mut *c)
                .await
                .unwrap();
            sqlx::query_scalar(last).fetch_one(c).await.unwrap()
        }
        Sql::Postgres(c) => {
            sqlx::query(sql)
                .bind(at)
                .bind(organization.0)
                .bind(event)
                .bind(n)
                .execute(&mut *c)
                .await
                .unwrap();
            sqlx::query_scalar(last).fetch_one(c).await.unwrap()
        }
    }
}

async fn the_owner_sees_every_event_in_order_with_its_author_and_details(backend: Backend) {
    let scene = Scene::play(backend).await;
    let log = scene.owner_log("").await;
    assert_eq!(events(&log), SCENE_EVENTS, "{log}");
    assert_eq!(log["pg"]["total"], SCENE_EVENTS.len());
    assert_eq!(log["pg"]["sortDir"], "asc");
    let ids = ids(&log);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let tom = &scene.agency.teammate;
    let created = entry(&log, "credential_request.created");
    assert_eq!(created["organizationId"], scene.organization().0);
    assert_eq!(created["teamId"], scene.default_team().0);
    assert_eq!(created["teamName"], "Default");
    assert_eq!(created["author"]["id"], scene.agency.requester.id.0);
    assert_eq!(
        created["author"]["email"],
        scene.agency.requester.email.as_str()
    );
    assert_eq!(created["targetKind"], "credential_request");
    assert_eq!(created["targetId"], scene.request.as_str());
    let authorized = entry(&log, "credential.authorized");
    assert_eq!(
        authorized["author"],
        json!({ "id": tom.id.0, "name": format!("Person {}", tom.email), "email": tom.email })
    );
    assert_eq!(
        authorized["actorLabel"],
        format!("Person {} <{}>", tom.email, tom.email)
    );
    assert_eq!(authorized["targetKind"], "credential");
    assert_eq!(authorized["targetId"], scene.acme.as_str());
    assert_eq!(authorized["data"]["requestId"], scene.request.as_str());
    assert_eq!(authorized["data"]["app"], "acme-crm");
    assert!(authorized["data"]["connectionId"].is_i64(), "{authorized}");
    let declined = entry(&log, "credential.declined");
    assert_eq!(declined["targetId"], scene.beta.as_str());
    assert_eq!(declined["data"]["reason"], "we do not use Beta Desk");
    let granted = entry(&log, "feature.granted");
    assert_eq!(granted["author"], Value::Null, "the operator is no user");
    assert_eq!(granted["actorLabel"], "operator");
    assert_eq!(granted["teamId"], Value::Null);
    for record in log["auditLogs"].as_array().unwrap() {
        let at = record["triggeredAt"].as_str().unwrap();
        let parsed = DateTime::parse_from_rfc3339(at).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert!(at.ends_with('Z'), "UTC: {at}");
        assert!(parsed <= Utc::now());
    }

    // Newest first unless asked otherwise.
    let (_, newest_first) = scene
        .get(
            &format!("/audit-logs/organization/{}", scene.organization()),
            &scene.owner,
        )
        .await;
    let mut reversed = SCENE_EVENTS.to_vec();
    reversed.reverse();
    assert_eq!(events(&newest_first), reversed);
    assert_eq!(newest_first["pg"]["sortDir"], "desc");

    // One entry by its id, the same as in the list.
    let (status, one) = scene
        .get(&format!("/audit-logs/{}", authorized["id"]), &scene.owner)
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(&one["auditLog"], authorized);

    // The filters name what is there.
    let (status, filters) = scene
        .get(
            &format!("/audit-logs/organization/{}/filters", scene.organization()),
            &scene.owner,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{filters}");
    let filters = &filters["auditLogFilters"];
    let mut expected_events: Vec<&str> = SCENE_EVENTS.to_vec();
    expected_events.sort();
    expected_events.dedup();
    assert_eq!(filters["events"], json!(expected_events));
    let author_ids: Vec<i64> = filters["authors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    let mut expected_authors = vec![
        scene.agency.requester.id.0,
        tom.id.0,
        scene.agency.outsider.id.0,
    ];
    expected_authors.sort();
    let mut sorted = author_ids.clone();
    sorted.sort();
    assert_eq!(sorted, expected_authors, "{filters}");
    assert_eq!(
        filters["teams"],
        json!([
            { "id": scene.default_team().0, "name": "Default" },
            { "id": scene.other_team().0, "name": "Other" },
        ])
    );

    // No key anywhere a reader looks.
    assert!(!log.to_string().contains(ACME_KEY));
    scene.agency.app.stop().await;
}

async fn a_team_admin_sees_only_their_team_and_members_guests_and_outsiders_nothing(
    backend: Backend,
) {
    let scene = Scene::play(backend).await;
    let organization = scene.organization();
    let (default_team, other_team) = (scene.default_team(), scene.other_team());

    // Ada administers the Other team: its entries only, on either endpoint.
    for path in [
        format!("/audit-logs/organization/{organization}"),
        format!("/audit-logs/team/{other_team}"),
    ] {
        let (status, log) = scene.get(&path, &scene.team_admin_token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {log}");
        assert_eq!(events(&log), ["credential_request.created"], "{path}");
        assert_eq!(
            log["auditLogs"][0]["targetId"],
            scene.other_request.as_str()
        );
        assert_eq!(log["auditLogs"][0]["teamName"], "Other");
        assert_eq!(log["pg"]["total"], 1);
    }
    let (status, filters) = scene
        .get(
            &format!("/audit-logs/organization/{organization}/filters"),
            &scene.team_admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        filters["auditLogFilters"],
        json!({
            "events": ["credential_request.created"],
            "authors": [{ "id": scene.agency.outsider.id.0, "name": format!("Person {}", scene.agency.outsider.email) }],
            "teams": [{ "id": other_team.0, "name": "Other" }],
        })
    );
    // …but not the Default team's, whichever way she asks.
    let default_entry = {
        let log = scene.owner_log("event[]=credential.declined").await;
        log["auditLogs"][0]["id"].as_i64().unwrap()
    };
    for path in [
        format!("/audit-logs/team/{default_team}"),
        format!("/audit-logs/team/{default_team}/filters"),
        format!("/audit-logs/organization/{organization}?team={default_team}"),
        format!("/audit-logs/{default_entry}"),
    ] {
        let (status, body) = scene.get(&path, &scene.team_admin_token).await;
        assert_error(status, &body, StatusCode::FORBIDDEN);
    }
    let (status, _, _) = scene
        .export(
            &format!("/audit-logs/team/{default_team}/export"),
            &scene.team_admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The owner sees a team's log too, only that team's.
    let (_, log) = scene
        .get(&format!("/audit-logs/team/{default_team}"), &scene.owner)
        .await;
    assert_eq!(
        events(&log).len(),
        5,
        "created, authorized, connection, declined, revoked: {log}"
    );
    assert!(log["auditLogs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["teamId"] == default_team.0));

    // A member and a guest of the organization: 403 everywhere.
    for token in [&scene.member, &scene.guest] {
        for path in [
            format!("/audit-logs/organization/{organization}"),
            format!("/audit-logs/organization/{organization}/filters"),
            format!("/audit-logs/organization/{organization}/export"),
            format!("/audit-logs/team/{default_team}"),
            format!("/audit-logs/team/{other_team}/filters"),
            format!("/audit-logs/{default_entry}"),
        ] {
            let (status, body) = scene.get(&path, token).await;
            assert_error(status, &body, StatusCode::FORBIDDEN);
        }
    }
    // Someone of another organization learns nothing: 404.
    for path in [
        format!("/audit-logs/organization/{organization}"),
        format!("/audit-logs/organization/{organization}/filters"),
        format!("/audit-logs/organization/{organization}/export"),
        format!("/audit-logs/team/{default_team}"),
        format!("/audit-logs/{default_entry}"),
    ] {
        let (status, body) = scene.get(&path, &scene.stranger).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    // The owner's token without organization:read is refused.
    let (status, body) = scene
        .get(
            &format!("/audit-logs/organization/{organization}"),
            &scene.agency.admin_token,
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("organization:read"));
    scene.agency.app.stop().await;
}

async fn each_filter_narrows_the_log_and_pages_count_the_total(backend: Backend) {
    let scene = Scene::play(backend).await;
    let tom = scene.agency.teammate.id;

    let log = scene
        .owner_log("event[]=credential.declined&event[]=credential.revoked")
        .await;
    assert_eq!(events(&log), ["credential.declined", "credential.revoked"]);
    assert_eq!(log["pg"]["total"], 2);

    let log = scene.owner_log(&format!("author={tom}")).await;
    assert_eq!(
        events(&log),
        [
            "credential.authorized",
            "connection.created",
            "credential.declined",
            "credential.revoked"
        ]
    );
    let log = scene
        .owner_log(&format!("author={tom}&event[]=connection.created"))
        .await;
    assert_eq!(events(&log), ["connection.created"]);

    let log = scene
        .owner_log(&format!("team={}", scene.other_team()))
        .await;
    assert_eq!(events(&log), ["credential_request.created"]);

    let log = scene.owner_log(&format!("target={}", scene.acme)).await;
    assert_eq!(
        events(&log),
        ["credential.authorized", "credential.revoked"]
    );

    // An entry from two years ago is outside a range that ends yesterday's
    // start, and the only thing inside one that ends before today.
    let mut raw = scene.app().sql().await;
    let two_years_ago = Utc::now() - Duration::days(730);
    let old = insert_entries(
        &mut raw,
        scene.organization(),
        two_years_ago,
        "member.invited",
        1,
    )
    .await;
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let last_year = (Utc::now() - Duration::days(365))
        .format("%Y-%m-%d")
        .to_string();
    let log = scene.owner_log(&format!("dateFrom={today}")).await;
    assert_eq!(events(&log), SCENE_EVENTS, "the old entry is out");
    let log = scene.owner_log(&format!("dateTo={last_year}")).await;
    assert_eq!(ids(&log), [old]);
    assert_eq!(log["auditLogs"][0]["author"], Value::Null);
    // A date-time range around exactly one entry.
    let all = scene.owner_log("").await;
    let declined = entry(&all, "credential.declined");
    let at = declined["triggeredAt"].as_str().unwrap();
    let log = scene
        .owner_log(&format!(
            "dateFrom={}&dateTo={}",
            urlencode(at),
            urlencode(at)
        ))
        .await;
    assert!(
        ids(&log).contains(&declined["id"].as_i64().unwrap()),
        "{log}"
    );
    assert!(
        log["auditLogs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["triggeredAt"] == at),
        "{log}"
    );
    let before = DateTime::parse_from_rfc3339(at).unwrap() - Duration::microseconds(1);
    let log = scene
        .owner_log(&format!(
            "dateTo={}",
            urlencode(&before.to_rfc3339_opts(SecondsFormat::Micros, true))
        ))
        .await;
    assert!(!ids(&log).contains(&declined["id"].as_i64().unwrap()));

    // Pages: the total stays, the pages add up to the whole in order.
    let everything = ids(&scene.owner_log("").await);
    assert_eq!(everything.len(), SCENE_EVENTS.len() + 1);
    let mut paged = Vec::new();
    for offset in (0..everything.len()).step_by(3) {
        let page = scene
            .owner_log(&format!("pg[offset]={offset}&pg[limit]=3"))
            .await;
        assert_eq!(page["pg"]["total"], everything.len());
        assert_eq!(page["pg"]["limit"], 3);
        assert_eq!(page["pg"]["offset"], offset);
        paged.extend(ids(&page));
    }
    assert_eq!(paged, everything);
    let page = scene.owner_log("pg[limit]=5000").await;
    assert_eq!(page["pg"]["limit"], 1000, "at most 1000 per page");
    let page = scene.owner_log("cols[]=id&cols[]=event&pg[limit]=1").await;
    assert_eq!(page["auditLogs"][0].as_object().unwrap().len(), 2, "{page}");
    scene.agency.app.stop().await;
}

fn urlencode(value: &str) -> String {
    value.replace('+', "%2B").replace(':', "%3A")
}

async fn bad_dates_and_ids_are_400_naming_the_field(backend: Backend) {
    let scene = Scene::play(backend).await;
    let organization = scene.organization();
    let log = format!("/audit-logs/organization/{organization}");
    for (path, field) in [
        (format!("{log}?dateFrom=yesterday"), "dateFrom"),
        (format!("{log}?dateTo=2024-13-01"), "dateTo"),
        (format!("{log}?dateFrom=2024-05-31T25:00:00Z"), "dateFrom"),
        (
            format!("{log}?dateFrom=2024-06-02&dateTo=2024-06-01"),
            "dateTo",
        ),
        (format!("{log}?author=tom"), "author"),
        (format!("{log}?team=1.5"), "team"),
        (format!("{log}?team=999999"), "team"),
        (format!("{log}?event[]="), "event[]"),
        (format!("{log}?pg[limit]=0"), "pg[limit]"),
        (format!("{log}?pg[offset]=-1"), "pg[offset]"),
        (format!("{log}?pg[sortBy]=event"), "pg[sortBy]"),
        (format!("{log}?pg[sortDir]=sideways"), "pg[sortDir]"),
        (format!("{log}/export?dateTo=soon"), "dateTo"),
        (
            format!(
                "/audit-logs/team/{}?team={}",
                scene.other_team(),
                scene.default_team()
            ),
            "team",
        ),
        (
            "/audit-logs/organization/acme".to_string(),
            "organizationId",
        ),
        (
            "/audit-logs/organization/1e3/filters".to_string(),
            "organizationId",
        ),
        ("/audit-logs/team/x".to_string(), "teamId"),
        ("/audit-logs/team/x/export".to_string(), "teamId"),
        (
            "/audit-logs/7d1d5b0e-1111-4222-8333-944444444444".to_string(),
            "id",
        ),
    ] {
        let (status, body) = scene.get(&path, &scene.owner).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        let fields: Vec<&str> = body["suberrors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{path}: {body}");
    }
    // Both bad dates are named at once.
    let (_, body) = scene
        .get(&format!("{log}?dateFrom=nope&dateTo=never"), &scene.owner)
        .await;
    assert_eq!(body["suberrors"].as_array().unwrap().len(), 2, "{body}");
    // Well-formed but absent: 404.
    for path in [
        "/audit-logs/99999999".to_string(),
        "/audit-logs/organization/99999999".to_string(),
        "/audit-logs/team/99999999/filters".to_string(),
    ] {
        let (status, body) = scene.get(&path, &scene.owner).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    scene.agency.app.stop().await;
}

/// The lines of an export, each parsed; fails on a line that is not JSON.
fn json_lines(text: &str) -> Vec<Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "every line ends in a newline"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

async fn the_export_is_exactly_the_filtered_entries_as_json_lines_without_a_key(backend: Backend) {
    let scene = Scene::play(backend).await;
    let organization = scene.organization();
    let export = format!("/audit-logs/organization/{organization}/export");

    // Everything, oldest first, the same objects as the list.
    let (status, content_type, text) = scene.export(&export, &scene.owner).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type, "application/x-ndjson");
    let lines = json_lines(&text);
    let listed = scene.owner_log("").await;
    assert_eq!(&Value::Array(lines.clone()), &listed["auditLogs"]);
    assert!(!text.contains(ACME_KEY), "the key leaked into the export");

    // Filtered: exactly what the list answers for the same filters.
    let tom = scene.agency.teammate.id;
    for query in [
        format!("author={tom}&event[]=credential.declined&event[]=credential.revoked"),
        format!("team={}", scene.other_team()),
        format!("target={}", scene.beta),
        "dateTo=2000-01-01".to_string(),
    ] {
        let (status, _, text) = scene
            .export(&format!("{export}?{query}"), &scene.owner)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {text}");
        let listed = scene.owner_log(&query).await;
        assert_eq!(
            Value::Array(json_lines(&text)),
            listed["auditLogs"],
            "{query}"
        );
    }

    // A team admin's export holds their team's entries only.
    let (status, _, text) = scene.export(&export, &scene.team_admin_token).await;
    assert_eq!(status, StatusCode::OK);
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["teamId"], scene.other_team().0);
    let (status, _, text) = scene
        .export(
            &format!("/audit-logs/team/{}/export", scene.other_team()),
            &scene.team_admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_lines(&text), lines);

    // More entries than one page holds, all at the same instant: each exactly
    // once, in id order.
    let mut raw = scene.app().sql().await;
    let at = Utc::now() - Duration::minutes(1);
    insert_entries(&mut raw, organization, at, "test.bulk", 2345).await;
    let (status, _, text) = scene
        .export(&format!("{export}?event[]=test.bulk"), &scene.owner)
        .await;
    assert_eq!(status, StatusCode::OK);
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 2345);
    let ids: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    let targets: Vec<String> = lines
        .iter()
        .map(|l| l["targetId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(targets.first().map(String::as_str), Some("1"));
    assert_eq!(targets.last().map(String::as_str), Some("2345"));
    let (_, _, text) = scene.export(&export, &scene.owner).await;
    assert_eq!(json_lines(&text).len(), 2345 + SCENE_EVENTS.len());
    scene.agency.app.stop().await;
}

async fn credence_audit_export_writes_json_lines_on_either_database(backend: Backend) {
    let scene = Scene::play(backend).await;
    let organization = scene.organization().0.to_string();

    let output = scene
        .credence(&["audit", "export", "--org", &organization])
        .await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    let lines = json_lines(&stdout);
    let listed = scene.owner_log("").await;
    assert_eq!(Value::Array(lines), listed["auditLogs"]);
    assert!(
        stderr.contains(&format!(
            "exported {} audit entries of organization {organization} to standard output",
            SCENE_EVENTS.len()
        )),
        "{stderr}"
    );
    assert!(!stdout.contains(ACME_KEY));

    // Filtered, into a file.
    let file = scene.app().dir.path().join("declines.jsonl");
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let output = scene
        .credence(&[
            "audit",
            "export",
            "--org",
            &organization,
            "--from",
            &today,
            "--to",
            &(Utc::now() + Duration::hours(1)).to_rfc3339(),
            "--event",
            "credential.declined",
            "--event",
            "credential.revoked",
            "--out",
            file.to_str().unwrap(),
        ])
        .await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.contains("exported 2 audit entries"), "{stderr}");
    let lines = json_lines(&std::fs::read_to_string(&file).unwrap());
    let listed = scene
        .owner_log("event[]=credential.declined&event[]=credential.revoked")
        .await;
    assert_eq!(Value::Array(lines), listed["auditLogs"]);

    // Mistakes are named.
    let output = scene
        .credence(&["audit", "export", "--org", &organization, "--from", "soon"])
        .await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert!(
        stderr.contains("error: --from \"soon\" is not an ISO 8601 date"),
        "{stderr}"
    );
    let output = scene.credence(&["audit", "export", "--org", "99999"]).await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert!(
        stderr.contains("organization 99999 does not exist"),
        "{stderr}"
    );
    scene.agency.app.stop().await;
}

async fn the_log_is_append_only_and_keeps_entries_for_a_year(backend: Backend) {
    let scene = Scene::play(backend).await;
    let mut raw = scene.app().sql().await;
    let count = "SELECT COUNT(*) FROM audit_log";
    let before = raw.value::<i64>(count).await;
    assert_eq!(before, SCENE_EVENTS.len() as i64);

    // No update, not even through SQL; no delete of a fresh entry.
    let error = raw
        .try_execute("UPDATE audit_log SET details = '{\"rewritten\": true}'")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
    let error = raw
        .try_execute(
            "UPDATE audit_log SET event = 'nothing' WHERE id = (SELECT MAX(id) FROM audit_log)",
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
    let error = raw
        .try_execute("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("12 months"), "{error}");
    assert_eq!(raw.value::<i64>(count).await, before);
    assert_eq!(
        raw.value::<i64>("SELECT COUNT(*) FROM audit_log WHERE details LIKE '%rewritten%'")
            .await,
        0
    );

    // An entry older than a year may go.
    let thirteen_months_ago = Utc::now().checked_sub_months(Months::new(13)).unwrap();
    let old = insert_entries(
        &mut raw,
        scene.organization(),
        thirteen_months_ago,
        "member.invited",
        1,
    )
    .await;
    assert_eq!(raw.value::<i64>(count).await, before + 1);

    // Purging up to now is refused by the database, and deletes nothing —
    // not even the old entry the same statement would have taken.
    let now = Utc::now().to_rfc3339();
    let output = scene.credence(&["audit", "purge", "--before", &now]).await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: the database keeps audit entries younger than 12 months"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was deleted"), "{stderr}");
    assert!(stderr.contains("choose --before"), "{stderr}");
    assert_eq!(raw.value::<i64>(count).await, before + 1);

    // Purging what is older than a year works, and only that goes.
    let a_year_ago = Utc::now()
        .checked_sub_months(Months::new(12))
        .unwrap()
        .checked_sub_signed(Duration::days(1))
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let output = scene
        .credence(&["audit", "purge", "--before", &a_year_ago])
        .await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("purged 1 audit entries"), "{stdout}");
    assert_eq!(raw.value::<i64>(count).await, before);
    assert_eq!(
        raw.value::<i64>(&format!("SELECT COUNT(*) FROM audit_log WHERE id = {old}"))
            .await,
        0
    );
    let log = scene.owner_log("").await;
    assert_eq!(events(&log), SCENE_EVENTS);

    let output = scene
        .credence(&["audit", "purge", "--before", "last week"])
        .await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert!(stderr.contains("error: --before \"last week\""), "{stderr}");
    scene.agency.app.stop().await;
}

async fn an_audit_entry_is_written_in_the_same_transaction_as_its_change(backend: Backend) {
    let agency = Agency::start(backend).await;
    let owner = agency
        .app
        .token(agency.app.admin_id().await, "organization:read")
        .await;
    let (_, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let decline = |id: &str| format!("/api/v2/credential-requests/credentials/{id}/decline");
    let log_path = format!(
        "/api/v2/audit-logs/organization/{}",
        agency.app.organization
    );
    let total = |log: &Value| log["pg"]["total"].as_i64().unwrap();
    let (_, log) = agency.app.get_json(&log_path, &owner).await;
    let entries = total(&log);

    // A change refused as a conflict writes no entry.
    let (status, _) = agency
        .post(&decline(&credentials[0]), &agency.teammate_token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, log) = agency.app.get_json(&log_path, &owner).await;
    assert_eq!(total(&log), entries + 1);
    let (status, body) = agency
        .post(&decline(&credentials[0]), &agency.teammate_token, None)
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (_, log) = agency.app.get_json(&log_path, &owner).await;
    assert_eq!(total(&log), entries + 1, "the 409 wrote an entry: {log}");

    // When the entry cannot be written, the change does not happen.
    let mut raw = agency.app.sql().await;
    match backend {
        Backend::Sqlite => {
            raw.try_execute(
                "CREATE TRIGGER refuse_declines BEFORE INSERT ON audit_log \
                 WHEN NEW.event = 'credential.declined' \
                 BEGIN SELECT RAISE(ABORT, 'the audit log is unavailable'); END",
            )
            .await
            .unwrap();
        }
        Backend::Postgres => {
            raw.try_execute(
                "CREATE FUNCTION refuse_declines() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.event = 'credential.declined' THEN \
                 RAISE EXCEPTION 'the audit log is unavailable'; END IF; RETURN NEW; END; $$",
            )
            .await
            .unwrap();
            raw.try_execute(
                "CREATE TRIGGER refuse_declines BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION refuse_declines()",
            )
            .await
            .unwrap();
        }
    }
    let outbox_before = agency.outbox().await.len();
    let (status, body) = agency
        .post(
            &decline(&credentials[1]),
            &agency.teammate_token,
            Some(json!({ "reason": "not now" })),
        )
        .await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !body.to_string().contains("audit log is unavailable"),
        "a 5xx stays generic: {body}"
    );
    let (_, credential) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/credentials/{}", credentials[1]),
            &agency.requester_token,
        )
        .await;
    assert_eq!(
        credential["credential"]["state"], "pending",
        "the decline was rolled back with its entry"
    );
    assert_eq!(
        agency.outbox().await.len(),
        outbox_before,
        "nobody was told"
    );
    let (_, log) = agency.app.get_json(&log_path, &owner).await;
    assert_eq!(total(&log), entries + 1);

    // With the log writable again, the same decline goes through, with its entry.
    let drop = match backend {
        Backend::Sqlite => "DROP TRIGGER refuse_declines",
        Backend::Postgres => "DROP TRIGGER refuse_declines ON audit_log",
    };
    raw.try_execute(drop).await.unwrap();
    let (status, body) = agency
        .post(
            &decline(&credentials[1]),
            &agency.teammate_token,
            Some(json!({ "reason": "not now" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, log) = agency
        .app
        .get_json(&format!("{log_path}?event[]=credential.declined"), &owner)
        .await;
    assert_eq!(total(&log), 2);
    assert_eq!(log["auditLogs"][0]["targetId"], credentials[1].as_str());
    assert_eq!(log["auditLogs"][0]["data"]["reason"], "not now");
    agency.app.stop().await;
}

on_both_backends!(
    the_owner_sees_every_event_in_order_with_its_author_and_details,
    a_team_admin_sees_only_their_team_and_members_guests_and_outsiders_nothing,
    each_filter_narrows_the_log_and_pages_count_the_total,
    bad_dates_and_ids_are_400_naming_the_field,
    the_export_is_exactly_the_filtered_entries_as_json_lines_without_a_key,
    credence_audit_export_writes_json_lines_on_either_database,
    the_log_is_append_only_and_keeps_entries_for_a_year,
    an_audit_entry_is_written_in_the_same_transaction_as_its_change,
);
