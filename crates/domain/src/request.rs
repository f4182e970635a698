//! A credential request (SPEC §3, §4): the texts it is made of, its ids, the
//! state machine of each requested credential, the status derived from those
//! states, and who may send a request to whom.
//!
//! Everything here is pure: the store mirrors the state machine in SQL
//! (`UPDATE … SET state = ? WHERE id = ? AND state IN (…)`) using
//! [`CredentialAction::accepted_from`] and [`CredentialAction::target`], so the
//! rule is written once, here.

use crate::ValidationError;

/// A closed set of lowercase names, read back with `parse` (whose error lists the
/// accepted values) and written with `as_str`, serde and `Display`.
macro_rules! named_set {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$variant_doc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$variant_doc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the name; the error lists the accepted values.
            pub fn parse(field: &str, value: &str) -> Result<Self, crate::ValidationError> {
                match value {
                    $($text => Ok($name::$variant),)+
                    other => Err(crate::ValidationError::new(field, format!(
                        "{} {:?} is not one of {}", $what, crate::text::shorten(other),
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = crate::ValidationError;

            /// Reads the stored name back (the database keeps the `as_str` form).
            fn try_from(value: String) -> Result<Self, crate::ValidationError> {
                $name::parse(stringify!($name), &value)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod credential_state;
mod fields;
mod ids;
mod status;
mod who_may_request;

pub use credential_state::{Actor, CredentialAction, CredentialState, InvalidTransition};
pub use fields::{ConnectionName, DeclineReason, Description, Note, RequestName, TrackingField};
pub use ids::{CredentialId, RequestId};
pub use status::{derive_status, RequestStatus};
pub use who_may_request::{may_request, RecipientKind, RequestRefusal};

/// The most credentials (apps) one request may ask for (SPEC §4).
pub const MAX_CREDENTIALS_PER_REQUEST: usize = 20;

/// Checks that a request asks for 1 to [`MAX_CREDENTIALS_PER_REQUEST`]
/// credentials; `field` names the list in the input.
pub fn check_credential_count(field: &str, count: usize) -> Result<(), ValidationError> {
    if count == 0 {
        return Err(ValidationError::new(
            field,
            format!(
                "{field} is empty; a request needs 1 to {MAX_CREDENTIALS_PER_REQUEST} credentials"
            ),
        ));
    }
    if count > MAX_CREDENTIALS_PER_REQUEST {
        return Err(ValidationError::new(
            field,
            format!(
                "{field} has {count} credentials; the limit is {MAX_CREDENTIALS_PER_REQUEST} \
                 (send several requests to ask for more)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_asks_for_one_to_twenty_credentials() {
        assert!(check_credential_count("credentials", 1).is_ok());
        assert!(check_credential_count("credentials", 20).is_ok());
        let err = check_credential_count("credentials", 21).unwrap_err();
        assert_eq!(err.field, "credentials");
        assert!(
            err.message
                .starts_with("credentials has 21 credentials; the limit is 20"),
            "{}",
            err.message
        );
        let err = check_credential_count("credentials", 0).unwrap_err();
        assert_eq!(
            err.message,
            "credentials is empty; a request needs 1 to 20 credentials"
        );
    }
}
