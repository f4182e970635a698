//! A real OAuth 2.0 authorization server for tests: `oidc-provider` (npm) run by
//! `tests/oidc/provider.mjs`, with one confidential client, PKCE (S256) required,
//! revocation and introspection, and short-lived access tokens. Login and
//! consent are driven headlessly through the provider's own dev forms.
//!
//! Node and the npm packages come from the README's test command
//! (`scripts/test`), which installs them.

#![allow(dead_code)] // some of its calls serve only the tests to come

use base64::Engine;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `REFRESH_TOKEN_ROTATION` the provider runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rotation {
    /// Refresh tokens never rotate, and a refresh response carries no
    /// `refresh_token` at all: the client must keep the one it has.
    #[default]
    Keep,
    /// Refresh tokens never rotate; a refresh response repeats the same one.
    Echo,
    /// Every refresh returns a new refresh token and consumes the old one.
    /// Presenting a consumed one is `invalid_grant` *and revokes the grant*.
    Rotate,
}

impl Rotation {
    fn env(self) -> &'static str {
        match self {
            Rotation::Keep => "keep",
            Rotation::Echo => "echo",
            Rotation::Rotate => "rotate",
        }
    }
}

#[derive(Clone, Debug)]
pub struct OidcOptions {
    /// Access token lifetime in seconds (`ACCESS_TOKEN_TTL`).
    pub access_token_ttl: u64,
    /// Refresh token (and grant) lifetime in seconds (`REFRESH_TOKEN_TTL`).
    pub refresh_token_ttl: u64,
    pub rotation: Rotation,
}

impl Default for OidcOptions {
    fn default() -> Self {
        OidcOptions {
            // Long enough that a loaded machine never sees a token expire at
            // the provider between two steps of a test (a 5 s lifetime did,
            // at a load of 15 on 2 cores); tests of expiry set their own, and
            // Credence's side of expiry is moved by its injected clock.
            access_token_ttl: 300,
            refresh_token_ttl: 24 * 60 * 60,
            rotation: Rotation::Keep,
        }
    }
}

/// A running provider; killed on drop.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub issuer: String,
    pub port: u16,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub options: OidcOptions,
    /// `/.well-known/openid-configuration`.
    pub discovery: Value,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    /// A plain client: no cookies, no redirects followed.
    pub http: reqwest::Client,
    child: Option<Child>,
    _stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
}

/// Where the client's browser would land after login and consent.
#[derive(Debug, Clone)]
pub struct ConsentOutcome {
    /// The full redirect to the client's redirect_uri (not followed).
    pub redirect: Url,
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207 `iss`: oidc-provider sends it on every authorization response.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

impl OidcProvider {
    /// Starts a provider with the default options (5 s access tokens, refresh
    /// tokens kept, not rotated) and one client allowed `redirect_uris`.
    pub async fn start(redirect_uris: &[String]) -> OidcProvider {
        Self::start_with(redirect_uris, OidcOptions::default()).await
    }

    pub async fn start_with(redirect_uris: &[String], options: OidcOptions) -> OidcProvider {
        assert!(!redirect_uris.is_empty(), "the client needs a redirect URI");
        let client_id = format!("credence-test-{}", uuid::Uuid::new_v4().simple());
        let client_secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let mut provider = OidcProvider {
            issuer: String::new(),
            port: 0,
            client_id,
            client_secret,
            redirect_uris: redirect_uris.to_vec(),
            options,
            discovery: Value::Null,
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            introspection_endpoint: String::new(),
            revocation_endpoint: String::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                // Node closes idle connections after 5 s (keepAliveTimeout).
                .pool_idle_timeout(super::app::CLIENT_IDLE)
                .build()
                .unwrap(),
            child: None,
            _stdin: None,
            output: Arc::new(Mutex::new(String::new())),
        };
        provider.launch(0).await;
        provider
    }

    /// Stops the provider (as an outage would). `restart` brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self._stdin = None;
    }

