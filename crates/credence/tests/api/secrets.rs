//! Secrets at rest (SPEC §7) through the real store: sealed with a key-version
//! prefix, never in plain text in a column, bound to their row, and redacted in
//! every `Debug`.

use crate::on_both_backends;
use crate::support::spawn_app;
use credence::service::{self, secrets};
use credence_store::Backend;
use credence_vault::Vault;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

fn vault_of(app: &crate::support::TestApp) -> Arc<Vault> {
    Arc::new(Vault::open_or_create(&app.dir.path().join("credence.key")).unwrap())
}

async fn sealed_secrets_open_only_in_their_own_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let vault = vault_of(&app);
    let first_value = "sk_live_first-1234567890";
    let second_value = "sk_live_second-0987654321";
    let first = secrets::put_unowned(
        &app.store,
        &vault,
        "api-key",
        &SecretString::from(first_value),
    )
    .await
    .unwrap();
    let second = secrets::put_unowned(
        &app.store,
        &vault,
        "api-key",
        &SecretString::from(second_value),
    )
    .await
    .unwrap();

    let opened = secrets::open_unowned(&app.store, &vault, &first, "api-key")
        .await
        .unwrap();
    assert_eq!(opened.expose_secret(), first_value);
    let stored = app.db().await.get_secret(&first).await.unwrap().unwrap();
    assert!(
        stored.sealed.starts_with("cv1.k1."),
        "the key version prefixes the ciphertext: {}",
        stored.sealed
    );
    let dump = app.database_text().await;
    assert!(
        !dump.contains(first_value) && !dump.contains(second_value),
        "a secret is in a column in plain text"
    );

    // Read for another purpose: refused.
    assert!(matches!(
        secrets::open_unowned(&app.store, &vault, &first, "webhook").await,
        Err(service::Error::Internal(_))
    ));

    // Moved to another row: refused.
    app.sql().await.execute(&format!("UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE id = '{first}') WHERE id = '{second}'")).await;
    let moved = secrets::open_unowned(&app.store, &vault, &second, "api-key").await;
    assert!(
        matches!(moved, Err(service::Error::Internal(_))),
        "a ciphertext moved to another row opened"
    );

    // Tampered: one character of the payload changed.
    let tampered = {
        let mut chars: Vec<char> = stored.sealed.chars().collect();
        let last = chars.len() - 3;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    app.sql()
        .await
        .execute(&format!(
            "UPDATE secrets SET sealed = '{tampered}' WHERE id = '{first}'"
        ))
        .await;
    let error = secrets::open_unowned(&app.store, &vault, &first, "api-key")
        .await
        .unwrap_err();
    assert!(!error.to_string().contains(first_value));
    app.stop().await;
}

async fn rotation_rewraps_every_secret_and_both_versions_open_meanwhile(backend: Backend) {
    let app = spawn_app(backend).await;
    let vault = vault_of(&app);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            secrets::put_unowned(
                &app.store,
                &vault,
                "api-key",
                &SecretString::from(format!("value-{i}")),
            )
            .await
            .unwrap(),
        );
    }
    let version = credence_vault::rotate_key_file(&app.dir.path().join("credence.key")).unwrap();
    assert_eq!(version, 2);
    // The old vault has not seen the new key yet, and still opens everything.
    assert_eq!(
        secrets::open_unowned(&app.store, &vault, &ids[0], "api-key")
            .await
            .unwrap()
            .expose_secret(),
        "value-0"
    );
    vault.reload().unwrap();
    let report = secrets::renew_all(&app.store, &vault).await.unwrap();
    assert_eq!(report.columns[0].0, credence_store::SealedColumn::Secrets);
    assert_eq!(report.columns[0].1.rewrapped, 3);
    let again = secrets::renew_all(&app.store, &vault).await.unwrap();
    assert_eq!(
        (
            again.columns[0].1.rewrapped,
            again.columns[0].1.already_current
        ),
        (0, 3)
    );
    for (i, id) in ids.iter().enumerate() {
        let stored = app.db().await.get_secret(id).await.unwrap().unwrap();
        assert!(stored.sealed.starts_with("cv1.k2."), "{}", stored.sealed);
        let fresh = vault_of(&app);
        assert_eq!(
            secrets::open_unowned(&app.store, &fresh, id, "api-key")
                .await
                .unwrap()
                .expose_secret(),
            format!("value-{i}")
        );
    }
    app.stop().await;
}

#[test]
fn debug_of_every_secret_bearing_type_shows_no_secret() {
    let secret = "hunter2-super-secret-value";
    let vault = Vault::from_keys(vec![(1, [7u8; 32])]);
    let sealed = vault.seal(secret.as_bytes(), "ctx").unwrap();
    let opened = vault.open(&sealed, "ctx").unwrap();
    let password = credence_domain::NewPassword::parse("password", secret.to_string()).unwrap();
    let user = credence_store::User {
        id: credence_domain::UserId(1),
        email: "a@b.example".into(),
        name: "A".into(),
        password_hash: Some(format!("$argon2id$v=19$m=19456,t=2,p=1${secret}")),
        language: "en".into(),
        timezone: "UTC".into(),
        created_at: chrono::Utc::now(),
    };
    let shown = [
        format!("{:?}", SecretString::from(secret)),
        format!("{sealed:?}"),
        format!("{opened:?}"),
        format!("{password:?}"),
        format!("{user:?}"),
        format!("{vault:?}"),
        format!(
            "{:?}",
            credence::provider::FieldValues(
                [("access_token".to_string(), SecretString::from(secret))]
                    .into_iter()
                    .collect()
            )
        ),
    ];
    for text in shown {
        assert!(!text.contains(secret), "Debug leaked the secret: {text}");
        assert!(!text.contains("BwcHBwcH"), "Debug leaked key bytes: {text}");
    }
}

on_both_backends!(
    sealed_secrets_open_only_in_their_own_row,
    rotation_rewraps_every_secret_and_both_versions_open_meanwhile
);
