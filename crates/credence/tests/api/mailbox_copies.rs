//! Regression: "CC not in local mailbox" (issue 10). Without SMTP, an
//! escalation copied to the request's owner and the team's sponsor went to
//! the local mailbox under its recipient only: `credence mail list --to
//! <owner>` did not find the owner's copy. Each copied address now finds it,
//! and `mail show` prints the `Cc`.

use crate::on_both_backends;
use crate::support::{fast, runner, Agency, ManualClock};
use credence::jobs::reminders::{Reminders, Settings};
use credence_store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

async fn an_escalation_in_the_local_mailbox_is_listed_for_everyone_it_copies(backend: Backend) {
    let agency = Agency::start(backend).await;
    let clock = ManualClock::starting_now();
    let (status, body) = agency
        .app
        .send(
            Method::PUT,
            &format!(
                "/api/v2/credential-requests/teams/{}/reminder-policy",
                agency.app.team
            ),
            &agency.admin_token,
            Some(json!({ "sponsorCc": "Sponsor@Agency.example" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let scan = Reminders::new(
        agency.app.context.clone(),
        Settings {
            every: None,
            clock: clock.clock(),
            ..Settings::default()
        },
    );
    // 24 h: the friendly reminder (copied to nobody); 72 h: the escalation.
    clock.advance(Duration::from_secs(24 * 3600 + 60));
    assert_eq!(scan.scan().await.unwrap().reminded, 1);
    clock.advance(Duration::from_secs(48 * 3600));
    assert_eq!(scan.scan().await.unwrap().escalated, 1);
    let mut settings = fast(clock.clock());
    settings.every = None;
    runner(&agency.app, settings).drain().await.unwrap();

    let listed = |to: &str| {
        let to = to.to_string();
        let app = &agency.app;
        async move {
            let (ok, out, err) = app.operator(&["mail", "list", "--to", &to]).await;
            assert!(ok, "{err}");
            out
        }
    };
    let escalation_line = |out: &str| {
        out.lines()
            .find(|line| line.contains(" (cc "))
            .map(str::to_string)
    };
    // The recipient: both reminders, the escalation with its copies named.
    let recipient = listed(&agency.teammate.email).await;
    let line = escalation_line(&recipient).unwrap_or_else(|| panic!("{recipient}"));
    assert!(
        line.contains(&agency.requester.email) && line.contains("Sponsor@Agency.example"),
        "{line}"
    );
    // The owner and the sponsor find the escalation, and only it of the
    // reminders (the friendly one copied nobody).
    for copied in [agency.requester.email.as_str(), "SPONSOR@agency.example"] {
        let out = listed(copied).await;
        let found = escalation_line(&out).unwrap_or_else(|| panic!("{copied}: {out}"));
        assert_eq!(found, line, "{copied}");
        assert_eq!(
            out.lines()
                .filter(|l| l.contains(&format!("to {}", agency.teammate.email)))
                .count(),
            1,
            "{copied}: {out}"
        );
    }
    // Someone else, or an address that only looks like one copied, finds nothing.
    for other in ["sponsor@agency.exampl", "sponsor_agency.example", "%"] {
        let out = listed(other).await;
        assert!(escalation_line(&out).is_none(), "{other}: {out}");
    }
    let id = line.split_whitespace().next().unwrap().to_string();
    let (ok, shown, err) = agency.app.operator(&["mail", "show", &id]).await;
    assert!(ok, "{err}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("Cc: ") && l.contains(&agency.requester.email)),
        "{shown}"
    );
    agency.app.stop().await;
}

on_both_backends!(an_escalation_in_the_local_mailbox_is_listed_for_everyone_it_copies,);
