//! A real webhook receiver on 127.0.0.1 (axum): it records every POST it
//! gets (headers and body) and answers the statuses the test lines up (200
//! once the line is empty), with a body that echoes the message id; and the
//! check of a received message with the official Standard Webhooks library
//! for Python (`tests/webhooks/verify.py`, in the venv `scripts/test` makes).

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
}

impl ReceivedWebhook {
    pub fn payload(&self) -> Value {
        serde_json::from_str(&self.body).expect("a webhook body is JSON")
    }

    /// What the official library says of this message under `secret`:
    /// `Ok(verified payload)` or `Err(its reason)`.
    pub async fn verify_with_official_library(&self, secret: &str) -> Result<Value, String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join("tests/webhooks/.venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/test (it installs tests/webhooks/requirements.txt)",
            python.display()
        );
        let input = json!({
            "secret": secret,
            "headers": {
                "webhook-id": self.id,
                "webhook-timestamp": self.timestamp,
                "webhook-signature": self.signature,
            },
            "body": self.body,
        });
        let mut child = tokio::process::Command::new(python)
            .arg(root.join("tests/webhooks/verify.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.to_string().as_bytes()).await.unwrap();
        }
        let output =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("the verifier ends")
                .unwrap();
        assert!(output.status.success(), "verify.py failed: {output:?}");
        let answer: Value = serde_json::from_slice(&output.stdout).expect("verify.py answers JSON");
        if answer["ok"] == json!(true) {
            Ok(answer["payload"].clone())
        } else {
            Err(answer["error"].as_str().unwrap_or_default().to_string())
        }
    }
}

/// The receiver: `url()` is where to point an endpoint.
#[derive(Clone)]
pub struct WebhookSink {
    pub port: u16,
    received: Arc<Mutex<Vec<ReceivedWebhook>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl WebhookSink {
    pub async fn start() -> WebhookSink {
        let received: Arc<Mutex<Vec<ReceivedWebhook>>> = Arc::default();
        let statuses: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let (log, line) = (received.clone(), statuses.clone());
        let receive = move |headers: HeaderMap, body: String| {
            let (log, line) = (log.clone(), line.clone());
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let message = ReceivedWebhook {
                    id: header("webhook-id"),
                    timestamp: header("webhook-timestamp"),
                    signature: header("webhook-signature"),
                    content_type: header("content-type"),
                    body,
                };
                let id = message.id.clone();
                log.lock().unwrap().push(message);
                let status = line.lock().unwrap().pop_front().unwrap_or(200);
                (
                    StatusCode::from_u16(status).unwrap(),
                    format!("sink answered {status} to {id}"),
                )
            }
        };
        let router = axum::Router::new().route("/hooks/in", axum::routing::post(receive));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        WebhookSink {
            port,
            received,
            statuses,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/in", self.port)
    }

    /// The next answers, in order (then 200 again).
    pub fn answer_next(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.received.lock().unwrap().clone()
    }

    /// The messages of event `event` received so far.
    pub fn received_of(&self, event: &str) -> Vec<ReceivedWebhook> {
        self.received()
            .into_iter()
            .filter(|message| message.payload()["type"] == event)
            .collect()
    }
}
