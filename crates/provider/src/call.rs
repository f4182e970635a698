//! Calls to an app's own API with a connection's credential: the URL built
//! from the catalog (never from the caller), the credential injected, the
//! destination checked; the verify call that checks a credential works; and
//! the broker's proxied calls ([`send`]).

use crate::destination::{check_destination, check_literal, private_address_in};
use crate::FieldValues;
use credence_catalog::{App, AppVersion, Auth, AuthKind, InjectionTarget};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use zeroize::Zeroizing;

/// Builds the request for `method path` of a connection, with the credential
/// injected. The account host, if the app has one, is among `values`.
pub fn build(
    http: &reqwest::Client,
    version: &AppVersion,
    values: &FieldValues,
    method: &str,
    path: &str,
) -> Result<reqwest::RequestBuilder, String> {
    let account_host = version
        .account_host
        .as_ref()
        .and_then(|host| values.get(&host.field));
    let base = version
        .base_url_for(account_host)
        .map_err(|e| e.to_string())?;
    let url = reqwest::Url::parse(&format!("{}{}", base.trim_end_matches('/'), path))
        .map_err(|e| format!("the app's URL is not valid: {e}"))?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("{method} is not an HTTP method"))?;
    if version.auth.kind() == AuthKind::Oauth2 {
        return Err("OAuth 2.0 connections are called with their access token".into());
    }
    let request = inject(
        http.request(method, url),
        version,
        values,
        &reqwest::header::HeaderMap::new(),
    )?;
    Ok(request.timeout(Duration::from_secs(15)))
}

/// Calls the app's verify operation with `values`: `Ok(())` when the app accepts
/// them, `Err(reason)` otherwise. Apps without a verify operation are accepted.
pub async fn verify(
    http: &reqwest::Client,
    app: &App,
    version: &AppVersion,
    values: &FieldValues,
) -> Result<(), String> {
    let Some(operation) = &version.verify else {
        return Ok(());
    };
    let request = build(
        http,
        version,
        values,
        operation.method.as_str(),
        operation.path.as_str(),
    )?;
    let request = request
        .build()
        .map_err(|e| format!("cannot build the verify call: {e}"))?;
    check_destination(app, request.url()).await?;
    let host = request.url().host_str().unwrap_or_default().to_string();
    match http.execute(request).await {
        // 403 means the app knows the credential but the check needs a permission
        // the (deliberately narrow) credential lacks: it is accepted.
        Ok(response) if response.status().is_success() || response.status().as_u16() == 403 => {
            Ok(())
        }
        Ok(response) if response.status().as_u16() == 401 => Err(format!(
            "{} refused these credentials (HTTP 401)",
            app.label
        )),
        Ok(response) => Err(format!(
            "{} answered the check with HTTP {}",
            app.label,
            response.status().as_u16()
        )),
        Err(error) if error.is_timeout() => Err(format!("{host} did not answer in time")),
        Err(error) if private_address_in(&error).is_some() => Err(private_address_in(&error)
            .map(ToString::to_string)
            .unwrap_or_default()),
        Err(_) => Err(format!("could not reach {host}")),
    }
}

/// The app's fixed headers (those of them the caller did not set: `given`),
/// then the credential as the app says (header, query, basic; an OAuth 2.0
/// connection's access token as a bearer token). Every header carrying the
/// credential is marked sensitive.
fn inject(
    mut request: reqwest::RequestBuilder,
    version: &AppVersion,
    values: &FieldValues,
    given: &reqwest::header::HeaderMap,
) -> Result<reqwest::RequestBuilder, String> {
    for (name, value) in &version.headers {
        if !given.contains_key(name.as_str()) {
            request = request.header(name, value);
        }
    }
    let value_of = |name: &str| values.get(name);
    match &version.auth {
        Auth::Basic(basic) => {
            let username = basic.username.render(value_of).map_err(|e| e.to_string())?;
            let password = basic.password.render(value_of).map_err(|e| e.to_string())?;
            request = request.basic_auth(username, Some(password));
        }
        Auth::ApiKey(_) | Auth::Custom(_) => {
            for injection in version.auth.injections() {
                let rendered = injection
                    .value
                    .render(value_of)
                    .map_err(|e| e.to_string())?;
                request = match &injection.target {
                    InjectionTarget::Header(name) => {
                        request.header(name, sensitive(&rendered, name)?)
                    }
                    InjectionTarget::Query(name) => request.query(&[(name, rendered.as_str())]),
                };
            }
        }
        Auth::Oauth2(_) => {
            let token = values
                .get("access_token")
                .ok_or("the connection holds no access token")?;
            request = request.header(
                reqwest::header::AUTHORIZATION,
                sensitive(&format!("Bearer {token}"), "Authorization")?,
            );
        }
    }
    Ok(request)
}

