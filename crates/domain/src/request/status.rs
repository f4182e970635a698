//! The status of a whole request, derived from the states of its credentials
//! (SPEC §4.2) and never stored by hand.

use super::CredentialState;

named_set!(
    /// The status of a request. All but `revoked` are Make's values.
    RequestStatus, "request status", {
        /// Nothing has happened yet and the recipient has not opened it.
        Pending => "pending",
        /// Some credentials still wait for the recipient.
        Incomplete => "incomplete",
        Authorized => "authorized",
        /// Some authorized, the rest declined or revoked.
        PartiallyAuthorized => "partially_authorized",
        Declined => "declined",
        /// At least one credential is invalid.
        Invalid => "invalid",
        /// Nothing authorized or waiting, and not everything declined.
        Revoked => "revoked",
    }
);

/// The status of a request whose credentials are in `states`, evaluating the
/// rules of SPEC §4.2 in order; the first that holds decides.
///
/// `opened_by_recipient` keeps Make's `pending` apart from `incomplete`: a
/// request is `pending` while the recipient has not opened it and every
/// credential is still `pending`; anything else waiting is `incomplete`.
///
/// An empty `states` (a request always has at least one credential, so this
/// means the credentials are not known yet) counts as a request where nothing
/// has happened: `pending`, or `incomplete` once opened. Taking the rules
/// literally would call it `authorized` ("all authorized" holds for none), which
/// would claim access that does not exist.
pub fn derive_status(states: &[CredentialState], opened_by_recipient: bool) -> RequestStatus {
    use CredentialState as S;
    let any = |wanted: &[S]| states.iter().any(|state| wanted.contains(state));
    let all = |wanted: S| states.iter().all(|state| *state == wanted);

    if states.is_empty() {
        return waiting(true, opened_by_recipient);
    }
    // 1. Something is broken: that is what both sides need to see first.
    if any(&[S::Invalid]) {
        return RequestStatus::Invalid;
    }
    // 2.
    if all(S::Authorized) {
        return RequestStatus::Authorized;
    }
    // 3.
    if all(S::Declined) {
        return RequestStatus::Declined;
    }
    // 4. Nothing granted, nothing waiting: with rule 3 above, "all declined" is
    //    already answered, so some credential was revoked.
    if !any(&[S::Authorized, S::Pending, S::Reauthorizing]) {
        return RequestStatus::Revoked;
    }
    // 5.
    if any(&[S::Pending, S::Reauthorizing]) {
        return waiting(all(S::Pending), opened_by_recipient);
    }
    // 6. Some authorized, the rest declined or revoked.
    RequestStatus::PartiallyAuthorized
}

/// Rule 5: waiting for the recipient.
fn waiting(nothing_happened: bool, opened_by_recipient: bool) -> RequestStatus {
    if nothing_happened && !opened_by_recipient {
        RequestStatus::Pending
    } else {
        RequestStatus::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CredentialState::*;

    fn status(states: &[CredentialState]) -> RequestStatus {
        derive_status(states, true)
    }

    #[test]
    fn rule_1_any_invalid_is_invalid_whatever_else() {
        assert_eq!(status(&[Invalid]), RequestStatus::Invalid);
        assert_eq!(status(&[Invalid, Authorized]), RequestStatus::Invalid);
        assert_eq!(status(&[Authorized, Invalid]), RequestStatus::Invalid);
        assert_eq!(status(&[Declined, Invalid]), RequestStatus::Invalid);
        assert_eq!(status(&[Pending, Invalid]), RequestStatus::Invalid);
        assert_eq!(
            derive_status(&[Pending, Invalid], false),
            RequestStatus::Invalid
        );
        assert_eq!(
            status(&[Reauthorizing, Invalid, Revoked]),
            RequestStatus::Invalid
        );
    }

    #[test]
    fn rule_2_all_authorized_is_authorized() {
        assert_eq!(status(&[Authorized]), RequestStatus::Authorized);
        assert_eq!(
            derive_status(&[Authorized, Authorized], false),
            RequestStatus::Authorized
        );
    }

    #[test]
    fn rule_3_all_declined_is_declined() {
        assert_eq!(status(&[Declined]), RequestStatus::Declined);
        assert_eq!(status(&[Declined, Declined]), RequestStatus::Declined);
    }

    #[test]
    fn rule_4_nothing_granted_or_waiting_is_revoked_unless_all_declined() {
        assert_eq!(status(&[Revoked]), RequestStatus::Revoked);
        assert_eq!(status(&[Declined, Revoked]), RequestStatus::Revoked);
        assert_eq!(
            status(&[Revoked, Declined, Revoked]),
            RequestStatus::Revoked
        );
    }

    #[test]
    fn rule_5_anything_waiting_is_incomplete() {
        assert_eq!(status(&[Pending]), RequestStatus::Incomplete);
        assert_eq!(status(&[Reauthorizing]), RequestStatus::Incomplete);
        assert_eq!(status(&[Authorized, Pending]), RequestStatus::Incomplete);
        assert_eq!(
            status(&[Authorized, Reauthorizing]),
            RequestStatus::Incomplete
        );
        assert_eq!(status(&[Declined, Pending]), RequestStatus::Incomplete);
        assert_eq!(status(&[Revoked, Pending]), RequestStatus::Incomplete);
    }

    #[test]
    fn rule_5_is_pending_only_before_the_recipient_opens_it_and_nothing_happened() {
        assert_eq!(derive_status(&[Pending], false), RequestStatus::Pending);
        assert_eq!(
            derive_status(&[Pending, Pending], false),
            RequestStatus::Pending
        );
        assert_eq!(
            derive_status(&[Pending, Pending], true),
            RequestStatus::Incomplete
        );
        assert_eq!(
            derive_status(&[Pending, Authorized], false),
            RequestStatus::Incomplete
        );
        assert_eq!(
            derive_status(&[Reauthorizing], false),
            RequestStatus::Incomplete
        );
        assert_eq!(
            derive_status(&[Pending, Declined], false),
            RequestStatus::Incomplete
        );
    }

    #[test]
    fn rule_6_some_authorized_rest_declined_or_revoked_is_partially_authorized() {
        assert_eq!(
            status(&[Authorized, Declined]),
            RequestStatus::PartiallyAuthorized
        );
        assert_eq!(
            status(&[Revoked, Authorized]),
            RequestStatus::PartiallyAuthorized
        );
        assert_eq!(
            derive_status(&[Authorized, Declined, Revoked], false),
            RequestStatus::PartiallyAuthorized
        );
    }

    #[test]
    fn an_empty_request_is_waiting_never_authorized() {
        assert_eq!(derive_status(&[], false), RequestStatus::Pending);
        assert_eq!(derive_status(&[], true), RequestStatus::Incomplete);
    }

    #[test]
    fn statuses_use_make_names() {
        let names: Vec<&str> = RequestStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "pending",
                "incomplete",
                "authorized",
                "partially_authorized",
                "declined",
                "invalid",
                "revoked"
            ]
        );
        for status in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse("status", status.as_str()), Ok(*status));
            use serde::de::IntoDeserializer;
            let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                status.as_str().into_deserializer();
            assert_eq!(
                <RequestStatus as serde::Deserialize>::deserialize(deserializer).unwrap(),
                *status
            );
        }
    }
}
