//! The outbox runner (`credence-jobs`): what a change writes is delivered once
//! by whichever instance claims it, never when the change rolled back, again
//! at most once after a worker died holding it, with backoff when delivery
//! fails, and dead-lettered (then retried by the operator) when it keeps failing.

use crate::on_both_backends;
use crate::support::{fast, runner, spawn_app_with, Instance, ManualClock};
use credence_store::{Backend, OutboxSelection};
use std::time::Duration;

/// How many notifications the three-instance test delivers: as many as stay
/// fast here (the issue asks 1,000; `CREDENCE_TEST_JOBS_N` changes it).
fn notifications() -> usize {
    std::env::var("CREDENCE_TEST_JOBS_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

async fn a_change_that_rolls_back_sends_nothing(backend: Backend) {
    let clock = ManualClock::starting_now();
    let settings = fast(clock.clock());
    let app = spawn_app_with(backend, |config| config.jobs = settings).await;
    let vault = app.vault();

    let mut rolled_back = app.store.begin().await.unwrap();
    credence::service::audit::notify(
        &mut rolled_back,
        &vault,
        None,
        "credential.authorized",
        "never@clients.test",
        serde_json::json!({ "requestName": "Rolled back", "app": "acme" }),
    )
    .await
    .unwrap();
    drop(rolled_back);
    app.write_notifications("credential.authorized", 1, 1).await;

    app.wait_for_outbox_delivered().await;
    let jobs = app.outbox_jobs(OutboxSelection::All).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].recipient_email, "n0@clients.test");
    assert_eq!(jobs[0].sent_via.as_deref(), Some("mailbox"));
    let deliveries = app.mailbox_deliveries().await;
    assert_eq!(deliveries.values().sum::<usize>(), 1, "{deliveries:?}");
    app.stop().await;
}

async fn three_instances_deliver_every_notification_exactly_once(backend: Backend) {
    let count = notifications();
    let clock = ManualClock::starting_now();
    let settings = fast(clock.clock());
    let app = spawn_app_with(backend, |config| config.jobs = settings.clone()).await;
    let second = Instance::start(&app, |_| {}).await;
    let third = Instance::start(&app, |_| {}).await;

    // Written while the three run, in transactions of a few, as changes do.
    app.write_notifications("credential.authorized", count, 7)
        .await;
    app.wait_for_outbox_delivered().await;

    let deliveries = app.mailbox_deliveries().await;
    let jobs = app.outbox_jobs(OutboxSelection::All).await;
    assert_eq!(jobs.len(), count);
    let lost: Vec<i64> = jobs
        .iter()
        .filter(|job| !deliveries.contains_key(&job.id))
        .map(|job| job.id)
        .collect();
    let duplicated: Vec<(&i64, &usize)> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        duplicated.is_empty(),
        "delivered more than once: {duplicated:?}"
    );
    assert_eq!(deliveries.len(), count);
    assert!(
        jobs.iter().all(|job| job.attempts == 1),
        "a message was claimed twice"
    );
    second.stop().await;
    third.stop().await;
    app.stop().await;
}

async fn a_worker_that_dies_between_send_and_mark_causes_one_resend(backend: Backend) {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(backend, |_| {}).await;
    app.write_notifications("credential.authorized", 1, 1).await;
    let settings = credence::jobs::Settings {
        every: None,
        ..fast(clock.clock())
    };

    // The worker claims and delivers, then dies before marking it sent.
    let dying = runner(&app, settings.clone());
    let claim = dying.claim().await.unwrap();
    assert_eq!(claim.jobs.len(), 1);
    let via = dying.deliver(&claim.jobs[0]).await.unwrap();
    assert_eq!(via, "mailbox");
    drop(dying);

    // While its lease lasts, nobody else takes the message.
    let survivor = runner(&app, settings.clone());
    clock.advance(settings.lease - Duration::from_secs(1));
    assert_eq!(survivor.run_once().await.unwrap().claimed, 0);

    // Once it ran out, the message is sent again, once.
    clock.advance(Duration::from_secs(2));
    let pass = survivor.run_once().await.unwrap();
    assert_eq!((pass.claimed, pass.sent), (1, 1), "{pass:?}");
    clock.advance(settings.lease * 2);
    assert_eq!(survivor.run_once().await.unwrap().claimed, 0);

    let deliveries = app.mailbox_deliveries().await;
    assert_eq!(deliveries.values().copied().collect::<Vec<_>>(), vec![2]);
    let job = &app.outbox_jobs(OutboxSelection::All).await[0];
    assert!(job.sent_at.is_some());
    assert_eq!(job.attempts, 2);
    app.stop().await;
}

