//! A team's own connections (SPEC §5 "Add connection" and "Manage"): adding
//! one for any auth kind, renaming, deleting (with revocation at the
//! provider) and renewing an OAuth connection in place.
//!
//! Who may change a team's connections: the team's admins and members and
//! the organization's owners and admins — the same people who see them and
//! who may send the team's credential requests; anyone else gets a 404. Only
//! the person who added an OAuth connection renews it in place. A connection a recipient provided through a request is renewed
//! only by that recipient (request-reauthorize asks them); the team may
//! rename or delete it.

use super::access::{manageable_connection, require_connection_writer};
use super::apps::{self, shorten};
use super::audit::{self, Actor, Event};
use super::connections::{self, ConnectionSpec};
use super::consent::{self, ConnectTarget, Consented, Finished, FlowFor};
use super::endings::{self, Revocations};
use super::{secrets, Context, Error, Result};
use credence_catalog::{AuthKind, ModuleSelection};
use credence_domain::{ConnectionName, OrganizationId, TeamId, ValidationError};
use credence_provider::{call, FieldValues, OAuthClient, SecretJson};
use credence_store::{Connection, Db, User};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

/// At most this many extra scopes on one connection.
pub const EXTRA_SCOPES_MAX: usize = 50;
/// The longest scope accepted.
pub const SCOPE_MAX: usize = 256;
/// The longest own client id and client secret accepted.
pub const CLIENT_ID_MAX: usize = 256;
pub const CLIENT_SECRET_MAX: usize = 1024;

/// Audits a new connection of a team's own (inside the caller's transaction).
async fn audit_created(
    db: &mut Db,
    caller: &User,
    organization: OrganizationId,
    team: TeamId,
    connection: i64,
    app: &str,
    name: &str,
) -> Result<()> {
    audit::record(
        db,
        &Actor::user(caller),
        Event {
            organization,
            team: Some(team),
            name: "connection.created",
            target_kind: "connection",
            target_id: connection.to_string(),
            details: json!({ "app": app, "name": name }),
        },
    )
    .await
}

/// What a user asks for when adding a connection (`POST /connections`).
#[derive(Debug)]
pub struct NewOwnConnection {
    pub team: TeamId,
    /// The connection's name (Make's `accountName`); default "My <App> connection".
    pub name: Option<String>,
    /// The app's key (Make's `accountType`).
    pub app: Option<String>,
    pub app_version: Option<Value>,
    /// Module keys; default every module.
    pub modules: Option<Vec<String>>,
    /// Scopes beyond the modules' (OAuth only).
    pub scopes: Option<Vec<String>>,
    /// The connection's own OAuth client (OAuth only; both or neither).
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// The app's fields (API key, basic, custom): secrets, zeroized on drop.
    pub data: SecretJson,
    /// How the fields are named in errors: `data.` or nothing (top level).
    pub data_prefix: &'static str,
}

/// What adding a connection led to.
#[derive(Debug)]
pub enum Added {
    /// Verified and sealed: the connection exists.
    Connection(Box<Connection>),
    /// An OAuth app: the user's browser goes to this consent page, and the
    /// connection exists once the provider sends it back.
    Redirect(String),
}

