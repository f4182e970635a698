//! `ANY /api/v2/connections/{id}/proxy/{*path}`: a call to the connection's
//! app, made by Credence with the connection's credential. The caller (an API
//! token with `connections:use`, or a signed-in member of the team) never
//! sees the credential, not even when the app echoes it (the answer is
//! scrubbed of every secret value sent, [`crate::scrub`]); the upstream host
//! comes from the catalog only; bodies stream both ways; redirects come back
//! as they are; every call that passed the access check is recorded as usage.

use crate::check::{self, Permit, Refusal};
use crate::headers;
use crate::limit::CallLimit;
use crate::scrub::Scrubber;
use crate::usage::UsageLog;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum_extra::extract::cookie::CookieJar;
use credence_catalog::AuthKind;
use credence_domain::Scope;
use credence_http::error::ApiError;
use credence_http::extract::ApiCaller;
use credence_http::AppState;
use credence_provider::call::{self, Proxied, SendError};
use credence_provider::FieldValues;
use credence_service::refresh::{self, RefreshOutcome};
use credence_service::{auth, secrets, Context};
use credence_store::{NewUsage, User};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Instant;

/// The header a caller names its workflow or agent in.
pub const CONSUMER_HEADER: &str = "x-credence-consumer";
/// The longest consumer label, in characters.
pub const CONSUMER_LIMIT: usize = 100;

/// Who is calling: the user, and how usage names them.
struct Caller {
    user: User,
    label: String,
}

/// The proxy (SPEC §8): calls a path on the connection's app, with its
/// credential injected by Credence. The answer is the app's, passed back
/// (status, body, clean headers); Credence's own refusals are the `Error`
/// envelope.
#[utoipa::path(
    method(get, post, put, patch, delete),
    path = "/api/v2/connections/{id}/proxy/{path}",
    tag = "broker",
    summary = "Call the connection's app through Credence (the credential is injected, never shown)",
    params(
        ("id" = i64, Path, description = "The connection."),
        ("path" = String, Path, description = "The path on the app, as its catalog entry's operations name it."),
        ("x-credence-consumer" = Option<String>, Header, description = "The workflow or agent calling (≤ 100 characters), for the usage log."),
    ),
    request_body(content = Option<String>, description = "Sent to the app as is.", content_type = "*/*"),
    security(("token" = ["connections:use"])),
    responses(
        (status = "default", description = "The app's answer, passed back.", content_type = "*/*"),
        (status = 409, description = "The connection is not usable (its credential is not authorized, or it is invalid).", body = credence_http::error::Body),
        (status = 429, description = "Over the connection's calls per minute; `Retry-After` says when to try again.", body = credence_http::error::Body),
        (status = 502, description = "The app could not be reached, its address was refused, or it answered compressed (named in the message).", body = credence_http::error::Body),
        (status = 504, description = "The app did not answer in time.", body = credence_http::error::Body),
    ),
)]
pub async fn proxy(
    State(state): State<AppState>,
    Extension(usage): Extension<UsageLog>,
    Extension(limit): Extension<Arc<CallLimit>>,
    request: Request,
) -> Response {
    match forward(&state, &usage, &limit, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The caller from an API token with `connections:use`, or from a session
/// cookie of a browser that is not on another site.
async fn caller(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    if parts.headers.contains_key(header::AUTHORIZATION) {
        let api = ApiCaller::from_request_parts(parts, state).await?;
        api.require(Scope::ConnectionsUse)?;
        let label = format!("{} (API token {})", api.user.email, api.token.name);
        return Ok(Caller {
            user: api.user,
            label,
        });
    }
    let jar = CookieJar::from_headers(&parts.headers);
    let name = credence_http::web::session_cookie_name(state);
    let user = match jar.get(&name) {
        Some(cookie) if cookie.value().len() <= 128 => {
            auth::session_user(&state.store, cookie.value()).await?
        }
        _ => None,
    };
    let Some(user) = user else {
        return Err(ApiError::Unauthenticated(
            "send an API token with the scope connections:use as Authorization: Token <token>, or sign in".into(),
        ));
    };
    // A session of someone an organization requires two-factor sign-in of,
    // and who has none, opens only the enrolment page (`web::two_factor`);
    // API tokens are not sessions and keep working.
    if let Some(organization) =
        credence_service::two_factor::awaiting_enrolment(&state.store, user.id)
            .await?
            .first()
    {
        return Err(ApiError::Forbidden(format!(
            "organization {} requires two-factor authentication: set it up at /settings/two-factor first, or use an API token",
            organization.name
        )));
    }
    // The session cookie is SameSite=Lax: a page of another site can still
    // make a browser navigate here. Browsers say so; such calls are refused.
    let site = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    if site == Some("cross-site") {
        return Err(ApiError::Forbidden(
            "a signed-in session may not use a connection from another site; use an API token"
                .into(),
        ));
    }
    let label = user.email.clone();
    Ok(Caller { user, label })
}

/// The consumer label, if the caller gave one: visible text, at most
/// [`CONSUMER_LIMIT`] characters.
fn consumer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(CONSUMER_HEADER) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value.as_bytes())
        .ok()
        .filter(|text| !text.chars().any(char::is_control))
        .ok_or_else(|| {
            ApiError::invalid(
                "X-Credence-Consumer",
                "X-Credence-Consumer is not readable text; send a short UTF-8 label",
            )
        })?
        .trim();
    let length = text.chars().count();
    if length > CONSUMER_LIMIT {
        return Err(ApiError::invalid(
            "X-Credence-Consumer",
            format!("X-Credence-Consumer is {length} characters; the limit is {CONSUMER_LIMIT}"),
        ));
    }
    Ok((!text.is_empty()).then(|| text.to_string()))
}

