//! `credence projects teardown`: the operator closes a team's project (SPEC
//! §9) — every credential of its requests revoked at the provider where the
//! app can, its secret destroyed in any case — and reads per credential what
//! happened. Nothing secret is printed.

use crate::config::Config;
use crate::startup::{http_client, open_catalog, open_store, open_vault};
use credence_domain::TeamId;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum ProjectsCommand {
    /// Close a project: revoke every credential of its requests (at the
    /// provider where the app can), destroy the secrets, note "project <name>
    /// closed". Running it again changes nothing.
    Teardown {
        /// The project, exactly as the requests carry it.
        #[arg(required_unless_present = "project", conflicts_with = "project")]
        name: Option<String>,
        /// The project, as a flag (`--project P`) instead of the argument.
        #[arg(long)]
        project: Option<String>,
        /// The id of the team whose project it is.
        #[arg(long)]
        team: i64,
        /// Print the report as JSON instead of one line per credential.
        #[arg(long)]
        json: bool,
    },
}

pub async fn projects(command: ProjectsCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        ProjectsCommand::Teardown {
            name,
            project,
            team,
            json,
        } => {
            // clap has required exactly one of the two.
            let name = name.or(project).unwrap_or_default();
            let store = open_store(config).await?;
            let catalog = open_catalog(config)?;
            let ctx = credence_service::Context {
                store,
                vault: Arc::new(open_vault(config)?),
                http: http_client(&catalog)?,
                catalog: Arc::new(catalog),
                public_url: config.public_url(config.listen).into(),
                oauth_clients: Arc::new(config.oauth_clients.clone()),
                clock: credence_service::clock::Clock::system(),
            };
            let report =
                credence_service::teardown::close_project_as_operator(&ctx, TeamId(team), &name)
                    .await?;
            if json {
                println!("{:#}", report.to_json());
                return Ok(());
            }
            for closed in &report.credentials {
                println!(
                    "{} {} {} was {}: revoked; at the provider: {}{}",
                    closed.request,
                    closed.credential,
                    closed.app_key,
                    closed.from,
                    closed.at_provider.as_str(),
                    closed
                        .at_provider
                        .reason()
                        .map(|reason| format!(" ({reason})"))
                        .unwrap_or_default(),
                );
            }
            println!("{}", report.message());
            Ok(())
        }
    }
}
