//! Reading one app file: TOML into the raw shape of the file format, then every
//! rule of the format checked once, turning it into an [`App`]. Errors name the
//! file and the field path (`versions[0].modules[2].operations[1]`).
//!
//! The raw structs deny unknown keys, so a typo such as `authorise_url` is an
//! error rather than a silently missing setting.

use crate::app::{Access, AccountHost, App, AppVersion, Module, ModuleKind};
use crate::auth::{
    is_field_name, ApiKey, Auth, Basic, ClientAuth, Custom, Field, Injection, InjectionTarget,
    OAuth2, RevocationStyle, Template,
};
use crate::error::{shorten, CatalogError};
use crate::operation::Operation;
use crate::url::{check_dns_name, check_url, UrlRules};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Where a file comes from; only an operator's file may relax host rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Builtin,
    Operator,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    key: String,
    label: String,
    #[serde(default)]
    allow_private_hosts: bool,
    #[serde(default)]
    versions: Vec<RawVersion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    version: u32,
    base_url: String,
    account_host_field: Option<String>,
    host_suffix: Option<String>,
    auth: RawAuth,
    verify: Option<RawVerify>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    modules: Vec<RawModule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    method: String,
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    kind: String,
    // oauth2
    authorize_url: Option<String>,
    token_url: Option<String>,
    revocation_url: Option<String>,
    revocation_style: Option<String>,
    scope_separator: Option<String>,
    pkce: Option<bool>,
    extra_authorize_params: Option<BTreeMap<String, String>>,
    base_scopes: Option<Vec<String>>,
    client_auth: Option<String>,
    token_fields: Option<Vec<String>>,
    // api_key, basic, custom
    fields: Option<Vec<RawField>>,
    // One table for api_key, a list of tables for custom; read by hand so each
    // shape gets its own error message.
    inject: Option<toml::Value>,
    // basic
    username_field: Option<String>,
    password_field: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    label: String,
    // Secret unless said otherwise: forgetting the flag must not expose a key.
    #[serde(default = "default_true")]
    secret: bool,
    help: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInjection {
    header: Option<String>,
    query: Option<String>,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    key: String,
    label: String,
    kind: String,
    access: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    operations: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// Parses and validates one app file. `source` is the name errors use.
pub(crate) fn parse_app(source: &str, text: &str, origin: Origin) -> Result<App, CatalogError> {
    let raw: RawApp =
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            // toml's messages may span lines; an error is one line in a log.
            let mut message = inner.message().trim().replace('\n', "; ");
            if let Some(span) = inner.span() {
                let (line, column) = line_and_column(text, span.start);
                message.push_str(&format!(" (line {line}, column {column})"));
            }
            if path == "." {
                CatalogError::Syntax {
                    file: source.to_string(),
                    message,
                }
            } else {
                CatalogError::invalid(source, path, message)
            }
        })?;
    Checker { file: source }.app(raw, origin)
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    (line, column)
}

/// Headers the broker or the HTTP client owns; letting a file set them would
/// break framing or let a request reach another host.
const FORBIDDEN_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "proxy-authorization",
];

/// Authorize-URL parameters the OAuth client sets itself.
const RESERVED_AUTHORIZE_PARAMS: [&str; 7] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// Token-response values that are secrets and so can never be plain fields.
const SECRET_TOKEN_VALUES: [&str; 3] = ["access_token", "refresh_token", "id_token"];

struct Checker<'a> {
    file: &'a str,
}

/// The fields an auth section declares and which of them it uses, so the version
/// can check the account host field and report unused fields.
struct CheckedAuth {
    auth: Auth,
    used_fields: BTreeSet<String>,
}