/// The connection id and the upstream path of `/api/v2/connections/{id}/proxy/{*path}`,
/// read from the raw path (the matched `{*path}` is percent-decoded, and the
/// upstream must get, and the checks see, exactly what the caller sent).
fn target(parts: &Parts) -> Result<(i64, String), ApiError> {
    let raw = parts.uri.path();
    let mut pieces = raw.splitn(7, '/');
    let id = pieces.nth(4).unwrap_or_default();
    let id = id.parse::<i64>().map_err(|_| {
        ApiError::invalid(
            "id",
            format!("connection id {} is not a number", check::shorten(id)),
        )
    })?;
    // After "proxy".
    let rest = pieces.nth(1).unwrap_or_default();
    Ok((id, format!("/{rest}")))
}

/// The caller's query without the parameters the credential goes in.
fn query_without(query: Option<&str>, injected: &[String]) -> Option<String> {
    let query = query?;
    if injected.is_empty() {
        return Some(query.to_string());
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded: Vec<(String, String)> =
                serde_urlencoded::from_str(name).unwrap_or_default();
            let name = decoded
                .first()
                .map(|(name, _)| name.as_str())
                .unwrap_or(name);
            !injected.iter().any(|injected| injected == name)
        })
        .collect();
    Some(kept.join("&"))
}

/// Whether the request carries a body (a declared non-zero length, or a
/// chunked one).
fn has_body(headers: &HeaderMap) -> bool {
    match declared_length(headers) {
        Some(length) => length > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// What every usage record of one call shares.
struct Record<'a> {
    usage: &'a UsageLog,
    caller: &'a Caller,
    consumer: Option<String>,
    method: String,
    started: Instant,
}

impl Record<'_> {
    async fn write(
        &self,
        connection: &credence_store::Connection,
        credential_id: Option<String>,
        path_template: Option<String>,
        status: u16,
        upstream_status: Option<u16>,
    ) {
        let latency_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        tracing::info!(
            connection = connection.id,
            method = %self.method,
            path_template = path_template.as_deref().unwrap_or("none"),
            status,
            upstream_status,
            latency_ms,
            "proxied call"
        );
        self.usage
            .record(NewUsage {
                occurred_at: credence_store::now(),
                organization_id: connection.organization_id,
                team_id: connection.team_id,
                connection_id: connection.id,
                credential_id,
                consumer: self.consumer.clone(),
                actor_user_id: Some(self.caller.user.id.0),
                actor_label: self.caller.label.clone(),
                method: self.method.clone(),
                path_template,
                status: i64::from(status),
                upstream_status: upstream_status.map(i64::from),
                latency_ms,
            })
            .await;
    }

    /// Records a refusal and answers its error.
    async fn refused(&self, refusal: Refusal, path_template: Option<String>) -> ApiError {
        let error = ApiError::from(refusal.error);
        let status = error_status(&error);
        self.write(
            &refusal.connection,
            refusal.credential_id,
            path_template,
            status,
            None,
        )
        .await;
        error
    }
}

