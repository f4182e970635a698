//! Identifiers of requests and requested credentials. Unlike users, teams and
//! organizations, Make's API gives these UUIDs (SPEC §11), so do we.
//!
//! New ids are minted where rows are created (`Uuid::new_v4()` in the store):
//! this crate does no IO, and that includes reading the system's randomness.

use crate::text::shorten;
use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Reads an id from its text form; the error names the value.
            pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
                Uuid::parse_str(raw).map($name).map_err(|_| {
                    ValidationError::new(
                        field,
                        format!(
                            "{:?} is not a {}; expected a UUID such as \
                             67e55044-10b1-426f-9247-bb680e5fe0c8",
                            shorten(raw),
                            $what
                        ),
                    )
                })
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                $name(value)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;

            /// As `parse`, reporting the field as `id` (the path segment both
            /// `/requests/{id}` and `/credentials/{id}` use).
            fn from_str(raw: &str) -> Result<Self, ValidationError> {
                $name::parse("id", raw)
            }
        }

        impl fmt::Display for $name {
            /// The hyphenated lowercase form, e.g. `67e55044-10b1-426f-9247-bb680e5fe0c8`.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A credential request.
    RequestId,
    "request id"
);
uuid_id!(
    /// One requested credential (one app) of a request.
    CredentialId,
    "credential id"
);

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

    #[test]
    fn ids_round_trip_through_text() {
        let id: RequestId = TEXT.parse().unwrap();
        assert_eq!(id.to_string(), TEXT);
        assert_eq!(id.as_uuid(), Uuid::parse_str(TEXT).unwrap());
        let upper: CredentialId = TEXT.to_uppercase().parse().unwrap();
        assert_eq!(upper.to_string(), TEXT);
    }

    #[test]
    fn a_malformed_id_is_named_in_the_error() {
        let err = "42".parse::<RequestId>().unwrap_err();
        assert_eq!(err.field, "id");
        assert_eq!(
            err.message,
            "\"42\" is not a request id; expected a UUID such as \
             67e55044-10b1-426f-9247-bb680e5fe0c8"
        );
        let err = CredentialId::parse("credentialId", "nope").unwrap_err();
        assert_eq!(err.field, "credentialId");
        assert!(err.message.contains("is not a credential id"));
    }

    #[test]
    fn ids_are_read_through_serde_as_plain_strings() {
        use serde::de::IntoDeserializer;
        let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            TEXT.into_deserializer();
        let id = CredentialId::deserialize(deserializer).unwrap();
        assert_eq!(id.to_string(), TEXT);
    }
}
