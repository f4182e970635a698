//! API token scopes (SPEC §11), plus the read scopes Make's API uses for users,
//! organizations and teams so that Make clients keep working.

use crate::ValidationError;
use serde::{Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// One permission an API token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    CredentialRequestsRead,
    CredentialRequestsWrite,
    ConnectionsRead,
    ConnectionsWrite,
    ConnectionsUse,
    OrganizationRead,
    OrganizationsRead,
    /// Changing an organization's settings (today: whether it requires
    /// two-factor sign-in); its owners only.
    OrganizationsWrite,
    TeamsRead,
    UserRead,
    /// Make's scope for changing the user's own account; here it manages their
    /// API tokens (create, delete).
    UserWrite,
    WebhooksRead,
    WebhooksWrite,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[
        Scope::CredentialRequestsRead,
        Scope::CredentialRequestsWrite,
        Scope::ConnectionsRead,
        Scope::ConnectionsWrite,
        Scope::ConnectionsUse,
        Scope::OrganizationRead,
        Scope::OrganizationsRead,
        Scope::OrganizationsWrite,
        Scope::TeamsRead,
        Scope::UserRead,
        Scope::UserWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CredentialRequestsRead => "credential-requests:read",
            Scope::CredentialRequestsWrite => "credential-requests:write",
            Scope::ConnectionsRead => "connections:read",
            Scope::ConnectionsWrite => "connections:write",
            Scope::ConnectionsUse => "connections:use",
            Scope::OrganizationRead => "organization:read",
            Scope::OrganizationsRead => "organizations:read",
            Scope::OrganizationsWrite => "organizations:write",
            Scope::TeamsRead => "teams:read",
            Scope::UserRead => "user:read",
            Scope::UserWrite => "user:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
        }
    }

    pub fn parse(value: &str) -> Result<Scope, ValidationError> {
        Scope::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == value)
            .ok_or_else(|| {
                let accepted: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                ValidationError::new(
                    "scopes",
                    format!(
                        "scope {:?} is unknown; known scopes are {}",
                        crate::text::shorten(value),
                        accepted.join(", ")
                    ),
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A non-empty set of scopes, kept sorted so its stored form is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Parses scopes separated by commas or whitespace (`a,b` or `a b`).
    pub fn parse(value: &str) -> Result<Scopes, ValidationError> {
        let set = value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(Scope::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if set.is_empty() {
            return Err(ValidationError::new(
                "scopes",
                "at least one scope is required",
            ));
        }
        Ok(Scopes(set))
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// The stored form: names separated by single spaces.
    pub fn to_stored(&self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commas_and_spaces_and_sorts() {
        let scopes = Scopes::parse("user:read, credential-requests:write").unwrap();
        assert_eq!(scopes.to_stored(), "credential-requests:write user:read");
        assert_eq!(Scopes::parse(&scopes.to_stored()).unwrap(), scopes);
    }

    #[test]
    fn unknown_and_empty_scopes_are_refused() {
        let err = Scopes::parse("user:read,root").unwrap_err();
        assert!(err.message.contains("\"root\""), "{}", err.message);
        assert!(Scopes::parse(" , ").is_err());
    }
}
