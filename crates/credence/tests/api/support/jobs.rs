//! The outbox side of the test client: a clock the test moves, more
//! instances of the same deployment, notifications written as a change
//! writes them, and what reached the local mailbox.

use super::app::TestApp;
use chrono::{DateTime, Utc};
use credence::jobs::{Jobs, Settings};
use credence::service::clock::Clock;
use credence_store::OutboxSelection;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A clock that moves only when the test moves it.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn starting_now() -> ManualClock {
        ManualClock(Arc::new(Mutex::new(credence_store::now())))
    }

    pub fn clock(&self) -> Clock {
        let at = self.0.clone();
        Clock::from_fn(move || *at.lock().unwrap())
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut at = self.0.lock().unwrap();
        *at += chrono::Duration::from_std(by).unwrap();
    }
}

/// Another running instance of `app`'s deployment (same database, key file
/// and configuration but for `adjust`), stopped by [`Instance::stop`].
pub struct Instance {
    /// `http://127.0.0.1:<port>`, where this instance listens.
    pub address: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Instance {
    pub async fn start(app: &TestApp, adjust: impl FnOnce(&mut credence::Config)) -> Instance {
        let mut config = app.config.clone();
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        adjust(&mut config);
        let instance = credence::Application::build(config)
            .await
            .expect("another instance starts");
        let address = format!("http://127.0.0.1:{}", instance.port());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(instance.run_until(async {
            let _ = stopped.await;
        }));
        Instance {
            address,
            shutdown,
            server,
        }
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.server
            .await
            .expect("instance task")
            .expect("instance stopped cleanly");
    }
}

/// A runner of `app`'s outbox driven by the test (`run_once`, `claim`,
/// `deliver`), with `settings`.
pub fn runner(app: &TestApp, settings: Settings) -> Jobs {
    Jobs::new(
        app.store.clone(),
        Arc::new(app.vault()),
        app.address.clone().into(),
        settings,
    )
    .expect("a runner")
}

impl TestApp {
    /// Writes `count` notifications of `kind`, `per_transaction` to a
    /// transaction, as changes write theirs (`audit::notify`); answers the
    /// recipients, `n<i>@clients.test`.
    pub async fn write_notifications(
        &self,
        kind: &str,
        count: usize,
        per_transaction: usize,
    ) -> Vec<String> {
        let vault = self.vault();
        let mut recipients = Vec::new();
        for chunk in (0..count)
            .collect::<Vec<_>>()
            .chunks(per_transaction.max(1))
        {
            let mut tx = self.store.begin().await.unwrap();
            for i in chunk {
                let to = format!("n{i}@clients.test");
                credence::service::audit::notify(
                    &mut tx,
                    &vault,
                    None,
                    kind,
                    &to,
                    serde_json::json!({
                        "requestId": format!("r{i}"),
                        "requestName": format!("Request {i}"),
                        "app": "acme",
                        "recipientEmail": to,
                    }),
                )
                .await
                .unwrap();
                recipients.push(to);
            }
            tx.commit().await.unwrap();
        }
        recipients
    }

    /// How many times each outbox message reached the local mailbox, by id.
    pub async fn mailbox_deliveries(&self) -> BTreeMap<i64, usize> {
        let entries = self
            .store
            .db()
            .await
            .unwrap()
            .list_mailbox(None, i64::MAX)
            .await
            .unwrap();
        let mut counts = BTreeMap::new();
        for entry in entries {
            *counts.entry(entry.outbox_id).or_insert(0) += 1;
        }
        counts
    }

    /// The outbox's messages (sent or not), oldest first.
    pub async fn outbox_jobs(&self, selection: OutboxSelection) -> Vec<credence_store::OutboxJob> {
        self.store
            .db()
            .await
            .unwrap()
            .list_outbox_jobs(selection, i64::MAX)
            .await
            .unwrap()
    }

    /// Waits until nothing in the outbox is left unsent.
    pub async fn wait_for_outbox_delivered(&self) {
        super::wait_until("every notification is delivered", || async {
            self.outbox_jobs(OutboxSelection::Unsent).await.is_empty()
        })
        .await;
    }
}

/// Settings for a runner that passes every 5 ms on `clock`.
pub fn fast(clock: Clock) -> Settings {
    Settings {
        every: Some(std::time::Duration::from_millis(5)),
        clock,
        ..Settings::default()
    }
}
