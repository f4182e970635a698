//! The life of one requested credential (SPEC §4.1) as a state machine.
//!
//! Each action leads to exactly one state ([`CredentialAction::target`]) and is
//! accepted from a fixed set of states ([`CredentialAction::accepted_from`]);
//! [`CredentialState::apply`] is the two put together. The table of §4.1 is
//! encoded as written, plus these answers where it is silent:
//!
//! * **authorize vs reauthorize.** `authorize` is the recipient's first (or
//!   renewed) grant, from `pending`, `declined`, `revoked` or `invalid`;
//!   `reauthorize` answers the requester's reauthorization request, from
//!   `reauthorizing` or `invalid`. `authorize` is refused from `reauthorizing`
//!   and `reauthorize` from `pending`, so the audit log and the emails always say
//!   which of the two happened.
//! * **A failed authorization** (provider error, key rejected on verify) leads to
//!   `invalid` from `pending`, from `reauthorizing` (the reauthorization failed)
//!   and from `invalid` itself (another failed attempt, recorded again). From
//!   `declined` or `revoked` it is refused: nothing was granted, the recipient's
//!   last decision stands and only the recipient is shown the error.
//! * **Declining a reauthorization request** is allowed (`reauthorizing` →
//!   `declined`): without it the recipient could not say no to one.
//! * **Token refresh or verify failing** (`invalidate`) applies to `authorized`
//!   only: a `reauthorizing` credential is already known not to work and stays
//!   where it is, waiting for the recipient.
//! * **Closing a project** (SPEC §9, teardown) is the sending team's revoke:
//!   every credential still granted or asked for (`pending`, `authorized`,
//!   `invalid`, `reauthorizing`) becomes `revoked`; `declined` and `revoked`
//!   ones are left as they are, so a second teardown changes nothing.
//! * Nothing else moves: revoke needs `authorized` (a broken connection is
//!   declined, not revoked), a reauthorization cannot be requested twice, and
//!   delete-remote needs a connection to exist.

use std::fmt;

named_set!(
    /// Where one requested credential stands.
    CredentialState, "credential state", {
        /// Waiting for the recipient.
        Pending => "pending",
        /// A working connection exists; the requester's team may use it.
        Authorized => "authorized",
        /// Authorization failed, or the connection stopped working.
        Invalid => "invalid",
        /// The recipient said no.
        Declined => "declined",
        /// The recipient took the access back.
        Revoked => "revoked",
        /// The requester asked the recipient to authorize again.
        Reauthorizing => "reauthorizing",
    }
);

named_set!(
    /// Something that happens to a requested credential (SPEC §4.1).
    CredentialAction, "credential action", {
        /// The recipient grants access (OAuth consent, API key, …).
        Authorize => "authorize",
        /// Granting failed: provider error, or the key was rejected on verify.
        AuthorizationFailed => "authorization-failed",
        /// The recipient declines, with or without a reason.
        Decline => "decline",
        /// The recipient takes an authorized credential back.
        Revoke => "revoke",
        /// A token refresh or a verify of an authorized connection failed.
        Invalidate => "invalidate",
        /// The requester asks the recipient to authorize again.
        RequestReauthorization => "request-reauthorization",
        /// The recipient authorizes again after a reauthorization request.
        Reauthorize => "reauthorize",
        /// The requester destroys the real connection; the credential is asked for anew.
        DeleteRemote => "delete-remote",
        /// The sending team closes the credential's project (teardown): it is revoked.
        Close => "close",
    }
);

named_set!(
    /// Who performs a credential action.
    Actor, "actor", {
        Recipient => "recipient",
        Requester => "requester",
        /// Credence itself (a provider answer, a refresh or verify job).
        System => "system",
    }
);