/// A scope token as RFC 6749 §3.3 defines it: printable ASCII without space,
/// `"` or `\`.
fn scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Adds a connection of `input.team`'s own. API key, basic and custom
/// connections are verified through the app's verify operation before they
/// are sealed; an OAuth one answers the consent page. Nothing is stored on any
/// error.
pub async fn add(ctx: &Context, caller: &User, input: NewOwnConnection) -> Result<Added> {
    let (organization, _) =
        require_connection_writer(&mut ctx.store.db().await?, caller, input.team).await?;
    let invalid = |field: &str, message: String| Error::from(ValidationError::new(field, message));
    let app_key = input
        .app
        .as_deref()
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            invalid(
                "accountType",
                "accountType is required: the app's key (GET /api/v2/credential-requests/apps lists them)".into(),
            )
        })?;
    let app = ctx.catalog.get(app_key).ok_or_else(|| {
        invalid(
            "accountType",
            format!(
                "no app is called {:?}; GET /api/v2/credential-requests/apps lists them",
                shorten(app_key)
            ),
        )
    })?;
    let version = apps::pick_version("appVersion", input.app_version.as_ref(), app)?;
    let module_keys = input.modules.unwrap_or_else(|| vec!["*".to_string()]);
    if module_keys.len() > 200 {
        return Err(invalid(
            "modules",
            format!(
                "modules lists {} modules; the limit is 200",
                module_keys.len()
            ),
        ));
    }
    let selection = ModuleSelection::parse(&module_keys, version)
        .map_err(|e| invalid("modules", e.to_string()))?;
    let mut scopes = version
        .scopes_for(&selection)
        .map_err(|e| invalid("modules", e.to_string()))?;
    let name = match input.name.as_deref() {
        Some(raw) => ConnectionName::parse("accountName", raw)?,
        None => ConnectionName::parse(
            "accountName",
            &format!(
                "My {} connection",
                app.label.chars().take(200).collect::<String>()
            ),
        )?,
    };
    let oauth = version.auth.kind() == AuthKind::Oauth2;
    let extra = input.scopes.unwrap_or_default();
    if !extra.is_empty() && !oauth {
        return Err(invalid(
            "scopes",
            format!(
                "{} does not use OAuth 2.0; scopes apply only to OAuth apps",
                app.label
            ),
        ));
    }
    if extra.len() > EXTRA_SCOPES_MAX {
        return Err(invalid(
            "scopes",
            format!(
                "scopes lists {} entries; the limit is {EXTRA_SCOPES_MAX}",
                extra.len()
            ),
        ));
    }
    for (index, scope) in extra.iter().enumerate() {
        if scope.chars().count() > SCOPE_MAX {
            return Err(invalid(
                &format!("scopes[{index}]"),
                format!(
                    "scope {index} is {} characters; the limit is {SCOPE_MAX}",
                    scope.chars().count()
                ),
            ));
        }
        if !scope_token(scope) {
            return Err(invalid(
                &format!("scopes[{index}]"),
                format!(
                    "{:?} is not a scope: printable ASCII without spaces, quotes or backslashes",
                    shorten(scope)
                ),
            ));
        }
        scopes.insert(scope.clone());
    }
    let client = match (input.client_id, input.client_secret) {
        (None, None) => None,
        _ if !oauth => {
            return Err(invalid(
                "clientId",
                format!(
                    "{} does not use OAuth 2.0; it takes no OAuth client",
                    app.label
                ),
            ))
        }
        (Some(_), None) => {
            return Err(invalid(
                "clientSecret",
                "clientSecret is required with clientId".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "clientId",
                "clientId is required with clientSecret".into(),
            ))
        }
        (Some(id), Some(secret)) => {
            let id = id.trim().to_string();
            if id.is_empty()
                || id.chars().count() > CLIENT_ID_MAX
                || id.chars().any(char::is_control)
            {
                return Err(invalid(
                    "clientId",
                    format!("clientId must be 1 to {CLIENT_ID_MAX} characters on one line"),
                ));
            }
            let length = secret.expose_secret().chars().count();
            if secret.expose_secret().trim().is_empty()
                || length > CLIENT_SECRET_MAX
                || secret.expose_secret().chars().any(char::is_control)
            {
                return Err(invalid(
                    "clientSecret",
                    format!("clientSecret must be 1 to {CLIENT_SECRET_MAX} characters on one line"),
                ));
            }
            Some(OAuthClient {
                client_id: id,
                client_secret: secret,
            })
        }
    };
    let modules = serde_json::to_string(&selection.to_keys())
        .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
    let scopes = serde_json::to_string(&scopes.into_iter().collect::<Vec<_>>())
        .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;

    if oauth {
        if let Some(field) = input.data.keys().next() {
            return Err(invalid(
                &format!("{}{}", input.data_prefix, shorten(field)),
                format!(
                    "{} connects with OAuth 2.0 and takes no field {:?}; consent happens at the provider",
                    app.label,
                    shorten(field)
                ),
            ));
        }
        let target = ConnectTarget {
            name: name.as_str().to_string(),
            app_key: app.key.clone(),
            app_version: i64::from(version.version),
            modules,
            scopes,
        };
        let purpose = FlowFor::NewConnection {
            team: input.team,
            target,
            client,
        };
        return Ok(Added::Redirect(
            consent::start(ctx, caller, app, version, purpose).await?,
        ));
    }

    let values: FieldValues = apps::parse_values(version, Some(input.data), input.data_prefix)?;
    if let Err(reason) = call::verify(&ctx.http, app, version, &values).await {
        return Err(invalid(
            "data",
            format!("the credentials were not accepted: {reason}"),
        ));
    }
    let mut tx = ctx.store.begin().await?;
    let id = connections::create(
        &mut tx,
        &ctx.vault,
        ConnectionSpec {
            organization,
            team: input.team,
            provided_by: caller.id,
            name: name.as_str(),
            app_key: &app.key,
            app_version: i64::from(version.version),
            auth_kind: version.auth.kind().as_str(),
            modules: &modules,
            scopes: &scopes,
            oauth_client_id: None,
        },
        &values,
    )
    .await?;
    audit_created(
        &mut tx,
        caller,
        organization,
        input.team,
        id,
        &app.key,
        name.as_str(),
    )
    .await?;
    let connection = tx
        .get_connection(id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("connection {id} vanished")))?;
    tx.commit().await?;
    Ok(Added::Connection(Box::new(connection)))
}

