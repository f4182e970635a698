//! The web's defences against other sites and slow or hostile peers: renewing a
//! connection takes a CSRF-checked post from our own page (a cross-site GET
//! starts nothing); every answer forbids framing, sniffing, `Referer` and
//! caching; a CSRF token is bound to its session and its cookie is `__Host-`
//! over https; the HTTP client connects only to the addresses it checked; a
//! client that dawdles over its headers or body is cut off.

use crate::on_both_backends;
use crate::support::{api_key_app, Agency};
use crate::support::{
    csrf_of, location, no_redirects, register_secret, set_cookie, signed_in, spawn_app,
    spawn_app_with, Person, TestApp,
};
use crate::support::{world, APP};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WRITE: &str = "connections:read,connections:write";

/// A browser's cookies, kept by hand (so that a test can mix them): the CSRF
/// cookie and the session cookie, as `name=value`.
struct Cookies {
    csrf: String,
    session: String,
}

impl Cookies {
    fn header(&self) -> String {
        format!("{}; {}", self.csrf, self.session)
    }
}

/// Signs `person` in from a fresh browser and returns its cookies.
async fn sign_in_by_hand(app: &TestApp, person: &Person, csrf_cookie_name: &str) -> Cookies {
    let client = no_redirects();
    let page = client.get(app.url("/sign-in")).send().await.unwrap();
    let csrf = set_cookie(&page, csrf_cookie_name)
        .expect("a CSRF cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = csrf_of(&page.text().await.unwrap());
    let response = client
        .post(app.url("/sign-in"))
        .header("Cookie", &csrf)
        .form(&[
            ("email", person.email.as_str()),
            ("password", person.password.as_str()),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "sign-in");
    let session = set_cookie(&response, "credence_session")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    Cookies { csrf, session }
}

/// The CSRF token of the home page, as the browser with `cookies` sees it.
async fn home_token(app: &TestApp, cookies: &Cookies) -> String {
    let page = no_redirects()
        .get(app.url("/"))
        .header("Cookie", cookies.header())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK, "signed in");
    csrf_of(&page.text().await.unwrap())
}

/// A page's GET used to send the browser straight to the provider, so any site
/// could start a renewal in a signed-in browser (and a provider that remembers
/// the consent would finish it unasked). Now the GET is a page with a form,
/// and only that form's post, CSRF-checked, starts the consent.
async fn renewing_a_connection_takes_our_pages_csrf_checked_post_not_a_cross_site_get(
    backend: Backend,
) {
    let world = world(backend, true).await;
    let agency = &world.agency;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let rita = signed_in(&world.agency.app, &agency.requester).await;
    let response = agency
        .app
        .with_token(
            reqwest::Method::POST,
            &format!("/api/v2/connections?teamId={}", agency.app.team),
            &token,
        )
        .json(&json!({ "accountType": APP, "modules": ["searchContacts"], "scopes": ["profile"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    let consent = body["redirectUri"].as_str().unwrap().to_string();
    let outcome = world.provider.consent(&consent, "rita", true).await;
    register_secret(outcome.code.as_deref().unwrap());
    let response = rita.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = agency
        .app
        .with_token(
            reqwest::Method::GET,
            &format!("/api/v2/connections?teamId={}", agency.app.team),
            &token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = listed["connections"][0]["id"]
        .as_i64()
        .expect("the connection");
    let path = format!("/oauth/reauth/{id}");

    // The GET (what a link or an <img> on another site sends) is a page.
    let page = rita.get(agency.app.url(&path)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers().get("location").is_none());
    let page = page.text().await.unwrap();
    assert!(
        page.contains(&format!("method=\"post\" action=\"{path}\"")),
        "{page}"
    );
    assert!(page.contains("Continue with Local OAuth"), "{page}");
    let csrf = csrf_of(&page);

    // A post without our token, or with another one, starts nothing.
    let post =
        |fields: Vec<(&'static str, String)>| rita.post(agency.app.url(&path)).form(&fields).send();
    let response = post(vec![]).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = post(vec![("csrf_token", "forged".into())]).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let other_session = signed_in(&world.agency.app, &agency.requester).await;
    let other_page = other_session
        .get(agency.app.url(&path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = post(vec![("csrf_token", csrf_of(&other_page))])
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // The page's own form goes to the provider.
    let response = post(vec![("csrf_token", csrf)]).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&response).starts_with(&world.provider.authorization_endpoint),
        "{}",
        location(&response)
    );
    world.agency.app.stop().await;
}

/// The headers every answer must carry, and their values.
const EXPECTED_HEADERS: [(&str, &str); 5] = [
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// The authorize and accept buttons could be framed by another site
/// (clickjacking), link pages leaked their token in `Referer`, and private
/// pages could be cached. Every route of the web router (signed in and not,
/// GET and POST, answered or refused), the JSON API, the operational endpoints
/// and the fallback now carry the headers.
async fn every_page_and_api_answer_forbids_framing_sniffing_referrers_and_caching(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let signed_in = sign_in_by_hand(app, &agency.requester, "credence_csrf").await;
    let token = home_token(app, &signed_in).await;
    let setup = format!("/setup/{}", app.setup_token);
    // Every route of `web::router()`, then the API, ops and the fallback.
    let gets = [
        "/",
        "/sign-in",
        setup.as_str(),
        "/requests/not-a-token",
        "/received/1",
        "/oauth/callback?state=unknown&code=unknown",
        "/oauth/reauth/1",
        "/invitations/not-a-token",
        "/api/v2/users/me",
        "/healthz",
        "/readyz",
        "/metrics",
        "/no/such/route",
        "/assets/credence.css",
        "/assets/credence.js",
        "/credential-requests/new",
        "/team",
        "/settings",
        "/settings/webhooks",
        "/settings/webhooks/1",
        "/settings/webhooks/1/delete",
        "/settings/reminders",
        "/mailbox",
        "/mailbox/1",
    ];
    let posts = [
        "/sign-in",
        "/sign-out",
        setup.as_str(),
        "/oauth/authorize/1",
        "/oauth/reauth/1",
        "/invitations/not-a-token",
        "/api/v2/credential-requests/requests/v2",
        "/credential-requests/new",
        "/feature-request",
        "/settings/webhooks",
        "/settings/webhooks/1/enabled",
        "/settings/webhooks/1/delete",
        "/settings/reminders",
    ];
    let client = no_redirects();
    let mut answers = Vec::new();
    for cookies in [None, Some(signed_in.header())] {
        for path in gets {
            let mut request = client.get(app.url(path));
            if let Some(cookies) = &cookies {
                request = request.header("Cookie", cookies);
            }
            answers.push((format!("GET {path}"), request.send().await.unwrap()));
        }
        for path in posts {
            let mut request = client
                .post(app.url(path))
                .form(&[("csrf_token", token.as_str())]);
            if let Some(cookies) = &cookies {
                request = request.header("Cookie", cookies);
            }
            answers.push((format!("POST {path}"), request.send().await.unwrap()));
        }
    }
    let reader = app.token(agency.requester.id, "user:read").await;
    let api = client
        .get(app.url("/api/v2/users/me"))
        .header("Authorization", format!("Token {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::OK);
    answers.push(("GET /api/v2/users/me with a token".into(), api));
    for (what, response) in &answers {
        for (name, value) in EXPECTED_HEADERS {
            // The stylesheet is the same for everyone: the one answer cached.
            if name == "cache-control" && what.starts_with("GET /assets/") {
                assert_eq!(response.headers()[name], "public, max-age=3600");
                continue;
            }
            assert_eq!(
                response.headers().get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{name} of {what} ({})",
                response.status()
            );
        }
    }
    // The walk met pages, refusals and redirects alike.
    let statuses: std::collections::BTreeSet<u16> =
        answers.iter().map(|(_, r)| r.status().as_u16()).collect();
    for status in [200, 303, 403, 404] {
        assert!(statuses.contains(&status), "no {status} among {statuses:?}");
    }
    // No page holds what the policy would refuse: no inline script, no inline
    // style, no event handler attribute; the stylesheet and the one script
    // are files of our own.
    let mut pages = 0;
    for (what, response) in answers {
        let html = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        let body = response
            .text()
            .await
            .unwrap()
            .to_ascii_lowercase()
            .replace(r#"<script src="/assets/credence.js" defer></script>"#, "");
        if !html {
            continue;
        }
        pages += 1;
        for refused in [
            "<script",
            "<style",
            " style=",
            " onclick=",
            " onload=",
            " onsubmit=",
        ] {
            assert!(!body.contains(refused), "{what} holds {refused:?}");
        }
        if body.contains("<head>") {
            assert!(
                body.contains(r#"<link rel="stylesheet" href="/assets/credence.css">"#),
                "{what}"
            );
        }
    }
    assert!(pages >= 8, "only {pages} pages were read");
    let css = client
        .get(app.url("/assets/credence.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.text().await.unwrap().contains("font-family"));
    let script = client
        .get(app.url("/assets/credence.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text().await.unwrap().contains("data-copy"));
    agency.app.stop().await;
}

/// The CSRF token was the cookie's value, whatever the session: whoever could
/// plant a cookie (a sibling subdomain, a network attacker over http) could
/// pair it with a token of their own. Now the token is keyed by the session,
/// so one session's token (even with its cookie) is refused in another.
async fn a_csrf_token_from_one_session_is_refused_in_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let first = sign_in_by_hand(&app, &ann, "credence_csrf").await;
    let second = sign_in_by_hand(&app, &ann, "credence_csrf").await;
    let first_token = home_token(&app, &first).await;
    let sign_out = |cookies: String, token: &str| {
        no_redirects()
            .post(app.url("/sign-out"))
            .header("Cookie", cookies)
            .form(&[("csrf_token", token)])
            .send()
    };
    // The first session's cookie and token, in the second session.
    let planted = format!("{}; {}", first.csrf, second.session);
    let response = sign_out(planted, &first_token).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The first session's token with the second session's own cookie.
    let response = sign_out(second.header(), &first_token).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The second session is still signed in; its own token works.
    let second_token = home_token(&app, &second).await;
    assert_ne!(second_token, first_token);
    let response = sign_out(second.header(), &second_token).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // And the first session's own token still works in the first session.
    let response = sign_out(first.header(), &first_token).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}

/// Over https the CSRF cookie is `__Host-credence_csrf` (Secure, Path=/, no
/// Domain), which a subdomain can neither set nor shadow; the plain name is
/// no longer read.
async fn the_csrf_cookie_is_host_prefixed_when_the_public_url_is_https(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.public_url = Some("https://credence.example".into())
    })
    .await;
    let ann = app
        .add_person("ann@corp.example", app.organization, "member", None)
        .await;
    let page = no_redirects()
        .get(app.url("/sign-in"))
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&page, "credence_csrf").is_none());
    let cookie = set_cookie(&page, "__Host-credence_csrf").expect("a __Host- cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-credence_csrf=")
        .to_string();
    let token = csrf_of(&page.text().await.unwrap());
    let sign_in = |cookie: String| {
        no_redirects()
            .post(app.url("/sign-in"))
            .header("Cookie", cookie)
            .form(&[
                ("email", ann.email.as_str()),
                ("password", ann.password.as_str()),
                ("csrf_token", token.as_str()),
            ])
            .send()
    };
    let response = sign_in(format!("credence_csrf={value}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = sign_in(format!("__Host-credence_csrf={value}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}

/// A local HTTP server that counts the connections it accepts (any bytes).
async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (address, accepted)
}

/// A resolver that answers a public address the first time (what a check
/// sees) and 127.0.0.1 after (what a second resolution would connect to).
fn rebinding_lookup(calls: Arc<AtomicUsize>) -> credence::provider::destination::Lookup {
    Arc::new(move |_name: String| {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let address: SocketAddr = if call == 0 {
                "203.0.113.7:0".parse().unwrap()
            } else {
                "127.0.0.1:0".parse().unwrap()
            };
            Ok(vec![address])
        })
    })
}

/// DNS rebinding: the destination check resolved the name, then the HTTP
/// client resolved it again and connected wherever that answer pointed. Now
/// the client's resolver checks the very addresses it connects to: a name
/// that turns private after the check reaches nothing, a mixed answer is
/// refused whole, and only a host of the operator's `allow_private_hosts` app
/// may be private.
#[tokio::test]
async fn the_http_client_connects_only_to_addresses_it_checked() {
    let (server, accepted) = counting_server().await;
    let apps = tempfile::tempdir().unwrap();
    std::fs::write(
        apps.path().join("self-hosted.toml"),
        api_key_app(
            "self-hosted",
            "Self-hosted",
            &crate::support::Upstream::start().await,
        )
        .replace("127.0.0.1", "intranet.corp.example"),
    )
    .unwrap();
    let catalog = credence_catalog::Catalog::load(Some(apps.path())).unwrap();
    let url = |host: &str| format!("http://{host}:{}/v1/me", server.port());

    // The check's resolution answered public; the connect's answers private.
    let calls = Arc::new(AtomicUsize::new(0));
    let lookup = rebinding_lookup(calls.clone());
    let checked = (lookup)("api.rebind.example".into()).await.unwrap();
    assert!(!credence::provider::destination::is_private(
        checked[0].ip()
    ));
    let client = credence::provider::destination::client_with(lookup, &catalog).unwrap();
    let error = client
        .get(url("api.rebind.example"))
        .send()
        .await
        .expect_err("a rebound name is refused");
    let refusal = credence::provider::destination::private_address_in(&error)
        .expect("refused by the resolver")
        .to_string();
    assert_eq!(
        refusal,
        "api.rebind.example resolves to a private address; credentials are not sent there"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "nothing reached 127.0.0.1"
    );

    // A public address next to a private one: the whole answer is refused.
    let mixed: credence::provider::destination::Lookup = Arc::new(|_| {
        Box::pin(async {
            Ok(vec![
                "203.0.113.7:0".parse().unwrap(),
                "127.0.0.1:0".parse().unwrap(),
            ])
        })
    });
    let client = credence::provider::destination::client_with(mixed, &catalog).unwrap();
    assert!(client.get(url("api.mixed.example")).send().await.is_err());
    assert_eq!(accepted.load(Ordering::SeqCst), 0);

    // The operator's self-hosted app may be private: the checked address is
    // the one connected to, under the app's own name.
    let local: credence::provider::destination::Lookup =
        Arc::new(|_| Box::pin(async { Ok(vec!["127.0.0.1:0".parse().unwrap()]) }));
    let client = credence::provider::destination::client_with(local, &catalog).unwrap();
    let response = client
        .get(url("intranet.corp.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// An operator's app with `allow_private_hosts` on a name (`localhost`, which
/// resolves locally) still works through the checked resolver, end to end: a
/// connection is verified against the local app and added.
async fn an_allow_private_hosts_app_on_a_local_name_is_reached(backend: Backend) {
    let upstream = crate::support::Upstream::start().await;
    let local = api_key_app("local-crm", "Local CRM", &upstream).replace("127.0.0.1", "localhost");
    let agency = Agency::start_with(backend, &[("local-crm", local)], |_| {}).await;
    let key = "local-key-8843";
    upstream.accept(key);
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let response = agency
        .app
        .with_token(
            reqwest::Method::POST,
            &format!("/api/v2/connections?teamId={}", agency.app.team),
            &token,
        )
        .json(&json!({ "accountType": "local-crm", "apiKey": key }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["connection"]["state"], "valid");
    agency.app.stop().await;
}

/// Reads `stream` to its end; panics when the server keeps it open past the
/// deadline (far beyond the configured timeout).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received))
        .await
        .expect("the server closed the connection")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

/// A slow client (half a header block, then nothing) held its connection for
/// ever; now it is disconnected after the header-read timeout. A request whose
/// body never completes is answered 408 after the request timeout.
async fn a_client_that_stalls_mid_headers_or_mid_body_is_cut_off(backend: Backend) {
    // Short enough to wait for, long enough that the prompt client at the end
    // (the same server, the same limits) is answered on a loaded machine.
    let app = spawn_app_with(backend, |config| {
        config.header_read_timeout = Duration::from_secs(1);
        config.request_timeout = Duration::from_secs(2);
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_string();

    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    stalled
        .write_all(b"GET /sign-in HTTP/1.1\r\nHost: credence\r\nAccept: text/html\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stalled).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    let mut slow_body = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow_body
        .write_all(
            b"POST /sign-in HTTP/1.1\r\nHost: credence\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow_body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Our JSON error, with the headers every answer carries.
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(
        answer.to_lowercase().contains("x-frame-options: deny"),
        "{answer}"
    );

    // A prompt client is served as before.
    let response = app.client.get(app.url("/sign-in")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

on_both_backends!(
    renewing_a_connection_takes_our_pages_csrf_checked_post_not_a_cross_site_get,
    every_page_and_api_answer_forbids_framing_sniffing_referrers_and_caching,
    a_csrf_token_from_one_session_is_refused_in_another,
    the_csrf_cookie_is_host_prefixed_when_the_public_url_is_https,
    an_allow_private_hosts_app_on_a_local_name_is_reached,
    a_client_that_stalls_mid_headers_or_mid_body_is_cut_off,
);
