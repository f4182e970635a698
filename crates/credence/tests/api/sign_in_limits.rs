//! Sign-in limits that neither lock everyone out behind a proxy nor let an
//! attacker keep an account's owner out: the client is read from a trusted
//! proxy's `X-Forwarded-For` / `Forwarded` only, IPv6 is counted per /64, an
//! account's owner on a known browser gets in whatever an attacker does, the
//! counters live in the database (shared by instances), and argon2 runs behind
//! a gate. Time is the limits' injected clock: windows end when a test says so.

use crate::on_both_backends;
use crate::support::{browser, csrf_of, spawn_app_with_limits, wait_until, TestApp};
use chrono::{DateTime, Utc};
use credence::http::web::SignInLimits;
use credence_store::Backend;
use reqwest::StatusCode;
use std::sync::{Arc, Mutex};

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn new() -> TestClock {
        TestClock(Arc::new(Mutex::new(Utc::now())))
    }

    fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }

    /// The default limits, counting time by this clock.
    fn limits(&self) -> SignInLimits {
        let clock = self.0.clone();
        SignInLimits::default().with_clock(move || *clock.lock().unwrap())
    }
}

/// Credence behind a proxy at 127.0.0.1 (the test itself), so that a test's
/// `X-Forwarded-For` stands for the client a real load balancer would name.
async fn behind_a_proxy(backend: Backend, clock: &TestClock, proxies: &[&str]) -> TestApp {
    let proxies: Vec<String> = proxies.iter().map(|p| p.to_string()).collect();
    spawn_app_with_limits(
        backend,
        move |config| {
            config.trusted_proxies = credence::config::parse_trusted_proxies(&proxies).unwrap()
        },
        clock.limits(),
    )
    .await
}

async fn csrf_token(client: &reqwest::Client, url: &str) -> String {
    csrf_of(&client.get(url).send().await.unwrap().text().await.unwrap())
}

/// Posts the sign-in form to `base` with `header: value` (a forwarding header) when given.
async fn sign_in_at(
    base: &str,
    client: &reqwest::Client,
    email: &str,
    password: &str,
    header: Option<(&str, &str)>,
) -> reqwest::Response {
    let url = format!("{base}/sign-in");
    let csrf = csrf_token(client, &url).await;
    let mut post = client.post(&url).form(&[
        ("email", email),
        ("password", password),
        ("csrf_token", &csrf),
    ]);
    if let Some((name, value)) = header {
        post = post.header(name, value);
    }
    post.send().await.unwrap()
}

/// Signs in through the proxy as the client at `client_address`.
async fn sign_in_from(
    app: &TestApp,
    client: &reqwest::Client,
    client_address: &str,
    email: &str,
    password: &str,
) -> StatusCode {
    sign_in_at(
        &app.address,
        client,
        email,
        password,
        Some(("X-Forwarded-For", client_address)),
    )
    .await
    .status()
}

const WRONG: &str = "not the password at all";

