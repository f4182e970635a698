//! The figures measured on one backend: the references (`GET /healthz`, which
//! touches no database, and `SELECT 1` through the store), the API calls the
//! issue names (list-sent, detail, create), and a store-level breakdown of the
//! list page so a slow figure can be traced to its queries.

use crate::measure::{self, pick, Plan, Timings};
use crate::statements;
use crate::world::World;
use anyhow::{bail, Context};
use credence::service::{access, requests::CreateRequestInput};
use credence_domain::{RequestId, TeamId};
use credence_store::{Backend, RequestFilter, RequestScope, Store, User};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Latency samples per figure.
    pub samples: usize,
    /// Concurrent workers for latency figures.
    pub read_workers: usize,
    /// Requests created for the throughput figure.
    pub creates: usize,
    /// Concurrent workers for throughput figures.
    pub create_workers: usize,
    /// Longest time any one figure may take.
    pub limit: Duration,
}

/// Rows of a list page.
pub const PAGE: usize = 50;

/// Everything measured on one backend.
pub struct Report {
    pub backend: Backend,
    pub requests: usize,
    pub teams: usize,
    pub seeding: Duration,
    /// How long settling after the seeding took: PostgreSQL's `VACUUM
    /// ANALYZE` (when it ran), SQLite's checkpoint.
    pub settling: Option<Duration>,
    pub healthz: Timings,
    pub select_one: Timings,
    /// Latency figures, in print order.
    pub latencies: Vec<(&'static str, Timings)>,
    /// `GET /healthz` from the create workers: the throughput reference.
    pub healthz_rate: Timings,
    pub create: Timings,
    /// The list Sent page, whole and in parts.
    pub list: ListBreakdown,
    /// The service's create called in-process (no HTTP), as many at once
    /// as the HTTP creates.
    pub create_service: Timings,
    /// The same on PostgreSQL with commits that do not wait for the WAL's
    /// fsync (`synchronous_commit=off`); `None` on SQLite.
    pub create_service_no_fsync: Option<Timings>,
    /// The SQL statements of one create (`BEGIN` and `COMMIT` aside): over
    /// HTTP, and in the service alone.
    pub create_statements: (u64, u64),
}

/// Where a list Sent page's time goes: the GET, the token check's GET (the
/// same HTTP round trip and token check, with an answer of a few bytes), and
/// each store call the handler makes, timed alone in the same run.
pub struct ListBreakdown {
    pub get: Timings,
    pub token_check: Timings,
    /// (label, timings) of each store call, in the handler's order.
    pub store_calls: Vec<(&'static str, Timings)>,
    /// The size of one page's answer (the JSON body).
    pub bytes: usize,
    /// The size of one detail's answer, for comparison.
    pub detail_bytes: usize,
}

/// A keep-alive HTTP client for the server on loopback.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: Arc<str>,
}

impl Api {
    fn new(base: &str) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api {
            client,
            base: base.into(),
        })
    }

    /// Sends the request, reads the whole body, and checks the status.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        expected: u16,
    ) -> anyhow::Result<Vec<u8>> {
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?.to_vec();
        if status.as_u16() != expected {
            bail!(
                "expected {expected}, got {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(body)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Vec<u8>> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Token {token}"));
        }
        self.call(request, 200)
            .await
            .with_context(|| format!("GET {path}"))
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<Vec<u8>> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Token {token}"))
            .json(body);
        self.call(request, 201)
            .await
            .with_context(|| format!("POST {path}"))
    }
}

fn list_path(team: impl std::fmt::Display) -> String {
    format!("/api/v2/credential-requests/requests?teamId={team}&pg[limit]={PAGE}")
}