fn error_status(error: &ApiError) -> u16 {
    match error {
        ApiError::Invalid(_) | ApiError::BadRequest(_) => 400,
        ApiError::Forbidden(_) => 403,
        ApiError::NotFound(_) => 404,
        ApiError::Conflict(_) => 409,
        ApiError::BadGateway(_) => 502,
        ApiError::GatewayTimeout(_) => 504,
        _ => 500,
    }
}

/// The proxy's whole work on one request; also the MCP tool's.
pub(crate) async fn forward(
    state: &AppState,
    usage: &UsageLog,
    limit: &CallLimit,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let caller = caller(&mut parts, state).await?;
    let record = Record {
        usage,
        caller: &caller,
        consumer: consumer(&parts.headers)?,
        method: parts.method.to_string(),
        started,
    };
    let (id, path) = target(&parts)?;
    let ctx = state.ctx();
    let usable = match check::usable(&ctx, &caller.user, id).await {
        Ok(usable) => usable,
        Err(Err(error)) => return Err(error.into()),
        Err(Ok(refusal)) => return Err(record.refused(refusal, None).await),
    };
    if let Err(seconds) = limit.admit(id) {
        let error = ApiError::TooManyRequests(seconds, limit.reached(id));
        record
            .write(&usable.connection, usable.credential_id, None, 429, None)
            .await;
        return Err(error);
    }
    let permit = match check::operation(&ctx, usable, parts.method.as_str(), &path) {
        Ok(permit) => permit,
        Err(refusal) => return Err(record.refused(refusal, None).await),
    };
    let template = Some(permit.path_template.clone());
    let oauth = permit.version.auth.kind() == AuthKind::Oauth2;
    // The secret the checks read is the one to open, unless a refresh has
    // just written new tokens.
    let mut read = permit.sealed.as_deref();
    if oauth {
        let due = permit
            .connection
            .token_expires_at
            .is_some_and(|at| at <= ctx.clock.now() + refresh::EXPIRY_MARGIN);
        if due {
            if let Err(refusal) = refreshed(&ctx, &permit, refresh::refresh_if_due(&ctx, id).await)
            {
                return Err(record.refused(refusal, template).await);
            }
            read = None;
        }
    }
    let values = match open(&ctx, &permit, read).await {
        Ok(values) => values,
        Err(refusal) => return Err(record.refused(refusal, template).await),
    };
    // What the answer must not carry back: the secrets of this call, and of
    // the retry's if there is one (a refreshed token).
    let mut secrets = call::sent_secrets(permit.version, &values);
    let injected = call::injected_headers(permit.version);
    let upstream_headers = headers::to_upstream(&parts.headers, &injected);
    let query = query_without(
        parts.uri.query(),
        &call::injected_query_names(permit.version),
    );
    let with_body = has_body(&parts.headers);
    let proxied = |body: Option<reqwest::Body>| Proxied {
        method: parts.method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers: upstream_headers.clone(),
        body,
    };
    // An OAuth call with a small declared body keeps a copy, so that it can
    // be sent again after a refresh; any other body streams through once.
    let replayable = match (with_body, declared_length(&parts.headers)) {
        (false, _) => Some(bytes::Bytes::new()),
        (true, Some(length)) if oauth && length <= REPLAYABLE_BODY => Some(
            axum::body::to_bytes(body, REPLAYABLE_BODY as usize)
                .await
                .map_err(|_| {
                    ApiError::BadRequest(format!(
                        "the request body did not match its Content-Length of {length} bytes"
                    ))
                })?,
        ),
        (true, _) => {
            let streamed = reqwest::Body::wrap_stream(body.into_data_stream());
            let sent = call::send(
                &ctx.http,
                permit.app,
                permit.version,
                &values,
                proxied(Some(streamed)),
            )
            .await;
            return answer(sent, &record, &permit, template, &parts.method, secrets).await;
        }
    };
    let as_body =
        |bytes: &bytes::Bytes| (!bytes.is_empty()).then(|| reqwest::Body::from(bytes.clone()));
    let replayable = replayable.unwrap_or_default();
    let mut sent = call::send(
        &ctx.http,
        permit.app,
        permit.version,
        &values,
        proxied(as_body(&replayable)),
    )
    .await;
    drop(values);
    // An OAuth token the app no longer takes: refresh once and try once more
    // (the body, if any, was kept; a streamed one never gets here).
    let unauthorized =
        matches!(&sent, Ok(response) if response.status() == StatusCode::UNAUTHORIZED);
    if oauth && unauthorized {
        if let Err(refusal) = refreshed(&ctx, &permit, refresh::refresh_now(&ctx, id).await) {
            return Err(record.refused(refusal, template).await);
        }
        let values = match open(&ctx, &permit, None).await {
            Ok(values) => values,
            Err(refusal) => return Err(record.refused(refusal, template).await),
        };
        secrets.extend(call::sent_secrets(permit.version, &values));
        sent = call::send(
            &ctx.http,
            permit.app,
            permit.version,
            &values,
            proxied(as_body(&replayable)),
        )
        .await;
    }
    answer(sent, &record, &permit, template, &parts.method, secrets).await
}