async fn behind_a_trusted_proxy_two_clients_are_counted_apart(backend: Backend) {
    let clock = TestClock::new();
    let app = behind_a_proxy(backend, &clock, &["127.0.0.1"]).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let mallory = browser();
    for attempt in 1..=20 {
        let email = format!("guess{attempt}@corp.example");
        assert_eq!(
            sign_in_from(&app, &mallory, "203.0.113.7", &email, WRONG).await,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    assert_eq!(
        sign_in_from(&app, &mallory, "203.0.113.7", "guess21@corp.example", WRONG).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the 21st attempt from one client is refused"
    );
    // What the client wrote left of the proxy's own entry is not believed.
    assert_eq!(
        sign_in_from(
            &app,
            &mallory,
            "198.51.100.99, 203.0.113.7",
            "guess22@corp.example",
            WRONG
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
    );
    // Another client behind the same proxy is not locked out with the first.
    assert_eq!(
        sign_in_from(&app, &browser(), "203.0.113.8", &ann.email, &ann.password).await,
        StatusCode::SEE_OTHER
    );
    // When the window is over, the first client may try again.
    clock.advance(SignInLimits::default().window);
    assert_eq!(
        sign_in_from(&app, &mallory, "203.0.113.7", "guess23@corp.example", WRONG).await,
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

async fn a_forwarding_header_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let clock = TestClock::new();
    // The peer (127.0.0.1) is not among the trusted proxies.
    let app = behind_a_proxy(backend, &clock, &["10.0.0.0/8"]).await;
    let mallory = browser();
    for attempt in 1..=20 {
        let email = format!("guess{attempt}@corp.example");
        let claimed = format!("203.0.113.{attempt}");
        let header = if attempt % 2 == 0 {
            ("X-Forwarded-For", claimed.clone())
        } else {
            ("Forwarded", format!("for={claimed}"))
        };
        let response = sign_in_at(
            &app.address,
            &mallory,
            &email,
            WRONG,
            Some((header.0, &header.1)),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    assert_eq!(
        sign_in_from(
            &app,
            &mallory,
            "203.0.113.250",
            "guess21@corp.example",
            WRONG
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "a new claimed address does not escape the peer's limit"
    );
    app.stop().await;
}

async fn addresses_of_one_ipv6_64_share_a_counter(backend: Backend) {
    let clock = TestClock::new();
    let app = behind_a_proxy(backend, &clock, &["127.0.0.1"]).await;
    let mallory = browser();
    for attempt in 1..=20 {
        let email = format!("guess{attempt}@corp.example");
        let address = format!("2001:db8:1:2:{attempt:x}::{attempt:x}");
        assert_eq!(
            sign_in_from(&app, &mallory, &address, &email, WRONG).await,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    assert_eq!(
        sign_in_from(
            &app,
            &mallory,
            "[2001:db8:1:2:ffff:ffff:ffff:fffe]:4711",
            "guess21@corp.example",
            WRONG
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "another address of the same /64 is the same source"
    );
    assert_eq!(
        sign_in_from(
            &app,
            &mallory,
            "2001:db8:1:3::1",
            "guess22@corp.example",
            WRONG
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "the next /64 is another source"
    );
    app.stop().await;
}

async fn an_attacker_hammering_an_account_does_not_keep_its_owner_out_of_a_known_browser(
    backend: Backend,
) {
    let clock = TestClock::new();
    let app = behind_a_proxy(backend, &clock, &["127.0.0.1"]).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let ann_browser = browser();
    let first = sign_in_at(
        &app.address,
        &ann_browser,
        &ann.email,
        &ann.password,
        Some(("X-Forwarded-For", "198.51.100.10")),
    )
    .await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let cookie = first
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("credence_browser="))
        .expect("a sign-in marks the browser as known")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Path=/sign-in"),
        "{cookie}"
    );

    // From one source the attacker is slowed down after five guesses…
    let mallory = browser();
    for attempt in 1..=5 {
        assert_eq!(
            sign_in_from(&app, &mallory, "203.0.113.7", &ann.email, WRONG).await,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    assert_eq!(
        sign_in_from(&app, &mallory, "203.0.113.7", &ann.email, WRONG).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // …and from many sources the account's ceiling stops unknown browsers.
    let mut statuses = Vec::new();
    for source in 20..40 {
        let address = format!("203.0.113.{source}");
        statuses.push(sign_in_from(&app, &browser(), &address, &ann.email, WRONG).await);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        5,
        "ten guesses in all reach the password check: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));

    // Ann's own browser still signs in, from her address or even the attacker's.
    assert_eq!(
        sign_in_from(
            &app,
            &ann_browser,
            "198.51.100.10",
            &ann.email,
            &ann.password
        )
        .await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        sign_in_from(&app, &ann_browser, "203.0.113.7", &ann.email, &ann.password).await,
        StatusCode::SEE_OTHER
    );
    // A browser she never signed in on waits for the window, with Retry-After.
    let response = sign_in_at(
        &app.address,
        &browser(),
        &ann.email,
        &ann.password,
        Some(("X-Forwarded-For", "198.51.100.11")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    // Ann's browser token does not open another account's ceiling.
    let bob = app
        .add_person("bob@corp.example", app.organization, "member", None)
        .await;
    for source in 50..61 {
        let address = format!("203.0.113.{source}");
        sign_in_from(&app, &browser(), &address, &bob.email, WRONG).await;
    }
    assert_eq!(
        sign_in_from(
            &app,
            &ann_browser,
            "198.51.100.10",
            &bob.email,
            &bob.password
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.stop().await;
}

async fn two_instances_on_one_database_share_the_sign_in_counters(backend: Backend) {
    let clock = TestClock::new();
    let app = behind_a_proxy(backend, &clock, &["127.0.0.1"]).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let mut config = app.config.clone();
    config.listen = ([127, 0, 0, 1], 0).into();
    let second = credence::Application::build_with_limits(config, clock.limits())
        .await
        .expect("a second instance builds");
    let second_address = format!("http://127.0.0.1:{}", second.port());
    let (stop_second, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(second.run_until(async {
        let _ = stopped.await;
    }));

    let mallory = browser();
    let forwarded = Some(("X-Forwarded-For", "203.0.113.7"));
    for (attempt, base) in [
        &app.address,
        &second_address,
        &app.address,
        &second_address,
        &app.address,
    ]
    .into_iter()
    .enumerate()
    {
        let response = sign_in_at(base, &mallory, &ann.email, WRONG, forwarded).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {}",
            attempt + 1
        );
    }
    for base in [&second_address, &app.address] {
        let response = sign_in_at(base, &mallory, &ann.email, &ann.password, forwarded).await;
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "five guesses spread over two instances reach the limit on {base}"
        );
    }
    let _ = stop_second.send(());
    second.await.unwrap().unwrap();
    app.stop().await;
}

/// Posts the sign-in form through the proxy with these raw `X-Forwarded-For`
/// bytes (which may hold obs-text, as a client may send).
async fn sign_in_forwarded_bytes(
    app: &TestApp,
    client: &reqwest::Client,
    forwarded: &[u8],
    email: &str,
    password: &str,
) -> StatusCode {
    let url = app.url("/sign-in");
    let csrf = csrf_token(client, &url).await;
    client
        .post(&url)
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", &csrf),
        ])
        .header(
            "X-Forwarded-For",
            reqwest::header::HeaderValue::from_bytes(forwarded).unwrap(),
        )
        .send()
        .await
        .unwrap()
        .status()
}

async fn a_junk_byte_in_x_forwarded_for_does_not_put_everyone_behind_the_proxy_in_one_bucket(
    backend: Backend,
) {
    let clock = TestClock::new();
    let app = behind_a_proxy(backend, &clock, &["127.0.0.1"]).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    // The load balancer appended the real client to the line the client began
    // with a byte that is not visible ASCII.
    let mallory = browser();
    for attempt in 1..=20 {
        let email = format!("guess{attempt}@corp.example");
        assert_eq!(
            sign_in_forwarded_bytes(&app, &mallory, b"\x80, 203.0.113.7", &email, WRONG).await,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    assert_eq!(
        sign_in_forwarded_bytes(
            &app,
            &mallory,
            b"\x80, 203.0.113.7",
            "guess21@corp.example",
            WRONG
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "the client is still counted by its own address"
    );
    assert_eq!(
        sign_in_forwarded_bytes(
            &app,
            &browser(),
            b"\xff\x80, 203.0.113.8",
            &ann.email,
            &ann.password
        )
        .await,
        StatusCode::SEE_OTHER,
        "another client behind the proxy is not in the first one's bucket"
    );
    app.stop().await;
}

/// A hashing gate of one turn and no queue, and a job holding that turn until
/// the returned sender is dropped.
async fn a_full_hashing_gate() -> (
    Arc<credence::service::password_hashing::HashingGate>,
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let gate = Arc::new(credence::service::password_hashing::HashingGate::new(1, 0));
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, is_started) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let gate = gate.clone();
        tokio::spawn(async move {
            gate.try_run(move || {
                let _ = started.send(());
                // Holds the turn, like a slow hash, until the test lets go.
                let _ = released.recv();
            })
            .await
            .expect("the first job gets the gate's turn");
        })
    };
    is_started.await.unwrap();
    assert_eq!(gate.admitted(), 1);
    (gate, release, holder)
}

/// Waits for `request` with a deadline: a request queued behind a full
/// hashing gate would never come back.
async fn answered<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(20), request)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer while the hashing gate is full"))
}

/// The CSRF token of a page, from a browser without a session.
async fn csrf_of_sign_in(app: &TestApp, client: &reqwest::Client) -> String {
    csrf_token(client, &app.url("/sign-in")).await
}

/// Seeds an open invitation of `email` to the app's organization and team;
/// returns the link's token.
async fn invite(app: &TestApp, email: &str) -> String {
    let token = credence::service::random_token();
    let admin = app
        .db()
        .await
        .find_user_by_email(&app.admin_email)
        .await
        .unwrap()
        .unwrap();
    app.db()
        .await
        .insert_invitation(
            app.organization,
            Some(app.team),
            email,
            "Cleo Client",
            credence_domain::OrgRole::Guest,
            Some(credence_domain::TeamRole::Member),
            &credence::service::token_hash(&token),
            admin.id,
            None,
            Utc::now() + chrono::Duration::days(1),
        )
        .await
        .unwrap();
    token
}

async fn post_invitation(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    password: &str,
) -> reqwest::Response {
    let csrf = csrf_of_sign_in(app, client).await;
    client
        .post(app.url(&format!("/invitations/{token}")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "Cleo Client"),
            ("password", password),
            ("password_again", password),
        ])
        .send()
        .await
        .unwrap()
}

async fn post_setup(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    password: &str,
) -> reqwest::Response {
    let csrf = csrf_of_sign_in(app, client).await;
    client
        .post(app.url(&format!("/setup/{token}")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("password", password),
            ("password_again", password),
        ])
        .send()
        .await
        .unwrap()
}

fn assert_busy(what: &str, response: &reqwest::Response) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert_eq!(response.headers()["retry-after"], "1", "{what}");
}

async fn an_unknown_invitation_costs_no_hash_and_every_hash_is_refused_busy_past_the_gate(
    backend: Backend,
) {
    let clock = TestClock::new();
    let (gate, release, holder) = a_full_hashing_gate().await;
    let app = spawn_app_with_limits(
        backend,
        |_| {},
        clock.limits().with_hashing_gate(gate.clone()),
    )
    .await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let invitation = invite(&app, "cleo@client.example").await;
    let client = browser();
    let password = "cleo's long enough password";

    // A made-up invitation is refused without waiting for a turn of the gate.
    let response = answered(
        "an unknown invitation",
        post_invitation(&app, &client, "not-an-invitation", password),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Every hash past the gate's bound is refused at once with Retry-After:
    // a sign-in, a real invitation's new password, a setup link's.
    let response = answered(
        "a sign-in",
        sign_in_at(&app.address, &client, &ann.email, &ann.password, None),
    )
    .await;
    assert_busy("a sign-in", &response);
    let response = answered(
        "an invitation",
        post_invitation(&app, &client, &invitation, password),
    )
    .await;
    assert_busy("an invitation", &response);
    let response = answered(
        "a setup link",
        post_setup(&app, &client, &app.setup_token, password),
    )
    .await;
    assert_busy("a setup link", &response);
    assert_eq!(gate.admitted(), 1, "nothing queued behind the full gate");

    // Nothing was spent: once the gate is free, all three go through.
    drop(release);
    holder.await.unwrap();
    assert_eq!(
        sign_in_at(&app.address, &browser(), &ann.email, &ann.password, None)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        post_invitation(&app, &browser(), &invitation, password)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        post_setup(&app, &browser(), &app.setup_token, password)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

/// The `credence_browser` cookie a response sets, if any.
fn known_browser_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("credence_browser="))
        .map(str::to_string)
}

/// Guesses at `email` from new browsers at new sources until the account's
/// ceiling for unknown browsers answers 429.
async fn hammer_until_the_account_ceiling(app: &TestApp, email: &str) {
    for source in 100..130 {
        let address = format!("203.0.113.{source}");
        if sign_in_from(app, &browser(), &address, email, WRONG).await
            == StatusCode::TOO_MANY_REQUESTS
        {
            return;
        }
    }
    panic!("the account's ceiling never answered 429");
}

async fn signing_in_by_setup_link_or_invitation_marks_the_browser_as_known(backend: Backend) {
    let clock = TestClock::new();
    let app = behind_a_proxy(backend, &clock, &["127.0.0.1"]).await;
    let password = "a long enough password";

    let admin_browser = browser();
    let response = post_setup(&app, &admin_browser, &app.setup_token, password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = known_browser_cookie(&response).expect("a setup link marks the browser");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Path=/sign-in"),
        "{cookie}"
    );

    let cleo_browser = browser();
    let invitation = invite(&app, "cleo@client.example").await;
    let response = post_invitation(&app, &cleo_browser, &invitation, password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    known_browser_cookie(&response).expect("accepting an invitation marks the browser");

    // Attackers reach both accounts' ceilings; their owners still get in on
    // the browsers they came in with.
    for (email, owner) in [
        (app.admin_email.clone(), &admin_browser),
        ("cleo@client.example".to_string(), &cleo_browser),
    ] {
        hammer_until_the_account_ceiling(&app, &email).await;
        assert_eq!(
            sign_in_from(&app, &browser(), "198.51.100.20", &email, password).await,
            StatusCode::TOO_MANY_REQUESTS,
            "an unknown browser waits"
        );
        assert_eq!(
            sign_in_from(&app, owner, "198.51.100.21", &email, password).await,
            StatusCode::SEE_OTHER,
            "{email} signs in on the browser they came in with"
        );
    }
    app.stop().await;
}

async fn a_password_reset_by_setup_link_forgets_the_browsers_known_before(backend: Backend) {
    let clock = TestClock::new();
    let app = behind_a_proxy(backend, &clock, &["127.0.0.1"]).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    // A thief who had Ann's password signed in on their browser.
    let thief = browser();
    assert_eq!(
        sign_in_from(&app, &thief, "198.51.100.66", &ann.email, &ann.password).await,
        StatusCode::SEE_OTHER
    );
    // Ann resets her password with a setup link from the operator.
    let (_, token) = credence::service::identity::new_setup_link(&app.store, &ann.email)
        .await
        .unwrap();
    let own = browser();
    let new_password = "ann's brand new long password";
    assert_eq!(
        post_setup(&app, &own, &token, new_password).await.status(),
        StatusCode::SEE_OTHER
    );

    // Past the account's ceiling the thief's browser is an unknown one: it no
    // longer has its own tries at the new password.
    hammer_until_the_account_ceiling(&app, &ann.email).await;
    assert_eq!(
        sign_in_from(&app, &thief, "198.51.100.66", &ann.email, WRONG).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the thief's browser is no longer known"
    );
    assert_eq!(
        sign_in_from(&app, &own, "198.51.100.10", &ann.email, new_password).await,
        StatusCode::SEE_OTHER,
        "the browser Ann reset on is"
    );
    app.stop().await;
}

/// A raw connection to the app's database, to look at what is stored.
async fn stored_counter_keys(app: &TestApp) -> Vec<String> {
    app.sql()
        .await
        .column("SELECT key FROM sign_in_counters")
        .await
}

async fn a_password_typed_into_the_email_field_is_not_a_plain_hash_in_the_counters(
    backend: Backend,
) {
    let clock = TestClock::new();
    let app = behind_a_proxy(backend, &clock, &["127.0.0.1"]).await;
    let typed = "correct horse battery staple";
    assert_eq!(
        sign_in_from(&app, &browser(), "203.0.113.7", typed, WRONG).await,
        StatusCode::UNAUTHORIZED
    );
    let keys = stored_counter_keys(&app).await;
    assert_eq!(
        keys.len(),
        3,
        "source, account at source, account: {keys:?}"
    );
    // What anyone could compute from a guess without the server's key.
    let guessable = [
        credence::service::token_hash(&format!("account\n{typed}")),
        credence::service::token_hash(&format!("account at source\n{typed}\n203.0.113.7")),
        credence::service::token_hash("source\n203.0.113.7"),
    ];
    for key in &keys {
        assert!(
            !guessable.contains(key),
            "{key} is a plain hash of what was typed"
        );
        assert!(!key.contains("correct"), "{key}");
    }
    app.stop().await;
}

on_both_backends!(
    behind_a_trusted_proxy_two_clients_are_counted_apart,
    a_forwarding_header_from_an_untrusted_peer_is_ignored,
    addresses_of_one_ipv6_64_share_a_counter,
    an_attacker_hammering_an_account_does_not_keep_its_owner_out_of_a_known_browser,
    two_instances_on_one_database_share_the_sign_in_counters,
    a_junk_byte_in_x_forwarded_for_does_not_put_everyone_behind_the_proxy_in_one_bucket,
    an_unknown_invitation_costs_no_hash_and_every_hash_is_refused_busy_past_the_gate,
    signing_in_by_setup_link_or_invitation_marks_the_browser_as_known,
    a_password_reset_by_setup_link_forgets_the_browsers_known_before,
    a_password_typed_into_the_email_field_is_not_a_plain_hash_in_the_counters,
);

/// No database here: the gate is the process's, in front of argon2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hashing_gate_bounds_concurrent_hashes_and_answers_busy_past_its_queue() {
    use credence::service::password_hashing::{HashingError, HashingGate};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Condvar;

    let gate = Arc::new(HashingGate::new(2, 1));
    let running = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let released = Arc::new((Mutex::new(false), Condvar::new()));
    let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let (gate, running, most_at_once, released, started) = (
            gate.clone(),
            running.clone(),
            most_at_once.clone(),
            released.clone(),
            started.clone(),
        );
        jobs.push(tokio::spawn(async move {
            gate.try_run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most_at_once.fetch_max(now, Ordering::SeqCst);
                let _ = started.send(());
                // Holds its turn, like a slow hash, until the test lets go.
                let (lock, condition) = &*released;
                let mut go = lock.lock().unwrap();
                while !*go {
                    go = condition.wait(go).unwrap();
                }
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .await
        }));
    }
    // Two run; the third waits its turn.
    started_rx.recv().await.unwrap();
    started_rx.recv().await.unwrap();
    wait_until("the third job queued", || async { gate.admitted() >= 3 }).await;
    assert_eq!(running.load(Ordering::SeqCst), 2);
    // A fourth is turned away at once rather than queued without bound.
    assert!(matches!(gate.try_run(|| ()).await, Err(HashingError::Busy)));

    {
        let (lock, condition) = &*released;
        *lock.lock().unwrap() = true;
        condition.notify_all();
    }
    for job in jobs {
        job.await.unwrap().expect("an admitted job runs");
    }
    assert_eq!(most_at_once.load(Ordering::SeqCst), 2);
    assert_eq!(gate.admitted(), 0);
    gate.try_run(|| ()).await.expect("free turns again");
}
