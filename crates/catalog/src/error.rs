//! The one error this crate reports. Loading errors name the file and the field
//! (`apps/acme.toml: versions[0].modules[2].operations[1]: …`) so an operator can
//! go straight to the line; selection and value errors name the offending value
//! and list what would have been accepted.

use std::io;

/// Everything that can go wrong while loading the catalog or applying it.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The operator's app directory could not be listed (missing, not a
    /// directory, no permission). A missing directory is an error rather than an
    /// empty catalog so that a typo in the configured path is noticed.
    #[error("cannot read the operator app directory {path}: {source}")]
    ReadDirectory { path: String, source: io::Error },

    /// One operator file could not be read (permissions, not UTF-8).
    #[error("cannot read {path}: {source}")]
    ReadFile { path: String, source: io::Error },

    /// The file is not TOML at all; `message` carries the line and column.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },

    /// The file is TOML but breaks a rule of the format. `field` is the path to
    /// the offending value, e.g. `versions[0].auth.token_url`.
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },

    /// Two files define the same app key.
    #[error(
        "app key {key:?} is defined twice: in {first} and in {second}; app keys must be unique, so rename or remove one"
    )]
    DuplicateKey {
        key: String,
        first: String,
        second: String,
    },

    /// A module selection names no module at all.
    #[error(
        "no modules selected; pass [\"*\"] for every module or some of these module keys: {valid}"
    )]
    EmptySelection { valid: String },

    /// A module selection names a module this app version does not have.
    #[error("unknown module {key:?}; the modules of this app version are: {valid}")]
    UnknownModule { key: String, valid: String },

    /// `"*"` was passed together with module keys, which is ambiguous.
    #[error(
        "\"*\" selects every module and cannot be combined with module keys; pass [\"*\"] alone or only module keys"
    )]
    WildcardWithKeys,

    /// A per-account host value (a shop name, a subdomain, an instance URL) that
    /// would send the credential somewhere the app does not live.
    #[error("{field}: {message}")]
    AccountHost { field: String, message: String },

    /// A connection field value that cannot be put into a header or query
    /// parameter (missing, or with control characters that would split a header).
    #[error("{field}: {message}")]
    FieldValue { field: String, message: String },
}

impl CatalogError {
    pub(crate) fn invalid(
        file: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CatalogError::Invalid {
            file: file.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Quotes at most 60 characters of a rejected value so a message stays readable
/// when the value is huge.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}
