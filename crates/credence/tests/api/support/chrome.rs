//! A real browser for the journeys of the web UI: Debian's headless Chromium,
//! driven over WebDriver by Debian's chromedriver with the `fantoccini` client.
//!
//! Each [`Browser`] has its own chromedriver (on a port it picks itself) and
//! its own Chromium profile, so browser tests run in parallel like the others;
//! both processes are killed when it is dropped. Helpers act as a person does:
//! open a page, fill a field by its label, click a button by its text, wait for
//! text to appear (polling a condition in the page, never a fixed sleep).
//!
//! What a journey leaves, under `$CARGO_TARGET_DIR/tmp/browser-journeys/<name>/`:
//! a screenshot per [`Browser::step`] (`01-sign-in.png`, …), chromedriver's log,
//! and when the test panics the page it was on (`failure.html`,
//! `failure.png`, `failure-url.txt`).
//!
//! Accessibility: [`Browser::assert_accessible`] injects axe-core (pinned in
//! tests/browser/package-lock.json, installed by `scripts/test`) and fails on
//! any `serious` or `critical` violation. Our pages' Content-Security-Policy
//! allows no inline script (only `/assets/credence.js`); WebDriver's scripts run as the browser's own (DevTools)
//! code, which page CSP does not govern (checked by
//! `browser_journeys::page_scripts_are_blocked_but_the_harness_runs`).

use super::{TestApp, WAIT_LIMIT};
use fantoccini::elements::{Element, ElementRef};
use fantoccini::Locator;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Debian's `chromium-driver`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's `chromium` (its launcher script, which adds Debian's flags).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How often a wait looks at the page again.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// How long the clean-up on drop may take before the processes are killed anyway.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);
/// The key under which WebDriver returns a DOM element from a script.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where journeys leave their screenshots and failure pages.
pub fn journeys_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-journeys")
}

/// The axe-core script, read once.
fn axe_source() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/browser/node_modules/axe-core/axe.min.js");
        std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "axe-core is not installed at {}: {error}; run `npm ci --prefix tests/browser` \
                 (scripts/test does)",
                path.display()
            )
        })
    })
}

/// One `serious` or `critical` finding of axe-core.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Violation {
    /// The axe rule, e.g. `color-contrast`.
    pub id: String,
    pub impact: String,
    pub help: String,
    #[serde(rename = "helpUrl")]
    pub help_url: String,
    /// Each offending element: its CSS selector and what to fix.
    pub nodes: Vec<ViolatingNode>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ViolatingNode {
    pub target: String,
    pub summary: String,
}

