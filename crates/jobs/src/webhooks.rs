//! Delivering webhook messages (SPEC §10), signed per Standard Webhooks.
//!
//! `audit::record` queues one delivery per endpoint that wants an event, in
//! the change's transaction (`service::webhook_events`). Each pass claims due
//! deliveries under a lease (`Db::claim_webhook_deliveries`, the outbox's
//! scheme), signs each body — `webhook-id`, `webhook-timestamp` (Unix
//! seconds) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">` per signing secret, space-separated while a
//! rotation overlaps — and POSTs it with the checked client
//! (`credence_provider::destination::webhook_client`: no redirect, no proxy,
//! no private address unless the operator allows them). A 2xx answer
//! delivers it; anything else is retried after [`SCHEDULE`] (about 27½ hours
//! in all), then given up. An endpoint whose deliveries have all failed for
//! [`WebhookSettings::disable_after`] (3 days) is disabled and its owners are
//! emailed (`service::webhooks::disable_failing`).
//!
//! Every time is read from [`Settings::clock`](crate::Settings::clock), so
//! tests move it instead of waiting. The delivery log keeps the status, the
//! latency, the attempts and at most [`EXCERPT_LIMIT`] bytes of the answer,
//! with the endpoint's secrets blanked out; never a secret or a header.

use crate::Jobs;
use base64::Engine;
use chrono::{DateTime, Utc};
use credence_store::{WebhookAttempt, WebhookDelivery, WebhookEndpoint};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, Instant};

/// The waits before the 2nd, 3rd, … attempt (Standard Webhooks' suggested
/// schedule): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — eight attempts over
/// 27 h 35 min 5 s.
pub const SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The most bytes of an endpoint's answer the delivery log keeps.
pub const EXCERPT_LIMIT: usize = 1024;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Whether endpoints may be on private, loopback or link-local
    /// addresses, and reached over plain http (`webhooks_allow_private_hosts`;
    /// off by default).
    pub allow_private_hosts: bool,
    /// The longest one delivery may take.
    pub timeout: Duration,
    /// The waits between attempts; past its end a delivery is given up.
    pub schedule: Vec<Duration>,
    /// How long an endpoint may fail without one success before it is disabled.
    pub disable_after: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private_hosts: false,
            timeout: Duration::from_secs(15),
            schedule: SCHEDULE.to_vec(),
            disable_after: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// What one pass over the webhook deliveries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPass {
    pub claimed: usize,
    pub delivered: usize,
    pub retried: usize,
    /// Given up after the last attempt of the schedule.
    pub failed: usize,
    /// Endpoints this pass disabled.
    pub disabled: usize,
    /// The lease ran out before the outcome was recorded.
    pub lease_lost: usize,
}

impl std::ops::AddAssign for WebhookPass {
    fn add_assign(&mut self, other: WebhookPass) {
        self.claimed += other.claimed;
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.failed += other.failed;
        self.disabled += other.disabled;
        self.lease_lost += other.lease_lost;
    }
}

/// `v1,<signature>` of `body` under the Standard Webhooks secret `secret`
/// (`whsec_<base64 key>`), for message `id` sent at `timestamp`.
pub fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &str) -> anyhow::Result<String> {
    let encoded = secret.expose_secret();
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded.strip_prefix("whsec_").unwrap_or(encoded))
        .map_err(|_| anyhow::anyhow!("a webhook signing secret is not base64"))?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key)
        .map_err(|_| anyhow::anyhow!("a webhook signing secret is empty"))?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The start of an answer for the delivery log: at most [`EXCERPT_LIMIT`]
