//! Credential requests (SPEC §3, §4): creating them under the feature gate and
//! the rules of who may ask whom, reading them with the visibility rules of
//! §4.4, and deleting them. The per-credential actions live in `credentials`.

use super::access::{self, Viewer};
use super::apps::{pick_version, shorten};
use super::audit::{self, Actor, Event};
use super::endings::{self, Revocations};
use super::{
    connections, invitations, random_token, reminders, token_hash, Context, Error, Result,
};
use chrono::{DateTime, Utc};
use credence_catalog::ModuleSelection;
use credence_domain::{
    check_credential_count, may_request, ConnectionName, CredentialId, Description, EmailAddress,
    Feature, Note, OrganizationId, PersonName, RecipientKind, RequestId, RequestName, TeamId,
    TrackingField, UserId, ValidationError,
};
use credence_store::{CredentialRequest, Db, NewCredential, NewRequest, RequestedCredential, User};
use serde::Deserialize;
use serde_json::{json, Value};

/// A request as sent to the API (Make's body plus ours). Fields are optional
/// here so that every missing one is reported at once, by name.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequestInput {
    pub name: Option<String>,
    pub team_id: Option<i64>,
    pub description: Option<String>,
    pub credentials: Option<Vec<CredentialInput>>,
    /// The deprecated endpoint's form: connection types to ask for.
    pub connections: Option<Vec<LegacyCredentialInput>>,
    /// The deprecated endpoint's form: key types to ask for.
    pub keys: Option<Vec<LegacyCredentialInput>>,
    pub provider: Option<ProviderInput>,
    pub client: Option<String>,
    pub project: Option<String>,
    /// The user responsible for follow-up (default: the requester).
    pub owner: Option<i64>,
    /// Must not be false. The web form requires the tick; an API client accepts
    /// the terms by using its token, and the acceptance is recorded all the same.
    pub terms_accepted: Option<bool>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialInput {
    pub app_name: Option<String>,
    pub app_modules: Option<Vec<String>>,
    /// A number or `"latest"`; default latest.
    #[schema(value_type = Option<AppVersion>)]
    pub app_version: Option<Value>,
    pub name_override: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyCredentialInput {
    /// An app key, optionally prefixed `account:` or `keychain:` as Make writes it.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub description: Option<String>,
    pub name_override: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInput {
    /// An existing user of the organization (a number or a numeric string).
    #[schema(value_type = Option<UserIdInput>)]
    pub provider_make_user_id: Option<Value>,
    pub new_user: Option<NewUserInput>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewUserInput {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// An app version as sent: a number, or `"latest"` (for the OpenAPI document).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum AppVersion {
    Number(u32),
    Text(String),
}

/// A user id as sent: a number, or a numeric string (for the OpenAPI document).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum UserIdInput {
    Number(i64),
    Text(String),
}

/// What creating a request answers: the request, its credentials and the link
/// for the recipient.
pub struct Created {
    pub request: CredentialRequest,
    pub credentials: Vec<RequestedCredential>,
    pub public_uri: String,
}

/// Collects every problem of an input before answering.
#[derive(Default)]
struct Problems(Vec<ValidationError>);

impl Problems {
    fn take<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError::new(field, message));
    }

    fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.0))
        }
    }
}

/// One requested app, checked against the catalog.
struct ParsedCredential {
    app_key: String,
    app_version: u32,
    modules: Vec<String>,
    scopes: Vec<String>,
    note: Option<String>,
    connection_name: Option<ConnectionName>,
}

