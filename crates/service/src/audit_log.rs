//! Reading the audit log (SPEC §4.5): who may see which entries, the filters,
//! pages, one entry, and the export, which reads in pages of
//! [`Export::PAGE`] entries so that a log of any size goes out in bounded memory.
//! Writing entries is `service::audit`, inside the transaction of each change.
//!
//! Who sees what: an organization's owners and admins see its whole log; a team
//! admin sees the entries of the teams they administer (entries without a team,
//! such as feature grants, are the organization's); everyone else in the
//! organization — members, guests — sees none (`Forbidden`), and someone outside
//! it learns nothing of it (`NotFound`).

use super::{Error, Result};
use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, SubsecRound, Utc,
};
use credence_domain::{OrgRole, OrganizationId, TeamId, TeamRole, UserId, ValidationError};
use credence_store::{AuditEntry, AuditFilter, Db, Store, User};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Which log is asked for: an organization's, or one team's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Organization(OrganizationId),
    Team(TeamId),
}

/// The filters a reader may apply (all optional; together they narrow).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub date_from: Option<DateTime<Utc>>,
    pub date_to: Option<DateTime<Utc>>,
    pub events: Vec<String>,
    pub author: Option<UserId>,
    pub team: Option<TeamId>,
    pub target: Option<String>,
}

impl AuditQuery {
    /// The filters of a query string's pairs, as the API and the audit page
    /// name them: `dateFrom`, `dateTo` (ISO 8601 date or date-time),
    /// `event[]` (repeatable), `author` and `team` (ids), `target`. Every bad
    /// one is reported at once.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<AuditQuery> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let mut problems: Vec<ValidationError> = Vec::new();
        let time = |field: &str, bound: Bound, problems: &mut Vec<ValidationError>| {
            get(field).and_then(|raw| {
                parse_time(field, raw, bound)
                    .map_err(|e| problems.push(e))
                    .ok()
            })
        };
        let date_from = time("dateFrom", Bound::Start, &mut problems);
        let date_to = time("dateTo", Bound::End, &mut problems);
        if let (Some(from), Some(to)) = (date_from, date_to) {
            if to < from {
                problems.push(ValidationError::new(
                    "dateTo",
                    format!(
                        "dateTo {} is before dateFrom {}; swap them",
                        to.to_rfc3339(),
                        from.to_rfc3339()
                    ),
                ));
            }
        }
        let id = |field: &str, problems: &mut Vec<ValidationError>| {
            get(field).and_then(|raw| {
                raw.trim()
                    .parse::<i64>()
                    .map_err(|_| {
                        problems.push(ValidationError::new(
                            field,
                            format!(
                                "{field} {:?} is not an integer id",
                                raw.chars().take(40).collect::<String>()
                            ),
                        ))
                    })
                    .ok()
            })
        };
        let author = id("author", &mut problems).map(UserId);
        let team = id("team", &mut problems).map(TeamId);
        let mut events = Vec::new();
        for (key, value) in pairs {
            if key != "event[]" && key != "event" {
                continue;
            }
            let length = value.chars().count();
            if length == 0 || length > 100 {
                problems.push(ValidationError::new(
                    "event[]",
                    format!("event[] must be an event name of 1 to 100 characters; {length} given"),
                ));
            } else if !events.contains(value) {
                events.push(value.clone());
            }
        }
        let target = get("target").map(str::to_string);
        if let Some(target) = &target {
            if target.chars().count() > 200 {
                problems.push(ValidationError::new(
                    "target",
                    "target is longer than 200 characters",
                ));
            }
        }
        if problems.is_empty() {
            Ok(AuditQuery {
                date_from,
                date_to,
                events,
                author,
                team,
                target,
            })
        } else {
            Err(Error::Invalid(problems))
        }
    }
}

/// Which page of a list, and in which order.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: i64,
    pub limit: i64,
    pub oldest_first: bool,
}

/// The end of a time range a bound stands for, when only a date is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `2024-05-31` means 2024-05-31T00:00:00Z.
    Start,
    /// `2024-05-31` means the whole day, up to 2024-05-31T23:59:59.999999Z.
    End,
}

