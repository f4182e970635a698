//! `credence jobs` (the outbox: what is waiting, retrying or dead-lettered;
//! retry one) and `credence mail` (the local mailbox, where mail stays when no
//! SMTP server is configured).

use crate::config::Config;
use crate::startup::{open_store, open_vault};
use credence_store::OutboxSelection;

#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// List the notifications not sent yet (waiting, retrying, dead), oldest first.
    List {
        /// Only the dead-lettered ones.
        #[arg(long, conflicts_with = "all")]
        dead: bool,
        /// Sent ones too.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Send a notification again: due at once, with a fresh count of attempts.
    Retry {
        /// The id `credence jobs list` shows.
        id: i64,
    },
}

#[derive(clap::Subcommand)]
pub enum MailCommand {
    /// The emails of the local mailbox, newest first.
    List {
        /// Only those to this address.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One email of the local mailbox: its headers and text (or HTML).
    Show {
        /// The id `credence mail list` shows.
        id: i64,
        /// Print the HTML body instead of the text.
        #[arg(long)]
        html: bool,
    },
}

fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

pub async fn jobs(command: JobsCommand, config: &Config) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    match command {
        JobsCommand::List { dead, all, limit } => {
            let selection = if dead {
                OutboxSelection::DeadLettered
            } else if all {
                OutboxSelection::All
            } else {
                OutboxSelection::Unsent
            };
            let jobs = credence_jobs::list(&store, selection, limit).await?;
            if jobs.is_empty() {
                println!("no notifications to show");
            }
            for view in jobs {
                let job = &view.job;
                println!(
                    "{} {} {} to {} attempts {} created {} next {} {}",
                    job.id,
                    view.state,
                    job.kind,
                    job.recipient_email,
                    job.attempts,
                    time(Some(job.created_at)),
                    time(job.next_attempt_at),
                    match (&job.sent_at, &job.last_error) {
                        (Some(at), _) => format!(
                            "sent {} via {}",
                            time(Some(*at)),
                            job.sent_via.as_deref().unwrap_or("?")
                        ),
                        (None, Some(error)) => format!("last error: {error}"),
                        (None, None) => String::new(),
                    }
                );
            }
            Ok(())
        }
        JobsCommand::Retry { id } => {
            let job = credence_jobs::retry(&store, id).await?;
            println!(
                "notification {} ({} to {}) will be sent again at the next pass",
                job.id, job.kind, job.recipient_email
            );
            Ok(())
        }
    }
}

pub async fn mail(command: MailCommand, config: &Config) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let vault = open_vault(config)?;
    let public_url = config.public_url(config.listen);
    let templates = credence_jobs::Templates::load(config.jobs.mail.templates_dir.as_deref())?;
    match command {
        MailCommand::List { to, limit } => {
            let emails = credence_jobs::mailbox(
                &store,
                &vault,
                &templates,
                &public_url,
                to.as_deref(),
                limit,
            )
            .await?;
            if emails.is_empty() {
                println!("the local mailbox is empty");
            }
            for delivered in emails {
                let copied = if delivered.email.cc.is_empty() {
                    String::new()
                } else {
                    format!(" (cc {})", delivered.email.cc.join(", "))
                };
                println!(
                    "{} {} to {}{copied}: {}",
                    delivered.entry.id,
                    time(Some(delivered.entry.delivered_at)),
                    delivered.entry.recipient_email,
                    delivered.email.subject
                );
            }
            Ok(())
        }
        MailCommand::Show { id, html } => {
            let delivered =
                credence_jobs::mailbox_email(&store, &vault, &templates, &public_url, id).await?;
            println!("From: {}", config.jobs.mail.from);
            println!("To: {}", delivered.entry.recipient_email);
            if !delivered.email.cc.is_empty() {
                println!("Cc: {}", delivered.email.cc.join(", "));
            }
            println!("Date: {}", time(Some(delivered.entry.delivered_at)));
            println!("Subject: {}", delivered.email.subject);
            println!();
            if html {
                println!("{}", delivered.email.html);
            } else {
                print!("{}", delivered.email.text);
            }
            Ok(())
        }
    }
}