impl CredentialAction {
    /// The states this action may start from. The store guards with the same
    /// list: `UPDATE … WHERE state IN (…)`.
    pub fn accepted_from(self) -> &'static [CredentialState] {
        use CredentialState::*;
        match self {
            CredentialAction::Authorize => &[Pending, Declined, Revoked, Invalid],
            CredentialAction::AuthorizationFailed => &[Pending, Reauthorizing, Invalid],
            CredentialAction::Decline => &[Pending, Invalid, Revoked, Authorized, Reauthorizing],
            CredentialAction::Revoke => &[Authorized],
            CredentialAction::Invalidate => &[Authorized],
            CredentialAction::RequestReauthorization => &[Authorized, Invalid],
            CredentialAction::Reauthorize => &[Reauthorizing, Invalid],
            CredentialAction::DeleteRemote => &[Authorized, Invalid, Reauthorizing],
            CredentialAction::Close => &[Pending, Authorized, Invalid, Reauthorizing],
        }
    }

    /// The state this action leads to (whatever state it starts from).
    pub fn target(self) -> CredentialState {
        match self {
            CredentialAction::Authorize | CredentialAction::Reauthorize => {
                CredentialState::Authorized
            }
            CredentialAction::AuthorizationFailed | CredentialAction::Invalidate => {
                CredentialState::Invalid
            }
            CredentialAction::Decline => CredentialState::Declined,
            CredentialAction::Revoke | CredentialAction::Close => CredentialState::Revoked,
            CredentialAction::RequestReauthorization => CredentialState::Reauthorizing,
            CredentialAction::DeleteRemote => CredentialState::Pending,
        }
    }

    /// Who performs this action.
    pub fn actor(self) -> Actor {
        match self {
            CredentialAction::Authorize
            | CredentialAction::Decline
            | CredentialAction::Revoke
            | CredentialAction::Reauthorize => Actor::Recipient,
            CredentialAction::RequestReauthorization
            | CredentialAction::DeleteRemote
            | CredentialAction::Close => Actor::Requester,
            CredentialAction::AuthorizationFailed | CredentialAction::Invalidate => Actor::System,
        }
    }

    /// The action as the object of "cannot …", for error messages.
    fn phrase(self) -> &'static str {
        match self {
            CredentialAction::Authorize => "authorize",
            CredentialAction::AuthorizationFailed => "record a failed authorization of",
            CredentialAction::Decline => "decline",
            CredentialAction::Revoke => "revoke",
            CredentialAction::Invalidate => "invalidate",
            CredentialAction::RequestReauthorization => "request reauthorization of",
            CredentialAction::Reauthorize => "reauthorize",
            CredentialAction::DeleteRemote => "delete the remote connection of",
            CredentialAction::Close => "close the project of",
        }
    }
}

impl CredentialState {
    /// The state after `action`, or why `action` is not possible now.
    pub fn apply(self, action: CredentialAction) -> Result<CredentialState, InvalidTransition> {
        if action.accepted_from().contains(&self) {
            Ok(action.target())
        } else {
            Err(InvalidTransition { from: self, action })
        }
    }

    /// The actions possible from this state (e.g. which buttons to show).
    pub fn possible_actions(self) -> impl Iterator<Item = CredentialAction> {
        CredentialAction::ALL
            .iter()
            .copied()
            .filter(move |action| action.accepted_from().contains(&self))
    }

    /// Whether the requester's team may use the connection: only when authorized.
    pub fn is_usable(self) -> bool {
        self == CredentialState::Authorized
    }
}

/// An action that the credential's current state does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct InvalidTransition {
    pub from: CredentialState,
    pub action: CredentialAction,
}

