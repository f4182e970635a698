//! What the catalog says about the app of a credential or a connection: its
//! version, its OAuth 2.0 settings and client, and the checks of values
//! against its fields. Read-only; no store, no provider call.

use super::{Context, Error, Result};
use credence_catalog::{App, AppVersion, OAuth2};
use credence_domain::ValidationError;
use credence_provider::{oauth_client_variables, FieldValues, OAuthClient, SecretJson};
use credence_store::{Connection, RequestedCredential};
use secrecy::SecretString;
use serde_json::Value;
use std::collections::BTreeMap;

/// Longest value accepted for one field.
pub const FIELD_VALUE_MAX: usize = 4096;

/// The catalog app and version a credential asks for, or a conflict saying
/// it is gone from the catalog.
pub fn of_credential<'a>(
    ctx: &'a Context,
    credential: &RequestedCredential,
) -> Result<(&'a App, &'a AppVersion)> {
    find(ctx, &credential.app_key, credential.app_version)
}

/// The catalog app and version a connection was made for, or a conflict
/// saying it is gone from the catalog.
pub fn of_connection<'a>(
    ctx: &'a Context,
    connection: &Connection,
) -> Result<(&'a App, &'a AppVersion)> {
    find(ctx, &connection.app_key, connection.app_version)
}

/// The catalog app `key` and its `version`, or a conflict saying which is gone.
pub fn find<'a>(ctx: &'a Context, key: &str, version: i64) -> Result<(&'a App, &'a AppVersion)> {
    let app = ctx
        .catalog
        .get(key)
        .ok_or_else(|| Error::Conflict(format!("the app {key} is no longer in the catalog")))?;
    let found = app.version(version as u32).ok_or_else(|| {
        Error::Conflict(format!(
            "version {version} of {} is no longer in the catalog",
            app.key
        ))
    })?;
    Ok((app, found))
}

/// The OAuth 2.0 settings of an app version that uses it.
pub fn oauth2_of(version: &AppVersion) -> Result<&OAuth2> {
    version.auth.oauth2().ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "version {} is not an OAuth app",
            version.version
        ))
    })
}

/// The configured client of `app`, or a conflict naming what to set.
pub fn client_of<'a>(ctx: &'a Context, app: &App) -> Result<&'a OAuthClient> {
    ctx.oauth_clients.get(&app.key).ok_or_else(|| {
        let (id, secret) = oauth_client_variables(&app.key);
        Error::Conflict(format!(
            "{} connects with OAuth 2.0, but no OAuth client is configured for {}: \
             the operator sets {id} and {secret} (or [oauth.{}] in the config file), \
             or a connection brings its own (clientId and clientSecret)",
            app.label, app.key, app.key
        ))
    })
}

/// The client a connection or flow uses: its own when it has one ("advanced
/// settings" of a team's connection), else the one configured for its app.
pub fn client_for(ctx: &Context, app: &App, own: Option<OAuthClient>) -> Result<OAuthClient> {
    match own {
        Some(own) => Ok(own),
        None => client_of(ctx, app).cloned(),
    }
}

/// The scopes stored as a JSON array.
pub fn scope_list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Finds the version an input names: a number, `"latest"` or absent.
pub fn pick_version<'a>(
    field: &str,
    raw: Option<&Value>,
    app: &'a App,
) -> Result<&'a AppVersion, ValidationError> {
    let number = match raw {
        None | Some(Value::Null) => return Ok(app.latest()),
        Some(Value::String(text)) if text == "latest" => return Ok(app.latest()),
        Some(Value::String(text)) => text.parse::<u32>().ok(),
        Some(Value::Number(number)) => number.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(_) => None,
    };
    let known = app
        .versions
        .iter()
        .map(|v| v.version.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match number {
        Some(n) => app.version(n).ok_or_else(|| {
            ValidationError::new(
                field,
                format!("{} has no version {n}; versions are {known}", app.key),
            )
        }),
        None => Err(ValidationError::new(
            field,
            format!(
                "appVersion must be a version number or \"latest\"; {} has {known}",
                app.key
            ),
        )),
    }
}

/// At most 64 characters of a value the caller sent, to quote it in an error.
pub fn shorten(value: &str) -> String {
    value.chars().take(64).collect()
}

/// Checks the entered values against the app's fields: every field given,
/// nothing else, each at most 4096 characters. The values come out as
/// `SecretString`s; `data`, with the copies serde_json made, is zeroized here.
pub fn parse_values(
    version: &AppVersion,
    data: Option<SecretJson>,
    prefix: &str,
) -> Result<FieldValues> {
    let Some(data) = data else {
        return Err(ValidationError::new(
            "data",
            "data is required: an object with the app's fields",
        )
        .into());
    };
    let mut problems = Vec::new();
    let mut values = BTreeMap::new();
    for field in version.auth.fields() {
        match data.get(&field.name) {
            Some(Value::String(value)) if !value.trim().is_empty() => {
                let length = value.chars().count();
                if length > FIELD_VALUE_MAX {
                    problems.push(ValidationError::new(
                        format!("{prefix}{}", field.name),
                        format!(
                            "{} is {length} characters; the limit is {FIELD_VALUE_MAX}",
                            field.name
                        ),
                    ));
                } else {
                    values.insert(
                        field.name.clone(),
                        SecretString::from(value.trim().to_string()),
                    );
                }
            }
            Some(Value::String(_)) | None | Some(Value::Null) => {
                problems.push(ValidationError::new(
                    format!("{prefix}{}", field.name),
                    format!("{} ({}) is required", field.name, field.label),
                ))
            }
            Some(_) => problems.push(ValidationError::new(
                format!("{prefix}{}", field.name),
                format!("{} must be text", field.name),
            )),
        }
    }
    for name in data.keys() {
        if version.auth.field(name).is_none() {
            let known: Vec<&str> = version
                .auth
                .fields()
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            problems.push(ValidationError::new(
                format!("{prefix}{}", name.chars().take(64).collect::<String>()),
                format!(
                    "this app has no field {:?}; its fields are {}",
                    name.chars().take(64).collect::<String>(),
                    known.join(", ")
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(FieldValues(values))
    } else {
        Err(Error::Invalid(problems))
    }
}
