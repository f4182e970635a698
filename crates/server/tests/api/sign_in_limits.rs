//! Sign-in limits that neither lock everyone out behind a proxy nor let an
//! attacker keep an account's owner out: the client is read from a trusted
//! proxy's `X-Forwarded-For` / `Forwarded` only, IPv6 is counted per /64, an
//! account's owner on a known browser gets in whatever an attacker does, the
//! counters live in the database (shared by instances), and argon2 runs behind
//! a gate. Time is the limits' injected clock: windows end when a test says so.

use crate::helpers::{spawn_app_with_limits, TestApp};
use crate::on_both_backends;
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

/// A browser: keeps cookies, does not follow redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn csrf_token(client: &reqwest::Client, url: &str) -> String {
    let html = client.get(url).send().await.unwrap().text().await.unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("the page has a csrf_token field") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
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

on_both_backends!(
    behind_a_trusted_proxy_two_clients_are_counted_apart,
    a_forwarding_header_from_an_untrusted_peer_is_ignored,
    addresses_of_one_ipv6_64_share_a_counter,
    an_attacker_hammering_an_account_does_not_keep_its_owner_out_of_a_known_browser,
    two_instances_on_one_database_share_the_sign_in_counters,
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gate.admitted() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the third job never queued"
        );
        tokio::task::yield_now().await;
    }
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