/// bytes (cut at a character), with every secret of the endpoint blanked.
/// `bytes` may run past the limit: what is read of the answer's first chunks.
pub fn excerpt(bytes: &[u8], secrets: &[SecretString]) -> String {
    // Blanked before the cut, so that no part of a secret survives it.
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    for secret in secrets {
        let whole = secret.expose_secret();
        for value in [whole, whole.strip_prefix("whsec_").unwrap_or(whole)] {
            if !value.is_empty() {
                text = text.replace(value, "[redacted]");
            }
        }
    }
    let mut end = text.len().min(EXCERPT_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// What one attempt came to.
struct Outcome {
    status: Option<u16>,
    latency: Duration,
    response: Option<String>,
    error: Option<String>,
}

impl Outcome {
    fn failed(error: String) -> Outcome {
        Outcome {
            status: None,
            latency: Duration::ZERO,
            response: None,
            error: Some(error),
        }
    }

    fn delivered(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }
}

impl Jobs {
    /// One pass: claim due deliveries, send each, record each.
    pub async fn run_webhooks_once(&self) -> anyhow::Result<WebhookPass> {
        use futures_util::StreamExt;
        let now = self.settings.clock.now();
        let until = now + chrono::Duration::from_std(self.settings.lease)?;
        let token = uuid::Uuid::new_v4().to_string();
        let claimed = self
            .store
            .db()
            .await?
            .claim_webhook_deliveries(now, until, &token, self.settings.batch)
            .await?;
        let mut pass = WebhookPass {
            claimed: claimed.len(),
            ..WebhookPass::default()
        };
        let token = token.as_str();
        let outcomes: Vec<anyhow::Result<WebhookPass>> = futures_util::stream::iter(claimed)
            .map(|delivery| async move { self.process_webhook(&delivery, token).await })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for outcome in outcomes {
            pass += outcome?;
        }
        Ok(pass)
    }

    /// Passes until no delivery is due; answers what they did together.
    pub async fn drain_webhooks(&self) -> anyhow::Result<WebhookPass> {
        let mut total = WebhookPass::default();
        loop {
            let pass = self.run_webhooks_once().await?;
            total += pass;
            if (pass.claimed as i64) < self.settings.batch {
                return Ok(total);
            }
        }
    }

    async fn process_webhook(
        &self,
        delivery: &WebhookDelivery,
        token: &str,
    ) -> anyhow::Result<WebhookPass> {
        let mut done = WebhookPass::default();
        let Some(endpoint) = self
            .store
            .db()
            .await?
            .get_webhook_endpoint(delivery.endpoint_id)
            .await?
        else {
            // Deleted meanwhile, with its deliveries: nothing to record.
            return Ok(done);
        };
        let outcome = self.attempt(&endpoint, delivery).await;
        let now = self.settings.clock.now();
        let delivered = outcome.delivered();
        let retry_at = if delivered {
            None
        } else {
            usize::try_from(delivery.attempts - 1)
                .ok()
                .and_then(|index| self.settings.webhooks.schedule.get(index))
                .and_then(|wait| chrono::Duration::from_std(*wait).ok())
                .map(|wait| now + wait)
        };
        let attempt = WebhookAttempt {
            at: now,
            status: outcome.status.map(i32::from),
            latency_ms: i64::try_from(outcome.latency.as_millis()).unwrap_or(i64::MAX),
            response: outcome.response.as_deref(),
            error: outcome.error.as_deref(),
        };
        // The attempt joins the delivery's history whatever the lease says
        // (it did reach the endpoint, or failed to), in the transaction
        // that records its outcome.
        let mut db = self.store.begin().await?;
        db.insert_webhook_attempt(delivery.id, &attempt).await?;
        let recorded = db
            .record_webhook_attempt(delivery.id, token, &attempt, delivered, retry_at)
            .await?;
        if !recorded {
            db.commit().await?;
            done.lease_lost += 1;
            tracing::warn!(
                webhook_delivery = delivery.id,
                "a webhook attempt ended after its lease ran out; it may be sent again"
            );
            return Ok(done);
        }
        if delivered {
            done.delivered += 1;
            db.webhook_endpoint_succeeded(endpoint.id).await?;
            db.commit().await?;
            return Ok(done);
        }
        match retry_at {
            Some(at) => {
                done.retried += 1;
                tracing::info!(webhook_delivery = delivery.id, webhook_endpoint = endpoint.id, attempts = delivery.attempts, status = ?outcome.status, retry_at = %at, "a webhook was not delivered; retrying later");
            }
            None => {
                done.failed += 1;
                tracing::warn!(
                    webhook_delivery = delivery.id,
                    webhook_endpoint = endpoint.id,
                    attempts = delivery.attempts,
                    "a webhook delivery was given up after its last attempt"
                );
            }
        }
        let since = db
            .webhook_endpoint_failed(endpoint.id, now)
            .await?
            .unwrap_or(now);
        db.commit().await?;
        if self.failing_too_long(since, now) {
            let disabled = credence_service::webhooks::disable_failing(
                &self.store,
                &self.vault,
                &endpoint,
                since,
                now,
            )
            .await
            .map_err(|error| {
                anyhow::anyhow!("cannot disable webhook endpoint {}: {error}", endpoint.id)
            })?;
            if disabled {
                done.disabled += 1;
                tracing::warn!(webhook_endpoint = endpoint.id, failing_since = %since, "a webhook endpoint failing for too long was disabled; its owners are told");
            }
        }
        Ok(done)
    }

    fn failing_too_long(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        chrono::Duration::from_std(self.settings.webhooks.disable_after)
            .is_ok_and(|limit| now - since >= limit)
    }

    /// Signs and sends `delivery` to `endpoint` once.
    async fn attempt(&self, endpoint: &WebhookEndpoint, delivery: &WebhookDelivery) -> Outcome {
        let allow_private = self.settings.webhooks.allow_private_hosts;
        let url = match reqwest::Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(_) => return Outcome::failed("the endpoint's url does not parse".into()),
        };
        // The names are checked by the client's resolver, on the very
        // addresses it connects to; the scheme and literals here.
        if let Err(refusal) =
            credence_provider::destination::check_webhook_url(&url, allow_private, false).await
        {
            return Outcome::failed(refusal);
        }
        let now = self.settings.clock.now();
        let secrets = match credence_service::webhooks::signing_secrets(
            &self.store,
            &self.vault,
            endpoint,
            now,
        )
        .await
        {
            Ok(secrets) => secrets,
            Err(_) => return Outcome::failed("the endpoint's signing secret does not open".into()),
        };
        let timestamp = now.timestamp();
        let mut signatures = Vec::new();
        for secret in &secrets {
            match sign(secret, &delivery.message_id, timestamp, &delivery.payload) {
                Ok(signature) => signatures.push(signature),
                Err(error) => return Outcome::failed(error.to_string()),
            }
        }
        let started = Instant::now();
        let sent = self
            .webhook_client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(delivery.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let mut outcome = Outcome::failed(describe(&error, self.settings.webhooks.timeout));
                outcome.latency = started.elapsed();
                return outcome;
            }
        };
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let mut error = None;
        while body.len() < EXCERPT_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(failure) => {
                    error = Some(describe(&failure, self.settings.webhooks.timeout));
                    break;
                }
            }
        }
        Outcome {
            status: Some(status),
            latency: started.elapsed(),
            response: Some(excerpt(&body, &secrets)),
            error: error.or_else(|| {
                (!(200..300).contains(&status)).then(|| format!("the endpoint answered {status}"))
            }),
        }
    }
}