impl fmt::Display for InvalidTransition {
    /// e.g. `cannot revoke a credential that is pending; revoke needs authorized`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accepted: Vec<&str> = self
            .action
            .accepted_from()
            .iter()
            .map(|state| state.as_str())
            .collect();
        let accepted = match accepted.split_last() {
            Some((last, [])) => (*last).to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "no state".to_string(),
        };
        write!(
            f,
            "cannot {} a credential that is {}; {} needs {accepted}",
            self.action.phrase(),
            self.from,
            self.action,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::CredentialAction as A;
    use super::CredentialState as S;
    use super::*;

    /// Every (state, action) pair and where it leads; `None` is refused. Written
    /// out in full so that any change to the machine has to change this table.
    const EXPECTED: [(S, A, Option<S>); 54] = [
        (S::Pending, A::Authorize, Some(S::Authorized)),
        (S::Pending, A::AuthorizationFailed, Some(S::Invalid)),
        (S::Pending, A::Decline, Some(S::Declined)),
        (S::Pending, A::Revoke, None),
        (S::Pending, A::Invalidate, None),
        (S::Pending, A::RequestReauthorization, None),
        (S::Pending, A::Reauthorize, None),
        (S::Pending, A::DeleteRemote, None),
        (S::Pending, A::Close, Some(S::Revoked)),
        //
        (S::Authorized, A::Authorize, None),
        (S::Authorized, A::AuthorizationFailed, None),
        (S::Authorized, A::Decline, Some(S::Declined)),
        (S::Authorized, A::Revoke, Some(S::Revoked)),
        (S::Authorized, A::Invalidate, Some(S::Invalid)),
        (
            S::Authorized,
            A::RequestReauthorization,
            Some(S::Reauthorizing),
        ),
        (S::Authorized, A::Reauthorize, None),
        (S::Authorized, A::DeleteRemote, Some(S::Pending)),
        (S::Authorized, A::Close, Some(S::Revoked)),
        //
        (S::Invalid, A::Authorize, Some(S::Authorized)),
        (S::Invalid, A::AuthorizationFailed, Some(S::Invalid)),
        (S::Invalid, A::Decline, Some(S::Declined)),
        (S::Invalid, A::Revoke, None),
        (S::Invalid, A::Invalidate, None),
        (
            S::Invalid,
            A::RequestReauthorization,
            Some(S::Reauthorizing),
        ),
        (S::Invalid, A::Reauthorize, Some(S::Authorized)),
        (S::Invalid, A::DeleteRemote, Some(S::Pending)),
        (S::Invalid, A::Close, Some(S::Revoked)),
        //
        (S::Declined, A::Authorize, Some(S::Authorized)),
        (S::Declined, A::AuthorizationFailed, None),
        (S::Declined, A::Decline, None),
        (S::Declined, A::Revoke, None),
        (S::Declined, A::Invalidate, None),
        (S::Declined, A::RequestReauthorization, None),
        (S::Declined, A::Reauthorize, None),
        (S::Declined, A::DeleteRemote, None),
        (S::Declined, A::Close, None),
        //
        (S::Revoked, A::Authorize, Some(S::Authorized)),
        (S::Revoked, A::AuthorizationFailed, None),
        (S::Revoked, A::Decline, Some(S::Declined)),
        (S::Revoked, A::Revoke, None),
        (S::Revoked, A::Invalidate, None),
        (S::Revoked, A::RequestReauthorization, None),
        (S::Revoked, A::Reauthorize, None),
        (S::Revoked, A::DeleteRemote, None),
        (S::Revoked, A::Close, None),
        //
        (S::Reauthorizing, A::Authorize, None),
        (S::Reauthorizing, A::AuthorizationFailed, Some(S::Invalid)),
        (S::Reauthorizing, A::Decline, Some(S::Declined)),
        (S::Reauthorizing, A::Revoke, None),
        (S::Reauthorizing, A::Invalidate, None),
        (S::Reauthorizing, A::RequestReauthorization, None),
        (S::Reauthorizing, A::Reauthorize, Some(S::Authorized)),
        (S::Reauthorizing, A::DeleteRemote, Some(S::Pending)),
        (S::Reauthorizing, A::Close, Some(S::Revoked)),
    ];

    #[test]
    fn every_state_and_action_pair_follows_the_table() {
        // The table covers every pair exactly once.
        for state in S::ALL {
            for action in A::ALL {
                let rows = EXPECTED
                    .iter()
                    .filter(|(from, act, _)| from == state && act == action)
                    .count();
                assert_eq!(rows, 1, "({state}, {action}) appears {rows} times");
            }
        }
        for (from, action, expected) in EXPECTED {
            let outcome = from.apply(action);
            match expected {
                Some(to) => assert_eq!(outcome, Ok(to), "{from} --{action}-->"),
                None => assert_eq!(
                    outcome,
                    Err(InvalidTransition { from, action }),
                    "{from} --{action}--> should be refused"
                ),
            }
            // The SQL guard list agrees with `apply`.
            assert_eq!(
                action.accepted_from().contains(&from),
                expected.is_some(),
                "accepted_from({action}) disagrees about {from}"
            );
            assert_eq!(
                from.possible_actions().any(|possible| possible == action),
                expected.is_some()
            );
        }
    }

    #[test]
    fn each_action_has_its_actor() {
        let expected = [
            (A::Authorize, Actor::Recipient),
            (A::AuthorizationFailed, Actor::System),
            (A::Decline, Actor::Recipient),
            (A::Revoke, Actor::Recipient),
            (A::Invalidate, Actor::System),
            (A::RequestReauthorization, Actor::Requester),
            (A::Reauthorize, Actor::Recipient),
            (A::DeleteRemote, Actor::Requester),
            (A::Close, Actor::Requester),
        ];
        assert_eq!(expected.len(), A::ALL.len());
        for (action, actor) in expected {
            assert_eq!(action.actor(), actor, "{action}");
        }
    }

    #[test]
    fn refusals_name_the_state_and_what_the_action_needs() {
        let err = S::Pending.apply(A::Revoke).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot revoke a credential that is pending; revoke needs authorized"
        );
        let err = S::Declined.apply(A::DeleteRemote).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot delete the remote connection of a credential that is declined; \
             delete-remote needs authorized, invalid or reauthorizing"
        );
        let err = S::Pending.apply(A::Reauthorize).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reauthorize a credential that is pending; reauthorize needs reauthorizing or invalid"
        );
    }

    #[test]
    fn only_authorized_credentials_are_usable() {
        for state in S::ALL {
            assert_eq!(state.is_usable(), *state == S::Authorized, "{state}");
        }
    }

    /// Reads a value through serde from its name, as a JSON string would be read.
    pub(crate) fn from_serde_name<T: serde::de::DeserializeOwned>(name: &str) -> T {
        use serde::de::IntoDeserializer;
        let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        T::deserialize(deserializer).unwrap()
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_accepted_ones() {
        for state in S::ALL {
            assert_eq!(S::parse("state", state.as_str()).unwrap(), *state);
            assert_eq!(from_serde_name::<S>(state.as_str()), *state);
        }
        for action in A::ALL {
            assert_eq!(A::parse("action", action.as_str()).unwrap(), *action);
        }
        assert_eq!(S::Reauthorizing.as_str(), "reauthorizing");
        let err = S::parse("state", "Pending").unwrap_err();
        assert_eq!(
            err.message,
            "credential state \"Pending\" is not one of pending, authorized, invalid, \
             declined, revoked, reauthorizing"
        );
        assert_eq!(S::try_from("revoked".to_string()), Ok(S::Revoked));
    }
}
