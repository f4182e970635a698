//! Crash safety (issue 14): the real server, `credence serve` as a child
//! process, is SIGKILLed [`KILLS`] times at random points while it is busy
//! with a mixed load — the requester creating credential requests, the
//! recipient authorizing their API-key credentials (each key verified against
//! a local app over HTTP) and revoking them, the outbox runner delivering the
//! notifications these produce to the local mailbox — and started again on
//! the same database after each kill. Then, from the database and the API:
//!
//! * no acknowledged write is lost: every create, authorization and
//!   revocation answered 2xx before a kill is there after the restarts;
//! * no request is half-written: each has every credential it asked for, its
//!   status is the one its credentials derive, an authorized credential holds
//!   a connection with its sealed secret and a revoked one none, and no
//!   connection or secret is left that nothing names;
//! * no notification is lost or sent for a change that did not commit: each
//!   committed change has its outbox row, each outbox row a committed change,
//!   and every row reaches the mailbox once the last instance runs;
//! * the audit log matches the changes one to one: each committed create,
//!   authorization (with its connection) and revocation has exactly one
//!   entry, and a refused call (some are made on purpose) none.
//!
//! A call in flight at a kill may have committed or not: the checks accept
//! either, but only whole — the change with its audit entry and its outbox
//! row, or none of them. The load and the kill points come from one seeded
//! RNG, printed on failure; `CREDENCE_CRASH_SEED=<seed>` replays its choices
//! (the interleaving of the concurrent calls is the machine's).

use crate::on_both_backends;
use crate::support::{
    assert_no_secret, credence_bin, credential_path, wait_until, Agency, Sql, WAIT_LIMIT,
};
use credence_domain::{derive_status, CredentialState, RequestId};
use credence_store::{
    AuditEntry, Backend, Connection, CredentialRequest, OutboxJob, OutboxSelection,
    RequestedCredential, Store,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// How many times the server is killed.
const KILLS: usize = 20;
/// Clients calling at once.
const WORKERS: usize = 4;
/// The two API-key apps of the [`Agency`]; a request asks for one or both.
const APPS: [&str; 2] = ["acme-crm", "beta-desk"];

/// Prints the seed when the test fails, so that the run can be replayed.
struct SeedNote(u64);

impl Drop for SeedNote {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "crash safety failed with seed {0}; replay with CREDENCE_CRASH_SEED={0}",
                self.0
            );
        }
    }
}

/// What the client knows of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered 2xx: it committed, and must be there.
    Acked,
    /// Answered otherwise: nothing of it may be there.
    Refused,
    /// No answer (the server was killed): all of it or nothing.
    Unknown,
}

/// A create call, by the unique request name it sent.
#[derive(Debug)]
struct Create {
    apps: Vec<&'static str>,
    /// False for a body the server must refuse (an unknown app).
    valid: bool,
    outcome: Outcome,
    /// From the answer: the request's id and its credentials' ids.
    id: Option<String>,
    credentials: Vec<String>,
}

/// What was asked of one credential the client learnt of.
#[derive(Debug, Default)]
struct Asked {
    authorize: Option<Outcome>,
    revoke: Option<Outcome>,
    /// Revocations of the credential while pending (refused with 409).
    wrong_revokes: Vec<Outcome>,
}

/// Everything the clients did, and what they may still do.
#[derive(Default)]
struct Ledger {
    creates: BTreeMap<String, Create>,
    credentials: BTreeMap<String, Asked>,
    /// Acknowledged credentials no call is using, never authorized.
    pending: Vec<String>,
    /// Acknowledged authorizations no call is using, never revoked.
    authorized: Vec<String>,
    /// Answers 5xx (each a failure).
    server_errors: Vec<String>,
    calls: usize,
    acked: usize,
    unknown: usize,
    refused: usize,
}

/// One call a client makes.
enum Op {
    Create {
        name: String,
        apps: Vec<&'static str>,
        valid: bool,
    },
    Authorize {
        credential: String,
        key: String,
    },
    Revoke {
        credential: String,
    },
    /// Revoking a pending credential: a conflict, which changes nothing.
    WrongRevoke {
        credential: String,
    },
}