/// A port nothing listens on: an SMTP server that is down.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn a_failing_delivery_backs_off_is_dead_lettered_and_retried_by_the_operator(
    backend: Backend,
) {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(backend, |_| {}).await;
    app.write_notifications("credential.authorized", 1, 1).await;
    let down = credence::jobs::Settings {
        every: None,
        max_attempts: 2,
        backoff_base: Duration::from_secs(60),
        mail: credence::jobs::MailSettings {
            smtp: Some(credence::jobs::SmtpSettings {
                host: "127.0.0.1".into(),
                port: closed_port(),
                security: credence::jobs::Security::None,
                user: None,
                password: None,
                ca_file: None,
            }),
            ..Default::default()
        },
        ..fast(clock.clock())
    };
    let failing = runner(&app, down);

    let pass = failing.run_once().await.unwrap();
    assert_eq!((pass.claimed, pass.retried), (1, 1), "{pass:?}");
    let job = app.outbox_jobs(OutboxSelection::Unsent).await.remove(0);
    let wait = job.next_attempt_at.expect("a next attempt") - clock.now();
    assert!(
        wait >= chrono::Duration::seconds(30) && wait <= chrono::Duration::seconds(60),
        "first backoff {wait}"
    );
    assert!(
        job.last_error.as_deref().unwrap_or("").contains("SMTP"),
        "{job:?}"
    );
    assert!(job.lease_until.is_none());

    // Not due before its time; then the second failure is the last.
    assert_eq!(failing.run_once().await.unwrap().claimed, 0);
    clock.advance(Duration::from_secs(61));
    let pass = failing.run_once().await.unwrap();
    assert_eq!((pass.claimed, pass.dead_lettered), (1, 1), "{pass:?}");
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(failing.run_once().await.unwrap().claimed, 0);

    let (ok, listed, stderr) = app.operator(&["jobs", "list", "--dead"]).await;
    assert!(ok, "{stderr}");
    assert!(
        listed.contains(&format!(
            "{} dead credential.authorized to n0@clients.test attempts 2",
            job.id
        )),
        "{listed}"
    );
    assert!(listed.contains("last error: the SMTP server"), "{listed}");

    let (ok, retried, stderr) = app.operator(&["jobs", "retry", &job.id.to_string()]).await;
    assert!(ok, "{stderr}");
    assert!(retried.contains("will be sent again"), "{retried}");
    let (ok, _, stderr) = app.operator(&["jobs", "retry", "999999"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("there is no outbox message 999999"),
        "{stderr}"
    );

    // With the mail going to the local mailbox now, the retry is delivered.
    let working = runner(
        &app,
        credence::jobs::Settings {
            every: None,
            ..fast(clock.clock())
        },
    );
    assert_eq!(working.run_once().await.unwrap().sent, 1);
    let (ok, _, stderr) = app.operator(&["jobs", "retry", &job.id.to_string()]).await;
    assert!(!ok);
    assert!(stderr.contains("was sent already"), "{stderr}");
    let (ok, listed, _) = app.operator(&["jobs", "list"]).await;
    assert!(ok);
    assert!(listed.contains("no notifications to show"), "{listed}");
    app.stop().await;
}

async fn a_notification_without_a_template_is_dead_lettered_at_once(backend: Backend) {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(backend, |_| {}).await;
    app.write_notifications("nobody.knows_this", 1, 1).await;
    let jobs = runner(
        &app,
        credence::jobs::Settings {
            every: None,
            ..fast(clock.clock())
        },
    );
    let pass = jobs.run_once().await.unwrap();
    assert_eq!(pass.dead_lettered, 1, "{pass:?}");
    let dead = app.outbox_jobs(OutboxSelection::DeadLettered).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("no email template"),
        "{dead:?}"
    );
    app.stop().await;
}

async fn a_message_whose_lease_cannot_cover_its_delivery_is_given_back_untried(backend: Backend) {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(backend, |_| {}).await;
    app.write_notifications("credential.authorized", 3, 3).await;
    let cramped = runner(
        &app,
        credence::jobs::Settings {
            every: None,
            lease: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(30),
            ..fast(clock.clock())
        },
    );
    let pass = cramped.run_once().await.unwrap();
    assert_eq!(
        (pass.claimed, pass.released, pass.sent),
        (3, 3, 0),
        "{pass:?}"
    );
    for job in app.outbox_jobs(OutboxSelection::Unsent).await {
        assert_eq!((job.attempts, job.lease_until), (0, None), "{job:?}");
    }
    let roomy = runner(
        &app,
        credence::jobs::Settings {
            every: None,
            ..fast(clock.clock())
        },
    );
    assert_eq!(roomy.drain().await.unwrap().sent, 3);
    assert_eq!(app.mailbox_deliveries().await.len(), 3);
    app.stop().await;
}

on_both_backends!(
    a_message_whose_lease_cannot_cover_its_delivery_is_given_back_untried,
    a_change_that_rolls_back_sends_nothing,
    three_instances_deliver_every_notification_exactly_once,
    a_worker_that_dies_between_send_and_mark_causes_one_resend,
    a_failing_delivery_backs_off_is_dead_lettered_and_retried_by_the_operator,
    a_notification_without_a_template_is_dead_lettered_at_once,
);