/// A page far into a team's Sent list (the last but one full page of the
/// smallest team, when it has at least four), read twice: asked cold, by
/// `OFFSET`; then by a pager that has just read the page before it, read
/// after that page's last row (`credence_store::seek`, kept a minute). No
/// request is written meanwhile, which would send both to `OFFSET`.
async fn deep_pages(
    api: &Api,
    teams: &Arc<Vec<crate::world::Team>>,
    read: Plan,
    smallest_team: Option<usize>,
) -> anyhow::Result<Vec<(&'static str, Timings)>> {
    let offset = (smallest_team.unwrap_or(0) / PAGE).saturating_sub(2) * PAGE;
    if offset < 2 * PAGE {
        return Ok(Vec::new());
    }
    let path =
        move |team: TeamId, offset: usize| format!("{}&pg[offset]={offset}", list_path(team));
    let measure = |label: &'static str| {
        let (api, teams) = (api.clone(), teams.clone());
        measure::run(label, read, move |i| {
            let (api, teams) = (api.clone(), teams.clone());
            async move {
                let team = &teams[pick(i, 7, teams.len())];
                api.get(&path(team.id, offset), Some(&team.token))
                    .await
                    .map(drop)
            }
        })
    };
    // Labels that live as long as the report (one bench run).
    let cold: &'static str =
        Box::leak(format!("list-sent    offset {offset}, asked cold (OFFSET)").into_boxed_str());
    let paged: &'static str = Box::leak(
        format!("list-sent    offset {offset}, after the page before (seek)").into_boxed_str(),
    );
    let by_offset = measure(cold).await?;
    for team in teams.iter() {
        api.get(&path(team.id, offset - PAGE), Some(&team.token))
            .await?;
    }
    let by_seek = measure(paged).await?;
    Ok(vec![(cold, by_offset), (paged, by_seek)])
}

/// The body of the `i`th create: one app asked of the team's recipient.
fn create_body(i: usize, team: &crate::world::Team) -> Value {
    json!({
        "name": format!("Bench create {i}"),
        "teamId": team.id,
        "credentials": [{ "appName": "stripe", "appModules": ["*"] }],
        "provider": { "providerMakeUserId": team.recipient },
    })
}

/// `url` with one more query parameter.
fn with_parameter(url: &str, parameter: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameter}")
}

/// A second store on the PostgreSQL database whose commits do not wait for
/// the WAL's fsync. sqlx 0.8 passes `options[NAME]=VALUE` in the URL as the
/// startup option `-c NAME=VALUE` (its `PgConnectOptions::options`), so every
/// connection of the pool starts with `synchronous_commit=off`; checked here
/// with `SHOW` on a connection of the same URL rather than trusted.
async fn store_without_fsync_wait(url: &str) -> anyhow::Result<Store> {
    use sqlx::Connection;
    let url = with_parameter(url, "options[synchronous_commit]=off");
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await.ok();
    if setting != "off" {
        bail!("synchronous_commit is {setting:?} on a connection asking for off");
    }
    Ok(Store::connect(&url, false).await?)
}

/// The first page of the requests `team` sent, as the list handler asks.
fn sent_page(team: TeamId) -> RequestFilter {
    RequestFilter {
        limit: PAGE as i64,
        ..RequestFilter::within(RequestScope::Sent {
            teams: vec![team],
            recipient: None,
        })
    }
}

fn detail_path(id: RequestId) -> String {
    format!("/api/v2/credential-requests/requests/{id}/detail")
}

/// Checks that the API answers what the benchmark means to measure.
async fn sanity_check(api: &Api, world: &World) -> anyhow::Result<()> {
    let team = &world.teams[0];
    let in_team = world.requests.iter().filter(|(_, t)| *t == 0).count();
    let body: Value =
        serde_json::from_slice(&api.get(&list_path(team.id), Some(&team.token)).await?)?;
    let rows = body["requests"].as_array().map_or(0, Vec::len);
    if rows != in_team.min(PAGE) || body["pg"]["total"] != json!(in_team) {
        bail!(
            "the list of team {} answers {rows} rows of {} in all; expected {} of {in_team}",
            team.id,
            body["pg"]["total"],
            in_team.min(PAGE)
        );
    }
    let (id, _) = world.requests[0];
    let body: Value = serde_json::from_slice(&api.get(&detail_path(id), Some(&team.token)).await?)?;
    if body["requestDetail"]["id"] != json!(id.to_string()) {
        bail!(
            "the detail of {id} answers another request: {}",
            body["requestDetail"]["id"]
        );
    }
    Ok(())
}

