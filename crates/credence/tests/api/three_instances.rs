//! Three instances of one deployment on one database (PostgreSQL, and one
//! SQLite file), behind a client that sends each call to the next instance in
//! turn, as a round-robin load balancer would: a request's whole life works
//! whichever instance answers each step — created, opened by the recipient,
//! authorized through the real OAuth provider and with an API key, used
//! through the broker, reauthorization asked and done, revoked, deleted —
//! while the work every instance does in the background happens once: a due
//! token is refreshed once, a due reminder sent once, every notification
//! delivered once.

use crate::on_both_backends;
use crate::support::{
    assert_no_secret, captured_logs, fast, oauth_app, register_secret, reserve_port, sign_in,
    wait_until, Agency, Instance, ManualClock, OidcProvider, APP,
};
use credence_store::{Backend, OutboxSelection};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How often each instance's background work looks for something to do:
/// often, so that all three race for every due thing.
const EVERY: Duration = Duration::from_millis(20);

/// A client that sends each call to the next instance, and counts which
/// instance answered how many.
struct RoundRobin {
    instances: Vec<String>,
    next: AtomicUsize,
    client: reqwest::Client,
    answered: Mutex<Vec<usize>>,
}

/// A client whose idle connections close well before the server's header
/// read timeout (10 s) would close them under it.
fn short_lived(cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

impl RoundRobin {
    fn new(instances: Vec<String>) -> RoundRobin {
        let count = instances.len();
        RoundRobin {
            instances,
            next: AtomicUsize::new(0),
            client: short_lived(false),
            answered: Mutex::new(vec![0; count]),
        }
    }

    /// The base URL of the instance that takes the next call.
    fn next_instance(&self) -> String {
        let at = self.next.fetch_add(1, Ordering::SeqCst) % self.instances.len();
        self.answered.lock().unwrap()[at] += 1;
        self.instances[at].clone()
    }

    /// `url` (on any instance) sent to the next one instead.
    fn rebase(&self, url: &reqwest::Url) -> String {
        let tail = &url.as_str()[url.origin().ascii_serialization().len()..];
        format!("{}{tail}", self.next_instance())
    }

    /// `method path` with a token on the next instance: status and JSON,
    /// checked against the suite's secrets.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.next_instance());
        let mut request = self
            .client
            .request(method.clone(), &url)
            .header("Authorization", format!("Token {token}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        assert_no_secret(&format!("the answer to {method} {url}"), &body.to_string());
        (status, body)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(Method::POST, path, token, body).await
    }

    /// `GET path` through the broker's proxy of `connection` on the next
    /// instance: status and body text.
    async fn proxy(&self, connection: i64, path: &str, token: &str) -> (StatusCode, String) {
        let url = format!(
            "{}/api/v2/connections/{connection}/proxy{path}",
            self.next_instance()
        );
        let response = self
            .client
            .get(&url)
            .header("Authorization", format!("Token {token}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_no_secret(&format!("the answer to GET {url}"), &body);
        (status, body)
    }
}

fn credential_path(credential: &str, action: &str) -> String {
    format!("/api/v2/credential-requests/credentials/{credential}/{action}")
}

/// The states of the request's credentials as the requester reads them
/// (on the next instance), by app.
async fn states(lb: &RoundRobin, agency: &Agency, request: &str) -> Vec<(String, String)> {
    let (status, body) = lb
        .get(
            &format!("/api/v2/credential-requests/requests/{request}/detail"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut states: Vec<(String, String)> = body["requestDetail"]["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["appName"].as_str().unwrap_or_default().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    states.sort();
    states
}

/// Makes the stored access token of OAuth connection `id` expired, in its
/// sealed values and in the column the background refreshers look at.
async fn expire_access_token(agency: &Agency, id: i64) {
    let connection = agency.app.stored_connection(id).await.unwrap();
    let mut tokens = agency.app.connection_values(&connection).await;
    let past = chrono::Utc::now() - chrono::Duration::minutes(5);
    tokens["expires_at"] = json!(past.to_rfc3339());
    let values = credence::provider::FieldValues(
        tokens
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    SecretString::from(value.as_str().unwrap().to_string()),
                )
            })
            .collect(),
    );
    let secret = connection.secret_id.clone().unwrap();
    let sealed = credence::service::secrets::seal_connection_values(
        &agency.app.vault(),
        connection.id,
        connection.team_id,
        &secret,
        &values,
    )
    .unwrap();
    let mut db = agency.app.db().await;
    db.replace_secret(&secret, sealed.as_str()).await.unwrap();
    drop(db);
    agency
        .app
        .sql()
        .await
        .execute_at(
            &format!("UPDATE connections SET token_expires_at = $1 WHERE id = {id}"),
            past,
        )
        .await;
}

async fn the_whole_lifecycle_works_on_three_instances_and_background_work_happens_once(
    backend: Backend,
) {
    // The provider must know the redirect URI (the deployment's one public
    // address, the first instance's) before Credence starts.
    let port = reserve_port();
    let provider = OidcProvider::start(&[format!("http://127.0.0.1:{port}/oauth/callback")]).await;
    register_secret(&provider.client_secret);
    let client = credence::config::OAuthClient {
        client_id: provider.client_id.clone(),
        client_secret: SecretString::from(provider.client_secret.clone()),
    };
    let clock = ManualClock::starting_now();
    let agency = Agency::start_with(backend, &[(APP, oauth_app(&provider))], |config| {
        config.listen = ([127, 0, 0, 1], port).into();
        config.public_url = Some(format!("http://127.0.0.1:{port}"));
        config.oauth_clients.insert(APP.into(), client);
        config.oauth_refresh_every = Some(EVERY);
        config.jobs = credence::jobs::Settings {
            every: Some(EVERY),
            ..fast(clock.clock())
        };
        config.reminders = credence::jobs::reminders::Settings {
            every: Some(EVERY),
            clock: clock.clock(),
            ..Default::default()
        };
    })
    .await;
    let app = &agency.app;
    // The same configuration (the public address included), each on a port
    // of its own.
    let second = Instance::start(app, |_| {}).await;
    let third = Instance::start(app, |_| {}).await;
    let lb = RoundRobin::new(vec![
        app.address.clone(),
        second.address.clone(),
        third.address.clone(),
    ]);
    app.wait_for_outbox_delivered().await;

    // The requester asks Tom for the OAuth app and an API-key app.
    let (status, created) = lb
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.requester_token,
            Some(json!({
                "name": "Onboarding Acme",
                "teamId": app.team,
                "credentials": [
                    { "appName": APP, "appModules": ["searchContacts"] },
                    { "appName": "acme-crm", "appModules": ["searchContacts"] },
                ],
                "provider": { "providerMakeUserId": agency.teammate.id },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let request = created["request"]["id"].as_str().unwrap().to_string();
    let credential = |app_name: &str| {
        created["request"]["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["appName"] == app_name)
            .unwrap_or_else(|| panic!("no {app_name} credential in {created}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (oauth, api_key) = (credential(APP), credential("acme-crm"));

    // Tom opens it: in his received list, then its detail, then its page in
    // his browser.
    let (status, body) = lb
        .get(
            "/api/v2/credential-requests/received",
            &agency.teammate_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requests"][0]["id"], request.as_str(), "{body}");
    let (status, body) = lb
        .get(
            &format!("/api/v2/credential-requests/requests/{request}/detail"),
            &agency.teammate_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tom = short_lived(true);
    let signed = sign_in(app, &tom, &agency.teammate.email, &agency.teammate.password).await;
    assert!(signed.status().is_redirection(), "{}", signed.status());
    let page = tom
        .get(format!("{}/received/{request}", lb.next_instance()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);

    // A day passes with nothing authorized: the reminder is due, and the
    // three scans send it once. (Everything queued is delivered first: the
    // runners' leases run on the same clock.)
    app.wait_for_outbox_delivered().await;
    clock.advance(Duration::from_secs(24 * 3600 + 5 * 60));
    let reminders = || async {
        app.outbox_jobs(OutboxSelection::All)
            .await
            .into_iter()
            .filter(|job| job.kind == "credential_request.reminder")
            .count()
    };
    wait_until("the reminder is queued", || async { reminders().await > 0 }).await;

    // The OAuth credential: the consent page, then the provider's redirect
    // back, which the load balancer sends to whichever instance is next.
    let (status, body) = lb
        .post(
            &credential_path(&oauth, "authorize"),
            &agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = provider
        .consent(body["redirectUri"].as_str().unwrap(), "tom", true)
        .await;
    register_secret(outcome.code.as_deref().expect("a code"));
    let response = tom.get(lb.rebase(&outcome.redirect)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(provider.token_requests("authorization_code").await, 1);

    // The API-key credential.
    let first_key = format!("acme-key-{}", uuid::Uuid::new_v4().simple());
    agency.upstream.accept(&first_key);
    let (status, body) = lb
        .post(
            &credential_path(&api_key, "authorize"),
            &agency.teammate_token,
            Some(json!({ "data": { "apiKey": first_key } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        states(&lb, &agency, &request).await,
        vec![
            ("acme-crm".to_string(), "authorized".to_string()),
            (APP.to_string(), "authorized".to_string()),
        ]
    );

    // The requester's team uses both through the broker, on every instance.
    let use_token = app.token(agency.requester.id, "connections:use").await;
    let oauth_connection = agency
        .app
        .stored_credential(&oauth)
        .await
        .connection_id
        .expect("a connection");
    let key_connection = agency
        .app
        .stored_credential(&api_key)
        .await
        .connection_id
        .expect("a connection");
    for _ in 0..3 {
        let (status, body) = lb.proxy(oauth_connection, "/me", &use_token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"sub\""), "{body}");
        let (status, body) = lb.proxy(key_connection, "/v1/contacts", &use_token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("Jane Roe"), "{body}");
    }

    // The access token comes due. The provider holds the first refresh
    // while the other instances' refreshers find it due too; one refresh
    // reaches the provider, the others find the token it stored.
    let refreshes = provider.token_requests("refresh_token").await;
    assert_eq!(refreshes, 0);
    provider.hold_token_requests(true).await;
    expire_access_token(&agency, oauth_connection).await;
    provider.token_request_held().await;
    // Meanwhile every instance answers (and keeps its refresher running).
    for _ in 0..6 {
        assert_eq!(states(&lb, &agency, &request).await.len(), 2);
    }
    provider.hold_token_requests(false).await;
    wait_until("the connection is refreshed", || async {
        let stored = app.stored_connection(oauth_connection).await.unwrap();
        stored.refreshed_at.is_some()
            && stored
                .token_expires_at
                .is_some_and(|at| at > chrono::Utc::now())
    })
    .await;
    let (status, body) = lb.proxy(oauth_connection, "/me", &use_token).await;
    assert_eq!(status, StatusCode::OK, "with the refreshed token: {body}");

    // The app stops taking the key: the requester asks for a new one, Tom
    // gives it.
    agency.upstream.reject(&first_key);
    let (status, body) = lb.proxy(key_connection, "/v1/contacts", &use_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = lb
        .post(
            &credential_path(&api_key, "request-reauthorize"),
            &agency.requester_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second_key = format!("acme-key-{}", uuid::Uuid::new_v4().simple());
    agency.upstream.accept(&second_key);
    let (status, body) = lb
        .post(
            &credential_path(&api_key, "reauthorize"),
            &agency.teammate_token,
            Some(json!({ "data": { "apiKey": second_key } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key_connection = agency
        .app
        .stored_credential(&api_key)
        .await
        .connection_id
        .expect("a connection");
    for _ in 0..3 {
        let (status, body) = lb.proxy(key_connection, "/v1/contacts", &use_token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // Tom revokes the OAuth credential: the next call, on another instance,
    // is refused, and the grant is revoked at the provider.
    let tokens = app
        .connection_values(&app.stored_connection(oauth_connection).await.unwrap())
        .await;
    let (status, body) = lb
        .post(
            &credential_path(&oauth, "revoke"),
            &agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = lb.proxy(oauth_connection, "/me", &use_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(provider.introspect(access).await["active"], false);

    // The requester deletes the request: gone on every instance.
    let (status, body) = lb
        .send(
            Method::DELETE,
            &format!("/api/v2/credential-requests/requests/{request}?confirmed=true"),
            &agency.requester_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..3 {
        let (status, body) = lb
            .get(
                &format!("/api/v2/credential-requests/requests/{request}"),
                &agency.requester_token,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (status, body) = lb.proxy(key_connection, "/v1/contacts", &use_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // What the three did in the background, each once: one refresh, one
    // reminder (the next is two days off), every notification delivered once.
    assert_eq!(
        provider.token_requests("refresh_token").await,
        refreshes + 1,
        "the due token was refreshed once"
    );
    assert_eq!(reminders().await, 1, "the due reminder was sent once");
    app.wait_for_outbox_delivered().await;
    let jobs = app.outbox_jobs(OutboxSelection::All).await;
    let deliveries = app.mailbox_deliveries().await;
    for job in &jobs {
        assert_eq!(
            (deliveries.get(&job.id).copied(), job.attempts),
            (Some(1), 1),
            "{} to {} is delivered once",
            job.kind,
            job.recipient_email
        );
    }
    assert_eq!(deliveries.len(), jobs.len(), "{deliveries:?}");
    // One notification per change that tells someone, whichever instance
    // made the change and whichever delivered it.
    let mut told: Vec<(&str, &str)> = jobs
        .iter()
        .map(|job| (job.kind.as_str(), job.recipient_email.as_str()))
        .collect();
    told.sort();
    let (rita, tom) = (
        agency.requester.email.as_str(),
        agency.teammate.email.as_str(),
    );
    assert_eq!(
        told,
        vec![
            ("credential.authorized", rita),
            ("credential.authorized", rita),
            ("credential.reauthorization_requested", tom),
            ("credential.reauthorized", rita),
            ("credential.reauthorized", tom),
            ("credential.revoked", rita),
            ("credential_request.received", tom),
            ("credential_request.reminder", tom),
            ("feature.granted", app.admin_email.as_str()),
        ]
    );
    let answered = lb.answered.lock().unwrap().clone();
    assert!(answered.iter().all(|n| *n >= 10), "{answered:?}");

    assert_no_secret("the logs", &captured_logs());
    second.stop().await;
    third.stop().await;
    agency.app.stop().await;
}

on_both_backends!(the_whole_lifecycle_works_on_three_instances_and_background_work_happens_once);