/// A headless Chromium with its own chromedriver and profile. Dropping it
/// closes the session and kills both processes; dropping it while the test
/// panics first saves the page (HTML, screenshot, URL).
pub struct Browser {
    client: Option<fantoccini::Client>,
    driver: Option<std::process::Child>,
    /// The Chromium profile and temporary files, removed after the processes end.
    profile: Option<tempfile::TempDir>,
    dir: PathBuf,
    steps: AtomicUsize,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for the journey `name`
    /// (a path under [`journeys_dir`], e.g. `setup_link/sqlite`), whose earlier
    /// output is removed.
    pub async fn start(name: &str) -> Browser {
        for program in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver \
                 (scripts/test does)"
            );
        }
        let dir = journeys_dir().join(slug(name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let profile = tempfile::tempdir().expect("a temporary directory for the profile");
        let (driver, port) = start_chromedriver(&dir, profile.path()).await;
        let mut browser = Browser {
            client: None,
            driver: Some(driver),
            profile: Some(profile),
            dir,
            steps: AtomicUsize::new(0),
        };
        let capabilities =
            capabilities(&browser.profile.as_ref().unwrap().path().join("user-data"));
        let connected = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await;
        match connected {
            Ok(client) => browser.client = Some(client),
            Err(error) => panic!(
                "chromedriver on port {port} did not start Chromium: {error}; its log: {}",
                browser.dir.join("chromedriver.log").display()
            ),
        }
        browser
    }

    /// The fantoccini client, for what the helpers do not cover.
    pub fn client(&self) -> &fantoccini::Client {
        self.client.as_ref().expect("the browser is open")
    }

    /// The directory of this journey's screenshots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens `path` of `app` and waits for the page to load.
    pub async fn open(&self, app: &TestApp, path: &str) {
        self.goto(&app.url(path)).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client()
            .current_url()
            .await
            .expect("the current URL")
            .to_string()
    }

    /// The current URL's path and query, e.g. `/sign-in?next=%2F`.
    pub async fn path(&self) -> String {
        let url = self.client().current_url().await.expect("the current URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// The visible text of the page (`innerText`: hidden elements left out).
    pub async fn text(&self) -> String {
        self.script(
            "return document.body ? document.body.innerText : ''",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The HTML of the page as it is now.
    pub async fn html(&self) -> String {
        self.client().source().await.expect("the page source")
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.client().title().await.expect("the page title")
    }

    /// Types `value` into the field labelled `label` (a `<label>`'s text,
    /// whitespace collapsed, or an `aria-label`), after clearing it: key by
    /// key, as a person types, so the page's input events fire.
    pub async fn fill(&self, label: &str, value: &str) {
        let field = self.field(label).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("cannot clear the field {label:?}: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("cannot type into the field {label:?}: {e}"));
    }

    /// The current value of the field labelled `label`.
    pub async fn value_of(&self, label: &str) -> String {
        self.field(label)
            .await
            .prop("value")
            .await
            .expect("the field's value")
            .unwrap_or_default()
    }

    /// Ticks the checkbox (or picks the radio button) labelled `label`.
    pub async fn check(&self, label: &str) {
        let field = self.field(label).await;
        if !field.is_selected().await.expect("the checkbox's state") {
            field
                .click()
                .await
                .unwrap_or_else(|e| panic!("cannot tick {label:?}: {e}"));
        }
    }

    /// Picks the option whose text is `option` in the select labelled `label`.
    pub async fn select(&self, label: &str, option: &str) {
        self.field(label)
            .await
            .select_by_label(option)
            .await
            .unwrap_or_else(|e| panic!("the select {label:?} has no option {option:?}: {e}"));
    }

    /// The form control labelled `label`.
    pub async fn field(&self, label: &str) -> Element {
        let found = self
            .script(
                r#"const want = arguments[0];
                const norm = s => (s || '').replace(/\s+/g, ' ').trim();
                const labels = [...document.querySelectorAll('label')];
                const exact = labels.filter(l => norm(l.textContent) === want && l.control);
                const starting = labels.filter(l => norm(l.textContent).startsWith(want) && l.control);
                const byAria = [...document.querySelectorAll('[aria-label]')]
                    .filter(e => norm(e.getAttribute('aria-label')) === want);
                const hits = exact.length ? exact.map(l => l.control)
                    : byAria.length ? byAria
                    : starting.map(l => l.control);
                return { hits, labels: labels.map(l => norm(l.textContent)) };"#,
                vec![json!(label)],
            )
            .await;
        self.the_one(&found, &format!("field labelled {label:?}"), "labels")
    }

    /// Clicks the button whose text (or `value`, for an input) is `text`, and
    /// waits for the page that the click loads: a form post without script.
    pub async fn click_button(&self, text: &str) {
        let button = self.button(text).await;
        self.click_and_wait_for_new_page(&button, &format!("the button {text:?}"))
            .await
    }

    /// Clicks the button `text` and does not wait for a new page (a button that
    /// acts in place, with script).
    pub async fn click_button_in_place(&self, text: &str) {
        self.button(text)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click the button {text:?}: {e}"));
    }

    /// Follows the link whose text is `text` and waits for the new page.
    pub async fn click_link(&self, text: &str) {
        let found = self
            .script(
                r#"const want = arguments[0];
                const norm = s => (s || '').replace(/\s+/g, ' ').trim();
                const links = [...document.querySelectorAll('a[href]')];
                return { hits: links.filter(a => norm(a.innerText) === want),
                         links: links.map(a => norm(a.innerText)) };"#,
                vec![json!(text)],
            )
            .await;
        let link = self.the_one(&found, &format!("link {text:?}"), "links");
        self.click_and_wait_for_new_page(&link, &format!("the link {text:?}"))
            .await
    }

    /// The button whose text is `text`.
    pub async fn button(&self, text: &str) -> Element {
        let found = self
            .script(
                r#"const want = arguments[0];
                const norm = s => (s || '').replace(/\s+/g, ' ').trim();
                const text = e => norm(e.tagName === 'INPUT' ? e.value : e.innerText);
                const buttons = [...document.querySelectorAll(
                    'button, input[type=submit], input[type=button], [role=button]')];
                return { hits: buttons.filter(b => text(b) === want), buttons: buttons.map(text) };"#,
                vec![json!(text)],
            )
            .await;
        self.the_one(&found, &format!("button {text:?}"), "buttons")
    }

    /// Presses `key` (e.g. `Key::Tab`, `Key::Enter`) in the focused element,
    /// for keyboard-only journeys.
    pub async fn press(&self, key: fantoccini::key::Key) {
        let focused = self
            .client()
            .active_element()
            .await
            .expect("a focused element");
        focused
            .send_keys(&char::from(key).to_string())
            .await
            .unwrap_or_else(|e| panic!("cannot press a key: {e}"));
    }

    /// What has the keyboard focus: its tag and its text, label or value,
    /// e.g. `button "Sign in"` or `input "Email"`.
    pub async fn focused(&self) -> String {
        self.script(
            r#"const e = document.activeElement;
            if (!e || e === document.body) return 'body';
            const norm = s => (s || '').replace(/\s+/g, ' ').trim();
            const label = (e.labels && e.labels[0] && norm(e.labels[0].textContent))
                || e.getAttribute('aria-label') || norm(e.innerText) || e.value || '';
            return e.tagName.toLowerCase() + ' "' + label + '"';"#,
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until the page's visible text contains `text`.
    pub async fn wait_for_text(&self, text: &str) {
        self.wait_for_script(
            &format!("the text {text:?}"),
            "return !!document.body && document.body.innerText.includes(arguments[0])",
            vec![json!(text)],
        )
        .await;
    }

    /// Waits until an element matches the CSS selector `css`, and answers it.
    pub async fn wait_for(&self, css: &str) -> Element {
        let found = self
            .wait_for_script(
                &format!("an element matching {css:?}"),
                "return document.querySelector(arguments[0])",
                vec![json!(css)],
            )
            .await;
        self.element(&found)
            .unwrap_or_else(|| panic!("{css:?} did not answer an element"))
    }

    /// Waits until the URL's path (and query) is `path`.
    pub async fn wait_for_path(&self, path: &str) {
        self.wait_for_script(
            &format!("the path {path:?}"),
            "return location.pathname + location.search === arguments[0]",
            vec![json!(path)],
        )
        .await;
    }

    /// Saves a screenshot of this step (`NN-<name>.png`) and checks the page
    /// with axe-core: the check every page of a journey gets.
    pub async fn step(&self, name: &str) {
        self.screenshot(name).await;
        self.assert_accessible().await;
    }

    /// Saves a screenshot as `NN-<name>.png` in the journey's directory;
    /// answers its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let number = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.dir.join(format!("{number:02}-{}.png", slug(name)));
        let png = self.client().screenshot().await.expect("a screenshot");
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Runs axe-core on the page; answers its `serious` and `critical` findings.
    pub async fn accessibility_violations(&self) -> Vec<Violation> {
        let client = self.client();
        // Injected as the script itself, not eval'd: page CSP forbids eval.
        let loaded = client
            .execute(
                &format!("{}\n;return typeof window.axe;", axe_source()),
                vec![],
            )
            .await
            .expect("axe-core loads into the page");
        assert_eq!(
            loaded,
            json!("object"),
            "axe-core did not define window.axe"
        );
        let outcome = client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] }).then(
                    result => done({ violations: result.violations
                        .filter(v => v.impact === 'serious' || v.impact === 'critical')
                        .map(v => ({ id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                            nodes: v.nodes.map(n => ({ target: n.target.join(' '),
                                summary: n.failureSummary || '' })) })) }),
                    error => done({ error: String(error) }));"#,
                vec![],
            )
            .await
            .expect("axe-core runs");
        if let Some(error) = outcome.get("error") {
            panic!("axe-core failed on {}: {error}", self.url().await);
        }
        serde_json::from_value(outcome["violations"].clone()).expect("axe-core's violations")
    }

    /// Fails with a readable list when axe-core finds any `serious` or
    /// `critical` violation on the page.
    pub async fn assert_accessible(&self) {
        let violations = self.accessibility_violations().await;
        if !violations.is_empty() {
            panic!("{}", accessibility_report(&self.url().await, &violations));
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) and answers its
    /// value.
    pub async fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("the script failed: {e}\n{script}"))
    }

    /// Polls `script` until it answers something other than `null` or
    /// `false`, for at most [`WAIT_LIMIT`]; a script that cannot run yet (the
    /// page is being replaced) counts as not yet.
    pub async fn wait_for_script(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        let mut last_error = None;
        loop {
            match self.client().execute(script, args.clone()).await {
                Ok(Value::Null | Value::Bool(false)) => {}
                Ok(value) => return value,
                Err(error) => last_error = Some(error.to_string()),
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{}", self.never(what, last_error).await);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Why a wait failed: what it waited for, where, and what the page reads.
    async fn never(&self, what: &str, last_error: Option<String>) -> String {
        // The browser may be what is broken: read what it still answers.
        let client = self.client();
        let text = match client
            .execute("return document.body.innerText", vec![])
            .await
        {
            Ok(Value::String(text)) => text,
            Ok(_) | Err(_) => String::from("(unreadable)"),
        };
        let url = match client.current_url().await {
            Ok(url) => url.to_string(),
            Err(error) => format!("(an unknown page: {error})"),
        };
        let shown: String = text.chars().take(2000).collect();
        format!(
            "never within {WAIT_LIMIT:?}: {what}, on {url}{}\nthe page reads:\n{shown}",
            last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        )
    }

    /// Clicks `element` and waits until the document it was in is replaced.
    async fn click_and_wait_for_new_page(&self, element: &Element, what: &str) {
        let page = self
            .client()
            .find(Locator::Css("html"))
            .await
            .expect("the page's root element");
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {what}: {e}"));
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        loop {
            match page.tag_name().await {
                Err(error) if error.is_stale_element_reference() => return,
                // A command during the navigation may fail otherwise; look again.
                Ok(_) | Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                let invalid = self.invalid_fields().await;
                let what = format!("a new page after clicking {what}{invalid}");
                panic!("{}", self.never(&what, None).await);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// The fields the browser's own validation refuses (they stop a form from
    /// being posted), as a hint for a click that loaded nothing.
    async fn invalid_fields(&self) -> String {
        let invalid = self
            .client()
            .execute(
                r#"return [...document.querySelectorAll('input, select, textarea')]
                    .filter(e => !e.checkValidity())
                    .map(e => (e.name || e.id) + ': ' + e.validationMessage).join('; ')"#,
                vec![],
            )
            .await
            .unwrap_or_default();
        match invalid.as_str() {
            Some("") | None => String::new(),
            Some(fields) => format!(" (the browser refuses to post: {fields})"),
        }
    }

    /// The single element in `found["hits"]`, or a panic listing what the
    /// page has instead (`found[listed]`).
    fn the_one(&self, found: &Value, what: &str, listed: &str) -> Element {
        let hits = found["hits"].as_array().cloned().unwrap_or_default();
        match hits.as_slice() {
            [one] => self.element(one).expect("an element"),
            [] => panic!("the page has no {what}; its {listed}: {}", found[listed]),
            many => panic!(
                "the page has {} of {what}; its {listed}: {}",
                many.len(),
                found[listed]
            ),
        }
    }

    fn element(&self, value: &Value) -> Option<Element> {
        let id = value.get(ELEMENT_KEY)?.as_str()?;
        Some(Element::from_element_id(
            self.client().clone(),
            ElementRef::from(id.to_string()),
        ))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if let Some(client) = self.client.take() {
            // Saving the page and closing the session need the runtime the
            // client runs on; a multi-thread one can be blocked on from here.
            let runtime = tokio::runtime::Handle::try_current()
                .ok()
                .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            match runtime {
                Some(runtime) => tokio::task::block_in_place(|| {
                    runtime.block_on(async {
                        if panicking {
                            let saved =
                                tokio::time::timeout(CLOSE_LIMIT, save_failure(&client, &self.dir))
                                    .await;
                            if saved.is_err() {
                                eprintln!(
                                    "the browser did not answer; the failing page is not saved"
                                );
                            }
                        }
                        let _ = tokio::time::timeout(CLOSE_LIMIT, client.close()).await;
                    })
                }),
                None if panicking => {
                    eprintln!("not on a multi-thread runtime: the failing page is not saved")
                }
                None => {}
            }
        }
        if let Some(mut driver) = self.driver.take() {
            // chromedriver leads its own process group, with Chromium and all
            // of its helpers in it: kill them all.
            let group = driver.id() as libc::pid_t;
            // SAFETY: kill(2) with a negative pid signals that process group;
            // it touches no memory of ours.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
            let _ = driver.wait();
        }
        drop(self.profile.take());
    }
}

/// The readable list of `violations` found on `url`: rule, impact, help and
/// link, then each offending element with what to fix.
pub fn accessibility_report(url: &str, violations: &[Violation]) -> String {
    let mut report = format!(
        "{} serious or critical accessibility violation(s) on {url}:\n",
        violations.len()
    );
    for violation in violations {
        report += &format!(
            "- {} ({}): {} ({})\n",
            violation.id, violation.impact, violation.help, violation.help_url
        );
        for node in &violation.nodes {
            report += &format!(
                "    at `{}`: {}\n",
                node.target,
                node.summary.replace('\n', "\n      ")
            );
        }
    }
    report
}

/// Saves the page a failing journey ended on, and says where.
async fn save_failure(client: &fantoccini::Client, dir: &Path) {
    let url = client
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_else(|e| format!("(unknown: {e})"));
    let _ = std::fs::write(dir.join("failure-url.txt"), &url);
    if let Ok(html) = client.source().await {
        let _ = std::fs::write(dir.join("failure.html"), html);
    }
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join("failure.png"), png);
    }
    eprintln!(
        "browser journey failed on {url}: its page is saved in {}",
        dir.display()
    );
}

/// Starts chromedriver on a port of its choosing, in its own process group;
/// answers the process and the port once it listens. With `--port=0` it picks
/// a port free on one address family and then binds it on the other, where
/// another process may hold it ("bind() failed: Address already in use …
/// IPv4 port not available"): that start is tried again, with a new pick.
async fn start_chromedriver(dir: &Path, profile: &Path) -> (std::process::Child, u16) {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        match start_chromedriver_once(dir, profile).await {
            Ok(started) => return started,
            Err((why, log)) => {
                let taken = std::fs::read_to_string(&log)
                    .is_ok_and(|text| text.contains("Address already in use"));
                if !(taken && attempt < ATTEMPTS) {
                    panic!(
                        "chromedriver did not start ({why}, attempt {attempt}); its log: {}",
                        log.display()
                    );
                }
            }
        }
    }
    unreachable!("the last attempt panics")
}

/// One start of chromedriver; on failure, why and the path of its log.
async fn start_chromedriver_once(
    dir: &Path,
    profile: &Path,
) -> Result<(std::process::Child, u16), (&'static str, std::path::PathBuf)> {
    use std::os::unix::process::CommandExt;
    let log_path = dir.join("chromedriver.log");
    let log = std::fs::File::create(&log_path).expect("chromedriver's log file");
    let temp = profile.join("tmp");
    std::fs::create_dir_all(&temp).expect("a temporary directory for Chromium");
    let mut driver = std::process::Command::new(CHROMEDRIVER)
        .arg("--port=0")
        // Chromium's temporary and cache files go to the profile, removed on drop.
        .env("TMPDIR", &temp)
        .env("XDG_CONFIG_HOME", profile.join("config"))
        .env("XDG_CACHE_HOME", profile.join("cache"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log.try_clone().expect("chromedriver's log file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
    let stdout = driver.stdout.take().expect("chromedriver's stdout");
    let (port_tx, port_rx) = tokio::sync::oneshot::channel();
    // chromedriver says its port on stdout; the rest (Chromium's output too)
    // goes to the log, read on so that a full pipe never stalls them.
    std::thread::spawn(move || {
        let mut port_tx = Some(port_tx);
        let mut log = log;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            if let Some(rest) = line.split("was started successfully on port ").nth(1) {
                if let (Some(tx), Ok(port)) =
                    (port_tx.take(), rest.trim_end_matches('.').parse::<u16>())
                {
                    let _ = tx.send(port);
                }
            }
        }
    });
    match tokio::time::timeout(WAIT_LIMIT, port_rx).await {
        Ok(Ok(port)) => Ok((driver, port)),
        outcome => {
            let _ = driver.kill();
            let _ = driver.wait();
            let why = if outcome.is_err() {
                "no port within the wait limit"
            } else {
                "it exited"
            };
            Err((why, log_path))
        }
    }
}

/// Headless Chromium with a profile of its own, at a fixed window size (so
/// screenshots compare), with nothing that would reach the network.
fn capabilities(user_data: &Path) -> fantoccini::wd::Capabilities {
    let capabilities = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "timeouts": { "script": WAIT_LIMIT.as_millis() as u64, "pageLoad": WAIT_LIMIT.as_millis() as u64 },
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", user_data.display()),
                "--window-size=1280,900",
                "--force-device-scale-factor=1",
                "--lang=en-US",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--password-store=basic",
            ],
            "prefs": {
                "credentials_enable_service": false,
                "profile.password_manager_enabled": false,
                "profile.password_manager_leak_detection": false,
            },
        },
    });
    match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("the capabilities are an object"),
    }
}

/// `name` as a relative path of safe characters (`/` separates directories).
fn slug(name: &str) -> String {
    name.split('/')
        .map(|part| {
            part.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|part| !part.is_empty() && part != "..")
        .collect::<Vec<_>>()
        .join("/")
}

/// The processes whose command line mentions `needle` (a profile path): none
/// should be left once a [`Browser`] is dropped.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

impl Browser {
    /// The directory of Chromium's profile (its path is on the command line of
    /// every Chromium process of this browser).
    pub fn profile_dir(&self) -> PathBuf {
        self.profile
            .as_ref()
            .expect("the profile")
            .path()
            .to_path_buf()
    }
}
