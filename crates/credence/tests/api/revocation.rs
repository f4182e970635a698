//! Every way an OAuth connection ends revokes its grant at the provider
//! (RFC 7009), not only the recipient's revoke (tested in `oauth.rs`): the
//! recipient declining an authorized credential, the requester deleting the
//! remote connection, and the requester deleting the whole request. Each is
//! checked at the provider (the tokens are inactive, the refresh token is
//! `invalid_grant`), locally (the connection and its secret are gone) and in
//! the audit log. A provider that cannot be reached must not keep the local
//! secret alive: the connection goes anyway and the audit log says the
//! revocation failed.

use crate::on_both_backends;
use crate::support::SCOPES;
use crate::support::{assert_error, assert_no_secret, captured_logs, signed_in};
use crate::support::{world, World};
use credence_domain::CredentialState;
use credence_store::{AuditEntry, Backend, Connection};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// An OAuth credential authorized for real through the provider's consent
/// page, with the tokens the provider issued for it.
struct Authorized {
    world: World,
    connection: Connection,
    access: String,
    refresh: String,
    /// The requester's token that may also read connections.
    reader: String,
}

/// Authorizes the world's credential and checks the starting point, so that
/// what the tests see afterwards is the action's doing: the grant is live at
/// the provider, the connection readable, and nothing was revoked yet.
async fn authorized(backend: Backend) -> Authorized {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let connection = world.connection().await;
    // `tokens` registers both for the suite's secret tripwire.
    let tokens = world.tokens(&connection).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("the provider issues a refresh token (offline_access)")
        .to_string();
    assert_eq!(world.provider.introspect(&access).await["active"], true);
    assert_eq!(world.provider.introspect(&refresh).await["active"], true);
    let reader = world
        .agency
        .app
        .token(
            world.agency.requester.id,
            &format!("{SCOPES},connections:read"),
        )
        .await;
    let (status, body) = world
        .agency
        .app
        .get_json(&format!("/api/v2/connections/{}", connection.id), &reader)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(revocations(&world).await.is_empty());
    Authorized {
        world,
        connection,
        access,
        refresh,
        reader,
    }
}

/// The `connection.revoked_at_provider` entries of the audit log, oldest first.
async fn revocations(world: &World) -> Vec<AuditEntry> {
    world
        .agency
        .app
        .audit_entries(&["connection.revoked_at_provider"])
        .await
}

impl Authorized {
    /// The credential's action path, e.g. `decline`.
    fn action(&self, action: &str) -> String {
        format!(
            "/api/v2/credential-requests/credentials/{}/{action}",
            self.world.credential
        )
    }

    /// The connection is gone locally: the API no longer finds it, and
    /// neither its row nor its sealed secret is left in the store.
    async fn assert_gone_locally(&self) {
        let (status, body) = self
            .world
            .agency
            .app
            .get_json(
                &format!("/api/v2/connections/{}", self.connection.id),
                &self.reader,
            )
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
        let mut db = self.world.agency.app.db().await;
        assert!(db
            .get_connection(self.connection.id)
            .await
            .unwrap()
            .is_none());
        assert!(db
            .get_secret(self.connection.secret_id.as_deref().unwrap())
            .await
            .unwrap()
            .is_none());
    }

    /// The one audit entry of the revocation at the provider, for this
    /// connection: its details (never a token).
    async fn revocation_details(&self) -> Value {
        let entries = revocations(&self.world).await;
        assert_eq!(entries.len(), 1, "one revocation is audited: {entries:?}");
        let entry = &entries[0];
        assert_eq!(entry.target_kind, "connection");
        assert_eq!(entry.target_id, self.connection.id.to_string());
        assert_no_secret("the audit entry", &entry.details);
        serde_json::from_str(&entry.details).unwrap()
    }

    /// Everything the action must leave behind: the grant dead at the
    /// provider, the connection and its secret gone here, the revocation
    /// audited as a success, and no token in any log.
    async fn assert_revoked_everywhere(&self) {
        let provider = &self.world.provider;
        // Credence revokes the refresh token, which ends the whole grant;
        // the access token going too shows it was this grant's.
        assert_eq!(
            provider.introspect(&self.refresh).await["active"],
            false,
            "the refresh token is still active at the provider"
        );
        assert_eq!(
            provider.introspect(&self.access).await["active"],
            false,
            "the access token is still active at the provider"
        );
        let (status, body) = provider
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.refresh.as_str()),
            ])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");

        self.assert_gone_locally().await;

        let details = self.revocation_details().await;
        assert_eq!(details["ok"], true, "{details}");
        assert_eq!(details["status"], 200, "{details}");
        assert_eq!(details["app"], "local-oauth", "{details}");
        assert_no_secret("the logs", &captured_logs());
    }
}