/// Why a request failed, without its URL (whose path or query may carry the
/// receiver's own token).
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if let Some(refusal) = credence_provider::destination::private_address_in(error) {
        return format!("{refusal}; webhooks are not sent there unless the operator sets webhooks_allow_private_hosts");
    }
    if error.is_timeout() {
        return format!("the endpoint did not answer within {} s", timeout.as_secs());
    }
    if error.is_connect() {
        return "could not connect to the endpoint".into();
    }
    if error.is_redirect() {
        return "the endpoint redirected; redirects are not followed".into();
    }
    let mut without_url = error.to_string();
    if let Some(url) = error.url() {
        without_url = without_url.replace(url.as_str(), "the endpoint");
    }
    without_url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_base64_hmac_of_id_timestamp_and_body() {
        // The example of the Standard Webhooks specification.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string());
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn an_excerpt_is_at_most_a_kibibyte_cut_at_a_character_and_blanks_secrets() {
        let secret = SecretString::from("whsec_c2VjcmV0LWtleQ==".to_string());
        let echoed = format!(
            "got whsec_c2VjcmV0LWtleQ== and c2VjcmV0LWtleQ== {}",
            "é".repeat(600)
        );
        let text = excerpt(echoed.as_bytes(), std::slice::from_ref(&secret));
        assert!(text.len() <= EXCERPT_LIMIT, "{}", text.len());
        assert!(!text.contains("c2VjcmV0LWtleQ"), "{text}");
        assert!(text.starts_with("got [redacted] and [redacted] é"));
    }

    #[test]
    fn the_schedule_spans_more_than_a_day() {
        let total: Duration = SCHEDULE.iter().sum();
        assert!(total >= Duration::from_secs(24 * 3600), "{total:?}");
    }
}