/// Measures every figure on a running world.
pub async fn measure(world: &World, budget: Budget) -> anyhow::Result<Report> {
    let api = Api::new(&world.address)?;
    sanity_check(&api, world).await?;
    let teams = Arc::new(world.teams.clone());
    let requests = Arc::new(world.requests.clone());
    let mut by_team: Vec<Vec<RequestId>> = vec![Vec::new(); teams.len()];
    for (id, team) in requests.iter() {
        by_team[*team].push(*id);
    }
    let by_team = Arc::new(by_team);
    let store: Store = world.store.clone();
    // Each team's requester, the caller of the list and of the creates.
    let mut users: Vec<User> = Vec::with_capacity(teams.len());
    for team in teams.iter() {
        let user = store.db().await?.get_user(team.requester).await?;
        users.push(user.context("a seeded requester is missing")?);
    }
    let users = Arc::new(users);
    let list_bytes = api
        .get(&list_path(teams[0].id), Some(&teams[0].token))
        .await?
        .len();
    let detail_bytes = api
        .get(&detail_path(requests[0].0), Some(&teams[0].token))
        .await?
        .len();
    let read = Plan {
        count: budget.samples,
        workers: budget.read_workers,
        limit: budget.limit,
    };
    let write = Plan {
        count: budget.creates,
        workers: budget.create_workers,
        limit: budget.limit,
    };

    // Each closure clones what its future needs; the futures must be 'static.
    let healthz = {
        let api = api.clone();
        measure::run("GET /healthz", read, move |_| {
            let api = api.clone();
            async move { api.get("/healthz", None).await.map(drop) }
        })
        .await?
    };
    let select_one = {
        let store = store.clone();
        measure::run("SELECT 1", read, move |_| {
            let store = store.clone();
            async move { Ok(store.ping().await?) }
        })
        .await?
    };
    let auth = {
        let (api, teams) = (api.clone(), teams.clone());
        measure::run("token check", read, move |i| {
            let (api, teams) = (api.clone(), teams.clone());
            async move {
                let team = &teams[pick(i, 1, teams.len())];
                let path = "/api/v2/users/me/current-authorization";
                api.get(path, Some(&team.token)).await.map(drop)
            }
        })
        .await?
    };
    let list = {
        let (api, teams) = (api.clone(), teams.clone());
        measure::run("list-sent", read, move |i| {
            let (api, teams) = (api.clone(), teams.clone());
            async move {
                let team = &teams[pick(i, 2, teams.len())];
                api.get(&list_path(team.id), Some(&team.token))
                    .await
                    .map(drop)
            }
        })
        .await?
    };
    let deep = deep_pages(&api, &teams, read, by_team.iter().map(Vec::len).min()).await?;
    let detail = {
        let (api, teams, requests) = (api.clone(), teams.clone(), requests.clone());
        measure::run("detail", read, move |i| {
            let (api, teams, requests) = (api.clone(), teams.clone(), requests.clone());
            async move {
                let (id, team) = requests[pick(i, 3, requests.len())];
                api.get(&detail_path(id), Some(&teams[team].token))
                    .await
                    .map(drop)
            }
        })
        .await?
    };
    // The store calls of the list handler, one by one, on the same teams'
    // pages the GETs ask for (a full page of 50: the COUNT runs).
    // The store calls of the list handler, one by one, on the same teams'
    // pages the GETs ask for (a full page of 50: the COUNT runs).
    let store_team_check = {
        let (store, teams, users) = (store.clone(), teams.clone(), users.clone());
        measure::run("store may_see_team", read, move |i| {
            let (store, teams, users) = (store.clone(), teams.clone(), users.clone());
            async move {
                let index = pick(i, 4, teams.len());
                let mut db = store.db().await?;
                if !access::may_see_team(&mut db, &users[index], teams[index].id).await? {
                    bail!("a requester may not see their own team");
                }
                Ok(())
            }
        })
        .await?
    };
    let store_page = {
        let (store, teams) = (store.clone(), teams.clone());
        measure::run("store page_of_requests", read, move |i| {
            let (store, teams) = (store.clone(), teams.clone());
            async move {
                let filter = sent_page(teams[pick(i, 4, teams.len())].id);
                store.db().await?.page_of_requests(&filter).await?;
                Ok(())
            }
        })
        .await?
    };
    let store_count = {
        let (store, teams) = (store.clone(), teams.clone());
        measure::run("store count_requests", read, move |i| {
            let (store, teams) = (store.clone(), teams.clone());
            async move {
                let filter = sent_page(teams[pick(i, 4, teams.len())].id);
                store.db().await?.count_requests(&filter).await?;
                Ok(())
            }
        })
        .await?
    };
    let store_credentials = {
        let (store, by_team) = (store.clone(), by_team.clone());
        measure::run("store list_credentials_of", read, move |i| {
            let (store, by_team) = (store.clone(), by_team.clone());
            async move {
                let ids = &by_team[pick(i, 5, by_team.len())];
                let page = &ids[..ids.len().min(PAGE)];
                store.db().await?.list_credentials_of(page).await?;
                Ok(())
            }
        })
        .await?
    };
    let store_users = {
        let (store, teams) = (store.clone(), teams.clone());
        measure::run("store get_users (a page's recipients)", read, move |i| {
            let (store, teams) = (store.clone(), teams.clone());
            async move {
                let recipient = teams[pick(i, 6, teams.len())].recipient;
                // The page's distinct recipients, fetched in one query as
                // requests_json does.
                store.db().await?.get_users(&[recipient]).await?;
                Ok(())
            }
        })
        .await?
    };
    // The reminder scan's query as every instance runs it: the first batch
    // of what is due an hour into the seeded schedules (about 1% of them).
    let reminder_scan = {
        let store = store.clone();
        let at = credence_store::now() + chrono::Duration::hours(25);
        measure::run("store requests_due_for_nudge", read, move |_| {
            let store = store.clone();
            async move {
                store.db().await?.requests_due_for_nudge(at, 200).await?;
                Ok(())
            }
        })
        .await?
    };
    let healthz_rate = {
        let api = api.clone();
        measure::run("GET /healthz throughput", write, move |_| {
            let api = api.clone();
            async move { api.get("/healthz", None).await.map(drop) }
        })
        .await?
    };
    let create = {
        let (api, teams) = (api.clone(), teams.clone());
        measure::run("create", write, move |i| {
            let (api, teams) = (api.clone(), teams.clone());
            async move {
                let team = &teams[pick(i, 7, teams.len())];
                api.post(
                    "/api/v2/credential-requests/requests/v2",
                    &team.token,
                    &create_body(i, team),
                )
                .await
                .map(drop)
            }
        })
        .await?
    };
    // The same creates through the service, in-process: what HTTP (the
    // token check, the body's parsing, the answer's JSON and the round trip)
    // adds is the difference.
    let service_create = |label: &'static str, context: credence::service::Context, salt: u64| {
        let (teams, users) = (teams.clone(), users.clone());
        measure::run(label, write, move |i| {
            let (context, teams, users) = (context.clone(), teams.clone(), users.clone());
            async move {
                let index = pick(i, salt, teams.len());
                let input: CreateRequestInput =
                    serde_json::from_value(create_body(i, &teams[index]))?;
                credence::service::requests::create(&context, &users[index], input).await?;
                Ok(())
            }
        })
    };
    let create_service =
        service_create("service create (no HTTP)", world.context.clone(), 8).await?;
    let create_service_no_fsync = match store.backend() {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let no_fsync = store_without_fsync_wait(&world.database_url).await?;
            let context = credence::service::Context {
                store: no_fsync.clone(),
                ..world.context.clone()
            };
            let timings =
                service_create("service create, synchronous_commit=off", context, 9).await;
            no_fsync.close().await;
            Some(timings?)
        }
    };

    // One create at a time, counted: over HTTP, then the service alone.
    let create_statements = {
        let (api, teams, users, context) = (&api, &teams, &users, &world.context);
        let http = statements::typical(50, move |i| async move {
            let team = &teams[pick(i, 10, teams.len())];
            let path = "/api/v2/credential-requests/requests/v2";
            api.post(path, &team.token, &create_body(i, team))
                .await
                .map(drop)
        })
        .await?;
        let service = statements::typical(50, move |i| async move {
            let index = pick(i, 11, teams.len());
            let input: CreateRequestInput = serde_json::from_value(create_body(i, &teams[index]))?;
            credence::service::requests::create(context, &users[index], input).await?;
            Ok(())
        })
        .await?;
        (http, service)
    };

    Ok(Report {
        backend: store.backend(),
        requests: world.requests.len(),
        teams: world.teams.len(),
        seeding: world.seeding,
        settling: world.settling,
        healthz,
        select_one,
        latencies: vec![
            (
                "token check  GET /users/me/current-authorization",
                auth.clone(),
            ),
            (
                "list-sent    GET …/requests?teamId=T&pg[limit]=50",
                list.clone(),
            ),
            ("detail       GET …/requests/{id}/detail", detail),
        ]
        .into_iter()
        .chain(deep)
        .chain([(
            "reminders    store: requests_due_for_nudge (200)",
            reminder_scan,
        )])
        .collect(),
        healthz_rate,
        create,
        list: ListBreakdown {
            get: list,
            token_check: auth,
            store_calls: vec![
                ("team check (access::may_see_team)", store_team_check),
                ("page of 50 (page_of_requests)", store_page),
                ("COUNT(*) of the team (count_requests)", store_count),
                ("credentials of 50 (list_credentials_of)", store_credentials),
                ("recipients (get_users, one query)", store_users),
            ],
            bytes: list_bytes,
            detail_bytes,
        },
        create_service,
        create_service_no_fsync,
        create_statements,
    })
}
