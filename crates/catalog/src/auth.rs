//! How an app version authenticates: OAuth 2.0, an API key, HTTP Basic, or custom
//! fields, and where the credential goes on each upstream call.
//!
//! The catalog holds no secret: OAuth client ids and secrets come from
//! configuration, and field values come from the connection. This module only
//! says which fields a recipient enters and how they are injected.

use crate::error::CatalogError;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The authentication scheme of one app version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Auth {
    /// Authorization-code flow; the access token is injected as
    /// `Authorization: Bearer {access_token}`.
    Oauth2(OAuth2),
    /// Fields entered by the recipient, one of them injected into one header or
    /// query parameter.
    ApiKey(ApiKey),
    /// HTTP Basic (`Authorization: Basic base64(username:password)`), with the
    /// username and password built from fields.
    Basic(Basic),
    /// Fields entered by the recipient, injected into several headers or query
    /// parameters.
    Custom(Custom),
}

/// The kind of an [`Auth`], without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Oauth2,
    ApiKey,
    Basic,
    Custom,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Oauth2 => "oauth2",
            AuthKind::ApiKey => "api_key",
            AuthKind::Basic => "basic",
            AuthKind::Custom => "custom",
        }
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Auth {
    pub fn kind(&self) -> AuthKind {
        match self {
            Auth::Oauth2(_) => AuthKind::Oauth2,
            Auth::ApiKey(_) => AuthKind::ApiKey,
            Auth::Basic(_) => AuthKind::Basic,
            Auth::Custom(_) => AuthKind::Custom,
        }
    }

    /// The fields a recipient enters in the connection form; empty for OAuth 2.0.
    pub fn fields(&self) -> &[Field] {
        match self {
            Auth::Oauth2(_) => &[],
            Auth::ApiKey(api_key) => &api_key.fields,
            Auth::Basic(basic) => &basic.fields,
            Auth::Custom(custom) => &custom.fields,
        }
    }

    /// The field named `name`, if the recipient enters one by that name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields().iter().find(|field| field.name == name)
    }

    /// The header and query injections of the non-OAuth kinds (Basic has none:
    /// it is one `Authorization` header built from `username` and `password`).
    pub fn injections(&self) -> &[Injection] {
        match self {
            Auth::ApiKey(api_key) => std::slice::from_ref(&api_key.inject),
            Auth::Custom(custom) => &custom.inject,
            Auth::Oauth2(_) | Auth::Basic(_) => &[],
        }
    }

    /// The OAuth 2.0 parameters, when this is OAuth 2.0.
    pub fn oauth2(&self) -> Option<&OAuth2> {
        match self {
            Auth::Oauth2(oauth2) => Some(oauth2),
            _ => None,
        }
    }
}

/// OAuth 2.0 authorization-code parameters. Client id and secret are not here:
/// they come from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuth2 {
    pub authorize_url: String,
    pub token_url: String,
    /// Where to revoke a token when a connection is deleted, shaped as
    /// [`OAuth2::revocation_style`] says; `None` when the provider has no such
    /// endpoint (the connection is then only forgotten).
    pub revocation_url: Option<String>,
    pub revocation_style: RevocationStyle,
    /// Joins scopes in the `scope` parameter: `" "` by default, `","` for Slack.
    pub scope_separator: String,
    /// Whether to send an S256 PKCE challenge.
    pub pkce: bool,
    /// Extra, fixed query parameters of the authorize URL (Google's
    /// `access_type=offline`, Notion's `owner=user`).
    pub extra_authorize_params: BTreeMap<String, String>,
    /// Scopes requested whatever the modules (Microsoft's `offline_access`).
    pub base_scopes: Vec<String>,
    pub client_auth: ClientAuth,
    /// Names of token-response values the OAuth client keeps with the connection
    /// (not secret), e.g. Salesforce's `instance_url`, which is the account's host.
    pub token_fields: Vec<String>,
}

/// How the client secret reaches the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1, preferred).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// How a token is revoked at `revocation_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationStyle {
    /// RFC 7009: `POST` a form with `token` (and `token_type_hint`), the client
    /// authenticated as `client_auth` says. Google, Slack, Salesforce, Asana and
    /// Pipedrive accept this shape.
    Rfc7009,
    /// `POST` with the access token itself as `Authorization: Bearer …` and no
    /// body (Dropbox).
    Bearer,
}

/// An API-key scheme: fields and the one place the key goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub fields: Vec<Field>,
    pub inject: Injection,
}

/// HTTP Basic: fields, and templates for the username and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Basic {
    pub fields: Vec<Field>,
    pub username: Template,
    pub password: Template,
}

