//! The vocabulary of Credence: identifiers, roles, plans, scopes and the small
//! value types that carry their own rules. Pure: no IO, no database, no HTTP.
//!
//! Raw input becomes one of these types once, at the edge (`parse`); everything
//! past the edge can rely on the rule having been checked.

mod error;
mod identity;
mod ids;
mod request;
mod scope;
mod text;

pub use error::ValidationError;
pub use identity::{Feature, OrgRole, Plan, TeamRole};
pub use ids::{ApiTokenId, OrganizationId, TeamId, UserId};
pub use request::{
    check_credential_count, derive_status, may_request, Actor, ConnectionName, CredentialAction,
    CredentialId, CredentialState, DeclineReason, Description, InvalidTransition, Note,
    RecipientKind, RequestId, RequestName, RequestRefusal, RequestStatus, TrackingField,
    MAX_CREDENTIALS_PER_REQUEST,
};
pub use scope::{Scope, Scopes};
pub use text::{EmailAddress, EntityName, NewPassword, PersonName};
