//! Identifier newtypes, so an organization id can never be passed where a team id
//! is expected. Make's API uses integers for these, so do we.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! integer_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl From<i64> for $name {
            fn from(value: i64) -> Self {
                $name(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

integer_id!(
    /// An organization.
    OrganizationId
);
integer_id!(
    /// A team inside an organization.
    TeamId
);
integer_id!(
    /// A user of the instance.
    UserId
);
integer_id!(
    /// An API token (its id, never its value).
    ApiTokenId
);
