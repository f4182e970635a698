//! Configuration: built-in defaults, then a TOML file (`--config`), then the
//! environment, then flags — each later source wins. With nothing set, Credence
//! runs on an embedded SQLite file in `./credence-data`.

use anyhow::{bail, Context};
use clap::builder::TypedValueParser;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use credence_http::ForwardedHeader;
pub use credence_provider::{oauth_client_variables, OAuthClient};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything Credence needs to run, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the SQLite database and the key file in embedded mode.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` means `<data_dir>/credence.db`.
    pub database_url: Option<String>,
    /// The key-encryption key file; default `<data_dir>/credence.key`.
    pub key_file: Option<PathBuf>,
    pub listen: SocketAddr,
    /// The address people reach Credence at, for links in output and emails.
    pub public_url: Option<String>,
    /// The email of the admin created on an empty database.
    pub admin_email: String,
    pub log_format: LogFormat,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// A directory of the operator's own app files (`*.toml`), next to the built-in catalog.
    pub apps_dir: Option<PathBuf>,
    /// OAuth 2.0 clients by app key: `[oauth.<app-key>]` in the file, or
    /// `CREDENCE_OAUTH_<APP_KEY>_CLIENT_ID` / `_CLIENT_SECRET` in the environment.
    pub oauth_clients: BTreeMap<String, OAuthClient>,
    /// How often the background refresher looks for OAuth connections to
    /// refresh; `None` turns it off (tests that drive refreshes themselves).
    pub oauth_refresh_every: Option<std::time::Duration>,
    /// How often a running instance records in the database the newest key
    /// version it seals under (`credence keys retire` waits for every live
    /// instance to have the newest).
    pub heartbeat_every: std::time::Duration,
    /// How often the API tokens' uses noted in memory are written
    /// (`last_used_at`); `auth::TOKEN_USE_FLUSH_EVERY` unless a test sets it.
    pub token_use_flush_every: std::time::Duration,
    /// How often SQLite's write-ahead log is checkpointed in the background
    /// (`credence_store::Checkpointer`); nothing on PostgreSQL.
    pub wal_checkpoint_every: std::time::Duration,
    /// Peers (addresses or CIDR blocks) whose `forwarded_header` names the
    /// client: the sign-in limits count the rightmost address in it that is not
    /// one of these. Empty: the TCP peer is the client, and the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub forwarded_header: ForwardedHeader,
    /// How long a client may take to send a request's header block (and how
    /// long an idle keep-alive connection stays open); then it is disconnected.
    pub header_read_timeout: std::time::Duration,
    /// How many proxied calls one connection may take per minute on one
    /// instance (the broker); past that 429 with `Retry-After`.
    pub proxy_calls_per_minute: u32,
    /// How long a request may take, body and handler included; then it is
    /// answered 408.
    pub request_timeout: std::time::Duration,
    /// The outbox runner (its period, retries, clock) and where mail goes.
    pub jobs: credence_jobs::Settings,
    /// The reminder scan (its period, clock) and whether Slack webhooks may
    /// be on private hosts.
    pub reminders: credence_jobs::reminders::Settings,
}

/// The OAuth clients the environment names. An app key is recovered from the
/// variable name (lowercased, `_` as `-`); an id without its secret, or the
/// reverse, is an error naming the missing variable.
fn oauth_clients_from(
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<BTreeMap<String, OAuthClient>> {
    let mut ids = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("CREDENCE_OAUTH_") else {
            continue;
        };
        if let Some(app) = rest.strip_suffix("_CLIENT_ID") {
            ids.insert(app.to_ascii_lowercase().replace('_', "-"), value);
        } else if let Some(app) = rest.strip_suffix("_CLIENT_SECRET") {
            secrets.insert(app.to_ascii_lowercase().replace('_', "-"), value);
        }
    }
    let mut clients = BTreeMap::new();
    for (app, client_id) in ids {
        let (_, secret_var) = oauth_client_variables(&app);
        let Some(secret) = secrets.remove(&app) else {
            bail!("{secret_var} is not set, but the client id of {app} is");
        };
        clients.insert(
            app,
            OAuthClient {
                client_id,
                client_secret: SecretString::from(secret),
            },
        );
    }
    if let Some(app) = secrets.keys().next() {
        let (id_var, _) = oauth_client_variables(app);
        bail!("{id_var} is not set, but the client secret of {app} is");
    }
    Ok(clients)
}

/// Parses trusted proxies: each an address (`192.0.2.7`, `::1`) or a CIDR block
/// (`10.0.0.0/8`); blanks are skipped.
pub fn parse_trusted_proxies(values: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    values
        .iter()
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
        .map(|value| {
            value
                .parse::<ipnet::IpNet>()
                .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "trusted proxy {value:?} is neither an address nor a CIDR block such as 10.0.0.0/8"
                    )
                })
        })
        .collect()
}

/// Where mail goes: the file's `[smtp]` and `mail_from`, each key overridden
/// by the environment (`CREDENCE_SMTP_*`, `CREDENCE_MAIL_FROM`) or a flag.
fn mail_settings(
    file: &FileConfig,
    overrides: &Overrides,
    password: Option<String>,
) -> anyhow::Result<credence_jobs::MailSettings> {
    let mut mail = credence_jobs::MailSettings::default();
    if let Some(from) = overrides.mail_from.clone().or(file.mail_from.clone()) {
        mail.from = from;
    }
    mail.templates_dir = overrides
        .mail_templates_dir
        .clone()
        .or(file.mail_templates_dir.clone());
    let smtp = file.smtp.clone().unwrap_or_default();
    let Some(host) = overrides.smtp_host.clone().or(smtp.host) else {
        if smtp.port.is_some() || smtp.user.is_some() || overrides.smtp_port.is_some() {
            bail!("the SMTP server has a port or user but no host; set smtp host (CREDENCE_SMTP_HOST)");
        }
        return Ok(mail);
    };
    let security = overrides
        .smtp_security
        .or(smtp.security)
        .unwrap_or(credence_jobs::Security::Starttls);
    let port = overrides.smtp_port.or(smtp.port).unwrap_or(match security {
        credence_jobs::Security::Starttls => 587,
        credence_jobs::Security::Tls => 465,
        credence_jobs::Security::None => 25,
    });
    let user = overrides.smtp_user.clone().or(smtp.user);
    let password = password.or(smtp.password);
    if password.is_some() && user.is_none() {
        bail!("an SMTP password is set but no user; set smtp user (CREDENCE_SMTP_USER)");
    }
    mail.smtp = Some(credence_jobs::SmtpSettings {
        host,
        port,
        security,
        user,
        password: password.map(SecretString::from),
        ca_file: overrides.smtp_ca_file.clone().or(smtp.ca_file),
    });
    Ok(mail)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("credence-data"),
            database_url: None,
            key_file: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            admin_email: "admin@credence.local".into(),
            log_format: LogFormat::Text,
            body_limit: 1024 * 1024,
            apps_dir: None,
            oauth_clients: BTreeMap::new(),
            oauth_refresh_every: Some(std::time::Duration::from_secs(15)),
            heartbeat_every: std::time::Duration::from_secs(10),
            token_use_flush_every: credence_service::auth::TOKEN_USE_FLUSH_EVERY,
            wal_checkpoint_every: std::time::Duration::from_secs(1),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            header_read_timeout: std::time::Duration::from_secs(10),
            proxy_calls_per_minute: 600,
            request_timeout: std::time::Duration::from_secs(60),
            jobs: credence_jobs::Settings::default(),
            reminders: credence_jobs::reminders::Settings::default(),
        }
    }
}

/// The TOML file's shape: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub key_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub admin_email: Option<String>,
    pub log_format: Option<LogFormat>,
    pub body_limit: Option<usize>,
    pub apps_dir: Option<PathBuf>,
    /// Seconds.
    pub header_read_timeout: Option<u64>,
    pub proxy_calls_per_minute: Option<u32>,
    /// Seconds.
    pub request_timeout: Option<u64>,
    /// `[oauth.<app-key>] client_id = "…", client_secret = "…"`.
    pub oauth: Option<BTreeMap<String, OAuthClient>>,
    /// `trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]`.
    pub trusted_proxies: Option<Vec<String>>,
    pub forwarded_header: Option<ForwardedHeader>,
    /// `[smtp] host = "…", port = 587, security = "starttls", user = "…", password = "…"`.
    pub smtp: Option<SmtpFile>,
    /// The `From` of every email.
    pub mail_from: Option<String>,
    /// A directory of the operator's email templates (`<kind>.subject|txt|html`).
    pub mail_templates_dir: Option<PathBuf>,
    /// Seconds between two passes of the outbox runner; 0 turns it off.
    pub jobs_every: Option<u64>,
    /// Seconds between two reminder scans; 0 turns them off in this instance.
    pub reminders_every: Option<u64>,
    /// Whether a team's Slack webhook may be on a private, loopback or
    /// link-local address, or plain http (default false).
    pub reminders_allow_private_hosts: Option<bool>,
    /// Whether webhook endpoints may be private, loopback or link-local
    /// addresses, and plain http (default false: https to public hosts only).
    pub webhooks_allow_private_hosts: Option<bool>,
}

/// The SMTP server, as the file gives it; the environment overrides each key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<credence_jobs::Security>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
}

impl FileConfig {
    pub fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))
    }
}

/// Values given on the command line or in the environment (clap reads both).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// A TOML configuration file.
    #[arg(long, env = "CREDENCE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database and the key file.
    #[arg(long, env = "CREDENCE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Key-encryption key file (created on first start if missing).
    #[arg(long, env = "CREDENCE_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "CREDENCE_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Public base URL used in links, e.g. https://credence.example.com.
    #[arg(long, env = "CREDENCE_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// A directory of the operator's own app files (*.toml).
    #[arg(long, env = "CREDENCE_APPS_DIR", global = true)]
    pub apps_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "CREDENCE_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Proxies whose forwarding header names the client: addresses or CIDR
    /// blocks, comma-separated.
    #[arg(
        long,
        env = "CREDENCE_TRUSTED_PROXIES",
        global = true,
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// The header the trusted proxies name the client in.
    #[arg(
        long,
        env = "CREDENCE_FORWARDED_HEADER",
        global = true,
        value_parser = clap::builder::PossibleValuesParser::new(ForwardedHeader::NAMES)
            .try_map(|name| name.parse::<ForwardedHeader>())
    )]
    pub forwarded_header: Option<ForwardedHeader>,
    /// The SMTP server mail is sent through; without one, mail stays in the
    /// local mailbox (`credence mail list`).
    #[arg(long, env = "CREDENCE_SMTP_HOST", global = true)]
    pub smtp_host: Option<String>,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    #[arg(long, env = "CREDENCE_SMTP_PORT", global = true)]
    pub smtp_port: Option<u16>,
    /// starttls (default), tls or none.
    #[arg(long, env = "CREDENCE_SMTP_SECURITY", global = true)]
    pub smtp_security: Option<credence_jobs::Security>,
    #[arg(long, env = "CREDENCE_SMTP_USER", global = true)]
    pub smtp_user: Option<String>,
    /// A PEM file of the CA that signed the SMTP server's certificate, when
    /// it is not a public one.
    #[arg(long, env = "CREDENCE_SMTP_CA_FILE", global = true)]
    pub smtp_ca_file: Option<PathBuf>,
    /// Only from the environment or the file, never a flag (it would show in `ps`).
    #[arg(skip)]
    pub smtp_password: Option<String>,
    /// The `From` of every email, e.g. "Credence <credence@example.com>".
    #[arg(long, env = "CREDENCE_MAIL_FROM", global = true)]
    pub mail_from: Option<String>,
    /// A directory of email templates overriding the built-in ones.
    #[arg(long, env = "CREDENCE_MAIL_TEMPLATES_DIR", global = true)]
    pub mail_templates_dir: Option<PathBuf>,
    /// Let webhook endpoints be private, loopback or link-local addresses,
    /// and plain http (a receiver on the operator's own network).
    #[arg(long, env = "CREDENCE_WEBHOOKS_ALLOW_PRIVATE_HOSTS", global = true)]
    pub webhooks_allow_private_hosts: Option<bool>,
}

impl Config {
    /// Resolves defaults < file < environment and flags.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Config> {
        let file = match &overrides.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        macro_rules! take {
            ($field:ident) => {
                if let Some(value) = file.$field.clone() {
                    config.$field = value;
                }
            };
        }
        take!(data_dir);
        take!(listen);
        take!(admin_email);
        take!(log_format);
        take!(body_limit);
        take!(proxy_calls_per_minute);
        take!(forwarded_header);
        if let Some(proxies) = &file.trusted_proxies {
            config.trusted_proxies = parse_trusted_proxies(proxies)?;
        }
        if let Some(seconds) = file.header_read_timeout {
            config.header_read_timeout = std::time::Duration::from_secs(seconds);
        }
        if let Some(seconds) = file.request_timeout {
            config.request_timeout = std::time::Duration::from_secs(seconds);
        }
        config.database_url = file.database_url.clone();
        config.key_file = file.key_file.clone();
        config.public_url = file.public_url.clone();
        config.apps_dir = file.apps_dir.clone();
        config.oauth_clients = file.oauth.clone().unwrap_or_default();
        config
            .oauth_clients
            .extend(oauth_clients_from(std::env::vars())?);

        if let Some(v) = &overrides.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = &overrides.database_url {
            config.database_url = Some(v.clone());
        }
        if let Some(v) = &overrides.key_file {
            config.key_file = Some(v.clone());
        }
        if let Some(v) = overrides.listen {
            config.listen = v;
        }
        if let Some(v) = &overrides.public_url {
            config.public_url = Some(v.clone());
        }
        if let Some(v) = &overrides.apps_dir {
            config.apps_dir = Some(v.clone());
        }
        if let Some(v) = overrides.log_format {
            config.log_format = v;
        }
        if let Some(v) = &overrides.trusted_proxies {
            config.trusted_proxies = parse_trusted_proxies(v)?;
        }
        if let Some(v) = overrides.forwarded_header {
            config.forwarded_header = v;
        }
        if let Some(seconds) = file.jobs_every {
            config.jobs.every = (seconds > 0).then(|| std::time::Duration::from_secs(seconds));
        }
        if let Some(seconds) = file.reminders_every {
            config.reminders.every = (seconds > 0).then(|| std::time::Duration::from_secs(seconds));
        }
        if let Some(allow) = file.reminders_allow_private_hosts {
            config.reminders.allow_private_hosts = allow;
        }
        let password = overrides
            .smtp_password
            .clone()
            .or_else(|| std::env::var("CREDENCE_SMTP_PASSWORD").ok());
        config.jobs.mail = mail_settings(&file, overrides, password)?;
        if let Some(allow) = overrides
            .webhooks_allow_private_hosts
            .or(file.webhooks_allow_private_hosts)
        {
            config.jobs.webhooks.allow_private_hosts = allow;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("public url {url:?} must start with http:// or https://");
            }
        }
        if let Some(url) = &self.database_url {
            credence_store::Backend::of_url(url)?;
        }
        if self.body_limit < 1024 {
            bail!(
                "body_limit {} is too small; use at least 1024 bytes",
                self.body_limit
            );
        }
        if self.proxy_calls_per_minute == 0 {
            bail!("proxy_calls_per_minute 0 is too small; use at least 1");
        }
        for (name, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                bail!("{name} 0 is too small; use at least 1 second");
            }
        }
        credence_domain::EmailAddress::parse("admin_email", &self.admin_email)?;
        Ok(())
    }

    /// The database URL, and whether a missing SQLite file may be created: the
    /// default file inside the data directory is created unasked; a file named by
    /// `DATABASE_URL` only when the URL says `mode=rwc` (SQLite's own spelling of
    /// "create"), so that a typo'd path never starts an empty database.
    pub fn database(&self) -> (String, bool) {
        match &self.database_url {
            Some(url) => (
                url.clone(),
                url.starts_with("sqlite:") && url.contains("mode=rwc"),
            ),
            None => (
                format!("sqlite://{}", self.data_dir.join("credence.db").display()),
                true,
            ),
        }
    }

    pub fn key_file(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("credence.key"))
    }

    /// The base of every link Credence prints or sends, without a trailing slash.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }

    /// Whether cookies must be `Secure` (the public URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }

    /// The name of a cookie: `__Host-<name>` when cookies are `Secure`, so that a
    /// sibling subdomain can neither set nor shadow it (browsers accept such a
    /// cookie only `Secure`, with `Path=/` and no `Domain`); plain over http,
    /// where browsers refuse the prefix.
    pub fn cookie_name(&self, name: &str) -> String {
        self.http_settings().cookie_name(name)
    }

    /// What the HTTP layer takes from the configuration.
    pub fn http_settings(&self) -> credence_http::Settings {
        credence_http::Settings {
            body_limit: self.body_limit,
            request_timeout: self.request_timeout,
            trusted_proxies: self.trusted_proxies.clone(),
            forwarded_header: self.forwarded_header,
            secure_cookies: self.secure_cookies(),
            reminders_allow_private_hosts: self.reminders.allow_private_hosts,
            webhooks_allow_private_hosts: self.jobs.webhooks.allow_private_hosts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn nothing_set_means_embedded_sqlite_in_credence_data() {
        let config = Config::load(&Overrides::default()).unwrap();
        assert_eq!(
            config.database(),
            ("sqlite://credence-data/credence.db".to_string(), true)
        );
        assert_eq!(
            config.key_file(),
            PathBuf::from("credence-data/credence.key")
        );
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url(config.listen), "http://127.0.0.1:8080");
        assert!(!config.secure_cookies());
        assert_eq!(config.cookie_name("credence_csrf"), "credence_csrf");
    }

    #[test]
    fn cookies_take_the_host_prefix_when_the_public_url_is_https() {
        let config = Config {
            public_url: Some("https://credence.example".into()),
            ..Config::default()
        };
        assert_eq!(config.cookie_name("credence_csrf"), "__Host-credence_csrf");
        let config = Config {
            public_url: Some("http://credence.example".into()),
            ..Config::default()
        };
        assert_eq!(config.cookie_name("credence_csrf"), "credence_csrf");
    }

    #[test]
    fn the_file_sets_values_and_flags_or_environment_win() {
        let file = write("data_dir = \"/srv/credence\"\nlisten = \"0.0.0.0:9000\"\npublic_url = \"https://credence.example/\"\n");
        let overrides = Overrides {
            config: Some(file.path().into()),
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        };
        let config = Config::load(&overrides).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/credence"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(config.public_url(config.listen), "https://credence.example");
        assert!(config.secure_cookies());
    }

    #[test]
    fn oauth_clients_come_from_the_file_and_the_environment() {
        use secrecy::ExposeSecret;
        let file = write(
            "[oauth.google-drive]\nclient_id = \"file-id\"\nclient_secret = \"file-secret\"\n",
        );
        let config = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap();
        let client = &config.oauth_clients["google-drive"];
        assert_eq!(client.client_id, "file-id");
        assert_eq!(client.client_secret.expose_secret(), "file-secret");
        assert!(!format!("{config:?}").contains("file-secret"));

        let vars = [
            ("CREDENCE_OAUTH_GOOGLE_DRIVE_CLIENT_ID", "env-id"),
            ("CREDENCE_OAUTH_GOOGLE_DRIVE_CLIENT_SECRET", "env-secret"),
            ("PATH", "/bin"),
        ];
        let clients =
            oauth_clients_from(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert_eq!(clients["google-drive"].client_id, "env-id");
        assert_eq!(
            oauth_client_variables("google-drive").1,
            "CREDENCE_OAUTH_GOOGLE_DRIVE_CLIENT_SECRET"
        );
        let error = oauth_clients_from(
            [(
                "CREDENCE_OAUTH_SLACK_CLIENT_ID".to_string(),
                "x".to_string(),
            )]
            .into_iter(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("CREDENCE_OAUTH_SLACK_CLIENT_SECRET"),
            "{error}"
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_cidr_blocks() {
        let file = write(
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nforwarded_header = \"forwarded\"\n",
        );
        let config = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            config.trusted_proxies,
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
        );
        assert_eq!(config.forwarded_header, ForwardedHeader::Forwarded);
        let error = parse_trusted_proxies(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(error.to_string().contains("\"10.0.0.0/33\""), "{error}");
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let file = write("listen_on = \"x\"\n");
        let error = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("listen_on"), "{error:#}");
        let error = Config::load(&Overrides {
            database_url: Some("mysql://db/x".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("\"mysql\""), "{error:#}");
        let error = Config::load(&Overrides {
            public_url: Some("credence.example".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("http://"), "{error:#}");
        let file = write("request_timeout = 0\n");
        let error = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("request_timeout 0"),
            "{error:#}"
        );
    }

    #[test]
    fn smtp_comes_from_the_file_with_a_port_for_its_security_and_flags_win() {
        let file = write(
            "mail_from = \"Credence <c@example.com>\"\njobs_every = 0\n[smtp]\nhost = \"smtp.example.com\"\nsecurity = \"tls\"\nuser = \"credence\"\npassword = \"from-the-file\"\n",
        );
        let config = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.jobs.every, None);
        assert_eq!(config.jobs.mail.from, "Credence <c@example.com>");
        let shown = format!("{:?}", config.jobs);
        let smtp = config.jobs.mail.smtp.unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.example.com", 465));
        assert_eq!(smtp.security, credence_jobs::Security::Tls);
        assert_eq!(smtp.user.as_deref(), Some("credence"));
        assert!(smtp.password.is_some());
        assert!(!shown.contains("from-the-file"), "the password is redacted");

        let config = Config::load(&Overrides {
            config: Some(file.path().into()),
            smtp_port: Some(2525),
            smtp_security: Some(credence_jobs::Security::Starttls),
            ..Default::default()
        })
        .unwrap();
        let smtp = config.jobs.mail.smtp.unwrap();
        assert_eq!(
            (smtp.port, smtp.security),
            (2525, credence_jobs::Security::Starttls)
        );
    }

    #[test]
    fn private_webhook_hosts_are_refused_unless_the_file_or_a_flag_allows_them() {
        let config = Config::load(&Overrides::default()).unwrap();
        assert!(!config.jobs.webhooks.allow_private_hosts);
        assert!(!config.http_settings().webhooks_allow_private_hosts);
        let file = write("webhooks_allow_private_hosts = true\n");
        let config = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap();
        assert!(config.jobs.webhooks.allow_private_hosts);
        assert!(config.http_settings().webhooks_allow_private_hosts);
        let config = Config::load(&Overrides {
            config: Some(file.path().into()),
            webhooks_allow_private_hosts: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(!config.jobs.webhooks.allow_private_hosts);
    }

    #[test]
    fn without_an_smtp_host_mail_stays_local_and_a_lone_port_is_an_error() {
        let config = Config::load(&Overrides::default()).unwrap();
        assert!(config.jobs.mail.smtp.is_none());
        let file = write("[smtp]\nport = 587\n");
        let error = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("no host"), "{error:#}");
    }

    #[test]
    fn the_file_sets_the_timeouts_in_seconds() {
        let file = write("header_read_timeout = 5\nrequest_timeout = 120\n");
        let config = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            config.header_read_timeout,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(config.request_timeout, std::time::Duration::from_secs(120));
    }

    #[test]
    fn the_file_sets_the_reminder_scan_and_private_webhook_hosts() {
        let defaults = Config::load(&Overrides::default()).unwrap();
        assert_eq!(
            defaults.reminders.every,
            Some(std::time::Duration::from_secs(60))
        );
        assert!(!defaults.reminders.allow_private_hosts);
        assert!(!defaults.http_settings().reminders_allow_private_hosts);
        let file = write("reminders_every = 0\nreminders_allow_private_hosts = true\n");
        let config = Config::load(&Overrides {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.reminders.every, None);
        assert!(config.reminders.allow_private_hosts);
        assert!(config.http_settings().reminders_allow_private_hosts);
    }
}
