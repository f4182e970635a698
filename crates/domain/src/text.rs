//! Text values with rules: email addresses, names and new passwords.
//! Each is built only by `parse`, which trims and checks limits and says which
//! limit was broken.

use crate::ValidationError;
use serde::Serialize;
use std::fmt;

/// Quotes at most 40 characters of a rejected value so an error message stays
/// readable when the input is huge.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 40;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}…")
    }
}

fn has_control_characters(value: &str) -> bool {
    value.chars().any(char::is_control)
}

/// Trims `raw` and checks it is 1..=`max` characters without control characters.
fn bounded_text(field: &str, raw: &str, max: usize) -> Result<String, ValidationError> {
    let value = raw.trim();
    let length = value.chars().count();
    if length == 0 {
        return Err(ValidationError::new(
            field,
            format!("{field} is empty; it needs 1 to {max} characters"),
        ));
    }
    if length > max {
        return Err(ValidationError::new(
            field,
            format!("{field} is {length} characters; the limit is {max}"),
        ));
    }
    if has_control_characters(value) {
        return Err(ValidationError::new(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(value.to_string())
}

/// An email address: one `@`, a non-empty local part of at most 64 characters, a
/// domain with a dot, 254 characters at most, no spaces. Kept as typed; compared
/// without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub const MAX: usize = 254;

    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let value = raw.trim();
        let invalid = |why: &str| {
            ValidationError::new(
                field,
                format!("{:?} is not an email address: {why}", shorten(value)),
            )
        };
        let length = value.chars().count();
        if length == 0 {
            return Err(ValidationError::new(field, format!("{field} is empty")));
        }
        if length > Self::MAX {
            return Err(ValidationError::new(
                field,
                format!("{field} is {length} characters; the limit is {}", Self::MAX),
            ));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains spaces or control characters"));
        }
        let Some((local, domain)) = value.split_once('@') else {
            return Err(invalid("it has no @"));
        };
        if local.is_empty() || local.chars().count() > 64 {
            return Err(invalid("the part before @ must be 1 to 64 characters"));
        }
        if domain.contains('@') {
            return Err(invalid("it has more than one @"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|label| label.is_empty()) {
            return Err(invalid("the domain needs a dot and no empty parts"));
        }
        Ok(EmailAddress(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain, lowercased (what free-mail checks compare).
    pub fn domain(&self) -> String {
        self.0
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_lowercase())
            .unwrap_or_default()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's display name: 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    pub const MAX: usize = 100;

    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        bounded_text(field, raw, Self::MAX).map(PersonName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of an organization or a team: 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EntityName(String);

impl EntityName {
    pub const MAX: usize = 100;

    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        bounded_text(field, raw, Self::MAX).map(EntityName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password someone chooses: 12 to 256 characters. Checked, never stored:
/// it is hashed right after. Its `Debug` is redacted.
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN: usize = 12;
    pub const MAX: usize = 256;

    pub fn parse(field: &str, raw: String) -> Result<Self, ValidationError> {
        let length = raw.chars().count();
        if length < Self::MIN {
            return Err(ValidationError::new(
                field,
                format!(
                    "password is {length} characters; it needs at least {}",
                    Self::MIN
                ),
            ));
        }
        if length > Self::MAX {
            return Err(ValidationError::new(
                field,
                format!(
                    "password is {length} characters; the limit is {}",
                    Self::MAX
                ),
            ));
        }
        Ok(NewPassword(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

impl Drop for NewPassword {
    fn drop(&mut self) {
        // Overwrite the bytes so the password does not linger in freed memory.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        assert_eq!(
            EmailAddress::parse("email", " Ann@Example.COM ")
                .unwrap()
                .as_str(),
            "Ann@Example.COM"
        );
        assert_eq!(
            EmailAddress::parse("email", "ann@Example.COM")
                .unwrap()
                .domain(),
            "example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
            "ann@ex..com",
        ] {
            assert!(
                EmailAddress::parse("email", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
        let long = format!("{}@example.com", "a".repeat(300));
        assert!(EmailAddress::parse("email", &long)
            .unwrap_err()
            .message
            .contains("the limit is 254"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            PersonName::parse("name", "  Ann  ").unwrap().as_str(),
            "Ann"
        );
        let err = PersonName::parse("name", &"x".repeat(101)).unwrap_err();
        assert_eq!(err.message, "name is 101 characters; the limit is 100");
        assert!(EntityName::parse("name", "   ").is_err());
        assert!(EntityName::parse("name", "a\u{0}b").is_err());
    }

    #[test]
    fn password_limits_and_redaction() {
        assert!(NewPassword::parse("password", "short".into()).is_err());
        let password = NewPassword::parse("password", "correct horse battery".into()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
