//! Extractors whose rejections are our JSON errors: a body that is not JSON, a
//! path id that is not a number or a query that does not parse all answer 400
//! (or 413/415) naming the problem, never axum's plain-text default.

use super::error::ApiError;
use super::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use credence_domain::{Scope, ValidationError};
use credence_service::auth::{self, TokenCheck};
use credence_store::{ApiToken, User};

/// `Json<T>` that rejects with [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T> FromRequest<AppState> for AppJson<T>
where
    axum::Json<T>: FromRequest<AppState, Rejection = JsonRejection>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(AppJson(value)),
            Err(rejection) => Err(json_rejection(rejection, state.settings.body_limit)),
        }
    }
}

fn json_rejection(rejection: JsonRejection, body_limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            ApiError::BadRequest(format!("the JSON body does not fit: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::BadRequest(format!("the body is not valid JSON: {}", e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json".into(),
        ),
        JsonRejection::BytesRejection(e)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge(body_limit)
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// `Path<T>` that rejects with [`ApiError`].
#[derive(Debug)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(AppPath(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "bad path: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// `Query<T>` that rejects with [`ApiError`].
#[derive(Debug)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(AppQuery(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "bad query string: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// The caller of an API route, from `Authorization: Token <t>` or `Bearer <t>`.
pub struct ApiCaller {
    pub user: User,
    pub token: ApiToken,
}

impl ApiCaller {
    /// 403 unless the token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.token.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this API token lacks the scope {scope}; create a token with it"
            )))
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "send an API token as Authorization: Token <token>".into(),
                )
            })?;
        let header = header.to_str().map_err(|_| {
            ApiError::Unauthenticated("the Authorization header is not readable text".into())
        })?;
        let (kind, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        if !(kind.eq_ignore_ascii_case("token") || kind.eq_ignore_ascii_case("bearer")) {
            return Err(ApiError::Unauthenticated(
                "the Authorization header must be \"Token <token>\" or \"Bearer <token>\"".into(),
            ));
        }
        let value = value.trim();
        if value.is_empty() || value.len() > 512 {
            return Err(ApiError::Unauthenticated(
                "the API token is missing or malformed".into(),
            ));
        }
        match auth::check_api_token(&state.store, &state.tokens, value).await? {
            TokenCheck::Valid(token, user) => Ok(ApiCaller { user, token }),
            TokenCheck::Expired(at) => Err(ApiError::Unauthenticated(format!(
                "this API token expired at {}; create a new one",
                at.to_rfc3339()
            ))),
            TokenCheck::Unknown => Err(ApiError::Unauthenticated(
                "this API token is unknown or was deleted".into(),
            )),
        }
    }
}

/// Make's list parameters: `pg[offset]`, `pg[limit]`, `pg[sortBy]`, `pg[sortDir]`
/// and `cols[]`, read from the raw query pairs.
#[derive(Debug, Clone)]
pub struct ListParams {
    pub offset: usize,
    pub limit: usize,
    pub sort_by: Option<String>,
    pub descending: bool,
    /// Whether `pg[sortDir]` was given (lists whose default is newest first need to know).
    pub sort_dir_given: bool,
    pub cols: Vec<String>,
}

impl ListParams {
    pub const MAX_LIMIT: usize = 10_000;

