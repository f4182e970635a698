//! Reminders and the SLA (SPEC §9): each team's policy (when to nudge, how
//! often, how many times, through which channels, the SLA threshold), the
//! schedule a request gets from it, and the scan every instance runs
//! (`credence_jobs::reminders`) that nudges the recipients whose reminder is
//! due and tells owners of a breach.
//!
//! A nudge is one transaction: the guarded claim (`Db::claim_nudge`), the
//! notifications in the outbox and the audit entry. Two instances scanning
//! one database claim each nudge once; a nudge that rolls back sends
//! nothing. Whether anything is still pending is read in that transaction,
//! so no reminder follows an authorization.
//!
//! The link: a request's own link is stored only as a hash, so a reminder
//! cannot send it again. Reminders point at the recipient's page of the
//! request (`/received/<id>`, reached after signing in); an external
//! recipient who has not accepted the invitation yet is told to use the
//! invitation email, which stays valid. No link is reissued, so the first
//! email keeps working.

use super::audit::{self, Actor, Event};
use super::secrets;
use super::{Context, Error, Result};
use chrono::{DateTime, Duration, Utc};
use credence_domain::{
    CredentialState, EmailAddress, OrgRole, OrganizationId, RequestStatus, TeamId, TeamRole,
    ValidationError,
};
use credence_store::{CredentialRequest, Db, Due, ReminderPolicyRow, User};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

/// The purpose of a Slack webhook URL's row in `secrets`.
pub const SLACK_PURPOSE: &str = "reminder_slack_webhook";

/// The longest Slack webhook URL accepted.
pub const SLACK_URL_MAX: usize = 2048;

/// A team's reminder policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub first_after_hours: i64,
    pub every_hours: i64,
    pub max_count: i64,
    pub sla_hours: i64,
    /// Reminders go by email.
    pub email: bool,
    /// Copied on escalations, besides the owner.
    pub sponsor_cc: Option<String>,
    /// The sealed Slack webhook URL, when reminders also go to Slack.
    pub slack_secret_id: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<i64>,
}

impl Default for Policy {
    /// 24 h after creation, then every 48 h, 4 at most, by email; SLA 72 h.
    fn default() -> Policy {
        Policy {
            first_after_hours: 24,
            every_hours: 48,
            max_count: 4,
            sla_hours: 72,
            email: true,
            sponsor_cc: None,
            slack_secret_id: None,
            updated_at: None,
            updated_by: None,
        }
    }
}

impl Policy {
    /// When the first reminder of a request created at `created` is due;
    /// `None` when the policy sends none.
    pub fn first_nudge(&self, created: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.max_count > 0).then(|| created + Duration::hours(self.first_after_hours))
    }

    pub fn sla_due(&self, created: DateTime<Utc>) -> DateTime<Utc> {
        created + Duration::hours(self.sla_hours)
    }

    /// When the nudge after one due at `due` and sent at `sent` (number
    /// `number`) is due: on the schedule, unless the scan was so late that
    /// it already passed (then a full interval after this one).
    pub fn next_after(
        &self,
        number: i64,
        due: DateTime<Utc>,
        sent: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if number >= self.max_count {
            return None;
        }
        let every = Duration::hours(self.every_hours);
        let next = due + every;
        Some(if next <= sent { sent + every } else { next })
    }

    /// The schedule of `request` under this policy (after a change of it).
    pub fn next_of(&self, request: &CredentialRequest) -> Option<DateTime<Utc>> {
        if request.nudge_count >= self.max_count {
            return None;
        }
        match request.last_nudge_at {
            None => self.first_nudge(request.created_at),
            Some(last) => Some(last + Duration::hours(self.every_hours)),
        }
    }

    fn from_row(row: ReminderPolicyRow) -> Policy {
        Policy {
            first_after_hours: row.first_after_hours,
            every_hours: row.every_hours,
            max_count: row.max_count,
            sla_hours: row.sla_hours,
            email: row.email,
            sponsor_cc: row.sponsor_cc,
            slack_secret_id: row.slack_secret_id,
            updated_at: Some(row.updated_at),
            updated_by: row.updated_by,
        }
    }
}

/// The policy of `team`: its own, or the defaults.
pub async fn policy_of(db: &mut Db, team: TeamId) -> Result<Policy> {
    Ok(db
        .get_reminder_policy(team)
        .await?
        .map(Policy::from_row)
        .unwrap_or_default())
}