/// What the clients of one round share.
struct Round {
    base: String,
    client: reqwest::Client,
    ledger: Arc<Mutex<Ledger>>,
    requester_token: String,
    recipient_token: String,
    recipient: i64,
    team: i64,
    /// The API key the recipient enters this round (the app accepts it).
    key: String,
    stop: AtomicBool,
    acked: tokio::sync::watch::Sender<usize>,
}

/// An answer, or none.
enum Answer {
    Answered(StatusCode, Value),
    Lost,
}

impl Round {
    async fn post(&self, path: &str, token: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Token {token}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Err(_) => Answer::Lost,
            Ok(response) => {
                let status = response.status();
                // A status came: the handler finished (a 2xx after its
                // commit), whether or not the body makes it before the kill.
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                assert_no_secret(&format!("the answer to POST {path}"), &body.to_string());
                Answer::Answered(status, body)
            }
        }
    }

    /// Picks the next call (taking the credential it uses out of the pools).
    fn choose(&self, rng: &mut StdRng, label: &str) -> Op {
        let mut ledger = self.ledger.lock().unwrap();
        let roll = rng.gen_range(0..100);
        let take = |pool: &mut Vec<String>, rng: &mut StdRng| {
            let at = rng.gen_range(0..pool.len());
            pool.swap_remove(at)
        };
        if (35..70).contains(&roll) && !ledger.pending.is_empty() {
            let credential = take(&mut ledger.pending, rng);
            return Op::Authorize {
                credential,
                key: self.key.clone(),
            };
        }
        if (70..92).contains(&roll) && !ledger.authorized.is_empty() {
            let credential = take(&mut ledger.authorized, rng);
            return Op::Revoke { credential };
        }
        if roll >= 92 && !ledger.pending.is_empty() {
            let credential = take(&mut ledger.pending, rng);
            return Op::WrongRevoke { credential };
        }
        let valid = rng.gen_range(0..12) != 0;
        let apps = if !valid {
            vec!["no-such-app"]
        } else if rng.gen_bool(0.5) {
            APPS.to_vec()
        } else {
            vec![APPS[rng.gen_range(0..APPS.len())]]
        };
        Op::Create {
            name: format!("Crash {label}"),
            apps,
            valid,
        }
    }

    /// Makes the call; answers whether it was acknowledged.
    async fn perform(&self, op: Op) -> bool {
        let answer = match &op {
            Op::Create { name, apps, .. } => {
                let body = json!({
                    "name": name,
                    "teamId": self.team,
                    "description": "Crash safety",
                    "credentials": apps.iter().map(|app| json!({ "appName": app, "appModules": ["*"] })).collect::<Vec<_>>(),
                    "provider": { "providerMakeUserId": self.recipient },
                });
                self.post(
                    "/api/v2/credential-requests/requests/v2",
                    &self.requester_token,
                    Some(body),
                )
                .await
            }
            Op::Authorize { credential, key } => {
                self.post(
                    &credential_path(credential, "authorize"),
                    &self.recipient_token,
                    Some(json!({ "data": { "apiKey": key } })),
                )
                .await
            }
            Op::Revoke { credential } | Op::WrongRevoke { credential } => {
                self.post(
                    &credential_path(credential, "revoke"),
                    &self.recipient_token,
                    None,
                )
                .await
            }
        };
        let outcome = match &answer {
            Answer::Answered(status, _) if status.is_success() => Outcome::Acked,
            Answer::Answered(_, _) => Outcome::Refused,
            Answer::Lost => Outcome::Unknown,
        };
        let mut ledger = self.ledger.lock().unwrap();
        ledger.calls += 1;
        match outcome {
            Outcome::Acked => ledger.acked += 1,
            Outcome::Refused => ledger.refused += 1,
            Outcome::Unknown => ledger.unknown += 1,
        }
        if let Answer::Answered(status, body) = &answer {
            if status.is_server_error() {
                ledger.server_errors.push(format!("{status}: {body}"));
            }
        }
        match op {
            Op::Create { name, apps, valid } => {
                let (mut id, mut credentials) = (None, Vec::new());
                if let (Outcome::Acked, Answer::Answered(_, body)) = (outcome, &answer) {
                    id = body["request"]["id"].as_str().map(str::to_string);
                    for credential in body["request"]["credentials"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        if let Some(credential) = credential["id"].as_str() {
                            credentials.push(credential.to_string());
                        }
                    }
                }
                for credential in &credentials {
                    ledger
                        .credentials
                        .insert(credential.clone(), Asked::default());
                    if valid {
                        ledger.pending.push(credential.clone());
                    }
                }
                ledger.creates.insert(
                    name,
                    Create {
                        apps,
                        valid,
                        outcome,
                        id,
                        credentials,
                    },
                );
            }
            Op::Authorize { credential, .. } => {
                ledger.credentials.get_mut(&credential).unwrap().authorize = Some(outcome);
                if outcome == Outcome::Acked {
                    ledger.authorized.push(credential);
                }
            }
            Op::Revoke { credential } => {
                ledger.credentials.get_mut(&credential).unwrap().revoke = Some(outcome);
            }
            Op::WrongRevoke { credential } => {
                ledger
                    .credentials
                    .get_mut(&credential)
                    .unwrap()
                    .wrong_revokes
                    .push(outcome);
                // Refused, it is pending still; otherwise it is left alone.
                if outcome == Outcome::Refused {
                    ledger.pending.push(credential);
                }
            }
        }
        outcome == Outcome::Acked
    }
}