/// Reads an ISO 8601 date (`2024-05-31`) or date-time (`2024-05-31T12:00:00Z`,
/// with any offset; without one it is taken as UTC) given as `field`.
pub fn parse_time(field: &str, raw: &str, bound: Bound) -> Result<DateTime<Utc>, ValidationError> {
    let raw = raw.trim();
    let parsed = if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let time = match bound {
            Bound::Start => NaiveTime::MIN,
            Bound::End => {
                NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap_or(NaiveTime::MIN)
            }
        };
        Some(date.and_time(time).and_utc())
    } else if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        Some(at.with_timezone(&Utc))
    } else {
        NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|at| at.and_utc())
    };
    // Both databases hold four-digit years; anything else is a typo, not a
    // query. Stored times have microsecond precision, and so do bounds.
    match parsed {
        Some(at) if (1..=9999).contains(&at.year()) => Ok(at.trunc_subsecs(6)),
        _ => Err(ValidationError::new(
            field,
            format!(
                "{field} {:?} is not an ISO 8601 date (2024-05-31) or date-time (2024-05-31T12:00:00Z)",
                raw.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// One entry as readers see it (Make's audit log shape, plus our fields). The
/// API, its export and `credence audit export` all write this.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AuditLog)]
pub struct AuditRecord {
    pub id: i64,
    /// Make's entries are keyed by a UUID; ours by an integer id, which is
    /// repeated here as text so that clients reading `uuid` find the entry.
    pub uuid: String,
    pub triggered_at: String,
    pub organization_id: i64,
    #[schema(required = true)]
    pub team_id: Option<i64>,
    #[schema(required = true)]
    pub team_name: Option<String>,
    pub event: String,
    #[schema(required = true)]
    pub author: Option<Author>,
    /// Who acted, as recorded then: a name and email, "operator", "credence".
    pub actor_label: String,
    pub target_kind: String,
    pub target_id: String,
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Author {
    pub id: i64,
    pub name: String,
    /// `None` when the user no longer exists.
    #[schema(required = true)]
    pub email: Option<String>,
}

/// What a reader may filter by, from what their part of the log holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterValues {
    pub events: Vec<String>,
    /// (user id, name), by name.
    pub authors: Vec<(i64, String)>,
    /// (team id, name), by name.
    pub teams: Vec<(i64, String)>,
}

/// The part of one organization's log a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    organization: OrganizationId,
    /// `None`: the whole organization; otherwise only these teams' entries.
    teams: Option<Vec<TeamId>>,
}

impl View {
    fn sees_team(&self, team: Option<TeamId>) -> bool {
        match (&self.teams, team) {
            (None, _) => true,
            (Some(teams), Some(team)) => teams.contains(&team),
            (Some(_), None) => false,
        }
    }
}

fn forbidden_organization(organization: OrganizationId) -> Error {
    Error::Forbidden(format!(
        "only the owners and admins of organization {organization} see its audit log, and team admins their teams' entries"
    ))
}

/// The caller's view of `organization`'s log.
async fn organization_view(
    db: &mut Db,
    organization: OrganizationId,
    user: UserId,
) -> Result<View> {
    let role = db
        .organization_role(organization, user)
        .await?
        .ok_or_else(|| Error::NotFound(format!("organization {organization} not found")))?;
    if role.manages_organization() {
        return Ok(View {
            organization,
            teams: None,
        });
    }
    if role == OrgRole::Guest {
        return Err(forbidden_organization(organization));
    }
    let mut administered = Vec::new();
    for team in db.list_teams_of_member(organization, user).await? {
        if db.team_role(team.id, user).await? == Some(TeamRole::Admin) {
            administered.push(team.id);
        }
    }
    if administered.is_empty() {
        return Err(forbidden_organization(organization));
    }
    Ok(View {
        organization,
        teams: Some(administered),
    })
}

/// The caller's view of one team's log.
async fn team_view(db: &mut Db, team: TeamId, user: UserId) -> Result<View> {
    let not_found = || Error::NotFound(format!("team {team} not found"));
    let found = db.get_team(team).await?.ok_or_else(not_found)?;
    let role = db
        .organization_role(found.organization_id, user)
        .await?
        .ok_or_else(not_found)?;
    let administers =
        role != OrgRole::Guest && db.team_role(team, user).await? == Some(TeamRole::Admin);
    if role.manages_organization() || administers {
        Ok(View {
            organization: found.organization_id,
            teams: Some(vec![team]),
        })
    } else {
        Err(Error::Forbidden(format!(
            "only the admins of team {team} and the owners and admins of its organization see its audit log"
        )))
    }
}

async fn view_of(db: &mut Db, log: Log, user: UserId) -> Result<View> {
    match log {
        Log::Organization(organization) => organization_view(db, organization, user).await,
        Log::Team(team) => team_view(db, team, user).await,
    }
}

/// The store filter for `query` within `view`, or why the query is not allowed.
async fn filter_for(db: &mut Db, view: &View, log: Log, query: &AuditQuery) -> Result<AuditFilter> {
    let mut teams = view.teams.clone();
    if let Some(team) = query.team {
        if let Log::Team(path_team) = log {
            if team != path_team {
                return Err(ValidationError::new(
                    "team",
                    format!("team {team} is not the team of this log ({path_team}); leave team out or use the organization's log"),
                )
                .into());
            }
        }
        let in_organization = db
            .get_team(team)
            .await?
            .is_some_and(|found| found.organization_id == view.organization);
        if !in_organization {
            return Err(ValidationError::new(
                "team",
                format!(
                    "team {team} is not a team of organization {}",
                    view.organization
                ),
            )
            .into());
        }
        if !view.sees_team(Some(team)) {
            return Err(Error::Forbidden(format!(
                "you do not administer team {team}, so you do not see its audit entries"
            )));
        }
        teams = Some(vec![team]);
    }
    Ok(AuditFilter {
        organization: Some(view.organization),
        teams,
        date_from: query.date_from,
        date_to: query.date_to,
        events: query.events.clone(),
        actor: query.author,
        target_id: query.target.clone(),
        ..Default::default()
    })
}

/// A page of the log the caller asked for, and how many entries match in all.
pub async fn list(
    store: &Store,
    caller: &User,
    log: Log,
    query: &AuditQuery,
    page: Page,
) -> Result<(Vec<AuditRecord>, i64)> {
    let mut db = store.db().await?;
    let view = view_of(&mut db, log, caller.id).await?;
    let filter = AuditFilter {
        offset: page.offset,
        limit: page.limit,
        oldest_first: page.oldest_first,
        ..filter_for(&mut db, &view, log, query).await?
    };
    let (entries, total) = db.list_audit(&filter).await?;
    Ok((records(&mut db, &entries).await?, total))
}

/// The events, authors and teams present in the part of the log the caller sees.
pub async fn filter_values(store: &Store, caller: &User, log: Log) -> Result<FilterValues> {
    let mut db = store.db().await?;
    let view = view_of(&mut db, log, caller.id).await?;
    let filter = filter_for(&mut db, &view, log, &AuditQuery::default()).await?;
    let mut present = db.audit_filter_values(&filter).await?;
    // The databases collate text differently; the answer does not.
    present.events.sort();
    // An actor's label may have changed between entries; one line per user,
    // named as they are now when they still exist.
    let mut authors: BTreeMap<i64, String> = BTreeMap::new();
    for (id, label) in present.actors {
        authors.entry(id).or_insert(label);
    }
    let ids: Vec<UserId> = authors.keys().copied().map(UserId).collect();
    for user in db.get_users(&ids).await? {
        authors.insert(user.id.0, user.name);
    }
    let mut authors: Vec<(i64, String)> = authors.into_iter().collect();
    authors.sort_by(|a, b| {
        a.1.to_lowercase()
            .cmp(&b.1.to_lowercase())
            .then(a.0.cmp(&b.0))
    });
    let names: HashMap<i64, String> = db
        .list_teams(view.organization)
        .await?
        .into_iter()
        .map(|team| (team.id.0, team.name))
        .collect();
    let mut teams: Vec<(i64, String)> = present
        .teams
        .into_iter()
        .map(|id| {
            (
                id,
                names
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("team {id}")),
            )
        })
        .collect();
    teams.sort_by(|a, b| {
        a.1.to_lowercase()
            .cmp(&b.1.to_lowercase())
            .then(a.0.cmp(&b.0))
    });
    Ok(FilterValues {
        events: present.events,
        authors,
        teams,
    })
}

/// One entry, if the caller may read it. Someone outside its organization gets
/// `NotFound`, as if it did not exist.
pub async fn get(store: &Store, caller: &User, id: i64) -> Result<AuditRecord> {
    let mut db = store.db().await?;
    let not_found = || Error::NotFound(format!("audit entry {id} not found"));
    let entry = db.get_audit_entry(id).await?.ok_or_else(not_found)?;
    let organization = OrganizationId(entry.organization_id);
    let view = match organization_view(&mut db, organization, caller.id).await {
        Err(Error::NotFound(_)) => return Err(not_found()),
        other => other?,
    };
    if !view.sees_team(entry.team_id.map(TeamId)) {
        return Err(Error::Forbidden(format!(
            "audit entry {id} belongs to a team you do not administer"
        )));
    }
    let mut found = records(&mut db, std::slice::from_ref(&entry)).await?;
    found.pop().ok_or_else(not_found)
}

/// Every entry of a log matching a query, oldest first, read a page at a time.
pub struct Export {
    store: Store,
    filter: AuditFilter,
    after: Option<(DateTime<Utc>, i64)>,
    finished: bool,
}

impl Export {
    /// Entries read per query.
    pub const PAGE: i64 = 1000;

    fn new(store: &Store, filter: AuditFilter) -> Export {
        // The export is of the log as it stood when it started: entries written
        // while it runs belong to the next one.
        let now = credence_store::now();
        let date_to = Some(filter.date_to.map_or(now, |to| to.min(now)));
        Export {
            store: store.clone(),
            filter: AuditFilter {
                date_to,
                offset: 0,
                limit: Self::PAGE,
                oldest_first: true,
                ..filter
            },
            after: None,
            finished: false,
        }
    }

    /// The caller's export of `log`; refused as [`list`] would refuse it.
    pub async fn for_caller(
        store: &Store,
        caller: &User,
        log: Log,
        query: &AuditQuery,
    ) -> Result<Export> {
        let mut db = store.db().await?;
        let view = view_of(&mut db, log, caller.id).await?;
        let filter = filter_for(&mut db, &view, log, query).await?;
        Ok(Export::new(store, filter))
    }

    /// The operator's export of a whole organization's log (the CLI).
    pub async fn for_operator(
        store: &Store,
        organization: OrganizationId,
        query: &AuditQuery,
    ) -> Result<Export> {
        let mut db = store.db().await?;
        if db.get_organization(organization).await?.is_none() {
            return Err(Error::NotFound(format!(
                "organization {organization} does not exist; `credence org add` lists the id it creates"
            )));
        }
        let view = View {
            organization,
            teams: None,
        };
        let filter = filter_for(&mut db, &view, Log::Organization(organization), query).await?;
        Ok(Export::new(store, filter))
    }

    /// The next page of entries, or `None` when all have been read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditRecord>>> {
        if self.finished {
            return Ok(None);
        }
        let mut db = self.store.db().await?;
        let entries = db.list_audit_after(&self.filter, self.after).await?;
        if (entries.len() as i64) < self.filter.limit {
            self.finished = true;
        }
        let Some(last) = entries.last() else {
            return Ok(None);
        };
        self.after = Some((last.occurred_at, last.id));
        Ok(Some(records(&mut db, &entries).await?))
    }
}

impl Export {
    /// The export as a stream of JSON-lines chunks, a page each. The first
    /// page is read before this answers, so that a failure then is an error
    /// (with its status) rather than an empty file; a failure later ends the
    /// stream with an error, never as if the export were complete.
    pub async fn json_lines(
        mut self,
    ) -> Result<impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send> {
        let first = self.next_page().await?;
        Ok(futures_util::stream::try_unfold(
            (self, first),
            |(mut export, pending)| async move {
                let page = match pending {
                    Some(page) => Some(page),
                    None => export.next_page().await.map_err(|error| {
                        tracing::error!(error = format!("{error:#}"), "audit export failed midway");
                        std::io::Error::other("the audit export failed; see the server log")
                    })?,
                };
                match page {
                    None => Ok(None),
                    Some(records) => {
                        let lines = json_lines(&records)
                            .map_err(|_| std::io::Error::other("cannot write an audit entry"))?;
                        Ok(Some((lines, (export, None))))
                    }
                }
            },
        ))
    }
}

/// `records` as JSON lines: one object per line, each line ending in `\n`.
pub fn json_lines(records: &[AuditRecord]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(records.len() * 256);
    for record in records {
        serde_json::to_writer(&mut out, record).map_err(|e| Error::Internal(e.into()))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Entries as readers see them: authors and team names looked up once each.
async fn records(db: &mut Db, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>> {
    let mut actor_ids: Vec<UserId> = entries
        .iter()
        .filter_map(|e| e.actor_user_id)
        .map(UserId)
        .collect();
    actor_ids.sort();
    actor_ids.dedup();
    let users: HashMap<i64, User> = db
        .get_users(&actor_ids)
        .await?
        .into_iter()
        .map(|user| (user.id.0, user))
        .collect();
    let mut team_names: HashMap<i64, Option<String>> = HashMap::new();
    for team in entries.iter().filter_map(|e| e.team_id) {
        if let std::collections::hash_map::Entry::Vacant(slot) = team_names.entry(team) {
            slot.insert(db.get_team(TeamId(team)).await?.map(|t| t.name));
        }
    }
    Ok(entries
        .iter()
        .map(|entry| AuditRecord {
            id: entry.id,
            uuid: entry.id.to_string(),
            triggered_at: entry
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            organization_id: entry.organization_id,
            team_id: entry.team_id,
            team_name: entry
                .team_id
                .and_then(|team| team_names.get(&team).cloned().flatten()),
            event: entry.event.clone(),
            author: entry.actor_user_id.map(|id| match users.get(&id) {
                Some(user) => Author {
                    id,
                    name: user.name.clone(),
                    email: Some(user.email.clone()),
                },
                None => Author {
                    id,
                    name: entry.actor_label.clone(),
                    email: None,
                },
            }),
            actor_label: entry.actor_label.clone(),
            target_kind: entry.target_kind.clone(),
            target_id: entry.target_id.clone(),
            // Details are written as JSON objects; a row that is not one is
            // shown as text rather than hidden.
            data: serde_json::from_str(&entry.details)
                .unwrap_or_else(|_| Value::String(entry.details.clone())),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_means_the_start_or_the_end_of_that_day() {
        let from = parse_time("dateFrom", "2024-05-31", Bound::Start).unwrap();
        let to = parse_time("dateTo", "2024-05-31", Bound::End).unwrap();
        assert_eq!(from.to_rfc3339(), "2024-05-31T00:00:00+00:00");
        assert_eq!(
            to.to_rfc3339_opts(SecondsFormat::Micros, true),
            "2024-05-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn date_times_with_offsets_become_utc_and_bare_ones_are_utc() {
        let at = parse_time("dateFrom", "2024-05-31T12:00:00+02:00", Bound::Start).unwrap();
        assert_eq!(at.to_rfc3339(), "2024-05-31T10:00:00+00:00");
        let bare = parse_time("dateFrom", "2024-05-31T12:00:00.5", Bound::Start).unwrap();
        assert_eq!(
            bare.to_rfc3339_opts(SecondsFormat::Millis, true),
            "2024-05-31T12:00:00.500Z"
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        for raw in [
            "yesterday",
            "2024-13-01",
            "2024-05-31T25:00:00Z",
            "",
            "12345-01-01",
            "0000-01-01",
        ] {
            let error = parse_time("dateTo", raw, Bound::End).unwrap_err();
            assert_eq!(error.field, "dateTo", "{raw}");
            assert!(error.message.starts_with("dateTo "), "{}", error.message);
        }
    }
}