    /// Starts it again on the same port with the same client. oidc-provider
    /// keeps everything in memory: every grant, code and token issued before
    /// is forgotten (refreshing an old refresh token is then `invalid_grant`).
    pub async fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.launch(port).await;
    }

    async fn launch(&mut self, port: u16) {
        let root = repo_root();
        let dir = root.join("tests/oidc");
        let script = dir.join("provider.mjs");
        assert!(script.is_file(), "{} is missing", script.display());
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "the npm packages for the test OAuth server are not installed in {}: \
             run scripts/test, which installs them (npm ci --prefix tests/oidc)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(&root)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", &self.client_id)
            .env("CLIENT_SECRET", &self.client_secret)
            .env("REDIRECT_URIS", self.redirect_uris.join(","))
            .env("ACCESS_TOKEN_TTL", self.options.access_token_ttl.to_string())
            .env("REFRESH_TOKEN_TTL", self.options.refresh_token_ttl.to_string())
            .env("REFRESH_TOKEN_ROTATION", self.options.rotation.env())
            .env("EXIT_ON_STDIN_EOF", "1")
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!("`node` is not installed: run scripts/test, which installs it (and the npm packages)")
                }
                panic!("could not start node {}: {e}", script.display())
            });

        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<u16>();
        let mut ready_tx = Some(ready_tx);
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let output = self.output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("READY ") {
                    if let (Some(tx), Ok(port)) = (ready_tx.take(), port.trim().parse()) {
                        let _ = tx.send(port);
                    }
                }
                output.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let output = self.output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("CREDENCE_TEST_LOG").is_some() {
                    eprintln!("oidc-provider: {line}");
                }
                output.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        self._stdin = child.stdin.take();
        self.child = Some(child);

        let port = match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(port)) => port,
            Ok(Err(_)) => {
                let status = self.child.as_mut().and_then(|c| c.wait().ok());
                panic!(
                    "the test OAuth server exited before it was ready ({status:?}). \
                     If node or its packages are missing, run scripts/test, which installs them.\n{}",
                    self.output()
                )
            }
            Err(_) => panic!(
                "the test OAuth server did not print READY within 30 s:\n{}",
                self.output()
            ),
        };
        self.port = port;
        self.issuer = format!("http://127.0.0.1:{port}");

        let discovery: Value = self
            .http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .expect("discovery document")
            .json()
            .await
            .expect("discovery document is JSON");
        let endpoint = |name: &str| -> String {
            discovery[name]
                .as_str()
                .unwrap_or_else(|| panic!("discovery has no {name}: {discovery}"))
                .to_string()
        };
        assert_eq!(discovery["issuer"], self.issuer.as_str());
        self.authorization_endpoint = endpoint("authorization_endpoint");
        self.token_endpoint = endpoint("token_endpoint");
        self.introspection_endpoint = endpoint("introspection_endpoint");
        self.revocation_endpoint = endpoint("revocation_endpoint");
        self.discovery = discovery;
    }

    /// Everything the provider printed so far (for failure messages).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// An authorization request URL for the code flow with PKCE S256.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        scope: &str,
        state: &str,
        code_challenge: &str,
    ) -> String {
        let mut url = Url::parse(&self.authorization_endpoint).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// Plays the end-user's browser: follows `authorize_url` with a fresh
    /// cookie jar, signs in as `login` (any password) on the dev login form,
    /// then approves (`approve`) or cancels the consent form, and returns the
    /// redirect to the client's redirect_uri without following it.
    /// Panics on anything else (an error page, a loop), with the page.
    pub async fn consent(&self, authorize_url: &str, login: &str, approve: bool) -> ConsentOutcome {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(super::app::CLIENT_IDLE)
            .build()
            .unwrap();
        let issuer = Url::parse(&self.issuer).unwrap();
        let mut url = Url::parse(authorize_url).expect("authorize URL");
        let mut form: Option<Vec<(&str, String)>> = None;
        for _ in 0..20 {
            let request = match form.take() {
                Some(fields) => browser.post(url.clone()).form(&fields),
                None => browser.get(url.clone()),
            };
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}\n{}", self.output()));
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| panic!("{url}: {status} without Location"));
                let next = url
                    .join(location)
                    .unwrap_or_else(|e| panic!("{url}: bad Location {location}: {e}"));
                if next.origin() != issuer.origin() {
                    return ConsentOutcome::from_redirect(next);
                }
                url = next;
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            if status != StatusCode::OK {
                panic!(
                    "{url}: {status}\n{body}\n--- provider output ---\n{}",
                    self.output()
                );
            }
            let action = form_action(&body);
            if body.contains(r#"name="prompt" value="login""#) {
                let action = action.unwrap_or_else(|| panic!("no login form action in\n{body}"));
                url = url.join(&action).unwrap();
                form = Some(vec![
                    ("prompt", "login".to_string()),
                    ("login", login.to_string()),
                    ("password", "any password".to_string()),
                ]);
            } else if body.contains(r#"name="prompt" value="consent""#) {
                if approve {
                    let action =
                        action.unwrap_or_else(|| panic!("no consent form action in\n{body}"));
                    url = url.join(&action).unwrap();
                    form = Some(vec![("prompt", "consent".to_string())]);
                } else {
                    let abort = hrefs(&body)
                        .into_iter()
                        .find(|href| href.ends_with("/abort"))
                        .unwrap_or_else(|| panic!("no Cancel link on the consent page\n{body}"));
                    url = url.join(&abort).unwrap();
                }
            } else {
                panic!(
                    "{url}: a page that is neither the login nor the consent form \
                        (response_mode=form_post is not supported here)\n{body}"
                );
            }
        }
        panic!("more than 20 steps without reaching the client's redirect_uri (last: {url})");
    }

    /// A token endpoint request with client_secret_basic. Returns the status
    /// and the JSON body (success or `{"error": …}`).
    pub async fn token(&self, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(&self.token_endpoint)
            .header("Authorization", self.basic_auth())
            .form(params)
            .send()
            .await
            .expect("token endpoint");
        let status = response.status();
        let body = response.json().await.expect("token endpoint answers JSON");
        (status, body)
    }

    /// RFC 7662 introspection with the client's credentials.
    pub async fn introspect(&self, token: &str) -> Value {
        let response = self
            .http
            .post(&self.introspection_endpoint)
            .header("Authorization", self.basic_auth())
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspection endpoint");
        let status = response.status();
        let body: Value = response.json().await.expect("introspection answers JSON");
        assert_eq!(status, StatusCode::OK, "introspection: {body}");
        body
    }

    /// RFC 7009 revocation (of an access or refresh token) with the client's
    /// credentials. Either one takes every token of its grant with it: after
    /// revoking the access token, the refresh token is `invalid_grant` too.
    pub async fn revoke(&self, token: &str) {
        let response = self
            .http
            .post(&self.revocation_endpoint)
            .header("Authorization", self.basic_auth())
            .form(&[("token", token)])
            .send()
            .await
            .expect("revocation endpoint");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "revocation: {body}");
    }

    /// Simulates an outage: until called with `None`, every request to the
    /// provider (token, introspection, revocation, authorize, discovery)
    /// answers `status` with `{"error": "temporarily_unavailable"}`. Unlike
    /// `stop`/`restart`, grants and tokens survive it.
    pub async fn set_outage(&self, status: Option<u16>) {
        let url = format!("{}/__test/outage", self.issuer);
        let request = match status {
            Some(status) => self.http.put(url).query(&[("status", status)]),
            None => self.http.delete(url),
        };
        let response = request.send().await.expect("the test OAuth server");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    /// `true`: token requests wait at the provider until called with `false`,
    /// which lets every waiting one through.
    pub async fn hold_token_requests(&self, hold: bool) {
        let url = format!("{}/__test/hold", self.issuer);
        let request = if hold {
            self.http.put(url)
        } else {
            self.http.delete(url)
        };
        let response = request.send().await.expect("the test OAuth server");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    /// Waits until a token request is held (see [`Self::hold_token_requests`]):
    /// the provider answers this only once one waits.
    pub async fn token_request_held(&self) {
        let response = self
            .http
            .get(format!("{}/__test/held", self.issuer))
            .send()
            .await
            .expect("the test OAuth server");
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// `Some(pad)`: every token request is refused (400 `invalid_grant`) with
    /// an `error_description` repeating the code, verifier, refresh token and
    /// client secret it carried, then `pad` more characters. `None`: normal.
    pub async fn echo_secrets_in_token_errors(&self, pad: Option<usize>) {
        let url = format!("{}/__test/echo-error", self.issuer);
        let request = match pad {
            Some(pad) => self.http.put(url).query(&[("pad", pad)]),
            None => self.http.delete(url),
        };
        let response = request.send().await.expect("the test OAuth server");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    /// How many token endpoint requests with this `grant_type` the provider
    /// has had since it (re)started, failed ones included.
    pub async fn token_requests(&self, grant_type: &str) -> u64 {
        let stats: Value = self
            .http
            .get(format!("{}/__test/stats", self.issuer))
            .send()
            .await
            .expect("the test OAuth server")
            .json()
            .await
            .expect("stats are JSON");
        stats["token_requests"][grant_type].as_u64().unwrap_or(0)
    }

    /// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 §2.3.1
    /// says and oidc-provider decodes.
    pub fn basic_auth(&self) -> String {
        let credentials = format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(&self.client_secret)
        );
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ConsentOutcome {
    fn from_redirect(redirect: Url) -> ConsentOutcome {
        let get = |name: &str| {
            redirect
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        ConsentOutcome {
            code: get("code"),
            state: get("state"),
            iss: get("iss"),
            error: get("error"),
            error_description: get("error_description"),
            redirect,
        }
    }
}

fn form_encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)]).unwrap()[1..].to_string()
}

fn html_unescape(value: &str) -> String {
    value
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attribute_values(body: &str, attribute: &str) -> Vec<String> {
    let needle = format!(r#"{attribute}=""#);
    body.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &body[at + needle.len()..];
            rest.find('"').map(|end| html_unescape(&rest[..end]))
        })
        .collect()
}

fn form_action(body: &str) -> Option<String> {
    attribute_values(body, "action").into_iter().next()
}

fn hrefs(body: &str) -> Vec<String> {
    attribute_values(body, "href")
}