/// Deserializes a field that is present (possibly `null`) as `Some`.
fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A change of policy as the API takes it: an absent field keeps its value;
/// `null` clears `sponsorCc` and `slackWebhookUrl`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInput {
    pub first_after_hours: Option<i64>,
    pub every_hours: Option<i64>,
    pub max_count: Option<i64>,
    pub sla_hours: Option<i64>,
    pub email: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub sponsor_cc: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub slack_webhook_url: Option<Option<String>>,
}

fn in_range(
    problems: &mut Vec<ValidationError>,
    field: &str,
    value: Option<i64>,
    current: i64,
    range: std::ops::RangeInclusive<i64>,
) -> i64 {
    match value {
        None => current,
        Some(value) if range.contains(&value) => value,
        Some(value) => {
            problems.push(ValidationError::new(
                field,
                format!(
                    "{field} is {value}; it must be between {} and {}",
                    range.start(),
                    range.end()
                ),
            ));
            current
        }
    }
}

/// Checks a Slack incoming-webhook URL: at most [`SLACK_URL_MAX`]
/// characters, http(s) with a host, and — unless the operator allows private
/// hosts — https to a host that is not (and does not resolve to) a private,
/// loopback or link-local address. The delivery checks the addresses again
/// as it connects (`credence_jobs`'s Slack client).
pub async fn check_slack_url(
    raw: &str,
    allow_private: bool,
) -> Result<reqwest::Url, ValidationError> {
    let field = "slackWebhookUrl";
    let length = raw.chars().count();
    if length > SLACK_URL_MAX {
        return Err(ValidationError::new(
            field,
            format!("slackWebhookUrl is {length} characters; the limit is {SLACK_URL_MAX}"),
        ));
    }
    let refuse = |why: &str| ValidationError::new(field, format!("slackWebhookUrl {why}"));
    let url = reqwest::Url::parse(raw.trim()).map_err(|_| refuse("is not a URL"))?;
    let Some(host) = url.host_str().map(str::to_string) else {
        return Err(refuse("has no host"));
    };
    match (url.scheme(), allow_private) {
        ("https", _) | ("http", true) => {}
        _ => return Err(refuse("must start with https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("must not carry a user or password"));
    }
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<std::net::IpAddr> = match literal.parse::<std::net::IpAddr>() {
        Ok(address) => vec![address],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| refuse(&format!("names {host}, which does not resolve")))?
            .map(|address| address.ip())
            .collect(),
    };
    if addresses
        .iter()
        .any(|address| credence_provider::destination::is_private(*address))
    {
        return Err(refuse(&format!(
            "names {host}, a private address; the operator must allow private webhook hosts (reminders_allow_private_hosts)"
        )));
    }
    Ok(url)
}

/// Whether `caller` may change `team`'s policy: an admin of the team, or an
/// owner or admin of its organization. Whoever may not see the team gets 404.
async fn require_team_admin(
    db: &mut Db,
    caller: &User,
    team: TeamId,
) -> Result<credence_store::Team> {
    let not_found = || Error::NotFound(format!("team {team} not found"));
    let found = db.get_team(team).await?.ok_or_else(not_found)?;
    let role = db
        .organization_role(found.organization_id, caller.id)
        .await?;
    let team_role = db.team_role(team, caller.id).await?;
    match (role, team_role) {
        (Some(OrgRole::Owner | OrgRole::Admin), _) => Ok(found),
        (Some(OrgRole::Member), Some(TeamRole::Admin)) => Ok(found),
        (Some(OrgRole::Member), Some(TeamRole::Member)) => Err(Error::Forbidden(format!(
            "only the admins of team {team} and the organization's owners and admins change its reminder policy"
        ))),
        _ => Err(not_found()),
    }
}

/// `team`'s policy, for someone who sees the team.
pub async fn get_policy(ctx: &Context, caller: &User, team: TeamId) -> Result<Policy> {
    let mut db = ctx.store.db().await?;
    if !super::access::may_see_team(&mut db, caller, team).await? {
        return Err(Error::NotFound(format!("team {team} not found")));
    }
    policy_of(&mut db, team).await
}

/// Changes `team`'s policy (team admins, organization owners and admins):
/// every field checked (all problems at once, nothing changed on any),
/// the Slack URL sealed (the old one destroyed), the schedules of the team's
/// active requests computed anew, audited — in one transaction.
pub async fn put_policy(
    ctx: &Context,
    caller: &User,
    team: TeamId,
    input: PolicyInput,
    allow_private_hosts: bool,
) -> Result<Policy> {
    let current = {
        let mut db = ctx.store.db().await?;
        require_team_admin(&mut db, caller, team).await?;
        policy_of(&mut db, team).await?
    };
    let mut problems = Vec::new();
    let first_after_hours = in_range(
        &mut problems,
        "firstAfterHours",
        input.first_after_hours,
        current.first_after_hours,
        1..=720,
    );
    let every_hours = in_range(
        &mut problems,
        "everyHours",
        input.every_hours,
        current.every_hours,
        1..=720,
    );
    let max_count = in_range(
        &mut problems,
        "maxCount",
        input.max_count,
        current.max_count,
        0..=20,
    );
    let sla_hours = in_range(
        &mut problems,
        "slaHours",
        input.sla_hours,
        current.sla_hours,
        1..=2160,
    );
    let sponsor_cc = match &input.sponsor_cc {
        None => current.sponsor_cc.clone(),
        Some(None) => None,
        Some(Some(raw)) if raw.trim().is_empty() => None,
        Some(Some(raw)) => match EmailAddress::parse("sponsorCc", raw) {
            Ok(email) => Some(email.as_str().to_string()),
            Err(error) => {
                problems.push(error);
                None
            }
        },
    };
    let slack = match &input.slack_webhook_url {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) if raw.trim().is_empty() => Some(None),
        Some(Some(raw)) => match check_slack_url(raw, allow_private_hosts).await {
            Ok(url) => Some(Some(SecretString::from(url.to_string()))),
            Err(error) => {
                problems.push(error);
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }

    let mut tx = ctx.store.begin().await?;
    let found = require_team_admin(&mut tx, caller, team).await?;
    // Read again under the transaction: what it replaces is what is stored now.
    let stored = policy_of(&mut tx, team).await?;
    let slack_secret_id = match slack {
        None => stored.slack_secret_id.clone(),
        Some(replacement) => {
            if let Some(old) = &stored.slack_secret_id {
                tx.delete_secret(old).await?;
            }
            match replacement {
                Some(url) => {
                    Some(secrets::put_unowned_in(&mut tx, &ctx.vault, SLACK_PURPOSE, &url).await?)
                }
                None => None,
            }
        }
    };
    let at = credence_store::now();
    let row = ReminderPolicyRow {
        team_id: team.0,
        first_after_hours,
        every_hours,
        max_count,
        sla_hours,
        email: input.email.unwrap_or(current.email),
        sponsor_cc,
        slack_secret_id,
        updated_at: at,
        updated_by: Some(caller.id.0),
    };
    tx.put_reminder_policy(&row).await?;
    let policy = Policy::from_row(row);
    for id in tx.active_requests_of_team(team).await? {
        if let Some(request) = tx.get_request(id).await? {
            tx.reschedule_request(
                id,
                policy.next_of(&request),
                policy.sla_due(request.created_at),
            )
            .await?;
        }
    }
    audit::record(
        &mut tx,
        &Actor::user(caller),
        Event {
            organization: found.organization_id,
            team: Some(team),
            name: "reminder_policy.changed",
            target_kind: "team",
            target_id: team.to_string(),
            details: policy_json(&policy),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(policy)
}

/// A policy as the API and the audit log show it: the Slack URL (a key to
/// post into a channel) only as whether there is one.
pub fn policy_json(policy: &Policy) -> Value {
    json!({
        "firstAfterHours": policy.first_after_hours,
        "everyHours": policy.every_hours,
        "maxCount": policy.max_count,
        "slaHours": policy.sla_hours,
        "email": policy.email,
        "sponsorCc": policy.sponsor_cc,
        "slackWebhookConfigured": policy.slack_secret_id.is_some(),
    })
}

/// What one scan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// Friendly reminders queued.
    pub reminded: usize,
    /// Escalations queued.
    pub escalated: usize,
    /// Schedules ended: nothing pending, or the maximum reached.
    pub stopped: usize,
    /// Owners told of an SLA breach.
    pub breaches: usize,
    /// Deadlines looked at and met.
    pub met: usize,
    /// Claimed by another instance first (or changed meanwhile).
    pub lost: usize,
    /// Failed (logged; left for the next pass).
    pub failed: usize,
    /// Whether a query found a whole batch due: there may be more.
    pub more: bool,
}

/// One pass at `at`: up to `batch` due nudges, then up to `batch` due SLA
/// deadlines, each in its own transaction. A request that fails is logged
/// and left for the next pass.
pub async fn scan(ctx: &Context, at: DateTime<Utc>, batch: i64) -> Result<Scan> {
    let mut done = Scan::default();
    let due = ctx
        .store
        .db()
        .await?
        .requests_due_for_nudge(at, batch)
        .await?;
    done.more |= due.len() as i64 >= batch;
    for due in due {
        if let Err(error) = nudge(ctx, due, at, &mut done).await {
            done.failed += 1;
            tracing::warn!(request_id = %due.request, error = %error, "could not nudge a recipient");
        }
    }
    let due = ctx
        .store
        .db()
        .await?
        .requests_due_for_sla(at, batch)
        .await?;
    done.more |= due.len() as i64 >= batch;
    for due in due {
        if let Err(error) = check_sla(ctx, due, at, &mut done).await {
            done.failed += 1;
            tracing::warn!(request_id = %due.request, error = %error, "could not check a request's SLA");
        }
    }
    Ok(done)
}

/// What every email about a request says: who asks, what, from where.
async fn request_payload(db: &mut Db, ctx: &Context, request: &CredentialRequest) -> Result<Value> {
    let requester = db.get_user(request.requester_id).await?;
    let organization = db.get_organization(request.organization_id).await?;
    let team = db.get_team(request.team_id).await?;
    let credentials = db.list_credentials(request.id).await?;
    let pending: Vec<String> = credentials
        .iter()
        .filter(|c| c.state == CredentialState::Pending)
        .map(|c| {
            ctx.catalog
                .get(&c.app_key)
                .map(|app| app.label.clone())
                .unwrap_or_else(|| c.app_key.clone())
        })
        .collect();
    Ok(json!({
        "requestId": request.id,
        "requestName": request.name,
        "requesterName": requester.as_ref().map(|u| u.name.clone()),
        "requesterEmail": requester.as_ref().map(|u| u.email.clone()),
        "organizationName": organization.map(|o| o.name),
        "teamName": team.map(|t| t.name),
        "apps": pending,
        "recipientName": request.recipient_name,
        "recipientEmail": request.recipient_email,
        "recipientJoined": request.recipient_user_id.is_some(),
        "client": request.client,
        "project": request.project,
    }))
}

/// The owner of a request: its owner, else its requester.
async fn owner_of(db: &mut Db, request: &CredentialRequest) -> Result<Option<User>> {
    let owner = request.owner_id.unwrap_or(request.requester_id);
    Ok(match db.get_user(owner).await? {
        Some(user) => Some(user),
        None => db.get_user(request.requester_id).await?,
    })
}

/// Queues the Slack message of `kind` for `team` of `organization`, if its
/// policy names a webhook.
async fn notify_slack(
    db: &mut Db,
    ctx: &Context,
    policy: &Policy,
    organization: OrganizationId,
    team: TeamId,
    kind: &str,
    mut payload: Value,
) -> Result<bool> {
    let Some(secret) = &policy.slack_secret_id else {
        return Ok(false);
    };
    let url = secrets::open_unowned_in(db, &ctx.vault, secret, SLACK_PURPOSE).await?;
    payload["webhookUrl"] = json!(url.expose_secret());
    audit::notify(
        db,
        &ctx.vault,
        Some(organization),
        &format!("slack.{kind}"),
        &slack_recipient(team),
        payload,
    )
    .await?;
    Ok(true)
}

/// The outbox's recipient of a team's Slack messages (the URL is in the sealed payload).
pub fn slack_recipient(team: TeamId) -> String {
    format!("slack:team:{team}")
}

async fn nudge(ctx: &Context, due: Due, at: DateTime<Utc>, done: &mut Scan) -> Result<()> {
    let mut tx = ctx.store.begin().await?;
    let Some(request) = tx.get_request(due.request).await? else {
        return Ok(());
    };
    if request.next_nudge_at != Some(due.at) {
        done.lost += 1;
        return Ok(());
    }
    let pending = tx
        .list_credentials(request.id)
        .await?
        .iter()
        .any(|c| c.state == CredentialState::Pending);
    let policy = policy_of(&mut tx, request.team_id).await?;
    if !pending || request.nudge_count >= policy.max_count {
        if tx.stop_nudges(request.id, due.at).await? {
            done.stopped += 1;
        }
        tx.commit().await?;
        return Ok(());
    }
    let number = request.nudge_count + 1;
    let next = policy.next_after(number, due.at, at);
    if !tx
        .claim_nudge(request.id, due.at, request.nudge_count, at, next)
        .await?
    {
        done.lost += 1;
        return Ok(());
    }
    let escalation = number > 1;
    let kind = if escalation {
        "credential_request.escalation"
    } else {
        "credential_request.reminder"
    };
    let mut payload = request_payload(&mut tx, ctx, &request).await?;
    payload["nudgeNumber"] = json!(number);
    payload["nudgeMax"] = json!(policy.max_count);
    let mut cc = Vec::new();
    if escalation {
        if let Some(owner) = owner_of(&mut tx, &request).await? {
            payload["ownerName"] = json!(owner.name);
            payload["ownerEmail"] = json!(owner.email);
            cc.push(owner.email);
        }
        cc.extend(policy.sponsor_cc.clone());
        cc.retain(|address| !address.eq_ignore_ascii_case(&request.recipient_email));
        cc.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        payload["cc"] = json!(cc);
    }
    let mut channels = Vec::new();
    if policy.email {
        audit::notify(
            &mut tx,
            &ctx.vault,
            Some(request.organization_id),
            kind,
            &request.recipient_email,
            payload.clone(),
        )
        .await?;
        channels.push("email");
    }
    if notify_slack(
        &mut tx,
        ctx,
        &policy,
        request.organization_id,
        request.team_id,
        kind,
        payload,
    )
    .await?
    {
        channels.push("slack");
    }
    audit::record(
        &mut tx,
        &Actor::system(),
        Event {
            organization: request.organization_id,
            team: Some(request.team_id),
            name: "credential_request.nudged",
            target_kind: "credential_request",
            target_id: request.id.to_string(),
            details: json!({
                "number": number,
                "kind": if escalation { "escalation" } else { "reminder" },
                "recipientEmail": request.recipient_email,
                "cc": cc,
                "channels": channels,
                "nextNudgeAt": next,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    if escalation {
        done.escalated += 1;
    } else {
        done.reminded += 1;
    }
    tracing::info!(request_id = %request.id, number, "a recipient was nudged");
    Ok(())
}

async fn check_sla(ctx: &Context, due: Due, at: DateTime<Utc>, done: &mut Scan) -> Result<()> {
    let mut tx = ctx.store.begin().await?;
    let Some(request) = tx.get_request(due.request).await? else {
        return Ok(());
    };
    let breached = request.status != RequestStatus::Authorized;
    if !tx.claim_sla_check(request.id, at, breached).await? {
        done.lost += 1;
        return Ok(());
    }
    if !breached {
        tx.commit().await?;
        done.met += 1;
        return Ok(());
    }
    let policy = policy_of(&mut tx, request.team_id).await?;
    let mut payload = request_payload(&mut tx, ctx, &request).await?;
    payload["slaHours"] = json!(policy.sla_hours);
    payload["status"] = json!(request.status.as_str());
    let owner = owner_of(&mut tx, &request).await?;
    let mut channels = Vec::new();
    if let Some(owner) = &owner {
        payload["ownerName"] = json!(owner.name);
        payload["ownerEmail"] = json!(owner.email);
        audit::notify(
            &mut tx,
            &ctx.vault,
            Some(request.organization_id),
            "credential_request.sla_breach",
            &owner.email,
            payload.clone(),
        )
        .await?;
        channels.push("email");
    }
    if notify_slack(
        &mut tx,
        ctx,
        &policy,
        request.organization_id,
        request.team_id,
        "credential_request.sla_breach",
        payload,
    )
    .await?
    {
        channels.push("slack");
    }
    audit::record(
        &mut tx,
        &Actor::system(),
        Event {
            organization: request.organization_id,
            team: Some(request.team_id),
            name: "credential_request.sla_breached",
            target_kind: "credential_request",
            target_id: request.id.to_string(),
            details: json!({
                "slaHours": policy.sla_hours,
                "status": request.status.as_str(),
                "ownerEmail": owner.map(|o| o.email),
                "channels": channels,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    done.breaches += 1;
    Ok(())
}
