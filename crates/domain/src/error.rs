//! The one error a rule of this crate reports: which input field broke which rule.

/// Input that breaks a rule. `field` names the input (as the API calls it) and
/// `message` says what is wrong and what the limit is, in lowercase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, reported under another field name (e.g. `provider.email`).
    pub fn in_field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}
