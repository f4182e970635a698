//! The `credence` command line: `serve`, and the operator's commands. Each
//! command works on either database and prints what it created.

use crate::config::{Config, Overrides};
use crate::startup::{open_store, open_vault, Application};
use anyhow::Context;
use clap::{Parser, Subcommand};
use credence_domain::{Feature, OrganizationId, Scopes, TeamId};
use credence_service::{self as service, auth, features, identity, secrets};
use secrecy::ExposeSecret;
use std::io::Read;
use std::process::ExitCode;

mod jobs;
mod projects;

#[derive(Parser)]
#[command(
    name = "credence",
    version,
    about = "Collect access to other people's app accounts without seeing a secret."
)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded SQLite in ./credence-data unless DATABASE_URL says otherwise).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Teams.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Per-user features.
    #[command(subcommand)]
    Feature(FeatureCommand),
    /// Key-encryption keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The notifications' delivery: waiting, retrying, dead-lettered.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// The local mailbox (mail goes there when no SMTP server is configured).
    #[command(subcommand)]
    Mail(jobs::MailCommand),
    /// Tracked projects: close one (teardown).
    #[command(subcommand, visible_alias = "project")]
    Projects(projects::ProjectsCommand),
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization.
    Add {
        #[arg(long)]
        name: String,
        /// free, core, pro, teams or enterprise.
        #[arg(long)]
        plan: String,
        /// Mark the organization a partner.
        #[arg(long)]
        partner: bool,
    },
}

