//! The local mailbox as the web pages read it (`credence_http::web::mailbox`):
//! the same reads as `credence mail list|show` (`credence_jobs::mailbox`),
//! each email rendered again from its sealed outbox row with the
//! configuration's templates.

use credence_http::web::mailbox::{Answer, LocalMailbox, MailboxEmail};
use credence_jobs::{Delivered, Templates};
use credence_store::Store;
use credence_vault::Vault;
use std::sync::Arc;

pub struct JobsMailbox {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub templates: Templates,
    pub public_url: Arc<str>,
}

fn email(delivered: Delivered) -> MailboxEmail {
    MailboxEmail {
        id: delivered.entry.id,
        to: delivered.entry.recipient_email,
        subject: delivered.email.subject,
        delivered_at: delivered.entry.delivered_at,
        text: delivered.email.text,
        html: delivered.email.html,
    }
}

impl LocalMailbox for JobsMailbox {
    fn list(&self, limit: i64) -> Answer<'_, Vec<MailboxEmail>> {
        Box::pin(async move {
            let found = credence_jobs::mailbox(
                &self.store,
                &self.vault,
                &self.templates,
                &self.public_url,
                None,
                limit,
            )
            .await?;
            Ok(found.into_iter().map(email).collect())
        })
    }

    fn get(&self, id: i64) -> Answer<'_, Option<MailboxEmail>> {
        Box::pin(async move {
            if self.store.db().await?.get_mailbox(id).await?.is_none() {
                return Ok(None);
            }
            let found = credence_jobs::mailbox_email(
                &self.store,
                &self.vault,
                &self.templates,
                &self.public_url,
                id,
            )
            .await?;
            Ok(Some(email(found)))
        })
    }
}
