//! Calls to an app's own API with a connection's credential: the URL built
//! from the catalog (never from the caller), the credential injected, the
//! destination checked; and the verify call that checks a credential works.

use crate::destination::{check_destination, private_address_in};
use crate::FieldValues;
use credence_catalog::{App, AppVersion, Auth, InjectionTarget};
use std::time::Duration;

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
        Err(error) if private_address_in(&error).is_some() => Err(private_address_in(&error)
            .map(ToString::to_string)
            .unwrap_or_default()),
        Err(_) => Err(format!("could not reach {host}")),
    }
}
