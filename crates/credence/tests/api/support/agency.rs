//! The usual scene of the request tests: a running Credence with two local
//! API-key apps served by an [`Upstream`], the people of an agency with their
//! tokens, and typed helpers for the request API.

use super::{api_key_app, spawn_app_with, Person, TestApp, Upstream};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A running Credence with two local API-key apps (`acme-crm`, `beta-desk`)
/// and the people of a typical agency: Default team with a requester (member,
/// with the feature) and a teammate; a second team; an org admin.
pub struct Agency {
    pub app: TestApp,
    pub upstream: Upstream,
    pub requester: Person,
    pub requester_token: String,
    pub teammate: Person,
    pub teammate_token: String,
    pub other_team: credence_domain::TeamId,
    pub outsider: Person,
    pub outsider_token: String,
    pub admin_token: String,
}

/// The path of `action` on the requested credential `credential`.
pub fn credential_path(credential: &str, action: &str) -> String {
    format!("/api/v2/credential-requests/credentials/{credential}/{action}")
}

pub const SCOPES: &str = "credential-requests:read,credential-requests:write";

impl Agency {
    pub async fn start(backend: Backend) -> Agency {
        Self::start_with(backend, &[], |_| {}).await
    }

    /// Like [`Agency::start`], with more operator app files (`(key, text)`) and
    /// a last say on the configuration.
    pub async fn start_with(
        backend: Backend,
        extra_apps: &[(&str, String)],
        adjust: impl FnOnce(&mut credence::config::Config),
    ) -> Agency {
        let upstream = Upstream::start().await;
        let apps = tempfile::tempdir().unwrap();
        std::fs::write(
            apps.path().join("acme-crm.toml"),
            api_key_app("acme-crm", "Acme CRM", &upstream),
        )
        .unwrap();
        std::fs::write(
            apps.path().join("beta-desk.toml"),
            api_key_app("beta-desk", "Beta Desk", &upstream),
        )
        .unwrap();
        for (key, text) in extra_apps {
            std::fs::write(apps.path().join(format!("{key}.toml")), text).unwrap();
        }
        let apps_dir = apps.keep();
        let app = spawn_app_with(backend, |config| {
            config.apps_dir = Some(apps_dir);
            adjust(config);
        })
        .await;
        let team = app.team;
        let requester = app
            .add_person(
                "rita@agency.example",
                app.organization,
                "member",
                Some((team, "member")),
            )
            .await;
        credence::service::features::grant(&app.store, &app.vault(), &requester.email)
            .await
            .unwrap();
        let teammate = app
            .add_person(
                "tom@agency.example",
                app.organization,
                "member",
                Some((team, "member")),
            )
            .await;
        let other_team =
            credence::service::identity::create_team(&app.store, app.organization, "Other")
                .await
                .unwrap()
                .id;
        let outsider = app
            .add_person(
                "olga@agency.example",
                app.organization,
                "member",
                Some((other_team, "member")),
            )
            .await;
        let requester_token = app.token(requester.id, SCOPES).await;
        let teammate_token = app.token(teammate.id, SCOPES).await;
        let outsider_token = app.token(outsider.id, SCOPES).await;
        let admin_token = app.token(app.admin_id().await, SCOPES).await;
        Agency {
            app,
            upstream,
            requester,
            requester_token,
            teammate,
            teammate_token,
            other_team,
            outsider,
            outsider_token,
            admin_token,
        }
    }

    /// A request body for `apps` asked of the user `recipient`.
    pub fn body_for(&self, recipient: credence_domain::UserId, apps: &[&str]) -> Value {
        json!({
            "name": "Onboarding Acme",
            "teamId": self.app.team,
            "description": "Access for the weekly sync",
            "credentials": apps.iter().map(|app| json!({ "appName": app, "appModules": ["*"] })).collect::<Vec<_>>(),
            "provider": { "providerMakeUserId": recipient },
        })
    }

    /// POSTs `body` (if any) to `path` with a token (see [`TestApp::post`]).
    pub async fn post(&self, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.app.post(path, token, body).await
    }

    /// DELETEs `path` with a token (see [`TestApp::delete`]).
    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.app.delete(path, token).await
    }

    /// The teammate's (Tom's) `action` on `credential` (`authorize`,
    /// `reauthorize`) with the API key `key`.
    pub async fn authorize_with(
        &self,
        credential: &str,
        action: &str,
        key: &str,
    ) -> (StatusCode, Value) {
        self.post(
            &credential_path(credential, action),
            &self.teammate_token,
            Some(json!({ "data": { "apiKey": key } })),
        )
        .await
    }

    /// Creates a request as the requester; returns (request id, credential ids, publicUri).
    pub async fn create_request(
        &self,
        recipient: credence_domain::UserId,
        apps: &[&str],
    ) -> (String, Vec<String>, String) {
        let (status, body) = self
            .post(
                "/api/v2/credential-requests/requests/v2",
                &self.requester_token,
                Some(self.body_for(recipient, apps)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["request"]["id"].as_str().unwrap().to_string();
        let credentials = body["request"]["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        (
            id,
            credentials,
            body["publicUri"].as_str().unwrap().to_string(),
        )
    }

    /// The link of the invitation the outbox holds for `email`.
    pub async fn invitation_link(&self, email: &str) -> String {
        self.outbox()
            .await
            .into_iter()
            .find(|(kind, to, _)| kind == "credential_request.invitation" && to == email)
            .expect("an invitation")
            .2["invitationLink"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The undelivered notifications, opened (see [`TestApp::outbox`]).
    pub async fn outbox(&self) -> Vec<(String, String, Value)> {
        self.app.outbox().await
    }

    /// The audit events recorded, oldest first.
    pub async fn audit_events(&self) -> Vec<String> {
        self.app.audit_events().await
    }
}