fn parse_credential(
    ctx: &Context,
    index: usize,
    input: &CredentialInput,
    problems: &mut Problems,
) -> Option<ParsedCredential> {
    let at = |name: &str| format!("credentials[{index}].{name}");
    let Some(app_name) = input.app_name.as_deref().filter(|s| !s.trim().is_empty()) else {
        problems.push(at("appName"), "appName is required");
        return None;
    };
    let Some(app) = ctx.catalog.get(app_name.trim()) else {
        problems.push(
            at("appName"),
            format!(
                "no app is called {:?}; GET /api/v2/credential-requests/apps lists them",
                shorten(app_name)
            ),
        );
        return None;
    };
    let version = problems.take(pick_version(
        &at("appVersion"),
        input.app_version.as_ref(),
        app,
    ))?;
    let module_keys = input
        .app_modules
        .clone()
        .unwrap_or_else(|| vec!["*".to_string()]);
    if module_keys.len() > 200 {
        problems.push(
            at("appModules"),
            format!(
                "appModules lists {} modules; the limit is 200",
                module_keys.len()
            ),
        );
        return None;
    }
    let selection = match ModuleSelection::parse(&module_keys, version) {
        Ok(selection) => selection,
        Err(error) => {
            problems.push(at("appModules"), error.to_string());
            return None;
        }
    };
    let scopes = version
        .scopes_for(&selection)
        .map_err(|e| problems.push(at("appModules"), e.to_string()))
        .ok()?;
    let note = problems.take(Note::parse_optional(
        &at("description"),
        input.description.as_deref(),
    ))?;
    let connection_name = match input.name_override.as_deref() {
        Some(raw) => Some(problems.take(ConnectionName::parse(&at("nameOverride"), raw))?),
        None => None,
    };
    Some(ParsedCredential {
        app_key: app.key.clone(),
        app_version: version.version,
        modules: selection.to_keys(),
        scopes: scopes.into_iter().collect(),
        note: note.map(|n| n.as_str().to_string()),
        connection_name,
    })
}

/// The recipient an input names, resolved against the organization.
enum Recipient {
    Member(User),
    External {
        name: PersonName,
        email: EmailAddress,
    },
}