/// The recipient declines a credential they had authorized: it is declined,
/// and the grant goes with the connection.
async fn declining_an_authorized_credential_revokes_the_grant_at_the_provider(backend: Backend) {
    let authorized = authorized(backend).await;
    let world = &authorized.world;
    let (status, body) = world
        .agency
        .post(
            &authorized.action("decline"),
            &world.agency.teammate_token,
            Some(json!({ "reason": "We moved to another CRM" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "declined", "{body}");
    assert_eq!(world.stored().await.state, CredentialState::Declined);
    authorized.assert_revoked_everywhere().await;
    authorized.world.agency.app.stop().await;
}

/// The requester deletes the remote connection: the credential is pending
/// again, and the grant at the provider is revoked, not merely forgotten.
async fn deleting_the_remote_connection_revokes_the_grant_at_the_provider(backend: Backend) {
    let authorized = authorized(backend).await;
    let world = &authorized.world;
    let (status, body) = world
        .agency
        .post(
            &authorized.action("delete-remote"),
            &world.agency.requester_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "pending", "{body}");
    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Pending);
    assert!(credential.connection_id.is_none());
    authorized.assert_revoked_everywhere().await;
    authorized.world.agency.app.stop().await;
}

/// The requester deletes the whole request. Unconfirmed, it is refused and
/// the grant stays live (nothing was destroyed, so nothing may be revoked);
/// confirmed, the request and its connection go and the grant is revoked.
async fn deleting_the_request_revokes_the_grant_at_the_provider(backend: Backend) {
    let authorized = authorized(backend).await;
    let world = &authorized.world;
    let path = format!("/api/v2/credential-requests/requests/{}", world.request);

    let (status, body) = world
        .agency
        .delete(&path, &world.agency.requester_token)
        .await;
    assert_no_secret("the answer to DELETE", &body.to_string());
    assert_error(status, &body, StatusCode::CONFLICT);
    assert_eq!(
        world.provider.introspect(&authorized.refresh).await["active"],
        true,
        "an unconfirmed delete revoked the grant"
    );
    assert!(revocations(world).await.is_empty());
    assert_eq!(world.stored().await.state, CredentialState::Authorized);

    let (status, body) = world
        .agency
        .delete(
            &format!("{path}?confirmed=true"),
            &world.agency.requester_token,
        )
        .await;
    assert_no_secret("the answer to DELETE", &body.to_string());
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["deletedConnections"],
        json!([authorized.connection.id]),
        "{body}"
    );
    let (status, body) = world
        .agency
        .app
        .get_json(&format!("{path}/detail"), &world.agency.requester_token)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    authorized.assert_revoked_everywhere().await;
    authorized.world.agency.app.stop().await;
}

/// The provider is down when the recipient revokes: the revocation at the
/// provider fails, yet the revoke succeeds, the connection and its secret are
/// gone (the local secret must never outlive a failed call elsewhere) and the
/// audit log records the failure, with no HTTP status since none answered.
async fn a_failed_revocation_at_the_provider_keeps_no_secret_alive(backend: Backend) {
    let mut authorized = authorized(backend).await;
    // Stopped, not in an outage: the revocation endpoint refuses connections.
    authorized.world.provider.stop();
    let world = &authorized.world;
    let (status, body) = world
        .agency
        .post(
            &authorized.action("revoke"),
            &world.agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "revoked", "{body}");
    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Revoked);
    assert!(credential.connection_id.is_none());
    authorized.assert_gone_locally().await;

    let details = authorized.revocation_details().await;
    assert_eq!(details["ok"], false, "{details}");
    assert_eq!(details["status"], Value::Null, "{details}");
    assert_eq!(details["app"], "local-oauth", "{details}");
    assert_no_secret("the logs", &captured_logs());
    authorized.world.agency.app.stop().await;
}

on_both_backends!(
    declining_an_authorized_credential_revokes_the_grant_at_the_provider,
    deleting_the_remote_connection_revokes_the_grant_at_the_provider,
    deleting_the_request_revokes_the_grant_at_the_provider,
    a_failed_revocation_at_the_provider_keeps_no_secret_alive,
);