    /// Parses the list parameters out of `pairs`, leaving other keys alone.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListParams, ApiError> {
        let mut params = ListParams {
            offset: 0,
            limit: Self::MAX_LIMIT,
            sort_by: None,
            descending: false,
            sort_dir_given: false,
            cols: vec![],
        };
        let mut problems = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "pg[offset]" => match value.parse::<usize>() {
                    Ok(offset) => params.offset = offset,
                    Err(_) => problems.push(ValidationError::new(
                        key,
                        format!("pg[offset] {value:?} is not a whole number ≥ 0"),
                    )),
                },
                "pg[limit]" => match value.parse::<usize>() {
                    Ok(limit) if (1..=Self::MAX_LIMIT).contains(&limit) => params.limit = limit,
                    _ => problems.push(ValidationError::new(
                        key,
                        format!(
                            "pg[limit] {value:?} must be a whole number from 1 to {}",
                            Self::MAX_LIMIT
                        ),
                    )),
                },
                "pg[sortBy]" => params.sort_by = Some(value.clone()),
                "pg[sortDir]" => match value.as_str() {
                    "asc" => {
                        params.descending = false;
                        params.sort_dir_given = true;
                    }
                    "desc" => {
                        params.descending = true;
                        params.sort_dir_given = true;
                    }
                    _ => problems.push(ValidationError::new(
                        key,
                        format!("pg[sortDir] {value:?} must be asc or desc"),
                    )),
                },
                "cols[]" | "cols" => params.cols.push(value.clone()),
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(params)
        } else {
            Err(ApiError::Invalid(problems))
        }
    }

    /// Checks `sort_by` against the sortable columns; the first is the default.
    pub fn sort_column(&self, sortable: &[&'static str]) -> Result<&'static str, ApiError> {
        match &self.sort_by {
            None => Ok(sortable[0]),
            Some(wanted) => sortable
                .iter()
                .copied()
                .find(|c| c == wanted)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "pg[sortBy]",
                        format!(
                            "pg[sortBy] {wanted:?} must be one of {}",
                            sortable.join(", ")
                        ),
                    )
                }),
        }
    }

    /// Make's `pg` answer object.
    pub fn answer(&self, sort_by: &str) -> serde_json::Value {
        serde_json::json!({
            "sortBy": sort_by,
            "sortDir": if self.descending { "desc" } else { "asc" },
            "offset": self.offset,
            "limit": self.limit,
        })
    }
}

/// Raw query pairs, for parameters serde cannot model (`cols[]`, `pg[...]`).
/// No parameter may be repeated more than [`QueryPairs::MAX_REPEATS`] times:
/// repeated values (`event[]`, `cols[]`, `type[]`) become binds of one query
/// or lists compared with one another, and no list needs more.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
        let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (key, _) in &pairs {
            *counts.entry(key.as_str()).or_default() += 1;
        }
        let mut problems: Vec<ValidationError> = counts
            .into_iter()
            .filter(|(_, count)| *count > QueryPairs::MAX_REPEATS)
            .map(|(key, count)| {
                ValidationError::new(
                    shorten(key),
                    format!(
                        "{} is given {count} times; the limit is {}",
                        shorten(key),
                        QueryPairs::MAX_REPEATS
                    ),
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(QueryPairs(pairs))
        } else {
            problems.sort_by(|a, b| a.field.cmp(&b.field));
            Err(ApiError::Invalid(problems))
        }
    }
}

impl QueryPairs {
    /// The most values one query parameter may have.
    pub const MAX_REPEATS: usize = 50;

    /// The single value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` as an integer id; absent → `None`, not a number → 400 naming it.
    pub fn id(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value.parse::<i64>().map(Some).map_err(|_| {
                ApiError::invalid(
                    key,
                    format!("{key} {:?} is not an integer id", shorten(value)),
                )
            }),
        }
    }

    /// `key` as `true` or `false`; absent → false, anything else → 400 naming it.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::invalid(
                key,
                format!("{key} {:?} must be true or false", shorten(other)),
            )),
        }
    }

    /// Like [`QueryPairs::id`] but required.
    pub fn required_id(&self, key: &str) -> Result<i64, ApiError> {
        self.id(key)?
            .ok_or_else(|| ApiError::invalid(key, format!("{key} is required")))
    }
}

fn shorten(value: &str) -> String {
    value.chars().take(40).collect()
}

/// Applies `cols[]` (keep only these keys) and pagination to serialized items.
pub fn select_columns(
    items: Vec<serde_json::Value>,
    cols: &[String],
    known: &[&str],
) -> Result<Vec<serde_json::Value>, ApiError> {
    if cols.is_empty() {
        return Ok(items);
    }
    if let Some(unknown) = cols.iter().find(|c| !known.contains(&c.as_str())) {
        return Err(ApiError::invalid(
            "cols[]",
            format!(
                "column {:?} is unknown; known columns are {}",
                shorten(unknown),
                known.join(", ")
            ),
        ));
    }
    Ok(items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.into_iter()
                    .filter(|(k, _)| cols.iter().any(|c| c == k))
                    .collect(),
            ),
            other => other,
        })
        .collect())
}