/// Renames a connection (`PATCH /connections/{id}`), audited.
pub async fn rename(
    ctx: &Context,
    caller: &User,
    id: i64,
    name: Option<&str>,
) -> Result<Connection> {
    let Some(raw) = name else {
        return Err(
            ValidationError::new("name", "name is required: the connection's new name").into(),
        );
    };
    let name = ConnectionName::parse("name", raw)?;
    let mut tx = ctx.store.begin().await?;
    let connection = manageable_connection(&mut tx, caller, id).await?;
    tx.rename_connection(id, name.as_str()).await?;
    audit::record(&mut tx, &Actor::user(caller), Event {
        organization: OrganizationId(connection.organization_id),
        team: Some(TeamId(connection.team_id)),
        name: "connection.renamed",
        target_kind: "connection",
        target_id: id.to_string(),
        details: json!({ "app": connection.app_key, "from": connection.name, "to": name.as_str() }),
    })
    .await?;
    let renamed = tx
        .get_connection(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("connection {id} not found")))?;
    tx.commit().await?;
    Ok(renamed)
}

/// Deletes a connection (`DELETE /connections/{id}?confirmed=true`): its
/// secret and row at once; credentials a recipient provided it for go back to
/// `pending` (the recipient is told, as by delete-remote); then, after the
/// commit, its grant is revoked at the provider. Without `confirmed` nothing
/// happens and the answer says what would.
pub async fn delete(ctx: &Context, caller: &User, id: i64, confirmed: bool) -> Result<()> {
    let mut tx = ctx.store.begin().await?;
    let connection = manageable_connection(&mut tx, caller, id).await?;
    if !confirmed {
        let used = tx.credentials_using_connection(id).await?.len();
        let from_requests = if used > 0 {
            format!(", and {used} requested credential(s) that use it go back to pending")
        } else {
            String::new()
        };
        let consumers = connections::recent_consumers(&mut tx, &[id]).await?;
        return Err(Error::Conflict(format!(
            "deleting connection {id} destroys its stored access{from_requests}{consumers}; repeat with confirmed=true"
        )));
    }
    let actor = Actor::user(caller);
    let moved = endings::credentials_of_deleted_connection(ctx, &mut tx, &actor, id).await?;
    let mut revocations = Revocations::default();
    endings::destroy(ctx, &mut tx, id, &mut revocations).await?;
    audit::record(&mut tx, &actor, Event {
        organization: OrganizationId(connection.organization_id),
        team: Some(TeamId(connection.team_id)),
        name: "connection.deleted",
        target_kind: "connection",
        target_id: id.to_string(),
        details: json!({ "app": connection.app_key, "name": connection.name, "credentials": moved }),
    })
    .await?;
    tx.commit().await?;
    // After the commit: a failure at the provider never keeps the secret alive.
    revocations.after_commit(ctx).await;
    Ok(())
}

/// OAuth connection `id` when `caller` may renew it in place: the checks of
/// [`reauthorize`] without starting a flow (the page that asks to confirm).
pub async fn renewable(ctx: &Context, caller: &User, id: i64) -> Result<Connection> {
    let mut db = ctx.store.db().await?;
    let connection = manageable_connection(&mut db, caller, id).await?;
    let (_, version) = apps::of_connection(ctx, &connection)?;
    if version.auth.kind() != AuthKind::Oauth2 {
        return Err(Error::Conflict(format!(
            "connection {id} does not use OAuth 2.0; there is no consent to renew"
        )));
    }
    if let Some(credential) = db.credentials_using_connection(id).await?.first() {
        return Err(Error::Conflict(format!(
            "connection {id} was provided by the recipient of request {}; ask them with \
             POST /api/v2/credential-requests/credentials/{}/request-reauthorize",
            credential.request_id, credential.id
        )));
    }
    // Only the person who gave the account renews it: anyone else would put
    // their own account in its place, and a link another site opens in a
    // signed-in browser could do so unasked.
    if connection.provided_by != Some(caller.id.0) {
        return Err(Error::Forbidden(format!(
            "only the person who added connection {id} may renew it; add a new connection instead"
        )));
    }
    Ok(connection)
}

/// Starts renewing OAuth connection `id` in place (`POST /oauth/reauth/{id}`
/// from our page, or a script's `GET` with its API token): answers the
/// provider's consent page. Its id, name and own client stay.
pub async fn reauthorize(ctx: &Context, caller: &User, id: i64) -> Result<String> {
    let connection = renewable(ctx, caller, id).await?;
    let (app, version) = apps::of_connection(ctx, &connection)?;
    consent::start(
        ctx,
        caller,
        app,
        version,
        FlowFor::Connection {
            connection: &connection,
        },
    )
    .await
}