/// The largest body an OAuth call keeps a copy of, to send it again after a
/// refresh.
const REPLAYABLE_BODY: u64 = 64 * 1024;

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// The app's answer (or why there is none) as the caller gets it, recorded:
/// its headers and its body scrubbed of `secrets` (the scrubber lives as long
/// as the body streams); a compressed answer, which the scrub could not read,
/// refused.
async fn answer(
    sent: Result<reqwest::Response, SendError>,
    record: &Record<'_>,
    permit: &Permit<'_>,
    template: Option<String>,
    method: &Method,
    secrets: Vec<SecretString>,
) -> Result<Response, ApiError> {
    let scrubber = Scrubber::new(&secrets);
    drop(secrets);
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            let error = match error {
                SendError::Refused(reason) | SendError::Unreachable(reason) => {
                    ApiError::BadGateway(reason)
                }
                SendError::Timeout(reason) => ApiError::GatewayTimeout(reason),
            };
            let status = error_status(&error);
            record
                .write(
                    &permit.connection,
                    permit.credential_id.clone(),
                    template,
                    status,
                    None,
                )
                .await;
            return Err(error);
        }
    };
    let status = response.status();
    if let Some(encoding) = compressed(response.headers(), &scrubber) {
        let error = ApiError::BadGateway(format!(
            "{} answered with Content-Encoding {encoding} although Credence asked for identity; a compressed answer cannot be checked for the connection's credential, so it is not passed back",
            permit.app.label
        ));
        record
            .write(
                &permit.connection,
                permit.credential_id.clone(),
                template,
                error_status(&error),
                Some(status.as_u16()),
            )
            .await;
        return Err(error);
    }
    let mut answer = Response::builder().status(status);
    if let Some(headers) = answer.headers_mut() {
        *headers = scrubber.headers(headers::to_caller(response.headers()));
    }
    record
        .write(
            &permit.connection,
            permit.credential_id.clone(),
            template,
            status.as_u16(),
            Some(status.as_u16()),
        )
        .await;
    let body = if method == Method::HEAD {
        Body::empty()
    } else if scrubber.is_empty() {
        Body::from_stream(response.bytes_stream())
    } else {
        Body::from_stream(scrubber.body(response.bytes_stream()))
    };
    answer.body(body).map_err(|error| {
        ApiError::Internal(anyhow::anyhow!("cannot answer a proxied call: {error}"))
    })
}

