//! The operator's command line, run as the real `credence` binary against a
//! fresh database of each backend: every command prints what it created and
//! the rows are really there; bad input is refused with a message naming the
//! problem and changes nothing; bad database URLs are clear errors; `serve`
//! works end to end (setup link, sign-in, API token, SIGTERM) without leaking
//! secrets into its output; `keys rotate` re-wraps stored secrets.
//!
//! Each run clears the `CREDENCE_*` and `DATABASE_URL` variables it inherits,
//! works in a temporary directory, and is killed if it does not finish in time.

use crate::on_both_backends;
use crate::support::{browser, credence_bin, fresh_database, postgres_admin_url, Sql};
use credence::config::Config;
use credence::service::{auth, secrets};
use credence::startup::{open_store, open_vault};
use credence_domain::{Feature, OrgRole, OrganizationId, Plan, TeamId, TeamRole, UserId};
use credence_store::{Backend, Store};
use secrecy::{ExposeSecret, SecretString};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Variables that would point the binary somewhere other than the test's database.
const INHERITED_SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "CREDENCE_CONFIG",
    "CREDENCE_DATA_DIR",
    "CREDENCE_KEY_FILE",
    "CREDENCE_LISTEN",
    "CREDENCE_PUBLIC_URL",
    "CREDENCE_LOG_FORMAT",
    "CREDENCE_LOG",
];

/// The longest a single command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The tables whose row counts must not move when a command is refused.
const TABLES: &[&str] = &[
    "organizations",
    "teams",
    "users",
    "organization_members",
    "team_members",
    "feature_grants",
    "setup_links",
    "api_tokens",
    "sessions",
    "secrets",
];

/// A finished run of the binary.
struct Ran {
    command: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Asserts the command succeeded; returns its standard output.
    fn succeeded(&self) -> &str {
        assert!(
            self.status.success(),
            "`{}` failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts the command failed with a lowercase `error: …` line; returns the
    /// message of that line.
    fn refused(&self) -> &str {
        assert!(
            !self.status.success(),
            "`{}` should have failed but succeeded\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        let message = self
            .stderr
            .lines()
            .find_map(|line| line.strip_prefix("error: "))
            .unwrap_or_else(|| {
                panic!(
                    "`{}` printed no `error: …` line; stderr:\n{}",
                    self.command, self.stderr
                )
            });
        assert!(
            message.starts_with(|c: char| c.is_lowercase() || c.is_ascii_digit()),
            "the message of `{}` does not start in lowercase: {message:?}",
            self.command
        );
        message
    }
}

/// Reads a pipe to its end on a thread, appending to a shared buffer as it goes.
fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    })
}

/// `credence` with the inherited settings removed, working in `dir`.
fn credence_in(dir: &Path) -> Command {
    let mut command = Command::new(credence_bin());
    for name in INHERITED_SETTINGS {
        command.env_remove(name);
    }
    command.current_dir(dir);
    command
}

