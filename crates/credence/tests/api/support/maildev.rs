//! A real SMTP server with an HTTP API for tests: MailDev 3 (npm, pinned in
//! `tests/maildev/package-lock.json`), run by `tests/maildev/run.mjs` on ports
//! the system picks. What Credence sends it is read back from `/api/email`.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

pub struct Maildev {
    child: Child,
    _stdin: ChildStdin,
    pub smtp_port: u16,
    api: String,
    http: reqwest::Client,
}

/// One email as MailDev received it.
#[derive(Debug, Clone)]
pub struct ReceivedEmail {
    pub to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
    /// The whole JSON MailDev answered (for scanning).
    pub raw: Value,
}

/// How a [`Maildev`] receives: plain SMTP, or TLS from the first byte with a
/// certificate of a private CA, requiring a user and password.
pub struct MaildevTls {
    /// The CA's certificate (PEM): what Credence's `ca_file` names.
    pub ca_file: std::path::PathBuf,
    pub user: String,
    pub password: String,
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl MaildevTls {
    /// A new CA, and a certificate it signs for 127.0.0.1.
    pub fn new(user: &str, password: &str) -> MaildevTls {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        MaildevTls {
            ca_file: write("ca.pem", ca.pem()),
            cert_file: write("cert.pem", leaf.pem()),
            key_file: write("key.pem", key.serialize_pem()),
            user: user.into(),
            password: password.into(),
            _dir: dir,
        }
    }
}

impl Maildev {
    /// Starts MailDev; panics saying how to install it when it cannot.
    pub async fn start() -> Maildev {
        Self::start_with(None).await
    }

    /// Starts MailDev receiving over TLS with authentication (`tls`), or plain.
    pub async fn start_with(tls: Option<&MaildevTls>) -> Maildev {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = root.join("tests/maildev");
        assert!(
            dir.join("node_modules/maildev/package.json").is_file(),
            "MailDev is not installed in {}: run scripts/test, which installs it (npm ci --prefix tests/maildev)",
            dir.display()
        );
        let mut command = Command::new("node");
        if let Some(tls) = tls {
            command
                .env("INCOMING_CERT", &tls.cert_file)
                .env("INCOMING_KEY", &tls.key_file)
                .env("INCOMING_USER", &tls.user)
                .env("INCOMING_PASS", &tls.password);
        }
        let mut child = command
            .arg(dir.join("run.mjs"))
            .current_dir(&dir)
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start node (run scripts/test, which installs it): {e}")
            });
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready, ports) = tokio::sync::oneshot::channel::<(u16, u16)>();
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("READY ") {
                    let mut ports = rest.split_whitespace().filter_map(|p| p.parse().ok());
                    if let (Some(tx), Some(smtp), Some(api)) =
                        (ready.take(), ports.next(), ports.next())
                    {
                        let _ = tx.send((smtp, api));
                    }
                }
            }
        });
        let (smtp_port, api_port) = tokio::time::timeout(Duration::from_secs(30), ports)
            .await
            .expect("MailDev printed READY within 30 s")
            .expect("MailDev started (see its output above)");
        Maildev {
            child,
            _stdin: stdin,
            smtp_port,
            api: format!("http://127.0.0.1:{api_port}/api"),
            // Node closes idle connections after 5 s (keepAliveTimeout).
            http: reqwest::Client::builder()
                .pool_idle_timeout(super::app::CLIENT_IDLE)
                .build()
                .unwrap(),
        }
    }

    /// Credence's SMTP settings for this server (plain SMTP on loopback).
    pub fn smtp(&self) -> credence::jobs::SmtpSettings {
        credence::jobs::SmtpSettings {
            host: "127.0.0.1".into(),
            port: self.smtp_port,
            security: credence::jobs::Security::None,
            user: None,
            password: None,
            ca_file: None,
        }
    }

    /// Every email received so far, oldest first.
    pub async fn emails(&self) -> Vec<ReceivedEmail> {
        let all: Value = self
            .http
            .get(format!("{}/email", self.api))
            .send()
            .await
            .expect("MailDev answers")
            .json()
            .await
            .expect("MailDev answers JSON");
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        all.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|email| {
                let addresses = |field: &str| -> Vec<String> {
                    email[field]
                        .as_array()
                        .map(|list| list.iter().map(|a| text(&a["address"])).collect())
                        .unwrap_or_default()
                };
                ReceivedEmail {
                    to: addresses("to"),
                    from: addresses("from").join(", "),
                    subject: text(&email["subject"]),
                    text: text(&email["text"]),
                    html: text(&email["html"]),
                    message_id: text(&email["headers"]["message-id"]),
                    raw: email,
                }
            })
            .collect()
    }

    /// Waits for an email to `to` whose subject contains `subject`; answers it.
    pub async fn wait_for_email(&self, to: &str, subject: &str) -> ReceivedEmail {
        let matching = |emails: Vec<ReceivedEmail>| {
            emails
                .into_iter()
                .find(|e| e.to.iter().any(|t| t == to) && e.subject.contains(subject))
        };
        super::wait_until(&format!("an email to {to} about {subject:?}"), || async {
            matching(self.emails().await).is_some()
        })
        .await;
        matching(self.emails().await).expect("the email")
    }
}

impl Drop for Maildev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