fn sensitive(value: &str, name: &str) -> Result<reqwest::header::HeaderValue, String> {
    let mut value = reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the value for the {name} header is not valid"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The request headers the credential goes in (`Authorization` always, for
/// basic and OAuth 2.0 and whatever the caller meant by it): the broker drops
/// a caller's header of any of these names. (The app's fixed headers are sent
/// unless the caller set them, as the catalog's format says.)
pub fn injected_headers(version: &AppVersion) -> Vec<reqwest::header::HeaderName> {
    let mut names = Vec::new();
    for injection in version.auth.injections() {
        if let InjectionTarget::Header(name) = &injection.target {
            names.extend(reqwest::header::HeaderName::from_bytes(name.as_bytes()).ok());
        }
    }
    names.push(reqwest::header::AUTHORIZATION);
    names
}

/// The query parameters the credential goes in: the broker drops a caller's
/// parameter of any of these names, so the app never sees two.
pub fn injected_query_names(version: &AppVersion) -> Vec<String> {
    version
        .auth
        .injections()
        .iter()
        .filter_map(|injection| match &injection.target {
            InjectionTarget::Query(name) => Some(name.clone()),
            InjectionTarget::Header(_) => None,
        })
        .collect()
}

/// The secret values a call with `values` sends, as they are sent: each
/// value of a field the catalog declares secret, Basic's
/// `base64(username:password)`, an OAuth 2.0 connection's tokens (and its own
/// client secret). What the broker must never hand back to the caller
/// (`broker::scrub`); non-secret fields (a subdomain, an email) may be shown
/// and are not among them. Each is zeroized on drop, and its `Debug` redacts it.
pub fn sent_secrets(version: &AppVersion, values: &FieldValues) -> Vec<SecretString> {
    let mut secrets: Vec<SecretString> = Vec::new();
    let mut keep = |value: &str| {
        if !value.is_empty() && !secrets.iter().any(|kept| kept.expose_secret() == value) {
            secrets.push(SecretString::from(value.to_string()));
        }
    };
    match &version.auth {
        Auth::Oauth2(_) => {
            for name in [
                "access_token",
                "refresh_token",
                crate::oauth::OWN_CLIENT_SECRET,
            ] {
                values.get(name).into_iter().for_each(&mut keep);
            }
        }
        auth => {
            for field in auth.fields().iter().filter(|field| field.secret) {
                values.get(&field.name).into_iter().for_each(&mut keep);
            }
        }
    }
    if let Auth::Basic(basic) = &version.auth {
        use base64::Engine;
        let value_of = |name: &str| values.get(name);
        let username = basic.username.render(value_of).map(Zeroizing::new);
        let password = basic.password.render(value_of).map(Zeroizing::new);
        if let (Ok(username), Ok(password)) = (username, password) {
            // Sized up front, so that no growing leaves a copy behind.
            let mut pair =
                Zeroizing::new(String::with_capacity(username.len() + 1 + password.len()));
            pair.push_str(&username);
            pair.push(':');
            pair.push_str(&password);
            let length = base64::encoded_len(pair.len(), true).unwrap_or_default();
            let mut encoded = Zeroizing::new(String::with_capacity(length));
            base64::engine::general_purpose::STANDARD.encode_string(pair.as_bytes(), &mut encoded);
            keep(&encoded);
        }
    }
    secrets
}

/// A call the broker forwards: method, the path relative to the app's base
/// URL (already matched against an operation), the query as the caller wrote
/// it (parameters the credential goes in already removed), the caller's
/// headers the broker kept, and the body.
pub struct Proxied {
    pub method: reqwest::Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Option<reqwest::Body>,
}

/// Why a proxied call got no answer from the app: a reason fit to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The destination is not one a credential may go to (the URL leaves the
    /// app's host, plain http, a private address).
    Refused(String),
    /// The app did not answer in time.
    Timeout(String),
    /// The app could not be reached.
    Unreachable(String),
}

