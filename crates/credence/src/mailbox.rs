//! The local mailbox as the web pages read it (`credence_http::web::mailbox`):
//! the same mail as `credence mail list|show` (`credence_jobs::mailbox`), but
//! only the organizations' own (each outbox row names its organization,
//! migration 0018), each email rendered again from its sealed outbox row
//! with the configuration's templates (`credence_jobs::open_delivered`).

use credence_domain::OrganizationId;
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
    fn list<'a>(
        &'a self,
        organizations: &'a [OrganizationId],
        limit: i64,
    ) -> Answer<'a, Vec<MailboxEmail>> {
        Box::pin(async move {
            let entries = self
                .store
                .db()
                .await?
                .list_mailbox_of(organizations, limit)
                .await?;
            entries
                .into_iter()
                .map(|entry| {
                    credence_jobs::open_delivered(
                        &self.vault,
                        &self.templates,
                        &self.public_url,
                        entry,
                    )
                    .map(email)
                })
                .collect()
        })
    }

    fn get<'a>(
        &'a self,
        organizations: &'a [OrganizationId],
        id: i64,
    ) -> Answer<'a, Option<MailboxEmail>> {
        Box::pin(async move {
            let Some(entry) = self.store.db().await?.get_mailbox(id).await? else {
                return Ok(None);
            };
            // Another organization's email, or one of none, is not there.
            let theirs = entry
                .organization_id
                .is_some_and(|org| organizations.contains(&OrganizationId(org)));
            if !theirs {
                return Ok(None);
            }
            let found = credence_jobs::open_delivered(
                &self.vault,
                &self.templates,
                &self.public_url,
                entry,
            )?;
            Ok(Some(email(found)))
        })
    }
}