async fn resolve_recipient(
    db: &mut Db,
    organization: OrganizationId,
    provider: Option<&ProviderInput>,
    problems: &mut Problems,
) -> Result<Option<Recipient>> {
    let Some(provider) = provider else {
        problems.push("provider", "provider is required: {\"providerMakeUserId\": id} or {\"newUser\": {\"name\", \"email\"}}");
        return Ok(None);
    };
    match (&provider.provider_make_user_id, &provider.new_user) {
        (Some(_), Some(_)) => {
            problems.push(
                "provider",
                "give either providerMakeUserId or newUser, not both",
            );
            Ok(None)
        }
        (Some(raw), None) => {
            let id = match raw {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            let Some(id) = id else {
                problems.push(
                    "provider.providerMakeUserId",
                    "providerMakeUserId must be a user id",
                );
                return Ok(None);
            };
            let member = match db.organization_role(organization, UserId(id)).await? {
                Some(_) => db.get_user(UserId(id)).await?,
                None => None,
            };
            match member {
                Some(user) => Ok(Some(Recipient::Member(user))),
                None => {
                    problems.push(
                        "provider.providerMakeUserId",
                        format!("user {id} is not a member of organization {organization}"),
                    );
                    Ok(None)
                }
            }
        }
        (None, Some(new_user)) => {
            let name = problems.take(PersonName::parse(
                "provider.newUser.name",
                new_user.name.as_deref().unwrap_or(""),
            ));
            let email = problems.take(EmailAddress::parse(
                "provider.newUser.email",
                new_user.email.as_deref().unwrap_or(""),
            ));
            let (Some(name), Some(email)) = (name, email) else {
                return Ok(None);
            };
            // Someone already in the organization is asked as a member, not invited.
            if let Some(user) = db.find_user_by_email(email.as_str()).await? {
                if db.organization_role(organization, user.id).await?.is_some() {
                    return Ok(Some(Recipient::Member(user)));
                }
            }
            Ok(Some(Recipient::External { name, email }))
        }
        (None, None) => {
            problems.push("provider", "provider needs providerMakeUserId or newUser");
            Ok(None)
        }
    }
}

/// The link a recipient opens, from its token.
pub fn public_uri(ctx: &Context, token: &str) -> String {
    format!("{}/requests/{token}", ctx.public_url)
}

/// Creates a credential request (SPEC §4): all or nothing, audited, with the
/// recipient's notification in the outbox.
pub async fn create(ctx: &Context, requester: &User, input: CreateRequestInput) -> Result<Created> {
    let mut problems = Problems::default();
    let name = problems.take(RequestName::parse(
        "name",
        input.name.as_deref().unwrap_or(""),
    ));
    let description = problems
        .take(Description::parse_optional(
            "description",
            input.description.as_deref(),
        ))
        .flatten();
    let client = problems
        .take(TrackingField::parse_optional(
            "client",
            input.client.as_deref(),
        ))
        .flatten();
    let project = problems
        .take(TrackingField::parse_optional(
            "project",
            input.project.as_deref(),
        ))
        .flatten();
    if input.terms_accepted == Some(false) {
        problems.push(
            "termsAccepted",
            "the terms must be accepted to send a request",
        );
    }
    if let Some(expires_at) = input.expires_at {
        if expires_at <= Utc::now() {
            problems.push(
                "expiresAt",
                format!("expiresAt {} is in the past", expires_at.to_rfc3339()),
            );
        }
    }
    let team = match input.team_id {
        Some(team) => Some(TeamId(team)),
        None => {
            problems.push("teamId", "teamId is required");
            None
        }
    };

    // Make's v2 body names apps in `credentials`; the deprecated one in
    // `connections` and `keys`.
    let credential_inputs: Vec<CredentialInput> =
        match (&input.credentials, &input.connections, &input.keys) {
            (Some(credentials), _, _) => credentials.clone(),
            (None, connections, keys) => connections
                .iter()
                .chain(keys.iter())
                .flatten()
                .map(|legacy| CredentialInput {
                    app_name: legacy.kind.as_ref().map(|kind| {
                        kind.trim_start_matches("account:")
                            .trim_start_matches("keychain:")
                            .to_string()
                    }),
                    app_modules: None,
                    app_version: None,
                    name_override: legacy.name_override.clone(),
                    description: legacy.description.clone(),
                })
                .collect(),
        };
    let count_ok = problems
        .take(check_credential_count(
            "credentials",
            credential_inputs.len(),
        ))
        .is_some();
    let mut parsed = Vec::new();
    if count_ok {
        for (index, credential) in credential_inputs.iter().enumerate() {
            if let Some(credential) = parse_credential(ctx, index, credential, &mut problems) {
                parsed.push(credential);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, credential) in parsed.iter().enumerate() {
            if !seen.insert(credential.app_key.clone()) {
                problems.push(
                    format!("credentials[{index}].appName"),
                    format!(
                        "{} is asked for twice; one credential per app",
                        credential.app_key
                    ),
                );
            }
        }
    }

    let mut tx = ctx.store.begin().await?;
    let team = match team {
        Some(team) => tx.get_team(team).await?,
        None => None,
    };
    // The requester's roles in the team's organization and in the team, in
    // one query.
    let (team, organization_role, team_role) = match (team, input.team_id) {
        (Some(team), _) => match tx.roles_in_team(team.id, requester.id).await? {
            Some((Some(role), team_role)) => (Some(team), Some(role), team_role),
            _ => return Err(Error::NotFound(format!("team {} not found", team.id))),
        },
        (None, Some(id)) => return Err(Error::NotFound(format!("team {id} not found"))),
        (None, None) => (None, None, None),
    };
    let recipient = match &team {
        Some(team) => {
            resolve_recipient(
                &mut tx,
                team.organization_id,
                input.provider.as_ref(),
                &mut problems,
            )
            .await?
        }
        None => None,
    };
    // The owner follows the request up (SPEC §9): a member of the team;
    // by default the requester.
    let owner = match (input.owner, &team) {
        (Some(owner), Some(team)) => {
            if let Some(problem) =
                access::check_owner(&mut tx, team.id, team.organization_id, UserId(owner)).await?
            {
                problems.0.push(problem);
            }
            Some(UserId(owner))
        }
        _ => Some(requester.id),
    };
    problems.finish()?;
    let (Some(team), Some(organization_role), Some(recipient), Some(name)) =
        (team, organization_role, recipient, name)
    else {
        return Err(Error::Invalid(vec![ValidationError::new(
            "body",
            "the request is incomplete",
        )]));
    };

    // The feature gate (SPEC §2), then who may ask whom (SPEC §3).
    let organization = tx
        .get_organization(team.organization_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("team {} not found", team.id)))?;
    if !tx
        .user_features(requester.id)
        .await?
        .contains(&Feature::CredentialRequests)
    {
        return Err(Error::Forbidden(
            "you do not have the credential-requests feature; ask for it with POST /api/v2/credential-requests/feature and your operator will review it".into(),
        ));
    }
    if !organization.qualifies_for_credential_requests() {
        return Err(Error::Forbidden(format!(
            "organization {} is on the {} plan{}; credential requests need the enterprise plan, or a partner organization on a paid plan",
            organization.id,
            organization.plan,
            if organization.partner { " as a partner" } else { "" }
        )));
    }
    let kind = match &recipient {
        Recipient::Member(user) if user.id == requester.id => {
            return Err(Error::Invalid(vec![ValidationError::new(
                "provider",
                "you cannot request credentials from yourself",
            )]));
        }
        Recipient::Member(user) => {
            if tx.team_role(team.id, user.id).await?.is_some() {
                RecipientKind::SameTeamMember
            } else {
                RecipientKind::OrganizationMember
            }
        }
        Recipient::External { .. } => RecipientKind::External,
    };
    may_request(team_role, organization_role, kind)
        .map_err(|refusal| Error::Forbidden(refusal.to_string()))?;

    let link = random_token();
    let request_id = RequestId::from(uuid::Uuid::new_v4());
    // The schedule of reminders and the SLA deadline, from the team's policy.
    let policy = reminders::policy_of(&mut tx, team.id).await?;
    let created = credence_store::now();
    let app_labels: Vec<String> = parsed
        .iter()
        .map(|c| {
            ctx.catalog
                .get(&c.app_key)
                .map(|a| a.label.clone())
                .unwrap_or_default()
        })
        .collect();
    // What the email names for each app: its modules ("*": all of them).
    let app_modules: Vec<Value> = parsed
        .iter()
        .zip(&app_labels)
        .map(|(c, label)| {
            let version = ctx
                .catalog
                .get(&c.app_key)
                .and_then(|app| app.version(c.app_version));
            let modules: Vec<String> = version
                .map(|version| {
                    version
                        .modules
                        .iter()
                        .filter(|m| c.modules.iter().any(|k| k == "*" || *k == m.key))
                        .map(|m| m.label.clone())
                        .collect()
                })
                .unwrap_or_default();
            json!({ "app": label, "modules": modules })
        })
        .collect();
    let new = NewRequest {
        id: request_id,
        organization_id: organization.id,
        team_id: team.id,
        requester_id: requester.id,
        name: name.as_str().to_string(),
        description: description.map(|d| d.as_str().to_string()),
        recipient_kind: if matches!(recipient, Recipient::External { .. }) {
            "external"
        } else {
            "internal"
        },
        recipient_user_id: match &recipient {
            Recipient::Member(user) => Some(user.id),
            Recipient::External { .. } => None,
        },
        recipient_name: match &recipient {
            Recipient::Member(user) => user.name.clone(),
            Recipient::External { name, .. } => name.as_str().to_string(),
        },
        recipient_email: match &recipient {
            Recipient::Member(user) => user.email.clone(),
            Recipient::External { email, .. } => email.as_str().to_string(),
        },
        link_hash: token_hash(&link),
        client: client.map(|c| c.as_str().to_string()),
        project: project.map(|p| p.as_str().to_string()),
        owner_id: owner,
        expires_at: input.expires_at,
        created_at: created,
        next_nudge_at: policy.first_nudge(created),
        sla_due_at: Some(policy.sla_due(created)),
        credentials: parsed
            .iter()
            .zip(&app_labels)
            .map(|(c, label)| NewCredential {
                id: CredentialId::from(uuid::Uuid::new_v4()),
                app_key: c.app_key.clone(),
                app_version: c.app_version as i64,
                modules: serde_json::to_string(&c.modules).unwrap_or_default(),
                scopes: serde_json::to_string(&c.scopes).unwrap_or_default(),
                note: c.note.clone(),
                connection_name: c
                    .connection_name
                    .clone()
                    .unwrap_or_else(|| ConnectionName::default_for(&name, label))
                    .as_str()
                    .to_string(),
            })
            .collect(),
    };
    let (request, credentials) = tx.insert_request(&new).await?;
    let public_uri = public_uri(ctx, &link);
    let actor = Actor::user(requester);
    audit::record(
        &mut tx,
        &actor,
        Event {
            organization: organization.id,
            team: Some(team.id),
            name: "credential_request.created",
            target_kind: "credential_request",
            target_id: request_id.to_string(),
            details: json!({
                "name": new.name,
                "apps": parsed.iter().map(|c| c.app_key.as_str()).collect::<Vec<_>>(),
                "recipientEmail": new.recipient_email,
                "recipientKind": new.recipient_kind,
            }),
        },
    )
    .await?;
    let mut payload = json!({
        "requestId": request_id,
        "requestName": new.name,
        "requesterName": requester.name,
        "requesterEmail": requester.email,
        "organizationName": organization.name,
        "teamName": team.name,
        "apps": app_labels,
        "appModules": app_modules,
        "link": public_uri,
    });
    match &recipient {
        Recipient::Member(_) => {
            audit::notify(
                &mut tx,
                &ctx.vault,
                Some(organization.id),
                "credential_request.received",
                &new.recipient_email,
                payload,
            )
            .await?;
        }
        Recipient::External { name, email } => {
            let invitation = invitations::invite_guest(
                &mut tx,
                organization.id,
                team.id,
                email,
                name,
                requester.id,
                request_id,
            )
            .await?;
            payload["invitationLink"] =
                json!(format!("{}/invitations/{invitation}", ctx.public_url));
            audit::notify(
                &mut tx,
                &ctx.vault,
                Some(organization.id),
                "credential_request.invitation",
                email.as_str(),
                payload,
            )
            .await?;
            audit::record(&mut tx, &actor, Event {
                organization: organization.id,
                team: Some(team.id),
                name: "member.invited",
                target_kind: "invitation",
                target_id: email.as_str().to_lowercase(),
                details: json!({ "email": email.as_str(), "role": "guest", "requestId": request_id }),
            })
            .await?;
        }
    }
    tx.commit().await?;
    tracing::info!(request_id = %request_id, team_id = %team.id, "credential request created");
    Ok(Created {
        request,
        credentials,
        public_uri,
    })
}

/// A request as one viewer reads it whole.
#[derive(Debug)]
pub struct Opened {
    pub request: CredentialRequest,
    pub viewer: Viewer,
    pub credentials: Vec<RequestedCredential>,
    pub requester: Option<User>,
    pub recipient: Option<User>,
}

/// Reads request `id` whole for `caller`. The first time its recipient reads
/// it, it is marked opened, and its status recomputed, in one transaction
/// (a credential's transition committing meanwhile is not overwritten by a
/// status derived from what it replaced).
pub async fn open(ctx: &Context, caller: &User, id: RequestId) -> Result<Opened> {
    let mut db = ctx.store.db().await?;
    let (mut request, viewer) = access::request(&mut db, caller, id).await?;
    if viewer == Viewer::Recipient && request.opened_at.is_none() {
        drop(db);
        let mut tx = ctx.store.begin().await?;
        tx.mark_request_opened(id).await?;
        tx.commit().await?;
        db = ctx.store.db().await?;
        request = db
            .get_request(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("credential request {id} not found")))?;
    }
    let credentials = db.list_credentials(id).await?;
    // The requester and the recipient in one query.
    let people: Vec<UserId> = std::iter::once(request.requester_id)
        .chain(request.recipient_user_id)
        .collect();
    let people = db.get_users(&people).await?;
    let person = |id: UserId| people.iter().find(|user| user.id == id).cloned();
    let requester = person(request.requester_id);
    let recipient = request.recipient_user_id.and_then(person);
    Ok(Opened {
        request,
        viewer,
        credentials,
        requester,
        recipient,
    })
}

