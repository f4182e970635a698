//! The broker's checks, in order, before anything is sent: the caller may use
//! the connection (its team, or an owner or admin of the organization;
//! otherwise a 404 that says nothing), the connection and the credential
//! behind it are usable (a 409 naming the state), the path is one the broker
//! forwards at all (a 400 naming why), and the method and path match an
//! operation of a granted module (a 403 naming the method, the path and the
//! modules granted). No HTTP types here.
//!
//! Everything is read from the database on every call — no cache — in one
//! query (connection, roles, credential states and sealed secret joined), so
//! a revocation, a decline, a delete-remote or a deletion on any instance
//! stops the very next call on every instance.

use credence_catalog::{App, AppVersion, ModuleSelection};
use credence_service::{access, apps, Context, Error};
use credence_store::{Connection, User};

/// What a call may do once the checks passed.
pub struct Permit<'a> {
    pub connection: Connection,
    /// The requested credential the connection was authorized for; `None`
    /// for a connection the team added itself.
    pub credential_id: Option<String>,
    /// The connection's sealed secret as the checks read it: opened for the
    /// first send unless a refresh wrote new tokens first.
    pub sealed: Option<String>,
    pub app: &'a App,
    pub version: &'a AppVersion,
    /// The matched operation's path pattern: what usage records.
    pub path_template: String,
}

/// Why a call was refused after the caller was found allowed to use the
/// connection; the connection is known, so the refusal is recorded as usage.
pub struct Refusal {
    /// Boxed: a refusal travels in `Err`, which should stay small.
    pub connection: Box<Connection>,
    pub credential_id: Option<String>,
    pub error: Error,
}

/// What [`usable`] read and passed: the connection, its credential, and the
/// sealed secret read in the same query (opened just before the call).
pub struct Usable {
    pub connection: Connection,
    pub credential_id: Option<String>,
    pub sealed: Option<String>,
}

/// The checks before a connection is touched: who, which state, from one
/// query (`access::connection_for_call`). `Err(Ok(_))` is a refusal to
/// record; `Err(Err(_))` a 404 or a fault (nothing recorded: the caller may
/// not know the connection exists).
pub async fn usable(
    ctx: &Context,
    caller: &User,
    id: i64,
) -> Result<Usable, Result<Refusal, Error>> {
    let mut db = ctx.store.db().await.map_err(|e| Err(e.into()))?;
    let found = access::connection_for_call(&mut db, caller, id)
        .await
        .map_err(Err)?;
    drop(db);
    let connection = found.connection;
    let credential_id = found.credentials.first().map(|(id, _)| id.to_string());
    let refuse = |error: Error| {
        Err(Ok(Refusal {
            connection: Box::new(connection.clone()),
            credential_id: credential_id.clone(),
            error,
        }))
    };
    if let Some((credential, state)) = found
        .credentials
        .iter()
        .find(|(_, state)| !state.is_usable())
    {
        return refuse(Error::Conflict(format!(
            "connection {id} cannot be used: its credential {credential} is {state}; it must be authorized"
        )));
    }
    if connection.state != "valid" {
        return refuse(Error::Conflict(format!(
            "connection {id} cannot be used: it is {}; it needs a new authorization",
            connection.state
        )));
    }
    if connection.secret_id.is_none() || found.sealed.is_none() {
        return refuse(Error::Conflict(format!(
            "connection {id} cannot be used: it holds no credentials"
        )));
    }
    Ok(Usable {
        connection,
        credential_id,
        sealed: found.sealed,
    })
}

