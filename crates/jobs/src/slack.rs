//! Reminders posted to a team's Slack incoming webhook: outbox messages of
//! kind `slack.<email kind>`, whose sealed payload holds the webhook URL
//! (it acts as a key to the channel) beside what the email would say. The
//! message is the email's subject and text, sent as `{"text": …}` in a JSON
//! POST.
//!
//! **Invariant:** the POST goes through the checked client of
//! `credence_provider::destination` (a resolver that refuses private,
//! loopback and link-local addresses on the very addresses it connects to,
//! no redirects, no proxy, bounded time), and only over https to a host that
//! is not a private literal — unless the operator allows private hosts
//! (`reminders_allow_private_hosts`). The URL is never logged nor kept in
//! `last_error`.

use crate::mail::Email;
use crate::Failure;
use credence_provider::destination::{is_private, system_lookup, CheckedResolver, PrivateHosts};
use std::sync::Arc;

/// The prefix of the outbox kinds delivered to Slack.
pub const PREFIX: &str = "slack.";

/// The client Slack messages go through.
#[derive(Clone)]
pub(crate) struct Slack {
    client: reqwest::Client,
    allow_private_hosts: bool,
}

impl Slack {
    pub(crate) fn new(allow_private_hosts: bool) -> anyhow::Result<Slack> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(20))
            .user_agent(concat!("Credence/", env!("CARGO_PKG_VERSION")));
        if !allow_private_hosts {
            builder = builder.dns_resolver(Arc::new(CheckedResolver {
                lookup: system_lookup(),
                private_hosts: Arc::new(PrivateHosts::default()),
            }));
        }
        Ok(Slack {
            client: builder.build()?,
            allow_private_hosts,
        })
    }

    /// Posts `email` (subject and text) to the webhook `url`.
    pub(crate) async fn send(
        &self,
        id: i64,
        url: &str,
        email: &Email,
    ) -> Result<&'static str, Failure> {
        let url = reqwest::Url::parse(url).map_err(|_| {
            Failure::Permanent(format!(
                "the Slack webhook of outbox message {id} is not a URL"
            ))
        })?;
        if !self.allow_private_hosts {
            if url.scheme() != "https" {
                return Err(Failure::Permanent(format!(
                    "the Slack webhook of outbox message {id} is not https"
                )));
            }
            let host = url.host_str().unwrap_or_default();
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            if literal.parse().is_ok_and(is_private) {
                return Err(Failure::Permanent(format!(
                    "the Slack webhook of outbox message {id} is a private address"
                )));
            }
        }
        let text = format!(
            "*{}*\n{}",
            email.subject,
            email
                .text
                .trim_end()
                .trim_end_matches("-- \nCredence")
                .trim_end()
        );
        let answer = self
            .client
            .post(url)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => Ok("slack"),
            Ok(answer) if answer.status().as_u16() == 429 || answer.status().is_server_error() => {
                Err(Failure::Transient(format!(
                    "the Slack webhook answered {}",
                    answer.status().as_u16()
                )))
            }
            Ok(answer) => Err(Failure::Permanent(format!(
                "the Slack webhook refused the message: {}",
                answer.status().as_u16()
            ))),
            Err(error) if credence_provider::destination::private_address_in(&error).is_some() => {
                Err(Failure::Permanent(format!(
                    "the Slack webhook of outbox message {id} resolves to a private address"
                )))
            }
            // The error's text may hold the URL: only its kind is kept.
            Err(error) if error.is_timeout() => Err(Failure::Transient(
                "the Slack webhook did not answer in time".into(),
            )),
            Err(_) => Err(Failure::Transient(
                "the Slack webhook could not be reached".into(),
            )),
        }
    }
}