/// The URL of `path` (and `query`) on the connection's host: the base URL of
/// the app version (or the connection's account host), never anything the
/// caller chose. Refused when the result would leave that host or its base
/// path (an absolute URL, `//host`, dot segments).
pub fn url_for(
    version: &AppVersion,
    values: &FieldValues,
    path: &str,
    query: Option<&str>,
) -> Result<reqwest::Url, String> {
    let account_host = version
        .account_host
        .as_ref()
        .and_then(|host| values.get(&host.field));
    let base = version
        .base_url_for(account_host)
        .map_err(|e| e.to_string())?;
    let base_url =
        reqwest::Url::parse(&base).map_err(|e| format!("the app's URL is not valid: {e}"))?;
    if !path.starts_with('/') || path.starts_with("//") || path.contains("://") {
        return Err(format!(
            "the path must be relative to the app's base URL and start with one /, not {}",
            shorten(path)
        ));
    }
    let mut text = format!("{}{}", base.trim_end_matches('/'), path);
    if let Some(query) = query.filter(|query| !query.is_empty()) {
        text.push('?');
        text.push_str(query);
    }
    let url = reqwest::Url::parse(&text).map_err(|_| {
        format!(
            "{} does not make a valid URL on the app's host",
            shorten(path)
        )
    })?;
    let base_path = base_url.path().trim_end_matches('/');
    let same_host = url.scheme() == base_url.scheme()
        && url.host_str() == base_url.host_str()
        && url.port_or_known_default() == base_url.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path().starts_with(base_path)
        && url.fragment().is_none();
    if !same_host {
        return Err(format!(
            "{} would leave the app's host; the broker sends credentials only to {}",
            shorten(path),
            base_url.host_str().unwrap_or("the app's host")
        ));
    }
    Ok(url)
}

fn shorten(text: &str) -> String {
    let short: String = text.chars().take(100).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// Sends a proxied call with the connection's credential and answers the
/// app's response as it is (a redirect is not followed: the client follows
/// none). The destination is checked first: https unless the operator's app
/// allows private hosts, no private IP literal; names are checked by the
/// client's resolver on the very addresses it connects to.
pub async fn send(
    http: &reqwest::Client,
    app: &App,
    version: &AppVersion,
    values: &FieldValues,
    call: Proxied,
) -> Result<reqwest::Response, SendError> {
    let url =
        url_for(version, values, &call.path, call.query.as_deref()).map_err(SendError::Refused)?;
    check_literal(app, &url).map_err(SendError::Refused)?;
    let host = url.host_str().unwrap_or_default().to_string();
    let request = inject(
        http.request(call.method, url),
        version,
        values,
        &call.headers,
    )
    .map_err(SendError::Refused)?;
    let mut request = request.headers(call.headers);
    if let Some(body) = call.body {
        request = request.body(body);
    }
    match request.send().await {
        Ok(response) => Ok(response),
        Err(error) => Err(match private_address_in(&error) {
            Some(refusal) => SendError::Refused(refusal.to_string()),
            None if error.is_timeout() => {
                SendError::Timeout(format!("{host} did not answer in time"))
            }
            None => SendError::Unreachable(format!("could not reach {host}")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> FieldValues {
        FieldValues(
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), SecretString::from(value.to_string())))
                .collect(),
        )
    }

    fn sent(app: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        let catalog = credence_catalog::Catalog::builtin().unwrap();
        let version = catalog.get(app).unwrap().latest();
        sent_secrets(version, &values(pairs))
            .iter()
            .map(|secret| secret.expose_secret().to_string())
            .collect()
    }

    #[test]
    fn the_secrets_sent_are_the_secret_fields_basics_pair_and_oauth_tokens() {
        // Mailchimp: Basic with the literal user "credence" and the key; the
        // data center is not secret.
        assert_eq!(
            sent(
                "mailchimp",
                &[("apiKey", "0123456789abcdef-us21"), ("dc", "us21")]
            ),
            [
                "0123456789abcdef-us21",
                "Y3JlZGVuY2U6MDEyMzQ1Njc4OWFiY2RlZi11czIx"
            ]
        );
        assert_eq!(
            sent("stripe", &[("secretKey", "sk_live_0123456789")]),
            ["sk_live_0123456789"]
        );
        assert_eq!(
            sent(
                "asana",
                &[
                    ("access_token", "access-0123456789"),
                    ("refresh_token", "refresh-0123456789"),
                    ("token_type", "Bearer"),
                    ("expires_at", "2026-12-01T22:00:00+00:00"),
                ]
            ),
            ["access-0123456789", "refresh-0123456789"]
        );
        let catalog = credence_catalog::Catalog::builtin().unwrap();
        let version = catalog.get("stripe").unwrap().latest();
        let secrets = sent_secrets(version, &values(&[("secretKey", "sk_live_0123456789")]));
        assert!(!format!("{secrets:?}").contains("sk_live"), "{secrets:?}");
    }
}