/// Custom fields injected into several places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Custom {
    pub fields: Vec<Field>,
    pub inject: Vec<Injection>,
}

/// A value the recipient enters in the connection form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Referenced as `{name}` in templates; letters, digits and `_`.
    pub name: String,
    pub label: String,
    /// Secret values are sealed in the vault, never shown again, and typed into a
    /// password input. Non-secret values (a subdomain, an email) may be shown.
    pub secret: bool,
    pub help: Option<String>,
}

/// Where one credential value goes on an upstream call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Injection {
    #[serde(flatten)]
    pub target: InjectionTarget,
    pub value: Template,
}

/// A header name or a query parameter name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionTarget {
    Header(String),
    Query(String),
}

/// Text with `{field}` references, e.g. `Bearer {apiKey}`. Every reference names
/// a declared field (checked at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<TemplatePart>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Field(String),
}

impl Template {
    /// Parses `{name}` references; a brace without its partner, or a name that is
    /// not letters, digits and `_` starting with a letter, is refused.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(TemplatePart::Literal(rest.to_string()));
                    rest = "";
                }
                Some(brace) => {
                    if rest[brace..].starts_with('}') {
                        return Err(format!("{source:?} has a }} without a matching {{"));
                    }
                    if brace > 0 {
                        parts.push(TemplatePart::Literal(rest[..brace].to_string()));
                    }
                    let after = &rest[brace + 1..];
                    let Some(close) = after.find('}') else {
                        return Err(format!("{source:?} has a {{ without a matching }}"));
                    };
                    let name = &after[..close];
                    if !is_field_name(name) {
                        return Err(format!(
                            "{source:?} references {{{name}}}; field names are letters, digits and _, starting with a letter"
                        ));
                    }
                    parts.push(TemplatePart::Field(name.to_string()));
                    rest = &after[close + 1..];
                }
            }
        }
        if source.chars().any(char::is_control) {
            return Err(format!("{source:?} contains a control character"));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// A template that is exactly one field reference, `{name}`.
    pub(crate) fn field(name: &str) -> Self {
        Template {
            source: format!("{{{name}}}"),
            parts: vec![TemplatePart::Field(name.to_string())],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// The field names the template references, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            TemplatePart::Field(name) => Some(name.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// Fills the template with field values. A missing value, or one with a
    /// control character (which could split a header), is refused. The result
    /// may hold a secret: wrap it at once and drop it after the call.
    pub fn render<'a>(
        &self,
        value_of: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<String, CatalogError> {
        let mut rendered = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => rendered.push_str(text),
                TemplatePart::Field(name) => {
                    let value = value_of(name).ok_or_else(|| CatalogError::FieldValue {
                        field: name.clone(),
                        message: "the connection has no value for this field".to_string(),
                    })?;
                    if value.chars().any(char::is_control) {
                        return Err(CatalogError::FieldValue {
                            field: name.clone(),
                            message: "the value contains a control character (such as a line break); re-enter it without one".to_string(),
                        });
                    }
                    rendered.push_str(value);
                }
            }
        }
        Ok(rendered)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

/// Field names: a letter, then letters, digits and `_`, at most 64 characters.
pub(crate) fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_literals_and_field_references() {
        let template = Template::parse("OAuth key=\"{apiKey}\", token=\"{token}\"").unwrap();
        assert_eq!(template.fields().collect::<Vec<_>>(), ["apiKey", "token"]);
        let rendered = template
            .render(|name| match name {
                "apiKey" => Some("k"),
                "token" => Some("t"),
                _ => None,
            })
            .unwrap();
        assert_eq!(rendered, "OAuth key=\"k\", token=\"t\"");
        assert_eq!(Template::field("apiKey").as_str(), "{apiKey}");
    }

    #[test]
    fn bad_templates_are_refused() {
        for text in ["Bearer {apiKey", "Bearer apiKey}", "{}", "{api key}", "{1}"] {
            assert!(Template::parse(text).is_err(), "{text}");
        }
        assert!(Template::parse("plain").is_ok());
    }

    #[test]
    fn rendering_refuses_missing_values_and_line_breaks() {
        let template = Template::parse("Bearer {apiKey}").unwrap();
        let missing = template.render(|_| None).unwrap_err().to_string();
        assert!(missing.starts_with("apiKey: "), "{missing}");
        let split = template
            .render(|_| Some("abc\r\nX-Evil: 1"))
            .unwrap_err()
            .to_string();
        assert!(split.contains("control character"), "{split}");
    }
}