/// One client: calls one after the other until the round stops.
async fn client(round: Arc<Round>, mut rng: StdRng, label: String) {
    let mut n = 0;
    while !round.stop.load(Ordering::SeqCst) {
        let op = round.choose(&mut rng, &format!("{label}-{n}"));
        if round.perform(op).await {
            round.acked.send_modify(|acked| *acked += 1);
        }
        n += 1;
    }
}

/// Where the server's files are, and how to start it.
struct Setup {
    dir: PathBuf,
    database_url: String,
    apps_dir: PathBuf,
    log: PathBuf,
}

/// A running `credence serve`; killed if dropped.
struct Server {
    child: tokio::process::Child,
    base: String,
}

impl Server {
    /// Starts the server and waits until it answers `/healthz`.
    async fn start(setup: &Setup, start: usize) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&setup.log)
            .unwrap();
        let mut child = tokio::process::Command::new(credence_bin())
            .env_clear()
            .current_dir(&setup.dir)
            .env("DATABASE_URL", &setup.database_url)
            .env("CREDENCE_DATA_DIR", &setup.dir)
            .env("CREDENCE_KEY_FILE", setup.dir.join("credence.key"))
            .env("CREDENCE_APPS_DIR", &setup.apps_dir)
            // Port 0: the server takes a free port and prints it.
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log.try_clone().unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("credence serve starts");
        let stdout = child.stdout.take().unwrap();
        let (printed, address) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            use std::io::Write;
            let mut log = log;
            let mut printed = Some(printed);
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(log, "{line}");
                if let Some(url) = line.strip_prefix("Credence is running at ") {
                    if let Some(printed) = printed.take() {
                        let _ = printed.send(url.trim().to_string());
                    }
                }
            }
        });
        let base = match tokio::time::timeout(WAIT_LIMIT, address).await {
            Ok(Ok(base)) => base,
            _ => panic!(
                "start {start}: credence serve printed no address\n{}",
                log_tail(&setup.log)
            ),
        };
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let healthz = format!("{base}/healthz");
        wait_until(&format!("start {start}: {healthz} answers"), || {
            let (client, healthz) = (client.clone(), healthz.clone());
            async move {
                client
                    .get(&healthz)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        Server { child, base }
    }

    /// Panics when the server exited by itself.
    fn assert_running(&mut self, setup: &Setup) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "credence serve exited by itself with {status}\n{}",
                log_tail(&setup.log)
            );
        }
    }

    /// SIGKILL; `then` runs once it is sent (before the exit is reaped).
    async fn kill(mut self, then: impl FnOnce()) {
        use std::os::unix::process::ExitStatusExt;
        self.child.start_kill().expect("SIGKILL sent");
        then();
        let status = self.child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    }

    /// SIGTERM, and a clean exit.
    async fn terminate(mut self, setup: &Setup) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: a signal to the child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(WAIT_LIMIT, self.child.wait())
            .await
            .expect("credence serve stops on SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "credence serve stopped with {status}\n{}",
            log_tail(&setup.log)
        );
    }
}