impl Checker<'_> {
    fn fail<T>(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, CatalogError> {
        Err(CatalogError::invalid(self.file, field, message))
    }

    fn app(&self, raw: RawApp, origin: Origin) -> Result<App, CatalogError> {
        let key = raw.key.trim();
        let key_is_valid = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !key_is_valid || key != raw.key {
            return self.fail(
                "key",
                format!(
                    "{} is not an app key; use 1 to 64 lowercase letters, digits and -",
                    shorten(&raw.key)
                ),
            );
        }
        let label = self.text("label", &raw.label, 100)?;
        if raw.allow_private_hosts && origin == Origin::Builtin {
            return self.fail(
                "allow_private_hosts",
                "a built-in app cannot allow private hosts; only an operator's own file may",
            );
        }
        if raw.versions.is_empty() {
            return self.fail(
                "versions",
                "no versions; add at least one [[versions]] table",
            );
        }
        let mut versions = Vec::with_capacity(raw.versions.len());
        for (index, raw_version) in raw.versions.into_iter().enumerate() {
            let path = format!("versions[{index}]");
            let version = self.version(&path, raw_version, raw.allow_private_hosts)?;
            if versions
                .iter()
                .any(|other: &AppVersion| other.version == version.version)
            {
                return self.fail(
                    format!("{path}.version"),
                    format!(
                        "version {} appears twice; version numbers must be unique",
                        version.version
                    ),
                );
            }
            versions.push(version);
        }
        versions.sort_by_key(|version| version.version);
        Ok(App {
            key: raw.key,
            label,
            versions,
            source: self.file.to_string(),
            builtin: origin == Origin::Builtin,
            allow_private_hosts: raw.allow_private_hosts,
        })
    }

    /// Trimmed text of 1..=`max` characters without control characters.
    fn text(&self, field: &str, raw: &str, max: usize) -> Result<String, CatalogError> {
        let value = raw.trim();
        let length = value.chars().count();
        if length == 0 {
            return self.fail(field, "is empty; write a short human-readable text");
        }
        if length > max {
            return self.fail(field, format!("is {length} characters; the limit is {max}"));
        }
        if value.chars().any(char::is_control) {
            return self.fail(
                field,
                format!("{} contains control characters", shorten(value)),
            );
        }
        Ok(value.to_string())
    }

    fn version(
        &self,
        path: &str,
        raw: RawVersion,
        allow_private_hosts: bool,
    ) -> Result<AppVersion, CatalogError> {
        if raw.version == 0 {
            return self.fail(format!("{path}.version"), "is 0; versions start at 1");
        }
        let CheckedAuth {
            auth,
            mut used_fields,
        } = self.auth(&format!("{path}.auth"), raw.auth, allow_private_hosts)?;

        let account_host = match (raw.account_host_field, raw.host_suffix) {
            (None, None) => {
                self.base_url(path, &raw.base_url, None, allow_private_hosts)?;
                None
            }
            (Some(_), None) => {
                return self.fail(
                    format!("{path}.host_suffix"),
                    "is missing; account_host_field needs the domain every account host must be under, e.g. host_suffix = \"myshopify.com\"",
                )
            }
            (None, Some(_)) => {
                return self.fail(
                    format!("{path}.host_suffix"),
                    "is only meaningful with account_host_field; remove it or name the field that holds the account's host",
                )
            }
            (Some(field), Some(suffix)) => {
                let declared = match &auth {
                    Auth::Oauth2(oauth2) => oauth2.token_fields.contains(&field),
                    other => other.field(&field).is_some_and(|declared| !declared.secret),
                };
                if !declared {
                    let where_declared = match &auth {
                        Auth::Oauth2(_) => "auth.token_fields",
                        _ => "auth.fields with secret = false",
                    };
                    return self.fail(
                        format!("{path}.account_host_field"),
                        format!("{field:?} is not declared in {where_declared}; the host comes from a declared, non-secret field"),
                    );
                }
                if let Err(why) = check_dns_name(&suffix) {
                    return self.fail(format!("{path}.host_suffix"), why);
                }
                if !suffix.contains('.') {
                    return self.fail(
                        format!("{path}.host_suffix"),
                        format!("{suffix:?} is a top-level domain; name the provider's domain, e.g. zendesk.com"),
                    );
                }
                let after_placeholder =
                    self.base_url(path, &raw.base_url, Some((&field, &suffix)), allow_private_hosts)?;
                used_fields.insert(field.clone());
                Some(AccountHost {
                    field,
                    host_suffix: suffix,
                    after_placeholder,
                })
            }
        };

        if let Some(unused) = auth
            .fields()
            .iter()
            .find(|field| !used_fields.contains(&field.name))
        {
            return self.fail(
                format!("{path}.auth.fields"),
                format!(
                    "the field {:?} is declared but never used; reference it as {{{}}} in a template, make it account_host_field, or remove it",
                    unused.name, unused.name
                ),
            );
        }

        let verify = match raw.verify {
            None => None,
            Some(verify) => Some(self.verify(&format!("{path}.verify"), verify)?),
        };
        let headers = self.static_headers(&format!("{path}.headers"), raw.headers, &auth)?;

        if raw.modules.is_empty() {
            return self.fail(
                format!("{path}.modules"),
                "no modules; add at least one [[versions.modules]] table",
            );
        }
        let mut modules: Vec<Module> = Vec::with_capacity(raw.modules.len());
        for (index, raw_module) in raw.modules.into_iter().enumerate() {
            let module_path = format!("{path}.modules[{index}]");
            let module = self.module(&module_path, raw_module, &auth)?;
            if modules.iter().any(|other| other.key == module.key) {
                return self.fail(
                    format!("{module_path}.key"),
                    format!(
                        "{:?} is used by two modules; module keys must be unique",
                        module.key
                    ),
                );
            }
            modules.push(module);
        }

        Ok(AppVersion {
            version: raw.version,
            base_url: raw.base_url,
            account_host,
            auth,
            verify,
            headers,
            modules,
        })
    }

    /// Checks a base URL. With a per-account host (`field`, `suffix`) the host
    /// must start with `{field}` and any fixed text after it must be under the
    /// suffix; returns that fixed text (e.g. `.myshopify.com`).
    fn base_url(
        &self,
        path: &str,
        base_url: &str,
        account_host: Option<(&str, &str)>,
        allow_private_hosts: bool,
    ) -> Result<String, CatalogError> {
        let field_path = format!("{path}.base_url");
        let rules = UrlRules {
            allow_private_hosts,
            allow_query: false,
            is_base: true,
        };
        let Some((field, suffix)) = account_host else {
            if base_url.contains(['{', '}']) {
                return self.fail(
                    field_path,
                    format!("{} has a {{placeholder}}; set account_host_field and host_suffix for a host per account", shorten(base_url)),
                );
            }
            return match check_url(base_url, rules) {
                Ok(_) => Ok(String::new()),
                Err(why) => self.fail(field_path, why),
            };
        };
        let placeholder = format!("{{{field}}}");
        let Some(host_start) = base_url.find("://").map(|index| index + 3) else {
            return self.fail(
                field_path,
                format!(
                    "{} is not an absolute URL (https://host/path)",
                    shorten(base_url)
                ),
            );
        };
        if !base_url[host_start..].starts_with(&placeholder)
            || base_url.matches(['{', '}']).count() != 2
        {
            return self.fail(
                field_path,
                format!(
                    "{} must start its host with {placeholder} and have no other placeholder, e.g. https://{placeholder}.{suffix}",
                    shorten(base_url)
                ),
            );
        }
        let after_start = host_start + placeholder.len();
        let after_end = base_url[after_start..]
            .find(['/', '?', '#', ':'])
            .map_or(base_url.len(), |index| after_start + index);
        let after_placeholder = base_url[after_start..after_end].to_string();
        // Check the rest of the URL with a stand-in account host in place.
        let stand_in = if after_placeholder.is_empty() {
            format!("account.{suffix}")
        } else {
            "account".to_string()
        };
        let example = base_url.replacen(&placeholder, &stand_in, 1);
        if let Err(why) = check_url(&example, rules) {
            return self.fail(field_path, why.replace(&stand_in, &placeholder));
        }
        let fixed = after_placeholder.strip_prefix('.').unwrap_or_default();
        let under_suffix = fixed == suffix || fixed.ends_with(&format!(".{suffix}"));
        if !after_placeholder.is_empty() && !under_suffix {
            return self.fail(
                field_path,
                format!(
                    "the host {placeholder}{after_placeholder} is not under host_suffix {suffix}"
                ),
            );
        }
        if base_url[after_end..].starts_with(':') {
            return self.fail(field_path, "a per-account host cannot have a port");
        }
        Ok(after_placeholder)
    }

    fn auth(
        &self,
        path: &str,
        raw: RawAuth,
        allow_private_hosts: bool,
    ) -> Result<CheckedAuth, CatalogError> {
        let oauth2_keys = [
            ("authorize_url", raw.authorize_url.is_some()),
            ("token_url", raw.token_url.is_some()),
            ("revocation_url", raw.revocation_url.is_some()),
            ("revocation_style", raw.revocation_style.is_some()),
            ("scope_separator", raw.scope_separator.is_some()),
            ("pkce", raw.pkce.is_some()),
            (
                "extra_authorize_params",
                raw.extra_authorize_params.is_some(),
            ),
            ("base_scopes", raw.base_scopes.is_some()),
            ("client_auth", raw.client_auth.is_some()),
            ("token_fields", raw.token_fields.is_some()),
        ];
        let field_keys = [("fields", raw.fields.is_some())];
        let inject_keys = [("inject", raw.inject.is_some())];
        let basic_keys = [
            ("username_field", raw.username_field.is_some()),
            ("password_field", raw.password_field.is_some()),
            ("username", raw.username.is_some()),
            ("password", raw.password.is_some()),
        ];
        let kind = raw.kind.as_str();
        let not_for_kind: Vec<&[(&str, bool)]> = match kind {
            "oauth2" => vec![&field_keys, &inject_keys, &basic_keys],
            "api_key" | "custom" => vec![&oauth2_keys, &basic_keys],
            "basic" => vec![&oauth2_keys, &inject_keys],
            other => {
                return self.fail(
                    format!("{path}.kind"),
                    format!("{other:?} is not an auth kind; use oauth2, api_key, basic or custom"),
                )
            }
        };
        if let Some((key, _)) = not_for_kind
            .iter()
            .flat_map(|keys| keys.iter())
            .find(|(_, present)| *present)
        {
            return self.fail(
                format!("{path}.{key}"),
                format!("does not apply to auth.kind = {kind:?}; remove it"),
            );
        }

        match kind {
            "oauth2" => self.oauth2(path, raw, allow_private_hosts),
            "api_key" => {
                let fields = self.fields(path, raw.fields, None)?;
                let inject = match raw.inject {
                    Some(toml::Value::Table(table)) => {
                        self.injection(&format!("{path}.inject"), toml::Value::Table(table), &fields)?
                    }
                    Some(_) => {
                        return self.fail(
                            format!("{path}.inject"),
                            "api_key takes one injection, inject = { header = \"…\", value = \"…\" } or { query = \"…\", value = \"…\" }; use kind = \"custom\" for several",
                        )
                    }
                    None => return self.fail(format!("{path}.inject"), "is missing; say where the key goes, e.g. inject = { header = \"Authorization\", value = \"Bearer {apiKey}\" }"),
                };
                let used_fields = inject.value.fields().map(str::to_string).collect();
                self.require_secret_use(path, &fields, &used_fields)?;
                Ok(CheckedAuth {
                    auth: Auth::ApiKey(ApiKey { fields, inject }),
                    used_fields,
                })
            }
            "custom" => {
                let fields = self.fields(path, raw.fields, None)?;
                let list = match raw.inject {
                    Some(toml::Value::Array(list)) if !list.is_empty() => list,
                    Some(toml::Value::Array(_)) | None => {
                        return self.fail(
                            format!("{path}.inject"),
                            "is missing or empty; custom takes a list, inject = [{ header = \"…\", value = \"…\" }, …]",
                        )
                    }
                    Some(_) => {
                        return self.fail(
                            format!("{path}.inject"),
                            "custom takes a list of injections, inject = [{ header = \"…\", value = \"…\" }, …]",
                        )
                    }
                };
                let mut inject: Vec<Injection> = Vec::with_capacity(list.len());
                for (index, value) in list.into_iter().enumerate() {
                    let item_path = format!("{path}.inject[{index}]");
                    let injection = self.injection(&item_path, value, &fields)?;
                    if inject
                        .iter()
                        .any(|other| same_target(&other.target, &injection.target))
                    {
                        return self.fail(
                            item_path,
                            "sets the same header or query parameter as an earlier injection",
                        );
                    }
                    inject.push(injection);
                }
                let used_fields = inject
                    .iter()
                    .flat_map(|injection| injection.value.fields())
                    .map(str::to_string)
                    .collect();
                self.require_secret_use(path, &fields, &used_fields)?;
                Ok(CheckedAuth {
                    auth: Auth::Custom(Custom { fields, inject }),
                    used_fields,
                })
            }
            "basic" => {
                let default_fields = vec![
                    Field {
                        name: "username".to_string(),
                        label: "Username".to_string(),
                        secret: false,
                        help: None,
                    },
                    Field {
                        name: "password".to_string(),
                        label: "Password".to_string(),
                        secret: true,
                        help: None,
                    },
                ];
                let fields = self.fields(path, raw.fields, Some(default_fields))?;
                let username = self.basic_part(
                    path,
                    ("username", raw.username),
                    ("username_field", raw.username_field),
                    &fields,
                )?;
                let password = self.basic_part(
                    path,
                    ("password", raw.password),
                    ("password_field", raw.password_field),
                    &fields,
                )?;
                let used_fields: BTreeSet<String> = username
                    .fields()
                    .chain(password.fields())
                    .map(str::to_string)
                    .collect();
                self.require_secret_use(path, &fields, &used_fields)?;
                Ok(CheckedAuth {
                    auth: Auth::Basic(Basic {
                        fields,
                        username,
                        password,
                    }),
                    used_fields,
                })
            }
            _ => unreachable!("the kind was checked above"),
        }
    }

    fn oauth2(
        &self,
        path: &str,
        raw: RawAuth,
        allow_private_hosts: bool,
    ) -> Result<CheckedAuth, CatalogError> {
        let url = |key: &str, value: Option<String>, allow_query: bool, required: bool| {
            let field = format!("{path}.{key}");
            match value {
                None if required => self.fail(
                    field,
                    "is missing; oauth2 needs authorize_url and token_url",
                ),
                None => Ok(None),
                Some(value) => {
                    let rules = UrlRules {
                        allow_private_hosts,
                        allow_query,
                        is_base: false,
                    };
                    match check_url(&value, rules) {
                        Ok(_) if value.contains(['{', '}']) => self.fail(
                            field,
                            format!(
                                "{} has a {{placeholder}}; OAuth endpoints are fixed URLs",
                                shorten(&value)
                            ),
                        ),
                        Ok(_) => Ok(Some(value)),
                        Err(why) => self.fail(field, why),
                    }
                }
            }
        };
        let authorize_url =
            url("authorize_url", raw.authorize_url, true, true)?.unwrap_or_default();
        let token_url = url("token_url", raw.token_url, false, true)?.unwrap_or_default();
        let revocation_url = url("revocation_url", raw.revocation_url, false, false)?;
        let revocation_style = match raw.revocation_style.as_deref() {
            Some(_) if revocation_url.is_none() => {
                return self.fail(format!("{path}.revocation_style"), "needs revocation_url")
            }
            None | Some("rfc7009") => RevocationStyle::Rfc7009,
            Some("bearer") => RevocationStyle::Bearer,
            Some(other) => {
                return self.fail(
                    format!("{path}.revocation_style"),
                    format!("{other:?} is not a revocation style; use rfc7009 or bearer"),
                )
            }
        };
        let scope_separator = raw.scope_separator.unwrap_or_else(|| " ".to_string());
        if scope_separator.is_empty()
            || scope_separator.chars().count() > 3
            || scope_separator
                .chars()
                .any(|c| c.is_alphanumeric() || c.is_control())
        {
            return self.fail(
                format!("{path}.scope_separator"),
                format!("{scope_separator:?} is not a separator; use \" \" (the default) or \",\""),
            );
        }
        let client_auth = match raw.client_auth.as_deref() {
            None | Some("basic") => ClientAuth::Basic,
            Some("post") => ClientAuth::Post,
            Some(other) => {
                return self.fail(
                    format!("{path}.client_auth"),
                    format!("{other:?} is not a client authentication; use basic or post"),
                )
            }
        };
        let extra_authorize_params = raw.extra_authorize_params.unwrap_or_default();
        for (name, value) in &extra_authorize_params {
            let field = format!("{path}.extra_authorize_params.{name}");
            if RESERVED_AUTHORIZE_PARAMS.contains(&name.as_str()) {
                return self.fail(field, "is set by the OAuth client itself; remove it");
            }
            let name_is_valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !name_is_valid {
                return self.fail(field, "is not a parameter name (letters, digits, _ . -)");
            }
            if value.chars().any(char::is_control) {
                return self.fail(field, "contains control characters");
            }
        }
        let mut base_scopes = Vec::new();
        for (index, scope) in raw.base_scopes.unwrap_or_default().into_iter().enumerate() {
            let field = format!("{path}.base_scopes[{index}]");
            self.scope(&field, &scope, &scope_separator)?;
            if base_scopes.contains(&scope) {
                return self.fail(field, format!("{scope:?} is listed twice"));
            }
            base_scopes.push(scope);
        }
        let mut token_fields: Vec<String> = Vec::new();
        for (index, name) in raw.token_fields.unwrap_or_default().into_iter().enumerate() {
            let field = format!("{path}.token_fields[{index}]");
            if !is_field_name(&name) {
                return self.fail(
                    field,
                    format!(
                        "{} is not a field name (letters, digits and _, starting with a letter)",
                        shorten(&name)
                    ),
                );
            }
            if SECRET_TOKEN_VALUES.contains(&name.as_str()) {
                return self.fail(
                    field,
                    format!(
                        "{name:?} is a secret; token fields are plain values such as instance_url"
                    ),
                );
            }
            if token_fields.contains(&name) {
                return self.fail(field, format!("{name:?} is listed twice"));
            }
            token_fields.push(name);
        }
        Ok(CheckedAuth {
            auth: Auth::Oauth2(OAuth2 {
                authorize_url,
                token_url,
                revocation_url,
                revocation_style,
                scope_separator,
                pkce: raw.pkce.unwrap_or(true),
                extra_authorize_params,
                base_scopes,
                client_auth,
                token_fields,
            }),
            used_fields: BTreeSet::new(),
        })
    }

    fn fields(
        &self,
        path: &str,
        raw: Option<Vec<RawField>>,
        default: Option<Vec<Field>>,
    ) -> Result<Vec<Field>, CatalogError> {
        let raw = match (raw, default) {
            (Some(raw), _) => raw,
            (None, Some(default)) => return Ok(default),
            (None, None) => {
                return self.fail(
                    format!("{path}.fields"),
                    "is missing; declare what the recipient enters, e.g. fields = [{ name = \"apiKey\", label = \"API key\", secret = true }]",
                )
            }
        };
        if raw.is_empty() {
            return self.fail(
                format!("{path}.fields"),
                "is empty; declare at least one field",
            );
        }
        let mut fields: Vec<Field> = Vec::with_capacity(raw.len());
        for (index, field) in raw.into_iter().enumerate() {
            let field_path = format!("{path}.fields[{index}]");
            if !is_field_name(&field.name) {
                return self.fail(
                    format!("{field_path}.name"),
                    format!(
                        "{} is not a field name (letters, digits and _, starting with a letter)",
                        shorten(&field.name)
                    ),
                );
            }
            if fields.iter().any(|other| other.name == field.name) {
                return self.fail(
                    format!("{field_path}.name"),
                    format!("{:?} is declared twice", field.name),
                );
            }
            let label = self.text(&format!("{field_path}.label"), &field.label, 100)?;
            let help = match field.help {
                None => None,
                Some(help) => Some(self.text(&format!("{field_path}.help"), &help, 500)?),
            };
            fields.push(Field {
                name: field.name,
                label,
                secret: field.secret,
                help,
            });
        }
        Ok(fields)
    }

    fn template(&self, path: &str, raw: &str, fields: &[Field]) -> Result<Template, CatalogError> {
        let template = match Template::parse(raw) {
            Ok(template) => template,
            Err(why) => return self.fail(path, why),
        };
        if let Some(unknown) = template
            .fields()
            .find(|name| !fields.iter().any(|field| field.name == *name))
        {
            let declared: Vec<&str> = fields.iter().map(|field| field.name.as_str()).collect();
            return self.fail(
                path,
                format!(
                    "{raw:?} references {{{unknown}}}, which is not a declared field; declared fields: {}",
                    declared.join(", ")
                ),
            );
        }
        Ok(template)
    }

    fn injection(
        &self,
        path: &str,
        value: toml::Value,
        fields: &[Field],
    ) -> Result<Injection, CatalogError> {
        let raw = match RawInjection::deserialize(value) {
            Ok(raw) => raw,
            Err(error) => return self.fail(path, error.message().to_string()),
        };
        let target = match (raw.header, raw.query) {
            (Some(header), None) => {
                let header_path = format!("{path}.header");
                self.header_name(&header_path, &header)?;
                InjectionTarget::Header(header)
            }
            (None, Some(query)) => {
                let name_is_valid = !query.is_empty()
                    && query
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.~-".contains(c));
                if !name_is_valid {
                    return self.fail(
                        format!("{path}.query"),
                        format!(
                            "{} is not a query parameter name (letters, digits, _ . ~ -)",
                            shorten(&query)
                        ),
                    );
                }
                InjectionTarget::Query(query)
            }
            _ => {
                return self.fail(path, "needs exactly one of header = \"…\" or query = \"…\"");
            }
        };
        let value_path = format!("{path}.value");
        let value = self.template(&value_path, &raw.value, fields)?;
        if value.fields().next().is_none() {
            return self.fail(
                value_path,
                format!("{:?} references no field; write the field name in braces, e.g. \"Bearer {{apiKey}}\"", raw.value),
            );
        }
        Ok(Injection { target, value })
    }

    fn header_name(&self, path: &str, name: &str) -> Result<(), CatalogError> {
        let is_token = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
        if !is_token {
            return self.fail(path, format!("{} is not a header name", shorten(name)));
        }
        if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return self.fail(
                path,
                format!("{name} is set by the HTTP client and cannot be configured"),
            );
        }
        Ok(())
    }

    /// One of Basic's username or password: a template, or a field name, or the
    /// default field (`username` / `password`).
    fn basic_part(
        &self,
        path: &str,
        (template_key, template): (&str, Option<String>),
        (field_key, field): (&str, Option<String>),
        fields: &[Field],
    ) -> Result<Template, CatalogError> {
        match (template, field) {
            (Some(_), Some(_)) => self.fail(
                format!("{path}.{field_key}"),
                format!("set either {template_key} (a template) or {field_key} (a field name), not both"),
            ),
            (Some(template), None) => self.template(&format!("{path}.{template_key}"), &template, fields),
            (None, field) => {
                let name = field.unwrap_or_else(|| template_key.to_string());
                if !fields.iter().any(|declared| declared.name == name) {
                    return self.fail(
                        format!("{path}.{field_key}"),
                        format!("{name:?} is not a declared field; set {field_key} or {template_key}, or declare the field"),
                    );
                }
                Ok(Template::field(&name))
            }
        }
    }

    /// The credential must carry at least one secret field: a scheme made only of
    /// visible values would store nothing worth protecting, which is a mistake.
    fn require_secret_use(
        &self,
        path: &str,
        fields: &[Field],
        used_fields: &BTreeSet<String>,
    ) -> Result<(), CatalogError> {
        let uses_secret = fields
            .iter()
            .any(|field| field.secret && used_fields.contains(&field.name));
        if uses_secret {
            Ok(())
        } else {
            self.fail(
                format!("{path}.fields"),
                "no secret field is injected; mark the key or token field secret = true and reference it",
            )
        }
    }

    fn verify(&self, path: &str, raw: RawVerify) -> Result<Operation, CatalogError> {
        let text = format!("{} {}", raw.method, raw.path);
        let operation = match Operation::parse(&text) {
            Ok(operation) => operation,
            Err(why) => return self.fail(path, why.0),
        };
        if let Some(param) = operation.path.params().next() {
            return self.fail(
                format!("{path}.path"),
                format!(
                    "{:?} has the parameter {{{param}}}; the verify call must be a fixed path",
                    raw.path
                ),
            );
        }
        Ok(operation)
    }

    fn static_headers(
        &self,
        path: &str,
        headers: BTreeMap<String, String>,
        auth: &Auth,
    ) -> Result<BTreeMap<String, String>, CatalogError> {
        for (name, value) in &headers {
            let field = format!("{path}.{name}");
            self.header_name(&field, name)?;
            let lower = name.to_ascii_lowercase();
            let credential_header = matches!(lower.as_str(), "authorization" | "cookie")
                || auth.injections().iter().any(|injection| {
                    matches!(&injection.target, InjectionTarget::Header(header) if header.eq_ignore_ascii_case(name))
                });
            if credential_header {
                return self.fail(
                    field,
                    "carries credentials, which come from auth, never from fixed headers",
                );
            }
            let value_is_valid = !value.trim().is_empty()
                && value
                    .bytes()
                    .all(|b| b == b' ' || (0x21..=0x7e).contains(&b))
                && !value.contains(['{', '}']);
            if !value_is_valid {
                return self.fail(
                    field,
                    format!(
                        "{} is not a fixed header value (visible ASCII, no {{placeholders}})",
                        shorten(value)
                    ),
                );
            }
        }
        Ok(headers)
    }

    fn module(&self, path: &str, raw: RawModule, auth: &Auth) -> Result<Module, CatalogError> {
        let key_is_valid = raw.key.len() <= 64
            && raw.key.starts_with(|c: char| c.is_ascii_alphabetic())
            && raw
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_is_valid {
            return self.fail(
                format!("{path}.key"),
                format!("{} is not a module key; use letters, digits and _, starting with a letter (e.g. searchContacts)", shorten(&raw.key)),
            );
        }
        let label = self.text(&format!("{path}.label"), &raw.label, 100)?;
        let kind = match raw.kind.as_str() {
            "trigger" => ModuleKind::Trigger,
            "search" => ModuleKind::Search,
            "action" => ModuleKind::Action,
            other => {
                return self.fail(
                    format!("{path}.kind"),
                    format!("{other:?} is not a module kind; use trigger, search or action"),
                )
            }
        };
        let access = match raw.access.as_str() {
            "read" => Access::Read,
            "write" => Access::Write,
            other => {
                return self.fail(
                    format!("{path}.access"),
                    format!("{other:?} is not an access; use read or write"),
                )
            }
        };
        let mut scopes: Vec<String> = Vec::with_capacity(raw.scopes.len());
        match auth.oauth2() {
            None if !raw.scopes.is_empty() => {
                return self.fail(
                    format!("{path}.scopes"),
                    format!("scopes are requested only in an OAuth 2.0 flow, and this version's auth.kind is {}; remove them", auth.kind()),
                )
            }
            None => {}
            Some(oauth2) => {
                for (index, scope) in raw.scopes.into_iter().enumerate() {
                    let field = format!("{path}.scopes[{index}]");
                    self.scope(&field, &scope, &oauth2.scope_separator)?;
                    if scopes.contains(&scope) {
                        return self.fail(field, format!("{scope:?} is listed twice"));
                    }
                    scopes.push(scope);
                }
            }
        }
        if raw.operations.is_empty() {
            return self.fail(
                format!("{path}.operations"),
                "is empty; list what the module may call, e.g. operations = [\"GET /v1/contacts\"]",
            );
        }
        let mut operations: Vec<Operation> = Vec::with_capacity(raw.operations.len());
        for (index, text) in raw.operations.iter().enumerate() {
            let field = format!("{path}.operations[{index}]");
            let operation = match Operation::parse(text) {
                Ok(operation) => operation,
                Err(why) => return self.fail(field, why.0),
            };
            if operations.contains(&operation) {
                return self.fail(field, format!("{text:?} is listed twice in this module"));
            }
            operations.push(operation);
        }
        Ok(Module {
            key: raw.key,
            label,
            kind,
            access,
            scopes,
            operations,
        })
    }

    fn scope(&self, path: &str, scope: &str, separator: &str) -> Result<(), CatalogError> {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return self.fail(
                path,
                format!(
                    "{} is not a scope (no spaces or control characters)",
                    shorten(scope)
                ),
            );
        }
        if scope.contains(separator) {
            return self.fail(
                path,
                format!("{scope:?} contains the scope separator {separator:?}"),
            );
        }
        Ok(())
    }
}

fn same_target(left: &InjectionTarget, right: &InjectionTarget) -> bool {
    match (left, right) {
        (InjectionTarget::Header(a), InjectionTarget::Header(b)) => a.eq_ignore_ascii_case(b),
        (InjectionTarget::Query(a), InjectionTarget::Query(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