/// Deletes a request (SPEC §4.3). While any of its credentials holds a
/// connection, `confirmed` must be true; the answer then lists what is deleted.
/// Every connection and secret of the request is destroyed; the audit stays.
pub async fn delete(
    ctx: &Context,
    caller: &User,
    id: RequestId,
    confirmed: bool,
) -> Result<Vec<i64>> {
    let mut tx = ctx.store.begin().await?;
    let (request, viewer) = access::request(&mut tx, caller, id).await?;
    if viewer == Viewer::Sender {
        access::require_sender(&mut tx, caller, &request).await?;
    }
    // Held until the commit: a reauthorization finishing meanwhile waits, and
    // then finds its credential gone, instead of leaving a new connection
    // that this deletion did not see and nothing names.
    let credentials = tx.lock_credentials_of_request(id).await?;
    let connections: Vec<i64> = credentials.iter().filter_map(|c| c.connection_id).collect();
    if !connections.is_empty() && !confirmed {
        let consumers = connections::recent_consumers(&mut tx, &connections).await?;
        return Err(Error::Conflict(format!(
            "request {id} has {} live connection(s) ({}){consumers}; repeat with confirmed=true to delete them with it",
            connections.len(),
            connections.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut revocations = Revocations::default();
    for connection in &connections {
        endings::destroy(ctx, &mut tx, *connection, &mut revocations).await?;
    }
    invitations::withdraw_for_request(&mut tx, id).await?;
    tx.delete_request(id).await?;
    audit::record(
        &mut tx,
        &Actor::user(caller),
        Event {
            organization: request.organization_id,
            team: Some(request.team_id),
            name: "credential_request.deleted",
            target_kind: "credential_request",
            target_id: id.to_string(),
            details: json!({ "name": request.name, "connectionsDeleted": connections }),
        },
    )
    .await?;
    tx.commit().await?;
    // After the commit: a failure at the provider never keeps the secrets alive.
    revocations.after_commit(ctx).await;
    Ok(connections)
}