/// The coding of a compressed answer (any `Content-Encoding` but
/// `identity`), masked and shortened to be named in the refusal; `None` for
/// an answer as is.
fn compressed(headers: &HeaderMap, scrubber: &Scrubber) -> Option<String> {
    let coded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(<[u8]>::trim_ascii)
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"));
    if !coded {
        return None;
    }
    let named: Vec<u8> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|value| {
            scrubber
                .masked(value.as_bytes())
                .unwrap_or_else(|| value.as_bytes().to_vec())
        })
        .collect::<Vec<_>>()
        .join(&b", "[..]);
    Some(check::shorten(&String::from_utf8_lossy(&named)))
}

/// A refresh's outcome as the proxy sees it: a refusal made the connection
/// invalid (409); an outage is a conflict to retry.
fn refreshed(
    ctx: &Context,
    permit: &Permit<'_>,
    outcome: credence_service::Result<RefreshOutcome>,
) -> Result<(), Refusal> {
    let _ = ctx;
    let error = match outcome {
        Ok(RefreshOutcome::Refreshed | RefreshOutcome::StillValid) => return Ok(()),
        Ok(RefreshOutcome::Refused { reason }) => credence_service::Error::Conflict(format!(
            "connection {} cannot be used: {} refused to refresh its token ({reason}); it is invalid now and needs a new authorization",
            permit.connection.id, permit.app.label
        )),
        Err(error) => error,
    };
    Err(Refusal {
        connection: Box::new(permit.connection.clone()),
        credential_id: permit.credential_id.clone(),
        error,
    })
}

/// The connection's values, opened at the moment of the call: from `read`,
/// the sealed secret the checks read in the same query, or else (after a
/// refresh, the new tokens) read again.
async fn open(
    ctx: &Context,
    permit: &Permit<'_>,
    read: Option<&str>,
) -> Result<FieldValues, Refusal> {
    let refusal = |error: credence_service::Error| Refusal {
        connection: Box::new(permit.connection.clone()),
        credential_id: permit.credential_id.clone(),
        error,
    };
    if let (Some(sealed), Some(secret)) = (read, permit.connection.secret_id.as_deref()) {
        return secrets::open_connection_values(&ctx.vault, &permit.connection, secret, sealed)
            .map_err(refusal);
    }
    let mut db = ctx.store.db().await.map_err(|e| refusal(e.into()))?;
    let opened = secrets::read_connection_values(&mut db, &ctx.vault, &permit.connection)
        .await
        .map_err(refusal)?;
    opened.ok_or_else(|| {
        refusal(credence_service::Error::Conflict(format!(
            "connection {} cannot be used: it holds no credentials",
            permit.connection.id
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_the_credential_goes_in_are_taken_out_of_the_callers_query() {
        let injected = vec!["api_key".to_string()];
        assert_eq!(
            query_without(Some("q=jane&api_key=mine&%61pi_key=x&limit=5"), &injected).as_deref(),
            Some("q=jane&limit=5")
        );
        assert_eq!(
            query_without(Some("q=a%26b"), &[]).as_deref(),
            Some("q=a%26b")
        );
        assert_eq!(query_without(None, &injected), None);
    }

    #[test]
    fn the_upstream_path_is_read_raw_after_proxy() {
        let parts = |uri: &str| {
            axum::http::Request::builder()
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let (id, path) =
            target(&parts("/api/v2/connections/42/proxy/v1/contacts/a%2Fb?q=1")).unwrap();
        assert_eq!((id, path.as_str()), (42, "/v1/contacts/a%2Fb"));
        assert!(target(&parts("/api/v2/connections/x/proxy/v1")).is_err());
    }
}
