//! The validated shape of an app: its versions, modules and operations, and the
//! questions the rest of Credence asks of it: which scopes a module selection
//! needs, whether the broker may make a given call, and which host a connection
//! with a per-account host talks to.

use crate::auth::Auth;
use crate::error::{shorten, CatalogError};
use crate::operation::Operation;
use crate::url::check_dns_name;
use serde::{Serialize, Serializer};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// One third-party app, loaded from one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    /// `[a-z0-9-]`, 1..=64; what the Make API calls `appName`.
    pub key: String,
    pub label: String,
    /// Ordered by version number, oldest first; never empty.
    pub versions: Vec<AppVersion>,
    /// The file the app came from: `apps/<name>.toml` for a built-in app, the
    /// path in the operator's directory otherwise. Not serialized: it names a
    /// path on the server.
    #[serde(skip)]
    pub source: String,
    /// Whether the app ships with Credence (rather than coming from the operator).
    pub builtin: bool,
    /// Set only by an operator's file: the broker may then reach `http`, private,
    /// loopback and link-local addresses for this app (self-hosted software).
    pub allow_private_hosts: bool,
}

impl App {
    /// The version numbered `number`.
    pub fn version(&self, number: u32) -> Option<&AppVersion> {
        self.versions
            .iter()
            .find(|version| version.version == number)
    }

    /// The highest version.
    pub fn latest(&self) -> &AppVersion {
        self.versions
            .last()
            .expect("the loader refuses an app without versions")
    }
}

/// One version of an app's API surface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppVersion {
    pub version: u32,
    /// Where calls go. Contains `{field}` when [`AppVersion::account_host`] is
    /// set; use [`AppVersion::base_url_for`] to get the URL of one connection.
    pub base_url: String,
    pub account_host: Option<AccountHost>,
    pub auth: Auth,
    /// The call that checks a connection works; it has no path parameters.
    pub verify: Option<Operation>,
    /// Headers the broker sends on every call unless the caller sets them (e.g.
    /// `Notion-Version`). Never credentials.
    pub headers: BTreeMap<String, String>,
    /// Never empty; keys are unique.
    pub modules: Vec<Module>,
}

/// A per-account host: the connection's value of `field` goes into the host of
/// `base_url`, and the result must be a subdomain of `host_suffix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountHost {
    /// A non-secret connection field (or, for OAuth 2.0, a token-response field).
    pub field: String,
    pub host_suffix: String,
    /// The literal text after `{field}` in the base URL's host, e.g.
    /// `.myshopify.com`; empty when the field holds the whole host.
    #[serde(skip)]
    pub(crate) after_placeholder: String,
}

impl AccountHost {
    /// Turns what a recipient typed (or a token response carried) into the
    /// value that goes into `{field}`: trims, lowercases, drops `https://`, a
    /// trailing `/` and the fixed part of the host when it was typed too
    /// (`acme.myshopify.com` → `acme`), then checks the resulting host is a
    /// subdomain of `host_suffix`.
    pub fn normalize(&self, raw: &str) -> Result<String, CatalogError> {
        let mut value = raw.trim().to_ascii_lowercase();
        if let Some(rest) = value.strip_prefix("https://") {
            value = rest.to_string();
        }
        if let Some(rest) = value.strip_suffix('/') {
            value = rest.to_string();
        }
        if !self.after_placeholder.is_empty() {
            if let Some(rest) = value.strip_suffix(self.after_placeholder.as_str()) {
                value = rest.to_string();
            }
        }
        let refuse = |why: String| CatalogError::AccountHost {
            field: self.field.clone(),
            message: why,
        };
        if value.is_empty() {
            return Err(refuse(format!(
                "a value is needed: the account's host under {}",
                self.host_suffix
            )));
        }
        check_dns_name(&value).map_err(|_| {
            refuse(format!(
                "{} is not a host name; enter only the account's name under {} (letters, digits, - and .)",
                shorten(raw),
                self.host_suffix
            ))
        })?;
        let host = format!("{value}{}", self.after_placeholder);
        if !host.ends_with(&format!(".{}", self.host_suffix)) {
            return Err(refuse(format!(
                "{} gives the host {host}, which is not under {}; the credential is only ever sent to hosts under {}",
                shorten(raw),
                self.host_suffix,
                self.host_suffix
            )));
        }
        check_dns_name(&host).map_err(refuse)?;
        Ok(value)
    }
}

impl AppVersion {
    /// The module with this key.
    pub fn module(&self, key: &str) -> Option<&Module> {
        self.modules.iter().find(|module| module.key == key)
    }

