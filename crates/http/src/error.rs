//! The API's error type and the policy behind it.
//!
//! Every error answers JSON `{"message", "code", "detail", "suberrors"}` (the shape
//! Make's API uses, which Make clients read): `message` is a short title, `detail`
//! says what happened and how to fix it, `suberrors` name the offending fields.
//! A 5xx body stays generic; its cause goes to the log only, because it may hold
//! internals (SQL, paths) that are nobody's business.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use credence_domain::ValidationError;
use credence_service as service;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: input broke a rule; each problem names its field.
    #[error("invalid input")]
    Invalid(Vec<ValidationError>),
    /// 400: the request itself could not be read (bad JSON, bad query string).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials nobody issued.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: known caller, not allowed (missing scope, role or feature).
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing there, or nothing the caller may know of.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the limit.
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// 408: the request was not answered within the configured time.
    #[error("the request was not answered within {0} seconds; try again")]
    RequestTimeout(u64),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: too many attempts; retry after the given seconds (`Retry-After`),
    /// and what limit was reached.
    #[error("{1}; try again in {0} seconds")]
    TooManyRequests(u64, String),
    /// 502: the app a proxied call went to could not be reached, or its
    /// destination was refused (the reason names the host, never a secret).
    #[error("{0}")]
    BadGateway(String),
    /// 504: the app a proxied call went to did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 500: a fault of ours; logged, not described.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// The error envelope every API error answers (also the OpenAPI document's
/// `Error` schema, so the document cannot drift from it).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct Body<'a> {
    /// A short title of the status, such as "Invalid input".
    #[schema(example = "Invalid input")]
    message: &'a str,
    /// The kind of error, for programs.
    #[schema(example = "invalid_input")]
    code: &'a str,
    /// What happened and how to fix it.
    detail: String,
    /// One entry per offending field (400 invalid input); else empty.
    suberrors: Vec<SubError>,
}

/// One problem of an input, naming its field.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubError {
    message: String,
    /// The field as sent: `name`, `credentials[0].appName`, `pg[limit]`.
    field: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_input", "Invalid input"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "Bad request"),
            ApiError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ApiError::RequestTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            ApiError::TooManyRequests(..) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            ),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway", "Bad gateway"),
            ApiError::GatewayTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "Gateway timeout",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![ValidationError::new(field, message)])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.status_and_code();
        let (detail, suberrors) = match &self {
            ApiError::Invalid(problems) => {
                let detail = problems
                    .iter()
                    .map(|p| p.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                let suberrors = problems
                    .iter()
                    .map(|p| SubError {
                        message: p.message.clone(),
                        field: p.field.clone(),
                    })
                    .collect();
                (detail, suberrors)
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (
                    "something went wrong on our side; it has been logged".to_string(),
                    Vec::new(),
                )
            }
            other => (other.to_string(), Vec::new()),
        };
        let mut response = (
            status,
            axum::Json(Body {
                message,
                code,
                detail,
                suberrors,
            }),
        )
            .into_response();
        if let ApiError::TooManyRequests(seconds, _) = self {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<service::Error> for ApiError {
    fn from(error: service::Error) -> Self {
        match error {
            service::Error::Invalid(problems) => ApiError::Invalid(problems),
            service::Error::NotFound(message) => ApiError::NotFound(message),
            service::Error::Forbidden(message) => ApiError::Forbidden(message),
            service::Error::Conflict(message) => ApiError::Conflict(message),
            service::Error::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<credence_store::Error> for ApiError {
    fn from(error: credence_store::Error) -> Self {
        service::Error::from(error).into()
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        ApiError::Invalid(vec![error])
    }
}
