//! SQLite's write-ahead log is checkpointed by the server in the background,
//! not by the commit of a request that crosses a size (the pool's connections
//! run with `wal_autocheckpoint=0`): once the database is idle the log is
//! copied and emptied. PostgreSQL checkpoints by itself, and the store has no
//! checkpointer there.

use crate::on_both_backends;
use crate::support::{spawn_app_with, wait_until};
use credence_store::Backend;
use reqwest::StatusCode;

/// The size of the SQLite write-ahead log, in bytes (none: 0).
fn wal_bytes(app: &crate::support::TestApp) -> u64 {
    std::fs::metadata(app.dir.path().join("test.db-wal")).map_or(0, |m| m.len())
}

async fn the_write_ahead_log_is_checkpointed_in_the_background(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.wal_checkpoint_every = std::time::Duration::from_millis(50);
    })
    .await;
    let checkpointer = app.store.checkpointer().await.unwrap();
    if backend == Backend::Postgres {
        assert!(checkpointer.is_none(), "PostgreSQL checkpoints by itself");
        app.stop().await;
        return;
    }
    drop(checkpointer);
    // The migrations and the bootstrap wrote the log; nothing else writes now.
    wait_until("the log left by the start is emptied", || async {
        wal_bytes(&app) == 0
    })
    .await;
    for round in 0..3 {
        let token = app.token(app.admin_id().await, "user:read").await;
        let (status, _) = app.get_json("/api/v2/users/me", &token).await;
        assert_eq!(status, StatusCode::OK);
        wait_until(&format!("the log of round {round} is emptied"), || async {
            wal_bytes(&app) == 0
        })
        .await;
    }
    app.stop().await;
}

on_both_backends!(the_write_ahead_log_is_checkpointed_in_the_background);
