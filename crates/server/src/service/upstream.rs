//! Calls to an app's own API on behalf of a connection: building the URL from
//! the catalog (never from the caller), injecting the credential, refusing
//! private and loopback addresses unless the operator's app allows them, and
//! the verify call that checks a credential works.

use credence_catalog::{App, AppVersion, Auth, InjectionTarget};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The values a recipient entered, by field name. Secret: its `Debug` shows only
/// the field names.
pub struct FieldValues(pub BTreeMap<String, SecretString>);

impl std::fmt::Debug for FieldValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl FieldValues {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.expose_secret())
    }
}

/// Whether an address is one a credential must never be sent to without the
/// operator's say-so: loopback, private, link-local, unspecified, multicast.
pub fn is_private(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Checks that `url` may receive a credential of `app`: https, and a host that
/// resolves only to public addresses, unless the operator's app allows private
/// hosts (self-hosted software).
pub async fn check_destination(app: &App, url: &reqwest::Url) -> Result<(), String> {
    if app.allow_private_hosts {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(format!(
            "{} must be reached over https",
            url.host_str().unwrap_or("the app")
        ));
    }
    let host = url.host_str().ok_or("the app's URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| format!("cannot resolve {host}"))?;
    for address in addresses {
        if is_private(address.ip()) {
            return Err(format!(
                "{host} resolves to a private address; credentials are not sent there"
            ));
        }
    }
    Ok(())
}

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
    let mut request = http.request(method, url);
    for (name, value) in &version.headers {
        request = request.header(name, value);
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
                        let mut value = reqwest::header::HeaderValue::from_str(&rendered)
                            .map_err(|_| format!("the value for the {name} header is not valid"))?;
                        value.set_sensitive(true);
                        request.header(name, value)
                    }
                    InjectionTarget::Query(name) => request.query(&[(name, rendered.as_str())]),
                };
            }
        }
        Auth::Oauth2(_) => {
            return Err("OAuth 2.0 connections are called with their access token".into())
        }
    }
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
        Err(_) => Err(format!("could not reach {host}")),
    }
}
