//! The broker (SPEC §8) against a real local app: a requesting team lists a
//! client's contacts with the client's key and never sees it; calls outside
//! the granted modules, unsafe paths and unusable connections are refused,
//! each naming why; redirects come back unfollowed; a revoke on one instance
//! stops the next call on another; every call lands in the usage log that the
//! team and the recipient read; a credential the app echoes back comes back
//! masked, and a compressed answer is refused.

use crate::support::{
    assert_error, assert_no_secret, captured_logs, contacts_app, contacts_basic_app,
    credential_path, signed_in, wait_until, world, Agency, ContactsApi, World,
};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A request for Contacts (search and create, not delete) from Rita's team
/// to Tom, authorized with the app's key; Rita's token may use connections.
struct Scene {
    agency: Agency,
    api: ContactsApi,
    connection: i64,
    request: String,
    credential: String,
    use_token: String,
}

/// Another instance on the scene's database and key file, serving until
/// [`OtherInstance::stop`].
struct OtherInstance {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OtherInstance {
    async fn start(scene: &Scene) -> OtherInstance {
        let mut config = scene.agency.app.config.clone();
        config.listen = ([127, 0, 0, 1], 0).into();
        let other = credence::Application::build(config)
            .await
            .expect("a second instance builds");
        let url = format!("http://127.0.0.1:{}", other.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(other.run_until(async move {
            let _ = stopped.await;
        }));
        OtherInstance { url, stop, server }
    }

    /// A graceful stop: what it answered is stored before it returns.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

async fn scene(backend: Backend) -> Scene {
    scene_with(backend, |_| {}).await
}

async fn scene_with(backend: Backend, adjust: impl FnOnce(&mut credence::config::Config)) -> Scene {
    let api = ContactsApi::start().await;
    let agency = Agency::start_with(
        backend,
        &[("contacts", contacts_app("contacts", &api))],
        adjust,
    )
    .await;
    let body = json!({
        "name": "Contacts sync",
        "teamId": agency.app.team,
        "credentials": [{ "appName": "contacts", "appModules": ["searchContacts", "createContact"] }],
        "provider": { "providerMakeUserId": agency.teammate.id },
    });
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.requester_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let request = created["request"]["id"].as_str().unwrap().to_string();
    let credential = created["request"]["credentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = agency
        .authorize_with(&credential, "authorize", &api.key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = agency
        .app
        .team_connections()
        .await
        .into_iter()
        .find(|c| c.app_key == "contacts")
        .expect("the authorized connection")
        .id;
    let use_token = agency
        .app
        .token(agency.requester.id, "connections:use")
        .await;
    Scene {
        agency,
        api,
        connection,
        request,
        credential,
        use_token,
    }
}

impl Scene {
    fn proxy_url(&self, path: &str) -> String {
        self.agency.app.url(&format!(
            "/api/v2/connections/{}/proxy{path}",
            self.connection
        ))
    }

    /// `method path` through the proxy with `token`; status, headers, body text.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let response = self
            .agency
            .app
            .client
            .request(method.clone(), self.proxy_url(path))
            .header("Authorization", format!("Token {token}"))
            .send()
            .await
            .unwrap();
        read(response, &format!("{method} {path}")).await
    }

    /// The usage entries of the connection, as its team reads them.
    async fn usage(&self) -> Vec<Value> {
        let token = self
            .agency
            .app
            .token(self.agency.requester.id, "connections:read")
            .await;
        let (status, body) = self
            .agency
            .app
            .get_json(
                &format!("/api/v2/connections/{}/usage", self.connection),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["usage"].as_array().unwrap().clone()
    }
}

/// Status, headers and body of a proxied answer, checked for the suite's secrets.
async fn read(
    response: reqwest::Response,
    what: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    assert_no_secret(&format!("the answer to {what}"), &body);
    assert_no_secret(
        &format!("the headers of the answer to {what}"),
        &format!("{headers:?}"),
    );
    (status, headers, body)
}

async fn a_teammate_lists_contacts_through_the_proxy_without_seeing_the_key(backend: Backend) {
    let scene = scene(backend).await;
    let response = scene
        .agency
        .app
        .client
        .get(scene.proxy_url("/v1/contacts?q=jane&limit=5"))
        .header("Authorization", format!("Token {}", scene.use_token))
        .header("Cookie", "credence_session=caller-cookie")
        .header("Proxy-Authorization", "Basic Y2FsbGVyOnNlY3JldA==")
        .header("Connection", "x-hop")
        .header("X-Hop", "1")
        .header("X-Credence-Consumer", "weekly-sync agent")
        .header("X-Forwarded-For", "10.9.9.9")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read(response, "GET /v1/contacts").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["contacts"][0]["name"], "Jane Roe");
    assert!(
        headers.get("set-cookie").is_none(),
        "the app's cookie stays behind"
    );
    assert_eq!(headers["x-request-id"], "upstream-1");

    let seen = scene.api.seen();
    let call = seen.last().unwrap();
    assert_eq!(call.method, "GET");
    assert_eq!(call.path_and_query, "/v1/contacts?q=jane&limit=5");
    assert_eq!(
        call.headers["authorization"],
        format!("Bearer {}", scene.api.key).as_str()
    );
    assert_eq!(call.headers["x-api-version"], "2", "the app's fixed header");
    assert_eq!(call.headers["accept"], "application/json");
    for dropped in [
        "cookie",
        "proxy-authorization",
        "x-hop",
        "x-credence-consumer",
        "x-forwarded-for",
    ] {
        assert!(
            call.headers.get(dropped).is_none(),
            "{dropped} reached the app"
        );
    }

    // A large body streams through (within the API's declared body limit,
    // which the router enforces on every route).
    let upload = vec![b'x'; 900 * 1024 + 17];
    let response = scene
        .agency
        .app
        .client
        .post(scene.proxy_url("/v1/contacts"))
        .header("Authorization", format!("Token {}", scene.use_token))
        .header("Content-Type", "application/octet-stream")
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(response, "POST /v1/contacts").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["received"], upload.len());

    // A signed-in member of the team may use it too; another site may not.
    let rita = signed_in(&scene.agency.app, &scene.agency.requester).await;
    let response = rita
        .get(scene.proxy_url("/v1/contacts"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = rita
        .get(scene.proxy_url("/v1/contacts"))
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    assert_no_secret("the logs", &captured_logs());
    scene.agency.app.stop().await;
}

async fn calls_outside_the_grant_unsafe_paths_and_strangers_are_refused_naming_why(
    backend: Backend,
) {
    let scene = scene(backend).await;
    let token = scene.use_token.clone();
    let before = scene.api.seen().len();

    let (status, _, body) = scene
        .call(reqwest::Method::DELETE, "/v1/contacts/7", &token)
        .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    let detail = assert_error(status, &body, StatusCode::FORBIDDEN)["detail"]
        .as_str()
        .unwrap()
        .to_string();
    for part in [
        "DELETE",
        "/v1/contacts/7",
        "createContact",
        "searchContacts",
    ] {
        assert!(detail.contains(part), "{detail} names {part}");
    }
    let (status, _, _) = scene.call(reqwest::Method::GET, "/v1/me", &token).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "verify is no granted operation"
    );

    for path in [
        "/v1/contacts/..%2F..%2Fadmin",
        "/v1/%2e%2e/contacts",
        "/v1/contacts/a%2Fb",
        "/v1/contacts/a%5cb",
        "//evil.example/v1/contacts",
        "/http://evil.example/v1/contacts",
    ] {
        let (status, _, body) = scene.call(reqwest::Method::GET, path, &token).await;
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN,
            "{path}: {status} {body}"
        );
    }
    assert_eq!(
        scene.api.seen().len(),
        before,
        "nothing refused reached the app"
    );

    // Not of the team: a 404 that says nothing; no scope: 403; nobody: 401.
    let stranger = scene
        .agency
        .app
        .token(scene.agency.outsider.id, "connections:use")
        .await;
    let (status, _, _) = scene
        .call(reqwest::Method::GET, "/v1/contacts", &stranger)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The roles come from the same query as the connection: a member of the
    // organization in no team and a guest are strangers too; an admin of the
    // organization in no team may call.
    for (email, role, expected) in [
        ("nadia@agency.example", "member", StatusCode::NOT_FOUND),
        ("gus@agency.example", "guest", StatusCode::NOT_FOUND),
        ("ada@agency.example", "admin", StatusCode::OK),
    ] {
        let app = &scene.agency.app;
        let person = app.add_person(email, app.organization, role, None).await;
        let token = app.token(person.id, "connections:use").await;
        let (status, _, body) = scene
            .call(reqwest::Method::GET, "/v1/contacts", &token)
            .await;
        assert_eq!(status, expected, "{role}: {body}");
    }
    let (status, _, body) = scene
        .call(
            reqwest::Method::GET,
            "/v1/contacts",
            &scene.agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("connections:use"), "{body}");
    let response = scene
        .agency
        .app
        .client
        .get(scene.proxy_url("/v1/contacts"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A consumer label over 100 characters.
    let response = scene
        .agency
        .app
        .client
        .get(scene.proxy_url("/v1/contacts"))
        .header("Authorization", format!("Token {token}"))
        .header("X-Credence-Consumer", "a".repeat(101))
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(response, "a long label").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("X-Credence-Consumer") && body.contains("100"),
        "{body}"
    );

    // The key stops working; the requester asks for a new authorization:
    // the credential is reauthorizing and the connection refuses, naming it.
    let (status, body) = scene
        .agency
        .post(
            &credential_path(&scene.credential, "request-reauthorize"),
            &scene.agency.requester_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the key still works: {body}");
    scene
        .agency
        .app
        .sql()
        .await
        .execute(&format!(
            "UPDATE requested_credentials SET state = 'reauthorizing' WHERE id = '{}'",
            scene.credential
        ))
        .await;
    let (status, _, body) = scene
        .call(reqwest::Method::GET, "/v1/contacts", &token)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("reauthorizing"), "{body}");
    scene.agency.app.stop().await;
}

async fn redirects_come_back_as_they_are_and_are_not_followed(backend: Backend) {
    let scene = scene(backend).await;
    let (status, headers, _) = scene
        .call(reqwest::Method::GET, "/v1/contacts/moved", &scene.use_token)
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        headers["location"],
        format!("http://127.0.0.1:{}/v1/elsewhere", scene.api.port).as_str()
    );
    assert!(headers.get("set-cookie").is_none());
    assert!(
        scene
            .api
            .seen()
            .iter()
            .all(|c| c.path_and_query != "/v1/elsewhere"),
        "the redirect was not followed with the key"
    );
    scene.agency.app.stop().await;
}

async fn a_revoke_on_one_instance_stops_the_next_call_on_another(backend: Backend) {
    let scene = scene(backend).await;
    let other = OtherInstance::start(&scene).await;
    let other_url = other.url.clone();
    let call_other = || async {
        scene
            .agency
            .app
            .client
            .get(format!(
                "{other_url}/api/v2/connections/{}/proxy/v1/contacts",
                scene.connection
            ))
            .header("Authorization", format!("Token {}", scene.use_token))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(call_other().await, StatusCode::OK);
    let (status, body) = scene
        .agency
        .post(
            &credential_path(&scene.credential, "revoke"),
            &scene.agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The very next call on the other instance fails: nothing is cached.
    assert_eq!(call_other().await, StatusCode::NOT_FOUND);
    other.stop().await;
    scene.agency.app.stop().await;
}

async fn every_call_is_in_the_usage_log_for_the_team_and_the_recipient(backend: Backend) {
    let scene = scene(backend).await;
    let response = scene
        .agency
        .app
        .client
        .get(scene.proxy_url("/v1/contacts/42?secret-looking=query"))
        .header("Authorization", format!("Token {}", scene.use_token))
        .header("X-Credence-Consumer", "crm-sync")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, _, _) = scene
        .call(reqwest::Method::DELETE, "/v1/contacts/42", &scene.use_token)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    wait_until("both calls are in the usage log", || async {
        scene.usage().await.len() == 2
    })
    .await;
    let usage = scene.usage().await;
    let (refused, forwarded) = (&usage[0], &usage[1]);
    assert_eq!(forwarded["method"], "GET");
    assert_eq!(forwarded["pathTemplate"], "/v1/contacts/{id}");
    assert_eq!(forwarded["status"], 200);
    assert_eq!(forwarded["upstreamStatus"], 200);
    assert_eq!(forwarded["consumer"], "crm-sync");
    assert_eq!(forwarded["credentialId"], scene.credential.as_str());
    assert_eq!(forwarded["userId"], scene.agency.requester.id.0);
    assert!(forwarded["caller"].as_str().unwrap().contains("test token"));
    assert!(forwarded["latencyMs"].as_i64().unwrap() >= 0);
    assert_eq!(refused["method"], "DELETE");
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["upstreamStatus"], Value::Null);
    assert!(
        !usage
            .iter()
            .any(|u| u.to_string().contains("secret-looking")),
        "the raw query is never recorded"
    );

    // Deleting the request or the connection first names who used it.
    let (status, body) = scene
        .agency
        .delete(
            &format!("/api/v2/credential-requests/requests/{}", scene.request),
            &scene.agency.requester_token,
        )
        .await;
    let detail = assert_error(status, &body, StatusCode::CONFLICT)["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("used in the last 90 days by: crm-sync, rita@agency.example"),
        "{detail}"
    );
    let writer = scene
        .agency
        .app
        .token(scene.agency.requester.id, "connections:write")
        .await;
    let (status, body) = scene
        .agency
        .delete(
            &format!("/api/v2/connections/{}", scene.connection),
            &writer,
        )
        .await;
    let detail = assert_error(status, &body, StatusCode::CONFLICT)["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("crm-sync"), "{detail}");

    // The recipient reads it too, and keeps reading it after revoking.
    let (status, body) = scene
        .agency
        .post(
            &credential_path(&scene.credential, "revoke"),
            &scene.agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = scene
        .agency
        .app
        .get_json(
            &credential_path(&scene.credential, "usage"),
            &scene.agency.teammate_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"].as_array().unwrap().len(), 2, "{body}");
    let (status, _) = scene
        .agency
        .app
        .get_json(
            &credential_path(&scene.credential, "usage"),
            &scene.agency.outsider_token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    scene.agency.app.stop().await;
}

async fn the_usage_of_calls_answered_before_a_graceful_stop_is_stored(backend: Backend) {
    let scene = scene(backend).await;
    // An instance of its own, stopped while the test's keeps the database.
    let other = OtherInstance::start(&scene).await;
    let url = format!(
        "{}/api/v2/connections/{}/proxy/v1/contacts",
        other.url, scene.connection
    );
    for _ in 0..20 {
        let response = scene
            .agency
            .app
            .client
            .get(&url)
            .header("Authorization", format!("Token {}", scene.use_token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    other.stop().await;
    let mut sql = scene.agency.app.sql().await;
    let stored = sql
        .column::<i64>("SELECT COUNT(*) FROM connection_usage")
        .await;
    assert_eq!(stored, vec![20], "every call answered is recorded");
    assert!(
        sql.try_execute("UPDATE connection_usage SET status = 200")
            .await
            .is_err(),
        "the usage log is append-only"
    );
    scene.agency.app.stop().await;
}

/// The broker's send path refuses what the app file does not vouch for: a
/// name that resolves to a private address (with the resolver the running
/// server uses, fed a rebinding answer), and any path that would leave the
/// catalog's host. Nothing reaches the local app.
#[tokio::test]
async fn the_broker_sends_a_credential_only_to_the_catalogs_public_host() {
    use credence::provider::call::{self, Proxied, SendError};
    use credence::provider::destination::{client_with, Lookup};
    use credence::provider::FieldValues;
    let api = ContactsApi::start().await;
    let apps = tempfile::tempdir().unwrap();
    let file = contacts_app("public-contacts", &api)
        .replace("allow_private_hosts = true\n", "")
        .replace(
            &format!("http://127.0.0.1:{}", api.port),
            &format!("https://contacts.rebind.example:{}", api.port),
        );
    std::fs::write(apps.path().join("public-contacts.toml"), file).unwrap();
    let catalog = credence_catalog::Catalog::load(Some(apps.path())).unwrap();
    let app = catalog.get("public-contacts").unwrap();
    let version = app.latest();
    let values = FieldValues(
        [(
            "apiKey".to_string(),
            secrecy::SecretString::from(api.key.clone()),
        )]
        .into_iter()
        .collect(),
    );
    let to_localhost: Lookup =
        std::sync::Arc::new(|_| Box::pin(async { Ok(vec!["127.0.0.1:0".parse().unwrap()]) }));
    let client = client_with(to_localhost, &catalog).unwrap();
    let get = |path: &str| Proxied {
        method: reqwest::Method::GET,
        path: path.to_string(),
        query: Some("q=1".into()),
        headers: Default::default(),
        body: None,
    };
    match call::send(&client, app, version, &values, get("/v1/contacts")).await {
        Err(SendError::Refused(reason)) => assert_eq!(
            reason,
            "contacts.rebind.example resolves to a private address; credentials are not sent there"
        ),
        other => panic!(
            "a private address must be refused: {:?}",
            other.map(|r| r.status())
        ),
    }
    for path in [
        "//evil.example/v1/contacts",
        "/http://evil.example/",
        "v1/contacts",
        "/v1/contacts#x",
    ] {
        let refused = call::url_for(version, &values, path, None);
        assert!(refused.is_err(), "{path} left the host: {refused:?}");
    }
    assert!(api.seen().is_empty(), "nothing reached the app");
}

/// Replaces the stored tokens of OAuth connection `connection` by `tokens`
/// with `changes` applied (as a refresh would seal them).
async fn reseal_tokens(
    world: &World,
    connection: &credence_store::Connection,
    changes: &[(&str, &str)],
) {
    let mut tokens = world.tokens(connection).await;
    for (name, value) in changes {
        tokens[*name] = json!(value);
    }
    let values = credence::provider::FieldValues(
        tokens
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    secrecy::SecretString::from(value.as_str().unwrap().to_string()),
                )
            })
            .collect(),
    );
    let secret = connection.secret_id.clone().unwrap();
    let sealed = credence::service::secrets::seal_connection_values(
        &world.agency.app.vault(),
        connection.id,
        connection.team_id,
        &secret,
        &values,
    )
    .unwrap();
    let mut db = world.agency.app.db().await;
    db.replace_secret(&secret, sealed.as_str()).await.unwrap();
}

async fn oauth_calls_refresh_an_expired_token_first_and_retry_once_on_401(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let connection = world.connection().await;
    let token = world
        .agency
        .app
        .token(world.agency.requester.id, "connections:use")
        .await;
    let me = || async {
        let response = world
            .agency
            .app
            .client
            .get(
                world
                    .agency
                    .app
                    .url(&format!("/api/v2/connections/{}/proxy/me", connection.id)),
            )
            .header("Authorization", format!("Token {token}"))
            .send()
            .await
            .unwrap();
        read(response, "GET /me").await
    };
    let (status, _, body) = me().await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the provider took the access token: {body}"
    );
    assert!(body.contains("\"sub\""), "{body}");

    // The app no longer takes the stored access token: one refresh, one retry.
    let refreshes = world.provider.token_requests("refresh_token").await;
    reseal_tokens(
        &world,
        &connection,
        &[("access_token", "stale-access-token")],
    )
    .await;
    let (status, _, body) = me().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        world.provider.token_requests("refresh_token").await,
        refreshes + 1
    );

    // A small body is kept, and sent again after the refresh.
    reseal_tokens(
        &world,
        &connection,
        &[("access_token", "stale-access-token")],
    )
    .await;
    let response = world
        .agency
        .app
        .client
        .post(
            world
                .agency
                .app
                .url(&format!("/api/v2/connections/{}/proxy/me", connection.id)),
        )
        .header("Authorization", format!("Token {token}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("claims=none")
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(response, "POST /me").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        world.provider.token_requests("refresh_token").await,
        refreshes + 2
    );

    // An access token past its expiry is refreshed before the call (the
    // token it replaces would still work: only the refresh counts).
    let past = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    reseal_tokens(&world, &connection, &[("expires_at", &past)]).await;
    let mut sql = world.agency.app.sql().await;
    let set_past = match world.agency.app.backend {
        Backend::Sqlite => format!(
            "UPDATE connections SET token_expires_at = '{past}' WHERE id = {}",
            connection.id
        ),
        Backend::Postgres => format!(
            "UPDATE connections SET token_expires_at = '{past}'::timestamptz WHERE id = {}",
            connection.id
        ),
    };
    sql.execute(&set_past).await;
    let (status, _, body) = me().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        world.provider.token_requests("refresh_token").await,
        refreshes + 3
    );

    // The grant revoked at the provider: the refresh is refused for good, the
    // connection is invalid, and the call answers 409 naming it.
    let tokens = world.tokens(&world.connection().await).await;
    world
        .provider
        .revoke(tokens["access_token"].as_str().unwrap())
        .await;
    let (status, _, body) = me().await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("invalid"), "{body}");
    assert_eq!(world.connection_by_id(connection.id).await.state, "invalid");
    let (status, _, body) = me().await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    world.agency.app.stop().await;
}

async fn a_connection_past_its_calls_per_minute_is_answered_429(backend: Backend) {
    let scene = scene_with(backend, |config| config.proxy_calls_per_minute = 3).await;
    // The app's own 429 comes back as it is, with its Retry-After.
    let (status, headers, _) = scene
        .call(reqwest::Method::GET, "/v1/contacts/busy", &scene.use_token)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "7");
    for _ in 0..2 {
        let (status, _, _) = scene
            .call(reqwest::Method::GET, "/v1/contacts", &scene.use_token)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let before = scene.api.seen().len();
    let (status, headers, body) = scene
        .call(reqwest::Method::GET, "/v1/contacts", &scene.use_token)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(scene.api.seen().len(), before, "the call was not sent");
    wait_until("the refused call is in the usage log", || async {
        scene
            .usage()
            .await
            .iter()
            .any(|u| u["status"] == 429 && u["upstreamStatus"].is_null())
    })
    .await;
    scene.agency.app.stop().await;
}

/// Two instances on one database share a connection's limit: each admits
/// its share (the limit over the live instances their heartbeats count), so
/// together they admit the limit, not twice it, and the refusal says so.
async fn instances_sharing_a_database_share_a_connections_call_limit(backend: Backend) {
    let beat = std::time::Duration::from_millis(50);
    let scene = scene_with(backend, |config| {
        config.proxy_calls_per_minute = 4;
        config.heartbeat_every = beat;
    })
    .await;
    let other = OtherInstance::start(&scene).await;
    let other_url = other.url.clone();
    let live_beats = || async {
        let mut db = scene.agency.app.store.db().await.unwrap();
        let now = credence_store::now();
        let beats = db.list_heartbeats().await.unwrap();
        beats
            .into_iter()
            .filter(|b| b.is_live_at(now))
            .map(|b| b.seen_at)
            .collect::<Vec<_>>()
    };
    wait_until("both instances beat", || async {
        live_beats().await.len() == 2
    })
    .await;
    // Each instance counts the live ones at its beat, after writing its own:
    // once both beat again after both rows were there, both count two.
    let both_there = live_beats().await.into_iter().max().unwrap();
    wait_until("both instances beat again", || async {
        let beats = live_beats().await;
        beats.len() == 2 && beats.iter().all(|seen| *seen > both_there)
    })
    .await;
    let call = |base: String| {
        let client = scene.agency.app.client.clone();
        let url = format!(
            "{base}/api/v2/connections/{}/proxy/v1/contacts",
            scene.connection
        );
        let token = scene.use_token.clone();
        async move {
            let response = client
                .get(url)
                .header("Authorization", format!("Token {token}"))
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let mut admitted = 0;
    for base in [scene.agency.app.url(""), other_url.clone()] {
        let base = base.trim_end_matches('/').to_string();
        for _ in 0..2 {
            let (status, body) = call(base.clone()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            admitted += 1;
        }
        let (status, body) = call(base).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(
            body.contains("its share of the limit of 4 over 2 instances"),
            "{body}"
        );
    }
    assert_eq!(admitted, 4, "the two instances admitted the limit together");
    other.stop().await;
    scene.agency.app.stop().await;
}

/// Panics when `bytes` or `headers` (an answer as the caller got it, whole)
/// hold any of `secrets`.
fn assert_none_of(
    secrets: &[&str],
    what: &str,
    headers: &reqwest::header::HeaderMap,
    bytes: &[u8],
) {
    for secret in secrets {
        let secret = secret.as_bytes();
        assert!(
            !bytes.windows(secret.len()).any(|window| window == secret),
            "a secret came back in the body of {what}"
        );
        for (name, value) in headers {
            assert!(
                !value
                    .as_bytes()
                    .windows(secret.len())
                    .any(|window| window == secret),
                "a secret came back in the {name} header of {what}"
            );
        }
    }
}

async fn a_credential_the_app_echoes_comes_back_masked_and_a_gzip_answer_is_refused(
    backend: Backend,
) {
    let api = ContactsApi::start().await;
    let agency = Agency::start_with(
        backend,
        &[
            ("contacts", contacts_app("contacts", &api)),
            ("contacts-basic", contacts_basic_app("contacts-basic", &api)),
        ],
        |_| {},
    )
    .await;
    let (_, credentials, _) = agency
        .create_request(agency.teammate.id, &["contacts", "contacts-basic"])
        .await;
    for credential in &credentials {
        let (status, body) = agency
            .authorize_with(credential, "authorize", &api.key)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let connections = agency.app.team_connections().await;
    let use_token = agency
        .app
        .token(agency.requester.id, "connections:use")
        .await;
    let bearer = format!("Bearer {}", api.key);
    let basic = format!("Basic {}", api.basic);
    let secrets = [api.key.as_str(), api.basic.as_str()];
    let stars = |n: usize| "*".repeat(n);

    for (app, authorization) in [("contacts", &bearer), ("contacts-basic", &basic)] {
        let connection = connections
            .iter()
            .find(|c| c.app_key == app)
            .expect("the authorized connection");
        let call = |path: &str| {
            agency
                .app
                .client
                .get(agency.app.url(&format!(
                    "/api/v2/connections/{}/proxy{path}",
                    connection.id
                )))
                .header("Authorization", format!("Token {use_token}"))
                // The caller's wish for gzip is not passed on.
                .header("Accept-Encoding", "gzip")
                .send()
        };

        // The key in an error body, in chunks cut inside each echo: the app
        // sends the next one only once the previous came through, so the
        // broker gets each echo in two pieces.
        let mut response = call("/v1/contacts/echo-body?stepwise").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{app}");
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(20), response.chunk())
                .await
                .expect("the broker passes each chunk on");
            let Some(chunk) = next.unwrap() else { break };
            bytes.extend_from_slice(&chunk);
            api.next_step();
        }
        let what = format!("{app}'s echo-body");
        assert_none_of(&secrets, &what, &headers, &bytes);
        assert_eq!(
            headers[reqwest::header::CONTENT_LENGTH],
            bytes.len().to_string().as_str(),
            "{what}: the masks keep the length"
        );
        let body: Value = serde_json::from_slice(&bytes).expect("still JSON");
        assert_eq!(
            body["error"],
            format!("invalid key {}", stars(api.key.len())),
            "{what}"
        );
        assert_eq!(body["again"], stars(api.key.len()), "{what}");
        assert_eq!(body["hint"], "check the key", "{what}");
        assert_eq!(body["pad2"], "-".repeat(300), "{what}");
        let shown = body["authorization"].as_str().unwrap();
        assert!(
            shown.ends_with(&stars(8)) && !shown.contains(&api.key[..8]),
            "{what}: {shown}"
        );
        let seen = api.seen();
        let sent = seen.last().unwrap();
        assert_eq!(
            sent.headers["authorization"],
            authorization.as_str(),
            "{app}"
        );
        assert_eq!(sent.headers["accept-encoding"], "identity", "{app}");

        // The key in headers: the value stays, the key masked.
        let response = call("/v1/contacts/echo-header").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{app}");
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let what = format!("{app}'s echo-header");
        assert_none_of(&secrets, &what, &headers, &bytes);
        assert_eq!(
            headers["x-echo-key"],
            format!("key={}; checked", stars(api.key.len())).as_str(),
            "{what}"
        );
        let echoed = match app {
            "contacts" => format!("Bearer {}", stars(api.key.len())),
            _ => format!("Basic {}", stars(api.basic.len())),
        };
        assert_eq!(headers["x-echo-authorization"], echoed.as_str(), "{what}");
        assert!(headers[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"contacts\""));

        // A compressed answer cannot be read for the key: refused, naming it,
        // and recorded.
        let response = call("/v1/contacts/gzip").await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        let message = body.to_string();
        assert!(
            message.contains("Content-Encoding gzip") && message.contains("identity"),
            "{message}"
        );
        let read_token = agency
            .app
            .token(agency.requester.id, "connections:read")
            .await;
        wait_until("the refused gzip answer is in the usage log", || async {
            let (_, usage) = agency
                .app
                .get_json(
                    &format!("/api/v2/connections/{}/usage", connection.id),
                    &read_token,
                )
                .await;
            usage["usage"].as_array().unwrap().iter().any(|u| {
                u["status"] == 502
                    && u["upstreamStatus"] == 200
                    && u["pathTemplate"] == "/v1/contacts/{id}"
            })
        })
        .await;
    }
    assert_no_secret("the logs", &captured_logs());
    agency.app.stop().await;
}

/// The Python of the MCP client's venv (`scripts/test` makes it).
fn mcp_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("tests/mcp/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which installs the MCP client (tests/mcp/requirements.txt)",
        python.display()
    );
    python
}

async fn an_agent_lists_and_calls_connections_through_mcp_within_the_grant(backend: Backend) {
    let scene = scene(backend).await;
    let response = scene
        .agency
        .app
        .client
        .post(scene.agency.app.url("/mcp"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "no token, no MCP"
    );

    let calls = json!([
        { "name": "list_connections" },
        { "name": "call_connection", "arguments": {
            "connectionId": scene.connection, "method": "GET", "path": "/v1/contacts",
            "query": "q=jane", "consumer": "support-agent" } },
        { "name": "call_connection", "arguments": {
            "connectionId": scene.connection, "method": "DELETE", "path": "/v1/contacts/1" } },
        { "name": "call_connection", "arguments": {
            "connectionId": scene.connection, "method": "GET", "path": "/v1/contacts/echo-body" } },
    ]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run = tokio::process::Command::new(mcp_python())
        .arg(root.join("tests/mcp/client.py"))
        .arg(scene.agency.app.url("/mcp"))
        .arg(&scene.use_token)
        .arg(calls.to_string())
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the MCP client ends")
        .expect("the MCP client runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "MCP client failed: {stderr}");
    assert_no_secret("the MCP client's output", &stdout);
    assert_no_secret("the MCP client's errors", &stderr);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines[0]["tools"],
        json!(["call_connection", "list_connections"])
    );

    let listed: Value = serde_json::from_str(lines[1]["text"].as_str().unwrap()).unwrap();
    let connection = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == scene.connection)
        .expect("the connection is listed");
    let granted: Vec<&str> = connection["grantedModules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(granted, ["searchContacts", "createContact"]);

    assert_eq!(lines[2]["isError"], false, "{}", lines[2]);
    let answer: Value = serde_json::from_str(lines[2]["text"].as_str().unwrap()).unwrap();
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["body"]["contacts"][0]["name"], "Jane Roe");
    // The client makes all its calls before the test reads its output.
    let seen = scene.api.seen();
    assert!(
        seen.iter()
            .any(|c| c.path_and_query == "/v1/contacts?q=jane"),
        "{seen:?}"
    );

    assert_eq!(lines[3]["isError"], true, "{}", lines[3]);
    let refused = lines[3]["text"].as_str().unwrap();
    assert!(
        refused.contains("403") && refused.contains("DELETE") && refused.contains("searchContacts"),
        "{refused}"
    );
    assert!(
        seen.iter().all(|c| c.method != "DELETE"),
        "the refused call was not sent"
    );
    // The app echoes the key: the tool's result has it masked (the output
    // was checked for the key above).
    assert_eq!(lines[4]["isError"], false, "{}", lines[4]);
    let echoed: Value = serde_json::from_str(lines[4]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        echoed["body"]["again"],
        "*".repeat(scene.api.key.len()),
        "{echoed}"
    );
    wait_until("the agent's calls are in the usage log", || async {
        let usage = scene.usage().await;
        usage.len() == 3 && usage.iter().any(|u| u["consumer"] == "support-agent")
    })
    .await;
    scene.agency.app.stop().await;
}

/// The usage writer stores a batch in statements of many rows: a batch
/// longer than one statement holds lands whole, in order, every column as
/// given (the NULLs too).
async fn a_usage_batch_longer_than_one_statement_is_stored_whole(backend: Backend) {
    let app = crate::support::spawn_app(backend).await;
    let rows: Vec<credence_store::NewUsage> = (0..150)
        .map(|i| credence_store::NewUsage {
            occurred_at: credence_store::now(),
            organization_id: 1,
            team_id: 2,
            connection_id: 3,
            credential_id: (i % 2 == 0).then(|| format!("credential-{i}")),
            consumer: (i % 3 == 0).then(|| format!("consumer-{i}")),
            actor_user_id: Some(i),
            actor_label: format!("caller {i}"),
            method: "GET".into(),
            path_template: (i % 5 != 0).then(|| "/v1/contacts/{id}".to_string()),
            status: 200,
            upstream_status: (i % 7 != 0).then_some(200),
            latency_ms: i,
        })
        .collect();
    let mut tx = app.store.begin().await.unwrap();
    tx.insert_usages(&rows).await.unwrap();
    tx.commit().await.unwrap();
    let mut sql = app.sql().await;
    let latencies = sql
        .column::<i64>("SELECT latency_ms FROM connection_usage ORDER BY id")
        .await;
    assert_eq!(latencies, (0..150).collect::<Vec<i64>>());
    let labels = sql
        .column::<String>("SELECT actor_label FROM connection_usage ORDER BY id")
        .await;
    assert_eq!(labels[149], "caller 149");
    let nulls = sql
        .column::<i64>(
            "SELECT COUNT(*) FROM connection_usage WHERE credential_id IS NULL \
             OR consumer IS NULL OR path_template IS NULL OR upstream_status IS NULL",
        )
        .await;
    let expected = (0..150)
        .filter(|i| i % 2 != 0 || i % 3 != 0 || i % 5 == 0 || i % 7 == 0)
        .count() as i64;
    assert_eq!(nulls, vec![expected]);
    let consumers = sql
        .column::<String>(
            "SELECT consumer FROM connection_usage WHERE consumer IS NOT NULL ORDER BY id",
        )
        .await;
    assert_eq!(consumers.len(), 50);
    assert_eq!(consumers[49], "consumer-147");
    app.stop().await;
}

crate::on_both_backends!(
    instances_sharing_a_database_share_a_connections_call_limit,
    a_usage_batch_longer_than_one_statement_is_stored_whole,
    a_credential_the_app_echoes_comes_back_masked_and_a_gzip_answer_is_refused,
    an_agent_lists_and_calls_connections_through_mcp_within_the_grant,
    a_connection_past_its_calls_per_minute_is_answered_429,
    oauth_calls_refresh_an_expired_token_first_and_retry_once_on_401,
    the_usage_of_calls_answered_before_a_graceful_stop_is_stored,
    a_teammate_lists_contacts_through_the_proxy_without_seeing_the_key,
    calls_outside_the_grant_unsafe_paths_and_strangers_are_refused_naming_why,
    redirects_come_back_as_they_are_and_are_not_followed,
    a_revoke_on_one_instance_stops_the_next_call_on_another,
    every_call_is_in_the_usage_log_for_the_team_and_the_recipient,
);