/// A team's new connection came back from consent: it is created with the
/// sealed tokens (and its own client, if it brought one), audited; or nothing
/// is created and the reason shown.
pub async fn finish_new(
    ctx: &Context,
    caller: &User,
    team: TeamId,
    target: ConnectTarget,
    consented: Consented,
) -> Result<Finished> {
    let (organization, _) =
        require_connection_writer(&mut ctx.store.db().await?, caller, team).await?;
    let failed = |reason: String| Finished::Connection {
        id: None,
        name: target.name.clone(),
        failure: Some(reason),
    };
    // Gone from the catalog since the flow started: nothing to create or renew.
    let (app, version) = match apps::find(ctx, &target.app_key, target.app_version) {
        Ok(found) => found,
        Err(Error::Conflict(reason)) => return Ok(failed(reason)),
        Err(other) => return Err(other),
    };
    let oauth = apps::oauth2_of(version)?;
    let client = apps::client_for(ctx, app, consented.own_client.clone())?;
    let requested = apps::scope_list(&target.scopes);
    let (mut values, granted) = match consented
        .exchange(ctx, app, oauth, &client, &requested)
        .await
    {
        Ok(done) => done,
        Err(reason) => return Ok(failed(reason)),
    };
    if let Some(own) = &consented.own_client {
        values.keep_own_client(own);
    }
    let scopes =
        serde_json::to_string(&granted).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
    let mut tx = ctx.store.begin().await?;
    let id = connections::create(
        &mut tx,
        &ctx.vault,
        ConnectionSpec {
            organization,
            team,
            provided_by: caller.id,
            name: &target.name,
            app_key: &app.key,
            app_version: target.app_version,
            auth_kind: AuthKind::Oauth2.as_str(),
            modules: &target.modules,
            scopes: &scopes,
            oauth_client_id: consented.own_client.as_ref().map(|c| c.client_id.as_str()),
        },
        &values,
    )
    .await?;
    audit_created(
        &mut tx,
        caller,
        organization,
        team,
        id,
        &app.key,
        &target.name,
    )
    .await?;
    tx.commit().await?;
    Ok(Finished::Connection {
        id: Some(id),
        name: target.name,
        failure: None,
    })
}

/// A connection renewed in place came back from consent: its tokens are
/// replaced (its own client kept), its scopes are what was granted, and it is
/// valid again; on a refusal it stays as it was.
///
/// The old grant is not revoked at the provider: providers such as Google keep
/// one grant per user and client, so revoking the old token would revoke the
/// new one with it.
pub async fn finish_renewal(
    ctx: &Context,
    caller: &User,
    id: i64,
    consented: Consented,
) -> Result<Finished> {
    let connection = manageable_connection(&mut ctx.store.db().await?, caller, id).await?;
    let failed = |reason: String| Finished::Connection {
        id: Some(id),
        name: connection.name.clone(),
        failure: Some(reason),
    };
    // Gone from the catalog since the flow started: nothing to create or renew.
    let (app, version) = match apps::find(ctx, &connection.app_key, connection.app_version) {
        Ok(found) => found,
        Err(Error::Conflict(reason)) => return Ok(failed(reason)),
        Err(other) => return Err(other),
    };
    let oauth = apps::oauth2_of(version)?;
    let old = secrets::read_connection_values(&mut ctx.store.db().await?, &ctx.vault, &connection)
        .await?;
    let own = old.as_ref().and_then(FieldValues::own_client);
    let client = apps::client_for(ctx, app, own.clone())?;
    let requested = apps::scope_list(&connection.scopes);
    let (mut values, granted) = match consented
        .exchange(ctx, app, oauth, &client, &requested)
        .await
    {
        Ok(done) => done,
        Err(reason) => return Ok(failed(reason)),
    };
    if let Some(own) = &own {
        values.keep_own_client(own);
    }
    let new = values;
    let scopes =
        serde_json::to_string(&granted).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
    let mut tx = ctx.store.begin().await?;
    let Some(locked) = tx.lock_connection(id).await? else {
        return Err(Error::NotFound(format!("connection {id} not found")));
    };
    let Some(secret) = &locked.secret_id else {
        return Err(Error::Conflict(format!("connection {id} holds no secret")));
    };
    let sealed =
        secrets::seal_connection_values(&ctx.vault, locked.id, locked.team_id, secret, &new)?;
    tx.replace_secret(secret, sealed.as_str()).await?;
    tx.record_reauthorization(id, &scopes, new.expires_at())
        .await?;
    audit::record(
        &mut tx,
        &Actor::user(caller),
        Event {
            organization: OrganizationId(connection.organization_id),
            team: Some(TeamId(connection.team_id)),
            name: "connection.reauthorized",
            target_kind: "connection",
            target_id: id.to_string(),
            details: serde_json::json!({ "app": connection.app_key, "scopes": granted }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Finished::Connection {
        id: Some(id),
        name: connection.name,
        failure: None,
    })
}
