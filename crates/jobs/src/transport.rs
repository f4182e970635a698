//! How a rendered email leaves: over SMTP (lettre, rustls), or into the local
//! mailbox when no SMTP server is configured. The mailbox is delivered to
//! like a server is — a row first, the mark after — so the runner treats both
//! alike.

use crate::mail::Email;
use crate::{Failure, MailSettings};
use credence_store::{OutboxJob, Store};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a server on the same host or network.
    None,
}

impl std::str::FromStr for Security {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "starttls" => Ok(Security::Starttls),
            "tls" => Ok(Security::Tls),
            "none" => Ok(Security::None),
            other => Err(format!(
                "smtp security {other:?} is not one of starttls, tls, none"
            )),
        }
    }
}

/// The SMTP server mail is sent through.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// A PEM file of the certificate authority that signed the server's
    /// certificate, trusted besides the public ones (a relay with a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Clone)]
pub(crate) enum Transport {
    Smtp {
        mailer: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Mailbox,
}

impl Transport {
    pub(crate) fn new(settings: &MailSettings) -> anyhow::Result<Transport> {
        let Some(smtp) = &settings.smtp else {
            return Ok(Transport::Mailbox);
        };
        let from: Mailbox = settings.from.parse().map_err(|_| {
            anyhow::anyhow!(
                "mail from {:?} is not an address such as \"Credence <credence@example.com>\"",
                settings.from
            )
        })?;
        let tls = || -> anyhow::Result<TlsParameters> {
            let mut builder = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &smtp.ca_file {
                let pem = std::fs::read(path).map_err(|error| {
                    anyhow::anyhow!("cannot read the smtp ca_file {}: {error}", path.display())
                })?;
                let certificate = Certificate::from_pem(&pem).map_err(|_| {
                    anyhow::anyhow!(
                        "the smtp ca_file {} is not a PEM certificate",
                        path.display()
                    )
                })?;
                builder = builder.add_root_certificate(certificate);
            }
            Ok(builder.build_rustls()?)
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(std::time::Duration::from_secs(30)));
        builder = match smtp.security {
            Security::Starttls => builder.tls(Tls::Required(tls()?)),
            Security::Tls => builder.tls(Tls::Wrapper(tls()?)),
            Security::None => builder.tls(Tls::None),
        };
        if let Some(user) = &smtp.user {
            let password = smtp
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_string())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Transport::Smtp {
            mailer: builder.build(),
            from,
        })
    }

    pub(crate) async fn send(
        &self,
        store: &Store,
        job: &OutboxJob,
        email: &Email,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<&'static str, Failure> {
        match self {
            Transport::Mailbox => {
                let mut db = store
                    .db()
                    .await
                    .map_err(|_| Failure::Transient("the database is unavailable".into()))?;
                db.insert_mailbox(job.id, now, &email.cc)
                    .await
                    .map_err(|_| {
                        Failure::Transient("could not write to the local mailbox".into())
                    })?;
                Ok("mailbox")
            }
            Transport::Smtp { mailer, from } => {
                let to: Mailbox = job.recipient_email.parse().map_err(|_| {
                    Failure::Permanent(format!(
                        "recipient of outbox message {} is not an email address",
                        job.id
                    ))
                })?;
                let mut builder = Message::builder().from(from.clone()).to(to);
                for address in &email.cc {
                    let copied: Mailbox = address.parse().map_err(|_| {
                        Failure::Permanent(format!(
                            "a copied address of outbox message {} is not an email address",
                            job.id
                        ))
                    })?;
                    builder = builder.cc(copied);
                }
                let message = builder
                    // One id per outbox row: a resend after a crash carries the
                    // same id, so receivers can tell it is the same message.
                    .message_id(Some(format!("<outbox-{}@{}>", job.id, from.email.domain())))
                    .subject(email.subject.clone())
                    .multipart(MultiPart::alternative_plain_html(
                        email.text.clone(),
                        email.html.clone(),
                    ))
                    .map_err(|error| {
                        Failure::Permanent(format!(
                            "outbox message {} cannot be built: {error}",
                            job.id
                        ))
                    })?;
                match mailer.send(message).await {
                    Ok(_) => Ok("smtp"),
                    Err(error) if refuses_the_message(&error) => Err(Failure::Permanent(format!(
                        "the SMTP server refused the message: {}",
                        first_line(&error.to_string())
                    ))),
                    Err(error) => Err(Failure::Transient(format!(
                        "the SMTP server did not take the message: {}",
                        first_line(&error.to_string())
                    ))),
                }
            }
        }
    }
}

/// Whether the server refused this message for good (a 5xx about the
/// recipient or the content), rather than refusing Credence itself: a
/// rejected login (530, 534, 535, 538) is the operator's to fix, and every
/// message waits for it rather than being dead-lettered.
fn refuses_the_message(error: &lettre::transport::smtp::Error) -> bool {
    let code = error.status().map(u16::from);
    error.is_permanent() && !matches!(code, Some(530 | 534 | 535 | 538))
}

/// An error's first line, bounded: what a server answers is kept as the
/// message's last error, and must stay short.
fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_from_that_is_not_an_address_is_refused_at_start() {
        let settings = MailSettings {
            from: "Credence".into(),
            smtp: Some(SmtpSettings {
                host: "smtp.example.com".into(),
                port: 587,
                security: Security::Starttls,
                user: None,
                password: None,
                ca_file: None,
            }),
            templates_dir: None,
        };
        let error = Transport::new(&settings)
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("mail from \"Credence\""), "{error}");
        assert_eq!("STARTTLS".parse::<Security>(), Ok(Security::Starttls));
        assert!("ssl"
            .parse::<Security>()
            .unwrap_err()
            .contains("starttls, tls, none"));
    }
}