    /// The module keys, comma-separated, for error messages.
    pub(crate) fn module_keys(&self) -> String {
        self.modules
            .iter()
            .map(|module| module.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The selected modules, in file order. Fails when the selection names a
    /// module this version does not have (a selection made for another app or
    /// version).
    pub fn selected_modules(
        &self,
        selection: &ModuleSelection,
    ) -> Result<Vec<&Module>, CatalogError> {
        match selection {
            ModuleSelection::All => Ok(self.modules.iter().collect()),
            ModuleSelection::Only(keys) => {
                if keys.is_empty() {
                    return Err(CatalogError::EmptySelection {
                        valid: self.module_keys(),
                    });
                }
                if let Some(unknown) = keys.iter().find(|key| self.module(key).is_none()) {
                    return Err(CatalogError::UnknownModule {
                        key: unknown.clone(),
                        valid: self.module_keys(),
                    });
                }
                Ok(self
                    .modules
                    .iter()
                    .filter(|module| keys.contains(&module.key))
                    .collect())
            }
        }
    }

    /// The OAuth scopes a connection with this selection requests: the union of
    /// the selected modules' scopes and the app's `base_scopes`, nothing more.
    /// Empty for apps that are not OAuth 2.0.
    pub fn scopes_for(
        &self,
        selection: &ModuleSelection,
    ) -> Result<BTreeSet<String>, CatalogError> {
        let mut scopes: BTreeSet<String> = self
            .selected_modules(selection)?
            .into_iter()
            .flat_map(|module| module.scopes.iter().cloned())
            .collect();
        if let Some(oauth2) = self.auth.oauth2() {
            scopes.extend(oauth2.base_scopes.iter().cloned());
        }
        Ok(scopes)
    }

    /// The broker's check: the selected module whose operation matches this call,
    /// or `None` when the call is not allowed. See [`crate::operation`] for the
    /// matching rules.
    pub fn allows(&self, selection: &ModuleSelection, method: &str, path: &str) -> Option<&Module> {
        self.matching_operation(selection, method, path)
            .map(|(module, _)| module)
    }

    /// Like [`AppVersion::allows`], with the operation that matched (its path
    /// pattern is what usage records as the path template). When several match,
    /// the most specific pattern wins (`/customers/search` over
    /// `/customers/{id}`), then the first in file order. Modules the selection
    /// names but this version lacks simply match nothing.
    pub fn matching_operation(
        &self,
        selection: &ModuleSelection,
        method: &str,
        path: &str,
    ) -> Option<(&Module, &Operation)> {
        let mut best: Option<(&Module, &Operation)> = None;
        let selected = self
            .modules
            .iter()
            .filter(|module| selection.includes(&module.key));
        for module in selected {
            for operation in &module.operations {
                if !operation.matches(method, path) {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some((_, current)) => {
                        operation.compare_specificity(current) == Ordering::Greater
                    }
                };
                if better {
                    best = Some((module, operation));
                }
            }
        }
        best
    }

    /// The base URL of one connection. `account_host` is the connection's value
    /// of [`AccountHost::field`]; it must be given exactly when the version has a
    /// per-account host, and it is checked to stay under `host_suffix`.
    pub fn base_url_for(&self, account_host: Option<&str>) -> Result<String, CatalogError> {
        match (&self.account_host, account_host) {
            (None, None) => Ok(self.base_url.clone()),
            (None, Some(value)) => Err(CatalogError::AccountHost {
                field: "account_host".to_string(),
                message: format!(
                    "this app has one host for every account ({}); {} cannot choose another",
                    self.base_url,
                    shorten(value)
                ),
            }),
            (Some(host), None) => Err(CatalogError::AccountHost {
                field: host.field.clone(),
                message: format!(
                    "this app has a host per account; the connection needs a value for {} (a host under {})",
                    host.field, host.host_suffix
                ),
            }),
            (Some(host), Some(value)) => {
                let value = host.normalize(value)?;
                Ok(self
                    .base_url
                    .replacen(&format!("{{{}}}", host.field), &value, 1))
            }
        }
    }
}

/// One unit of capability a requester picks: e.g. "Search contacts".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Module {
    /// Letters, digits and `_`, starting with a letter; unique within a version.
    pub key: String,
    pub label: String,
    pub kind: ModuleKind,
    pub access: Access,
    /// OAuth scopes the module needs; empty for apps that are not OAuth 2.0 and
    /// for providers without scopes (Notion, Intercom).
    pub scopes: Vec<String>,
    /// Never empty.
    pub operations: Vec<Operation>,
}

/// What a module is for, in Make's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    Trigger,
    Search,
    Action,
}

/// Whether a module only reads or also changes data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// Which modules of an app version a request or connection covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSelection {
    /// Every module of the version (`["*"]`).
    All,
    /// These module keys.
    Only(BTreeSet<String>),
}

impl ModuleSelection {
    /// Reads a selection as the API receives it: `["*"]`, or module keys of
    /// `version`. Empty lists, unknown keys and `"*"` mixed with keys are refused,
    /// naming the valid keys. Repeated keys count once.
    pub fn parse(keys: &[String], version: &AppVersion) -> Result<Self, CatalogError> {
        if keys.is_empty() {
            return Err(CatalogError::EmptySelection {
                valid: version.module_keys(),
            });
        }
        if keys.iter().any(|key| key == "*") {
            return if keys.iter().all(|key| key == "*") {
                Ok(ModuleSelection::All)
            } else {
                Err(CatalogError::WildcardWithKeys)
            };
        }
        if let Some(unknown) = keys.iter().find(|key| version.module(key).is_none()) {
            return Err(CatalogError::UnknownModule {
                key: unknown.clone(),
                valid: version.module_keys(),
            });
        }
        Ok(ModuleSelection::Only(keys.iter().cloned().collect()))
    }

    /// Whether the module with this key is selected.
    pub fn includes(&self, module_key: &str) -> bool {
        match self {
            ModuleSelection::All => true,
            ModuleSelection::Only(keys) => keys.contains(module_key),
        }
    }

    /// The selection as the API writes it: `["*"]` or the keys, sorted.
    pub fn to_keys(&self) -> Vec<String> {
        match self {
            ModuleSelection::All => vec!["*".to_string()],
            ModuleSelection::Only(keys) => keys.iter().cloned().collect(),
        }
    }
}

impl Serialize for ModuleSelection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_keys().serialize(serializer)
    }
}
