//! Intake tracking (SPEC §9): a request's client, project and owner, set at
//! creation (`requests::create`) or changed later by its sending team, and
//! the rollups per project of what a caller sees as sender.

use super::access;
use super::audit::{self, Actor, Event};
use super::{Context, Error, Result};
use chrono::{DateTime, Datelike, Duration, Utc};
use credence_domain::{RequestId, TrackingField, UserId, ValidationError};
use credence_store::{CredentialRequest, ProjectRollup, RequestFilter};
use serde::Deserialize;
use serde_json::{json, Value};

/// Deserializes a field that is present (possibly `null`) as `Some`.
fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A change of tracking fields: an absent field keeps its value; `null` (or
/// an empty text) clears `client` and `project`, and gives the request back
/// to its requester for `owner`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrackingInput {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub client: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub project: Option<Option<String>>,
    /// A user id; null gives the request back to its requester.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub owner: Option<Option<i64>>,
}

/// A label of a tracking field, parsed (`None`: absent or cleared).
fn label(problems: &mut Vec<ValidationError>, field: &str, raw: Option<&str>) -> Option<String> {
    match TrackingField::parse_optional(field, raw) {
        Ok(value) => value.map(|v| v.as_str().to_string()),
        Err(error) => {
            problems.push(error);
            None
        }
    }
}

/// Changes the tracking fields of request `id` (its sending team, or the
/// organization's owners and admins): checked, stored and audited with what
/// changed, in one transaction. Bad input changes nothing.
pub async fn update(
    ctx: &Context,
    caller: &credence_store::User,
    id: RequestId,
    input: TrackingInput,
) -> Result<CredentialRequest> {
    let mut problems = Vec::new();
    let client = input
        .client
        .as_ref()
        .map(|raw| label(&mut problems, "client", raw.as_deref()));
    let project = input
        .project
        .as_ref()
        .map(|raw| label(&mut problems, "project", raw.as_deref()));
    let mut tx = ctx.store.begin().await?;
    let (request, viewer) = access::request(&mut tx, caller, id).await?;
    if viewer != access::Viewer::Sender {
        return Err(Error::Forbidden(format!(
            "only the sending team tracks request {id}"
        )));
    }
    access::require_sender(&mut tx, caller, &request).await?;
    let owner = match input.owner {
        None => request.owner_id.unwrap_or(request.requester_id),
        Some(None) => request.requester_id,
        Some(Some(raw)) => {
            let owner = UserId(raw);
            if let Some(problem) =
                access::check_owner(&mut tx, request.team_id, request.organization_id, owner)
                    .await?
            {
                problems.push(problem);
            }
            owner
        }
    };
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let client = client.unwrap_or_else(|| request.client.clone());
    let project = project.unwrap_or_else(|| request.project.clone());
    tx.update_tracking(id, client.as_deref(), project.as_deref(), owner)
        .await?;
    let mut changes = serde_json::Map::new();
    let mut note = |name: &str, before: Value, after: Value| {
        if before != after {
            changes.insert(name.to_string(), json!({ "from": before, "to": after }));
        }
    };
    note("client", json!(request.client), json!(client));
    note("project", json!(request.project), json!(project));
    note(
        "ownerId",
        json!(request.owner_id.unwrap_or(request.requester_id)),
        json!(owner),
    );
    if !changes.is_empty() {
        audit::record(
            &mut tx,
            &Actor::user(caller),
            Event {
                organization: request.organization_id,
                team: Some(request.team_id),
                name: "credential_request.tracking_changed",
                target_kind: "credential_request",
                target_id: id.to_string(),
                details: Value::Object(changes),
            },
        )
        .await?;
    }
    let updated = tx
        .get_request(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("credential request {id} not found")))?;
    tx.commit().await?;
    Ok(updated)
}

/// A project's rollup with its SLA rate: authorized ÷ total, 1 when empty.
pub fn rollup_json(rollup: &ProjectRollup) -> Value {
    let rate = if rollup.total == 0 {
        1.0
    } else {
        rollup.authorized as f64 / rollup.total as f64
    };
    json!({
        "teamId": rollup.team_id,
        "project": rollup.project,
        "total": rollup.total,
        "authorized": rollup.authorized,
        "pending": rollup.pending,
        "breaches": rollup.breaches,
        "slaRate": rate,
    })
}

/// The rollups per team and project of the requests `filter` selects, with
/// breaches counted at `at`.
pub async fn rollups(
    ctx: &Context,
    filter: &RequestFilter,
    at: DateTime<Utc>,
) -> Result<Vec<ProjectRollup>> {
    Ok(ctx.store.db().await?.project_rollups(filter, at).await?)
}

/// The start of the week of `at` (Monday, 00:00 UTC): "authorized this week".
pub fn start_of_week(at: DateTime<Utc>) -> DateTime<Utc> {
    let day = at.date_naive() - Duration::days(i64::from(at.weekday().num_days_from_monday()));
    day.and_hms_opt(0, 0, 0)
        .map(|midnight| midnight.and_utc())
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_week_starts_on_monday_at_midnight_utc() {
        let wednesday: DateTime<Utc> = "2026-12-02T15:30:00Z".parse().unwrap();
        assert_eq!(
            start_of_week(wednesday),
            "2026-11-30T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let monday: DateTime<Utc> = "2026-11-30T00:00:00Z".parse().unwrap();
        assert_eq!(start_of_week(monday), monday);
    }

    #[test]
    fn the_sla_rate_of_an_empty_project_is_one() {
        let mut rollup = ProjectRollup {
            team_id: 1,
            project: None,
            total: 0,
            authorized: 0,
            pending: 0,
            breaches: 0,
        };
        assert_eq!(rollup_json(&rollup)["slaRate"], json!(1.0));
        rollup.total = 4;
        rollup.authorized = 1;
        assert_eq!(rollup_json(&rollup)["slaRate"], json!(0.25));
    }
}