/// The operation checks, once [`usable`] passed: the path is forwardable and
/// matches an operation of a granted module. A connection the team added
/// itself may use every module of its app version.
pub fn operation<'a>(
    ctx: &'a Context,
    usable: Usable,
    method: &str,
    path: &str,
) -> Result<Permit<'a>, Refusal> {
    let Usable {
        connection,
        credential_id,
        sealed,
    } = usable;
    let refuse = |connection: Connection, credential_id: Option<String>, error: Error| Refusal {
        connection: Box::new(connection),
        credential_id,
        error,
    };
    let (app, version) = match apps::of_connection(ctx, &connection) {
        Ok(found) => found,
        Err(error) => return Err(refuse(connection, credential_id, error)),
    };
    if let Err(why) = forwardable(path) {
        return Err(refuse(
            connection,
            credential_id,
            Error::Invalid(vec![credence_domain::ValidationError::new("path", why)]),
        ));
    }
    let selection = if credential_id.is_none() {
        ModuleSelection::All
    } else {
        granted(&connection)
    };
    match version.matching_operation(&selection, method, path) {
        Some((_, operation)) => Ok(Permit {
            path_template: operation.path.as_str().to_string(),
            connection,
            credential_id,
            sealed,
            app,
            version,
        }),
        None => {
            let modules = match &selection {
                ModuleSelection::All => format!(
                    "all modules of {} ({})",
                    app.label,
                    version
                        .modules
                        .iter()
                        .map(|module| module.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                ModuleSelection::Only(keys) => keys.iter().cloned().collect::<Vec<_>>().join(", "),
            };
            let error = Error::Forbidden(format!(
                "{method} {} is not an operation of the modules granted to connection {} ({modules}); ask for a module that includes it",
                shorten(path),
                connection.id
            ));
            Err(refuse(connection, credential_id, error))
        }
    }
}

/// The modules granted to a connection, as stored (`["*"]` or keys).
fn granted(connection: &Connection) -> ModuleSelection {
    let keys: Vec<String> = serde_json::from_str(&connection.modules).unwrap_or_default();
    if keys.iter().any(|key| key == "*") {
        ModuleSelection::All
    } else {
        ModuleSelection::Only(keys.into_iter().collect())
    }
}

/// Whether the broker forwards `path` at all, whatever the operations: one
/// leading `/`, no absolute URL, no dot segment, no encoded slash or
/// backslash, visible ASCII only. (Operation matching refuses these too; this
/// names the reason.)
pub fn forwardable(path: &str) -> Result<(), String> {
    let shown = shorten(path);
    if path.len() > 2048 {
        return Err(format!(
            "the path is {} characters; the limit is 2048",
            path.len()
        ));
    }
    if !path.starts_with('/') || path.starts_with("//") || path.contains("://") {
        return Err(format!(
            "{shown} is not a path on the app's host; send a path that starts with one /, never a URL"
        ));
    }
    if !path.bytes().all(|byte| (0x21..=0x7e).contains(&byte)) || path.contains('\\') {
        return Err(format!(
            "{shown} holds a character the broker does not forward (spaces, backslashes, non-ASCII); percent-encode it"
        ));
    }
    let lowered = path.to_ascii_lowercase();
    if lowered.contains("%2f") || lowered.contains("%5c") {
        return Err(format!(
            "{shown} holds an encoded slash or backslash; the broker does not forward those"
        ));
    }
    let dots = path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        let before_parameters = decoded.split(';').next().unwrap_or_default().to_string();
        decoded == "." || decoded == ".." || before_parameters == "." || before_parameters == ".."
    });
    if dots {
        return Err(format!(
            "{shown} has a . or .. segment; the broker does not forward those"
        ));
    }
    Ok(())
}

/// At most 100 characters of a path, for messages.
pub fn shorten(text: &str) -> String {
    let short: String = text.chars().take(100).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_forwarded() {
        assert!(forwardable("/v1/contacts/42").is_ok());
        assert!(forwardable("/v1/files/report..pdf").is_ok());
        for path in [
            "v1/contacts",
            "//evil.example/x",
            "/https://evil.example/x",
            "/v1/../admin",
            "/v1/%2e%2E/admin",
            "/v1/..;/admin",
            "/v1/./x",
            "/v1/a%2Fb",
            "/v1/a%5cb",
            "/v1/a\\b",
            "/v1/a b",
            "/v1/é",
        ] {
            assert!(forwardable(path).is_err(), "{path} must not be forwarded");
        }
        let long = format!("/{}", "a".repeat(3000));
        assert!(forwardable(&long)
            .unwrap_err()
            .contains("the limit is 2048"));
    }
}
