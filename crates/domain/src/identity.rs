//! Plans, roles and features: the closed sets that decide who may do what.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the lowercase name; the error lists the accepted values.
            pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
                match value {
                    $($text => Ok($name::$variant),)+
                    other => Err(ValidationError::new(field, format!(
                        "{} {:?} is not one of {}", $what, crate::text::shorten(other),
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;

            /// Reads the stored name back (the database keeps the lowercase form).
            fn try_from(value: String) -> Result<Self, ValidationError> {
                $name::parse(stringify!($name), &value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

closed_set!(
    /// An organization's plan. Only `enterprise`, or a partner on any paid plan,
    /// qualifies for sending credential requests (SPEC §2).
    Plan, "plan", {
        Free => "free",
        Core => "core",
        Pro => "pro",
        Teams => "teams",
        Enterprise => "enterprise",
    }
);

closed_set!(
    /// A user's role in an organization.
    OrgRole, "organization role", {
        Owner => "owner",
        Admin => "admin",
        Member => "member",
        Guest => "guest",
    }
);

closed_set!(
    /// A user's role in a team.
    TeamRole, "team role", {
        Admin => "admin",
        Member => "member",
    }
);

closed_set!(
    /// A feature enabled per user by the operator.
    Feature, "feature", {
        CredentialRequests => "credential-requests",
    }
);

impl Plan {
    pub fn is_paid(self) -> bool {
        self != Plan::Free
    }

    /// Whether an organization on this plan may host credential requests (SPEC §2).
    pub fn qualifies_for_credential_requests(self, partner: bool) -> bool {
        self == Plan::Enterprise || (partner && self.is_paid())
    }
}

impl OrgRole {
    /// Owners and admins manage the whole organization.
    pub fn manages_organization(self) -> bool {
        matches!(self, OrgRole::Owner | OrgRole::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enterprise_or_paid_partners_qualify() {
        assert!(Plan::Enterprise.qualifies_for_credential_requests(false));
        assert!(Plan::Core.qualifies_for_credential_requests(true));
        assert!(!Plan::Free.qualifies_for_credential_requests(true));
        assert!(!Plan::Teams.qualifies_for_credential_requests(false));
    }

    #[test]
    fn unknown_plan_names_the_accepted_values() {
        let err = Plan::parse("plan", "gold").unwrap_err();
        assert_eq!(err.field, "plan");
        assert!(err.message.contains("\"gold\""), "{}", err.message);
        assert!(err.message.contains("free, core, pro, teams, enterprise"));
    }

    #[test]
    fn names_round_trip() {
        for role in OrgRole::ALL {
            assert_eq!(OrgRole::parse("role", role.as_str()).unwrap(), *role);
        }
        assert_eq!(Feature::CredentialRequests.as_str(), "credential-requests");
    }
}