/// The end of the servers' output, for a failure's message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Where a round's kill comes.
#[derive(Debug)]
enum KillPoint {
    /// Once this many calls of the round were acknowledged.
    AfterAcks(usize),
    /// This long after the load started (a timer of the load).
    After(Duration),
}

/// Everything of the load the database holds, read after the last restart.
struct Stored {
    requests: Vec<(CredentialRequest, Vec<RequestedCredential>)>,
    audit: Vec<AuditEntry>,
    outbox: Vec<(OutboxJob, Value)>,
    /// Deliveries to the mailbox, by outbox row.
    mailbox: HashMap<i64, usize>,
    connections: Vec<Connection>,
    /// Connections whose sealed secret is missing.
    secretless: Vec<i64>,
    /// Secrets no connection names.
    unnamed_secrets: i64,
}

/// Connections' secrets that no connection names (none before the load,
/// none after).
const UNNAMED_SECRETS: &str = "SELECT COUNT(*) FROM secrets s WHERE s.purpose = 'connection' \
     AND NOT EXISTS (SELECT 1 FROM connections c WHERE c.secret_id = s.id)";

async fn read_stored(
    store: &Store,
    sql: &mut Sql,
    vault: &credence_vault::Vault,
    team: credence_domain::TeamId,
    baseline: (i64, i64),
) -> Stored {
    let mut db = store.db().await.unwrap();
    let mut requests = Vec::new();
    for id in sql
        .column::<String>("SELECT id FROM credential_requests ORDER BY id")
        .await
    {
        let id = RequestId::parse("id", &id).unwrap();
        let request = db.get_request(id).await.unwrap().unwrap();
        let credentials = db.list_credentials(id).await.unwrap();
        requests.push((request, credentials));
    }
    let (audit, _) = db
        .list_audit(&credence_store::AuditFilter {
            limit: 1_000_000,
            oldest_first: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let audit = audit.into_iter().filter(|e| e.id > baseline.0).collect();
    let outbox = db
        .list_outbox_jobs(OutboxSelection::All, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|job| job.id > baseline.1)
        .map(|job| {
            let payload = credence::service::audit::open_outbox(vault, &job.message())
                .expect("an outbox payload opens");
            (job, payload)
        })
        .collect();
    let mut mailbox = HashMap::new();
    for entry in db.list_mailbox(None, 1_000_000).await.unwrap() {
        *mailbox.entry(entry.outbox_id).or_insert(0) += 1;
    }
    let connections = db.list_connections(team).await.unwrap();
    let mut secretless = Vec::new();
    for connection in &connections {
        let sealed = match &connection.secret_id {
            Some(secret) => db.get_secret(secret).await.unwrap(),
            None => None,
        };
        if sealed.is_none() {
            secretless.push(connection.id);
        }
    }
    Stored {
        requests,
        audit,
        outbox,
        mailbox,
        connections,
        secretless,
        unnamed_secrets: sql.value::<i64>(UNNAMED_SECRETS).await,
    }
}

/// The problems of `stored` against what the clients were told.
fn problems(ledger: &Ledger, stored: &Stored, recipient_email: &str) -> Vec<String> {
    use CredentialState as S;
    let mut problems = Vec::new();
    // Audit entries and outbox rows by (what, whom).
    let mut audited: HashMap<(&str, &str), usize> = HashMap::new();
    let mut connections_of: HashMap<String, Vec<i64>> = HashMap::new();
    for entry in &stored.audit {
        match entry.event.as_str() {
            "credential_request.created" | "credential.authorized" | "credential.revoked" => {
                *audited
                    .entry((entry.event.as_str(), entry.target_id.as_str()))
                    .or_insert(0) += 1;
            }
            "connection.created" => {
                let details: Value = serde_json::from_str(&entry.details).unwrap();
                let credential = details["credentialId"].as_str().unwrap_or("").to_string();
                connections_of
                    .entry(credential)
                    .or_default()
                    .push(entry.target_id.parse().unwrap_or(-1));
            }
            other => problems.push(format!(
                "audit entry {} is {other}, which the load does not do: {}",
                entry.id, entry.details
            )),
        }
    }
    let mut told: HashMap<(&str, String), Vec<&OutboxJob>> = HashMap::new();
    for (job, payload) in &stored.outbox {
        let about = match job.kind.as_str() {
            "credential_request.received" => &payload["requestId"],
            "credential.authorized" | "credential.revoked" => &payload["credentialId"],
            other => {
                problems.push(format!(
                    "outbox row {} is {other}, which the load does not do",
                    job.id
                ));
                continue;
            }
        };
        told.entry((job.kind.as_str(), about.as_str().unwrap_or("").to_string()))
            .or_default()
            .push(job);
        if job.sent_at.is_none() || job.sent_via.as_deref() != Some("mailbox") {
            problems.push(format!(
                "outbox row {} ({}) was not delivered: {job:?}",
                job.id, job.kind
            ));
        }
        if stored.mailbox.get(&job.id).copied().unwrap_or(0) == 0 {
            problems.push(format!(
                "outbox row {} ({}) is not in the mailbox",
                job.id, job.kind
            ));
        }
    }
    let audits = |event: &str, target: &str| audited.get(&(event, target)).copied().unwrap_or(0);
    let tells = |kind: &str, about: &str| {
        told.get(&(kind, about.to_string()))
            .map(Vec::len)
            .unwrap_or(0)
    };
    let connection_ids: HashMap<i64, &Connection> =
        stored.connections.iter().map(|c| (c.id, c)).collect();

    // Each stored request: made by a call that may have committed, whole.
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let (mut granted, mut revoked) = (0, 0);
    for (request, credentials) in &stored.requests {
        let id = request.id.to_string();
        *by_name.entry(request.name.as_str()).or_insert(0) += 1;
        match ledger.creates.get(&request.name) {
            None => problems.push(format!(
                "request {id} ({}) was made by no call",
                request.name
            )),
            Some(create) => {
                if !create.valid || create.outcome == Outcome::Refused {
                    problems.push(format!(
                        "request {id} ({}) is stored, but its create was refused: {create:?}",
                        request.name
                    ));
                }
                if create.id.as_ref().is_some_and(|known| *known != id) {
                    problems.push(format!(
                        "request {} is stored as {id}: {create:?}",
                        request.name
                    ));
                }
                let apps: Vec<&str> = credentials.iter().map(|c| c.app_key.as_str()).collect();
                if apps != create.apps {
                    problems.push(format!(
                        "request {id} holds credentials for {apps:?}, asked for {:?}",
                        create.apps
                    ));
                }
                let ids: Vec<String> = credentials.iter().map(|c| c.id.to_string()).collect();
                if !create.credentials.is_empty() && ids != create.credentials {
                    problems.push(format!(
                        "request {id} holds credentials {ids:?}, answered {:?}",
                        create.credentials
                    ));
                }
            }
        }
        let states: Vec<CredentialState> = credentials.iter().map(|c| c.state).collect();
        let derived = derive_status(&states, request.opened_at.is_some());
        if request.status != derived {
            problems.push(format!(
                "request {id} is {:?}, its credentials {states:?} make it {derived:?}",
                request.status
            ));
        }
        if audits("credential_request.created", &id) != 1 {
            problems.push(format!(
                "request {id} has {} creation audit entries",
                audits("credential_request.created", &id)
            ));
        }
        match told.get(&("credential_request.received", id.clone())) {
            Some(rows) if rows.len() == 1 && rows[0].recipient_email == recipient_email => {}
            rows => problems.push(format!(
                "request {id} has these notifications to its recipient: {rows:?}"
            )),
        }

        for credential in credentials {
            let cid = credential.id.to_string();
            let authorized = audits("credential.authorized", &cid);
            let revocations = audits("credential.revoked", &cid);
            let made = connections_of.get(&cid).cloned().unwrap_or_default();
            let authorized_told = tells("credential.authorized", &cid);
            let revoked_told = tells("credential.revoked", &cid);
            let expected = match credential.state {
                S::Pending => (0, 0),
                S::Authorized => (1, 0),
                S::Revoked => (1, 1),
                other => {
                    problems.push(format!(
                        "credential {cid} is {other}, which the load never makes"
                    ));
                    continue;
                }
            };
            if (authorized, revocations) != expected
                || (made.len(), revoked_told) != expected
                || authorized_told != expected.0
            {
                problems.push(format!(
                    "credential {cid} is {}: audited authorized {authorized}, revoked {revocations}, \
                     connections created {made:?}; told authorized {authorized_told}, revoked {revoked_told}",
                    credential.state
                ));
            }
            match credential.state {
                S::Authorized => {
                    granted += 1;
                    let holds = credential.connection_id;
                    if holds.is_none() || made.first().copied() != holds {
                        problems.push(format!(
                            "credential {cid} is authorized holding {holds:?}; created {made:?}"
                        ));
                    }
                    if !holds.is_some_and(|c| connection_ids.contains_key(&c)) {
                        problems.push(format!(
                            "credential {cid} holds {holds:?}, which is not stored"
                        ));
                    }
                }
                S::Revoked => {
                    revoked += 1;
                    if credential.connection_id.is_some() {
                        problems.push(format!("revoked credential {cid} still holds a connection"));
                    }
                    for connection in &made {
                        if connection_ids.contains_key(connection) {
                            problems.push(format!(
                                "connection {connection} of revoked credential {cid} is still stored"
                            ));
                        }
                    }
                }
                _ => {
                    if credential.connection_id.is_some() {
                        problems.push(format!("pending credential {cid} holds a connection"));
                    }
                }
            }
            // What the client was told of this credential.
            let Some(asked) = ledger.credentials.get(&cid) else {
                continue;
            };
            let authorize_ok = matches!(credential.state, S::Authorized | S::Revoked);
            match asked.authorize {
                Some(Outcome::Acked) if !authorize_ok => problems.push(format!(
                    "credential {cid}: its acknowledged authorization is lost (it is {})",
                    credential.state
                )),
                Some(Outcome::Refused) | None if authorize_ok => problems.push(format!(
                    "credential {cid} is {} but no call authorized it ({:?})",
                    credential.state, asked.authorize
                )),
                _ => {}
            }
            let revoke_ok = credential.state == S::Revoked;
            match asked.revoke {
                Some(Outcome::Acked) if !revoke_ok => problems.push(format!(
                    "credential {cid}: its acknowledged revocation is lost (it is {})",
                    credential.state
                )),
                Some(Outcome::Refused) | None if revoke_ok => problems.push(format!(
                    "credential {cid} is revoked but no call revoked it ({:?})",
                    asked.revoke
                )),
                _ => {}
            }
            if asked.wrong_revokes.contains(&Outcome::Acked) {
                problems.push(format!(
                    "credential {cid}: revoking it while pending was acknowledged"
                ));
            }
        }
    }

    // Every acknowledged create is stored, once.
    for (name, create) in &ledger.creates {
        let count = by_name.get(name.as_str()).copied().unwrap_or(0);
        if count > 1 || (create.outcome == Outcome::Acked && count == 0) {
            problems.push(format!(
                "request {name} is stored {count} times: {create:?}"
            ));
        }
        if create.outcome == Outcome::Acked && !create.valid {
            problems.push(format!(
                "request {name} with an unknown app was acknowledged"
            ));
        }
    }
    // Nothing audited or told about what is not stored.
    let stored_requests = stored.requests.len();
    let count = |event: &str| {
        audited
            .iter()
            .filter(|((e, _), _)| *e == event)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    let told_count = |kind: &str| {
        told.iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, rows)| rows.len())
            .sum::<usize>()
    };
    let made: usize = connections_of.values().map(Vec::len).sum();
    for (what, found, expected) in [
        (
            "creation audit entries",
            count("credential_request.created"),
            stored_requests,
        ),
        (
            "authorization audit entries",
            count("credential.authorized"),
            granted + revoked,
        ),
        ("connection audit entries", made, granted + revoked),
        (
            "revocation audit entries",
            count("credential.revoked"),
            revoked,
        ),
        (
            "request notifications",
            told_count("credential_request.received"),
            stored_requests,
        ),
        (
            "authorization notifications",
            told_count("credential.authorized"),
            granted + revoked,
        ),
        (
            "revocation notifications",
            told_count("credential.revoked"),
            revoked,
        ),
        ("connections", stored.connections.len(), granted),
    ] {
        if found != expected {
            problems.push(format!("{found} {what}, for {expected} committed changes"));
        }
    }
    if !stored.secretless.is_empty() {
        problems.push(format!(
            "connections {:?} have no sealed secret",
            stored.secretless
        ));
    }
    if stored.unnamed_secrets != 0 {
        problems.push(format!(
            "{} secrets are named by no connection",
            stored.unnamed_secrets
        ));
    }
    for error in &ledger.server_errors {
        problems.push(format!("a call answered {error}"));
    }
    problems
}

async fn the_server_killed_twenty_times_under_load_loses_nothing_and_leaves_nothing_half_done(
    backend: Backend,
) {
    let seed: u64 = std::env::var("CREDENCE_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random);
    let _note = SeedNote(seed);
    eprintln!("crash safety on {backend:?}: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    // The people, their tokens and the apps, seeded by an in-process server
    // that then stops; from here on only `credence serve` runs.
    let agency = Agency::start(backend).await;
    let upstream = agency.upstream.clone();
    let (requester_token, recipient_token) = (agency.requester_token, agency.teammate_token);
    let (recipient, recipient_email) = (agency.teammate.id, agency.teammate.email);
    let (team, database_url) = (agency.app.team, agency.app.database_url.clone());
    let apps_dir = agency.app.config.apps_dir.clone().unwrap();
    let dir = agency.app.stop_keeping_files().await;
    let setup = Setup {
        dir: dir.path().to_path_buf(),
        database_url: database_url.clone(),
        apps_dir,
        log: dir.path().join("serve.log"),
    };
    let mut sql = Sql::connect(backend, &database_url).await;
    let baseline = (
        sql.value::<i64>("SELECT COALESCE(MAX(id), 0) FROM audit_log")
            .await,
        sql.value::<i64>("SELECT COALESCE(MAX(id), 0) FROM outbox")
            .await,
    );
    assert_eq!(sql.value::<i64>(UNNAMED_SECRETS).await, 0);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for kill in 0..KILLS {
        let mut server = Server::start(&setup, kill).await;
        let point = if rng.gen_bool(0.5) {
            KillPoint::AfterAcks(rng.gen_range(1..=24))
        } else {
            KillPoint::After(Duration::from_millis(rng.gen_range(10..=1500)))
        };
        let (acked, mut acks) = tokio::sync::watch::channel(0);
        // One key a round: each key joins the suite's secrets, which every
        // log line of the test process is checked against.
        let key = format!("crash-key-{seed}-{kill}-{}", uuid::Uuid::new_v4().simple());
        upstream.accept(&key);
        let round = Arc::new(Round {
            base: server.base.clone(),
            // Idle connections go long before the server's idle timeout: a
            // call failing on one closed by the server would count as lost.
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(1))
                .timeout(WAIT_LIMIT)
                .build()
                .unwrap(),
            ledger: ledger.clone(),
            requester_token: requester_token.clone(),
            recipient_token: recipient_token.clone(),
            recipient: recipient.0,
            team: team.0,
            key,
            stop: AtomicBool::new(false),
            acked,
        });
        let clients: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let rng = StdRng::seed_from_u64(rng.gen());
                tokio::spawn(client(round.clone(), rng, format!("{kill}-{worker}")))
            })
            .collect();
        match point {
            KillPoint::AfterAcks(n) => {
                let reached = tokio::time::timeout(WAIT_LIMIT, acks.wait_for(|acked| *acked >= n));
                if !matches!(reached.await, Ok(Ok(_))) {
                    server.assert_running(&setup);
                    panic!("kill {kill}: {n} calls were not acknowledged within {WAIT_LIMIT:?}");
                }
            }
            // A timer of the load: where the kill falls, not a wait for anything.
            KillPoint::After(delay) => tokio::time::sleep(delay).await,
        }
        server.assert_running(&setup);
        // The clients start no call after the kill (it could only be lost).
        server
            .kill(|| round.stop.store(true, Ordering::SeqCst))
            .await;
        for client in clients {
            client.await.expect("a client ran to the end");
        }
    }

    // A killed instance's claims on outbox rows hold for its lease (two
    // minutes) before another instance takes them: the clock moves past
    // them here (no instance runs) instead of the test waiting.
    sql.execute(
        "UPDATE outbox SET lease_until = NULL WHERE sent_at IS NULL AND lease_until IS NOT NULL",
    )
    .await;
    let server = Server::start(&setup, KILLS).await;
    let delivered = format!(
        "SELECT COUNT(*) FROM outbox WHERE id > {} AND sent_at IS NULL AND dead_lettered_at IS NULL",
        baseline.1
    );
    let sql = Arc::new(tokio::sync::Mutex::new(sql));
    wait_until(
        "every notification is delivered after the last restart",
        || {
            let (sql, delivered) = (sql.clone(), delivered.clone());
            async move { sql.lock().await.value::<i64>(&delivered).await == 0 }
        },
    )
    .await;
    let mut sql = Arc::try_unwrap(sql).ok().unwrap().into_inner();

    let store = Store::connect(&database_url, false).await.unwrap();
    let vault = credence_vault::Vault::open_or_create(&setup.dir.join("credence.key")).unwrap();
    let stored = read_stored(&store, &mut sql, &vault, team, baseline).await;

    // The API shows each request and its credentials as stored.
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for (request, credentials) in &stored.requests {
        let response = client
            .get(format!(
                "{}/api/v2/credential-requests/requests/{}/detail",
                server.base, request.id
            ))
            .header("Authorization", format!("Token {requester_token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let detail = response.json::<Value>().await.unwrap()["requestDetail"].clone();
        assert_eq!(detail["status"], json!(request.status), "{detail}");
        let shown: Vec<(String, String)> = detail["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_string(),
                    c["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let kept: Vec<(String, String)> = credentials
            .iter()
            .map(|c| (c.id.to_string(), c.state.as_str().to_string()))
            .collect();
        assert_eq!(shown, kept, "request {}", request.id);
    }
    server.terminate(&setup).await;
    store.close().await;
    sql.close().await;
    assert_no_secret(
        "the server's logs",
        &std::fs::read_to_string(&setup.log).unwrap(),
    );

    let ledger = ledger.lock().unwrap();
    let found = problems(&ledger, &stored, &recipient_email);
    // The calls without an answer whose change is there all the same.
    let stored_names: std::collections::HashSet<&str> = stored
        .requests
        .iter()
        .map(|(r, _)| r.name.as_str())
        .collect();
    let states: HashMap<String, CredentialState> = stored
        .requests
        .iter()
        .flat_map(|(_, credentials)| credentials.iter().map(|c| (c.id.to_string(), c.state)))
        .collect();
    let committed_unknown = ledger
        .creates
        .iter()
        .filter(|(name, c)| c.outcome == Outcome::Unknown && stored_names.contains(name.as_str()))
        .count()
        + ledger
            .credentials
            .iter()
            .filter(|(id, asked)| {
                let state = states.get(id.as_str());
                (asked.authorize == Some(Outcome::Unknown)
                    && matches!(
                        state,
                        Some(CredentialState::Authorized | CredentialState::Revoked)
                    ))
                    || (asked.revoke == Some(Outcome::Unknown)
                        && state == Some(&CredentialState::Revoked))
            })
            .count();
    eprintln!(
        "crash safety on {backend:?}: {} calls ({} acknowledged, {} refused, {} without an answer, \
         {committed_unknown} of which committed), {} requests stored, {} audit entries, {} notifications \
         ({} delivered again after a kill between delivery and its record)",
        ledger.calls,
        ledger.acked,
        ledger.refused,
        ledger.unknown,
        stored.requests.len(),
        stored.audit.len(),
        stored.outbox.len(),
        stored.mailbox.values().filter(|n| **n > 1).count()
    );
    assert!(
        found.is_empty(),
        "{} problems after {KILLS} kills:\n{}",
        found.len(),
        found.join("\n")
    );
    // The kills fell on calls in flight, and refused calls were made.
    assert!(ledger.unknown > 0, "no call was in flight at any kill");
    assert!(ledger.refused > 0, "no refused call was made");
    assert!(
        ledger
            .credentials
            .values()
            .any(|c| c.revoke == Some(Outcome::Acked)),
        "no revocation was acknowledged"
    );
}

on_both_backends!(
    the_server_killed_twenty_times_under_load_loses_nothing_and_leaves_nothing_half_done
);