/// Runs `command` to its end (at most [`COMMAND_TIMEOUT`]), feeding it `input`.
fn finish(mut command: Command, input: Option<&str>) -> Ran {
    let shown = format!("{command:?}");
    tokio::task::block_in_place(|| {
        command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the credence binary starts");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = [
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for credence") {
                break status;
            }
            if started.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{shown}` did not finish within {COMMAND_TIMEOUT:?}; stderr so far:\n{}",
                    stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for reader in readers {
            reader.join().unwrap();
        }
        let stdout = stdout.lock().unwrap().clone();
        let stderr = stderr.lock().unwrap().clone();
        Ran {
            command: shown,
            status,
            stdout,
            stderr,
        }
    })
}

/// An operator at a shell: a temporary directory, a fresh database and a key
/// file, and the binary pointed at them through the environment.
struct Operator {
    dir: tempfile::TempDir,
    database_url: String,
}

impl Operator {
    async fn new(backend: Backend) -> Operator {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = fresh_database(backend, dir.path()).await;
        Operator { dir, database_url }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("credence.key")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = credence_in(self.dir.path());
        command
            .env("DATABASE_URL", &self.database_url)
            .env("CREDENCE_DATA_DIR", self.data_dir())
            .env("CREDENCE_KEY_FILE", self.key_file())
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Ran {
        finish(self.command(args), None)
    }

    fn run_with_stdin(&self, args: &[&str], input: &str) -> Ran {
        finish(self.command(args), Some(input))
    }

    /// The same settings as the binary gets, for the library.
    fn config(&self) -> Config {
        Config {
            data_dir: self.data_dir(),
            database_url: Some(self.database_url.clone()),
            key_file: Some(self.key_file()),
            ..Config::default()
        }
    }

    /// The database, opened without creating anything.
    async fn store(&self) -> Store {
        Store::connect(&self.database_url, false)
            .await
            .expect("the database the binary created opens")
    }

    /// How many rows each of [`TABLES`] holds.
    async fn row_counts(&self) -> Vec<(&'static str, i64)> {
        row_counts(&self.database_url).await
    }
}

async fn row_counts(url: &str) -> Vec<(&'static str, i64)> {
    let mut sql = Sql::open(url).await;
    let mut counts = Vec::new();
    for table in TABLES {
        let n: i64 = sql.value(&format!("SELECT COUNT(*) FROM {table}")).await;
        counts.push((*table, n));
    }
    // Closed at once, so that SQLite's lock is gone before the next command.
    sql.close().await;
    counts
}

/// The number printed right after `prefix`, e.g. the id in `user 3 created`.
fn number_after(text: &str, prefix: &str) -> i64 {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} is not in the output:\n{text}"))
        + prefix.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in:\n{text}"))
}

/// The word printed right after `prefix` (up to whitespace or the line's end).
fn word_after<'t>(text: &'t str, prefix: &str) -> &'t str {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} is not in the output:\n{text}"))
        + prefix.len();
    let rest = &text[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    &rest[..end]
}

/// The value of the `<input name="{name}" value="…">` in a page.
fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no input {name:?} in the page:\n{html}"));
    let tag = &html[at..at + html[at..].find('>').expect("the tag closes")];
    let value = tag
        .find("value=\"")
        .map(|i| &tag[i + "value=\"".len()..])
        .unwrap_or_else(|| panic!("input {name:?} has no value: {tag}"));
    value[..value.find('"').expect("the value is quoted")].to_string()
}

fn assert_mode_0600(path: &Path) {
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} has mode {:o}",
        path.display(),
        mode & 0o777
    );
}

/// The feature gate from the operator's side: a user's request is recorded with
/// the eligibility check, listed, refused for a free-mail address, granted for a
/// corporate one; joining another qualifying organization tells its owners.
async fn feature_requests_are_recorded_checked_listed_and_granted_by_rule(backend: Backend) {
    let operator = Operator::new(backend).await;
    operator.run(&["migrate"]).succeeded();
    let enterprise = OrganizationId(number_after(
        operator
            .run(&["org", "add", "--name", "Big", "--plan", "enterprise"])
            .succeeded(),
        "organization ",
    ));
    let partner = OrganizationId(number_after(
        operator
            .run(&[
                "org",
                "add",
                "--name",
                "Partner",
                "--plan",
                "core",
                "--partner",
            ])
            .succeeded(),
        "organization ",
    ));
    for (email, name) in [
        ("owner@big.example", "Owner"),
        ("pat@partner.example", "Pat"),
        ("dana@corp.example", "Dana"),
        ("fred@gmail.com", "Fred"),
    ] {
        let org = if email.starts_with("pat") {
            partner
        } else {
            enterprise
        };
        let role = if email.starts_with("owner") || email.starts_with("pat") {
            "owner"
        } else {
            "member"
        };
        operator
            .run_with_stdin(
                &[
                    "user",
                    "add",
                    "--email",
                    email,
                    "--name",
                    name,
                    "--org",
                    &org.to_string(),
                    "--org-role",
                    role,
                    "--password-stdin",
                ],
                "a long enough password",
            )
            .succeeded();
    }

    let out = operator.run(&["feature", "request", "--email", "dana@corp.example"]);
    assert!(
        out.succeeded().contains("recorded") && out.stdout.contains("eligible: grant it"),
        "{}",
        out.stdout
    );
    let out = operator.run(&["feature", "request", "--email", "fred@gmail.com"]);
    assert!(
        out.succeeded()
            .contains("not eligible: fred@gmail.com is a free-mail address"),
        "{}",
        out.stdout
    );
    let out = operator.run(&["feature", "requests"]);
    let listed = out.succeeded();
    assert!(
        listed.contains("dana@corp.example") && listed.contains(": eligible"),
        "{listed}"
    );
    assert!(
        listed.contains("fred@gmail.com") && listed.contains("not eligible"),
        "{listed}"
    );

    let refused = operator.run(&["feature", "grant", "--email", "fred@gmail.com"]);
    assert!(
        refused.refused().contains("free-mail"),
        "{}",
        refused.stderr
    );
    operator
        .run(&["feature", "grant", "--email", "dana@corp.example"])
        .succeeded();
    let out = operator.run(&["feature", "requests"]);
    assert!(
        !out.succeeded().contains("dana@corp.example"),
        "a granted request is closed: {}",
        out.stdout
    );

    // Dana joins the partner organization: its owner is told.
    let out = operator.run(&[
        "user",
        "join",
        "--email",
        "dana@corp.example",
        "--org",
        &partner.to_string(),
        "--org-role",
        "member",
    ]);
    assert!(
        out.succeeded()
            .contains(&format!("joined organization {partner} as member")),
        "{}",
        out.stdout
    );
    let store = operator.store().await;
    let outbox = store
        .db()
        .await
        .unwrap()
        .list_unsent_outbox()
        .await
        .unwrap();
    let told: Vec<&str> = outbox
        .iter()
        .filter(|m| m.kind == "feature.granted")
        .map(|m| m.recipient_email.as_str())
        .collect();
    assert_eq!(
        told,
        ["owner@big.example", "pat@partner.example"],
        "the owner of Big at the grant, of Partner at the join"
    );
    let again = operator.run(&[
        "user",
        "join",
        "--email",
        "dana@corp.example",
        "--org",
        &partner.to_string(),
        "--org-role",
        "member",
    ]);
    assert!(
        again.refused().contains("already a member"),
        "{}",
        again.stderr
    );
}

on_both_backends!(
    feature_requests_are_recorded_checked_listed_and_granted_by_rule,
    operator_commands_print_what_they_create_and_the_rows_are_there,
    bad_input_is_refused_with_a_message_and_changes_nothing,
    a_database_url_of_an_unknown_scheme_is_named_in_the_error,
    a_database_that_does_not_exist_is_an_error_and_is_not_created,
    serve_runs_end_to_end_and_stops_cleanly_on_sigterm,
    keys_rotate_rewraps_stored_secrets_under_a_new_version,
);

async fn operator_commands_print_what_they_create_and_the_rows_are_there(backend: Backend) {
    let operator = Operator::new(backend).await;

    let out = operator.run(&["migrate"]);
    assert!(
        out.succeeded().contains("migrations applied"),
        "{}",
        out.stdout
    );
    // Migrating again is harmless.
    operator.run(&["migrate"]).succeeded();

    let out = operator.run(&[
        "org",
        "add",
        "--name",
        "Acme Corp",
        "--plan",
        "pro",
        "--partner",
    ]);
    let printed = out.succeeded();
    let acme = OrganizationId(number_after(printed, "organization "));
    assert!(
        printed.contains("name \"Acme Corp\", plan pro, partner true"),
        "{printed}"
    );
    let out = operator.run(&["org", "add", "--name", "Plain", "--plan", "free"]);
    let printed = out.succeeded();
    let plain = OrganizationId(number_after(printed, "organization "));
    assert_ne!(plain, acme);
    assert!(printed.contains("plan free, partner false"), "{printed}");

    let out = operator.run(&["team", "add", "--org", &acme.to_string(), "--name", "Ops"]);
    let printed = out.succeeded();
    let ops = TeamId(number_after(printed, "team "));
    assert!(
        printed.contains(&format!("name \"Ops\", organization {acme}")),
        "{printed}"
    );

    let ann_password = "correct horse battery staple";
    let out = operator.run_with_stdin(
        &[
            "user",
            "add",
            "--email",
            "ann@example.com",
            "--name",
            "Ann Admin",
            "--org",
            &acme.to_string(),
            "--org-role",
            "admin",
            "--team",
            &ops.to_string(),
            "--team-role",
            "admin",
            "--password-stdin",
        ],
        &format!("{ann_password}\n"),
    );
    let printed = out.succeeded();
    let ann = UserId(number_after(printed, "user "));
    assert!(
        printed.contains(&format!(
            "email ann@example.com, name \"Ann Admin\", organization {acme} as admin"
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("user {ann} joined team {ops} as admin")),
        "{printed}"
    );
    assert!(
        !printed.contains("setup"),
        "a user with a password gets no setup link: {printed}"
    );
    assert!(!printed.contains(ann_password) && !out.stderr.contains(ann_password));

    let out = operator.run(&[
        "user",
        "add",
        "--email",
        "bob@example.com",
        "--name",
        "Bob",
        "--org",
        &acme.to_string(),
        "--org-role",
        "member",
    ]);
    let printed = out.succeeded();
    let bob = UserId(number_after(printed, "user "));
    assert_ne!(bob, ann);
    assert!(printed.contains("one-time setup link"), "{printed}");
    let first_link = word_after(printed, "/setup/").to_string();
    assert_eq!(first_link.len(), 43, "a 256-bit token: {printed}");

    let out = operator.run(&["user", "setup-link", "--email", "BOB@example.com"]);
    let printed = out.succeeded();
    assert!(
        printed.contains(&format!("one-time setup link for user {bob}")),
        "{printed}"
    );
    let second_link = word_after(printed, "/setup/").to_string();
    assert_eq!(second_link.len(), 43, "{printed}");
    assert_ne!(second_link, first_link, "every link is new");

    let out = operator.run(&[
        "token",
        "create",
        "--email",
        "ann@example.com",
        "--name",
        "CI",
        "--scopes",
        "user:read,teams:read",
    ]);
    let printed = out.succeeded();
    let token_id = number_after(printed, "api token ");
    assert!(
        printed.contains(&format!(
            "created for user {ann}: name \"CI\", scopes teams:read user:read"
        )),
        "{printed}"
    );
    let token = word_after(printed, "token (shown once, keep it safe): ").to_string();
    assert_eq!(token.len(), 36, "a UUID-shaped token: {printed}");
    assert_eq!(
        printed.matches(&token).count(),
        1,
        "the token is printed once"
    );
    assert!(!out.stderr.contains(&token), "the log holds no token");

    let out = operator.run(&["feature", "grant", "--email", "ann@example.com"]);
    assert!(
        out.succeeded().contains(&format!(
            "feature credential-requests granted to user {ann} (ann@example.com)"
        )),
        "{}",
        out.stdout
    );
    let out = operator.run(&["feature", "grant", "--email", "Ann@Example.com"]);
    assert!(
        out.succeeded().contains(&format!(
            "user {ann} (ann@example.com) already has the feature credential-requests"
        )),
        "{}",
        out.stdout
    );

    // Now the rows, through the store.
    let store = operator.store().await;
    let mut db = store.db().await.unwrap();
    let organization = db
        .get_organization(acme)
        .await
        .unwrap()
        .expect("acme exists");
    assert_eq!(organization.name, "Acme Corp");
    assert_eq!(organization.plan, Plan::Pro);
    assert!(organization.partner);
    let organization = db
        .get_organization(plain)
        .await
        .unwrap()
        .expect("plain exists");
    assert_eq!(
        (
            organization.name.as_str(),
            organization.plan,
            organization.partner
        ),
        ("Plain", Plan::Free, false)
    );
    let team = db.get_team(ops).await.unwrap().expect("ops exists");
    assert_eq!((team.organization_id, team.name.as_str()), (acme, "Ops"));

    let user = db
        .find_user_by_email("ANN@example.com")
        .await
        .unwrap()
        .expect("ann exists");
    assert_eq!(user.id, ann);
    assert_eq!(user.email, "ann@example.com");
    assert_eq!(user.name, "Ann Admin");
    let hash = user.password_hash.as_deref().expect("ann has a password");
    assert!(hash.starts_with("$argon2id$"), "an argon2id hash");
    assert!(!hash.contains(ann_password));
    let user = db
        .find_user_by_email("bob@example.com")
        .await
        .unwrap()
        .expect("bob exists");
    assert_eq!(user.id, bob);
    assert!(user.password_hash.is_none(), "bob chooses a password later");

    let members = db.list_team_members(ops).await.unwrap();
    assert_eq!(members.len(), 1, "only ann is in the team: {members:?}");
    assert_eq!(members[0].user.id, ann);
    assert_eq!(members[0].team_role, TeamRole::Admin);
    assert_eq!(members[0].organization_role, OrgRole::Admin);
    assert_eq!(members[0].features, vec![Feature::CredentialRequests]);

    let memberships = db.list_memberships(bob).await.unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0].organization.id, acme);
    assert_eq!(memberships[0].role, OrgRole::Member);
    assert_eq!(db.organization_role(plain, bob).await.unwrap(), None);

    assert_eq!(
        db.user_features(ann).await.unwrap(),
        vec![Feature::CredentialRequests]
    );
    assert!(db.user_features(bob).await.unwrap().is_empty());

    let tokens = db.list_api_tokens(ann).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].id.0, token_id);
    assert_eq!(tokens[0].name, "CI");
    assert_eq!(tokens[0].scopes.to_stored(), "teams:read user:read");
    drop(db);

    // What was printed works: the password (without its newline), both setup
    // links and the token.
    let gate = credence::service::password_hashing::HashingGate::shared();
    let auth::PasswordCheck::Right(signed_in) = auth::check_password(
        &store,
        &gate,
        "ann@example.com",
        SecretString::from(ann_password),
    )
    .await
    .unwrap() else {
        panic!("the password read from stdin is ann's");
    };
    assert_eq!(signed_in.id, ann);
    for link in [&first_link, &second_link] {
        let user = auth::setup_link_user(&store, link)
            .await
            .unwrap()
            .expect("the printed setup link is valid");
        assert_eq!(user.id, bob);
    }
    let auth::TokenCheck::Valid(found, owner) =
        auth::check_api_token(&store, &auth::TokenCache::default(), &token)
            .await
            .unwrap()
    else {
        panic!("the printed token is valid");
    };
    assert_eq!((found.id.0, owner.id), (token_id, ann));
    store.close().await;
}

async fn bad_input_is_refused_with_a_message_and_changes_nothing(backend: Backend) {
    let operator = Operator::new(backend).await;
    operator.run(&["migrate"]).succeeded();
    let out = operator.run(&["org", "add", "--name", "Home", "--plan", "enterprise"]);
    let home = number_after(out.succeeded(), "organization ").to_string();
    let out = operator.run(&["org", "add", "--name", "Elsewhere", "--plan", "core"]);
    let elsewhere = number_after(out.succeeded(), "organization ").to_string();
    let out = operator.run(&["team", "add", "--org", &elsewhere, "--name", "Theirs"]);
    let their_team = number_after(out.succeeded(), "team ").to_string();
    operator
        .run(&[
            "user",
            "add",
            "--email",
            "ann@x.com",
            "--name",
            "Ann",
            "--org",
            &home,
            "--org-role",
            "owner",
        ])
        .succeeded();
    let before = operator.row_counts().await;

    let add_user = |email: &'static str, role: &'static str| {
        vec![
            "user",
            "add",
            "--email",
            email,
            "--name",
            "Someone",
            "--org",
            home.as_str(),
            "--org-role",
            role,
        ]
    };

    let out = operator.run(&["org", "add", "--name", "Gold Inc", "--plan", "gold"]);
    let message = out.refused();
    assert!(
        message.contains("plan") && message.contains("\"gold\""),
        "{message}"
    );
    assert!(
        message.contains("free, core, pro, teams, enterprise"),
        "the accepted plans are listed: {message}"
    );

    let out = operator.run(&add_user("carl@x.com", "boss"));
    let message = out.refused();
    assert!(
        message.contains("organization role") && message.contains("\"boss\""),
        "{message}"
    );

    let mut args = add_user("dora@x.com", "member");
    args.extend(["--team", their_team.as_str(), "--team-role", "member"]);
    let out = operator.run(&args);
    let message = out.refused();
    assert!(
        message.contains(&format!(
            "team {their_team} belongs to another organization than {home}"
        )),
        "{message}"
    );

    let out = operator.run(&add_user("ANN@x.com", "member"));
    let message = out.refused();
    assert!(
        message.contains("ANN@x.com") && message.contains("already exists"),
        "{message}"
    );

    let out = operator.run(&[
        "token",
        "create",
        "--email",
        "ann@x.com",
        "--name",
        "t",
        "--scopes",
        "user:read,root",
    ]);
    let message = out.refused();
    assert!(
        message.contains("scope") && message.contains("\"root\""),
        "{message}"
    );

    let mut args = add_user("eve@x.com", "member");
    args.push("--password-stdin");
    let out = operator.run_with_stdin(&args, "short\n");
    let message = out.refused();
    assert!(
        message.contains("password is 5 characters; it needs at least 12"),
        "{message}"
    );
    assert!(!out.stderr.contains("short\n") && !out.stdout.contains("short"));

    let out = operator.run(&["team", "add", "--org", "9999", "--name", "Ghosts"]);
    let message = out.refused();
    assert!(
        message.contains("organization 9999 does not exist"),
        "{message}"
    );

    assert_eq!(
        operator.row_counts().await,
        before,
        "a refused command changes nothing"
    );
    let store = operator.store().await;
    let mut db = store.db().await.unwrap();
    for email in ["carl@x.com", "dora@x.com", "eve@x.com"] {
        assert!(
            db.find_user_by_email(email).await.unwrap().is_none(),
            "{email} was not created"
        );
    }
    drop(db);
    store.close().await;
}

async fn a_database_url_of_an_unknown_scheme_is_named_in_the_error(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(backend, dir.path()).await;
    let (_, rest) = url.split_once(':').unwrap();
    let mysql = format!("mysql:{rest}");
    let data_dir = dir.path().join("data");
    let key_file = dir.path().join("credence.key");

    let mut by_environment = credence_in(dir.path());
    by_environment
        .env("DATABASE_URL", &mysql)
        .env("CREDENCE_DATA_DIR", &data_dir)
        .env("CREDENCE_KEY_FILE", &key_file)
        .arg("migrate");
    let mut by_flag = credence_in(dir.path());
    by_flag
        .env("CREDENCE_DATA_DIR", &data_dir)
        .env("CREDENCE_KEY_FILE", &key_file)
        .args(["org", "add", "--name", "N", "--plan", "free"])
        .args(["--database-url", "mysql://x"]);
    let mut serving = credence_in(dir.path());
    serving
        .env("DATABASE_URL", "mysql://x")
        .env("CREDENCE_DATA_DIR", &data_dir)
        .env("CREDENCE_KEY_FILE", &key_file)
        .args(["serve", "--listen", "127.0.0.1:0"]);

    for command in [by_environment, by_flag, serving] {
        let out = finish(command, None);
        let message = out.refused();
        assert!(
            message.contains("\"mysql\"") && message.contains("not supported"),
            "{message}"
        );
        assert!(
            message.contains("sqlite://") && message.contains("postgres://"),
            "the error says what is supported: {message}"
        );
        assert!(!out.stderr.contains(rest), "the url itself is not echoed");
    }
    assert!(!data_dir.exists(), "no data directory was created");
    assert!(!key_file.exists(), "no key file was created");
    assert!(!dir.path().join("credence-data").exists());
    if backend == Backend::Sqlite {
        assert!(
            !dir.path().join("test.db").exists(),
            "no SQLite file was created"
        );
    }
}

async fn a_database_that_does_not_exist_is_an_error_and_is_not_created(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, missing, name) = match backend {
        Backend::Sqlite => {
            let missing = dir.path().join("missing");
            let url = format!("sqlite://{}", missing.join("credence.db").display());
            (url, Some(missing), String::new())
        }
        Backend::Postgres => {
            let admin = postgres_admin_url();
            let base = admin.rsplit_once('/').unwrap().0;
            let name = format!("credence_missing_{}", uuid::Uuid::new_v4().simple());
            (format!("{base}/{name}"), None, name)
        }
    };
    let key_file = dir.path().join("credence.key");
    let data_dir = dir.path().join("data");

    // `serve` binds before it opens the database: port 0 is always free, so
    // the error can only be the database's.
    for args in [
        vec!["migrate"],
        vec!["org", "add", "--name", "N", "--plan", "free"],
        vec!["serve", "--listen", "127.0.0.1:0"],
    ] {
        let mut command = credence_in(dir.path());
        command
            .env("DATABASE_URL", &url)
            .env("CREDENCE_DATA_DIR", &data_dir)
            .env("CREDENCE_KEY_FILE", &key_file)
            .args(&args);
        let out = finish(command, None);
        let message = out.refused();
        assert!(message.contains("database"), "{message}");
        match &missing {
            Some(missing) => assert!(
                message.contains(&missing.display().to_string())
                    && message.contains("does not exist"),
                "the missing directory is named: {message}"
            ),
            None => assert!(
                message.contains(&name),
                "the missing database is named: {message}"
            ),
        }
    }

    assert!(!key_file.exists(), "no key file was created");
    assert!(!data_dir.exists(), "no data directory was created");
    match backend {
        Backend::Sqlite => assert!(
            !missing.unwrap().exists(),
            "the missing directory was not created"
        ),
        Backend::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .unwrap();
            let found: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            assert_eq!(found, 0, "the database {name} was not created");
            conn.close().await.unwrap();
        }
    }
}

/// `credence serve` as a child process, its output collected as it comes.
/// Killed on drop if the test did not stop it.
struct Server {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("credence serve starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Server {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr())
    }

    /// Panics with the output when the server has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("credence serve exited with {status}\n{}", self.output());
        }
    }

    /// Waits (at most [`COMMAND_TIMEOUT`]) until the server has printed a line
    /// for which `pick` answers something, and answers that; panics with the
    /// output when it exits first.
    async fn printed<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(found) = self.stdout().lines().find_map(&pick) {
                return found;
            }
            self.assert_running();
            assert!(
                started.elapsed() < COMMAND_TIMEOUT,
                "credence serve printed no {what} within {COMMAND_TIMEOUT:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit status.
    async fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    reader.join().unwrap();
                }
                return status;
            }
            if started.elapsed() > limit {
                panic!(
                    "credence serve did not stop within {limit:?} of SIGTERM\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn serve_runs_end_to_end_and_stops_cleanly_on_sigterm(backend: Backend) {
    let operator = Operator::new(backend).await;
    // Port 0: the server takes a free port itself and prints its address (a
    // port picked here and released could be taken before the server binds).
    let mut command = operator.command(&["serve", "--listen", "127.0.0.1:0"]);
    command.env("CREDENCE_LOG", "debug");
    // One backend logs as JSON, so both formats run end to end.
    let json_logs = backend == Backend::Postgres;
    if json_logs {
        command.env("CREDENCE_LOG_FORMAT", "json");
    }
    let mut server = Server::start(command);

    let client = browser();

    // It prints its address once it listens, then the setup link.
    let base = server
        .printed("address", |line| {
            line.strip_prefix("Credence is running at ")
                .map(|url| url.trim().to_string())
        })
        .await;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_ne!(base, "http://127.0.0.1:0", "the bound port is printed");
    // The last line of the first start's greeting: all of it is out.
    server
        .printed("hint for a lost link", |line| {
            line.contains("Lost the link?").then_some(())
        })
        .await;
    let stdout = server.stdout();
    let setup_link = stdout
        .lines()
        .find(|line| line.contains("/setup/"))
        .expect("the setup link is printed")
        .trim()
        .to_string();
    // Bound before it printed: the connection waits for it to serve.
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    drop(health);
    assert!(
        setup_link.starts_with(&format!("{base}/setup/")),
        "the setup link is on the listening address: {setup_link}"
    );
    let setup_token = word_after(&setup_link, "/setup/").to_string();
    assert_eq!(setup_token.len(), 43, "{setup_link}");
    let admin = "admin@credence.local";
    assert!(
        stdout.contains(&format!("credence user setup-link --email {admin}")),
        "{stdout}"
    );

    // Choose a password through the setup link.
    let page = client.get(&setup_link).send().await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(admin), "the page names the admin: {html}");
    let csrf = input_value(&html, "csrf_token");
    let password = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    let response = client
        .post(&setup_link)
        .form(&[
            ("password", password.as_str()),
            ("password_again", password.as_str()),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");

    let home = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(home.status(), reqwest::StatusCode::OK);
    let html = home.text().await.unwrap();
    assert!(
        html.contains(admin),
        "the home page shows the admin: {html}"
    );

    // Sign out, and the home page sends us to sign in.
    let csrf = input_value(&html, "csrf_token");
    let response = client
        .post(format!("{base}/sign-out"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    let home = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(home.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(home.headers()["location"], "/sign-in");

    // Sign in with the chosen password.
    let page = client.get(format!("{base}/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let csrf = input_value(&page.text().await.unwrap(), "csrf_token");
    let response = client
        .post(format!("{base}/sign-in"))
        .form(&[
            ("email", admin),
            ("password", password.as_str()),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    let home = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(home.status(), reqwest::StatusCode::OK);
    assert!(home.text().await.unwrap().contains(admin));

    // The setup link was spent.
    let page = client.get(&setup_link).send().await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::NOT_FOUND);

    // A token made by the operator while the server runs works at once.
    let out = operator.run(&[
        "token",
        "create",
        "--email",
        admin,
        "--name",
        "e2e",
        "--scopes",
        "user:read",
    ]);
    let token = word_after(out.succeeded(), "token (shown once, keep it safe): ").to_string();
    let response = reqwest::Client::new()
        .get(format!("{base}/api/v2/users/me"))
        .header("Authorization", format!("Token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["authUser"]["email"], admin, "{body}");
    assert_eq!(
        body["authUser"]["features"]["credential-requests"], true,
        "the first admin may send credential requests: {body}"
    );
    drop(client);

    // SIGTERM stops it cleanly.
    let status = server.terminate(COMMAND_TIMEOUT).await;
    assert!(
        status.success(),
        "credence serve exited with {status} after SIGTERM\n{}",
        server.output()
    );

    let stdout = server.stdout();
    let stderr = server.stderr();
    assert!(
        stderr.contains("listening") && stderr.contains("stopped"),
        "the log tells when it listens and when it stopped:\n{stderr}"
    );
    assert!(
        stderr.contains("DEBUG"),
        "CREDENCE_LOG=debug turns on debug lines:\n{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "no colour codes in piped logs");
    if json_logs {
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            assert!(
                entry.get("level").is_some() && entry.get("timestamp").is_some(),
                "{line}"
            );
        }
    }
    for (what, secret) in [("password", &password), ("API token", &token)] {
        assert!(
            !stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()),
            "the {what} appears in the output\n{}",
            server.output()
        );
    }
    assert_eq!(
        stdout.matches(&setup_token).count(),
        1,
        "the setup link is printed once"
    );
    assert!(
        !stderr.contains(&setup_token),
        "the log holds the setup token:\n{stderr}"
    );

    assert_mode_0600(&operator.key_file());
}

async fn keys_rotate_rewraps_stored_secrets_under_a_new_version(backend: Backend) {
    let operator = Operator::new(backend).await;
    let config = operator.config();
    let store = open_store(&config).await.expect("the store opens");
    let vault = open_vault(&config).expect("the key file is created");
    assert_mode_0600(&operator.key_file());
    let value = "s3cret-value";
    let id = secrets::put_unowned(&store, &vault, "test", &SecretString::from(value))
        .await
        .expect("the secret is sealed");
    let sealed = |store: Store, id: String| async move {
        store
            .db()
            .await
            .unwrap()
            .get_secret(&id)
            .await
            .unwrap()
            .expect("the secret row exists")
            .sealed
    };
    let first = sealed(store.clone(), id.clone()).await;
    assert!(first.starts_with("cv1.k1."), "{first}");

    let out = operator.run(&["keys", "rotate"]);
    let printed = out.succeeded();
    assert!(printed.contains("key version 2 added"), "{printed}");
    assert!(
        printed.contains("secrets.sealed: re-wrapped 1, re-sealed for the owner binding 0, already on version 2: 0, changed meanwhile (read again): 0, failed: 0"),
        "{printed}"
    );
    let second = sealed(store.clone(), id.clone()).await;
    assert!(second.starts_with("cv1.k2."), "{second}");
    assert_eq!(
        first.rsplit('.').next(),
        second.rsplit('.').next(),
        "only the wrapped key changes, not the payload"
    );
    assert_mode_0600(&operator.key_file());

    let fresh = open_vault(&config).expect("the rotated key file opens");
    let opened = secrets::open_unowned(&store, &fresh, &id, "test")
        .await
        .unwrap();
    assert_eq!(opened.expose_secret(), value);
    let opened = secrets::open_unowned(&store, &vault, &id, "test")
        .await
        .expect("a running vault picks up the new key version");
    assert_eq!(opened.expose_secret(), value);

    let out = operator.run(&["keys", "rotate"]);
    let printed = out.succeeded();
    assert!(printed.contains("key version 3 added"), "{printed}");
    assert!(
        printed.contains("secrets.sealed: re-wrapped 1, re-sealed for the owner binding 0, already on version 3: 0"),
        "{printed}"
    );
    let third = sealed(store.clone(), id.clone()).await;
    assert!(third.starts_with("cv1.k3."), "{third}");
    let fresh = open_vault(&config).unwrap();
    let opened = secrets::open_unowned(&store, &fresh, &id, "test")
        .await
        .unwrap();
    assert_eq!(opened.expose_secret(), value);
    assert!(
        !out.stdout.contains(value) && !out.stderr.contains(value),
        "rotation prints no secret"
    );
    store.close().await;
}

/// Regression: an explicit `sqlite://` URL whose file does not exist used to start
/// an empty database (and a new admin) silently; only `mode=rwc` creates one now.
#[test]
fn a_typod_sqlite_file_in_an_existing_directory_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("credenc.db");
    let mut command = credence_in(dir.path());
    command
        .env("DATABASE_URL", format!("sqlite://{}", typo.display()))
        .env("CREDENCE_KEY_FILE", dir.path().join("credence.key"))
        .args(["migrate"]);
    let ran = finish(command, None);
    let message = ran.refused();
    assert!(
        message.contains(&typo.display().to_string()) && message.contains("does not exist"),
        "{message}"
    );
    assert!(!typo.exists(), "the typo'd database file was created");

    let mut command = credence_in(dir.path());
    command
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", typo.display()),
        )
        .env("CREDENCE_KEY_FILE", dir.path().join("credence.key"))
        .args(["migrate"]);
    finish(command, None).succeeded();
    assert!(typo.exists(), "mode=rwc creates the file");
}