#[derive(Subcommand)]
enum TeamCommand {
    /// Create a team in an organization.
    Add {
        #[arg(long)]
        org: i64,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user in an organization (and optionally a team). Without
    /// --password-stdin, prints a one-time link to choose a password.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        org: i64,
        /// owner, admin, member or guest.
        #[arg(long)]
        org_role: String,
        #[arg(long, requires = "team_role")]
        team: Option<i64>,
        /// admin or member.
        #[arg(long, requires = "team")]
        team_role: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Add an existing user to an organization (and optionally a team).
    Join {
        #[arg(long)]
        email: String,
        #[arg(long)]
        org: i64,
        /// owner, admin, member or guest.
        #[arg(long)]
        org_role: String,
        #[arg(long, requires = "team_role")]
        team: Option<i64>,
        /// admin or member.
        #[arg(long, requires = "team")]
        team_role: Option<String>,
    },
    /// Print a new one-time link with which a user chooses a password.
    SetupLink {
        #[arg(long)]
        email: String,
    },
    /// Turn off a user's two-factor sign-in (they lost their authenticator
    /// and their recovery codes): they sign in with their password next, and
    /// enrol again where an organization requires it. Audited.
    ResetTwoFactor {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user; the token is printed once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Comma-separated, e.g. credential-requests:read,connections:read.
        #[arg(long)]
        scopes: String,
        /// When the token stops working: an ISO 8601 date (the end of that day,
        /// UTC) or date-time, at most 365 days ahead. Without it, never.
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Subcommand)]
enum FeatureCommand {
    /// Let a user send credential requests, after the eligibility check.
    Grant {
        #[arg(long)]
        email: String,
    },
    /// List the users who asked for the feature, with the eligibility check.
    Requests,
    /// Record that a user asks for the feature (as `POST /credential-requests/feature`
    /// does for the signed-in user) and show the eligibility check.
    Request {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new key version and re-wrap every sealed value of every table under it.
    Rotate,
    /// Remove an old key version from the key file, once no sealed value uses it.
    /// Every running instance must report the newest version first (they beat
    /// every 10 s): one with an old copy of the key file is named and refused.
    Retire {
        /// The key version to remove (never the newest).
        #[arg(long)]
        version: u32,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write an organization's audit entries as JSON lines, oldest first.
    Export {
        #[arg(long)]
        org: i64,
        /// Only entries at or after this ISO 8601 date or date-time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Only entries at or before this date (the whole day) or date-time.
        #[arg(long)]
        to: Option<String>,
        /// Only these events (repeatable), e.g. credential.authorized.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Write to this file (created with mode 0600) instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Delete the entries older than a date; the database refuses to delete
    /// any entry younger than 12 months.
    Purge {
        /// An ISO 8601 date or date-time (RFC 3339).
        #[arg(long)]
        before: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<service::Error>() {
                Some(service::Error::Invalid(problems)) => {
                    for problem in problems {
                        eprintln!("error: {}", problem.message);
                    }
                }
                _ => eprintln!("error: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Audit(command) => audit(command, &config).await,
        Command::Jobs(command) => jobs::jobs(command, &config).await,
        Command::Mail(command) => jobs::mail(command, &config).await,
        Command::Projects(command) => projects::projects(command, &config).await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!("migrations applied ({:?})", store.backend());
            Ok(())
        }
        Command::Org(OrgCommand::Add {
            name,
            plan,
            partner,
        }) => {
            let store = open_store(&config).await?;
            let org = identity::create_organization(&store, &name, &plan, partner).await?;
            println!(
                "organization {} created: name {:?}, plan {}, partner {}",
                org.id, org.name, org.plan, org.partner
            );
            Ok(())
        }
        Command::Team(TeamCommand::Add { org, name }) => {
            let store = open_store(&config).await?;
            let team = identity::create_team(&store, OrganizationId(org), &name).await?;
            println!(
                "team {} created: name {:?}, organization {}",
                team.id, team.name, team.organization_id
            );
            Ok(())
        }
        Command::User(UserCommand::Add {
            email,
            name,
            org,
            org_role,
            team,
            team_role,
            password_stdin,
        }) => {
            let password = if password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read the password from standard input")?;
                Some(text.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let store = open_store(&config).await?;
            let created = identity::create_user(
                &store,
                identity::NewUser {
                    email: &email,
                    name: &name,
                    organization: OrganizationId(org),
                    organization_role: &org_role,
                    team: team
                        .zip(team_role.as_deref())
                        .map(|(team, role)| (TeamId(team), role)),
                    password,
                },
            )
            .await?;
            let user = &created.user;
            println!(
                "user {} created: email {}, name {:?}, organization {org} as {org_role}",
                user.id, user.email, user.name
            );
            if let (Some(team), Some(role)) = (team, team_role) {
                println!("user {} joined team {team} as {role}", user.id);
            }
            if let Some(token) = created.setup_token {
                println!(
                    "one-time setup link (valid 3 days): {}/setup/{token}",
                    config.public_url(config.listen)
                );
            }
            Ok(())
        }
        Command::User(UserCommand::Join {
            email,
            org,
            org_role,
            team,
            team_role,
        }) => {
            let store = open_store(&config).await?;
            let vault = open_vault(&config)?;
            let team_pair = team
                .zip(team_role.as_deref())
                .map(|(team, role)| (TeamId(team), role));
            let user = identity::add_membership(
                &store,
                &vault,
                &email,
                OrganizationId(org),
                &org_role,
                team_pair,
            )
            .await?;
            println!("user {} joined organization {org} as {org_role}", user.id);
            if let (Some(team), Some(role)) = (team, team_role) {
                println!("user {} joined team {team} as {role}", user.id);
            }
            Ok(())
        }
        Command::Feature(FeatureCommand::Request { email }) => {
            let store = open_store(&config).await?;
            let user = user_by_email(&store, &email).await?;
            let (check, created) = features::request_feature(&store, &user).await?;
            let verb = if created {
                "recorded"
            } else {
                "was already open"
            };
            println!(
                "feature request of user {} ({}) {verb}",
                user.id, user.email
            );
            if check.eligible {
                println!(
                    "eligible: grant it with credence feature grant --email {}",
                    user.email
                );
            } else {
                println!("not eligible: {}", check.reasons.join("; "));
            }
            Ok(())
        }
        Command::Feature(FeatureCommand::Requests) => {
            let store = open_store(&config).await?;
            let mut db = store.db().await?;
            let open = db
                .list_open_feature_requests(Feature::CredentialRequests)
                .await?;
            if open.is_empty() {
                println!("no open feature requests");
            }
            for request in open {
                let Some(user) = db
                    .get_user(credence_domain::UserId(request.user_id))
                    .await?
                else {
                    continue;
                };
                let memberships = db.list_memberships(user.id).await?;
                let check = features::eligibility(&user, &memberships);
                let verdict = if check.eligible {
                    "eligible".to_string()
                } else {
                    format!("not eligible: {}", check.reasons.join("; "))
                };
                println!(
                    "user {} ({}) asked on {}: {verdict}",
                    user.id,
                    user.email,
                    request.requested_at.format("%Y-%m-%d %H:%M UTC")
                );
            }
            Ok(())
        }
        Command::User(UserCommand::SetupLink { email }) => {
            let store = open_store(&config).await?;
            let (user, token) = identity::new_setup_link(&store, &email).await?;
            println!(
                "one-time setup link for user {} (valid 3 days): {}/setup/{token}",
                user.id,
                config.public_url(config.listen)
            );
            Ok(())
        }
        Command::User(UserCommand::ResetTwoFactor { email }) => {
            let store = open_store(&config).await?;
            let user = user_by_email(&store, &email).await?;
            service::two_factor::reset(&store, &service::audit::Actor::operator(), &user).await?;
            println!(
                "two-factor authentication of user {} ({}) is off; they sign in with their password next",
                user.id, user.email
            );
            Ok(())
        }
        Command::Token(TokenCommand::Create {
            email,
            name,
            scopes,
            expires,
        }) => {
            let scopes = Scopes::parse(&scopes).map_err(service::Error::from)?;
            let expires_at = expires
                .as_deref()
                .map(|raw| auth::parse_api_token_expiry("--expires", raw))
                .transpose()
                .map_err(service::Error::from)?;
            let store = open_store(&config).await?;
            let user = user_by_email(&store, &email).await?;
            let (token, value) = auth::create_api_token(
                &store,
                &service::audit::Actor::operator(),
                user.id,
                auth::NewApiToken {
                    name: &name,
                    scopes: &scopes,
                    expires_at,
                },
            )
            .await?;
            let expiry = token
                .expires_at
                .map(|at| format!("expires {}", at.to_rfc3339()))
                .unwrap_or_else(|| "never expires".into());
            println!(
                "api token {} created for user {}: name {:?}, scopes {}, {expiry}",
                token.id,
                user.id,
                token.name,
                token.scopes.to_stored()
            );
            println!(
                "token (shown once, keep it safe): {}",
                value.expose_secret()
            );
            Ok(())
        }
        Command::Feature(FeatureCommand::Grant { email }) => {
            let store = open_store(&config).await?;
            let vault = open_vault(&config)?;
            let (user, granted) = features::grant(&store, &vault, &email).await?;
            if granted {
                println!(
                    "feature credential-requests granted to user {} ({})",
                    user.id, user.email
                );
            } else {
                println!(
                    "user {} ({}) already has the feature credential-requests",
                    user.id, user.email
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => {
            let store = open_store(&config).await?;
            let path = existing_key_file(&config)?;
            let vault = open_vault(&config)?;
            let version = credence_vault::rotate_key_file(&path)
                .with_context(|| format!("cannot rotate {}", path.display()))?;
            vault.reload()?;
            println!("key version {version} added to {}", path.display());
            let renewal = secrets::renew_all(&store, &vault).await?;
            print_renewal(&renewal);
            let left: u64 = renewal.columns.iter().map(|(_, done)| done.left).sum();
            if left > 0 {
                anyhow::bail!(
                    "{left} sealed values are not on key version {version} (see above); the key versions they use cannot be retired"
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Retire { version }) => {
            let store = open_store(&config).await?;
            let path = existing_key_file(&config)?;
            let current = open_vault(&config)?.current_version();
            if version == current {
                anyhow::bail!(
                    "key version {version} is the newest in {}, which seals new values; rotate first, then retire it",
                    path.display()
                );
            }
            wait_for_instances_on(&store, current).await?;
            let used = secrets::usage_of_version(&store, version).await?;
            if !used.is_empty() {
                let uses: Vec<String> = used
                    .iter()
                    .map(|(column, count)| format!("{}: {count}", column.label()))
                    .collect();
                anyhow::bail!(
                    "key version {version} is still used ({}); run `credence keys rotate` first",
                    uses.join(", ")
                );
            }
            credence_vault::retire_key_file(&path, version)
                .with_context(|| format!("cannot retire key version {version}"))?;
            println!("key version {version} removed from {}", path.display());
            Ok(())
        }
    }
}

/// Waits (up to two heartbeats of the slowest) until every running instance
/// reports key version `current`, the newest of the key file; an error naming
/// those that do not: they hold an older copy of the key file and may seal
/// under the version being retired.
async fn wait_for_instances_on(store: &credence_store::Store, current: u32) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let behind = secrets::instances_behind(store, current).await?;
        let Some(slowest) = behind.iter().map(|beat| beat.every_ms).max() else {
            return Ok(());
        };
        let every = std::time::Duration::from_millis(u64::try_from(slowest).unwrap_or(0));
        if started.elapsed()
            >= every
                .saturating_mul(2)
                .min(std::time::Duration::from_secs(60))
        {
            let named: Vec<String> = behind
                .iter()
                .map(|beat| {
                    format!(
                        "instance {} seals under key version {} (last seen {})",
                        beat.id, beat.key_version, beat.seen_at
                    )
                })
                .collect();
            anyhow::bail!(
                "{}; give it the key file with version {current} (or stop it), then retire",
                named.join("; ")
            );
        }
        // A beat is due: look again shortly (an instance reading this key
        // file reports the new version at its next one).
        tokio::time::sleep((every / 4).clamp(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(1),
        ))
        .await;
    }
}

/// One line per sealed column: what the renewal pass did to it.
fn print_renewal(renewal: &secrets::Renewal) {
    let version = renewal.version;
    for (column, done) in &renewal.columns {
        println!(
            "{}: re-wrapped {}, re-sealed for the owner binding {}, already on version {version}: {}, changed meanwhile (read again): {}, failed: {}, left on an old version: {}",
            column.label(),
            done.rewrapped,
            done.rebound,
            done.already_current,
            done.changed_meanwhile,
            done.failed,
            done.left
        );
    }
    for problem in &renewal.problems {
        eprintln!("{problem}");
    }
}

/// The user with `email`, or a not-found error naming it.
async fn user_by_email(
    store: &credence_store::Store,
    email: &str,
) -> anyhow::Result<credence_store::User> {
    let user = store.db().await?.find_user_by_email(email).await?;
    Ok(user.ok_or_else(|| service::Error::NotFound(format!("no user has the email {email:?}")))?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let url = app.public_url().to_string();
    tracing::info!(address = %app.address(), backend = ?app.store().backend(), "listening");
    println!("Credence is running at {url}");
    if let Some(bootstrap) = app.bootstrap() {
        println!(
            "First start: created organization {:?} ({}), team {:?} and the owner {}, who may send credential requests.",
            bootstrap.organization.name, bootstrap.organization.plan, bootstrap.team.name, bootstrap.admin.email
        );
        println!("To sign in, open this one-time link and choose a password (valid 3 days):");
        println!("  {url}/setup/{}", bootstrap.setup_token);
        println!(
            "Afterwards sign in at {url}/sign-in as {}.",
            bootstrap.admin.email
        );
        println!(
            "Lost the link? Run: credence user setup-link --email {}",
            bootstrap.admin.email
        );
    }
    app.run_until_stopped().await?;
    Ok(())
}

async fn audit(command: AuditCommand, config: &Config) -> anyhow::Result<()> {
    use credence_service::audit_log::{json_lines, parse_time, AuditQuery, Bound, Export};
    use std::io::Write;
    match command {
        AuditCommand::Export {
            org,
            from,
            to,
            events,
            out,
        } => {
            let mut problems = Vec::new();
            let mut time = |flag: &str, raw: Option<String>, bound: Bound| {
                raw.and_then(|raw| {
                    parse_time(flag, &raw, bound)
                        .map_err(|e| problems.push(e))
                        .ok()
                })
            };
            let query = AuditQuery {
                date_from: time("--from", from, Bound::Start),
                date_to: time("--to", to, Bound::End),
                events,
                ..AuditQuery::default()
            };
            if !problems.is_empty() {
                return Err(service::Error::Invalid(problems).into());
            }
            let store = open_store(config).await?;
            let organization = OrganizationId(org);
            let mut export = Export::for_operator(&store, organization, &query).await?;
            let (mut writer, destination): (Box<dyn Write>, String) = match &out {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    (
                        Box::new(std::io::BufWriter::new(file)),
                        path.display().to_string(),
                    )
                }
                None => (
                    Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                    "standard output".to_string(),
                ),
            };
            let mut count = 0usize;
            while let Some(records) = export.next_page().await? {
                writer
                    .write_all(&json_lines(&records)?)
                    .with_context(|| format!("cannot write to {destination}"))?;
                count += records.len();
            }
            writer
                .flush()
                .with_context(|| format!("cannot write to {destination}"))?;
            eprintln!(
                "exported {count} audit entries of organization {organization} to {destination}"
            );
            Ok(())
        }
        AuditCommand::Purge { before } => {
            let before =
                parse_time("--before", &before, Bound::Start).map_err(service::Error::from)?;
            let store = open_store(config).await?;
            let purged = store.db().await?.purge_audit_before(before).await;
            match purged {
                Ok(count) => {
                    println!(
                        "purged {count} audit entries older than {}",
                        before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    Ok(())
                }
                Err(credence_store::Error::Conflict(message)) => {
                    let latest = chrono::Utc::now()
                        .checked_sub_months(chrono::Months::new(12))
                        .map(|at| at.format("%Y-%m-%d").to_string())
                        .unwrap_or_default();
                    anyhow::bail!("{message}; choose --before {latest} or earlier")
                }
                Err(other) => Err(other.into()),
            }
        }
    }
}

/// The configured key file, which must exist: rotating or retiring in a file
/// that does not would create a new one and leave every stored secret under a
/// key nobody uses.
fn existing_key_file(config: &Config) -> anyhow::Result<std::path::PathBuf> {
    let path = config.key_file();
    if !path.exists() {
        anyhow::bail!(
            "key file {} does not exist; point --key-file at the file the server uses",
            path.display()
        );
    }
    Ok(path)
}
